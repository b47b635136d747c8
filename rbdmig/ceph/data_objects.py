"""An image's data objects: which exist, and its object map saying so."""

import errno
import os
import re
import struct

from rbdmig import ext

# cls_rbd's state of an object that exists (librbd's OBJECT_EXISTS; a
# head's objects are never EXISTS_CLEAN, which only snapshots set).
OBJECT_EXISTS = 1
# object_map_update calls in flight at once.
MAP_QUEUE_DEPTH = 16
# Runs of consecutive objects marked one call each; past this, the map
# is loaded, set and saved whole (three calls, whatever the runs).
MAP_UPDATES_MAX = 8
# ceph::BitVector<2>: four objects' states per byte, the first in the
# high bits; its header a bufferlist (u32 length) holding ENCODE_START
# (version 1, compat 1, u32 length) and the u64 count; its footer a
# bufferlist of CRCs, empty as object_map_load sends and _save accepts.
MAP_PER_BYTE = 4
_MAP_HEADER = struct.Struct('<IBBIQ')
_MAP_HEADER_FIELDS = (14, 1, 1, 8)
_NO_CRCS = struct.pack('<I', 0)
# A byte of a map with some object's state not OBJECT_NONEXISTENT (0).
_NOT_NONEXISTENT = re.compile(b'[^\\x00]')


def mapped(rbd, ioctx, image):
    """The numbers of the objects ``image``'s object map says may exist.

    The head's map (``rbd_object_map.<image id>``, in the image's own
    pool) is read whole with one call of cls_rbd's ``object_map_load``:
    2 bits an object, 64 KiB for a 1 TiB volume, whatever it holds.
    librbd's whole-object ``diff_iterate`` answers from the same map but
    walks every object of the size on this host (20 ms for 256 GiB, 0.1 s
    for 1 TiB, each time it is asked).  Any state but nonexistent counts,
    as librbd's reads and diffs count it; librbd persists a state before
    the write it allows, so an object written through librbd is named.

    Only the image's own objects: a clone's parent is not in its map.

    :param rbd: the ``rbd`` module (constants).
    :param ioctx: the image's own pool (and namespace): where its header
        and map live, not its data pool.
    :param image: the image, open.
    :returns: the numbers ascending, or None where the map cannot say:
        the image has no object map, its map is flagged invalid, or its
        objects hold stripes (``stripe_count > 1``: an object number is
        then no offset over the object size).  Either invalid flag
        counts: librbd sets both when it stops trusting the map.
    """
    invalid = rbd.RBD_FLAG_OBJECT_MAP_INVALID | rbd.RBD_FLAG_FAST_DIFF_INVALID
    if (not image.features() & rbd.RBD_FEATURE_OBJECT_MAP
            or image.flags() & invalid or image.stripe_count() != 1):
        return None
    oid = 'rbd_object_map.%s' % image.id()
    size = _call(ioctx.stat, oid)[0]
    _, loaded = _call(ioctx.execute, oid, 'rbd', 'object_map_load', b'',
                      length=size)
    _, states = _decode_map(oid, loaded)
    numbers = []
    for match in _NOT_NONEXISTENT.finditer(states):
        byte = match.start()
        value = states[byte]
        for slot in range(MAP_PER_BYTE):
            if value >> (MAP_PER_BYTE - 1 - slot) * 2 & 3:
                numbers.append(byte * MAP_PER_BYTE + slot)
    return numbers


def existing(rbd, ioctx, image, cluster):
    """The numbers of the data objects ``image`` holds itself.

    From its object map (:func:`mapped`: one read, whatever the size),
    where it has a valid one and no fancy striping.  Otherwise (no
    valid object map, or ``stripe_count > 1``, where an object holds
    stripe units scattered across the image and extents do not name it)
    the image's data pool is listed for its ``block_name_prefix``
    (:func:`rbdmig.ext.object_numbers`), whose cost follows the pool's
    object count.  What a diff_iterate without an object map would cost
    (an op per object of the volume's size) is never paid.

    A listed object may vanish before it is read (the copier skips it);
    an object map may name one that was never written (the same).

    :param rbd: the ``rbd`` module (constants).
    :param ioctx: the image's own pool (see :func:`mapped`).
    :param image: the image, open (the head; its parent's data is not in
        its objects and is left out).
    :param cluster: an :class:`rbdmig.ext.ClusterSpec` for the listing.
    :returns: ``(numbers ascending, 'object map' or 'listing')``.
    """
    numbers = mapped(rbd, ioctx, image)
    if numbers is not None:
        return numbers, 'object map'
    stat = image.stat()
    return ext.object_numbers(cluster, image.data_pool_id(),
                              stat['block_name_prefix']), 'listing'


def runs(numbers):
    """``(start, stop)`` of each run of consecutive numbers, ascending."""
    start = stop = None
    for number in sorted(set(numbers)):
        if number == stop:
            stop += 1
            continue
        if start is not None:
            yield start, stop
        start, stop = number, number + 1
    if start is not None:
        yield start, stop


def mark_existing(ioctx, image_id, numbers):
    """Have an image's (head) object map say these objects exist.

    For objects written behind librbd's back (``copy_from``) into an
    image created with the object map, where every object is absent: the
    map then says exactly what was written, as librbd's own writes would
    have, without the stat per object of a rebuild.  The image must not
    be open anywhere: an open image would keep its own copy of the map.

    Up to ``MAP_UPDATES_MAX`` runs of consecutive numbers, each run is
    one call of cls_rbd's ``object_map_update`` on
    ``rbd_object_map.<image id>``, the call librbd makes before writing
    an object (the OSD decodes, updates and re-encodes the map, its CRCs
    included), ``MAP_QUEUE_DEPTH`` in flight.  More runs (a big thin
    volume's scattered objects: each call is a write of the map's object,
    and the OSD applies them one after the other) are set in one pass:
    :func:`_set_whole_map` (3920 runs: 0.71 s by calls, 0.004 s so).

    :param ioctx: the image's pool (where its header and map live).
    :param image_id: the image's id (``Image.id()``).
    :param numbers: object numbers, below the map's size.
    :returns: how many calls were made.
    :raises OSError: with the errno of the first call that failed (ERANGE
        for a number past the map's end, ENOENT for an image without an
        object map), after every call issued has completed.
    """
    oid = 'rbd_object_map.%s' % image_id
    found = list(runs(numbers))
    if len(found) > MAP_UPDATES_MAX:
        return _set_whole_map(ioctx, oid, found)
    pending, failed, calls = [], [], 0

    def wait(completion):
        completion.wait_for_complete()
        ret = completion.get_return_value()
        if ret < 0:
            failed.append(ret)

    try:
        for start, stop in found:
            if failed:
                break
            # start, stop (u64), new state (u8), no current-state filter
            # (an absent boost::optional: one zero byte).
            data = struct.pack('<QQBB', start, stop, OBJECT_EXISTS, 0)
            pending.append(ioctx.aio_execute(oid, 'rbd', 'object_map_update',
                                             data))
            calls += 1
            if len(pending) >= MAP_QUEUE_DEPTH:
                wait(pending.pop(0))
    finally:
        for completion in pending:  # never leave a call in flight
            wait(completion)
    if failed:
        raise OSError(-failed[0], 'updating object map %s: %s' % (
            oid, os.strerror(-failed[0])))
    return calls


def _set_whole_map(ioctx, oid, found):
    """Set the runs ``found`` to OBJECT_EXISTS in one load and one save.

    cls_rbd's ``object_map_load`` returns the map as ceph's
    ``BitVector<2>`` encodes it without CRCs, and ``object_map_save``
    decodes such a map, computes the CRCs and writes it whole: the OSD
    refuses (EINVAL) a map it cannot decode, so nothing malformed is
    ever written.  Nothing is written either when a number is past the
    map's end (ERANGE).

    :returns: the calls made: a stat (the load's buffer), load, save.
    """
    size = _call(ioctx.stat, oid)[0]
    _, loaded = _call(ioctx.execute, oid, 'rbd', 'object_map_load', b'',
                      length=size)
    count, states = _decode_map(oid, loaded)
    for start, stop in found:
        if stop > count:
            raise OSError(errno.ERANGE, 'object %d is past the end of '
                          'object map %s (%d objects)' % (stop - 1, oid,
                                                          count))
        for number in range(start, stop):
            byte, shift = divmod(number, MAP_PER_BYTE)
            shift = (MAP_PER_BYTE - 1 - shift) * 2
            states[byte] = (states[byte] & ~(3 << shift)
                            | OBJECT_EXISTS << shift)
    _call(ioctx.execute, oid, 'rbd', 'object_map_save',
          _MAP_HEADER.pack(*_MAP_HEADER_FIELDS, count) + bytes(states)
          + _NO_CRCS)
    return 3


def _decode_map(oid, encoded):
    """``(object count, bytearray of states)`` of a map without CRCs."""
    head = _MAP_HEADER.size
    try:
        *fields, count = _MAP_HEADER.unpack_from(encoded)
    except struct.error:
        fields, count = (), 0
    length = -(-count // MAP_PER_BYTE)
    if (tuple(fields) != _MAP_HEADER_FIELDS
            or encoded[head + length:] != _NO_CRCS):
        raise OSError(errno.EINVAL, 'object map %s is not encoded as '
                      'cls_rbd version 1 without CRCs' % oid)
    return count, bytearray(encoded[head:head + length])


def _call(method, *args, **kwargs):
    """Call a librados method; its error as an OSError with its errno."""
    try:
        return method(*args, **kwargs)
    except Exception as err:  # rados.Error: the binding is injected
        code = getattr(err, 'errno', None)
        if not isinstance(code, int):
            raise
        raise OSError(abs(code), '%s: %s' % (
            getattr(method, '__name__', method), err)) from err
