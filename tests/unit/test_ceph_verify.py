"""Verification of a copy before its source goes (fake librbd)."""

import pytest

from rbdmig import exception
from rbdmig import ext
from rbdmig.ceph import methods
from rbdmig.ceph import verify
from tests.unit import fake_ext
from tests.unit import rbd_fixtures as fx

MiB = fx.MiB
OBJECT = 4 * MiB  # the fake's images have order 22


@pytest.fixture
def ceph():
    return fx.make_ceph()


def _pair(ceph, src_pieces, copy_pieces):
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    rbd = ceph.rbd
    images = []
    for name, pieces in (('src', src_pieces), ('copy', copy_pieces)):
        rbd.RBD().create(ioctx, name, 16 * MiB)
        image = rbd.Image(ioctx, name)
        for offset, data in pieces.items():
            image.write(data, offset)
        images.append(image)
    return images


def _check(ceph, level, src_pieces, copy_pieces):
    source, copy = _pair(ceph, src_pieces, copy_pieces)
    verify.verify(source, copy, level, 16 * MiB)


DATA = {0: b'a' * 5000, 9 * MiB: b'b' * 100}


@pytest.mark.parametrize('level', verify.LEVELS)
def test_an_identical_copy_passes(ceph, level):
    _check(ceph, level, DATA, DATA)


def test_zeros_the_copy_skipped_pass_extents(ceph):
    # The source wrote zeros over a whole object; the copy left it out.
    zeros = {**DATA, OBJECT: bytes(8192)}
    _check(ceph, 'extents', zeros, DATA)
    _check(fx.make_ceph(), 'checksum', zeros, DATA)


@pytest.mark.parametrize('level', ['extents', 'checksum'])
def test_missing_data_is_caught(ceph, level):
    # extents names the object (8 MiB), checksum the bytes (9 MiB).
    with pytest.raises(exception.CopyError, match='offset (%d|%d)' % (
            8 * MiB, 9 * MiB)):
        _check(ceph, level, DATA, {0: DATA[0]})


@pytest.mark.parametrize('level', ['extents', 'checksum'])
def test_data_from_nowhere_is_caught(ceph, level):
    with pytest.raises(exception.CopyError, match='offset %d' % OBJECT):
        _check(ceph, level, DATA, {**DATA, OBJECT: b'x'})


def test_different_bytes_pass_extents_and_fail_checksum(ceph):
    changed = {**DATA, 9 * MiB: b'c' * 100}
    _check(ceph, 'extents', DATA, changed)
    with pytest.raises(exception.CopyError, match='differs'):
        _check(fx.make_ceph(), 'checksum', DATA, changed)


def test_size_and_snapshots_are_always_checked(ceph):
    source, copy = _pair(ceph, DATA, DATA)
    with pytest.raises(exception.CopyError, match='size'):
        verify.verify(source, copy, 'none', 32 * MiB)
    source.create_snap('kept')
    with pytest.raises(exception.CopyError, match='snapshots'):
        verify.verify(source, copy, 'none', 16 * MiB, ('kept',))


@pytest.mark.parametrize('method', sorted(methods.METHODS))
@pytest.mark.parametrize('level', verify.LEVELS)
def test_a_clone_moves_with_its_parents_data(ceph, method, level):
    """Every method, every level: the copy reads as the clone does."""
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    rbd = ceph.rbd
    rbd.RBD().create(ioctx, 'golden', 8 * MiB)
    with rbd.Image(ioctx, 'golden') as parent:
        parent.write(b'parent data' * 1000, 0)
        parent.create_snap('snap')
        parent.protect_snap('snap')
    volume = fx.objects.Volume(size=1)
    rbd.RBD().clone(ioctx, 'golden', 'snap', ioctx, volume.name)
    with rbd.Image(ioctx, volume.name) as clone:
        clone.write(b'own data', 5 * MiB)
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method,
                         migration_verify=level)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)

    assert fx.read_head(ceph, 'ssd', volume.name, 11000) == (
        b'parent data' * 1000)[:11000]
    with rbd.Image(ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('ssd'),
                   volume.name) as moved:
        assert moved.read(5 * MiB, 8) == b'own data'


# -- osd_checksum: the OSDs' answers, faked at the extension's boundary --

SPEC = ext.ClusterSpec(fx.CONF_A)


@pytest.fixture
def osd(monkeypatch, ceph):
    """The fake extension over ``ceph``, as rbdmig.ext's module."""
    return fake_ext.install(monkeypatch, ceph)


def _fresh(ceph):
    """Empty the fake's pools, so that ``_pair`` can run again."""
    for pool in ceph.clusters[fx.CONF_A].pools.values():
        pool.clear()
    return ceph


def _osd_check(ceph, src_pieces, copy_pieces):
    source, copy = _pair(_fresh(ceph), src_pieces, copy_pieces)
    return verify.verify(source, copy, 'osd_checksum', 16 * MiB,
                         clusters=(SPEC, SPEC))


def test_osd_checksum_passes_an_identical_copy_at_the_osds(ceph, osd):
    assert _osd_check(ceph, DATA, DATA) is None
    assert osd.calls == ['object_checksums'] * 2


def test_one_wrong_byte_in_the_same_layout_fails_osd_checksum(ceph, osd):
    wrong = {**DATA, 9 * MiB: b'b' * 99 + b'c'}
    _check(ceph, 'extents', DATA, wrong)  # what the old default let by
    with pytest.raises(exception.CopyError,
                       match='offset %d \\(object 2\\)' % (8 * MiB)):
        _osd_check(ceph, DATA, wrong)


def test_a_hole_against_zeros_passes_and_against_data_fails(ceph, osd):
    zeros = {**DATA, OBJECT: bytes(8192)}
    assert _osd_check(ceph, zeros, DATA) is None
    assert _osd_check(ceph, DATA, zeros) is None
    with pytest.raises(exception.CopyError, match='object 1'):
        _osd_check(ceph, {**DATA, OBJECT: b'x'}, DATA)
    with pytest.raises(exception.CopyError, match='object 1'):
        _osd_check(ceph, DATA, {**DATA, OBJECT: b'x'})


def test_a_short_object_is_compared_with_zeros_beyond_it(ceph, osd):
    # The source wrote zeros after its data, the copy did not: objects of
    # 16 KiB and 8 KiB that read the same.
    longer = {0: b'a' * 5000 + bytes(12000)}
    assert _osd_check(ceph, longer, {0: b'a' * 5000}) is None
    assert _osd_check(ceph, {0: b'a' * 5000}, longer) is None
    with pytest.raises(exception.CopyError, match='object 0'):
        _osd_check(ceph, longer, {0: b'a' * 4999 + b'b'})
    with pytest.raises(exception.CopyError, match='object 0'):
        _osd_check(ceph, {0: b'a' * 5000 + bytes(8192) + b'z'},
                   {0: b'a' * 5000})


def test_osd_checksum_hashes_objects_in_the_data_pool(ceph, osd):
    """Objects are checksummed where they live: checking the image's own
    pool would find no object on either side, and pass anything."""
    cluster = ceph.clusters[fx.CONF_A]
    cluster.default_data_pool = 'ssd'
    source, copy = _pair(ceph, DATA, {**DATA, 0: b'A' + DATA[0][1:]})
    assert source.data_pool_id() == ceph.pool_id(cluster, 'ssd')
    with pytest.raises(exception.CopyError, match='object 0'):
        verify.verify(source, copy, 'osd_checksum', 16 * MiB,
                      clusters=(SPEC, SPEC))


def test_a_clone_falls_back_to_checksum_and_says_why(ceph, osd):
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    rbd = ceph.rbd
    rbd.RBD().create(ioctx, 'golden', 16 * MiB)
    with rbd.Image(ioctx, 'golden') as parent:
        parent.write(b'parent data', 0)
        parent.create_snap('snap')
        parent.protect_snap('snap')
    rbd.RBD().clone(ioctx, 'golden', 'snap', ioctx, 'clone')
    rbd.RBD().create(ioctx, 'wrong', 16 * MiB)
    clone, wrong = rbd.Image(ioctx, 'clone'), rbd.Image(ioctx, 'wrong')
    wrong.write(b'parent dat!', 0)

    with pytest.raises(exception.CopyError, match='differs'):
        verify.verify(clone, wrong, 'osd_checksum', 16 * MiB,
                      clusters=(SPEC, SPEC))
    assert osd.calls == []  # the parent's data is not in the clone's
    wrong.write(b'parent data', 0)
    why = verify.verify(clone, wrong, 'osd_checksum', 16 * MiB,
                        clusters=(SPEC, SPEC))
    assert why == ('the source is a clone, whose data is partly in its '
                   'parent\'s objects')


def test_without_the_extension_osd_checksum_reads_on_the_host(ceph):
    source, copy = _pair(ceph, DATA, {**DATA, 9 * MiB: b'c' * 100})
    with pytest.raises(exception.CopyError, match='differs'):
        verify.verify(source, copy, 'osd_checksum', 16 * MiB,
                      clusters=(SPEC, SPEC))
    copy.write(DATA[9 * MiB], 9 * MiB)
    why = verify.verify(source, copy, 'osd_checksum', 16 * MiB,
                        clusters=(SPEC, SPEC))
    assert why.startswith('disabled by RBDMIG_DISABLE_OFFLOAD')


def test_osd_checksum_asks_only_the_objects_the_maps_name(ceph, osd):
    """A thin image costs what its data does: objects 0 and 2 of four."""
    assert _osd_check(ceph, DATA, DATA) is None
    assert osd.checksummed_objects == [(0, 2), (0, 2)]
    osd.checksummed_objects.clear()
    assert _osd_check(ceph, DATA, {**DATA, OBJECT: bytes(8192)}) is None
    assert osd.checksummed_objects == [(0, 1, 2), (0, 1, 2)]


def _hiding(image, number):
    """``image`` with its map leaving out object ``number``: librbd reads
    zeros there, whatever RADOS holds under the object's name."""
    whole = image.diff_iterate

    def diff_iterate(offset, length, from_snapshot, cb, **kwargs):
        def seen(start, extent, exists):
            if start // OBJECT != number:
                cb(start, extent, exists)
        whole(offset, length, from_snapshot, seen, **kwargs)

    image.diff_iterate = diff_iterate
    return image


def test_an_object_the_copys_map_leaves_out_is_a_hole(ceph, osd):
    """Its bytes in RADOS match the source's, but the copy reads zeros
    there: the old osd_checksum, comparing RADOS alone, let it by."""
    source, copy = _pair(_fresh(ceph), DATA, DATA)
    with pytest.raises(exception.CopyError, match='object 2'):
        verify.verify(source, _hiding(copy, 2), 'osd_checksum', 16 * MiB,
                      clusters=(SPEC, SPEC))
    source, copy = _pair(_fresh(ceph), {**DATA, OBJECT: bytes(8192)},
                         {**DATA, OBJECT: b'x'})
    assert verify.verify(_hiding(source, 1), _hiding(copy, 1),
                         'osd_checksum', 16 * MiB,
                         clusters=(SPEC, SPEC)) is None


@pytest.mark.parametrize('level,match', [
    ('extents', 'offset %d is missing from the copy' % (8 * MiB)),
    ('osd_checksum', 'object 2')])
def test_the_maps_are_read_whole_and_an_unmarked_object_is_a_hole(
        ceph, osd, monkeypatch, level, match):
    """With the pools, each image's object map is read in one call (no
    diff walking the size); an object written behind librbd's back and
    never marked reads as zeros, so the copy lacks it."""
    source, copy = _pair(_fresh(ceph), DATA, DATA)
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    maps = (ceph.rbd, ioctx, ioctx)
    ceph.image(fx.CONF_A, 'hdd', 'copy').behind.add(2)
    monkeypatch.setattr(ceph.rbd.Image, 'diff_iterate', None)

    with pytest.raises(exception.CopyError, match=match):
        verify.verify(source, copy, level, 16 * MiB, clusters=(SPEC, SPEC),
                      maps=maps)

    ceph.image(fx.CONF_A, 'hdd', 'copy').object_map.add(2)
    assert verify.verify(source, copy, level, 16 * MiB,
                         clusters=(SPEC, SPEC), maps=maps) is None
