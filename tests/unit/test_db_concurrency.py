"""Several processes on one SQLite file: CAS races, readers and a writer."""

import multiprocessing
import queue
import sqlite3

import pytest

from rbdmig.migration import states
from tests.unit import db_fixtures as fx

ROUNDS = 20
SPAWN = multiprocessing.get_context('spawn')


@pytest.fixture
def db(tmp_path):
    db = fx.make_db(tmp_path)
    yield db
    db.dispose()


def _collect(results, count):
    got = []
    for _ in range(count):
        try:
            got.append(results.get(timeout=120))
        except queue.Empty:
            pytest.fail('only %d of %d results came back: %s'
                        % (len(got), count, got))
    return got


def _wait(event, proc, timeout=120):
    """Wait for ``event`` while ``proc`` lives; return whether it is set."""
    for _ in range(int(timeout * 10)):
        if event.wait(timeout=0.1) or not proc.is_alive():
            break
    return event.is_set()


def _race(tmp_path, racer, volume_ids):
    """Run ``racer`` in two spawned processes; return their verdicts."""
    barrier = SPAWN.Barrier(2)
    results = SPAWN.Queue()
    procs = [SPAWN.Process(target=racer,
                           args=(fx.url_for(tmp_path), volume_ids, barrier,
                                 results))
             for _ in range(2)]
    for proc in procs:
        proc.start()
    try:
        verdicts = _collect(results, 2 * len(volume_ids))
    finally:
        for proc in procs:
            proc.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    by_volume = {}
    for volume_id, verdict in verdicts:
        by_volume.setdefault(volume_id, []).append(verdict)
    return by_volume


def test_two_processes_race_a_cas_and_exactly_one_wins(db, tmp_path):
    volumes = [db.create_volume('hdd', 1).id for _ in range(ROUNDS)]
    by_volume = _race(tmp_path, fx.cas_racer, volumes)
    for volume_id in volumes:
        assert sorted(by_volume[volume_id]) == ['lost', 'won'], volume_id
        assert db.get_volume(volume_id).migration_status == states.STARTING


def test_two_processes_race_to_start_and_one_migration_is_recorded(
        db, tmp_path):
    volumes = [db.create_volume('hdd', 1).id for _ in range(ROUNDS)]
    by_volume = _race(tmp_path, fx.start_racer, volumes)
    for volume_id in volumes:
        assert sorted(by_volume[volume_id]) == ['lost', 'won'], volume_id
        assert len(db.list_migrations(volume_id=volume_id)) == 1


def test_another_process_reads_progress_while_it_is_written(db, tmp_path):
    volume = db.create_volume('hdd', 1)
    migration = db.start_migration(volume.id, 'ssd')
    total = 1 << 30
    halfway, go = SPAWN.Event(), SPAWN.Event()
    results = SPAWN.Queue()
    # A short busy timeout: if the open read below blocked the writer
    # (no WAL), the writer would fail in 3 s rather than wait 30.
    writer = SPAWN.Process(target=fx.progress_writer,
                           args=(fx.url_for(tmp_path, query='?timeout=3'),
                                 migration.id, total, halfway, go, results))
    # A reader holds a transaction open (e.g. a slow "rbdmig show").
    reader = sqlite3.connect(str(tmp_path / 'rbdmig.sqlite'),
                             isolation_level=None)
    try:
        reader.execute('BEGIN')
        query = 'SELECT bytes_done FROM migrations WHERE id = ?'
        assert reader.execute(query, (migration.id,)).fetchone() == (0,)
        writer.start()
        assert _wait(halfway, writer), results.get(timeout=10)
        seen = db.get_migration(migration.id)
        assert (seen.percent, seen.rate, seen.eta) == (50.0, 1e6, 9.0)
        assert seen.checkpoint_offset == total // 2
        go.set()
        assert results.get(timeout=120) == 'done'
        writer.join(timeout=60)
        assert writer.exitcode == 0
        # The open read still sees its snapshot; a new one sees the end.
        assert reader.execute(query, (migration.id,)).fetchone() == (0,)
        reader.execute('COMMIT')
        assert reader.execute(query, (migration.id,)).fetchone() == (total,)
    finally:
        reader.close()
        if writer.is_alive():
            writer.kill()
    assert db.get_migration(migration.id).percent == 100.0
