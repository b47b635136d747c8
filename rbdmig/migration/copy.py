"""The copy engine: a chunked, hole-skipping, throttled copy of two handles."""

import dataclasses
import itertools
import os
import time

from oslo_log import log as logging
from oslo_utils import units

from rbdmig import exception
from rbdmig.migration import extents as extents_mod
from rbdmig.migration import positional
from rbdmig.migration import progress
from rbdmig.migration import runners

LOG = logging.getLogger(__name__)

@dataclasses.dataclass(frozen=True)
class CopyResult:
    """What one copy did; written + skipped + zeroed bytes make ``size``.

    :ivar size: bytes of the range copied, from offset 0.
    :ivar bytes_read: bytes read from the source (holes are not read).
    :ivar bytes_written: bytes written to the destination.
    :ivar bytes_skipped: bytes not written: holes and all-zero chunks left
        to a destination that already reads as zeros.
    :ivar seconds: wall-clock duration of the copy.
    :ivar bytes_zeroed: holes of the source made to read as zeros on the
        destination without writing them (librbd write_zeroes, punched
        holes in files).
    """

    size: int
    bytes_read: int
    bytes_written: int
    bytes_skipped: int
    seconds: float
    bytes_zeroed: int = 0

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
                f'{self.bytes_skipped / mib:.1f} MiB skipped' +
                (f', {self.bytes_zeroed / mib:.1f} MiB zeroed'
                 if self.bytes_zeroed else ''))


def size_of(handle):
    """Return the bytes ``handle`` holds (its end, as ``seek`` finds it)."""
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


def nonzero_runs(chunk, zeros):
    """Return ``[(start, end)]``: the chunk's runs of non-zero blocks.

    Extents are often coarser than the data in them (librbd reports
    from an object's start to its last written byte), so zeros are found
    per ZERO_BLOCK, not per chunk, to keep destinations thin.
    ``bytes.startswith`` is one memcmp and copies nothing, unlike any()
    (a Python-level loop) or slicing a bytes object.

    :param chunk: a bytes-like object (a memoryview is not copied).
    :param zeros: a bytes object of zeros at least as long as ``chunk``.
    """
    if zeros.startswith(chunk):
        return []
    runs = []
    run = None  # start of the pending run of non-zero blocks
    for pos in range(0, len(chunk), ZERO_BLOCK):
        if zeros.startswith(chunk[pos:pos + ZERO_BLOCK]):
            if run is not None:
                runs.append((run, pos))
                run = None
        elif run is None:
            run = pos
    if run is not None:
        runs.append((run, len(chunk)))
    return runs


@dataclasses.dataclass
class _Counts:
    read: int = 0
    written: int = 0
    skipped: int = 0
    zeroed: int = 0

    def add(self, other):
        self.read += other.read
        self.written += other.written
        self.skipped += other.skipped
        self.zeroed += other.zeroed


class _Copier:
    """Moves one chunk at a time; safe to call from several threads.

    Every call gets its own buffer and returns its own counts, so
    nothing is shared between concurrent chunks but the two handles.
    """

    def __init__(self, reader, writer, chunk_size, dest_zeroed):
        self.reader = reader
        self.writer = writer
        self.dest_zeroed = dest_zeroed
        self.zeros = bytes(chunk_size)
        self.zero_view = memoryview(self.zeros)

    def zero_chunk(self, offset, n, buffer=None):
        """Zero ``n`` bytes at ``offset`` (a hole, destination not zeroed)."""
        if self.writer.zero(offset, self.zero_view[:n]):
            return _Counts(zeroed=n)
        return _Counts(written=n)

    def chunk(self, offset, n, buffer):
        """Copy ``n`` bytes at ``offset`` through ``buffer``."""
        view = self.reader.read(offset, memoryview(buffer)[:n])
        counts = _Counts(read=n)
        if self.dest_zeroed:
            self._write_nonzero(offset, view, counts)
        else:
            self.writer.write(offset, view)
            counts.written += n
        return counts

    def _write_nonzero(self, offset, chunk, counts):
        """Write the chunk's runs of non-zero blocks, skip zero blocks."""
        written = 0
        for start, end in nonzero_runs(chunk, self.zeros):
            self.writer.write(offset + start, chunk[start:end])
            written += end - start
        counts.written += written
        counts.skipped += len(chunk) - written


def _tasks(ranges, size, chunk_size, dest_zeroed, start=0):
    """Yield ``(kind, offset, n)`` in offset order; kind names the work.

    ``'skip'`` is a hole left to a zeroed destination (no I/O), ``'zero'``
    a hole to zero, ``'data'`` a chunk to copy, ``'done'`` a task that
    ends at or before ``start`` (a resumed copy did it before).  Holes are
    cut at multiples of ``chunk_size``, so that zeroing them deallocates
    whole RBD objects (4 MiB, as the default chunk) rather than parts of
    two.
    """
    for kind, offset, n in _all_tasks(ranges, size, chunk_size,
                                      dest_zeroed):
        yield ('done' if offset + n <= start else kind), offset, n


def _all_tasks(ranges, size, chunk_size, dest_zeroed):
    def split(kind, offset, length):
        end = offset + length
        while offset < end:
            stop = offset + chunk_size
            if kind == 'zero':
                stop -= stop % chunk_size
            n = min(stop, end) - offset
            yield kind, offset, n
            offset += n

    position = 0
    for offset, length in itertools.chain(ranges, [(size, 0)]):
        if offset > position:
            if dest_zeroed:
                yield 'skip', position, offset - position
            else:
                yield from split('zero', position, offset - position)
        yield from split('data', offset, length)
        position = offset + length


def copy_volume(src, dst, size=None, *, chunk_size=4 * units.Mi, bps_limit=0,
                callback=progress.DEFAULT_CALLBACK, extents=None,
                dest_zeroed=False, clock=time.monotonic, sleep=time.sleep,
                queue_depth=1, resume_from=0, checkpoint=None):
    """Copy the first ``size`` bytes of ``src`` onto ``dst``.

    Reads and writes whole chunks at the same offsets, with memory bounded
    by ``queue_depth`` chunk buffers (plus one chunk of zeros) whatever
    the size.  Only the source's data extents are read; the holes between
    them, and all-zero blocks, are not written when ``dest_zeroed`` says
    the destination already reads as zeros, so a thin destination stays
    thin.
    The destination is flushed and fsync'ed before returning.

    :param src: a readable, seekable handle (``readinto`` or ``read``).
    :param dst: a writable, seekable handle at least ``size`` bytes long.
    :param size: bytes to copy; the source's size when omitted.
    :param chunk_size: bytes per read and write.
    :param bps_limit: the highest average rate in bytes per second; bytes
        read, and holes zeroed, count against it.  0 means unlimited.
    :param callback: a :class:`rbdmig.migration.progress.Callback`; it gets
        ``set_size(size)`` once, then ``relative_update`` for every byte
        handled (copied or skipped), and may cancel the copy by raising.
    :param extents: where the source holds data, as ``(offset, length)``
        pairs; found by :func:`data_extents` when omitted, and the whole
        range is read if they cannot be found.
    :param dest_zeroed: the caller vouches that the destination reads as
        zeros (it created it); by default holes are zeroed (deallocated by
        the handle's ``zero_at``, or punched in a regular file, else
        written) and data chunks written whole, so the destination ends
        identical to the source whatever it held.
    :param clock: a monotonic clock in seconds, injectable for tests.
    :param sleep: the sleep function used by the throttle.
    :param queue_depth: chunks in flight at once.  1 copies in the calling
        thread; more use that many worker threads and offset-addressed
        I/O (the handle's ``read_at``/``write_at``, else ``pread``/
        ``pwrite`` on a regular file, else ``seek`` under a lock).  The
        callback and throttle are still called from the calling thread
        only; the first error stops the copy once the chunks in flight
        are done.
    :param resume_from: an offset a copy onto this same destination, in
        chunks of this same size, reported as a checkpoint: tasks ending
        there or before are not done again (they count as progress).
    :param checkpoint: ``checkpoint(offset)``, called on the calling
        thread at each multiple of 16 chunks past ``resume_from`` once
        every byte below it is on the destination (to pass back as
        ``resume_from``), or None.
    :returns: a :class:`CopyResult`.
    :raises InvalidInput: a negative size or limit, a chunk size or queue
        depth < 1.
    :raises CopyError: a handle cannot read or write, the source or the
        destination is smaller than ``size``, or a read or write is short.
    """
    if (chunk_size < 1 or bps_limit < 0 or queue_depth < 1 or
            (size is not None and size < 0)):
        raise exception.InvalidInput(
            reason=f'size {size!r}, chunk_size {chunk_size!r}, '
                   f'queue_depth {queue_depth!r} and bps_limit '
                   f'{bps_limit!r} must not be negative, and chunk_size '
                   'and queue_depth must be positive.')
    _check_handles(src, dst)
    src_size = size_of(src)
    if size is None:
        size = src_size
    elif src_size < size:
        raise exception.CopyError(
            reason=f'the source holds {src_size} bytes, fewer than the '
                   f'{size} to copy.')
    dst_size = size_of(dst)
    if dst_size < size:
        raise exception.CopyError(
            reason=f'the destination holds {dst_size} bytes, fewer than '
                   f'the {size} to copy.')

    if extents is not None:
        ranges = extents_mod.normalize_extents(extents, size)
    else:
        ranges = extents_mod.data_extents(src, size)
    if ranges is None:
        ranges = [(0, size)] if size else []

    LOG.debug('Copying %(size)d bytes in chunks of %(chunk)d '
              '(limit %(limit)s B/s, extents %(how)s, dest_zeroed %(z)s, '
              'queue depth %(depth)d)',
              {'size': size, 'chunk': chunk_size, 'limit': bps_limit or '-',
               'how': 'given' if extents is not None else 'probed',
               'z': dest_zeroed, 'depth': queue_depth})
    start = clock()
    parallel = queue_depth > 1
    copier = _Copier(positional.Reader(src, parallel),
                     positional.Writer(dst, parallel), chunk_size,
                     dest_zeroed)
    throttle = _Throttle(bps_limit, clock, sleep, start)
    counts = _Counts()
    callback.set_size(size)
    tasks = _tasks(ranges, size, chunk_size, dest_zeroed, resume_from)
    # A checkpoint is only as good as the destination's flush: sync first.
    marks = runners.Checkpoints(
        (lambda offset: (copier.writer.sync(), checkpoint(offset)))
        if checkpoint else (lambda offset: None),
        every=16 * chunk_size, start=resume_from)
    if parallel:
        runners.run_pool(copier, tasks, chunk_size, queue_depth, callback,
                         throttle, counts, marks)
    else:
        runners.run_serial(copier, tasks, chunk_size, callback, throttle,
                           counts, marks)
    copier.writer.sync()

    result = CopyResult(size=size, bytes_read=counts.read,
                        bytes_written=counts.written,
                        bytes_skipped=counts.skipped,
                        seconds=clock() - start, bytes_zeroed=counts.zeroed)
    LOG.debug('Copy finished: %s', result)
    return result
