"""Method offload itself, its copy_objects faked at the extension's edge."""

import errno
import logging
import os
import threading

import pytest

from rbdmig import exception
from tests.unit import fake_ext
from tests.unit import rbd_fixtures as fx

MiB = fx.MiB
OBJECT = 4 * MiB  # the fake's images have order 22
DATA = os.urandom(64 * 1024) + b'tail'


@pytest.fixture
def ceph():
    ceph = fx.make_ceph()
    ceph.clusters[fx.CONF_A].pools['data'] = {}  # for data pools
    return ceph


@pytest.fixture
def osd(monkeypatch, ceph):
    return fake_ext.install(monkeypatch, ceph)


def _pair(ceph, verify='osd_checksum', **opts):
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='offload',
                         migration_verify=verify, **opts)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    return src, dst


def _volume(ceph, pieces, data_pool=None):
    """A 16 MiB image holding ``{offset: bytes}``; its Volume."""
    volume = fx.objects.Volume(size=1)
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    ceph.rbd.RBD().create(ioctx, volume.name, 16 * MiB, data_pool=data_pool)
    with ceph.rbd.Image(ioctx, volume.name) as image:
        for offset, data in pieces.items():
            image.write(data, offset)
    return volume


def _read(ceph, pool, name, offset, length):
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx(pool)
    with ceph.rbd.Image(ioctx, name) as image:
        return image.read(offset, length)


def _orphans(ceph):
    """Raw RADOS data objects, which no image reads."""
    return {pool: sorted(o for o in objects if o.startswith('rbd_data.'))
            for pool, objects in ceph.clusters[fx.CONF_A].objects.items()
            if any(o.startswith('rbd_data.') for o in objects)}


def test_offload_itself_copies_and_keeps_the_copy_thin(ceph, osd, caplog):
    src, dst = _pair(ceph)
    volume = _volume(ceph, {0: DATA, 2 * OBJECT + 5: b'third object'})

    with caplog.at_level(logging.INFO):
        assert src.migrate_volume(None, volume, fx.host_of(dst)) == (
            True, None)

    assert osd.calls == ['copy_objects', 'object_checksums',
                         'object_checksums']
    assert 'by offload' in caplog.text and 'using' not in caplog.text
    assert osd.copied == [[0, 2]]  # only the objects that exist
    moved = ceph.image(fx.CONF_A, 'ssd', volume.name)
    assert sorted({i * 4096 // OBJECT for i in moved.blocks}) == [0, 2]
    assert moved.object_map == {0, 2}  # what was written, no rebuild
    assert not hasattr(moved, 'object_map_rebuilt')
    assert _read(ceph, 'ssd', volume.name, 0, len(DATA)) == DATA
    assert _read(ceph, 'ssd', volume.name, 2 * OBJECT + 5, 12) == (
        b'third object')
    assert volume.name not in ceph.clusters[fx.CONF_A].pools['hdd']
    assert _orphans(ceph) == {}


def _blocks_of(image, number):
    """The 4 KiB blocks object ``number`` of ``image`` holds, from 0."""
    first = number * OBJECT // 4096
    return sorted(i - first for i in image.blocks
                  if first <= i < first + OBJECT // 4096)


@pytest.mark.parametrize('share, below, through_host, punched', [
    (None, 0, 0, 1),        # the default: as 0
    (0, 0, 0, 1),           # every object whole, object 0's hole zeroed
    (0.5, 2 * MiB, 2, 0),   # below half an object: its data only
    (1, OBJECT, 3, 0),      # every object not full through the host
])
def test_objects_are_copied_without_their_holes(
        ceph, osd, caplog, share, below, through_host, punched):
    """Object 0 holds 8 KiB of data over 3 MiB, object 1 3 MiB from its
    start, object 2 a byte.  Below the share, an object goes through the
    host, its data only; above it, the OSDs copy it whole and its holes
    (object 0's, at share 0) are zeroed after: at every share the copy
    holds exactly the source's blocks, and reads the same."""
    opts = {} if share is None else {'rbd_offload_through_host_below': share}
    src, dst = _pair(ceph, 'extents', **opts)
    dense = os.urandom(3 * MiB)
    volume = _volume(ceph, {0: b'a' * 4096, 3 * MiB: b'b' * 4096,
                            OBJECT: dense, 2 * OBJECT + 5: b'x'})

    with caplog.at_level(logging.INFO):
        assert src.migrate_volume(None, volume, fx.host_of(dst)) == (
            True, None)

    assert osd.through_host_below == [below]
    assert osd.keep_holes == [True]
    moved = ceph.image(fx.CONF_A, 'ssd', volume.name)
    assert _blocks_of(moved, 0) == [0, 768]
    assert _blocks_of(moved, 1) == list(range(768))
    assert _blocks_of(moved, 2) == [0]
    assert moved.object_map == {0, 1, 2}
    assert _read(ceph, 'ssd', volume.name, 0, OBJECT) == (
        b'a' * 4096 + bytes(3 * MiB - 4096) + b'b' * 4096
        + bytes(OBJECT - 3 * MiB - 4096))
    assert _read(ceph, 'ssd', volume.name, OBJECT, 3 * MiB) == dense
    assert _read(ceph, 'ssd', volume.name, 2 * OBJECT, 6) == bytes(5) + b'x'
    said = '%d of the 3 objects of %s held little data' % (through_host,
                                                            volume.name)
    assert (said in caplog.text) == bool(through_host)
    said = ('1 of the objects of %s copied by the OSDs had holes; their '
            '3.0 MiB of zeros were freed' % volume.name)
    assert (said in caplog.text) == bool(punched)


@pytest.mark.parametrize('verify', ['none', 'extents', 'osd_checksum'])
def test_the_destinations_default_data_pool_gets_the_data(ceph, osd,
                                                          verify):
    """rbd_default_data_pool in the destination's conf: librbd reads the
    copy's data from that pool, so that is where it must be written."""
    src, dst = _pair(ceph, verify)
    volume = _volume(ceph, {0: DATA, OBJECT: b'second'})
    ceph.clusters[fx.CONF_A].default_data_pool = 'data'

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)

    assert 'copy_objects' in osd.calls
    assert ceph.image(fx.CONF_A, 'ssd', volume.name).data_pool == 'data'
    assert _read(ceph, 'ssd', volume.name, 0, len(DATA)) == DATA
    assert _read(ceph, 'ssd', volume.name, OBJECT, 6) == b'second'
    assert _orphans(ceph) == {}


def test_a_source_in_a_data_pool_is_read_from_it(ceph, osd):
    src, dst = _pair(ceph)
    volume = _volume(ceph, {0: DATA}, data_pool='data')

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)

    assert osd.calls[0] == 'copy_objects'  # not substituted
    assert ceph.image(fx.CONF_A, 'ssd', volume.name).data_pool is None
    assert _read(ceph, 'ssd', volume.name, 0, len(DATA)) == DATA
    assert _orphans(ceph) == {}


def _corrupting(osd, offset):
    """copy_objects, then one byte of the copy changed at ``offset``."""
    real = osd.copy_objects

    def copy_objects(conn, src_pool, src_ns, src_prefix, dst_pool, *rest):
        result = real(conn, src_pool, src_ns, src_prefix, dst_pool, *rest)
        cluster = osd.ceph.clusters[conn[0]]
        image = osd.ceph.data_objects(cluster, osd.ceph.pool_name(
            cluster, dst_pool), rest[1])
        block, at = divmod(offset, 4096)
        data = bytearray(image.blocks[block])
        data[at] ^= 0xff
        image.blocks[block] = bytes(data)
        return result

    return copy_objects


def test_a_copy_with_one_wrong_byte_fails_osd_checksum(ceph, osd,
                                                       monkeypatch):
    src, dst = _pair(ceph)
    volume = _volume(ceph, {0: DATA})
    monkeypatch.setattr(osd, 'copy_objects', _corrupting(osd, 1000))

    with pytest.raises(exception.MigrationError,
                       match='did not verify: .* at offset 0 \\(object 0\\)'):
        src.migrate_volume(None, volume, fx.host_of(dst))

    assert volume.name not in ceph.clusters[fx.CONF_A].pools['ssd']
    assert _read(ceph, 'hdd', volume.name, 0, len(DATA)) == DATA


def _sparse_volume(ceph, size):
    """A ``size`` image holding objects 1, 2, 3 and its last; its Volume."""
    volume = fx.objects.Volume(size=1)
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    ceph.rbd.RBD().create(ioctx, volume.name, size)
    last = size // OBJECT - 1
    with ceph.rbd.Image(ioctx, volume.name) as image:
        for number in (1, 2, 3, last):
            image.write(b'object %d' % number, number * OBJECT + 7)
    return volume, ceph.image(fx.CONF_A, 'hdd', volume.name), last


def test_a_huge_thin_volume_costs_what_it_holds(ceph, osd):
    """1 TiB (262144 objects) holding four: four copies, two map calls."""
    src, dst = _pair(ceph, 'extents')
    volume, image, last = _sparse_volume(ceph, 1 << 40)
    walks = []
    real = ceph.rbd.Image.diff_iterate

    def spy(self, offset, length, *args, **kwargs):
        walks.append(length)
        return real(self, offset, length, *args, **kwargs)

    ceph.rbd.Image.diff_iterate = spy
    try:
        assert src.migrate_volume(None, volume, fx.host_of(dst)) == (
            True, None)
    finally:
        ceph.rbd.Image.diff_iterate = real

    assert walks == []  # no diff walked the 262144 objects
    assert osd.copied == [[1, 2, 3, last]]
    assert 'object_numbers' not in osd.calls  # the object map said
    moved = ceph.image(fx.CONF_A, 'ssd', volume.name)
    assert moved.object_map == {1, 2, 3, last}
    assert [e for e in ceph.executed if e[3] == 'object_map_update'
            ] == [('ssd', 'rbd_object_map.' + moved.id, 'rbd',
                   'object_map_update')] * 2  # runs 1-3 and the last
    loads = [e[1] for e in ceph.executed if e[3] == 'object_map_load']
    # The room check and the copy read the source's map, verify both.
    assert sorted(loads) == sorted(['rbd_object_map.' + moved.id]
                                   + ['rbd_object_map.' + image.id] * 3)
    expected = b'object %d' % last
    assert _read(ceph, 'ssd', volume.name, last * OBJECT + 7,
                 len(expected)) == expected


@pytest.mark.parametrize('why', ['object map invalid', 'fast-diff invalid',
                                 'no object map', 'striped'])
def test_without_a_valid_object_map_the_pool_is_listed(ceph, osd,
                                                       monkeypatch, why):
    src, dst = _pair(ceph, 'extents')
    volume, image, last = _sparse_volume(ceph, 1 << 30)
    rbd = ceph.rbd
    if why == 'object map invalid':
        image.flags = rbd.RBD_FLAG_OBJECT_MAP_INVALID
    elif why == 'fast-diff invalid':
        image.flags = rbd.RBD_FLAG_FAST_DIFF_INVALID
    elif why == 'no object map':
        image.features &= ~(rbd.RBD_FEATURE_OBJECT_MAP
                            | rbd.RBD_FEATURE_FAST_DIFF)
    else:  # object numbers are not offsets over the object size
        monkeypatch.setattr(rbd.Image, 'stripe_count', lambda self: 3)

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)

    assert osd.calls[:2] == ['object_numbers', 'copy_objects']
    assert osd.copied == [[1, 2, 3, last]]
    moved = ceph.image(fx.CONF_A, 'ssd', volume.name)
    assert moved.object_map == (None if why == 'no object map'
                                else {1, 2, 3, last})
    assert _read(ceph, 'ssd', volume.name, 2 * OBJECT + 7, 8) == b'object 2'


def test_an_object_map_without_fast_diff_is_read(ceph, osd):
    """The map says which objects exist whether or not fast-diff keeps
    its per-snapshot states."""
    src, dst = _pair(ceph, 'extents')
    volume, image, last = _sparse_volume(ceph, 1 << 30)
    image.features &= ~ceph.rbd.RBD_FEATURE_FAST_DIFF

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)

    assert 'object_numbers' not in osd.calls
    assert osd.copied == [[1, 2, 3, last]]
    assert ceph.image(fx.CONF_A, 'ssd', volume.name).object_map == {
        1, 2, 3, last}


def test_an_object_gone_before_its_copy_is_not_in_the_map(ceph, osd,
                                                          monkeypatch):
    """A listed object the source no longer has: skipped, and the copy's
    object map does not claim it (object-map check would fail)."""
    src, dst = _pair(ceph, 'none')
    volume, image, last = _sparse_volume(ceph, 1 << 30)
    real = osd.copy_objects

    def drop_object_2_first(*args):
        for block in image.object_blocks(2):
            image.blocks.pop(block, None)
        return real(*args)

    monkeypatch.setattr(osd, 'copy_objects', drop_object_2_first)

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)

    assert osd.copied == [[1, 2, 3, last]]
    moved = ceph.image(fx.CONF_A, 'ssd', volume.name)
    assert moved.object_map == {1, 3, last}
    assert sorted({i * 4096 // OBJECT for i in moved.blocks}) == [1, 3, last]


def test_a_source_without_object_map_gives_a_copy_without(ceph, osd):
    src, dst = _pair(ceph, 'extents')
    volume, image, last = _sparse_volume(ceph, 1 << 30)
    image.features &= ~(ceph.rbd.RBD_FEATURE_OBJECT_MAP |
                        ceph.rbd.RBD_FEATURE_FAST_DIFF)

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)

    assert osd.copied == [[1, 2, 3, last]]
    assert ceph.image(fx.CONF_A, 'ssd', volume.name).object_map is None
    assert not [e for e in ceph.executed
                if e[1].startswith('rbd_object_map.')]


def test_a_failed_object_map_update_removes_the_copy(ceph, osd):
    src, dst = _pair(ceph, 'extents')
    volume, _, _ = _sparse_volume(ceph, 1 << 30)
    ceph.fail('aio_execute', OSError(errno.EIO, 'injected'), times=1)

    with pytest.raises(exception.MigrationError, match='injected'):
        src.migrate_volume(None, volume, fx.host_of(dst))

    assert volume.name not in ceph.clusters[fx.CONF_A].pools['ssd']
    assert not [n for n in ceph.clusters[fx.CONF_A].pools['ssd']
                if '.rbdmig-' in n]
    assert _read(ceph, 'hdd', volume.name, OBJECT + 7, 8) == b'object 1'


def test_the_same_wrong_byte_passes_extents(ceph, osd, monkeypatch):
    """Why osd_checksum exists: the layout is right, a byte is not."""
    src, dst = _pair(ceph, 'extents')
    volume = _volume(ceph, {0: DATA})
    monkeypatch.setattr(osd, 'copy_objects', _corrupting(osd, 1000))

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)
    assert _read(ceph, 'ssd', volume.name, 0, len(DATA)) != DATA


def test_a_clone_falls_back_and_the_caller_thread_says_so(ceph, osd,
                                                          caplog):
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    ceph.rbd.RBD().create(ioctx, 'golden', 16 * MiB)
    with ceph.rbd.Image(ioctx, 'golden') as parent:
        parent.write(DATA, 0)
        parent.create_snap('snap')
        parent.protect_snap('snap')
    volume = fx.objects.Volume(size=1)
    ceph.rbd.RBD().clone(ioctx, 'golden', 'snap', ioctx, volume.name)
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='extents',
                         migration_verify='osd_checksum')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')

    with caplog.at_level(logging.INFO):
        assert src.migrate_volume(None, volume, fx.host_of(dst)) == (
            True, None)

    said = [r for r in caplog.records
            if 'instead of osd_checksum' in r.getMessage()]
    assert len(said) == 1
    assert 'the source is a clone' in said[0].getMessage()
    assert said[0].thread == threading.get_ident()
    assert 'object_checksums' not in osd.calls
    assert _read(ceph, 'ssd', volume.name, 0, len(DATA)) == DATA


@pytest.mark.parametrize('method', ['copy', 'deep_copy'])
def test_librbd_copies_by_the_extension_get_the_destinations_data_pool(
        ceph, osd, method):
    """The extension connects with the source's conf: the destination's
    rbd_default_data_pool must be passed, or the copy goes without."""
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = _volume(ceph, {0: DATA})
    ceph.clusters[fx.CONF_A].default_data_pool = 'data'

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)

    assert osd.calls[0] == method + '_image'
    assert osd.data_pools == ['data']
    assert _read(ceph, 'ssd', volume.name, 0, len(DATA)) == DATA


def test_osd_checksum_reaches_each_side_in_its_own_cluster(ceph, osd):
    """Into another cluster (by extents), the copy's objects are hashed
    by the destination's OSDs, through the destination's conf."""
    src = fx.make_driver(ceph, pool='hdd', migration_verify='osd_checksum')
    far = fx.make_driver(ceph, pool='hdd', conf_path=fx.CONF_B,
                         backend='far')
    volume = _volume(ceph, {0: DATA, OBJECT: b'second'})
    src_id = ceph.pool_id(ceph.clusters[fx.CONF_A], 'hdd')
    far_id = ceph.pool_id(ceph.clusters[fx.CONF_B], 'hdd')

    assert src.migrate_volume(None, volume, fx.host_of(far)) == (True, None)

    assert osd.checksummed == [(fx.CONF_A, src_id), (fx.CONF_B, far_id)]
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA),
                        conf=fx.CONF_B) == DATA
