"""Verification at the OSDs, and offload with data pools, on a cluster."""

import logging
import os
import uuid

import pytest
import rbd

from rbdmig import exception
from rbdmig import ext
from rbdmig import objects
from rbdmig.ceph import data_objects
from rbdmig.ext import _offload  # noqa: F401 - fail loudly if not built
from rbdmig.sandbox import templates
from tests.functional import helpers

MiB = 1 << 20
SRC, DST = 'volumes-a', 'volumes-b'


@pytest.fixture(scope='module')
def admin(ceph_cluster):
    assert ext.available(), ext.unavailable_reason()
    client = ceph_cluster.connect()
    yield client
    client.shutdown()


@pytest.fixture(scope='module')
def spec(ceph_cluster):
    return ext.ClusterSpec(ceph_cluster.conf_path,
                           keyring_path=ceph_cluster.admin_keyring_path,
                           client_mount_timeout=10, rados_osd_op_timeout=10)


@pytest.fixture(scope='module')
def data_pool(ceph_cluster):
    """A replicated pool for RBD data objects, removed afterwards."""
    name = 'data-%s' % uuid.uuid4().hex[:6]
    ceph_cluster.ceph('osd', 'pool', 'create', name, str(templates.PG_NUM))
    ceph_cluster.ceph('osd', 'pool', 'application', 'enable', name, 'rbd')
    yield name
    ceph_cluster.ceph('osd', 'pool', 'rm', name, name,
                      '--yes-i-really-really-mean-it')


def _data_objects(admin, pool, prefix):
    ioctx = admin.open_ioctx(pool)
    try:
        return sorted(o.key for o in ioctx.list_objects()
                      if o.key.startswith(prefix + '.'))
    finally:
        ioctx.close()


def test_object_checksums_are_xxhash64_of_each_objects_bytes(admin, spec):
    ioctx = admin.open_ioctx(SRC)
    prefix = 'sums-%s' % uuid.uuid4().hex[:8]
    blobs = {0: os.urandom(4 * MiB), 1: bytes(4 * MiB), 2: os.urandom(12345),
             3: b'', 5: os.urandom(31)}  # 4 and 6: no object
    try:
        for index, blob in blobs.items():
            ioctx.write_full('%s.%016x' % (prefix, index), blob)

        found = ext.object_checksums(spec, SRC, prefix, range(7),
                                     queue_depth=3)

        expected = [ext.ObjectChecksum(len(blobs[i]), ext.xxhash64(blobs[i]))
                    if blobs.get(i) else None for i in range(7)]
        assert found == expected
        assert found[1].xxhash64 == ext.xxhash64(bytes(4 * MiB))
        assert ext.object_checksums(spec, ioctx.get_pool_id(), prefix,
                                    range(7)) == expected
        assert ext.object_checksums(spec, SRC, prefix, [5, 4, 0]) == [
            expected[5], None, expected[0]]
        with pytest.raises(FileNotFoundError, match='opening pool'):
            ext.object_checksums(spec, 'no-such-pool', prefix, [1])
    finally:
        for index in blobs:
            ioctx.remove_object('%s.%016x' % (prefix, index))
        ioctx.close()


@pytest.fixture
def drivers(ceph_cluster):
    return helpers.load_drivers(ceph_cluster, **{'ceph-a': {
        'rbd_migration_method': 'offload',
        'migration_verify': 'osd_checksum'}})


def _volume(drv, cleanup, others=()):
    volume, sha = helpers.new_volume(drv, extents=12)
    for owner in (drv,) + tuple(others):
        cleanup.add('delete', owner.delete_volume, volume)
    return volume, sha


def _prefix(admin, pool, name):
    ioctx = admin.open_ioctx(pool)
    try:
        with rbd.Image(ioctx, name, read_only=True) as image:
            return image.stat()['block_name_prefix'], image.data_pool_id()
    finally:
        ioctx.close()


def test_one_corrupt_object_of_the_copy_fails_osd_checksum(
        ceph_cluster, admin, drivers, cleanup, monkeypatch, caplog):
    """The copy has the source's layout and one wrong byte: refused."""
    src, dst = drivers['ceph-a'], drivers['ceph-b']
    volume, sha = _volume(src, cleanup, (dst,))
    prefix, _ = _prefix(admin, SRC, volume.name)
    index = int(_data_objects(admin, SRC, prefix)[0].rsplit('.', 1)[1], 16)
    real = ext.copy_objects

    def copy_then_corrupt(cluster, src_pool, src_prefix, dst_pool,
                          dst_prefix, count, **kwargs):
        result = real(cluster, src_pool, src_prefix, dst_pool, dst_prefix,
                      count, **kwargs)
        ioctx = admin.open_ioctx(DST)
        try:
            name = '%s.%016x' % (dst_prefix, index)
            byte = ioctx.read(name, 1, 4096)
            ioctx.write(name, bytes([byte[0] ^ 0xff]), 4096)
        finally:
            ioctx.close()
        return result

    monkeypatch.setattr(ext, 'copy_objects', copy_then_corrupt)
    caplog.set_level(logging.INFO, logger='rbdmig')
    with pytest.raises(exception.MigrationError,
                       match='did not verify: .*object %d' % index):
        src.migrate_volume(None, volume, helpers.host_of(dst))

    assert 'instead of osd_checksum' not in caplog.text
    assert helpers.digest(src, volume) == sha
    assert volume.name not in helpers.images(ceph_cluster, DST)
    assert not [n for n in helpers.images(ceph_cluster, DST)
                if '.rbdmig-' in n]


def test_an_object_the_copys_map_leaves_out_fails_osd_checksum(
        ceph_cluster, admin, drivers, cleanup, monkeypatch):
    """The copy's object is in RADOS, byte for byte the source's, but its
    object map leaves it out: librbd reads zeros there.  Comparing RADOS
    alone passed it, and the source went."""
    src, dst = drivers['ceph-a'], drivers['ceph-b']
    volume, sha = _volume(src, cleanup, (dst,))
    real = data_objects.mark_existing
    left_out = []

    def mark_all_but_one(ioctx, image_id, numbers):
        left_out.append(numbers[0])
        return real(ioctx, image_id, numbers[1:])

    monkeypatch.setattr(data_objects, 'mark_existing', mark_all_but_one)
    with pytest.raises(exception.MigrationError,
                       match='did not verify') as refused:
        src.migrate_volume(None, volume, helpers.host_of(dst))

    assert len(left_out) == 1
    assert '(object %d)' % left_out[0] in str(refused.value)
    assert helpers.digest(src, volume) == sha
    assert volume.name not in helpers.images(ceph_cluster, DST)


def test_zeros_and_short_objects_of_an_extents_copy_pass(
        ceph_cluster, admin, cleanup, caplog):
    """extents skips zeros: the copy lacks objects the source wrote zeros
    into, and its objects end before the source's trailing zeros."""
    drivers = helpers.load_drivers(ceph_cluster, **{'ceph-a': {
        'rbd_migration_method': 'extents',
        'migration_verify': 'osd_checksum'}})
    src, dst = drivers['ceph-a'], drivers['ceph-b']
    volume, _ = _volume(src, cleanup, (dst,))
    handle = src.open_volume(None, volume, 'r+b')
    try:
        handle.seek(100 * MiB)
        handle.write(bytes(8 * MiB))  # two objects of zeros
        handle.seek(200 * MiB)
        handle.write(b'data' + bytes(2 * MiB))  # a long tail of zeros
    finally:
        src.close_volume(None, volume, handle)
    sha = helpers.digest(src, volume)
    caplog.set_level(logging.INFO, logger='rbdmig')

    assert src.migrate_volume(None, volume, helpers.host_of(dst)) == (
        True, None)

    assert 'instead of osd_checksum' not in caplog.text
    assert helpers.digest(dst, volume) == sha


def test_offload_writes_into_the_destinations_default_data_pool(
        ceph_cluster, admin, drivers, data_pool, cleanup, tmp_path):
    """The destination's ceph.conf sets rbd_default_data_pool: librbd
    reads the copy's data there, so offload must write it there."""
    conf = tmp_path / 'ceph.conf'
    conf.write_text(open(ceph_cluster.conf_path).read()
                    + '\n[client]\nrbd default data pool = %s\n' % data_pool)
    drivers = helpers.load_drivers(ceph_cluster, **{
        'ceph-a': {'rbd_migration_method': 'offload',
                   'migration_verify': 'none'},
        'ceph-b': {'rbd_ceph_conf': str(conf)}})
    src, dst = drivers['ceph-a'], drivers['ceph-b']
    volume, sha = _volume(src, cleanup, (dst,))
    src_prefix, _ = _prefix(admin, SRC, volume.name)
    count = len(_data_objects(admin, SRC, src_prefix))

    assert src.migrate_volume(None, volume, helpers.host_of(dst)) == (
        True, None)

    assert helpers.digest(dst, volume) == sha
    prefix, pool_id = _prefix(admin, DST, volume.name)
    assert pool_id == admin.pool_lookup(data_pool)
    assert len(_data_objects(admin, data_pool, prefix)) == count > 0
    assert _data_objects(admin, DST, prefix) == []  # no orphan
    assert _data_objects(admin, SRC, src_prefix) == []


def test_offload_reads_a_source_from_its_data_pool(
        ceph_cluster, admin, drivers, data_pool, cleanup, caplog):
    src, dst = drivers['ceph-a'], drivers['ceph-b']
    volume = objects.Volume(size=1)
    ceph_cluster.rbd('create', '--size', '1G', '--data-pool', data_pool,
                     '%s/%s' % (SRC, volume.name))
    for owner in (src, dst):
        cleanup.add('delete', owner.delete_volume, volume)
    handle = src.open_volume(None, volume, 'r+b')
    try:
        for slot in (3, 500, 1000):
            handle.seek(slot * MiB)
            handle.write(os.urandom(MiB))
    finally:
        src.close_volume(None, volume, handle)
    sha = helpers.digest(src, volume)
    src_prefix, _ = _prefix(admin, SRC, volume.name)
    caplog.set_level(logging.INFO, logger='rbdmig')

    assert src.migrate_volume(None, volume, helpers.host_of(dst)) == (
        True, None)

    assert 'by offload' in caplog.text
    assert 'Method offload cannot move it' not in caplog.text
    assert helpers.digest(dst, volume) == sha
    prefix, pool_id = _prefix(admin, DST, volume.name)
    assert pool_id == admin.pool_lookup(DST)
    assert len(_data_objects(admin, DST, prefix)) == 3
    assert _data_objects(admin, data_pool, src_prefix) == []


@pytest.mark.parametrize('method', ['copy', 'clone_flatten', 'deep_copy',
                                    'live', 'extents', 'offload'])
def test_every_method_puts_data_where_the_destination_reads_it(
        ceph_cluster, admin, data_pool, cleanup, tmp_path, method, caplog):
    """With rbd_default_data_pool in the destination's ceph.conf, every
    method's copy reads as the source and leaves no orphan object."""
    conf = tmp_path / 'ceph.conf'
    conf.write_text(open(ceph_cluster.conf_path).read()
                    + '\n[client]\nrbd default data pool = %s\n' % data_pool)
    drivers = helpers.load_drivers(ceph_cluster, **{
        'ceph-a': {'rbd_migration_method': method},
        'ceph-b': {'rbd_ceph_conf': str(conf)}})
    src, dst = drivers['ceph-a'], drivers['ceph-b']
    volume, sha = _volume(src, cleanup, (dst,))
    src_prefix, _ = _prefix(admin, SRC, volume.name)
    caplog.set_level(logging.INFO, logger='rbdmig')

    assert src.migrate_volume(None, volume, helpers.host_of(dst)) == (
        True, None)

    assert 'by %s' % method in caplog.text
    assert helpers.digest(dst, volume) == sha
    prefix, pool_id = _prefix(admin, DST, volume.name)
    assert pool_id == admin.pool_lookup(data_pool)
    assert _data_objects(admin, data_pool, prefix)
    assert _data_objects(admin, DST, prefix) == []
    assert _data_objects(admin, SRC, src_prefix) == []


def test_osd_checksum_into_another_cluster(ceph_cluster, ceph_cluster2,
                                           cleanup, caplog):
    """Each side is hashed by its own cluster's OSDs: asked of the source
    cluster, the copy's objects would all be missing, and the move fail."""
    src = helpers.load_drivers(ceph_cluster, **{'ceph-a': {
        'migration_verify': 'osd_checksum'}})['ceph-a']
    far = helpers.load_drivers(ceph_cluster2)['other-b']
    volume, sha = _volume(src, cleanup, (far,))
    caplog.set_level(logging.INFO, logger='rbdmig')

    assert src.migrate_volume(None, volume, helpers.host_of(far)) == (
        True, None)

    assert 'of cluster %s by extents' % ceph_cluster2.fsid in caplog.text
    assert 'instead of osd_checksum' not in caplog.text
    assert helpers.digest(far, volume) == sha
