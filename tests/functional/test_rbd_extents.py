"""The ``extents`` migration method (librbd async I/O) on a real cluster."""

import pytest
import rbd

from rbdmig import exception
from rbdmig import native
from rbdmig.migration import progress
from tests.functional import helpers


def _drivers(cluster, **opts):
    opts.setdefault('rbd_migration_method', 'extents')
    return helpers.load_drivers(cluster, **{'ceph-a': opts})


@pytest.mark.parametrize('depth,chunk', [(1, 4 << 20), (16, 4 << 20),
                                         (7, 192 << 10)])
def test_moves_data_identically_and_skips_holes(ceph_cluster, depth, chunk,
                                                monkeypatch):
    # Relay progress every millisecond: a memstore copy takes ~0.1 s.
    monkeypatch.setattr(native, 'POLL_INTERVAL', 0.001)
    drivers = _drivers(ceph_cluster, rbd_migration_queue_depth=depth,
                       rbd_migration_chunk_size=chunk)
    volume, before = helpers.new_volume(drivers['ceph-a'], extents=24)
    allocated = helpers.allocated_bytes(ceph_cluster, 'volumes-a',
                                        volume.name)
    recorder = helpers.ProgressRecorder()
    assert drivers['ceph-a'].migrate_volume(
        None, volume, helpers.host_of(drivers['ceph-b']),
        callback=recorder) == (True, None)

    assert helpers.digest(drivers['ceph-b'], volume) == before
    assert helpers.allocated_bytes(ceph_cluster, 'volumes-b',
                                   volume.name) <= allocated
    assert volume.name not in helpers.images(ceph_cluster, 'volumes-a')
    seen = recorder.seen
    assert seen == sorted(seen) and len(set(seen)) > 3
    assert seen[-1] == 1 << 30
    drivers['ceph-b'].delete_volume(volume)


def test_zeros_written_inside_an_extent_stay_unallocated(ceph_cluster):
    drivers = _drivers(ceph_cluster)
    volume, _ = helpers.new_volume(drivers['ceph-a'], extents=0)
    handle = drivers['ceph-a'].open_volume(None, volume, 'r+b')
    try:
        handle.write(bytes(8 << 20))  # two objects of real zeros
        handle.write(b'data')
    finally:
        drivers['ceph-a'].close_volume(None, volume, handle)
    before = helpers.digest(drivers['ceph-a'], volume)

    drivers['ceph-a'].migrate_volume(None, volume,
                                     helpers.host_of(drivers['ceph-b']))

    assert helpers.digest(drivers['ceph-b'], volume) == before
    assert helpers.allocated_bytes(ceph_cluster, 'volumes-b',
                                   volume.name) <= 4 << 20
    drivers['ceph-b'].delete_volume(volume)


def test_failure_mid_copy_leaves_source_and_no_destination(ceph_cluster):
    """A write fails after real ones are in flight into a real image."""
    drivers = _drivers(ceph_cluster, rbd_migration_queue_depth=8)
    src = drivers['ceph-a']
    volume, before = helpers.new_volume(src, extents=48)
    writes = []

    def aio_write(real, data, offset, oncomplete, *args):
        writes.append(offset)
        if len(writes) == 20:
            raise rbd.IOError('injected: OSD went away')
        return real(data, offset, oncomplete, *args)

    src.rbd = helpers.with_image_faults(aio_write=aio_write)
    with pytest.raises(exception.MigrationError, match='source is intact'):
        src.migrate_volume(None, volume, helpers.host_of(drivers['ceph-b']))

    assert len(writes) == 20
    assert volume.name not in helpers.images(ceph_cluster, 'volumes-b')
    assert helpers.digest(drivers['ceph-a'], volume) == before
    drivers['ceph-a'].delete_volume(volume)


def test_cancelled_mid_copy_leaves_source_and_no_destination(ceph_cluster,
                                                            monkeypatch):
    monkeypatch.setattr(native, 'POLL_INTERVAL', 0.001)
    drivers = _drivers(ceph_cluster)
    volume, before = helpers.new_volume(drivers['ceph-a'], extents=48)

    class Cancel(progress.Callback):
        def call(self):
            if self.size and 0 < self.value < self.size:
                raise RuntimeError('operator cancelled')

    with pytest.raises(RuntimeError, match='operator cancelled'):
        drivers['ceph-a'].migrate_volume(
            None, volume, helpers.host_of(drivers['ceph-b']),
            callback=Cancel())

    assert volume.name not in helpers.images(ceph_cluster, 'volumes-b')
    assert helpers.digest(drivers['ceph-a'], volume) == before
    drivers['ceph-a'].delete_volume(volume)
