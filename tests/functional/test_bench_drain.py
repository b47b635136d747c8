"""The bench's drain case, for real on a small sandbox: it moves them all.

Only that it works and accounts for each volume's move; never how fast.
"""

import pytest
import rbd

from rbdmig import ext
from rbdmig import sandbox
from rbdmig.bench import drain


def test_a_drain_of_twenty_thin_volumes_moves_every_one(tmp_path):
    # The case drains by offload: never skipped, tools/setup.sh builds it.
    assert ext.available(), ext.unavailable_reason()
    cluster = sandbox.Cluster(str(tmp_path / 'ceph'), name='drain-case')
    cluster.start()
    try:
        step, = drain.plan(20, [4])
        row = drain.run_in_process(cluster, step, drain.OFFLOAD,
                                   timeout=300)
        client = cluster.connect()
        try:
            found = {}
            for pool in cluster.pools:
                with client.open_ioctx(pool) as ioctx:
                    found[pool] = rbd.RBD().list(ioctx)
        finally:
            client.shutdown()
    finally:
        cluster.stop()
    assert row['ok'], row
    assert (row['adopted'], row['moved'], row['left']) == (20, 20, 0)
    assert row['method'] == drain.OFFLOAD and row['generic'] == 0
    assert row['per_volume'] == pytest.approx(row['seconds'] / 20)
    segments = {s['segment']: s for s in row['breakdown']}
    # Every move passed its checks, its claim, the engine's copy and
    # the service's end, once each.
    for segment in ('drain.begin -> drain.claimed',
                    'engine.copying -> engine.copied',
                    'service.success -> drain.end'):
        assert segments[segment]['count'] == 20, sorted(segments)
    # The run removed its volumes: the pools are as they were.
    assert found == {pool: [] for pool in cluster.pools}
