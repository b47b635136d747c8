"""Where a handle holds data: extents from the handle or the file system."""

import errno
import io
import os
import stat

from rbdmig import exception

# lseek() errors meaning "this file system cannot tell data from holes".
_NO_SEEK_DATA = frozenset((errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP))


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


def regular_fileno(handle):
    """The handle's file descriptor if it is a regular file, else None."""
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
    fd = regular_fileno(handle)
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
