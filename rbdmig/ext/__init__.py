"""Server-side copies and checksums (OSD ops, librbd) in compiled code."""

import array
import dataclasses
import importlib
import os
import typing

from oslo_utils import strutils

from rbdmig import exception
from rbdmig.migration import progress

DISABLE_ENV = 'RBDMIG_DISABLE_OFFLOAD'
MAX_QUEUE_DEPTH = 1024
_EXTENSION = 'rbdmig.ext._offload'
_MIN_ORDER, _MAX_ORDER = 12, 25  # librbd's object sizes: 4 KiB to 32 MiB


class OffloadUnavailable(exception.RbdmigError):
    message = 'Server-side copy is unavailable: %(reason)s'


def _extension():
    """Return ``(module, None)``, or ``(None, why it cannot be used)``."""
    disabled = os.environ.get(DISABLE_ENV, '')
    if strutils.bool_from_string(disabled):
        return None, f'disabled by {DISABLE_ENV}={disabled}'
    try:
        return importlib.import_module(_EXTENSION), None
    except ImportError as e:
        return None, f'the {_EXTENSION} extension was not built: {e}'


def available():
    """Whether the compiled extension can be used in this process.

    False when ``RBDMIG_DISABLE_OFFLOAD`` is true (``1``, ``true``, ...),
    or when the extension was not built (no g++ or Ceph's headers at
    install time) or cannot load.  Read afresh at every call.
    """
    return _extension()[0] is not None


def unavailable_reason():
    """Why :func:`available` is False, as one sentence; None if it is not."""
    return _extension()[1]


def _require():
    module, reason = _extension()
    if module is None:
        raise OffloadUnavailable(reason=reason)
    return module


def _check_str(name, value, empty=False, none=False):
    if value is None and none:
        return
    if not isinstance(value, str):
        raise TypeError(f'{name} must be a str, not '
                        f'{type(value).__name__}.')
    if not value and not empty:
        raise ValueError(f'{name} must not be empty.')


def _check_int(name, value, low, high=None, none=False):
    if value is None and none:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f'{name} must be an int, not '
                        f'{type(value).__name__}.')
    if value < low or (high is not None and value > high):
        bound = f'at least {low}' if high is None else (
            f'between {low} and {high}')
        raise ValueError(f'{name} must be {bound}, not {value}.')


def _check_pool(name, value):
    """A pool is named (str) or numbered (int: ``Image.data_pool_id()``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        _check_int(name, value, 0, 2 ** 63 - 1)
    else:
        _check_str(name, value)


def _check_cluster(cluster):
    if not isinstance(cluster, ClusterSpec):
        raise TypeError('cluster must be a ClusterSpec, not '
                        f'{type(cluster).__name__}.')


def _check_callback(callback):
    if not isinstance(callback, progress.Callback):
        raise TypeError('callback must be an rbdmig.migration.progress.'
                        f'Callback, not {type(callback).__name__}.')


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """How the extension connects: it opens a librados connection of its own.

    Each call connects, works and shuts its connection down; nothing is
    shared with the caller's ``rados.Rados``.

    :param conf_path: the ceph.conf to read (monitors, auth); None reads
        librados' default search path (``$CEPH_CONF``, /etc/ceph/...).
    :param cluster_name: the cluster's name (``ceph``), as in cinder's
        ``rbd_cluster_name``.
    :param user: the client's id without ``client.``, as in cinder's
        ``rbd_user`` (``cinder``; ``admin`` by default).
    :param keyring_path: the keyring holding the user's key; None uses
        the one the conf names or librados' default locations.
    :param client_mount_timeout: whole seconds connecting may take before
        ETIMEDOUT; 0 keeps librados' default (300).
    :param rados_mon_op_timeout: whole seconds a monitor command may take;
        0 keeps librados' default (no limit).
    :param rados_osd_op_timeout: whole seconds an OSD op may take before it
        fails with ETIMEDOUT; 0 keeps librados' default (no limit).
    :raises TypeError, ValueError: for a wrong argument.
    """

    conf_path: str | None
    cluster_name: str = 'ceph'
    user: str = 'admin'
    keyring_path: str | None = None
    client_mount_timeout: int = 0
    rados_mon_op_timeout: int = 0
    rados_osd_op_timeout: int = 0

    def __post_init__(self):
        _check_str('conf_path', self.conf_path, none=True)
        _check_str('cluster_name', self.cluster_name)
        _check_str('user', self.user)
        if self.user.startswith('client.'):
            raise ValueError("user must be the client's id without "
                             f"'client.', not {self.user!r}.")
        _check_str('keyring_path', self.keyring_path, none=True)
        for name in ('client_mount_timeout', 'rados_mon_op_timeout',
                     'rados_osd_op_timeout'):
            _check_int(name, getattr(self, name), 0, 2 ** 31 - 1)

    def _args(self):
        return (self.conf_path, self.cluster_name, self.user,
                self.keyring_path, self.client_mount_timeout,
                self.rados_mon_op_timeout, self.rados_osd_op_timeout)


class ObjectCopyResult(typing.NamedTuple):
    """What :func:`copy_objects` did, in objects."""

    copied: int  # destination objects written
    skipped: int  # source objects that did not exist
    missing: tuple = ()  # their numbers, in ascending order
    through_host: int = 0  # of those copied, the ones read and written here
    host_bytes: int = 0  # the bytes of data they held
    punched: int = 0  # of those copied whole, the ones whose holes were zeroed
    punched_bytes: int = 0  # the bytes of those holes


def _reporter(callback):
    """Adapt a progress.Callback to the extension's ``fn(done, total)``."""

    def report(done, total):
        if callback.size != total:
            callback.set_size(total)
        callback.absolute_update(done)

    return report


def _object_numbers(objects):
    """``objects`` as an array of uint64 for the extension."""
    if isinstance(objects, (int, str, bytes)):
        raise TypeError('objects must be an iterable of object numbers, '
                        f'not {type(objects).__name__}.')
    try:
        numbers = array.array('Q', objects)
    except TypeError:
        raise TypeError('objects must hold ints (object numbers).') from None
    except OverflowError:
        raise ValueError('objects must hold object numbers between 0 and '
                         f'{2 ** 64 - 1}.') from None
    return numbers


def copy_objects(cluster, src_pool, src_prefix, dst_pool, dst_prefix,
                 objects, *, queue_depth=16, src_namespace='',
                 dst_namespace='', object_size=None, through_host_below=0,
                 keep_holes=False, callback=progress.DEFAULT_CALLBACK):
    """Copy RADOS objects between pools inside the OSDs (``copy_from``).

    For each ``index`` in ``objects``, object
    ``'%s.%016x' % (src_prefix, index)`` of ``src_pool`` replaces object
    ``'%s.%016x' % (dst_prefix, index)`` of ``dst_pool`` (data, xattrs and
    omap; the head only, never the source's snapshots) with one
    ``copy_from`` op: the destination's OSD reads the source from its OSD
    and no data passes through this host.  A source object that does not
    exist is skipped, the destination object left as it is: a thin RBD
    image stays thin.  Only the objects listed cost an op: pass those
    that exist (:func:`rbdmig.ceph.data_objects.existing`).

    For an RBD image, the prefixes are both images' ``block_name_prefix``
    and the numbers below the source's ``stat()['num_objs']`` (it
    accounts for STRIPINGV2); the destination image must already exist
    with the same size, order, stripe unit and stripe count, so that an
    object holds the same bytes in both.  Its object map, if enabled,
    does not know about the copied objects: mark them
    (:func:`rbdmig.ceph.data_objects.mark_existing`) before reading it.

    ``copy_from`` copies an object whole: a hole inside it is read as
    zeros and written, so it costs what data would, and the copy takes
    room for it (bluestore stores the zeros).  With
    ``through_host_below`` or ``keep_holes``, the extension first asks
    each object's extents (``mapext``: its OSD answers from allocation
    metadata, no data is read; up to 8 threads of the extension's own, a
    bounded way ahead of the copies), and an object holding fewer bytes
    of data than ``through_host_below`` is copied through this host
    instead, its data only, as librbd's own copies do: one read op
    (``stat`` and ``sparse_read``), then one write op writing each extent
    where it was and giving the object the source's size; holes stay
    holes.  Xattrs and omap are not carried
    that way (RBD data objects have none).  With ``keep_holes``, an
    object copied whole whose extents leave holes below its last byte of
    data has its ``copy_from`` op zero each hole after the copy, in the
    same op: no byte changes, and its OSD frees the room the zeros took,
    so the copy takes the room the source does (past the last byte of
    data, up to an object's size, a hole stays written: librbd's writes
    never leave one there).  An object whose OSD does not say its
    extents (``mapext`` fails: EOPNOTSUPP on an erasure-coded pool) is
    copied whole, holes and all.

    Blocks the calling thread until every op has completed; the GIL is
    released meanwhile, so other Python threads run.  At most
    ``queue_depth`` ops are in flight; memory use does not depend on the
    object size, except for objects copied through this host: up to
    ``queue_depth`` of them are held at once.

    :param cluster: a :class:`ClusterSpec`: the extension connects with it.
    :param src_pool, dst_pool: pool names, or ids (ints: an image's data
        pool is known by its ``data_pool_id()``); the same pool is
        allowed.
    :param src_prefix, dst_prefix: the object names before ``.%016x``.
    :param objects: an iterable of object numbers (ints, 0 to 2**64 - 1),
        copied in that order; a ``range`` copies every number in it.
    :param queue_depth: ops in flight, 1 to :data:`MAX_QUEUE_DEPTH`.
    :param src_namespace, dst_namespace: RADOS namespaces ('' is none).
    :param object_size: the objects' size in bytes (an RBD image's
        ``1 << order``): what is asked and read of each; needed with
        ``through_host_below``.
    :param through_host_below: bytes of data (1 to ``object_size``) under
        which an object is copied through this host; 0 (the default)
        copies every object by ``copy_from``, nothing crossing this host.
    :param keep_holes: zero the holes of the objects copied whole (needs
        ``object_size``); off by default, every ``copy_from`` writing its
        object's holes as zeros.
    :param callback: a :class:`rbdmig.migration.progress.Callback`,
        counting objects: ``set_size(len(objects))`` first, then
        ``absolute_update(done)`` with the objects copied or skipped so
        far, from the calling thread, at most every 0.1 s and once at the
        end (``done == len(objects)`` after a success; tests that must
        cancel at a known point make it each change of ``done``, with
        ``_offload.set_report_interval(0)``).  Raising from it
        cancels the copy: no new op is issued, the ops in flight are
        waited for, and its exception propagates (objects already copied
        stay).  Ctrl-C (a signal handler raising) cancels the same way.
    :returns: an :class:`ObjectCopyResult`, naming the numbers skipped
        and counting the objects and bytes copied through this host, and
        the objects and bytes of holes zeroed.
    :raises TypeError, ValueError: for a wrong argument, before any I/O.
    :raises OffloadUnavailable: if :func:`available` is False.
    :raises OSError: with the errno, if connecting (ETIMEDOUT past
        ``client_mount_timeout``) or opening a pool (ENOENT) fails, or an
        op fails for another reason than a missing source: the message
        names both objects, and the copy stops as for a cancellation
        first.  A destination pool over its quota fails at once with
        EDQUOT (a full cluster with ENOSPC) instead of waiting for space;
        an op taking longer than ``rados_osd_op_timeout`` fails with
        ETIMEDOUT.
    """
    _check_cluster(cluster)
    _check_pool('src_pool', src_pool)
    _check_pool('dst_pool', dst_pool)
    _check_str('src_prefix', src_prefix)
    _check_str('dst_prefix', dst_prefix)
    _check_str('src_namespace', src_namespace, empty=True)
    _check_str('dst_namespace', dst_namespace, empty=True)
    numbers = _object_numbers(objects)
    _check_int('queue_depth', queue_depth, 1, MAX_QUEUE_DEPTH)
    _check_int('object_size', object_size, 1 << _MIN_ORDER,
               1 << _MAX_ORDER, none=not (through_host_below or keep_holes))
    _check_int('through_host_below', through_host_below, 0,
               object_size or 0)
    if not isinstance(keep_holes, bool):
        raise TypeError('keep_holes must be a bool, not '
                        f'{type(keep_holes).__name__}.')
    _check_callback(callback)
    module = _require()
    callback.set_size(len(numbers))
    (copied, skipped, missing, through_host, host_bytes, punched,
     punched_bytes) = module.copy_objects(
        cluster._args(), src_pool, src_namespace, src_prefix, dst_pool,
        dst_namespace, dst_prefix, numbers, queue_depth, object_size or 0,
        through_host_below, keep_holes, _reporter(callback))
    return ObjectCopyResult(copied, skipped, tuple(sorted(missing)),
                            through_host, host_bytes, punched, punched_bytes)


def object_numbers(cluster, pool, prefix, *, namespace=''):
    """The numbers of the objects ``'%s.%016x' % (prefix, n)`` in a pool.

    Lists the pool (one namespace) at its OSDs, with the GIL released:
    the cost follows the number of objects in the pool, whichever image
    they belong to, not the image's size (an image's valid object map is
    cheaper to ask).  Ctrl-C (a signal handler raising) stops it.

    :param cluster: a :class:`ClusterSpec`: the extension connects with it.
    :param pool: a pool name, or id (an image's ``data_pool_id()``).
    :param prefix: the object names before ``.%016x`` (an image's
        ``block_name_prefix``); other names are left out.
    :param namespace: a RADOS namespace ('' is none).
    :returns: the numbers, in ascending order.
    :raises TypeError, ValueError: for a wrong argument, before any I/O.
    :raises OffloadUnavailable: if :func:`available` is False.
    :raises OSError: with the errno, if connecting, opening the pool
        (ENOENT) or listing it fails.
    """
    _check_cluster(cluster)
    _check_pool('pool', pool)
    _check_str('prefix', prefix)
    _check_str('namespace', namespace, empty=True)
    return _require().object_numbers(cluster._args(), pool, namespace,
                                     prefix)


class ObjectChecksum(typing.NamedTuple):
    """One object as its OSD hashed it (:func:`object_checksums`)."""

    size: int  # bytes; the object reads as zeros beyond
    xxhash64: int  # XXH64, seed 0, of its ``size`` bytes


def object_checksums(cluster, pool, prefix, objects, *, queue_depth=16,
                     namespace='', callback=progress.DEFAULT_CALLBACK):
    """Have each OSD hash its own objects: no data crosses this host.

    For each ``index`` in ``objects``, object
    ``'%s.%016x' % (prefix, index)`` of ``pool`` gets one read op of a
    ``stat`` and a ``checksum`` (``LIBRADOS_CHECKSUM_TYPE_XXHASH64`` of
    the whole object), ``queue_depth`` in flight; only the answers come
    back.  For an RBD image, the prefix is its ``block_name_prefix``, the
    pool the one its data objects live in (``data_pool_id()``) and the
    numbers those of the objects that may exist: every one below its
    ``stat()['num_objs']``, or, cheaper on a thin image, those its object
    map names (:func:`rbdmig.ceph.data_objects.existing`).

    Blocks the calling thread with the GIL released, reports and cancels
    as :func:`copy_objects` does (the callback counts objects).

    :param objects: an iterable of object numbers (ints, 0 to
        2**64 - 1); a ``range`` hashes every number in it.
    :returns: a list with, per number in ``objects`` (in that order),
        None where the object does not exist or is empty (it reads as
        zeros), else an :class:`ObjectChecksum`.
    :raises TypeError, ValueError: for a wrong argument, before any I/O.
    :raises OffloadUnavailable: if :func:`available` is False.
    :raises OSError: with the errno, if connecting or opening the pool
        fails, or an op fails for another reason than a missing object
        (the message names it).
    """
    _check_cluster(cluster)
    _check_pool('pool', pool)
    _check_str('prefix', prefix)
    _check_str('namespace', namespace, empty=True)
    numbers = _object_numbers(objects)
    _check_int('queue_depth', queue_depth, 1, MAX_QUEUE_DEPTH)
    _check_callback(callback)
    module = _require()
    callback.set_size(len(numbers))
    found = module.object_checksums(cluster._args(), pool, namespace, prefix,
                                    numbers, queue_depth,
                                    _reporter(callback))
    return [None if item is None else ObjectChecksum(*item)
            for item in found]


def xxhash64(data):
    """XXH64 (seed 0) of ``data``, as :func:`object_checksums` has it.

    :raises OffloadUnavailable: if :func:`available` is False.
    """
    return _require().xxhash64(data, 0)


def _copy_image(deep, cluster, src_pool, src_name, dst_pool, dst_name,
                src_snapshot, src_namespace, dst_namespace, features, order,
                stripe_unit, stripe_count, data_pool, sparse_size, callback):
    _check_cluster(cluster)
    for name, value in (('src_pool', src_pool), ('src_name', src_name),
                        ('dst_pool', dst_pool), ('dst_name', dst_name)):
        _check_str(name, value)
    _check_str('src_snapshot', src_snapshot, none=True)
    _check_str('src_namespace', src_namespace, empty=True)
    _check_str('dst_namespace', dst_namespace, empty=True)
    _check_int('features', features, 0, 2 ** 64 - 1, none=True)
    _check_int('order', order, _MIN_ORDER, _MAX_ORDER, none=True)
    _check_int('stripe_unit', stripe_unit, 1, 2 ** 64 - 1, none=True)
    _check_int('stripe_count', stripe_count, 1, 2 ** 64 - 1, none=True)
    _check_str('data_pool', data_pool, none=True)
    _check_int('sparse_size', sparse_size, 0, 2 ** 64 - 1)
    _check_callback(callback)
    module = _require()
    module.copy_image(cluster._args(), src_pool, src_namespace, src_name,
                      src_snapshot or '', dst_pool, dst_namespace, dst_name,
                      features, order, stripe_unit, stripe_count, data_pool,
                      sparse_size, deep, _reporter(callback))


def copy_image(cluster, src_pool, src_name, dst_pool, dst_name, *,
               src_snapshot=None, src_namespace='', dst_namespace='',
               features=None, order=None, stripe_unit=None,
               stripe_count=None, data_pool=None, sparse_size=4096,
               callback=progress.DEFAULT_CALLBACK):
    """Copy an image's data into a new image: librbd's copy.

    ``rbd_copy_with_progress4``, as ``rbd.Image.copy`` and ``rbd cp`` use:
    the destination gets the data of the head (or of ``src_snapshot``),
    no snapshots.  The extension connects with ``cluster``, opens
    ``src_pool/src_name`` read-only and has librbd create
    ``dst_pool/dst_name`` (which must not exist) and copy into it, on a
    native thread of its own.  The calling thread blocks until librbd is
    done, with the GIL released, waking every 0.1 s to report progress.

    :param cluster: a :class:`ClusterSpec`: the extension connects with it.
    :param src_snapshot: a snapshot of the source to copy from; None for
        the head.
    :param src_namespace, dst_namespace: RADOS namespaces ('' is none).
    :param features, order, stripe_unit, stripe_count, data_pool: the
        destination's image options; None takes the source's value
        (librbd's rule).  ``features`` are RBD_FEATURE_* bits, ``order``
        gives objects of 2**order bytes (12 to 25), ``stripe_unit`` is in
        bytes, ``data_pool`` names a pool for the data objects.
    :param sparse_size: librbd's, in bytes: with N (4096 by default, as
        ``rbd cp``) librbd does not write runs of N zero bytes it reads;
        with 0 (as ``rbd.Image.copy``) it writes what it reads without
        looking for zeros, which can allocate a whole object for a few
        bytes of data.
    :param callback: a :class:`rbdmig.migration.progress.Callback` fed
        librbd's numbers in bytes (the offset librbd has issued reads up
        to, of the image size), from the calling thread, when they
        changed, at most every 0.1 s and once at the end
        (``value == size``).  Raising from it cancels the copy: librbd
        (Pacific) ignores its progress callback's -ECANCELED, so the
        extension blocklists its own private connection (the
        ``osd blocklist`` mon command, which Ceph's ``profile rbd``
        allows), librbd's next op fails and librbd returns within about a
        second; the extension removes the blocklist entry and the
        exception propagates.  Without that permission the copy runs to
        its end first.  Ctrl-C cancels the same way.
    :returns: None.
    :raises TypeError, ValueError: for a wrong argument, before any I/O.
    :raises OffloadUnavailable: if :func:`available` is False.
    :raises OSError: with the errno and a message naming what failed:
        connecting (ETIMEDOUT past ``client_mount_timeout``), opening a
        pool or the source (ENOENT), or librbd's copy (EEXIST for an
        existing destination, ETIMEDOUT past ``rados_osd_op_timeout``).

    After a failure or a cancellation the destination may exist, partly
    written and holding an exclusive lock of the extension's dead
    connection; the caller removes it (librbd breaks that lock, which
    blocklists the dead connection's address again, harmlessly).
    """
    _copy_image(False, cluster, src_pool, src_name, dst_pool, dst_name,
                src_snapshot, src_namespace, dst_namespace, features, order,
                stripe_unit, stripe_count, data_pool, sparse_size, callback)


def deep_copy_image(cluster, src_pool, src_name, dst_pool, dst_name, *,
                    src_snapshot=None, src_namespace='', dst_namespace='',
                    features=None, order=None, stripe_unit=None,
                    stripe_count=None, data_pool=None,
                    callback=progress.DEFAULT_CALLBACK):
    """Copy an image with its snapshots into a new image: librbd's deep copy.

    ``rbd_deep_copy_with_progress``, as ``rbd.Image.deep_copy`` and
    ``rbd deep cp`` use: the destination gets every snapshot of the
    source (up to ``src_snapshot`` if given) and its head.  Arguments,
    threads, cancellation, errors and what a failure leaves behind are as
    for :func:`copy_image`, except that there is no ``sparse_size``, the
    callback counts objects (those copied, of those to copy), and a
    destination left behind may have snapshots to remove before it.
    """
    _copy_image(True, cluster, src_pool, src_name, dst_pool, dst_name,
                src_snapshot, src_namespace, dst_namespace, features, order,
                stripe_unit, stripe_count, data_pool, 0, callback)
