"""The copy engine: a chunked, hole-skipping, throttled copy of two handles."""

import dataclasses
import errno
import io
import os
import stat
import time

from oslo_log import log as logging
from oslo_utils import units

from rbdmig import exception
from rbdmig.migration import progress

LOG = logging.getLogger(__name__)

# lseek() errors meaning "this file system cannot tell data from holes".
_NO_SEEK_DATA = frozenset((errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP))


@dataclasses.dataclass(frozen=True)
class CopyResult:
    """What one copy did; ``bytes_written + bytes_skipped == size``.

    :ivar size: bytes of the range copied, from offset 0.
    :ivar bytes_read: bytes read from the source (holes are not read).
    :ivar bytes_written: bytes written to the destination.
    :ivar bytes_skipped: bytes not written: holes and all-zero chunks left
        to a destination that already reads as zeros.
    :ivar seconds: wall-clock duration of the copy.
    """

    size: int
    bytes_read: int
    bytes_written: int
    bytes_skipped: int
    seconds: float

    @property
    def bytes_per_second(self):
        """The effective rate over the whole range (None if instant)."""
        if self.seconds <= 0:
            return None
        return self.size / self.seconds

    def __str__(self):
        rate = self.bytes_per_second
        rate = 'n/a' if rate is None else f'{rate / units.Mi:.2f} MiB/s'
        mib = units.Mi
        return (f'{self.size / mib:.1f} MiB in {self.seconds:.2f} s '
                f'({rate}): {self.bytes_read / mib:.1f} MiB read, '
                f'{self.bytes_written / mib:.1f} MiB written, '
                f'{self.bytes_skipped / mib:.1f} MiB skipped')


def normalize_extents(extents, size):
    """Sort, merge and clip ``(offset, length)`` pairs to ``[0, size)``.

    :param extents: an iterable of ``(offset, length)``, in any order,
        possibly overlapping or touching.
    :param size: the end of the range; extents are cut there.
    :returns: a sorted list of disjoint, non-adjacent, non-empty extents.
    :raises InvalidInput: an offset or length is negative.
    """
    merged = []
    for offset, length in sorted(extents):
        if offset < 0 or length < 0:
            raise exception.InvalidInput(
                reason=f'extent ({offset}, {length}) has a negative '
                       'offset or length.')
        end = min(offset + length, size)
        if end <= offset:
            continue
        if merged and offset <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([offset, end])
    return [(start, end - start) for start, end in merged]


def data_extents(handle, size):
    """Return where ``handle`` holds data in ``[0, size)``, if it can tell.

    Asks the handle's own ``extents()`` method (the RBD handle answers
    from librbd's diff_iterate), else, for a regular file, the file system
    through ``SEEK_DATA``/``SEEK_HOLE``.

    :param handle: a file-like object.
    :param size: the end of the range of interest.
    :returns: sorted, merged ``(offset, length)`` extents (a list, or an
        iterator for a file), or None if the data cannot be located.
    """
    method = getattr(handle, 'extents', None)
    if callable(method):
        found = method()
        if found is not None:
            return normalize_extents(found, size)
    return _file_extents(handle, size)


def _regular_fileno(handle):
    try:
        fd = handle.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return None
    return fd


def _lseek_keep(fd, offset, whence):
    # Put the offset back after probing: a buffered file object caches
    # the raw position, and moving it underneath would make its next read
    # come from the wrong place.
    saved = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        return os.lseek(fd, offset, whence)
    finally:
        os.lseek(fd, saved, os.SEEK_SET)


def _file_extents(handle, size):
    seek_data = getattr(os, 'SEEK_DATA', None)
    fd = _regular_fileno(handle)
    if seek_data is None or fd is None:
        return None
    flush = getattr(handle, 'flush', None)
    if callable(flush):
        flush()  # buffered writes are invisible to SEEK_DATA until then
    try:
        first = _lseek_keep(fd, 0, seek_data)
    except OSError as err:
        if err.errno == errno.ENXIO:
            return iter(())  # no data at all: the file is one hole
        if err.errno in _NO_SEEK_DATA:
            return None
        raise
    return _walk_file(fd, first, size)


def _walk_file(fd, start, size):
    # SEEK_DATA/SEEK_HOLE answer in order and never overlap, so the
    # extents are produced lazily, one lseek pair at a time.
    while start < size:
        end = min(_lseek_keep(fd, start, os.SEEK_HOLE), size)
        if end > start:
            yield start, end - start
        try:
            start = _lseek_keep(fd, end, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:
                return  # only a hole remains, up to the end of the file
            raise


def _end_of(handle):
    handle.seek(0, os.SEEK_END)
    return handle.tell()


def _says_not(handle, ability):
    answer = getattr(handle, ability, None)
    return callable(answer) and not answer()


def _check_handles(src, dst):
    for role, handle in (('source', src), ('destination', dst)):
        if not hasattr(handle, 'seek'):
            raise exception.CopyError(
                reason=f'the {role} handle has no seek().')
    if not (hasattr(src, 'readinto') or hasattr(src, 'read')):
        raise exception.CopyError(
            reason='the source handle has neither readinto() nor read().')
    if _says_not(src, 'readable'):
        raise exception.CopyError(reason='the source handle is not readable.')
    if not hasattr(dst, 'write'):
        raise exception.CopyError(
            reason='the destination handle has no write().')
    if _says_not(dst, 'writable'):
        raise exception.CopyError(
            reason='the destination handle is not writable.')


class _Throttle:
    """Keeps the average rate since start at or under ``limit`` bytes/s."""

    def __init__(self, limit, clock, sleep, start):
        self._limit = limit
        self._clock = clock
        self._sleep = sleep
        self._start = start
        self._done = 0

    def take(self, nbytes):
        """Wait until ``nbytes`` more may be moved, then account them."""
        self._done += nbytes
        if not self._limit:
            return
        delay = self._start + self._done / self._limit - self._clock()
        if delay > 0:
            self._sleep(delay)


# The granularity at which zeros are left unwritten to a zeroed destination.
ZERO_BLOCK = 64 * units.Ki


class _Copier:
    """The state of one copy: buffers, counters and the two handles."""

    def __init__(self, src, dst, chunk_size, dest_zeroed, callback,
                 throttle):
        self.src = src
        self.dst = dst
        self.chunk_size = chunk_size
        self.dest_zeroed = dest_zeroed
        self.callback = callback
        self.throttle = throttle
        # The only two buffers of the copy, whatever the volume size.
        self.view = memoryview(bytearray(chunk_size))
        self.zeros = bytes(chunk_size)
        self.zero_view = memoryview(self.zeros)
        self.use_readinto = hasattr(src, 'readinto')
        self.read = self.written = self.skipped = 0

    def hole(self, offset, length):
        """Handle a range the source does not hold data in."""
        if self.dest_zeroed:
            self.skipped += length
            self.callback.relative_update(length)
            return
        end = offset + length
        while offset < end:
            n = min(self.chunk_size, end - offset)
            self.throttle.take(n)
            self._write(offset, self.zero_view[:n])
            self.callback.relative_update(n)
            offset += n

    def data(self, offset, length):
        """Copy a range the source holds data in, chunk by chunk."""
        end = offset + length
        while offset < end:
            n = min(self.chunk_size, end - offset)
            self.throttle.take(n)
            chunk = self._read(offset, n)
            if self.dest_zeroed:
                self._write_nonzero(offset, chunk)
            else:
                self._write(offset, chunk)
            self.callback.relative_update(n)
            offset += n

    def _write_nonzero(self, offset, chunk):
        """Write the chunk's runs of non-zero blocks, skip zero blocks.

        Extents are often coarser than the data in them (librbd reports
        from an object's start to its last written byte), so zeros are
        found per ZERO_BLOCK, not per chunk, to keep destinations thin.
        bytes.startswith() is one memcmp and copies nothing, unlike any()
        (a Python-level loop) or slicing a bytes object.
        """
        if self.zeros.startswith(chunk):
            self.skipped += len(chunk)
            return
        run = None  # start of the pending run of non-zero blocks
        for pos in range(0, len(chunk), ZERO_BLOCK):
            block = chunk[pos:pos + ZERO_BLOCK]
            if self.zeros.startswith(block):
                if run is not None:
                    self._write(offset + run, chunk[run:pos])
                    run = None
                self.skipped += len(block)
            elif run is None:
                run = pos
        if run is not None:
            self._write(offset + run, chunk[run:])

    def _read(self, offset, n):
        view = self.view[:n]
        self.src.seek(offset)
        got = 0
        while got < n:
            # Files may return less than asked before their end; only an
            # empty answer means there is nothing more to read.
            k = self._read_some(view[got:], offset + got)
            if not k:
                raise exception.CopyError(
                    reason=f'short read: the source ended at offset '
                           f'{offset + got}, before {offset + n}.')
            got += k
        self.read += n
        return view

    def _read_some(self, view, offset):
        if self.use_readinto:
            try:
                return self.src.readinto(view) or 0
            except NotImplementedError:
                # io.RawIOBase subclasses that define only read() (such as
                # os-brick's RBD wrapper) inherit a readinto that raises.
                self.use_readinto = False
        piece = self.src.read(len(view)) or b''
        if len(piece) > len(view):
            raise exception.CopyError(
                reason=f'the source returned {len(piece)} bytes at offset '
                       f'{offset} when {len(view)} were asked.')
        view[:len(piece)] = piece
        return len(piece)

    def _write(self, offset, data):
        self.dst.seek(offset)
        n = self.dst.write(data)
        # A handle whose write() returns None (os-brick's RBD wrapper)
        # raises on failure instead, so None means everything was written.
        if n is not None and n != len(data):
            raise exception.CopyError(
                reason=f'short write: {n} of {len(data)} bytes were '
                       f'written at offset {offset}.')
        self.written += len(data)


def _sync(handle):
    flush = getattr(handle, 'flush', None)
    if callable(flush):
        flush()
    try:
        fd = handle.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return  # not backed by a file descriptor: flush() was all
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno != errno.EINVAL:  # EINVAL: fd cannot be synced
            raise exception.CopyError(
                reason=f'syncing the destination failed: {err}.'
            ) from err


def copy_volume(src, dst, size=None, *, chunk_size=4 * units.Mi, bps_limit=0,
                callback=progress.DEFAULT_CALLBACK, extents=None,
                dest_zeroed=True, clock=time.monotonic, sleep=time.sleep):
    """Copy the first ``size`` bytes of ``src`` onto ``dst``.

    Reads and writes whole chunks at the same offsets, with memory bounded
    by one chunk buffer (plus one chunk of zeros) whatever the size.  Only
    the source's data extents are read; the holes between them, and
    all-zero chunks, are not written when ``dest_zeroed`` says the
    destination already reads as zeros, so a thin destination stays thin.
    The destination is flushed and fsync'ed before returning.

    :param src: a readable, seekable handle (``readinto`` or ``read``).
    :param dst: a writable, seekable handle at least ``size`` bytes long.
    :param size: bytes to copy; the source's size when omitted.
    :param chunk_size: bytes per read and write.
    :param bps_limit: the highest average rate in bytes per second; bytes
        read, and zeros written over holes, count against it.  0 means
        unlimited.
    :param callback: a :class:`rbdmig.migration.progress.Callback`; it gets
        ``set_size(size)`` once, then ``relative_update`` for every byte
        handled (copied or skipped), and may cancel the copy by raising.
    :param extents: where the source holds data, as ``(offset, length)``
        pairs; found by :func:`data_extents` when omitted, and the whole
        range is read if they cannot be found.
    :param dest_zeroed: the destination reads as zeros (freshly created);
        when false, holes and zero chunks are written so the destination
        ends identical to the source, block for block.
    :param clock: a monotonic clock in seconds, injectable for tests.
    :param sleep: the sleep function used by the throttle.
    :returns: a :class:`CopyResult`.
    :raises InvalidInput: a negative size or limit, or a chunk size < 1.
    :raises CopyError: a handle cannot read or write, the source or the
        destination is smaller than ``size``, or a read or write is short.
    """
    if chunk_size < 1 or bps_limit < 0 or (size is not None and size < 0):
        raise exception.InvalidInput(
            reason=f'size {size!r}, chunk_size {chunk_size!r} and '
                   f'bps_limit {bps_limit!r} must not be negative, and '
                   'chunk_size must be positive.')
    _check_handles(src, dst)
    src_size = _end_of(src)
    if size is None:
        size = src_size
    elif src_size < size:
        raise exception.CopyError(
            reason=f'the source holds {src_size} bytes, fewer than the '
                   f'{size} to copy.')
    dst_size = _end_of(dst)
    if dst_size < size:
        raise exception.CopyError(
            reason=f'the destination holds {dst_size} bytes, fewer than '
                   f'the {size} to copy.')

    if extents is not None:
        ranges = normalize_extents(extents, size)
    else:
        ranges = data_extents(src, size)
    if ranges is None:
        ranges = [(0, size)] if size else []

    LOG.debug('Copying %(size)d bytes in chunks of %(chunk)d '
              '(limit %(limit)s B/s, extents %(how)s, dest_zeroed %(z)s)',
              {'size': size, 'chunk': chunk_size, 'limit': bps_limit or '-',
               'how': 'given' if extents is not None else 'probed',
               'z': dest_zeroed})
    start = clock()
    copier = _Copier(src, dst, chunk_size, dest_zeroed, callback,
                     _Throttle(bps_limit, clock, sleep, start))
    callback.set_size(size)
    position = 0
    for offset, length in ranges:
        if offset > position:
            copier.hole(position, offset - position)
        copier.data(offset, length)
        position = offset + length
    if position < size:
        copier.hole(position, size - position)
    _sync(dst)

    result = CopyResult(size=size, bytes_read=copier.read,
                        bytes_written=copier.written,
                        bytes_skipped=copier.skipped,
                        seconds=clock() - start)
    LOG.debug('Copy finished: %s', result)
    return result
