"""Sizes: a whole, positive number of GiB that the backend can hold."""

import decimal
import os

import pytest

from rbdmig import exception
from rbdmig import objects
from tests.unit import rbd_fixtures as fx
from tests.unit import test_file_driver as files
from tests.unit.test_bad_names import one_sentence

NOT_SIZES = [0, -1, -2 ** 63, 1.0, 1.5, float('nan'), float('inf'), True,
             False, '1', '2; rm -rf /', None, b'1', [1], decimal.Decimal(1),
             1 + 0j]
# Whole numbers of GiB no backend here can hold: 16 EiB and more.
TOO_BIG = [2 ** 34, 2 ** 40, 10 ** 30]
_ids = [repr(s)[:16] for s in NOT_SIZES]


class Record:
    """A volume record as Cinder could hand it over, its size unchecked."""

    def __init__(self, size, name='volume-sized'):
        self.id, self.name, self.size = 'id-1', name, size
        self.status, self.volume_attachment = 'available', []

    def __getitem__(self, key):
        return getattr(self, key)


@pytest.fixture
def file_driver(tmp_path):
    drv = files.make_driver(tmp_path)
    drv.do_setup(None)
    return drv


@pytest.mark.parametrize('size', NOT_SIZES, ids=_ids)
def test_a_volume_record_refuses_it(size, bad_input):
    with pytest.raises(exception.InvalidInput, match='whole number') as e:
        objects.Volume(size=size)
    one_sentence(e.value)
    bad_input('size, Volume record (chosen)', 'refused')


@pytest.mark.parametrize('size', NOT_SIZES + TOO_BIG,
                         ids=_ids + [str(s)[:16] for s in TOO_BIG])
def test_the_file_backend_refuses_it(file_driver, size, bad_input):
    with pytest.raises((exception.InvalidInput,
                        exception.InvalidVolume)) as e:
        file_driver.create_volume(Record(size))
    one_sentence(e.value)
    assert os.listdir(file_driver.volume_dir) == []
    bad_input('size, file create (chosen)', 'refused')

    volume = objects.Volume(size=1)
    file_driver.create_volume(volume)
    with pytest.raises((exception.InvalidInput,
                        exception.InvalidVolume)) as e:
        file_driver.extend_volume(volume, size)
    one_sentence(e.value)
    assert os.path.getsize(file_driver.local_path(volume)) == 1 << 30
    bad_input('size, file extend (chosen)', 'refused')


@pytest.mark.parametrize('size', NOT_SIZES + TOO_BIG,
                         ids=_ids + [str(s)[:16] for s in TOO_BIG])
def test_the_rbd_backend_refuses_it(size, bad_input):
    ceph = fx.make_ceph()
    drv = fx.make_driver(ceph)
    images = ceph.clusters[fx.CONF_A].pools['hdd']
    with pytest.raises((exception.InvalidInput,
                        exception.InvalidVolume)) as e:
        drv.create_volume(Record(size))
    one_sentence(e.value)
    assert images == {}
    bad_input('size, rbd create (chosen)', 'refused')

    volume = fx.make_volume(ceph)
    with pytest.raises((exception.InvalidInput,
                        exception.InvalidVolume)) as e:
        drv.extend_volume(volume, size)
    one_sentence(e.value)
    assert images[volume.name].size == 8 * fx.MiB
    assert ceph.connections == 0
    bad_input('size, rbd extend (chosen)', 'refused')


def test_librbd_refusing_a_size_is_one_sentence():
    ceph = fx.make_ceph()
    drv = fx.make_driver(ceph)
    ceph.fail('create', ceph.rbd.InvalidArgument(
        '[errno 22] RBD invalid argument (error creating image)'))
    with pytest.raises(exception.InvalidVolume, match='librbd refused'):
        drv.create_volume(objects.Volume(size=2 ** 20))
