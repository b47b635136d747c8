"""cinder-volume stays responsive, in the mode it runs in, during moves."""

import time

import pytest

from cinder import monkey_patch

from rbdmig import native
from rbdmig.ceph import location
from rbdmig.ceph import methods
from tests.compat import conftest
from tests.compat import heartbeat
from tests.compat import images

# A ready greenthread must never wait longer than this (the bound;
# the tests also hold stalls under a quarter of the move's time, which a
# blocking copy, as the control test shows, would exceed).
STALL_BOUND = 1.0
# Enough data that a copy blocking the hub would stall it past the bound.
BIG_EXTENTS = 768  # MiB of random data in the 1 GiB volume


def test_runs_in_the_mode_cinder_volume_was_started_in():
    expected = conftest.MODE == 'eventlet'
    assert monkey_patch.is_patched() is expected
    assert native.patched() is expected


def _big_volume(cinder, cleanup, cluster, backend):
    volume = cinder.create_volume(backend)
    cleanup.add('delete %s' % volume.id, cinder.delete_volume, volume)
    pool = cinder.manager(backend).driver.configuration.rbd_pool
    return volume, images.fill(cluster, pool, volume.name,
                               extents=BIG_EXTENTS)


def test_the_heartbeat_sees_a_call_that_blocks(ceph_cluster, cleanup,
                                               record):
    """The monitor is not blind: a raw librbd copy, as Cinder's own
    migrate_volume makes it (no native thread), stalls the hub."""
    import rados
    import rbd
    name = 'blocking-%s' % images.token()
    client = ceph_cluster.connect()
    cleanup.add('disconnect', client.shutdown)
    src = client.open_ioctx('volumes-a')
    dst = client.open_ioctx('volumes-b')
    rbd.RBD().create(src, name, 1 << 30)
    cleanup.add('remove source', images.remove, ceph_cluster, 'volumes-a',
                name)
    images.fill(ceph_cluster, 'volumes-a', name, extents=BIG_EXTENTS)
    assert isinstance(src, rados.Ioctx)

    with heartbeat.Heartbeat() as beat, rbd.Image(src, name) as image:
        start = time.monotonic()
        image.copy(dst, name)
        took = time.monotonic() - start
    cleanup.add('remove copy', images.remove, ceph_cluster, 'volumes-b',
                name)

    record('raw rbd.Image.copy (%d MiB), no native thread' % BIG_EXTENTS,
           'took %.2f s, longest stall %.2f s' % (took, beat.max_stall))
    if conftest.MODE == 'eventlet':
        assert beat.max_stall > 0.8 * took  # the hub was blocked
    else:
        assert beat.max_stall < took / 4  # native threads: unaffected


@pytest.mark.parametrize('method', sorted(methods.METHODS))
def test_no_method_stalls_the_service(cinder, ceph_cluster, cleanup, method,
                                      record):
    volume, checksum = _big_volume(cinder, cleanup, ceph_cluster,
                                   'rbdmig-a')
    cinder.conf.set_override('rbd_migration_method', method,
                             group='rbdmig-a')
    try:
        with heartbeat.Heartbeat() as beat:
            start = time.monotonic()
            moved = cinder.migrate(volume, 'rbdmig-b')
            took = time.monotonic() - start
    finally:
        cinder.conf.clear_override('rbd_migration_method', group='rbdmig-a')

    record('assisted migrate, %s (%d MiB of data)' % (method, BIG_EXTENTS),
           'took %.2f s, longest stall %.3f s (%d beats)'
           % (took, beat.max_stall, beat.beats))
    assert moved.migration_status == 'success'
    assert moved.name == volume.name
    assert images.digest(ceph_cluster, 'volumes-b', volume.name) == checksum
    # Blocking would stall it for most of the move (see the test above).
    assert beat.max_stall < min(STALL_BOUND, took / 4)


def test_an_unreachable_destination_is_refused_in_bounded_time(
        cinder, ceph_cluster, cleanup, tmp_path, record):
    volume = cinder.create_volume('rbdmig-a')
    cleanup.add('delete %s' % volume.id, cinder.delete_volume, volume)
    checksum = images.fill(ceph_cluster, 'volumes-a', volume.name, extents=4)
    # A ceph.conf whose only monitor does not exist.
    conf = tmp_path / 'gone.conf'
    conf.write_text('[global]\nmon host = v1:127.0.0.1:9\n'
                    'auth client required = none\n')
    caps = {'storage_protocol': 'ceph', 'location_info':
            location.format_location('ceph', str(conf), ceph_cluster.fsid,
                                     None, 'volumes-b')}
    driver = cinder.manager('rbdmig-a').driver
    # 2 attempts of 5 s and 1 s between them (conftest.LIMITS).
    bound = driver.migration_backend().limits.worst_case()

    with heartbeat.Heartbeat() as beat:
        start = time.monotonic()
        answer = driver.migrate_volume(cinder.ctxt, volume, {
            'host': 'compat@gone#gone', 'capabilities': caps})
        took = time.monotonic() - start

    record('unreachable destination refused',
           'in %.2f s (bound %d s), longest stall %.3f s'
           % (took, bound, beat.max_stall))
    assert answer == (False, None)
    assert bound == 11
    assert bound - 1 <= took <= bound + 3
    assert beat.max_stall < STALL_BOUND
    assert images.digest(ceph_cluster, 'volumes-a', volume.name) == checksum
