"""Unit tests of the copy engine, on in-memory handles and sparse files."""

import errno
import hashlib
import io
import os
import types

import pytest
from oslo_utils import units

from rbdmig import exception
from rbdmig.migration import copy, extents, progress

CHUNK = 64 * units.Ki


def pattern(n, seed=1):
    """Return ``n`` non-zero, position-dependent bytes."""
    out = bytearray()
    block = 0
    while len(out) < n:
        out += hashlib.sha256(b'%d:%d' % (seed, block)).digest()
        block += 1
    return bytes(out[:n]).replace(b'\0', b'\1')


class Recorder(io.RawIOBase):
    """A seekable in-memory handle that records every call made on it."""

    def __init__(self, data=b'', size=None, readable=True,
                 writable=True, max_read=None, short_write=False,
                 extents=None):
        super().__init__()
        self.buf = bytearray(data)
        if size is not None:
            self.buf.extend(bytes(size - len(self.buf)))
        self.pos = 0
        self._readable = readable
        self._writable = writable
        self.max_read = max_read
        self.short_write = short_write
        self._extents = extents
        self.reads = []    # (offset, asked)
        self.writes = []   # (offset, length)
        self.flushes = 0

    def readable(self):
        return self._readable

    def writable(self):
        return self._writable

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        self.pos = offset if whence == io.SEEK_SET else (
            len(self.buf) + offset if whence == io.SEEK_END
            else self.pos + offset)
        return self.pos

    def tell(self):
        return self.pos

    def read(self, n=-1):
        self.reads.append((self.pos, n))
        if self.max_read:
            n = min(n, self.max_read)
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += len(data)
        return data

    def readinto(self, b):
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def write(self, data):
        n = len(data)
        if self.short_write:
            n = max(0, n - 1)
        self.writes.append((self.pos, n))
        self.buf[self.pos:self.pos + n] = bytes(data[:n])
        self.pos += n
        return n

    def flush(self):
        self.flushes += 1

    def extents(self):
        return self._extents


class Zeroing(Recorder):
    """A handle that can make ranges read as zeros (``zero_at``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.zeroed = []  # (offset, length)

    def zero_at(self, offset, length):
        self.zeroed.append((offset, length))
        self.buf[offset:offset + length] = bytes(length)


class NoReadinto(Recorder):
    """A handle without any readinto attribute."""

    @property
    def readinto(self):
        raise AttributeError('readinto')


class ReadOnlyRaw(io.RawIOBase):
    """Defines read() only, like os-brick's RBDVolumeIOWrapper."""

    def __init__(self, data):
        super().__init__()
        self._bio = io.BytesIO(data)

    def readable(self):
        return True

    def read(self, n=-1):
        return self._bio.read(n)

    def seek(self, offset, whence=io.SEEK_SET):
        return self._bio.seek(offset, whence)

    def tell(self):
        return self._bio.tell()


class FakeClock:
    """A clock that moves only when the engine sleeps."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class RecordingCallback(progress.Callback):
    def __init__(self, cancel_after=None):
        super().__init__()
        self.sizes = []
        self.values = []
        self.cancel_after = cancel_after

    def set_size(self, size):
        self.sizes.append(size)
        super().set_size(size)

    def call(self):
        self.values.append(self.value)
        if self.cancel_after is not None and len(self.values) > \
                self.cancel_after:
            raise KeyboardInterrupt('cancelled')


def allocated(path):
    return os.stat(path).st_blocks * 512


def sparse_file(path, size, pieces):
    """Create a sparse file of ``size`` with ``{offset: data}`` written."""
    with open(path, 'wb') as f:
        f.truncate(size)
        for offset, data in pieces.items():
            f.seek(offset)
            f.write(data)
    return path


# -- results and extents ------------------------------------------------------

def test_result_str_reads_well():
    result = copy.CopyResult(size=8 * units.Mi, bytes_read=2 * units.Mi,
                             bytes_written=units.Mi,
                             bytes_skipped=7 * units.Mi, seconds=2.0)
    assert str(result) == ('8.0 MiB in 2.00 s (4.00 MiB/s): 2.0 MiB read, '
                           '1.0 MiB written, 7.0 MiB skipped')
    instant = copy.CopyResult(1, 1, 1, 0, 0.0)
    assert instant.bytes_per_second is None
    assert '(n/a)' in str(instant)


def test_normalize_extents_sorts_merges_and_clips():
    found = extents.normalize_extents(
        [(50, 10), (0, 10), (5, 10), (15, 5), (30, 0), (95, 20), (200, 5)],
        100)
    assert found == [(0, 20), (50, 10), (95, 5)]


def test_normalize_extents_rejects_negative():
    with pytest.raises(exception.InvalidInput):
        extents.normalize_extents([(-1, 5)], 100)
    with pytest.raises(exception.InvalidInput):
        extents.normalize_extents([(1, -5)], 100)


def test_data_extents_unknown_for_plain_memory():
    assert extents.data_extents(io.BytesIO(b'abc'), 3) is None


def test_data_extents_asks_the_handle():
    handle = Recorder(size=100, extents=[(60, 50), (0, 10)])
    assert extents.data_extents(handle, 100) == [(0, 10), (60, 40)]


def test_data_extents_of_sparse_file(tmp_path):
    size = 16 * units.Mi
    path = sparse_file(tmp_path / 'f', size,
                       {units.Mi: b'x' * 100, 9 * units.Mi: b'y' * 5000})
    with open(path, 'rb') as f:
        found = list(extents.data_extents(f, size))
    if found == [(0, size)]:
        pytest.skip('file system does not report holes')
    assert len(found) == 2
    (a, alen), (b, blen) = found
    assert a <= units.Mi < units.Mi + 100 <= a + alen
    assert b <= 9 * units.Mi < 9 * units.Mi + 5000 <= b + blen
    assert alen + blen < units.Mi


def test_data_extents_of_empty_sparse_file(tmp_path):
    path = sparse_file(tmp_path / 'f', units.Mi, {})
    with open(path, 'rb') as f:
        assert list(extents.data_extents(f, units.Mi)) == []


def test_data_extents_leaves_buffered_position_alone(tmp_path):
    data = pattern(300 * units.Ki)
    path = sparse_file(tmp_path / 'f', 4 * units.Mi,
                       {0: data, 2 * units.Mi: data})
    with open(path, 'rb') as f:
        assert f.read(1000) == data[:1000]  # fills the read buffer
        list(extents.data_extents(f, 4 * units.Mi))
        assert f.read(200 * units.Ki) == data[1000:1000 + 200 * units.Ki]


def test_data_extents_without_fs_support(tmp_path, monkeypatch):
    path = sparse_file(tmp_path / 'f', units.Mi, {0: b'x'})
    real_lseek = os.lseek

    def lseek(fd, pos, how):
        if how == os.SEEK_DATA:
            raise OSError(errno.EINVAL, 'not supported')
        return real_lseek(fd, pos, how)

    monkeypatch.setattr(os, 'lseek', lseek)
    with open(path, 'rb') as f:
        assert extents.data_extents(f, units.Mi) is None
        dst = Recorder(size=units.Mi)
        result = copy.copy_volume(f, dst, chunk_size=CHUNK)
    assert result.bytes_read == units.Mi


# -- what is read and written -------------------------------------------------

def test_copy_whole_range_is_identical():
    data = pattern(5 * CHUNK + 123)
    src, dst = Recorder(data), Recorder(size=len(data))
    result = copy.copy_volume(src, dst, chunk_size=CHUNK)
    assert bytes(dst.buf) == data
    assert result.size == result.bytes_read == result.bytes_written
    assert result.bytes_skipped == 0
    assert dst.flushes >= 1


def test_size_limits_the_copy():
    data = pattern(4 * CHUNK)
    src, dst = Recorder(data), Recorder(size=len(data))
    result = copy.copy_volume(src, dst, CHUNK + 10, chunk_size=CHUNK)
    assert result.size == CHUNK + 10
    assert bytes(dst.buf[:CHUNK + 10]) == data[:CHUNK + 10]
    assert not any(dst.buf[CHUNK + 10:])


def test_explicit_extents_skip_holes_at_odd_offsets():
    size = 3 * CHUNK + 17
    extents = [(CHUNK - 3, 10), (5, 100), (3 * CHUNK, 17)]
    data = bytearray(size)
    for offset, length in extents:
        data[offset:offset + length] = pattern(length, seed=offset)
    src, dst = Recorder(data), Recorder(size=size)
    result = copy.copy_volume(src, dst, chunk_size=CHUNK, extents=extents,
                              dest_zeroed=True)
    assert bytes(dst.buf) == bytes(data)
    assert result.bytes_read == result.bytes_written == 127
    assert result.bytes_skipped == size - 127
    assert sorted(src.reads) == [(5, 100), (CHUNK - 3, 10), (3 * CHUNK, 17)]


def test_extents_method_is_used_and_explicit_wins():
    data = pattern(4 * CHUNK)
    src = Recorder(data, extents=[(CHUNK, CHUNK)])
    dst = Recorder(size=len(data))
    result = copy.copy_volume(src, dst, chunk_size=CHUNK)
    assert src.reads == [(CHUNK, CHUNK)]
    assert result.bytes_read == CHUNK
    assert bytes(dst.buf[CHUNK:2 * CHUNK]) == data[CHUNK:2 * CHUNK]
    assert not any(dst.buf[:CHUNK]) and not any(dst.buf[2 * CHUNK:])

    src.reads.clear()
    copy.copy_volume(src, Recorder(size=len(data)), chunk_size=CHUNK,
                     extents=[(0, 10)])
    assert src.reads == [(0, 10)]


def test_extents_method_returning_none_reads_everything():
    data = pattern(2 * CHUNK)
    src = Recorder(data, extents=None)
    result = copy.copy_volume(src, Recorder(size=len(data)), chunk_size=CHUNK)
    assert result.bytes_read == len(data)


def test_sparse_file_copy_reads_only_data(tmp_path):
    size = 32 * units.Mi
    piece = pattern(units.Mi)
    path = sparse_file(tmp_path / 'src', size,
                       {0: piece, 20 * units.Mi + 4097: piece})
    dst = Recorder(size=size)
    with open(path, 'rb') as f:
        result = copy.copy_volume(f, dst, chunk_size=units.Mi,
                                  dest_zeroed=True)
    assert result.bytes_read < 4 * units.Mi
    assert result.bytes_skipped > 28 * units.Mi
    assert bytes(dst.buf) == path.read_bytes()


def test_zero_chunks_are_not_written_to_zeroed_destination():
    data = pattern(CHUNK) + bytes(CHUNK) + pattern(CHUNK)
    src, dst = Recorder(data), Recorder(size=len(data))
    result = copy.copy_volume(src, dst, chunk_size=CHUNK, dest_zeroed=True)
    assert dst.writes == [(0, CHUNK), (2 * CHUNK, CHUNK)]
    assert result.bytes_read == 3 * CHUNK
    assert result.bytes_skipped == CHUNK
    assert bytes(dst.buf) == data


def test_zero_blocks_inside_a_chunk_are_not_written():
    # librbd reports extents from an object's start to its last written
    # byte, so one big chunk often holds mostly zeros.
    block = copy.ZERO_BLOCK
    chunk = 16 * block
    data = (bytes(3 * block) + pattern(100) + bytes(block - 100) +
            pattern(2 * block) + bytes(chunk - 6 * block))
    src, dst = Recorder(data), Recorder(size=len(data))
    result = copy.copy_volume(src, dst, chunk_size=chunk, dest_zeroed=True)
    assert dst.writes == [(3 * block, 3 * block)]
    assert result.bytes_written == 3 * block
    assert result.bytes_skipped == chunk - 3 * block
    assert bytes(dst.buf) == data


def test_not_zeroed_destination_ends_identical():
    data = pattern(CHUNK) + bytes(2 * CHUNK + 5) + pattern(CHUNK)
    src = Recorder(data)
    dst = Recorder(b'\xff' * len(data))
    result = copy.copy_volume(src, dst, chunk_size=CHUNK,
                              extents=[(0, CHUNK), (3 * CHUNK + 5, CHUNK)],
                              dest_zeroed=False)
    assert bytes(dst.buf) == data
    assert result.bytes_written == len(data)
    assert result.bytes_skipped == 0
    assert result.bytes_read == 2 * CHUNK
    assert max(length for _, length in dst.writes) <= CHUNK


def test_by_default_the_destination_is_not_assumed_zeroed():
    # Issue #5: the default must be the safe one.
    data = pattern(CHUNK) + bytes(3 * CHUNK) + pattern(CHUNK)
    src = Recorder(data, extents=[(0, CHUNK), (4 * CHUNK, CHUNK)])
    dst = Recorder(b'\xff' * len(data))
    result = copy.copy_volume(src, dst, chunk_size=CHUNK)
    assert bytes(dst.buf) == data
    assert result.bytes_skipped == 0


def test_holes_are_zeroed_by_the_handle_at_chunk_boundaries():
    data = pattern(CHUNK + 5) + bytes(3 * CHUNK - 5) + pattern(10)
    src = Recorder(data, extents=[(0, CHUNK + 5), (4 * CHUNK, 10)])
    dst = Zeroing(b'\xff' * len(data))
    result = copy.copy_volume(src, dst, chunk_size=CHUNK)
    assert bytes(dst.buf) == data
    # Cut at multiples of the chunk: whole RBD objects go away.
    assert dst.zeroed == [(CHUNK + 5, CHUNK - 5), (2 * CHUNK, CHUNK),
                          (3 * CHUNK, CHUNK)]
    assert dst.writes == [(0, CHUNK), (CHUNK, 5), (4 * CHUNK, 10)]
    assert result.bytes_zeroed == 3 * CHUNK - 5
    assert result.bytes_written == CHUNK + 15
    assert result.bytes_skipped == 0
    assert str(result).endswith('MiB zeroed')


def test_holes_are_punched_in_a_used_file(tmp_path):
    size = 16 * units.Mi
    piece = pattern(units.Mi)
    src = sparse_file(tmp_path / 'src', size, {3 * units.Mi: piece})
    used = sparse_file(tmp_path / 'dst', size, {0: b'\xff' * size})
    with open(src, 'rb') as s, open(used, 'r+b') as d:
        result = copy.copy_volume(s, d, chunk_size=units.Mi)
    assert used.read_bytes() == src.read_bytes()
    if result.bytes_zeroed == 0:
        pytest.skip('file system cannot punch holes')
    assert result.bytes_zeroed == size - units.Mi
    assert allocated(used) <= 2 * units.Mi


@pytest.mark.parametrize('queue_depth', [1, 4])
def test_without_hole_punching_zeros_are_written(tmp_path, monkeypatch,
                                                 queue_depth):
    calls = []

    def cannot(fd, offset, length):
        calls.append(offset)
        raise OSError(errno.EOPNOTSUPP, 'not on this file system')

    monkeypatch.setattr(copy.positional, 'punch_hole', cannot)
    size = 8 * units.Mi
    src = sparse_file(tmp_path / 'src', size, {units.Mi: pattern(100)})
    used = sparse_file(tmp_path / 'dst', size, {0: b'\xff' * size})
    with open(src, 'rb') as s, open(used, 'r+b') as d:
        result = copy.copy_volume(s, d, chunk_size=units.Mi,
                                  queue_depth=queue_depth)
    assert used.read_bytes() == src.read_bytes()
    assert result.bytes_zeroed == 0
    assert result.bytes_written + result.bytes_skipped == size
    assert len(calls) <= queue_depth  # tried, then written from then on


def test_hole_punching_errors_are_not_hidden(tmp_path, monkeypatch):
    def broken(fd, offset, length):
        raise OSError(errno.EIO, 'I/O error')

    monkeypatch.setattr(copy.positional, 'punch_hole', broken)
    src = sparse_file(tmp_path / 'src', units.Mi, {})
    used = sparse_file(tmp_path / 'dst', units.Mi, {0: b'\xff'})
    with open(src, 'rb') as s, open(used, 'r+b') as d:
        with pytest.raises(OSError, match='I/O error'):
            copy.copy_volume(s, d, chunk_size=CHUNK)


def test_zero_chunks_keep_a_real_file_sparse(tmp_path):
    size = 16 * units.Mi
    piece = pattern(units.Mi)
    src = sparse_file(tmp_path / 'src', size,
                      {0: piece, 8 * units.Mi: bytes(4 * units.Mi)})
    thin = sparse_file(tmp_path / 'thin', size, {})
    thick = sparse_file(tmp_path / 'thick', size, {})
    for dst_path, zeroed in ((thin, True), (thick, False)):
        # No extents: the written zeros make the source dense there, so
        # only zero detection can keep the destination thin.
        with open(src, 'rb') as s, open(dst_path, 'r+b') as d:
            copy.copy_volume(s, d, chunk_size=units.Mi, dest_zeroed=zeroed,
                             extents=[(0, size)])
        assert dst_path.read_bytes() == src.read_bytes()
    assert allocated(thin) <= 2 * units.Mi
    assert allocated(thick) >= size


def test_reads_never_exceed_chunk_size():
    data = pattern(10 * CHUNK + 1)
    src, dst = Recorder(data), Recorder(size=len(data))
    copy.copy_volume(src, dst, chunk_size=CHUNK,
                     extents=[(3, 4 * CHUNK), (6 * CHUNK, 4 * CHUNK + 1)])
    assert src.reads and max(n for _, n in src.reads) <= CHUNK
    assert max(n for _, n in dst.writes) <= CHUNK


def test_partial_reads_are_completed():
    data = pattern(3 * CHUNK + 7)
    src, dst = Recorder(data, max_read=1000), Recorder(size=len(data))
    result = copy.copy_volume(src, dst, chunk_size=CHUNK)
    assert bytes(dst.buf) == data
    assert result.bytes_read == len(data)


@pytest.mark.parametrize('make_src', [
    NoReadinto,
    ReadOnlyRaw,
], ids=['no-readinto', 'raw-read-only'])
def test_handles_without_readinto(make_src):
    data = pattern(2 * CHUNK + 9)
    dst = Recorder(size=len(data))
    copy.copy_volume(make_src(data), dst, chunk_size=CHUNK)
    assert bytes(dst.buf) == data


def test_zero_size_copies_nothing():
    callback = RecordingCallback()
    src, dst = Recorder(b''), Recorder(b'')
    result = copy.copy_volume(src, dst, callback=callback)
    assert (result.size, result.bytes_read, result.bytes_written) == (0, 0, 0)
    assert callback.sizes == [0] and not src.reads and not dst.writes


# -- errors -------------------------------------------------------------------

def test_destination_too_small():
    src, dst = Recorder(pattern(100)), Recorder(size=99)
    with pytest.raises(exception.CopyError, match='destination holds 99'):
        copy.copy_volume(src, dst)
    assert not dst.writes


def test_source_too_small_for_size():
    with pytest.raises(exception.CopyError, match='source holds 10'):
        copy.copy_volume(Recorder(size=10), Recorder(size=20), 20)


def test_short_read():
    class Truncated(Recorder):
        def read(self, n=-1):
            return super().read(n) if self.pos < 100 else b''

    src = Truncated(pattern(CHUNK), max_read=100)
    with pytest.raises(exception.CopyError, match='short read'):
        copy.copy_volume(src, Recorder(size=CHUNK), chunk_size=CHUNK)


def test_short_write():
    src, dst = Recorder(pattern(100)), Recorder(size=100, short_write=True)
    with pytest.raises(exception.CopyError, match='short write'):
        copy.copy_volume(src, dst)


def test_handles_must_read_and_write(tmp_path):
    path = sparse_file(tmp_path / 'f', 100, {0: b'x'})
    with open(path, 'rb') as ro, pytest.raises(exception.CopyError,
                                               match='not writable'):
        copy.copy_volume(Recorder(size=100), ro)
    with pytest.raises(exception.CopyError, match='not readable'):
        copy.copy_volume(Recorder(size=100, readable=False),
                         Recorder(size=100))
    with pytest.raises(exception.CopyError, match='no write'):
        copy.copy_volume(Recorder(size=100),
                         types.SimpleNamespace(seek=None))
    with pytest.raises(exception.CopyError, match='source handle has no seek'):
        copy.copy_volume(object(), Recorder(size=100))


@pytest.mark.parametrize('kwargs', [
    {'chunk_size': 0}, {'bps_limit': -1}, {'size': -1}])
def test_invalid_arguments(kwargs):
    with pytest.raises(exception.InvalidInput):
        copy.copy_volume(Recorder(size=10), Recorder(size=10), **kwargs)


# -- progress, cancellation, throttle, durability -----------------------------

@pytest.mark.parametrize('zeroed', [True, False])
def test_callback_reaches_size_exactly(zeroed):
    size = 7 * CHUNK + 3
    data = bytearray(size)
    data[CHUNK:2 * CHUNK] = pattern(CHUNK)
    callback = RecordingCallback()
    copy.copy_volume(Recorder(data), Recorder(size=size), chunk_size=CHUNK,
                     callback=callback, extents=[(CHUNK, CHUNK + 1)],
                     dest_zeroed=zeroed)
    assert callback.sizes == [size]
    assert callback.value == size
    assert callback.values == sorted(callback.values)


def test_callback_cancels_the_copy():
    data = pattern(8 * CHUNK)
    src, dst = Recorder(data), Recorder(size=len(data))
    callback = RecordingCallback(cancel_after=3)  # set_size + 2 chunks
    with pytest.raises(KeyboardInterrupt, match='cancelled'):
        copy.copy_volume(src, dst, chunk_size=CHUNK, callback=callback)
    assert len(dst.writes) == 3
    assert len(src.reads) == 3


def test_throttle_keeps_the_average_under_the_limit():
    clock = FakeClock()
    data = pattern(4 * CHUNK + CHUNK // 2)
    limit = CHUNK  # one chunk per second

    class Timed(Recorder):
        def read(self, n=-1):
            # The bytes read so far, this read included, were allowed.
            done = sum(asked for _, asked in self.reads) + n
            assert clock.now >= done / limit
            return super().read(n)

    result = copy.copy_volume(Timed(data), Recorder(size=len(data)),
                              chunk_size=CHUNK, bps_limit=limit,
                              clock=clock, sleep=clock.sleep)
    assert result.seconds == pytest.approx(4.5)
    assert sum(clock.sleeps) == pytest.approx(4.5)
    assert len(clock.sleeps) == 5


def test_throttle_does_not_sleep_when_slow_enough():
    class SlowClock(FakeClock):
        def __call__(self):
            self.now += 10.0  # every look at the clock: ten seconds later
            return self.now

    clock = SlowClock()
    copy.copy_volume(Recorder(pattern(3 * CHUNK)), Recorder(size=3 * CHUNK),
                     chunk_size=CHUNK, bps_limit=CHUNK, clock=clock,
                     sleep=clock.sleep)
    assert clock.sleeps == []


def test_unlimited_never_sleeps():
    clock = FakeClock()
    copy.copy_volume(Recorder(pattern(3 * CHUNK)), Recorder(size=3 * CHUNK),
                     chunk_size=CHUNK, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_holes_written_as_zeros_count_against_the_limit():
    clock = FakeClock()
    copy.copy_volume(Recorder(size=4 * CHUNK), Recorder(size=4 * CHUNK),
                     chunk_size=CHUNK, bps_limit=2 * CHUNK, extents=[],
                     dest_zeroed=False, clock=clock, sleep=clock.sleep)
    assert clock.now == pytest.approx(2.0)


def test_real_destination_is_fsynced(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, 'fsync', synced.append)
    dst_path = sparse_file(tmp_path / 'dst', 100, {})
    with open(dst_path, 'r+b') as dst:
        copy.copy_volume(Recorder(pattern(100)), dst)
        assert synced == [dst.fileno()]
    assert dst_path.read_bytes() == pattern(100)
