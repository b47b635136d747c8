"""Checks a copy against its source, before the source may be removed."""

from oslo_log import log as logging
from oslo_utils import units

from rbdmig import exception
from rbdmig import ext
from rbdmig import native
from rbdmig.ceph import data_objects
from rbdmig.ceph import images

LOG = logging.getLogger(__name__)

LEVELS = ('none', 'extents', 'osd_checksum', 'checksum')
_CHUNK = 4 * units.Mi


def run(source, copy, level, size, snapshots=None, clusters=None,
        maps=None):
    """:func:`verify` on a native thread; log here why a level fell back.

    The caller's thread may be a greenthread: it logs, the native thread
    that verifies never does.
    """
    why = native.run(lambda: verify(source, copy, level, size, snapshots,
                                    clusters, maps))
    if why:
        LOG.info('Verified %(copy)s by level checksum (every byte read on '
                 'this host) instead of osd_checksum: %(why)s',
                 {'copy': copy.get_name(), 'why': why})


def verify(source, copy, level, size, snapshots=None, clusters=None,
           maps=None):
    """Raise unless ``copy`` matches ``source`` at ``level``.

    Four levels (``migration_verify``):

    ``none``
        Size, and snapshot names where the method keeps them.
    ``extents``
        Also the allocation maps, at object granularity: the copy holds data
        nowhere the source has none, and every source object it lacks reads
        as zeros in the source (copies skip zeros).  Reads only those.
    ``osd_checksum``
        Also the data, hashed where it lies: each OSD returns the size and
        XXH64 of its objects of both images (:func:`ext.object_checksums`)
        and they are compared object by object.  Only the objects either
        image's allocation map names are asked (a thin image costs what
        its data does, the map read as ``extents`` reads it), and an
        object its image's map leaves out counts as a hole whatever RADOS
        holds under its name: librbd reads zeros there.  An object one
        side lacks must hash as zeros of its size on the other; objects
        of different sizes (the rest of the shorter one reads as zeros)
        are read on this host.  It needs the extension, and both images
        with the same object size, no fancy striping and no parent (a
        clone's data is partly in its parent's objects): otherwise
        ``checksum`` runs, and the reason is returned.
    ``checksum``
        Also the data: every byte either image holds is read from both and
        compared on this host.

    Runs on a native thread (:func:`rbdmig.native.run`): it never logs.

    :param source: the open source image (unused at level ``none``).
    :param copy: the open copy.
    :param size: the source's size.
    :param snapshots: the snapshot names the copy must have, or None.
    :param clusters: ``(source's, copy's)`` :class:`ext.ClusterSpec`, for
        ``osd_checksum``; None falls back to ``checksum``.
    :param maps: ``(rbd module, source's pool, copy's pool)``, the pools
        (ioctxs) the images are in: their object maps are then read
        whole, one call each (:func:`data_objects.mapped`), instead of
        librbd's whole-object diff walking every object of the size on
        this host; None, or a clone, a striped image or one without a
        valid map, asks librbd.
    :returns: None, or why ``osd_checksum`` fell back to ``checksum``.
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
    why = None
    if level == 'osd_checksum':
        why = _osd_obstacle(source, copy, clusters)
        level = 'checksum' if why else level
    if level == 'extents':
        _compare_maps(source, copy, size, maps)
    elif level == 'osd_checksum':
        _compare_objects(source, copy, size, clusters, maps)
    elif level == 'checksum':
        _compare_data(source, copy, size)
    return why


def _blocks(image, size, block, maps=None, side=1):
    """Indexes of the ``block``-sized ranges that hold data, a parent's
    included: its object map's numbers where ``maps`` can read it and a
    block is an object."""
    if (maps is not None and block == 1 << image.stat()['order']
            and not images.has_parent(image)):
        numbers = data_objects.mapped(maps[0], maps[side], image)
        if numbers is not None:
            return set(numbers)
    found = set()

    def collect(offset, length, exists):
        if exists:
            found.update(range(offset // block,
                               (offset + length - 1) // block + 1))
        return 0

    image.diff_iterate(0, size, None, collect, include_parent=True,
                       whole_object=True)
    return found


def _compare_maps(source, copy, size, maps=None):
    block = 1 << source.stat()['order']
    src = _blocks(source, size, block, maps, 1)
    dst = _blocks(copy, size, block, maps, 2)
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


def _plain_layout(image):
    """Whether byte ``i * object size`` of the image starts object ``i``."""
    obj = 1 << image.stat()['order']
    return image.stripe_count() == 1 and image.stripe_unit() == obj


def _osd_obstacle(source, copy, clusters):
    """Why ``osd_checksum`` cannot compare these two, or None."""
    if not ext.available():
        return ext.unavailable_reason()
    if clusters is None:
        return 'the extension was given no cluster to connect to'
    for side, image in (('source', source), ('copy', copy)):
        if images.has_parent(image):
            return ('the %s is a clone, whose data is partly in its '
                    'parent\'s objects' % side)
        if not _plain_layout(image):
            return 'the %s is striped (STRIPINGV2)' % side
    orders = source.stat()['order'], copy.stat()['order']
    if orders[0] != orders[1]:
        return ('the source\'s objects are of order %d, the copy\'s of '
                'order %d' % orders)
    return None


def _sums(image, cluster, numbers, mapped):
    """The OSDs' answers for objects ``numbers`` of ``image``, None for
    each its map leaves out (``mapped``: librbd reads zeros there)."""
    stat = image.stat()
    found = ext.object_checksums(cluster, image.data_pool_id(),
                                 stat['block_name_prefix'], numbers)
    return [answer if number in mapped else None
            for number, answer in zip(numbers, found)]


def _compare_objects(source, copy, size, clusters, maps=None):
    obj = 1 << source.stat()['order']
    zeros = {}  # size -> XXH64 of that many zeros

    def zeros_hash(length):
        if length not in zeros:
            zeros[length] = ext.xxhash64(bytes(length))
        return zeros[length]

    # With an image's layout plain, its block i is its object i.
    src_map = _blocks(source, size, obj, maps, 1)
    dst_map = _blocks(copy, size, obj, maps, 2)
    numbers = sorted(src_map | dst_map)
    src = _sums(source, clusters[0], numbers, src_map)
    dst = _sums(copy, clusters[1], numbers, dst_map)
    for index, mine, theirs in zip(numbers, src, dst):
        if mine == theirs:
            continue
        offset = index * obj
        length = min(obj, size - offset)
        if mine is None or theirs is None:
            present = mine or theirs
            if present.xxhash64 == zeros_hash(present.size):
                continue  # a hole on one side, zeros on the other
        elif mine.size != theirs.size:
            # Beyond the shorter object, zeros: compare what they read.
            if source.read(offset, length) == copy.read(offset, length):
                continue
        raise exception.CopyError(
            reason='the copy differs from the source within %d bytes at '
                   'offset %d (object %d)' % (length, offset, index))
