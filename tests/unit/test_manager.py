"""Standalone migration: assisted first, generic fallback, nothing lost."""

import logging
import os

import pytest

from rbdmig import exception
from rbdmig.migration import manager
from rbdmig.migration import progress
from tests.unit import rbd_fixtures as fx
from tests.unit import test_file_driver as files

DATA = os.urandom(40000)


@pytest.fixture
def ceph():
    return fx.make_ceph()


@pytest.fixture
def file_backend(tmp_path):
    drv = files.make_driver(tmp_path)
    drv.do_setup(None)
    return drv


def _file_bytes(drv, volume, n):
    with open(drv.local_path(volume), 'rb') as f:
        return f.read(n)


def test_assisted_when_the_source_driver_can(ceph):
    src = fx.make_driver(ceph, pool='hdd')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)

    result = manager.migrate(None, volume, src, dst)

    assert result.path == 'assisted'
    assert result.copy is None
    assert result.volume.host == 'node@fast#ssd'
    assert result.volume.migration_status == 'success'
    assert result.volume.name == volume.name
    assert fx.read_head(ceph, 'ssd', volume.name, len(DATA)) == DATA


def test_a_move_connects_once_per_cluster_checks_included(ceph):
    # The in-use check, the destination's stats and the move each
    # connected: three clients for one cluster, where one serves.
    src = fx.make_driver(ceph, pool='hdd')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    before = ceph.connects

    assert manager.migrate(None, volume, src, dst).path == 'assisted'
    assert ceph.connects - before == 1 and ceph.connections == 0
    assert fx.read_head(ceph, 'ssd', volume.name, len(DATA)) == DATA


def test_generic_to_a_file_backend_then_back(ceph, file_backend):
    src = fx.make_driver(ceph, pool='hdd')
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)

    to_file = manager.migrate(None, volume, src, file_backend)

    assert to_file.path == 'generic'
    assert _file_bytes(file_backend, volume, len(DATA)) == DATA
    assert volume.name not in ceph.clusters[fx.CONF_A].pools['hdd']
    assert to_file.copy.bytes_written < 64 * 1024  # thin: data only


def test_refusal_without_generic_raises_and_keeps_source(ceph,
                                                         file_backend):
    src = fx.make_driver(ceph, pool='hdd')
    volume = fx.make_volume(ceph, data=DATA)
    with pytest.raises(exception.MigrationError, match='generic path'):
        manager.migrate(None, volume, src, file_backend,
                        allow_generic=False)
    assert volume.name in ceph.clusters[fx.CONF_A].pools['hdd']
    assert not os.path.exists(file_backend.local_path(volume))


def test_failed_generic_copy_removes_partial_destination(ceph,
                                                         file_backend):
    src = fx.make_driver(ceph, pool='hdd')
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)

    class Boom(progress.Callback):
        def call(self):
            if self.value:
                raise OSError('disk went away')

    with pytest.raises(OSError, match='disk went away'):
        manager.migrate(None, volume, src, file_backend, callback=Boom())
    assert not os.path.exists(file_backend.local_path(volume))
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA


def test_existing_destination_is_never_overwritten(ceph, file_backend):
    src = fx.make_driver(ceph, pool='hdd')
    volume = fx.make_volume(ceph, data=DATA)
    file_backend.create_volume(volume)
    with open(file_backend.local_path(volume), 'r+b') as f:
        f.write(b'theirs')

    with pytest.raises(exception.VolumeExists):
        manager.migrate(None, volume, src, file_backend)
    assert _file_bytes(file_backend, volume, 6) == b'theirs'
    assert volume.name in ceph.clusters[fx.CONF_A].pools['hdd']


def test_source_delete_failure_keeps_the_migration(ceph, file_backend,
                                                   caplog):
    src = fx.make_driver(ceph, pool='hdd')
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    ceph.fail('remove', ceph.rbd.ImageBusy('a client holds it'))

    with caplog.at_level(logging.ERROR):
        result = manager.migrate(None, volume, src, file_backend)

    assert result.path == 'generic'
    assert _file_bytes(file_backend, volume, len(DATA)) == DATA
    assert 'LEFTOVER' in caplog.text


def test_generic_copy_skips_zeros_only_when_the_driver_vouches(
        ceph, file_backend):
    src = fx.make_driver(ceph, pool='hdd')
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    # A driver whose new volumes may hold old data (thick LVM, say).
    file_backend.CREATES_ZEROED_VOLUMES = False

    result = manager.migrate(None, volume, src, file_backend)

    assert result.copy.bytes_skipped == 0
    assert _file_bytes(file_backend, volume, len(DATA)) == DATA


def _nothing_created(ceph, file_backend, volume):
    assert not os.path.exists(file_backend.local_path(volume))
    assert volume.name not in ceph.clusters[fx.CONF_A].pools['ssd']


@pytest.mark.parametrize('destination', ['file', 'rbd'])
def test_a_volume_with_open_clients_is_refused_before_anything(
        ceph, file_backend, destination):
    # Issue #6: it was copied and reported as moved, its source left over.
    src = fx.make_driver(ceph, pool='hdd')
    dst = (file_backend if destination == 'file'
           else fx.make_driver(ceph, pool='ssd', backend='fast'))
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    ceph.image(fx.CONF_A, 'hdd', volume.name).watchers.append('client.7')

    with pytest.raises(exception.VolumeInUse, match='client'):
        manager.migrate(None, volume, src, dst)

    _nothing_created(ceph, file_backend, volume)
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert ceph.connections == 0


@pytest.mark.parametrize('fields', [
    {'status': 'in-use'},
    {'volume_attachment': [{'id': 'a1', 'attach_status': 'attached'}]},
], ids=['in-use', 'attachments'])
def test_an_attached_volume_is_refused_before_anything(ceph, file_backend,
                                                       fields):
    src = fx.make_driver(ceph, pool='hdd')
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024, **fields)

    with pytest.raises(exception.VolumeInUse):
        manager.migrate(None, volume, src, file_backend)

    _nothing_created(ceph, file_backend, volume)
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA


def test_a_missing_source_is_reported_before_anything(ceph, file_backend):
    src = fx.make_driver(ceph, pool='hdd')
    volume = fx.make_volume(ceph, data=DATA)
    del ceph.clusters[fx.CONF_A].pools['hdd'][volume.name]

    with pytest.raises(exception.VolumeNotFound):
        manager.migrate(None, volume, src, file_backend)
    _nothing_created(ceph, file_backend, volume)


def test_drivers_say_whether_a_volume_is_in_use(ceph, file_backend):
    src = fx.make_driver(ceph, pool='hdd')
    volume = fx.make_volume(ceph)
    assert src.volume_in_use(volume) is False
    ceph.image(fx.CONF_A, 'hdd', volume.name).watchers.append('client.7')
    assert src.volume_in_use(volume) is True
    # The base driver (and the file backend) cannot tell: no.
    assert file_backend.volume_in_use(volume) is False
