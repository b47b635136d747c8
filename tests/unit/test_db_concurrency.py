"""Several processes on one database: claims racing, readers and a writer."""

import multiprocessing
import queue
import sqlite3

import psycopg2
import pytest
import sqlalchemy as sa

from rbdmig.db import api
from rbdmig.db import migration
from rbdmig.db import states
from tests.unit import db_fixtures as fx

ROUNDS = 20
# Claimers racing for each volume, and how many volumes they race for.
CLAIMERS = 8
CLAIMED = 25


def _processes():
    """Return the start method for the racers: fresh processes, quickly.

    They are forked from a server that imported the racers once: spawning
    eight interpreters that each import rbdmig takes seconds.
    """
    context = multiprocessing.get_context('forkserver')
    context.set_forkserver_preload(['tests.unit.db_fixtures'])
    return context


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


def _race(url, racer, ids, processes=2):
    """Run ``racer`` on ``ids`` in ``processes`` processes at once.

    :returns: each id's verdicts, one per process.
    """
    context = _processes()
    barrier = context.Barrier(processes)
    results = context.Queue()
    procs = [context.Process(target=racer,
                             args=(url, ids, barrier, results))
             for _ in range(processes)]
    for proc in procs:
        proc.start()
    try:
        verdicts = _collect(results, processes * len(ids))
    finally:
        for proc in procs:
            proc.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * processes
    by_id = {}
    for id_, verdict in verdicts:
        by_id.setdefault(id_, []).append(verdict)
    return by_id


def test_two_processes_race_a_cas_and_exactly_one_wins(db, db_url):
    volumes = [db.create_volume('hdd', 1).id for _ in range(ROUNDS)]
    by_volume = _race(db_url, fx.cas_racer, volumes)
    for volume_id in volumes:
        assert sorted(by_volume[volume_id]) == ['lost', 'won'], volume_id
        assert db.get_volume(volume_id).migration_status == states.STARTING


def test_two_processes_race_to_start_and_one_migration_is_recorded(
        db, db_url):
    volumes = [db.create_volume('hdd', 1).id for _ in range(ROUNDS)]
    by_volume = _race(db_url, fx.start_racer, volumes)
    for volume_id in volumes:
        assert sorted(by_volume[volume_id]) == ['lost', 'won'], volume_id
        assert len(db.list_migrations(volume_id=volume_id)) == 1


def test_many_processes_race_to_claim_and_each_volume_is_claimed_once(
        db, db_url):
    """Eight claimers at once on each volume: one wins, none fails."""
    volumes = [db.create_volume('hdd', 1).id for _ in range(CLAIMED)]
    by_volume = _race(db_url, fx.start_racer, volumes, processes=CLAIMERS)
    for volume_id in volumes:
        assert sorted(by_volume[volume_id]) == (
            ['lost'] * (CLAIMERS - 1) + ['won']), volume_id
        assert len(db.list_migrations(volume_id=volume_id)) == 1
        assert db.get_volume(volume_id).migration_status == states.STARTING
    assert len(db.list_migrations()) == CLAIMED


def test_many_processes_race_to_take_over_and_one_runs_each(db, db_url):
    """Recoveries on many hosts racing for dead migrations: one gets each."""
    migrations = [db.start_migration(db.create_volume('hdd', 1).id, 'ssd',
                                     host='gone:1').id
                  for _ in range(ROUNDS)]
    by_migration = _race(db_url, fx.take_over_racer, migrations,
                         processes=CLAIMERS)
    for migration_id in migrations:
        assert sorted(by_migration[migration_id]) == (
            ['lost'] * (CLAIMERS - 1) + ['won']), migration_id
        assert db.get_migration(migration_id).host != 'gone:1'


def test_processes_starting_at_once_on_a_new_database_all_start(
        empty_db_url):
    """Every command applies the schema as it starts: none may fail."""
    by_name = _race(empty_db_url, fx.db_sync_racer, ['schema'],
                    processes=CLAIMERS)
    assert by_name == {'schema': ['synced'] * CLAIMERS}
    assert migration.db_version(empty_db_url) is not None
    db = api.API(empty_db_url)
    try:
        assert db.list_volumes() == []
    finally:
        db.dispose()


def _snapshot_reader(url):
    """Return a DB-API connection whose transaction keeps one snapshot.

    SQLite's read transaction does; PostgreSQL's needs REPEATABLE READ
    (READ COMMITTED takes a new snapshot at every statement).
    """
    url = sa.engine.make_url(url)
    if url.get_backend_name() == 'sqlite':
        conn = sqlite3.connect(url.database, isolation_level=None)
        conn.execute('BEGIN')
        return conn
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username,
                            password=url.password, dbname=url.database)
    conn.set_session(isolation_level='REPEATABLE READ')
    return conn


def _fail_fast(url):
    """Return ``url`` whose writers give up on a lock after 3 s."""
    url = sa.engine.make_url(url)
    if url.get_backend_name() == 'sqlite':
        url = url.update_query_dict({'timeout': '3'})
    else:
        url = url.update_query_dict({'options': '-c lock_timeout=3s'})
    return url.render_as_string(hide_password=False)


def test_another_process_reads_progress_while_it_is_written(db, db_url):
    volume = db.create_volume('hdd', 1)
    migration = db.start_migration(volume.id, 'ssd')
    total = 1 << 30
    context = _processes()
    halfway, go = context.Event(), context.Event()
    results = context.Queue()
    # Writers that give up in 3 s: if the open read below blocked the
    # writer (SQLite without WAL), it would fail rather than wait 30 s.
    writer = context.Process(target=fx.progress_writer,
                           args=(_fail_fast(db_url), migration.id, total,
                                 halfway, go, results))
    # A reader holds a transaction open (e.g. a slow "rbdmig show").
    reader = _snapshot_reader(db_url)
    cursor = reader.cursor()

    def read():
        cursor.execute('SELECT bytes_done FROM migrations WHERE id = %d'
                       % migration.id)
        return cursor.fetchone()

    try:
        assert read() == (0,)
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
        assert read() == (0,)
        reader.commit()
        assert read() == (total,)
    finally:
        reader.close()
        if writer.is_alive():
            writer.kill()
    assert db.get_migration(migration.id).percent == 100.0
