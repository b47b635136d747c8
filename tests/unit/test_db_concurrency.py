"""Several processes on one SQLite file: CAS races, readers and a writer."""

import multiprocessing
import queue

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

