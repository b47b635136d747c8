"""Seams review, second pass: where a volume's data or its record could
be lost at the seams the first pass (test_seams_review.py) left.

Each test drives one sequence on the fake cluster, faults injected at
named crash points (:mod:`rbdmig.faults`, the ``at_point`` fixture),
never by sleeping, and asserts the invariant: one complete copy of the
volume where its record says it is, and nothing removed that rbdmig did
not create.  Each failed, showing its defect, before the fix it now
guards.
"""

import argparse
import io

import pytest

from rbdmig import exception
from rbdmig.cmd import migrations as cli_migrations
from tests.unit import rbd_fixtures as fx
from tests.unit import seams

GiB = 1 << 30
DATA = seams.DATA


@pytest.fixture
def ceph():
    return fx.make_ceph()


@pytest.fixture
def svc(ceph, tmp_path):
    return seams.service(ceph, tmp_path)


# -- Ctrl-C once the source is going ------------------------------------------

@pytest.mark.parametrize('path, point', [
    # The generic copy: Ctrl-C just as the source's removal returned.
    ('generic', 'service.remove_source.after'),
    # The assisted move: Ctrl-C as the retired source is being removed
    # (the journal says ``removing``: Ceph's recovery finishes it).
    (None, 'engine.removing'),
])
def test_an_interrupt_after_the_source_went_never_records_the_move_failed(
        svc, ceph, at_point, path, point):
    # ``rbdmig migrate --wait`` and Ctrl-C (main() catches it: exit 130).
    # The engine handles BaseException (it undoes what it built before
    # the copy took the name); the service does not: Stood and
    # Unfinished are raised only for an Exception, and a KeyboardInterrupt
    # reaches _run's ``except BaseException``, which records ``error``
    # with the volume on ceph-a.  The source is gone (generic) or Ceph's
    # recovery removes it (assisted); the service's recovery looks only
    # at running records.  The record names an image that is no more,
    # and the copy on ceph-b is in no record (``rbdmig delete`` then
    # "deletes" the volume and leaves it there, nameless).
    record = seams.volume(svc, ceph)

    def interrupt():
        raise KeyboardInterrupt()

    at_point[point] = interrupt
    with pytest.raises(KeyboardInterrupt):
        svc.migrate(record.id, 'ceph-b', method=path)
    seams.dead_processes(svc)
    svc.drivers['ceph-a'].recover_migrations()
    outcomes = svc.recover()

    pool, name = seams.where(svc, ceph, record.id)
    assert seams.read(ceph, pool, name, 0, len(DATA)) == DATA, outcomes


# -- a drain run again after its process died ---------------------------------

def test_a_drain_run_again_never_says_moved_what_its_dead_run_left(
        svc, ceph, at_point, monkeypatch):
    # ``rbdmig drain`` is killed mid-move; the operator runs it again on
    # the same host.  _drained_elsewhere sees the volume's migration
    # running on "another host" (this host, the dead pid), reports
    # "being moved by host:pid" and counts it drained: the drain returns
    # 0 and the CLI prints "every volume moved", exit 0, while the
    # volume is on the source and nothing moves it.  An operator who
    # drains a pool to retire it is told it is empty.  A migration whose
    # process is known dead (lease.alive) is not being moved.
    record = seams.volume(svc, ceph)
    revive = seams.silenced(svc, monkeypatch)

    def die():
        raise seams.Killed('as the move began')

    at_point['service.migrating'] = die
    with pytest.raises(seams.Killed):
        svc.drain('ceph-a', 'ceph-b', parallel=1)
    revive()
    seams.dead_processes(svc)

    reported = []
    failed = svc.drain('ceph-a', 'ceph-b', parallel=1,
                       report=lambda vol, what: reported.append(what))

    if failed == 0:
        # "every volume moved": then it has.
        assert svc.db.get_volume(record.id).backend == 'ceph-b', reported


# -- import, while a move into the backend is stranded ----------------------

def test_import_never_adopts_the_copy_of_a_move_in_flight(
        svc, ceph, at_point, monkeypatch):
    # An assisted move is killed as it removes the retired source: the
    # verified copy holds the volume's name on ceph-b (still tagged with
    # the migration's id), the journal in ceph-a's pool says
    # ``removing``, the database names ceph-a.  ``rbdmig import ceph-b``
    # (which sets up only ceph-b's driver: ceph-a's journal is not
    # recovered) lists that image and records it as a new volume.  The
    # recovery of the move then cannot record it on ceph-b (the name is
    # taken there: DBDuplicateEntry, raised out of Service.recover), and
    # the adopted record is the only one naming the data: deleting it,
    # a stray duplicate to the operator, removes the volume.
    record = seams.volume(svc, ceph)
    revive = seams.silenced(svc, monkeypatch)

    def die():
        raise seams.Killed('removing the source')

    at_point['engine.removing'] = die
    with pytest.raises(seams.Killed):
        svc.migrate(record.id, 'ceph-b')
    revive()
    adopted = svc.adopt('ceph-b')
    seams.dead_processes(svc)
    svc.drivers['ceph-a'].recover_migrations()
    try:
        svc.recover()
    except Exception:  # noqa: BLE001 - looked at below
        pass
    for other in adopted:
        svc.delete(other.id)

    pool, name = seams.where(svc, ceph, record.id)
    assert seams.read(ceph, pool, name, 0, len(DATA)) == DATA


# -- an interrupt, at every other phase ---------------------------------------

@pytest.mark.parametrize('path, point', [
    # The engine undoes what it built, and closes its journal.
    (None, 'engine.copied'),
    # The generic copy, complete and verified, its record ``migrating``.
    ('generic', 'service.verified'),
])
def test_an_interrupt_before_the_copy_is_whole_still_ends_on_the_source(
        svc, ceph, at_point, path, point):
    record = seams.volume(svc, ceph)

    def interrupt():
        raise KeyboardInterrupt()

    at_point[point] = interrupt
    with pytest.raises(KeyboardInterrupt):
        svc.migrate(record.id, 'ceph-b', method=path)
    if path is None:
        # Ended there and then, as before: nothing left to recover.
        assert svc.show(record.id)['migration_status'] == 'error'
        assert seams.images(ceph, 'ssd') == []
    seams.dead_processes(svc)
    outcomes = svc.recover()

    found = svc.show(record.id)
    assert (found['backend'], found['migration_status']) == (
        'ceph-a', 'error'), outcomes
    pool, name = seams.where(svc, ceph, record.id)
    assert seams.read(ceph, pool, name, 0, len(DATA)) == DATA


@pytest.mark.parametrize('path, point, ends_on', [
    # The source retired (renamed out of clients' reach), journaled:
    # Ceph's recovery gives it its name back.
    (None, 'engine.retired', 'ceph-a'),
    # The driver moved it; recording that was interrupted.
    (None, 'service.assisted', 'ceph-b'),
    # The generic copy's record says ``completing``; the source is
    # still there (recovery finishes the move forward).
    ('generic', 'service.completing', 'ceph-b'),
])
def test_an_interrupt_once_the_move_may_have_stood_is_left_to_recovery(
        svc, ceph, at_point, path, point, ends_on):
    record = seams.volume(svc, ceph)

    def interrupt():
        raise KeyboardInterrupt()

    at_point[point] = interrupt
    with pytest.raises(KeyboardInterrupt):
        svc.migrate(record.id, 'ceph-b', method=path)
    assert svc.show(record.id)['migration_status'] in (
        'migrating', 'completing')
    seams.dead_processes(svc)
    svc.drivers['ceph-a'].recover_migrations()
    outcomes = svc.recover()

    found = svc.show(record.id)
    assert found['migration_status'] in ('success', 'error'), outcomes
    pool, name = seams.where(svc, ceph, record.id)
    assert found['backend'] == ends_on, outcomes
    assert seams.read(ceph, pool, name, 0, len(DATA)) == DATA
    other = {'hdd': 'ssd', 'ssd': 'hdd'}[pool]
    assert seams.images(ceph, other) == [], 'a second copy was left'


# -- import beside moves ------------------------------------------------------

def test_import_never_adopts_an_image_tagged_as_a_migrations_copy(
        svc, ceph, caplog):
    # A copy whose move this database does not know (another database,
    # or its records lost): the tag alone says what it is.
    ioctx = seams.ioctx(ceph, 'ssd')
    ceph.rbd.RBD().create(ioctx, 'volume-copy', GiB)
    with ceph.rbd.Image(ioctx, 'volume-copy') as image:
        image.metadata_set('rbdmig.migration', 'a-migration-id')
    ceph.rbd.RBD().create(ioctx, 'plain', GiB)

    adopted = svc.adopt('ceph-b')

    assert [r.name for r in adopted] == ['plain']
    assert 'Not listing volume-copy' in caplog.text
    assert 'a-migration-id' in caplog.text


def test_import_never_adopts_the_name_of_a_volume_moving_into_it(
        svc, ceph, caplog):
    record = seams.volume(svc, ceph)
    migration = svc.request(record.id, 'ceph-b')
    # Untagged, under the volume's name: a move's copy all the same.
    ceph.rbd.RBD().create(seams.ioctx(ceph, 'ssd'), record.name, GiB)

    assert svc.adopt('ceph-b') == []
    assert 'migration %d of volume %s is moving it there' % (
        migration.id, record.id) in caplog.text
    assert svc.adopt('ceph-a') == []  # its source: known


# -- one migration's recovery failing ----------------------------------------

def test_one_failing_recovery_never_stops_the_others(svc, ceph, monkeypatch):
    first, second = seams.volume(svc, ceph), seams.volume(svc, ceph)
    claimed = [svc.request(v.id, 'ceph-b') for v in (first, second)]
    seams.dead_processes(svc)
    real = svc._recover_assisted

    def broken(migration, record):
        if migration.id == claimed[0].id:
            raise RuntimeError('the database went away')
        return real(migration, record)

    monkeypatch.setattr(svc, '_recover_assisted', broken)
    outcomes = svc.recover()

    assert [(o.migration_id, o.failed) for o in outcomes] == [
        (claimed[0].id, True), (claimed[1].id, False)]
    assert 'the database went away' in outcomes[0].outcome
    assert svc.show(first.id)['migration_status'] == 'starting'
    assert svc.show(second.id)['migration_status'] == 'error'

    # The CLI says it, and exits non-zero.
    seams.dead_processes(svc)
    out = io.StringIO()
    code = cli_migrations._recover(
        svc, argparse.Namespace(backend=[], any_host=False), out)
    assert code == 1
    assert 'migration %d: recovery failed: the database went away' % (
        claimed[0].id) in out.getvalue()


# -- a drain run again, its dead run's move left to recover ------------------

def test_a_drain_counts_a_dead_runs_move_it_cannot_recover_not_moved(
        svc, ceph, monkeypatch):
    record = seams.volume(svc, ceph)
    svc.request(record.id, 'ceph-b')
    seams.dead_processes(svc)
    # Ceph's journal still holds the move: only its recovery may say
    # where the volume is.
    monkeypatch.setattr(svc.drivers['ceph-a'], 'migration_journaled',
                        lambda volume: True)

    reported = []
    failed = svc.drain('ceph-a', 'ceph-b', parallel=1,
                       report=lambda vol, what: reported.append(what))

    assert failed == 1
    (what,) = reported
    assert 'whose process is gone' in what, what
    assert what.endswith('it did not move'), what
    assert svc.db.get_volume(record.id).backend == 'ceph-a'


def test_a_copy_adopted_before_is_never_deleted_as_a_duplicate(svc, ceph):
    # A database where an earlier import adopted a move's copy (before
    # import knew better): deleting that record would delete the
    # volume's image once the move stood.
    record = seams.volume(svc, ceph)
    migration = svc.request(record.id, 'ceph-b')
    ceph.rbd.RBD().create(seams.ioctx(ceph, 'ssd'), record.name, GiB)
    adopted = svc.db.create_volume('ceph-b', 1, name=record.name)

    with pytest.raises(exception.InvalidVolume) as err:
        svc.delete(adopted.id)
    assert 'where migration %d moves volume %s' % (
        migration.id, record.id) in str(err.value)
    assert seams.images(ceph, 'ssd') == [record.name]
