"""A move into another Ceph cluster, done by rbdmig instead of Cinder."""

import time

from tests.compat import heartbeat
from tests.compat import images
from tests.compat import test_service

# A volume as most are: a quarter of it written (1 MiB extents).
DATA_MIB = 256


def test_rbdmig_moves_into_another_cluster_faster_than_cinder(
        cinder, ceph_cluster, ceph_cluster2, cleanup, record):
    volume = cinder.create_volume('rbdmig-a')
    cleanup.add('delete %s' % volume.id, cinder.delete_volume, volume)
    checksum = images.fill(ceph_cluster, 'volumes-a', volume.name,
                           extents=DATA_MIB)
    allocated = images.allocated(ceph_cluster, 'volumes-a', volume.name)

    # rbdmig: the other cluster's conf is readable here, so rbdmig copies
    # the volume itself, by extents, and keeps its name.
    with heartbeat.Heartbeat() as beat:
        start = time.monotonic()
        there = cinder.migrate(volume, 'other-a')
        assisted = time.monotonic() - start
    assert there.migration_status == 'success'
    assert there.host == 'compat@other-a#other-a'
    assert there.name == volume.name
    assert images.digest(ceph_cluster2, 'volumes-a', there.name) == checksum
    assert images.allocated(ceph_cluster2, 'volumes-a',
                            there.name) == allocated  # as thin
    assert volume.name not in images.names(ceph_cluster, 'volumes-a')
    assert beat.max_stall < min(test_service.STALL_BOUND, assisted / 4)

    # Cinder's own generic path on the same volume, back the other way
    # (force_host_copy): a new volume, both attached through os-brick.
    start = time.monotonic()
    back = cinder.migrate(there, 'rbdmig-a', force_host_copy=True)
    generic = time.monotonic() - start
    assert back.migration_status == 'success'
    assert images.digest(ceph_cluster, 'volumes-a', back.name) == checksum

    record('other cluster, 1 GiB volume with %d MiB of data:' % DATA_MIB, '')
    record('  rbdmig assisted (extents)',
           '%.2f s, longest stall %.3f s, destination allocates %d MiB'
           % (assisted, beat.max_stall, allocated >> 20))
    record('  Cinder generic (force_host_copy)',
           '%.2f s (%.1fx rbdmig\'s), destination allocates %d MiB'
           % (generic, generic / assisted, images.allocated(
               ceph_cluster, 'volumes-a', back.name) >> 20))
    assert assisted < generic
