"""What every copy method does to images: layout, extents, removal."""

import errno

from oslo_log import log as logging

from rbdmig import faults
from rbdmig.ceph import data_objects

LOG = logging.getLogger(__name__)


def timed_out(err):
    """Whether ``err`` (or what caused it) is an operation timing out.

    With ``rados_osd_op_timeout`` set, an OSD that stopped answering fails
    operations with ETIMEDOUT; every further one would wait as long, so
    cleanup is then left to recovery.
    """
    while err is not None:
        if getattr(err, 'errno', None) in (errno.ETIMEDOUT, -errno.ETIMEDOUT):
            return True
        err = err.__cause__ or err.__context__
    return False


def create_args(rbd, image):
    """Return the ``create`` keyword arguments reproducing ``image``'s layout.

    Features a new image cannot be created with (set by operations, or by
    a data pool) are left out; order and striping are kept.
    """
    not_creatable = (rbd.RBD_FEATURE_OPERATIONS | rbd.RBD_FEATURE_MIGRATING |
                     rbd.RBD_FEATURE_NON_PRIMARY | rbd.RBD_FEATURE_DATA_POOL)
    features = image.features() & ~not_creatable
    args = {'features': features, 'order': image.stat()['order']}
    if features & rbd.RBD_FEATURE_STRIPINGV2:
        args.update(stripe_unit=image.stripe_unit(),
                    stripe_count=image.stripe_count())
    return args


def data_extents(image, size, offset=0):
    """Return the sorted, merged ``(offset, length)`` data extents.

    From librbd ``diff_iterate`` over the whole image (or ``size`` bytes
    from ``offset``), parent data included (a clone's data is its own
    plus its parent's).
    """
    found = []

    def collect(offset, length, exists):
        if exists:
            if found and found[-1][0] + found[-1][1] == offset:
                found[-1] = (found[-1][0], found[-1][1] + length)
            else:
                found.append((offset, length))
        return 0

    image.diff_iterate(offset, size, None, collect, include_parent=True,
                       whole_object=False)
    return found


def fast_diff_valid(rbd, image):
    """Whether librbd answers a whole-object diff from the object map.

    Only then: without fast-diff, or with its map flagged invalid, every
    ``diff_iterate`` lists each object of the image's size at its OSD.
    """
    invalid = rbd.RBD_FLAG_OBJECT_MAP_INVALID | rbd.RBD_FLAG_FAST_DIFF_INVALID
    return bool(image.features() & rbd.RBD_FEATURE_FAST_DIFF) and not (
        image.flags() & invalid)


def allocated_bytes(rbd, image, size, ioctx):
    """Bytes of ``image`` holding data, a parent's included, as ``rbd du``
    counts them: what the room check needs.

    From its object map where it has one (one read whatever the size,
    :func:`rbdmig.ceph.data_objects.mapped`) and no parent: each object
    it names counts whole, as ``rbd du`` counts it, and as ``offload``
    writes it (``copy_from`` writes an object's holes, which it zeroes
    after); other methods write no more.  A clone's map leaves out its
    parent's data: librbd's whole-object diff, parent included, counts
    them (from both maps where fast-diff is valid).  Else the exact sum
    of :func:`data_extents`, whose diff lists every object of the size
    at its OSD (``rbd du`` without fast-diff counts so too).

    :param ioctx: the image's own pool (where its object map lives).
    """
    if not has_parent(image):
        numbers = data_objects.mapped(rbd, ioctx, image)
        if numbers is not None:
            obj = 1 << image.stat()['order']
            return sum(min(obj, size - number * obj) for number in numbers
                       if number * obj < size)
    if image.stripe_count() != 1 or not fast_diff_valid(rbd, image):
        return sum(length for _, length in data_extents(image, size))
    total = [0]

    def whole(offset, length, exists):
        if exists:
            total[0] += length
        return 0

    image.diff_iterate(0, size, None, whole, include_parent=True,
                       whole_object=True)
    return total[0]


def has_parent(image):
    """Whether ``image`` reads data from a parent (a clone not flattened).

    Its overlap with the parent: 0 for an image without one.  Not
    ``stat()``: librbd's ``rbd_stat`` leaves its parent fields empty
    (deprecated, ``parent_name`` b'' for a clone too).
    """
    return image.overlap() > 0


def copy_metadata(source, destination):
    """Copy the image metadata (``rbd image-meta``) of one open image.

    Cinder keeps QoS settings there (``conf_rbd_qos_*``); ``Image.copy``
    and ``deep_copy`` copy it themselves, a copy by extents must too.
    rbdmig's own tag (``rbdmig.migration``) is not copied.
    """
    for key, value in source.metadata_list():
        if key != 'rbdmig.migration':
            destination.metadata_set(key, value)


def remove_retired(rbd, ioctx, name):
    """Remove a retired source: every snapshot, then the image.

    Only for a source renamed to its migration's retired name, once no
    client holds it and no clone needs it: it is certain to go, so it
    may be stripped.  An image already gone, or half-removed (it lists
    but no longer opens), is removed as far as librbd can;
    :func:`remove_objects` sweeps what a half-removal left.
    """
    _remove(rbd, ioctx, name, faults.point)


def identity(client, ioctx, image):
    """``(id, data object prefix, data pool)`` of an open image: what
    :func:`remove_objects` needs once it no longer opens.  The data pool
    is None when the data lives in the image's own pool."""
    data_pool = None
    pool_id = image.data_pool_id()
    if pool_id not in (-1, ioctx.get_pool_id()):
        data_pool = client.pool_reverse_lookup(pool_id)
    return image.id(), image.block_name_prefix(), data_pool


def remove_objects(ioctx, image_id, prefix, data_ioctx=None):
    """Remove the RADOS objects a half-removed image left behind.

    librbd removes an image that lists but no longer opens (its process
    died removing it) from the directory only: its data objects
    (``prefix``, in ``data_ioctx`` when it has a data pool of its own),
    header and object map stay.  Only objects of this one image's id are
    touched.

    :returns: how many objects were removed.
    """
    names = ('rbd_header.%s' % image_id, 'rbd_object_map.%s' % image_id)

    def ours(key, data):
        return (data and prefix and key.startswith(prefix + '.')) or (
            key in names or key.startswith('rbd_object_map.%s.' % image_id))

    removed = 0
    for where in [ioctx] + ([data_ioctx] if data_ioctx else []):
        data = where is (data_ioctx or ioctx)
        for obj in list(where.list_objects()):
            if not ours(obj.key, data):
                continue
            try:
                where.remove_object(obj.key)
                removed += 1
            except Exception:  # noqa: BLE001 - gone meanwhile, or retried
                LOG.warning('Could not remove object %s.', obj.key)
    return removed


def drop_snapshot(rbd, ioctx, name, snap):
    """Remove a migration's temporary snapshot of ``name``, if there.

    :raises ImageBusy: a clone still depends on it.
    """
    try:
        with rbd.Image(ioctx, name) as image:
            if snap in {s['name'] for s in image.list_snaps()}:
                if image.is_protected_snap(snap):
                    image.unprotect_snap(snap)
                image.remove_snap(snap)
    except rbd.ImageNotFound:
        pass


def exists(rbd, ioctx, name):
    """Whether an image ``name`` opens in ``ioctx`` (no name: False)."""
    if not name:
        return False
    try:
        with rbd.Image(ioctx, name, read_only=True):
            return True
    except rbd.ImageNotFound:
        return False


# librbd's object naming an image by name: ``rbd_id.<name>``, holding
# the image's id (a length-prefixed string, as Ceph encodes one).
ID_PREFIX = 'rbd_id.'


def _listed(rbd, ioctx):
    """``{name: id}`` of the images the pool's directory lists."""
    return {image['name']: image['id'] for image in rbd.RBD().list2(ioctx)}


def _id_named(ioctx, rados_error, name):
    """The image id ``rbd_id.<name>`` holds, or None if there is none."""
    try:
        data = ioctx.read(ID_PREFIX + name, 4096)
    except rados_error:
        return None
    if len(data) < 4:
        return None
    length = int.from_bytes(data[:4], 'little')
    return data[4:4 + length].decode('utf-8', 'replace') or None


def open_listed(rbd, ioctx, name):
    """Open image ``name``, or, half-removed, by the id the directory
    lists for it.

    A process killed inside librbd's removal leaves an image the
    directory lists but that no longer opens by name (``rbd_id.<name>``
    is gone); by its id it still opens, with the locks that process
    held.

    :raises ImageNotFound: the directory does not list ``name`` either.
    """
    try:
        return rbd.Image(ioctx, name)
    except rbd.ImageNotFound:
        image_id = _listed(rbd, ioctx).get(name)
        if image_id is None:
            raise
    return rbd.Image(ioctx, image_id=image_id)


def break_locks(image, ours, name, pool):
    """Break every lock on ``image`` not held from ``ours`` (this
    client's addresses), blocklisting each holder (librbd's
    ``rbd_blocklist_on_break_lock``); return the holders' addresses."""
    held = [o for o in image.lock_get_owners() if o['owner'] != ours]
    for owner in held:
        LOG.warning('Breaking the lock %(owner)s holds on %(name)s in pool '
                    '%(pool)s, and blocklisting it.',
                    {'owner': owner['owner'], 'name': name, 'pool': pool})
        image.lock_break(owner['mode'], owner['owner'])
    return [o['owner'] for o in held]


def clear_stale_names(rbd, ioctx, rados_error, names, ours):
    """Remove the ``rbd_id.<name>`` objects an interrupted rename left.

    librbd renames in steps (``RenameRequest``): it creates
    ``rbd_id.<new>`` exclusively, then renames the directory's entry,
    then removes ``rbd_id.<old>``.  A process killed between the first
    two leaves ``rbd_id.<new>`` behind though the directory does not
    list ``<new>``: every later rename to ``<new>``, and every create of
    it, fails as if an image had that name, and opening ``<new>`` opens
    the image all the same.  Killed between the last two, ``rbd_id.<old>``
    stays: opening ``<old>`` still opens the image the directory names
    otherwise.

    Of ``names``, each one's ``rbd_id`` object is removed when the
    directory does not list that name with the id it holds, and that id
    is one of ``ours`` or the id the directory lists under one of
    ``names`` (images of this one migration: its source, its copy);
    anything else is left alone.

    :param rados_error: the ``rados.Error`` class (object not found).
    :returns: the names cleared.
    """
    listed = _listed(rbd, ioctx)
    ids = set(filter(None, ours)) | {listed[n] for n in names
                                     if n in listed}
    cleared = []
    for name in filter(None, names):
        held = _id_named(ioctx, rados_error, name)
        if held is None or held not in ids or listed.get(name) == held:
            continue
        LOG.warning('Removing %(obj)s from pool %(pool)s: an interrupted '
                    'rename of image %(id)s left it (the directory lists '
                    '%(where)s).',
                    {'obj': ID_PREFIX + name, 'pool': ioctx.get_pool_name(),
                     'id': held, 'where': next(
                         ('that image as %s' % n for n, i in listed.items()
                          if i == held), 'no image of that id')})
        try:
            ioctx.remove_object(ID_PREFIX + name)
        except rados_error:
            pass
        cleared.append(name)
    return cleared


def rename(rbd, ioctx, rados_error, old, new):
    """Rename ``old`` to ``new`` as librbd does, and finish what an
    interrupted rename of this same image left (:func:`clear_stale_names`).

    Killed past its directory update, a rename is done but for
    ``rbd_id.<old>``, through which ``old`` still opens: that object
    goes, and nothing more is renamed.  Killed before, ``rbd_id.<new>``
    holding this image's id fails librbd's rename: it goes, and the
    rename is made again.  Used where a rename may have been
    interrupted (recovery, the generic copy's fence); never removes an
    object naming another image.

    :raises ImageNotFound: no image is named ``old`` or ``new``.
    :raises ImageExists: an image, or an ``rbd_id.<new>`` object not of
        this image, has the name ``new``.
    """
    listed = _listed(rbd, ioctx)
    if old not in listed and new in listed and _id_named(
            ioctx, rados_error, old) == listed[new]:
        clear_stale_names(rbd, ioctx, rados_error, [old], [listed[new]])
        return
    try:
        rbd.RBD().rename(ioctx, old, new)
    except rbd.ImageExists:
        if old not in listed or not clear_stale_names(
                rbd, ioctx, rados_error, [new], [listed[old]]):
            raise
        rbd.RBD().rename(ioctx, old, new)


def stray_name(rbd, ioctx, rados_error, name):
    """The id an ``rbd_id.<name>`` object holds that the directory does
    not list as ``name`` (an interrupted rename's leftover), or None."""
    held = _id_named(ioctx, rados_error, name)
    if held is None or _listed(rbd, ioctx).get(name) == held:
        return None
    return held


def remove(rbd, ioctx, name):
    """Remove an image and its snapshots; an image already gone is fine.

    Only for images this code created: it unprotects and deletes
    snapshots without asking.
    """
    _remove(rbd, ioctx, name, lambda point: None)


def _remove(rbd, ioctx, name, point):
    """Strip ``name`` of its snapshots, then remove it, telling ``point``
    each step (``engine.source.*``)."""
    try:
        with rbd.Image(ioctx, name) as image:
            for snap in list(image.list_snaps()):
                if image.is_protected_snap(snap['name']):
                    image.unprotect_snap(snap['name'])
                image.remove_snap(snap['name'])
                point('engine.source.snapshot_removed')
    except rbd.ImageNotFound:
        pass
    point('engine.source.stripped')
    reached = []

    def removing(done, total):
        # librbd's progress, once: killed here, the image is left
        # half-removed (listed, no longer opening by name).
        if not reached:
            reached.append(done)
            point('engine.source.removing')
        return 0

    try:
        rbd.RBD().remove(ioctx, name, on_progress=removing)
    except rbd.ImageNotFound:
        pass
    point('engine.source.removed')
