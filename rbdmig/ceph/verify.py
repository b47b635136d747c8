"""Checks a copy against its source, before the source may be removed."""

from oslo_utils import units

from rbdmig import exception

LEVELS = ('none', 'extents', 'checksum')
_CHUNK = 4 * units.Mi


def verify(source, copy, level, size, snapshots=None):
    """Raise unless ``copy`` matches ``source`` at ``level``.

    Three levels (``migration_verify``):

    ``none``
        Size, and snapshot names where the method keeps them.
    ``extents``
        Also the allocation maps, at object granularity: the copy holds data
        nowhere the source has none, and every source object it lacks reads
        as zeros in the source (copies skip zeros).  Reads only those.
    ``checksum``
        Also the data: every byte either image holds is read from both and
        compared.

    Runs on a native thread (:func:`rbdmig.native.run`): it never logs.

    :param source: the open source image (unused at level ``none``).
    :param copy: the open copy.
    :param size: the source's size.
    :param snapshots: the snapshot names the copy must have, or None.
    :raises CopyError: naming the first difference.
    """
    if copy.size() != size:
        raise exception.CopyError(reason='size %d, source %d'
                                  % (copy.size(), size))
    if snapshots is not None:
        found = tuple(sorted(s['name'] for s in copy.list_snaps()))
        if found != tuple(snapshots):
            raise exception.CopyError(reason='snapshots %s, source %s'
                                      % (found, tuple(snapshots)))
    if level == 'extents':
        _compare_maps(source, copy, size)
    elif level == 'checksum':
        _compare_data(source, copy, size)


def _blocks(image, size, block):
    """Indexes of the ``block``-sized ranges that hold data."""
    found = set()

    def collect(offset, length, exists):
        if exists:
            found.update(range(offset // block,
                               (offset + length - 1) // block + 1))
        return 0

    image.diff_iterate(0, size, None, collect, include_parent=True,
                       whole_object=True)
    return found


def _compare_maps(source, copy, size):
    block = 1 << source.stat()['order']
    src, dst = _blocks(source, size, block), _blocks(copy, size, block)
    extra = sorted(dst - src)
    if extra:
        raise exception.CopyError(
            reason='the copy holds data at offset %d, where the source has '
                   'none' % (extra[0] * block))
    for index in sorted(src - dst):
        offset = index * block
        length = min(block, size - offset)
        if source.read(offset, length) != bytes(length):
            raise exception.CopyError(
                reason='the source\'s data at offset %d is missing from the '
                       'copy' % offset)


def _extents(image, size):
    found = []

    def collect(offset, length, exists):
        if exists:
            found.append((offset, offset + length))
        return 0

    image.diff_iterate(0, size, None, collect, include_parent=True,
                       whole_object=False)
    return found


def _compare_data(source, copy, size):
    ranges = sorted(_extents(source, size) + _extents(copy, size))
    position = 0
    for start, end in ranges:
        start = max(start, position)
        while start < end:
            length = min(_CHUNK, end - start)
            if source.read(start, length) != copy.read(start, length):
                raise exception.CopyError(
                    reason='the copy differs from the source within %d '
                           'bytes at offset %d' % (length, start))
            start += length
        position = max(position, end)
