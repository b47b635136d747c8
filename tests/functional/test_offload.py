"""Method ``offload`` (RADOS copy_from through rbdmig.ext), on a cluster."""

import errno
import hashlib
import json
import logging
import os
import random

import pytest
import rbd

from rbdmig import exception
from rbdmig import objects
from rbdmig import ext
from rbdmig.ceph import data_objects
from rbdmig.migration import progress
from tests.functional import helpers


@pytest.fixture
def drivers(ceph_cluster, cleanup):
    assert ext.available(), ext.unavailable_reason()  # CI builds it
    return helpers.load_drivers(
        ceph_cluster, **{'ceph-a': {'rbd_migration_method': 'offload'}})


def _volume(drivers, cleanup, extents):
    volume, before = helpers.new_volume(drivers['ceph-a'], extents=extents)
    for name in ('ceph-a', 'ceph-b'):
        cleanup.add('delete', drivers[name].delete_volume, volume)
    return volume, before


def _move(drivers, volume, **kwargs):
    return drivers['ceph-a'].migrate_volume(
        None, volume, helpers.host_of(drivers['ceph-b']), **kwargs)


def _leftovers(cluster):
    return [n for pool in ('volumes-a', 'volumes-b')
            for n in helpers.images(cluster, pool) if '.rbdmig-' in n]


def test_offload_copies_identically_and_as_thin(ceph_cluster, drivers,
                                                cleanup, caplog):
    caplog.set_level(logging.INFO, logger='rbdmig')
    volume, before = _volume(drivers, cleanup, extents=100)
    allocated = helpers.allocated_bytes(ceph_cluster, 'volumes-a',
                                        volume.name)
    recorder = helpers.ProgressRecorder()
    assert _move(drivers, volume, callback=recorder) == (True, None)

    assert 'to pool volumes-b by offload' in caplog.text
    assert helpers.digest(drivers['ceph-b'], volume) == before
    assert helpers.allocated_bytes(ceph_cluster, 'volumes-b',
                                   volume.name) == allocated
    seen = recorder.seen
    assert seen == sorted(seen) and seen[-1] == 1 << 30
    assert volume.name not in helpers.images(ceph_cluster, 'volumes-a')
    with rbd.Image(ceph_cluster.connect().open_ioctx('volumes-b'),
                   volume.name, read_only=True) as image:
        # the object map was rebuilt: librbd trusts it again
        assert not image.flags() & rbd.RBD_FLAG_OBJECT_MAP_INVALID


def test_a_cancel_mid_copy_leaves_the_source_alone(ceph_cluster, drivers,
                                                   cleanup, monkeypatch,
                                                   report_each_change):
    monkeypatch.setattr('rbdmig.native.POLL_INTERVAL', 0.001)
    volume, before = _volume(drivers, cleanup, extents=400)

    class Cancel(progress.Callback):
        def call(self):
            if self.size and 0 < self.value < self.size:
                raise KeyboardInterrupt('operator pressed ^C')

    with pytest.raises(KeyboardInterrupt):
        _move(drivers, volume, callback=Cancel())
    assert helpers.digest(drivers['ceph-a'], volume) == before
    assert _leftovers(ceph_cluster) == []


def test_a_failed_copy_from_leaves_no_orphan(ceph_cluster, drivers, cleanup,
                                             monkeypatch):
    volume, before = _volume(drivers, cleanup, extents=64)
    real = ext.copy_objects

    def half_then_fail(cluster, src_pool, src_prefix, dst_pool, dst_prefix,
                       numbers, **kwargs):
        half = len(numbers) // 2
        real(cluster, src_pool, src_prefix, dst_pool, dst_prefix,
             numbers[:half], **kwargs)  # real objects copied...
        raise OSError(errno.EIO, 'injected: copy_from of object %d failed'
                      % numbers[half])  # ...then an OSD error

    monkeypatch.setattr(ext, 'copy_objects', half_then_fail)
    with pytest.raises(exception.MigrationError, match='injected'):
        _move(drivers, volume)
    assert helpers.digest(drivers['ceph-a'], volume) == before
    assert _leftovers(ceph_cluster) == []


def _snapshot(cluster, volume):
    cluster.rbd('snap', 'create', 'volumes-a/%s@keep' % volume.name)


def _clone(cluster, volume, drivers, cleanup):
    spec = 'volumes-a/%s@golden' % volume.name
    cluster.rbd('snap', 'create', spec)
    cluster.rbd('snap', 'protect', spec)
    child = type(volume)(size=1)
    cluster.rbd('clone', spec, 'volumes-a/' + child.name)
    cleanup.add('remove golden', cluster.rbd, 'snap', 'rm', spec)
    cleanup.add('unprotect', cluster.rbd, 'snap', 'unprotect', spec)
    for name in ('ceph-a', 'ceph-b'):
        cleanup.add('delete clone', drivers[name].delete_volume, child)
    return child


@pytest.mark.parametrize('case,substitute', [
    ('snapshots', 'deep_copy'), ('clone', 'deep_copy'),
    ('no extension', 'extents')])
def test_what_copy_from_cannot_do_goes_by_another_method(
        ceph_cluster, drivers, cleanup, caplog, monkeypatch, case,
        substitute):
    caplog.set_level(logging.INFO, logger='rbdmig')
    volume, before = _volume(drivers, cleanup, extents=8)
    if case == 'snapshots':
        _snapshot(ceph_cluster, volume)
        cleanup.add('purge', ceph_cluster.rbd, 'snap', 'purge',
                    'volumes-b/' + volume.name)
    elif case == 'clone':
        volume = _clone(ceph_cluster, volume, drivers, cleanup)
        before = helpers.digest(drivers['ceph-a'], volume)
    else:
        monkeypatch.setenv(ext.DISABLE_ENV, '1')

    assert _move(drivers, volume) == (True, None)

    assert 'Method offload cannot move it' in caplog.text
    assert 'using %s' % substitute in caplog.text
    assert 'by %s' % substitute in caplog.text
    assert helpers.digest(drivers['ceph-b'], volume) == before


def test_a_separate_data_pool_goes_by_offload_itself(ceph_cluster, drivers,
                                                     cleanup, caplog):
    """Objects are read from the pool the source's data lives in."""
    caplog.set_level(logging.INFO, logger='rbdmig')
    volume = objects.Volume(size=1)
    ceph_cluster.rbd('create', '--size', '64M', '--data-pool', 'volumes-b',
                     'volumes-a/' + volume.name)
    for name in ('ceph-a', 'ceph-b'):
        cleanup.add('delete', drivers[name].delete_volume, volume)
    handle = drivers['ceph-a'].open_volume(None, volume, 'r+b')
    handle.write(b'data elsewhere' * 1000)
    handle.close()
    before = helpers.digest(drivers['ceph-a'], volume)
    client = ceph_cluster.connect()
    cleanup.add('shutdown', client.shutdown)
    ioctx = client.open_ioctx('volumes-a')
    with rbd.Image(ioctx, volume.name, read_only=True) as image:
        prefix = image.stat()['block_name_prefix'] + '.'
    ioctx.close()

    assert _move(drivers, volume) == (True, None)
    assert 'to pool volumes-b by offload' in caplog.text
    assert helpers.digest(drivers['ceph-b'], volume) == before
    ioctx = client.open_ioctx('volumes-b')
    try:  # the source's data objects went with it
        assert not [o.key for o in ioctx.list_objects()
                    if o.key.startswith(prefix)]
    finally:
        ioctx.close()


def test_capabilities_say_whether_offload_is_there(drivers, monkeypatch):
    stats = drivers['ceph-a'].get_volume_stats(refresh=True)
    assert 'offload' in stats['rbd_migration_methods']
    assert stats['offload_available'] is True
    monkeypatch.setenv(ext.DISABLE_ENV, '1')
    stats = drivers['ceph-a'].get_volume_stats(refresh=True)
    assert 'offload' not in stats['rbd_migration_methods']
    assert stats['offload_available'] is False
    assert 'RBDMIG_DISABLE_OFFLOAD' in stats['offload_unavailable_reason']


MiB = 1 << 20
MAP_INVALID = rbd.RBD_FLAG_OBJECT_MAP_INVALID | rbd.RBD_FLAG_FAST_DIFF_INVALID


def _sparse(ceph_cluster, drivers, cleanup, size, pieces, **create):
    """A ``size`` volume holding ``pieces`` random MiB, scattered."""
    volume = objects.Volume(size=size >> 30)
    for name in ('ceph-a', 'ceph-b'):
        cleanup.add('delete', drivers[name].delete_volume, volume)
    client = ceph_cluster.connect()
    cleanup.add('shutdown', client.shutdown)
    ioctx = client.open_ioctx('volumes-a')
    try:
        rbd.RBD().create(ioctx, volume.name, size, **create)
        rng = random.Random(volume.name)
        with rbd.Image(ioctx, volume.name) as image:
            for offset in sorted(rng.sample(range(0, size - MiB, 4096),
                                            pieces)):
                image.write(os.urandom(MiB), offset)
    finally:
        ioctx.close()
    return volume, client


def _layout(client, pool, name):
    """``(extents holding data, sha256 of their bytes)``, per librbd."""
    ioctx = client.open_ioctx(pool)
    try:
        with rbd.Image(ioctx, name, read_only=True) as image:
            extents = []
            image.diff_iterate(0, image.size(), None,
                               lambda off, n, exists: exists and
                               extents.append((off, n)))
            sha = hashlib.sha256()
            for off, n in extents:
                sha.update(image.read(off, n))
        return extents, sha.hexdigest()
    finally:
        ioctx.close()


def _du(cluster, pool, name):
    """``rbd du``'s (provisioned, used) in bytes."""
    found = json.loads(cluster.rbd('du', '--format', 'json',
                                   '%s/%s' % (pool, name)))['images']
    return [(i['provisioned_size'], i['used_size']) for i in found]


@pytest.mark.parametrize('case', ['64 GiB, object map', 'listing, striped',
                                  'listing, object map invalid'])
def test_a_huge_sparse_volume_costs_what_it_holds(ceph_cluster, drivers,
                                                  cleanup, caplog, case,
                                                  monkeypatch):
    """Only the objects that exist are copied, and the copy's object map
    says exactly those: identical data, as allocated, the map valid (set
    by cls_rbd's object_map_load and _save where the objects scatter)."""
    caplog.set_level(logging.INFO, logger='rbdmig')
    whole_map = []
    set_whole_map = data_objects._set_whole_map
    monkeypatch.setattr(data_objects, '_set_whole_map',
                        lambda *args: whole_map.append(args[1])
                        or set_whole_map(*args))
    if case.startswith('64 GiB'):
        volume, client = _sparse(ceph_cluster, drivers, cleanup, 64 << 30,
                                 40)
    elif case == 'listing, striped':  # objects are not offsets / 4 MiB
        volume, client = _sparse(ceph_cluster, drivers, cleanup, 4 << 30,
                                 12, stripe_unit=MiB, stripe_count=4,
                                 features=rbd.RBD_FEATURE_LAYERING |
                                 rbd.RBD_FEATURE_STRIPINGV2 |
                                 rbd.RBD_FEATURE_EXCLUSIVE_LOCK |
                                 rbd.RBD_FEATURE_OBJECT_MAP |
                                 rbd.RBD_FEATURE_FAST_DIFF)
    else:  # enabled on an image with data: invalid until rebuilt
        volume, client = _sparse(ceph_cluster, drivers, cleanup, 4 << 30,
                                 12, features=rbd.RBD_FEATURE_LAYERING |
                                 rbd.RBD_FEATURE_EXCLUSIVE_LOCK)
        ceph_cluster.rbd('feature', 'enable', 'volumes-a/' + volume.name,
                         'object-map', 'fast-diff')
    extents, sha = _layout(client, 'volumes-a', volume.name)
    du = _du(ceph_cluster, 'volumes-a', volume.name)

    assert _move(drivers, volume) == (True, None)

    assert 'to pool volumes-b by offload' in caplog.text
    by = 'object map' if case.startswith('64 GiB') else 'listing'
    assert 'those that exist, from its %s' % by in caplog.text
    assert _layout(client, 'volumes-b', volume.name) == (extents, sha)
    if 'invalid' not in case:  # else the source's du counts bytes
        assert _du(ceph_cluster, 'volumes-b', volume.name) == du
    ceph_cluster.rbd('object-map', 'check', 'volumes-b/' + volume.name)
    if case.startswith('64 GiB'):  # 40 objects of 16384: 40 runs
        assert len(whole_map) == 1
    ioctx = client.open_ioctx('volumes-b')
    try:
        with rbd.Image(ioctx, volume.name, read_only=True) as image:
            assert image.features() & rbd.RBD_FEATURE_FAST_DIFF
            assert not image.flags() & MAP_INVALID  # the check agreed
    finally:
        ioctx.close()


def test_partly_written_objects_go_through_the_host_when_asked(
        ceph_cluster, cleanup, caplog):
    """``rbd_offload_through_host_below = 1``: every object not full is
    copied through this host, its data only, so the copy holds exactly
    the source's extents (``copy_from`` would fill their holes), and its
    object map is valid."""
    caplog.set_level(logging.INFO, logger='rbdmig')
    drivers = helpers.load_drivers(ceph_cluster, **{'ceph-a': {
        'rbd_migration_method': 'offload',
        'rbd_offload_through_host_below': 1}})
    volume, client = _sparse(ceph_cluster, drivers, cleanup, 4 << 30, 12)
    extents, sha = _layout(client, 'volumes-a', volume.name)

    assert _move(drivers, volume) == (True, None)

    assert 'to pool volumes-b by offload' in caplog.text
    assert ('held little data and were copied through this host'
            in caplog.text)
    assert _layout(client, 'volumes-b', volume.name) == (extents, sha)
    ceph_cluster.rbd('object-map', 'check', 'volumes-b/' + volume.name)


@pytest.mark.parametrize('share', [0, 0.5])
def test_the_copy_takes_the_room_the_source_does_on_bluestore(
        bluestore_cluster, cleanup, caplog, share):
    """Bluestore stores the zeros ``copy_from`` writes for an object's
    holes: a volume of partly written objects would take the room of full
    ones in its new pool.  The OSDs of a one-OSD bluestore cluster hold
    16 objects with 64 KiB of data at their end and 16 with 1 MiB, a
    1 MiB hole, then 2 MiB: 49 MiB of data in 128 MiB of objects.  At
    share 0 (the default) every object is copied by the OSDs and its
    holes zeroed after; at half an object, the sparse ones go through the
    host, data only, and the dense ones by the OSDs, holes zeroed.
    Either way the new pool stores what the old one did, byte for byte,
    the data reads the same, and the object map checks out."""
    caplog.set_level(logging.INFO, logger='rbdmig')
    drivers = helpers.load_drivers(bluestore_cluster, **{'blue-a': {
        'rbd_migration_method': 'offload',
        'rbd_offload_through_host_below': share}})
    volume = objects.Volume(size=1)
    for name in ('blue-a', 'blue-b'):
        cleanup.add('delete', drivers[name].delete_volume, volume)
    client = bluestore_cluster.connect()
    cleanup.add('shutdown', client.shutdown)
    ioctx = client.open_ioctx('volumes-a')
    try:
        rbd.RBD().create(ioctx, volume.name, 1 << 30)
        with rbd.Image(ioctx, volume.name) as image:
            for number in range(16):
                image.write(os.urandom(64 << 10), (number + 1) * 4 * MiB -
                            (64 << 10))
            for number in range(16, 32):
                image.write(os.urandom(MiB), number * 4 * MiB)
                image.write(os.urandom(2 * MiB), number * 4 * MiB + 2 * MiB)
    finally:
        ioctx.close()
    extents, sha = _layout(client, 'volumes-a', volume.name)
    stored = helpers.pool_stored(bluestore_cluster, 'volumes-a')
    assert 49 * MiB <= stored < 50 * MiB  # data, not objects' length

    assert drivers['blue-a'].migrate_volume(
        None, volume, helpers.host_of(drivers['blue-b'])) == (True, None)

    assert 'to pool volumes-b by offload' in caplog.text
    punched = 32 if share == 0 else 16
    assert ('%d of the objects of %s copied by the OSDs had holes'
            % (punched, volume.name)) in caplog.text
    assert (('16 of the 32 objects of %s held little data' % volume.name)
            in caplog.text) == (share > 0)
    assert _layout(client, 'volumes-b', volume.name) == (extents, sha)
    assert helpers.pool_stored(bluestore_cluster, 'volumes-b') == stored
    bluestore_cluster.rbd('object-map', 'check', 'volumes-b/' + volume.name)
