"""The phase table, its decisions, and the copy of it in the docs."""

import os
import re

import pytest

from rbdmig import exception
from rbdmig.migration import phases

DOC = os.path.join(os.path.dirname(__file__), '..', '..', 'doc',
                   'reliability.rst')


def test_the_documented_table_is_the_code_s():
    text = open(DOC).read()
    table = text.split('.. decision-table-start')[1].split(
        '.. decision-table-end')[0]
    rows = [re.split(r'\s{2,}', line.strip()) for line in
            table.strip().splitlines()[3:-1]]
    documented = {(phase, who): decision for phase, *decisions in rows
                  for who, decision in zip((phases.SOURCE, phases.DEST),
                                           decisions)}
    assert documented == phases.TABLE


def test_the_documented_generic_table_is_the_code_s():
    text = open(DOC).read()
    table = text.split('.. generic-decision-table-start')[1].split(
        '.. generic-decision-table-end')[0]
    lines = table.strip().splitlines()
    sources = re.split(r'\s{2,}', lines[1].strip())[1:]
    rows = [re.split(r'\s{2,}', line.strip()) for line in lines[3:-1]]
    documented = {(phase, found): decision for phase, *decisions in rows
                  for found, decision in zip(sources, decisions)}
    assert sources == [phases.PRESENT, phases.MISSING, phases.UNKNOWN]
    assert documented == phases.GENERIC_TABLE


def test_a_generic_copy_is_removed_only_once_its_source_goes_forward():
    # Only from REMOVING on (the copy verified, the source's removal
    # begun) is the source removed; before, the copy is never deleted
    # by recovery: resumed, kept, or left alone.
    for (phase, found), decision in phases.GENERIC_TABLE.items():
        if phase == phases.COPYING:
            assert decision in (phases.RESUME, phases.KEEP, phases.WAIT)
        else:
            assert decision == phases.COMPLETE


def test_every_phase_and_authority_has_a_decision():
    assert set(phases.TABLE) == {(p, w) for p in phases.PHASES
                                 for w in (phases.SOURCE, phases.DEST)}


@pytest.mark.parametrize('phase', phases.PHASES)
def test_nothing_is_removed_without_a_complete_copy(phase):
    # No copy: whatever the authority says, the source is never removed.
    for who in (phases.SOURCE, phases.DEST):
        assert phases.decide(phase, who, True, False) in (
            phases.RELEASE, phases.ROLL_BACK, phases.RESTORE, phases.KEEP)


@pytest.mark.parametrize('phase', phases.PHASES[:-1])
def test_a_whole_source_named_by_the_authority_is_kept(phase):
    assert phases.decide(phase, phases.SOURCE, True, True) in (
        phases.RELEASE, phases.ROLL_BACK, phases.RESTORE)


def test_a_source_being_removed_goes_forward_whoever_is_named():
    for who in (phases.SOURCE, phases.DEST):
        assert phases.decide(phases.REMOVING, who, True, True) in (
            phases.ADOPT, phases.COMPLETE)
    # The copy is missing: keep what is left of the source.
    assert phases.decide(phases.REMOVING, phases.SOURCE, True,
                         False) == phases.KEEP


def test_a_source_deleted_by_someone_leaves_the_copy_as_the_volume():
    assert phases.decide(phases.PLACED, phases.SOURCE, False,
                         True) == phases.COMPLETE
    assert phases.decide(phases.COPYING, phases.SOURCE, False,
                         False) == phases.RELEASE


def test_illegal_transitions_raise():
    phases.check_transition(phases.VERIFIED, phases.RETIRING)
    with pytest.raises(exception.InvalidTransition):
        phases.check_transition(phases.REMOVING, phases.COPYING)
    with pytest.raises(exception.InvalidTransition):
        phases.check_transition(phases.COPYING, phases.PLACED)
