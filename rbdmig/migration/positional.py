"""Offset-addressed reads, writes and zeroing on file-like handles."""

import ctypes
import errno
import functools
import io
import os
import threading

from rbdmig import exception
from rbdmig.migration import extents


class Reader:
    """Reads ``n`` bytes at an offset into a caller's buffer.

    Uses the handle's ``read_at(offset, n)`` (the RBD handle: librbd
    reads at an offset and releases the GIL), else ``os.preadv`` on a
    regular file's descriptor, else ``seek`` + ``readinto``/``read`` under
    a lock: then reads are serialised, but still overlap with writes.
    All three may be used from several threads at once.
    """

    def __init__(self, handle, positional=True):
        self.handle = handle
        self._read_at = getattr(handle, 'read_at', None) if positional \
            else None
        self._fd = extents.regular_fileno(handle) if positional else None
        self._lock = threading.Lock()
        self._use_readinto = hasattr(handle, 'readinto')

    def read(self, offset, view):
        """Fill ``view`` from ``offset``; return it.

        :raises CopyError: the source ends before the view is full, or
            returns more than asked.
        """
        n = len(view)
        if self._read_at is not None:
            data = self._read_at(offset, n)
            if len(data) != n:
                raise self._short(offset + min(len(data), n), offset + n)
            view[:] = data
            return view
        if self._fd is not None:
            got = 0
            while got < n:
                k = os.preadv(self._fd, [view[got:]], offset + got)
                if not k:
                    raise self._short(offset + got, offset + n)
                got += k
            return view
        with self._lock:
            self.handle.seek(offset)
            got = 0
            while got < n:
                # Files may return less than asked before their end; only
                # an empty answer means there is nothing more to read.
                k = self._read_some(view[got:], offset + got)
                if not k:
                    raise self._short(offset + got, offset + n)
                got += k
        return view

    @staticmethod
    def _short(at, end):
        return exception.CopyError(
            reason=f'short read: the source ended at offset {at}, before '
                   f'{end}.')

    def _read_some(self, view, offset):
        if self._use_readinto:
            try:
                return self.handle.readinto(view) or 0
            except NotImplementedError:
                # io.RawIOBase subclasses that define only read() (such as
                # os-brick's RBD wrapper) inherit a readinto that raises.
                self._use_readinto = False
        piece = self.handle.read(len(view)) or b''
        if len(piece) > len(view):
            raise exception.CopyError(
                reason=f'the source returned {len(piece)} bytes at offset '
                       f'{offset} when {len(view)} were asked.')
        view[:len(piece)] = piece
        return len(piece)


# fallocate(2) modes: deallocate, keep the file's size.
_PUNCH_HOLE = 0x02 | 0x01
# errnos meaning "this file (system) cannot punch holes": write zeros.
_NO_PUNCH = frozenset((errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS,
                       errno.EINVAL))


@functools.lru_cache(maxsize=1)
def _fallocate():
    """libc's fallocate(), or None; Python's os module has no PUNCH_HOLE."""
    try:
        func = ctypes.CDLL(None, use_errno=True).fallocate64
    except (OSError, AttributeError):
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                     ctypes.c_int64)
    func.restype = ctypes.c_int
    return func


def punch_hole(fd, offset, length):
    """Deallocate ``length`` bytes at ``offset``; they then read as zeros.

    :raises OSError: the file system cannot (EOPNOTSUPP), or another error.
    """
    func = _fallocate()
    if func is None:
        raise OSError(errno.ENOSYS, 'fallocate is not available')
    if func(fd, _PUNCH_HOLE, offset, length):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Writer:
    """Writes a buffer at an offset; see :class:`Reader` for the ways.

    :meth:`zero` makes a range read as zeros without writing them where
    the handle can (``zero_at``: librbd's write_zeroes; a regular file:
    a punched hole), so that the range is deallocated, not filled.
    """

    def __init__(self, handle, positional=True):
        self.handle = handle
        self._write_at = getattr(handle, 'write_at', None) if positional \
            else None
        self._fd = extents.regular_fileno(handle) if positional else None
        self._lock = threading.Lock()
        self._zero_at = getattr(handle, 'zero_at', None)
        self._punch_fd = extents.regular_fileno(handle)

    def zero(self, offset, zeros):
        """Make ``len(zeros)`` bytes at ``offset`` read as zeros.

        :param zeros: a bytes-like object of zeros, written when the range
            cannot be deallocated.
        :returns: True if the range was deallocated, False if ``zeros``
            were written.
        """
        n = len(zeros)
        if self._zero_at is not None:
            self._zero_at(offset, n)
            return True
        if self._punch_fd is not None:
            # Ranges of one copy never overlap, so writes still sitting in
            # a buffered handle cannot land on a punched range.
            try:
                punch_hole(self._punch_fd, offset, n)
                return True
            except OSError as err:
                if err.errno not in _NO_PUNCH:
                    raise
                self._punch_fd = None  # write zeros from now on
        self.write(offset, zeros)
        return False

    def write(self, offset, data):
        """Write all of ``data`` at ``offset``.

        :raises CopyError: the handle wrote fewer bytes than given.
        """
        n = len(data)
        if self._write_at is not None:
            self._check(self._write_at(data, offset), n, offset)
        elif self._fd is not None:
            done = 0
            view = memoryview(data)
            while done < n:
                k = os.pwrite(self._fd, view[done:], offset + done)
                if not k:
                    raise OSError(errno.EIO, 'pwrite wrote nothing')
                done += k
        else:
            with self._lock:
                self.handle.seek(offset)
                self._check(self.handle.write(data), n, offset)

    @staticmethod
    def _check(written, n, offset):
        # A handle whose write() returns None (os-brick's RBD wrapper)
        # raises on failure instead, so None means everything was written.
        if written is not None and written != n:
            raise exception.CopyError(
                reason=f'short write: {written} of {n} bytes were written '
                       f'at offset {offset}.')

    def sync(self):
        """Flush the handle, and fsync it when it has a descriptor.

        :raises CopyError: fsync failed (EINVAL, an fd that cannot be
            synced, is not an error).
        """
        flush = getattr(self.handle, 'flush', None)
        if callable(flush):
            flush()
        try:
            fd = self.handle.fileno()
        except (AttributeError, OSError, ValueError,
                io.UnsupportedOperation):
            return  # not backed by a file descriptor: flush() was all
        try:
            os.fsync(fd)
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise exception.CopyError(
                    reason=f'syncing the destination failed: {err}.'
                ) from err
