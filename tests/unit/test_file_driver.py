"""Unit tests of FileDriver on a temporary directory."""

import hashlib
import io
import os
import socket
import threading

import pytest
from oslo_config import cfg
from oslo_utils import units

from rbdmig import exception, objects
from rbdmig.migration import progress
from rbdmig.volume import configuration
from rbdmig.volume.drivers import file as file_driver

CTX = None  # the file driver never looks at the request context


class FakeConnector:
    """Stands in for os-brick's local connector and records its calls."""

    def __init__(self):
        self.connected = []
        self.disconnected = []

    def connect_volume(self, props):
        self.connected.append(props['device_path'])
        return {'type': 'local', 'path': props['device_path']}

    def disconnect_volume(self, props, device_info, force=False,
                          ignore_errors=False):
        self.disconnected.append(device_info['path'])


def make_driver(tmp_path, connector=None, **overrides):
    conf = cfg.ConfigOpts()
    config = configuration.Configuration(
        file_driver.FILE_OPTS, config_group='files', conf=conf)
    kwargs = {'configuration': config}
    if connector is not None:
        kwargs['connector'] = connector
    drv = file_driver.FileDriver(**kwargs)
    overrides.setdefault('file_volume_dir', str(tmp_path / 'volumes'))
    for name, value in overrides.items():
        conf.set_override(name, value, group='files')
    return drv


@pytest.fixture
def driver(tmp_path):
    drv = make_driver(tmp_path)
    drv.do_setup(CTX)
    drv.check_for_setup_error()
    return drv


def volume(name=None, size=1):
    return objects.Volume(name=name, size=size)


def write_at(drv, vol, pieces):
    with open(drv.local_path(vol), 'r+b') as f:
        for offset, data in pieces.items():
            f.seek(offset)
            f.write(data)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(units.Mi), b''):
            digest.update(block)
    return digest.hexdigest()


# -- set-up -----------------------------------------------------------------

def test_setup_creates_the_directory(tmp_path):
    drv = make_driver(tmp_path, file_volume_dir=str(tmp_path / 'a' / 'b'))
    drv.do_setup(CTX)
    assert (tmp_path / 'a' / 'b').is_dir()
    drv.check_for_setup_error()


def test_configuration_stays_out_of_global_conf(tmp_path):
    make_driver(tmp_path)
    assert 'files' not in cfg.CONF


def test_setup_cannot_create_the_directory(tmp_path):
    (tmp_path / 'plain').write_bytes(b'')
    drv = make_driver(tmp_path, file_volume_dir=str(tmp_path / 'plain' / 'v'))
    with pytest.raises(exception.InvalidConfiguration, match='cannot be'):
        drv.do_setup(CTX)


def test_check_rejects_missing_or_plain_file(tmp_path):
    with pytest.raises(exception.InvalidConfiguration, match='not a dir'):
        make_driver(tmp_path).check_for_setup_error()
    (tmp_path / 'plain').write_bytes(b'')
    drv = make_driver(tmp_path, file_volume_dir=str(tmp_path / 'plain'))
    with pytest.raises(exception.InvalidConfiguration, match='not a dir'):
        drv.check_for_setup_error()


def test_check_rejects_read_only_directory(driver, monkeypatch):
    # os.access is faked: running as root would bypass the permissions.
    monkeypatch.setattr(os, 'access', lambda path, mode: False)
    with pytest.raises(exception.InvalidConfiguration, match='not writable'):
        driver.check_for_setup_error()


def test_driver_options_are_listed():
    names = {opt.name for opt in file_driver.FileDriver.get_driver_options()}
    assert {'file_volume_dir', 'file_volume_mode',
            'volume_copy_bps_limit'} <= names
    assert 'Version history' in file_driver.FileDriver.__doc__


# -- lifecycle ----------------------------------------------------------------

def test_create_volume_is_sparse(driver):
    vol = volume()
    driver.create_volume(vol)
    path = driver.local_path(vol)
    assert os.path.dirname(path) == driver.volume_dir
    assert os.path.basename(path) == vol.name
    assert os.path.getsize(path) == units.Gi
    assert driver.get_allocated_bytes(vol) < units.Mi
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_create_volume_applies_the_mode(tmp_path):
    drv = make_driver(tmp_path, file_volume_mode='0640')
    drv.do_setup(CTX)
    vol = volume()
    drv.create_volume(vol)
    assert os.stat(drv.local_path(vol)).st_mode & 0o777 == 0o640


def test_create_refuses_to_overwrite(driver):
    vol = volume()
    driver.create_volume(vol)
    write_at(driver, vol, {0: b'keep me'})
    with pytest.raises(exception.VolumeExists):
        driver.create_volume(volume(name=vol.name, size=2))
    with open(driver.local_path(vol), 'rb') as f:
        assert f.read(7) == b'keep me'
    assert os.path.getsize(driver.local_path(vol)) == units.Gi


def test_delete_volume_is_idempotent(driver):
    vol = volume()
    driver.create_volume(vol)
    driver.delete_volume(vol)
    assert not os.path.exists(driver.local_path(vol))
    driver.delete_volume(vol)
    driver.delete_volume(volume())  # never created


def test_extend_volume_grows_and_keeps_data(driver):
    vol = volume()
    driver.create_volume(vol)
    write_at(driver, vol, {units.Mi: b'data'})
    driver.extend_volume(vol, 3)
    path = driver.local_path(vol)
    assert os.path.getsize(path) == 3 * units.Gi
    assert driver.get_allocated_bytes(vol) < units.Mi
    with open(path, 'rb') as f:
        f.seek(units.Mi)
        assert f.read(4) == b'data'
    driver.extend_volume(vol, 3)  # the same size is fine
    assert os.path.getsize(path) == 3 * units.Gi


def test_extend_never_shrinks(driver):
    vol = volume(size=2)
    driver.create_volume(vol)
    with pytest.raises(exception.InvalidInput, match='cannot shrink'):
        driver.extend_volume(vol, 1)
    assert os.path.getsize(driver.local_path(vol)) == 2 * units.Gi


def test_extend_missing_volume(driver):
    with pytest.raises(exception.VolumeNotFound):
        driver.extend_volume(volume(), 2)


def test_allocated_bytes_of_missing_volume(driver):
    with pytest.raises(exception.VolumeNotFound):
        driver.get_allocated_bytes(volume())


# -- names --------------------------------------------------------------------

@pytest.mark.parametrize('name', [
    '', '.', '..', '../escape', 'a/b', '/etc/passwd', 'nul\0byte', '.hidden',
])
def test_unsafe_names_are_rejected(driver, name):
    vol = volume()
    vol.name = name  # Volume() would replace an empty name
    for call in (driver.create_volume, driver.delete_volume,
                 driver.local_path):
        with pytest.raises(exception.InvalidVolume):
            call(vol)
    assert os.listdir(driver.volume_dir) == []


def test_symlink_out_of_the_directory_is_rejected(driver, tmp_path):
    outside = tmp_path / 'outside'
    outside.write_bytes(b'precious')
    vol = volume()
    os.symlink(outside, os.path.join(driver.volume_dir, vol.name))
    with pytest.raises(exception.InvalidVolume, match='symlink'):
        driver.delete_volume(vol)
    with pytest.raises(exception.InvalidVolume):
        driver.open_volume(CTX, vol, 'r+b')
    with pytest.raises(exception.InvalidVolume):
        driver.extend_volume(vol, 5)
    assert outside.read_bytes() == b'precious'


# -- stats --------------------------------------------------------------------

def test_volume_stats(tmp_path):
    drv = make_driver(tmp_path, volume_backend_name='files-a',
                      reserved_percentage=7)
    drv.do_setup(CTX)
    drv.create_volume(volume(size=2))
    stats = drv.get_volume_stats(refresh=True)
    fs = os.statvfs(drv.volume_dir)
    assert stats['storage_protocol'] == 'file'
    assert stats['volume_backend_name'] == 'files-a'
    assert stats['reserved_percentage'] == 7
    assert stats['vendor_name'] == 'rbdmig'
    assert stats['driver_version'] == file_driver.FileDriver.VERSION
    assert stats['thin_provisioning_support'] is True
    assert stats['thick_provisioning_support'] is False
    assert stats['provisioned_capacity_gb'] == 2.0
    assert stats['total_capacity_gb'] == round(
        fs.f_frsize * fs.f_blocks / units.Gi, 2)
    assert 0 < stats['free_capacity_gb'] <= stats['total_capacity_gb']
    volume_dir = os.path.realpath(tmp_path / 'volumes')
    assert stats['location_info'] == (
        f'file:{socket.gethostname()}:{volume_dir}')


def test_stats_of_missing_directory(tmp_path):
    with pytest.raises(exception.VolumeBackendAPIException):
        make_driver(tmp_path).get_volume_stats(refresh=True)


# -- connections and handles --------------------------------------------------

def test_initialize_connection(driver):
    vol = volume()
    info = driver.initialize_connection(vol, {})
    assert info == {'driver_volume_type': 'local',
                    'data': {'device_path': driver.local_path(vol)}}


def test_open_read_only_goes_through_the_connector(tmp_path):
    brick = FakeConnector()
    drv = make_driver(tmp_path, connector=brick)
    drv.do_setup(CTX)
    vol = volume()
    drv.create_volume(vol)
    handle = drv.open_volume(CTX, vol)
    try:
        assert isinstance(handle, io.BufferedReader)
        assert handle.readable() and not handle.writable()
        assert os.fstat(handle.fileno()).st_size == units.Gi
    finally:
        drv.close_volume(CTX, vol, handle)
    assert handle.closed
    assert brick.connected == brick.disconnected == [drv.local_path(vol)]


def test_open_read_write_with_real_os_brick(driver):
    vol = volume()
    driver.create_volume(vol)
    handle = driver.open_volume(CTX, vol, 'r+b')
    try:
        assert handle.writable()
        handle.seek(5)
        handle.write(b'hello')
    finally:
        driver.close_volume(CTX, vol, handle)
    with open(driver.local_path(vol), 'rb') as f:
        assert f.read(10) == b'\0' * 5 + b'hello'


@pytest.mark.parametrize('mode', ['r', 'w', 'wb', 'ab', 'w+b', 'rb+x'])
def test_open_rejects_other_modes(driver, mode):
    vol = volume()
    driver.create_volume(vol)
    with pytest.raises(exception.InvalidInput, match='mode'):
        driver.open_volume(CTX, vol, mode)
    assert os.path.getsize(driver.local_path(vol)) == units.Gi


def test_open_missing_volume_disconnects(tmp_path):
    brick = FakeConnector()
    drv = make_driver(tmp_path, connector=brick)
    drv.do_setup(CTX)
    with pytest.raises(exception.VolumeNotFound):
        drv.open_volume(CTX, volume())
    assert len(brick.connected) == len(brick.disconnected) == 1


# -- host-driven copy ---------------------------------------------------------

def test_copy_volume_data_is_identical_and_thin(driver):
    src, dst = volume(), volume(size=2)
    driver.create_volume(src)
    driver.create_volume(dst)
    pieces = {0: os.urandom(units.Mi),
              100 * units.Mi + 4097: os.urandom(3 * units.Mi),
              units.Gi - 10: b'tail of it'}
    write_at(driver, src, pieces)
    callback = progress.Callback()

    # Both were just created: the caller vouches for zeros.
    result = driver.copy_volume_data(CTX, src, dst, callback=callback,
                                     dest_zeroed=True)

    src_path, dst_path = driver.local_path(src), driver.local_path(dst)
    assert callback.value == callback.size == units.Gi
    assert result.size == units.Gi
    assert result.bytes_read < 16 * units.Mi
    # The destination keeps its own, larger size; hash the source's range.
    assert os.path.getsize(dst_path) == 2 * units.Gi
    os.truncate(dst_path, units.Gi)
    assert sha256(dst_path) == sha256(src_path)
    src_alloc = driver.get_allocated_bytes(src)
    dst_alloc = driver.get_allocated_bytes(dst)
    assert dst_alloc <= src_alloc + 4 * units.Mi
    assert dst_alloc < 32 * units.Mi


def test_copy_volume_data_between_two_backends(tmp_path):
    first = make_driver(tmp_path, file_volume_dir=str(tmp_path / 'one'))
    second = make_driver(tmp_path, file_volume_dir=str(tmp_path / 'two'))
    for drv in (first, second):
        drv.do_setup(CTX)
    src, dst = volume(), volume()
    first.create_volume(src)
    second.create_volume(dst)
    write_at(first, src, {7 * units.Mi: b'moved across'})
    first.copy_volume_data(CTX, src, dst, dest_driver=second)
    with open(second.local_path(dst), 'rb') as f:
        f.seek(7 * units.Mi)
        assert f.read(12) == b'moved across'
    assert not os.path.exists(first.local_path(dst))


def test_copy_volume_data_refuses_smaller_destination(driver):
    src, dst = volume(size=2), volume(size=1)
    driver.create_volume(src)
    driver.create_volume(dst)
    with pytest.raises(exception.InvalidVolume, match='smaller'):
        driver.copy_volume_data(CTX, src, dst)


def test_copy_volume_data_onto_a_used_volume_leaves_nothing_stale(driver):
    # Issue #5: copying onto an existing volume must not leave its old
    # data where the source has holes or zeros.
    src, dst = volume(), volume()
    driver.create_volume(src)
    driver.create_volume(dst)
    write_at(driver, src, {units.Mi: os.urandom(units.Mi),
                           # zeros inside the source's data
                           3 * units.Mi: b'\x01' + bytes(units.Mi)})
    stale = {0: b'\xff' * units.Mi, units.Mi + 5: b'\xee' * 100,
             3 * units.Mi + 1: b'\xdd' * 4096, 500 * units.Mi: b'\xcc' * 9,
             units.Gi - 3: b'end'}
    write_at(driver, dst, stale)

    result = driver.copy_volume_data(CTX, src, dst)

    with open(driver.local_path(src), 'rb') as s, \
            open(driver.local_path(dst), 'rb') as d:
        for offset in sorted(stale) + [units.Mi, 3 * units.Mi]:
            s.seek(offset)
            d.seek(offset)
            assert d.read(units.Mi) == s.read(units.Mi), offset
    assert result.bytes_skipped == 0


def test_stats_are_never_read_half_refreshed(driver, monkeypatch):
    # A drain refreshes the destination's stats on one thread while
    # another reads them for its move: the reader once saw them before
    # location_info was added, and its move fell back to the generic copy.
    paused, go = threading.Event(), threading.Event()
    provisioned = driver._provisioned_bytes

    def slow(path):
        paused.set()
        go.wait(10)
        return provisioned(path)

    monkeypatch.setattr(driver, '_provisioned_bytes', slow)
    seen = []
    refresher = threading.Thread(
        target=lambda: driver.get_volume_stats(refresh=True))
    refresher.start()
    assert paused.wait(10)
    reader = threading.Thread(
        target=lambda: seen.append(driver.get_volume_stats()))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive() and not seen  # it waits for the refresh
    go.set()
    refresher.join(10)
    reader.join(10)
    assert 'location_info' in seen[0]
