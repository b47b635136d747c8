"""Migration records: claim, steps, end, progress, checkpoint, resume."""

import os

import pytest

from rbdmig.db import migration_records
from rbdmig import exception
from rbdmig.db import states
from tests.unit import db_fixtures as fx

GiB = 1 << 30
CHUNK = 4 << 20


def _generic_to_ssd(db, volume, force=False):
    """Start a generic migration of ``volume`` to ssd, hidden destination."""
    migration = db.start_migration(volume.id, 'ssd', host='h1:42',
                                   force=force)
    dest = db.create_volume('ssd', volume.size_gib, name=volume.name,
                            hidden=True, status=states.CREATING)
    migration = db.advance_migration(
        migration.id, states.MIGRATING, path=states.GENERIC,
        method='copy', dest_volume_id=dest.id,
        bytes_total=volume.size_gib * GiB)
    return migration, dest


def test_start_claims_the_volume_and_records_the_migration(db):
    volume = db.create_volume('hdd', 1)
    migration = db.start_migration(volume.id, 'ssd', host='h1:42')
    assert (migration.status, migration.source_backend,
            migration.dest_backend, migration.host, migration.bytes_done) == (
        'starting', 'hdd', 'ssd', 'h1:42', 0)
    got = db.get_volume(volume.id)
    assert (got.status, got.migration_status) == ('available', 'starting')
    assert db.latest_migration(volume.id).id == migration.id


def test_force_puts_the_volume_in_maintenance_and_success_restores(db):
    volume = db.create_volume('hdd', 1)
    migration, dest = _generic_to_ssd(db, volume, force=True)
    got = db.get_volume(volume.id)
    assert (got.status, got.previous_status) == ('maintenance', 'available')
    db.advance_migration(migration.id, states.COMPLETING)
    done = db.finish_migration(migration.id, states.SUCCESS)
    assert done.status == 'success' and done.finished_at is not None
    got = db.get_volume(volume.id)
    assert (got.status, got.previous_status, got.migration_status,
            got.backend, got.name) == (
        'available', None, 'success', 'ssd', volume.name)
    # The hidden destination is gone, the history stays.
    assert [v.id for v in db.list_volumes(include_hidden=True)] == [volume.id]
    assert db.get_migration(migration.id).dest_volume_id is None


def test_error_restores_the_source_and_keeps_the_destination(db):
    volume = db.create_volume('hdd', 1)
    migration, dest = _generic_to_ssd(db, volume, force=True)
    failed = db.finish_migration(
        migration.id, states.ERROR,
        error='copy failed: rbd://admin:password=hunter2@mon')
    assert failed.status == 'error'
    assert 'hunter2' not in failed.error
    got = db.get_volume(volume.id)
    assert (got.status, got.migration_status, got.backend) == (
        'available', 'error', 'hdd')
    assert db.get_volume(dest.id).hidden
    assert db.latest_migration(volume.id).dest_volume_id == dest.id


def test_success_can_rename_the_volume(db):
    volume = db.create_volume('hdd', 1)
    migration = db.start_migration(volume.id, 'files')
    db.advance_migration(migration.id, states.MIGRATING,
                         path=states.ASSISTED)
    db.advance_migration(migration.id, states.COMPLETING)
    db.finish_migration(migration.id, states.SUCCESS, name='new-name')
    got = db.get_volume(volume.id)
    assert (got.backend, got.name) == ('files', 'new-name')


def test_the_host_defaults_to_this_process(db):
    volume = db.create_volume('hdd', 1)
    migration = db.start_migration(volume.id, 'ssd')
    assert migration.host == migration_records.this_host()
    assert migration.host.endswith(':%d' % os.getpid())


def test_a_second_start_is_refused_while_one_runs(db):
    volume = db.create_volume('hdd', 1)
    db.start_migration(volume.id, 'ssd')
    with pytest.raises(exception.MigrationInProgress) as err:
        db.start_migration(volume.id, 'files')
    assert str(err.value) == (
        'Volume %s is already being migrated (starting).' % volume.id)
    assert len(db.list_migrations(volume_id=volume.id)) == 1


def test_a_volume_can_move_again_after_success_or_error(db):
    volume = db.create_volume('hdd', 1)
    first = db.start_migration(volume.id, 'ssd')
    db.finish_migration(first.id, states.ERROR, error='no space')
    second = db.start_migration(volume.id, 'ssd')
    assert second.id != first.id
    assert db.latest_migration(volume.id).id == second.id
    db.advance_migration(second.id, states.MIGRATING, path='assisted')
    db.advance_migration(second.id, states.COMPLETING)
    db.finish_migration(second.id, states.SUCCESS)
    third = db.start_migration(volume.id, 'hdd')
    assert third.source_backend == 'ssd'


@pytest.mark.parametrize('setup,dest,force', [
    ({'status': states.CREATING}, 'ssd', False),
    ({}, 'hdd', False),                       # already there
    ({'hidden': True}, 'ssd', False),         # a destination itself
    ({'status': states.IN_USE}, 'ssd', True),  # only available is forced
])
def test_start_refuses_a_volume_that_cannot_move(db, setup, dest, force):
    volume = db.create_volume('hdd', 1,
                              status=setup.get('status', 'available'),
                              hidden=setup.get('hidden', False))
    before = fx.volume_row(db, volume.id)
    with pytest.raises(exception.InvalidVolume):
        db.start_migration(volume.id, dest, force=force)
    assert fx.volume_row(db, volume.id) == before
    assert db.list_migrations() == []


def test_an_in_use_volume_moves_without_force(db):
    volume = db.create_volume('hdd', 1, status=states.IN_USE)
    db.start_migration(volume.id, 'ssd')
    assert db.get_volume(volume.id).status == states.IN_USE


def test_start_of_a_missing_volume(db):
    with pytest.raises(exception.VolumeNotFound):
        db.start_migration('nope', 'ssd')


def test_steps_follow_the_table(db):
    volume = db.create_volume('hdd', 1)
    migration = db.start_migration(volume.id, 'ssd')
    with pytest.raises(exception.InvalidTransition):
        db.advance_migration(migration.id, states.COMPLETING)
    assert db.get_migration(migration.id).status == states.STARTING
    assert db.get_volume(volume.id).migration_status == states.STARTING
    with pytest.raises(exception.InvalidTransition):
        db.finish_migration(migration.id, states.SUCCESS)
    db.finish_migration(migration.id, states.ERROR)
    with pytest.raises(exception.InvalidTransition):
        db.finish_migration(migration.id, states.ERROR)
    with pytest.raises(exception.MigrationNotFound):
        db.advance_migration(12345, states.MIGRATING)


@pytest.mark.parametrize('call', [
    lambda db, m: db.advance_migration(m, states.SUCCESS),
    lambda db, m: db.advance_migration(m, states.MIGRATING, path='teleport'),
    lambda db, m: db.advance_migration(m, states.MIGRATING, volume_id='x'),
    lambda db, m: db.finish_migration(m, states.COMPLETING),
    lambda db, m: db.save_checkpoint(m, -1, CHUNK),
    lambda db, m: db.save_checkpoint(m, 0, 0),
])
def test_bad_arguments_are_refused(db, call):
    volume = db.create_volume('hdd', 1)
    migration = db.start_migration(volume.id, 'ssd')
    with pytest.raises(exception.InvalidInput):
        call(db, migration.id)
    got = db.get_migration(migration.id)
    assert (got.status, got.path, got.checkpoint_offset) == (
        'starting', None, None)


def test_a_volume_reset_by_someone_else_stops_the_steps(db):
    volume = db.create_volume('hdd', 1)
    migration = db.start_migration(volume.id, 'ssd')
    # An operator (or crash recovery) marked the volume's migration failed.
    assert db.compare_and_set_status(
        volume.id, {'migration_status': states.STARTING},
        {'migration_status': states.ERROR})
    with pytest.raises(exception.ConcurrentUpdate):
        db.advance_migration(migration.id, states.MIGRATING, path='generic')
    # The whole step was rolled back.
    got = db.get_migration(migration.id)
    assert (got.status, got.path) == ('starting', None)


def test_progress_round_trip_and_percent(db):
    volume = db.create_volume('hdd', 2)
    migration, _dest = _generic_to_ssd(db, volume)
    assert db.get_migration(migration.id).percent == 0.0
    assert db.update_progress(migration.id, GiB // 2, rate=100e6, eta=15.0)
    got = db.get_migration(migration.id)
    assert (got.bytes_done, got.bytes_total, got.rate, got.eta) == (
        GiB // 2, 2 * GiB, 100e6, 15.0)
    assert got.percent == 25.0
    assert db.update_progress(migration.id, GiB, bytes_total=4 * GiB)
    assert db.get_migration(migration.id).percent == 25.0


def test_percent_is_unknown_without_a_total(db):
    volume = db.create_volume('hdd', 1)
    migration = db.start_migration(volume.id, 'ssd')
    db.update_progress(migration.id, 10)
    assert db.get_migration(migration.id).percent is None


def test_progress_of_an_ended_migration_tells_the_copy_to_stop(db):
    volume = db.create_volume('hdd', 1)
    migration, _dest = _generic_to_ssd(db, volume)
    db.finish_migration(migration.id, states.ERROR, error='interrupted')
    assert db.update_progress(migration.id, 5) is False
    assert db.save_checkpoint(migration.id, CHUNK, CHUNK) is False
    assert db.get_migration(migration.id).bytes_done == 0
    with pytest.raises(exception.MigrationNotFound):
        db.update_progress(999, 5)


def test_checkpoint_round_trip_and_resume(db):
    volume = db.create_volume('hdd', 1)
    migration, dest = _generic_to_ssd(db, volume)
    assert db.save_checkpoint(migration.id, 3 * CHUNK, CHUNK)
    db.finish_migration(migration.id, states.ERROR, error='host died')
    latest = db.latest_migration(volume.id)
    assert (latest.checkpoint_offset, latest.checkpoint_chunk_size) == (
        3 * CHUNK, CHUNK)
    resume = migration_records.resume_offset
    assert resume(latest, dest.id, CHUNK) == 3 * CHUNK
    assert resume(latest, 'another-destination', CHUNK) == 0
    assert resume(latest, dest.id, 2 * CHUNK) == 0
    assert resume(None, dest.id, CHUNK) == 0
    # Once the destination record is deleted, nothing can resume into it.
    db.delete_volume(dest.id)
    assert resume(db.latest_migration(volume.id), dest.id, CHUNK) == 0


def test_a_checkpoint_past_the_end_is_ignored(db):
    volume = db.create_volume('hdd', 1)
    migration, dest = _generic_to_ssd(db, volume)
    db.save_checkpoint(migration.id, 2 * GiB, CHUNK)
    got = db.get_migration(migration.id)
    assert migration_records.resume_offset(got, dest.id, CHUNK) == 0


def test_deleting_a_volume_deletes_its_history(db):
    volume = db.create_volume('hdd', 1)
    other = db.create_volume('hdd', 1)
    ended = db.start_migration(volume.id, 'ssd')
    db.finish_migration(ended.id, states.ERROR, error='refused')
    kept = db.start_migration(other.id, 'ssd')
    assert db.delete_volume(volume.id)
    with pytest.raises(exception.MigrationNotFound):
        db.get_migration(ended.id)
    assert [m.id for m in db.list_migrations()] == [kept.id]


def test_list_and_latest_migrations(db):
    a = db.create_volume('hdd', 1)
    b = db.create_volume('hdd', 1)
    assert db.latest_migration(a.id) is None
    ma = db.start_migration(a.id, 'ssd', host='h1:1')
    mb = db.start_migration(b.id, 'ssd', host='h2:2')
    db.finish_migration(mb.id, states.ERROR)

    def ids(**kw):
        return [m.id for m in db.list_migrations(**kw)]

    assert ids() == [ma.id, mb.id]
    assert ids(running=True) == [ma.id]
    assert ids(running=False) == [mb.id]
    assert ids(host='h2:2') == [mb.id]
    assert ids(volume_id=a.id) == [ma.id]
    with pytest.raises(exception.MigrationNotFound):
        db.get_migration(999)


def test_a_runner_whose_migration_was_taken_over_changes_nothing(db):
    """The host column fences a migration's runner: once another host's
    recovery takes it over, every write naming the old runner fails (its
    heartbeat, checkpoint, progress and path say False; its steps and
    its end raise), and the new runner's succeed."""
    volume = db.create_volume('hdd', 1)
    migration, dest = _generic_to_ssd(db, volume)
    assert db.heartbeat(migration.id, runner='h1:42')
    assert db.take_over(db.get_migration(migration.id), host='h2:7')

    assert not db.heartbeat(migration.id, runner='h1:42')
    assert not db.save_checkpoint(migration.id, CHUNK, CHUNK,
                                  runner='h1:42')
    assert not db.update_progress(migration.id, CHUNK, runner='h1:42')
    assert not db.set_path(migration.id, states.GENERIC, runner='h1:42')
    for step in (lambda: db.advance_migration(
                     migration.id, states.COMPLETING, runner='h1:42'),
                 lambda: db.finish_migration(migration.id, states.ERROR,
                                             error='x', runner='h1:42')):
        with pytest.raises(exception.MigrationTakenOver,
                           match='run by h2:7 now, not by h1:42'):
            step()
    got = db.get_migration(migration.id)
    assert (got.status, got.host, got.checkpoint_offset) == (
        'migrating', 'h2:7', None)

    assert db.heartbeat(migration.id, runner='h2:7')
    assert db.save_checkpoint(migration.id, CHUNK, CHUNK, runner='h2:7')
    db.advance_migration(migration.id, states.COMPLETING, runner='h2:7')
    done = db.finish_migration(migration.id, states.SUCCESS, runner='h2:7')
    assert done.status == 'success'


def test_an_ended_migration_is_not_taken_over_but_ended(db):
    """A runner naming itself on an ended migration gets the transition
    error, not a take-over: nobody runs it."""
    volume = db.create_volume('hdd', 1)
    migration, dest = _generic_to_ssd(db, volume)
    db.finish_migration(migration.id, states.ERROR, error='x')

    assert not db.heartbeat(migration.id, runner='h1:42')
    with pytest.raises(exception.InvalidTransition):
        db.advance_migration(migration.id, states.COMPLETING,
                             runner='h1:42')
