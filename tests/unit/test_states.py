"""The status machine: the transition tables and check_transition."""

import subprocess
import sys

import hypothesis
from hypothesis import strategies as st
import pytest

from rbdmig import exception
from rbdmig.db import states

MIGRATION_PAIRS = sorted(states.MIGRATION_TRANSITIONS, key=str)
VOLUME_PAIRS = sorted(states.VOLUME_TRANSITIONS, key=str)


@pytest.mark.parametrize('old,new', MIGRATION_PAIRS, ids=str)
def test_every_allowed_migration_transition_passes(old, new):
    states.check_transition(old, new)
    assert states.is_allowed(old, new)


@pytest.mark.parametrize('old,new', VOLUME_PAIRS, ids=str)
def test_every_allowed_volume_transition_passes(old, new):
    states.check_transition(old, new, field='status')


@pytest.mark.parametrize('old,new', [
    (None, states.MIGRATING),      # skipping the claim
    (None, states.SUCCESS),
    (None, states.ERROR),          # nothing ran, nothing failed
    (states.STARTING, states.SUCCESS),
    (states.STARTING, states.STARTING),
    (states.MIGRATING, states.STARTING),
    (states.COMPLETING, states.MIGRATING),
    (states.SUCCESS, states.ERROR),
    (states.ERROR, states.SUCCESS),
    (states.SUCCESS, None),
    (states.MIGRATING, 'bogus'),
], ids=str)
def test_illegal_migration_transitions_raise(old, new):
    with pytest.raises(exception.InvalidTransition) as err:
        states.check_transition(old, new)
    assert str(err.value) == (
        'Cannot change migration_status from %s to %s.' % (old, new))


@pytest.mark.parametrize('old,new', [
    (states.IN_USE, states.MAINTENANCE),   # only available can be forced
    (states.MAINTENANCE, states.IN_USE),
    (states.MAINTENANCE, states.DELETING),
    (states.DELETING, states.AVAILABLE),
    (states.CREATING, states.MAINTENANCE),
    (states.AVAILABLE, states.AVAILABLE),
], ids=str)
def test_illegal_volume_transitions_raise(old, new):
    with pytest.raises(exception.InvalidTransition):
        states.check_transition(old, new, field='status')


@pytest.mark.parametrize('status', sorted(states.RUNNING))
def test_error_from_any_running_status(status):
    states.check_transition(status, states.ERROR)


@pytest.mark.parametrize('status', sorted(states.IDLE, key=str))
def test_no_error_from_an_idle_status_but_a_new_start(status):
    assert not states.is_allowed(status, states.ERROR)
    states.check_transition(status, states.STARTING)


def test_running_and_idle_split_the_migration_statuses():
    assert states.RUNNING | states.IDLE == states.MIGRATION_STATUSES
    assert not states.RUNNING & states.IDLE
    assert [s for s in sorted(states.MIGRATION_STATUSES, key=str)
            if states.is_running(s)] == sorted(states.RUNNING)


def test_the_happy_path_and_forced_maintenance_are_allowed():
    path = [None, states.STARTING, states.MIGRATING, states.COMPLETING,
            states.SUCCESS]
    for old, new in zip(path, path[1:]):
        states.check_transition(old, new)
    states.check_transition(states.AVAILABLE, states.MAINTENANCE, 'status')
    states.check_transition(states.MAINTENANCE, states.AVAILABLE, 'status')


def test_tables_only_use_known_statuses():
    for old, new in states.MIGRATION_TRANSITIONS:
        assert {old, new} <= states.MIGRATION_STATUSES
    for old, new in states.VOLUME_TRANSITIONS:
        assert {old, new} <= states.VOLUME_STATUSES
    assert states.MIGRATABLE <= states.VOLUME_STATUSES
    assert states.INITIAL_VOLUME_STATUSES <= states.VOLUME_STATUSES


def test_allowed_from_inverts_the_table():
    assert states.allowed_from(states.ERROR) == states.RUNNING
    assert states.allowed_from(states.STARTING) == states.IDLE
    assert states.allowed_from(states.AVAILABLE, 'status') == {
        states.CREATING, states.IN_USE, states.MAINTENANCE}


def test_unknown_field_is_refused():
    with pytest.raises(exception.InvalidInput):
        states.check_transition(None, states.STARTING, field='backend')


STATUSES = st.sampled_from(
    sorted(states.MIGRATION_STATUSES | states.VOLUME_STATUSES, key=str)
) | st.none() | st.text(max_size=12)


@hypothesis.given(old=STATUSES, new=STATUSES,
                  field=st.sampled_from(['migration_status', 'status']))
def test_check_transition_agrees_with_the_table(old, new, field):
    table = {'migration_status': states.MIGRATION_TRANSITIONS,
             'status': states.VOLUME_TRANSITIONS}[field]
    if (old, new) in table:
        states.check_transition(old, new, field)
    else:
        with pytest.raises(exception.InvalidTransition):
            states.check_transition(old, new, field)
    assert states.is_allowed(old, new, field) == ((old, new) in table)


def test_states_imports_no_database_nor_ceph():
    code = ('import sys, rbdmig.db.states; '
            'bad = [m for m in sys.modules if m.split(".")[0] in '
            '("sqlalchemy", "oslo_db", "alembic", "rados", "rbd")]; '
            'print(bad); sys.exit(bool(bad))')
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
