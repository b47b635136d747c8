"""RBDHandle behaves like a proper io.RawIOBase."""

import io
import os

import pytest

from rbdmig import exception
from tests.unit import rbd_fixtures as fx

SIZE = 8 * fx.MiB


@pytest.fixture
def ceph():
    return fx.make_ceph()


@pytest.fixture
def opened(ceph):
    drv = fx.make_driver(ceph)
    volume = fx.make_volume(ceph)

    def open_(mode):
        return drv.open_volume(None, volume, mode)
    return open_


def test_read_only_handle_answers_truthfully(opened):
    with opened('rb') as handle:
        assert isinstance(handle, io.RawIOBase)
        assert (handle.readable(), handle.writable(),
                handle.seekable()) == (True, False, True)
        with pytest.raises(io.UnsupportedOperation):
            handle.write(b'x')
        with pytest.raises(io.UnsupportedOperation):
            handle.fileno()


def test_write_read_seek_tell(opened):
    payload = os.urandom(10000)
    with opened('r+b') as handle:
        assert handle.writable()
        assert handle.seek(4096) == 4096
        assert handle.write(payload) == len(payload)
        assert handle.write(memoryview(b'xyz')) == 3
        assert handle.tell() == 4096 + len(payload) + 3
        assert handle.seek(-3, io.SEEK_CUR) == 4096 + len(payload)
        assert handle.read(3) == b'xyz'
        assert handle.seek(4096) == 4096
        buf = bytearray(len(payload))
        assert handle.readinto(buf) == len(payload)
        assert bytes(buf) == payload
        assert handle.seek(0, io.SEEK_END) == SIZE


def test_reading_past_the_end_returns_empty(opened):
    with opened('rb') as handle:
        handle.seek(SIZE - 2)
        assert len(handle.read(100)) == 2
        assert handle.read(100) == b''
        assert handle.readinto(bytearray(10)) == 0
        handle.seek(SIZE + 50)
        assert handle.read() == b''


def test_writing_past_the_end_raises_clearly(opened):
    with opened('r+b') as handle:
        handle.seek(SIZE - 1)
        with pytest.raises(exception.InvalidInput, match='passes the end'):
            handle.write(b'ab')
        assert handle.tell() == SIZE - 1


def test_works_with_buffered_io_and_shutil(opened):
    with opened('r+b') as handle:
        buffered = io.BufferedRandom(handle)
        buffered.write(b'hello')
        buffered.flush()
        buffered.seek(0)
        assert buffered.read(5) == b'hello'


def test_extents_list_allocated_data(opened):
    with opened('r+b') as handle:
        assert handle.extents() == []
        handle.seek(3 * 4096)
        handle.write(b'\x01' * (2 * 4096))
        handle.seek(SIZE - 4096)
        handle.write(b'\x02')
        assert handle.extents() == [(3 * 4096, 2 * 4096),
                                    (SIZE - 4096, 4096)]


def test_close_is_idempotent_and_releases_connection(ceph, opened):
    handle = opened('r+b')
    assert ceph.connections == 1
    handle.close()
    handle.close()
    assert handle.closed
    assert ceph.connections == 0
    with pytest.raises(ValueError):
        handle.read(1)


def test_failed_flush_still_closes(ceph, opened):
    handle = opened('r+b')
    ceph.fail('flush', ceph.rbd.Error('osd down'))
    with pytest.raises(ceph.rbd.Error):
        handle.close()
    assert handle.closed
    assert ceph.connections == 0


def test_zero_at_deallocates_and_checks_its_range(ceph, opened):
    with opened('r+b') as handle:
        handle.write(b'\xff' * (3 * 4096))
        handle.zero_at(100, 2 * 4096)
        handle.seek(0)
        assert handle.read(3 * 4096) == (b'\xff' * 100 + bytes(2 * 4096) +
                                         b'\xff' * (4096 - 100))
        image = next(iter(ceph.clusters[fx.CONF_A].pools['hdd'].values()))
        assert 1 not in image.blocks  # a whole block went away
        with pytest.raises(exception.InvalidInput, match='passes the end'):
            handle.zero_at(SIZE - 1, 2)
    with opened('rb') as handle:
        with pytest.raises(io.UnsupportedOperation):
            handle.zero_at(0, 1)
