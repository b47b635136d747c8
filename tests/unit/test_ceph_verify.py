"""Verification of a copy before its source goes (fake librbd)."""

import pytest

from rbdmig import exception
from rbdmig.ceph import methods
from rbdmig.ceph import verify
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
