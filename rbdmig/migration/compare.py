"""Whether two volume handles read the same: the generic copy's check."""

import contextlib

from oslo_utils import units

from rbdmig import exception
from rbdmig.migration import copy as copy_engine
from rbdmig.migration import extents as extents_mod
from rbdmig.migration import positional


def _ranges(src, dst, size):
    """Where either handle holds data; the whole range if one cannot say.

    Outside both handles' data both read as zeros, so only the union of
    their extents needs reading: a destination that holds data where the
    source has a hole is read, and caught.
    """
    found = []
    for handle in (src, dst):
        extents = extents_mod.data_extents(handle, size)
        if extents is None:
            return [(0, size)] if size else []
        found.extend(extents)
    return extents_mod.normalize_extents(found, size)


def _chunks(ranges, chunk_size):
    """``(offset, length)`` of each piece of ``ranges``, at most
    ``chunk_size`` long."""
    for offset, length in ranges:
        end = offset + length
        while offset < end:
            n = min(chunk_size, end - offset)
            yield offset, n
            offset += n


def first_difference(src, dst, size, chunk_size=4 * units.Mi):
    """Return the first offset below ``size`` where the handles differ.

    Both handles are read here, so bytes are compared directly: a hash of
    each side would read the same bytes and prove less.

    :param src: a readable, seekable handle (the source).
    :param dst: a readable, seekable handle (its copy).
    :returns: the offset of the first chunk that differs, or None when
        the first ``size`` bytes of both read the same.
    :raises CopyError: a handle ends before ``size``.
    """
    reader, other = positional.Reader(src, False), positional.Reader(
        dst, False)
    mine, theirs = bytearray(chunk_size), bytearray(chunk_size)
    for offset, n in _chunks(_ranges(src, dst, size), chunk_size):
        a = reader.read(offset, memoryview(mine)[:n])
        b = other.read(offset, memoryview(theirs)[:n])
        if a != b:
            return offset
    return None


# A partial copy is compared with its source in blocks of this size: a
# write cut short by a kill leaves whole sectors written, or none.
SECTOR = 512


def _foreign(mine, theirs):
    """Where ``theirs`` first holds neither ``mine``'s sector nor zeros."""
    for at in range(0, len(theirs), SECTOR):
        block = theirs[at:at + SECTOR]
        if block != mine[at:at + SECTOR] and block.count(0) != len(block):
            return at
    return None


def first_foreign_byte(src, dst, size, chunk_size=4 * units.Mi):
    """Where ``dst`` holds, below ``size``, something ``src`` does not.

    A copy cut short (its process killed) reads, sector by sector, as
    its source or as zeros: the sectors not written yet.  Such a copy
    holds nothing its source does not, and removing it loses nothing.

    :returns: the offset of the first sector of ``dst`` that holds data
        and differs from ``src``'s, or None.
    """
    reader, other = positional.Reader(src, False), positional.Reader(
        dst, False)
    extents = extents_mod.data_extents(dst, size)
    ranges = ([(0, size)] if size else []) if extents is None else (
        extents_mod.normalize_extents(extents, size))
    mine, theirs = bytearray(chunk_size), bytearray(chunk_size)
    for offset, n in _chunks(ranges, chunk_size):
        a = reader.read(offset, memoryview(mine)[:n])
        b = other.read(offset, memoryview(theirs)[:n])
        if a != b:
            at = _foreign(bytes(a), bytes(b))
            if at is not None:
                return offset + at
    return None


def first_data_past(handle, start, end, chunk_size=4 * units.Mi):
    """Where ``handle`` first holds data from ``start`` to ``end``."""
    reader = positional.Reader(handle, False)
    extents = extents_mod.data_extents(handle, end)
    ranges = [(start, end - start)] if extents is None else [
        (max(o, start), min(o + n, end) - max(o, start))
        for o, n in extents_mod.normalize_extents(extents, end)
        if o + n > start]
    buf = bytearray(chunk_size)
    for offset, n in _chunks(ranges, chunk_size):
        at = _foreign(bytes(n), bytes(reader.read(offset,
                                                  memoryview(buf)[:n])))
        if at is not None:
            return offset + at
    return None


def volume_bytes(drv, volume):
    """Return the bytes ``volume`` holds on ``drv``, as its handle reads
    them (its record's size may say otherwise)."""
    handle = drv.open_volume(None, volume, 'rb')
    try:
        return copy_engine.size_of(handle)
    finally:
        drv.close_volume(None, volume, handle)


def check_copy(src_driver, volume, dst_driver, copy):
    """Raise unless ``copy`` on ``dst_driver`` reads as ``volume`` does.

    All of the source is compared, as its handle holds it: its record's
    size is not trusted (an image grown behind it holds more).

    :raises CopyError: they differ (the offset is in the message), or
        the copy is shorter than the source.
    """
    with contextlib.ExitStack() as stack:
        mine = src_driver.open_volume(None, volume, 'rb')
        stack.callback(src_driver.close_volume, None, volume, mine)
        theirs = dst_driver.open_volume(None, copy, 'rb')
        stack.callback(dst_driver.close_volume, None, copy, theirs)
        size, held = copy_engine.size_of(mine), copy_engine.size_of(theirs)
        if held < size:
            # Past its end the copy reads nothing: where the source has a
            # hole there, the comparison below would not notice.
            raise exception.CopyError(
                reason='the copy of %s holds %d bytes, fewer than the %d '
                       'of its source; the source is intact.' % (
                           volume.id, held, size))
        where = first_difference(mine, theirs, size)
    if where is not None:
        raise exception.CopyError(
            reason='the copy of %s differs from the source at byte %d; '
                   'the source is intact.' % (volume.id, where))
