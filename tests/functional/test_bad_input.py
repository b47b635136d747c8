"""Bad input against real librbd: names, sizes, refused in one sentence."""

import uuid

import pytest

from rbdmig import exception
from rbdmig import objects
from rbdmig.migration import manager
from tests.functional import helpers


def _named(name, size=1):
    volume = objects.Volume(size=size)
    volume.name = name
    return volume


def _one_sentence(err):
    text = str(err)
    assert '\n' not in text and text.endswith('.') and len(text) < 300
    return text


def test_a_1000_character_name_moves_on_real_librbd(ceph_cluster):
    drivers = helpers.load_drivers(ceph_cluster)
    name = 'v' * 968 + uuid.uuid4().hex  # 1,000 characters
    volume, before = helpers.new_volume(drivers['ceph-a'], extents=4,
                                        name=name)
    assert name in helpers.images(ceph_cluster, 'volumes-a')

    moved = manager.migrate(None, volume, drivers['ceph-a'],
                            drivers['ceph-b'])
    assert moved.path == 'assisted'
    assert helpers.digest(drivers['ceph-b'], moved.volume) == before
    assert name not in helpers.images(ceph_cluster, 'volumes-a')

    # A file name cannot be that long: refused before anything is made.
    with pytest.raises(exception.InvalidVolume, match='longer than') as e:
        manager.migrate(None, moved.volume, drivers['ceph-b'],
                        drivers['files'])
    _one_sentence(e.value)
    assert helpers.digest(drivers['ceph-b'], moved.volume) == before
    drivers['ceph-b'].delete_volume(moved.volume)


@pytest.mark.parametrize('name', [
    '', 'x' * 2042, 'vol\x00x', '\ud800', 'a/b', 'a@b', 'a\nb',
], ids=['empty', '2042-bytes', 'nul', 'surrogate', 'slash', 'at',
        'newline'])
def test_names_librbd_cannot_take_are_refused(ceph_cluster, name):
    drv = helpers.load_drivers(ceph_cluster)['ceph-a']
    before = helpers.images(ceph_cluster, 'volumes-a')
    with pytest.raises(exception.InvalidVolume) as caught:
        drv.create_volume(_named(name))
    _one_sentence(caught.value)
    assert helpers.images(ceph_cluster, 'volumes-a') == before


def test_a_nul_never_makes_librbd_delete_another_image(ceph_cluster):
    # librbd takes names as C strings: 'victim\0x' would remove 'victim'.
    drv = helpers.load_drivers(ceph_cluster)['ceph-a']
    victim = 'victim-' + uuid.uuid4().hex
    drv.create_volume(_named(victim))

    with pytest.raises(exception.InvalidVolume, match='control character'):
        drv.delete_volume(_named(victim + '\x00x'))

    assert victim in helpers.images(ceph_cluster, 'volumes-a')
    drv.delete_volume(_named(victim))


@pytest.mark.parametrize('size', [2 ** 20, 2 ** 34, 0, -1, 1.5, '1'],
                         ids=['1-PiB', '16-EiB', 'zero', 'negative',
                              'float', 'str'])
def test_sizes_librbd_cannot_take_are_refused(ceph_cluster, size):
    # Measured: librbd refuses 1 PiB with EINVAL (its object map), the
    # binding 16 EiB with OverflowError; rbdmig says so in one sentence.
    drv = helpers.load_drivers(ceph_cluster)['ceph-a']
    volume = _named('sized-' + uuid.uuid4().hex)
    volume.size = size  # a record that was never checked
    before = helpers.images(ceph_cluster, 'volumes-a')
    with pytest.raises((exception.InvalidVolume,
                        exception.InvalidInput)) as caught:
        drv.create_volume(volume)
    _one_sentence(caught.value)
    assert helpers.images(ceph_cluster, 'volumes-a') == before
