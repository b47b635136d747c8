"""The copy engine with chunks in flight on worker threads."""

import os
import threading
import time

import pytest
from oslo_utils import units

from rbdmig import exception
from rbdmig.migration import copy, progress, runners
from tests.unit import rbd_fixtures as fx
from tests.unit.test_copy import FakeClock, NoReadinto, Recorder, pattern

CHUNK = 64 * units.Ki
SIZE = 40 * CHUNK + 123


class Positional(Recorder):
    """A handle with ``read_at``/``write_at`` that records concurrency."""

    def __init__(self, *args, delay=0.0, fail_at=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.delay = delay
        self.fail_at = fail_at
        self.lock = threading.Lock()
        self.active = self.most_active = 0
        self.threads = set()
        self.calls_after_close = 0
        self.done = False
        self.at_reads = []

    def _enter(self):
        with self.lock:
            if self.done:
                self.calls_after_close += 1
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.threads.add(threading.get_ident())

    def _leave(self):
        with self.lock:
            self.active -= 1

    def read_at(self, offset, n):
        self._enter()
        try:
            time.sleep(self.delay)
            with self.lock:
                self.at_reads.append(offset)
            if self.fail_at is not None and offset >= self.fail_at:
                raise OSError(5, 'injected read error at %d' % offset)
            return bytes(self.buf[offset:offset + n])
        finally:
            self._leave()

    def write_at(self, data, offset):
        self._enter()
        try:
            time.sleep(self.delay)
            self.buf[offset:offset + len(data)] = bytes(data)
            return len(data)
        finally:
            self._leave()


class Counting(progress.Callback):
    def __init__(self, cancel_at=None):
        super().__init__()
        self.threads = set()
        self.updates = []
        self.cancel_at = cancel_at

    def call(self):
        self.threads.add(threading.get_ident())
        self.updates.append(self.value)
        if self.cancel_at is not None and self.value >= self.cancel_at:
            raise KeyboardInterrupt('cancelled')


def _source(holes=True):
    data = bytearray(pattern(SIZE))
    if holes:
        data[5 * CHUNK:9 * CHUNK] = bytes(4 * CHUNK)      # zeros in extent
        data[20 * CHUNK + 7:30 * CHUNK] = bytes(10 * CHUNK - 7)
    return bytes(data)


EXTENTS = [(0, 20 * CHUNK + 7), (30 * CHUNK, SIZE - 30 * CHUNK)]


@pytest.mark.parametrize('depth', [2, 4, 16])
@pytest.mark.parametrize('dest_zeroed', [True, False])
@pytest.mark.parametrize('kind', [Recorder, NoReadinto, Positional])
def test_same_bytes_and_counts_as_serial(depth, dest_zeroed, kind):
    data = _source()
    results = []
    for queue_depth in (1, depth):
        src = kind(data, extents=EXTENTS)
        dst = kind(b'\x01' * SIZE if not dest_zeroed else b'', size=SIZE)
        result = copy.copy_volume(src, dst, chunk_size=CHUNK,
                                  dest_zeroed=dest_zeroed,
                                  queue_depth=queue_depth)
        if dest_zeroed:
            assert bytes(dst.buf) == data
        else:
            assert bytes(dst.buf) == data
        results.append(result)
    serial, parallel = results
    assert (parallel.bytes_read, parallel.bytes_written,
            parallel.bytes_skipped) == (serial.bytes_read,
                                        serial.bytes_written,
                                        serial.bytes_skipped)
    assert parallel.bytes_written + parallel.bytes_skipped == SIZE


def test_chunks_overlap_up_to_the_queue_depth_and_no_further():
    src = Positional(pattern(SIZE), delay=0.01)
    dst = Positional(size=SIZE, delay=0.01)
    copy.copy_volume(src, dst, chunk_size=CHUNK, queue_depth=4)
    assert bytes(dst.buf) == bytes(src.buf)
    assert 2 <= src.most_active <= 4 and dst.most_active <= 4
    assert len(src.threads | dst.threads) <= 4


def test_memory_is_queue_depth_buffers(monkeypatch):
    made = []
    real = bytearray

    class Counted(real):
        def __init__(self, *args):
            super().__init__(*args)
            if len(self) == CHUNK:
                made.append(1)

    monkeypatch.setattr(runners, 'bytearray', Counted, raising=False)
    src = Positional(pattern(SIZE))
    copy.copy_volume(src, Positional(size=SIZE), chunk_size=CHUNK,
                     queue_depth=5)
    assert len(made) == 5


def test_callback_is_exact_and_called_from_the_caller_only():
    cb = Counting()
    src = Positional(_source(), extents=EXTENTS, delay=0.001)
    copy.copy_volume(src, Positional(size=SIZE), chunk_size=CHUNK,
                     queue_depth=4, callback=cb)
    assert cb.threads == {threading.get_ident()}
    assert cb.updates == sorted(cb.updates)
    assert cb.value == SIZE and cb.updates[-1] == SIZE


def test_a_worker_error_propagates_and_stops_the_rest():
    src = Positional(pattern(SIZE), fail_at=6 * CHUNK, delay=0.002)
    dst = Positional(size=SIZE)
    with pytest.raises(OSError, match='injected read error'):
        copy.copy_volume(src, dst, chunk_size=CHUNK, queue_depth=3)
    src.done = dst.done = True
    time.sleep(0.05)
    # At most the chunks in flight when the error was seen were started.
    assert max(src.at_reads) <= 6 * CHUNK + 3 * CHUNK
    assert src.active == dst.active == 0
    assert src.calls_after_close == dst.calls_after_close == 0


def test_a_short_write_in_a_worker_is_a_copy_error():
    src = Recorder(pattern(SIZE))
    dst = Recorder(size=SIZE, short_write=True)
    with pytest.raises(exception.CopyError, match='short write'):
        copy.copy_volume(src, dst, chunk_size=CHUNK, queue_depth=4)


def test_cancelling_callback_stops_the_copy():
    src = Positional(pattern(SIZE), delay=0.002)
    dst = Positional(size=SIZE)
    with pytest.raises(KeyboardInterrupt):
        copy.copy_volume(src, dst, chunk_size=CHUNK, queue_depth=4,
                         callback=Counting(cancel_at=3 * CHUNK))
    src.done = True
    time.sleep(0.05)
    assert len(src.at_reads) <= 3 + 4 + 1
    assert src.calls_after_close == 0 and src.active == 0


def test_throttle_sleeps_as_the_serial_copy_does():
    sleeps = []
    for depth in (1, 4):
        clock = FakeClock()
        copy.copy_volume(Positional(pattern(10 * CHUNK)),
                         Positional(size=10 * CHUNK), chunk_size=CHUNK,
                         bps_limit=2 * CHUNK, clock=clock, sleep=clock.sleep,
                         queue_depth=depth)
        sleeps.append(clock.sleeps)
    assert sleeps[0] == sleeps[1]
    assert sum(sleeps[1]) == pytest.approx(5.0)  # 10 chunks at 2/s


def test_queue_depth_must_be_positive():
    with pytest.raises(exception.InvalidInput, match='queue_depth'):
        copy.copy_volume(Recorder(b'x'), Recorder(size=1), queue_depth=0)


def test_sparse_files_with_pread_and_pwrite(tmp_path):
    data = _source()
    src_path, dst_path = tmp_path / 'src', tmp_path / 'dst'
    with open(src_path, 'wb') as f:
        f.truncate(SIZE)
        for offset, length in EXTENTS:
            f.seek(offset)
            f.write(data[offset:offset + length])
    with open(dst_path, 'wb') as f:
        f.truncate(SIZE)
    with open(src_path, 'rb') as src, open(dst_path, 'r+b') as dst:
        result = copy.copy_volume(src, dst, chunk_size=CHUNK,
                                  queue_depth=4, dest_zeroed=True)
    assert dst_path.read_bytes() == data
    assert result.bytes_written < SIZE - 10 * CHUNK
    assert os.stat(dst_path).st_blocks * 512 <= os.stat(
        src_path).st_blocks * 512


def test_rbd_handle_reads_and_writes_at_offsets():
    ceph = fx.make_ceph()
    drv = fx.make_driver(ceph)
    volume = fx.make_volume(ceph, size_mib=1, data=b'abcdef')
    with drv.open_volume(None, volume, 'r+b') as handle:
        handle.seek(7)
        assert handle.read_at(2, 3) == b'cde'
        assert handle.write_at(bytearray(b'XY'), 1) == 2
        assert handle.read_at(0, 4) == b'aXYd'
        assert handle.read_at(fx.MiB - 1, 10) == b'\0'
        assert handle.read_at(fx.MiB, 10) == b''
        assert handle.tell() == 7
        with pytest.raises(exception.InvalidInput, match='passes the end'):
            handle.write_at(b'xy', fx.MiB - 1)
    with drv.open_volume(None, volume, 'rb') as handle:
        with pytest.raises(OSError):
            handle.write_at(b'x', 0)
