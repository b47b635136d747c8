"""What an interrupted librbd rename leaves, and who may clear it.

librbd renames in steps: ``rbd_id.<new>`` created exclusively, the
directory's entry renamed, ``rbd_id.<old>`` removed.  The fake keeps the
directory (``ioctx.images``) and RADOS objects apart, as Ceph does: an
``rbd_id.<name>`` object alone takes the name (librbd refuses to create
or rename to it).  The real states are built on a real cluster in
``tests/functional/test_interrupted_renames.py``.
"""

import struct

import pytest

from rbdmig import exception
from rbdmig.ceph import images
from tests.unit import rbd_fixtures as fx


@pytest.fixture
def ceph():
    return fx.make_ceph()


@pytest.fixture
def ioctx(ceph):
    return ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')


def _left(ioctx, name, image_id):
    """``rbd_id.<name>`` as a killed rename leaves it."""
    ioctx.objects[images.ID_PREFIX + name] = {
        'data': struct.pack('<I', len(image_id)) + image_id.encode(),
        'omap': {}}


def _id(ceph, ioctx, name):
    with ceph.rbd.Image(ioctx, name, read_only=True) as image:
        return image.id()


def test_a_rename_killed_before_the_directory_moved_is_made(ceph, ioctx):
    volume = fx.make_volume(ceph, data=b'kept')
    _left(ioctx, 'new', _id(ceph, ioctx, volume.name))
    with pytest.raises(ceph.rbd.ImageExists):
        ceph.rbd.RBD().rename(ioctx, volume.name, 'new')

    images.rename(ceph.rbd, ioctx, ceph.rados.Error, volume.name, 'new')

    assert ceph.rbd.RBD().list(ioctx) == ['new']
    assert images.ID_PREFIX + 'new' not in ioctx.objects
    assert fx.read_head(ceph, 'hdd', 'new', 4) == b'kept'


def test_a_rename_killed_after_the_directory_moved_is_only_swept(ceph,
                                                                  ioctx):
    volume = fx.make_volume(ceph, data=b'kept')
    ceph.rbd.RBD().rename(ioctx, volume.name, 'new')
    _left(ioctx, volume.name, _id(ceph, ioctx, 'new'))

    images.rename(ceph.rbd, ioctx, ceph.rados.Error, volume.name, 'new')

    assert ceph.rbd.RBD().list(ioctx) == ['new']
    assert images.ID_PREFIX + volume.name not in ioctx.objects


def test_an_id_object_of_another_image_is_left_and_refuses(ceph, ioctx):
    volume = fx.make_volume(ceph)
    _left(ioctx, 'new', 'someone-else')

    with pytest.raises(ceph.rbd.ImageExists):
        images.rename(ceph.rbd, ioctx, ceph.rados.Error, volume.name, 'new')
    assert images.clear_stale_names(ceph.rbd, ioctx, ceph.rados.Error,
                                    ['new'], [_id(ceph, ioctx,
                                                  volume.name)]) == []

    assert images.ID_PREFIX + 'new' in ioctx.objects
    assert ceph.rbd.RBD().list(ioctx) == [volume.name]


def test_a_name_the_directory_lists_is_never_cleared(ceph, ioctx):
    volume = fx.make_volume(ceph)
    image_id = _id(ceph, ioctx, volume.name)
    _left(ioctx, volume.name, image_id)  # what librbd itself keeps

    assert images.clear_stale_names(ceph.rbd, ioctx, ceph.rados.Error,
                                    [volume.name], [image_id]) == []
    assert images.stray_name(ceph.rbd, ioctx, ceph.rados.Error,
                             volume.name) is None


def test_the_generic_fence_renames_past_a_killed_rename(ceph, ioctx):
    drv = fx.make_driver(ceph)
    volume = fx.make_volume(ceph, data=b'kept')
    _left(ioctx, 'retired', _id(ceph, ioctx, volume.name))

    drv.rename_volume(volume, 'retired')

    assert ceph.rbd.RBD().list(ioctx) == ['retired']


def test_a_move_into_a_stray_name_is_refused_before_it_copies(ceph):
    src, dst = fx.make_driver(ceph), fx.make_driver(ceph, pool='ssd',
                                                    backend='fast')
    volume = fx.make_volume(ceph, data=b'kept')
    ssd = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('ssd')
    _left(ssd, volume.name, 'f00dfeedbeef')

    with pytest.raises(exception.MigrationRefused,
                       match='left by an interrupted rename.*rados -p ssd '
                             'rm rbd_id.%s' % volume.name):
        src.migrate_volume(None, volume, fx.host_of(dst))

    assert ceph.rbd.RBD().list(ssd) == []
    assert fx.read_head(ceph, 'hdd', volume.name, 4) == b'kept'
