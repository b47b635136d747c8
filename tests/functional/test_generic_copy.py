"""Generic copy between Ceph and the file backend, against a real cluster."""

import io
import json
import signal
import subprocess
import sys
import time

import pytest
import rbd
from oslo_utils import units

from rbdmig import exception
from rbdmig.migration import manager
from rbdmig.migration import phases
from rbdmig.migration import progress
from tests.functional import helpers

DATA_EXTENTS = 24  # of 1 MiB each, scattered over a 1 GiB volume


def test_ceph_to_file_to_ceph_is_identical_and_thin(ceph_cluster):
    drivers = helpers.load_drivers(ceph_cluster)
    volume, before = helpers.new_volume(drivers['ceph-a'],
                                        extents=DATA_EXTENTS)
    data = DATA_EXTENTS * units.Mi
    # librbd counts from an object's start to its last written byte: the
    # source measured the same way is what the copy back must not exceed.
    source_allocated = helpers.allocated_bytes(ceph_cluster, 'volumes-a',
                                               volume.name)

    to_file = manager.migrate(None, volume, drivers['ceph-a'],
                              drivers['files'])
    assert to_file.path == 'generic'
    assert helpers.digest(drivers['files'], volume) == before
    assert volume.name not in helpers.images(ceph_cluster, 'volumes-a')
    allocated = drivers['files'].get_allocated_bytes(volume)
    assert data <= allocated <= 1.1 * data
    assert to_file.copy.bytes_written == data

    back = manager.migrate(None, volume, drivers['files'],
                           drivers['ceph-b'])
    assert back.path == 'generic'
    assert helpers.digest(drivers['ceph-b'], volume) == before
    with pytest.raises(exception.VolumeNotFound):
        drivers['files'].get_allocated_bytes(volume)
    assert helpers.allocated_bytes(ceph_cluster, 'volumes-b',
                                   volume.name) <= source_allocated
    drivers['ceph-b'].delete_volume(volume)


def test_copy_volume_data_between_existing_volumes(ceph_cluster):
    drivers = helpers.load_drivers(ceph_cluster)
    src, before = helpers.new_volume(drivers['files'], extents=8)
    dst = type(src)(size=1)
    drivers['ceph-a'].create_volume(dst)

    # dst was created just now: the caller vouches that it reads as zeros.
    result = drivers['files'].copy_volume_data(None, src, dst,
                                               dest_driver=drivers['ceph-a'],
                                               dest_zeroed=True)

    assert helpers.digest(drivers['ceph-a'], dst) == before
    assert result.bytes_written == 8 * units.Mi
    assert result.bytes_skipped == units.Gi - 8 * units.Mi
    drivers['ceph-a'].delete_volume(dst)
    drivers['files'].delete_volume(src)


@pytest.mark.parametrize('source', ['files', 'ceph-a'])
def test_copy_onto_a_used_volume_leaves_nothing_stale(ceph_cluster, source):
    # Issue #5: an existing RBD volume full of other data, overwritten by
    # a sparse source, reads back identical to the source.
    drivers = helpers.load_drivers(ceph_cluster)
    src, before = helpers.new_volume(drivers[source], extents=8)
    dst, old = helpers.new_volume(drivers['ceph-b'], extents=64)
    assert old != before

    result = drivers[source].copy_volume_data(
        None, src, dst, dest_driver=drivers['ceph-b'])

    assert helpers.digest(drivers['ceph-b'], dst) == before
    # The old data was deallocated (write_zeroes), not overwritten with
    # zeros: at most the 8 objects holding the source's 8 extents remain.
    assert helpers.allocated_bytes(ceph_cluster, 'volumes-b',
                                   dst.name) <= 8 * 4 * units.Mi
    assert result.bytes_zeroed > units.Gi // 2
    drivers['ceph-b'].delete_volume(dst)
    drivers[source].delete_volume(src)


def test_a_volume_open_by_another_client_is_refused(ceph_cluster):
    # Issue #6: it was copied, reported as moved, and its source left.
    drivers = helpers.load_drivers(ceph_cluster)
    volume, before = helpers.new_volume(drivers['ceph-a'], extents=4)
    client = ceph_cluster.connect()
    try:
        ioctx = client.open_ioctx('volumes-a')
        holder = rbd.Image(ioctx, volume.name)  # read-write, as a VM
        try:
            for dst in ('files', 'ceph-b'):
                with pytest.raises(exception.VolumeInUse, match='client'):
                    manager.migrate(None, volume, drivers['ceph-a'],
                                    drivers[dst])
        finally:
            holder.close()
            ioctx.close()
    finally:
        client.shutdown()
    with pytest.raises(exception.VolumeNotFound):
        drivers['files'].get_allocated_bytes(volume)
    assert volume.name not in helpers.images(ceph_cluster, 'volumes-b')
    assert helpers.digest(drivers['ceph-a'], volume) == before

    # Closed, it moves.
    moved = manager.migrate(None, volume, drivers['ceph-a'],
                            drivers['files'])
    assert helpers.digest(drivers['files'], moved.volume) == before
    drivers['files'].delete_volume(volume)


def test_failed_generic_copy_removes_partial_destination(ceph_cluster):
    drivers = helpers.load_drivers(ceph_cluster)
    volume, before = helpers.new_volume(drivers['ceph-a'], extents=8)

    class Stop(Exception):
        pass

    class StopHalfway(progress.Callback):
        def call(self):
            if self.size and self.value > self.size // 2:
                raise Stop('half way')

    with pytest.raises(Stop):
        manager.migrate(None, volume, drivers['ceph-a'], drivers['files'],
                        callback=StopHalfway())

    with pytest.raises(exception.VolumeNotFound):
        drivers['files'].get_allocated_bytes(volume)
    assert helpers.digest(drivers['ceph-a'], volume) == before
    drivers['ceph-a'].delete_volume(volume)


def test_rbd_handle_file_semantics_on_real_librbd(ceph_cluster):
    drv = helpers.load_drivers(ceph_cluster)['ceph-a']
    volume, _ = helpers.new_volume(drv, extents=0)
    size = units.Gi

    with drv.open_volume(None, volume, 'r+b') as handle:
        assert (handle.readable(), handle.writable()) == (True, True)
        assert handle.seek(3 * units.Mi) == 3 * units.Mi
        assert handle.write(b'\x5a' * 5000) == 5000
        handle.seek(size - 1)
        with pytest.raises(exception.InvalidInput, match='passes the end'):
            handle.write(b'xy')
        assert handle.read(10) == b'\x00'
        assert handle.read(10) == b''
        # librbd reports the written object, from its start to the last
        # written byte: the extents cover the data, within that object.
        [(offset, length)] = handle.extents()
        assert offset <= 3 * units.Mi
        assert 3 * units.Mi + 5000 <= offset + length <= 4 * units.Mi
        buffered = io.BufferedReader(handle)
        buffered.seek(3 * units.Mi)
        assert buffered.read(5001) == b'\x5a' * 5000 + b'\x00'

    with drv.open_volume(None, volume, 'rb') as handle:
        assert handle.writable() is False
        with pytest.raises(io.UnsupportedOperation):
            handle.write(b'x')
    drv.delete_volume(volume)


def _objects_of(cluster, pool, image_id):
    """The RADOS objects of one image: data, header, object map, id."""
    out = subprocess.run(['rados', '-c', cluster.conf_path, '-p', pool,
                          'ls'], capture_output=True, text=True, check=True,
                         timeout=60).stdout.split()
    return [name for name in out if image_id in name]


@pytest.mark.parametrize('point', ['mid', 'manager.copied',
                                   'manager.retired', 'manager.checked',
                                   'rbd.remove#3'])
def test_a_killed_library_move_is_put_right_by_recover(ceph_cluster, point,
                                                       caplog):
    # manager.migrate keeps no record: a process SIGKILLed anywhere in
    # its generic copy left the volume for recover() to put in one place.
    drivers = helpers.load_drivers(ceph_cluster)
    src, files = drivers['ceph-a'], drivers['files']
    volume, before = helpers.new_volume(src, extents=DATA_EXTENTS)
    image_id = json.loads(ceph_cluster.rbd(
        'info', '--format', 'json', 'volumes-a/' + volume.name))['id']
    assert _objects_of(ceph_cluster, 'volumes-a', image_id)

    killed = subprocess.run(
        [sys.executable, '-m', 'tests.functional.crash_child',
         ceph_cluster.rbdmig_conf_path, 'manager', point, volume.id],
        capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + \
        killed.stderr
    listed = [n for n in helpers.images(ceph_cluster, 'volumes-a')
              if n.startswith(volume.name)]

    started = time.monotonic()
    found = manager.recover(volume, src, files)
    took = time.monotonic() - started

    if point.startswith('rbd.remove'):
        # Half-removed: it still lists, but no longer opens.  The killed
        # remover's lock is broken, not waited out (30 s before).
        assert listed == [volume.name + '.rbdmig-generic.retired']
        assert [r for r in caplog.records
                if r.getMessage().startswith('Breaking the lock')]
        assert took < 20, took
        assert found.decision == phases.COMPLETE, found
        assert helpers.digest(files, found.volume) == before
        files.delete_volume(found.volume)
    else:
        assert found.decision == (phases.ROLL_BACK if point in (
            'mid', 'manager.copied') else phases.RESTORE), found
        assert not found.kept, found
        assert helpers.digest(src, volume) == before
        with pytest.raises(exception.VolumeNotFound):
            files.get_allocated_bytes(volume)
        assert manager.recover(volume, src, files).decision == (
            phases.RELEASE)
        src.delete_volume(volume)
    # Nothing of the volume is left on the source: no name, no object,
    # nothing in the trash.
    assert not [n for n in helpers.images(ceph_cluster, 'volumes-a')
                if n.startswith(volume.name)]
    assert _objects_of(ceph_cluster, 'volumes-a', image_id) == []
    assert image_id not in ceph_cluster.rbd('trash', 'ls', '--all',
                                            'volumes-a')
