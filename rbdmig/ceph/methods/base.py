"""What a copy method is, and what the engine hands it."""

import dataclasses
import errno

from oslo_log import log as logging

from rbdmig.ceph import images
from rbdmig.ceph import journal
from rbdmig.migration import progress

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Move:
    """One image to move, from one pool to another, its name kept.

    :ivar rbd: the ``rbd`` module, native-threaded
        (:class:`rbdmig.native.Module`).
    :ivar src_ioctx: the source pool.
    :ivar dst_ioctx: the destination pool (maybe in another cluster).
    :ivar name: the image's name in both.
    :ivar temp: the name the copy is built under (:func:`journal.temp_name`;
        the name itself for ``live``).
    :ivar size: the source's size in bytes.
    :ivar migration_id: the journal's id of this migration.
    :ivar source: the source, open read-only: every read goes through it;
        None for ``live``, which opens its own.
    :ivar src_pool: the source pool's name.
    :ivar dst_pool: the destination pool's name.
    :ivar cluster: how :mod:`rbdmig.ext` reaches the source's cluster (an
        ``ext.ClusterSpec``), for the server-side copies.
    :ivar retired: the name the source is renamed to once the copy holds
        its name (:func:`journal.retired_name`), before it is removed.
    :ivar dst_cluster: how it reaches the destination's (the same cluster
        or another), for verification at the OSDs.
    :ivar guard: the source, open for writing and holding librbd's
        exclusive lock where the image has the feature, so that nobody
        else writes during the copy; snapshots are made through it.  (A
        copy made through the locking handle itself, of a clone, lost the
        parent's data in Ceph 16: reads go through ``source``.)
    """

    rbd: object
    src_ioctx: object
    dst_ioctx: object
    name: str
    temp: str
    size: int
    migration_id: str
    src_pool: str = None
    dst_pool: str = None
    cluster: object = None
    dst_cluster: object = None
    source: object = None
    guard: object = None
    retired: str = None


class Method(object):
    """A way to copy an image to another pool; subclasses do the copy.

    :meth:`copy` runs on the caller's thread, which may be a greenthread:
    short librbd calls go through ``move.rbd``'s native proxies, the long
    data move through :func:`rbdmig.native.run`, whose job reports bytes
    to ``relay.sink`` and never logs (under eventlet, logging's locks are
    green and must not be taken on a native thread).  It builds the copy
    under ``move.temp`` and tags it; on failure it removes what it built
    (only ever ``move.temp``) and leaves the source untouched.
    """

    name = None
    # Whether the destination keeps the source's snapshots.
    keeps_snapshots = False
    # Whether a clone stays a clone of its parent (else it is flattened).
    keeps_parent = False
    # The method that moves a volume with snapshots instead; None refuses.
    snapshots_by = None
    # Whether it can copy into another cluster.
    crosses_clusters = False
    # Whether it reads the source through ``move.source``.
    uses_source_handle = True

    def substitute(self, source):
        """``(method name, why)`` when another method must move ``source``.

        :param source: a :class:`rbdmig.ceph.checks.Source`.
        :returns: None when this method can.
        """
        return None

    def copy(self, move, relay):
        """Build ``move.temp`` in the destination with the source's data.

        :param relay: a :class:`rbdmig.native.ProgressRelay`.
        """
        try:
            self._copy(move, relay)
        except move.rbd.ImageExists:
            raise  # another image has the name: never ours to remove
        except BaseException as err:
            if not images.timed_out(err):  # else: more would time out
                self._remove_partial(move)
            raise

    def _copy(self, move, relay):
        raise NotImplementedError()

    def _remove_partial(self, move):
        try:
            images.remove(move.rbd, move.dst_ioctx, move.temp)
        except Exception:
            LOG.exception('Could not remove the partial copy %s; "rbdmig '
                          'recover" will (the source is intact).', move.temp)

    def tag(self, move, copy=None):
        """Mark the copy as this migration's (image metadata).

        :param copy: the copy, open already (saves opening it again).
        """
        if copy is not None:
            copy.metadata_set(journal.TAG, move.migration_id)
            return
        with move.rbd.Image(move.dst_ioctx, move.temp) as copy:
            copy.metadata_set(journal.TAG, move.migration_id)

    def discard(self, move):
        """Undo a completed :meth:`copy`; the source stays."""
        images.remove(move.rbd, move.dst_ioctx, move.temp)

    def place(self, move):
        """Give the verified copy its final name.

        :raises ImageExists: an image of that name appeared meanwhile.
        """
        move.rbd.RBD().rename(move.dst_ioctx, move.temp, move.name)

    def remove_source(self, move):
        """Remove the retired source (``move.retired``): its snapshots,
        then the image; one already gone is fine."""
        images.remove_retired(move.rbd, move.src_ioctx, move.retired)


def destination_data_pool(move):
    """The data pool librbd gives a new image of the destination pool.

    Its ``rbd_default_data_pool`` as the destination's connection sees it
    (its ceph.conf, then the pool's own config); None for none.  Copies
    librbd makes through ``move.dst_ioctx`` get it by themselves; one
    made by :mod:`rbdmig.ext` connects with the source's conf, and must
    be told.
    """
    for option in move.rbd.RBD().config_list(move.dst_ioctx):
        if option['name'] == 'rbd_default_data_pool':
            return option['value'] or None
    return None


class ScaledProgress(progress.Callback):
    """Reports counted in other units (objects) passed on as bytes."""

    def __init__(self, sink, size):
        super().__init__()
        self.sink = sink
        self.bytes = size
        sink.set_size(size)

    def call(self):
        if self.size:
            self.sink.absolute_update(self.bytes * self.value // self.size)


class ByteProgress(object):
    """librbd's ``on_progress(done, total)`` as bytes of ``size``.

    librbd counts objects for ``flatten`` and live migration; callbacks
    here always count bytes, so the count is scaled.  librbd swallows
    what the callback raises: a cancellation is kept, librbd is told to
    stop with -ECANCELED, and :meth:`reraise` raises it once librbd
    returns.
    """

    def __init__(self, sink, size):
        self.sink = sink
        self.size = size
        self.error = None
        sink.set_size(size)

    def __call__(self, done, total):
        try:
            self.sink.absolute_update(self.size * done // total if total
                                      else 0)
        except BaseException as err:  # noqa: BLE001 - re-raised later
            self.error = err
            return -errno.ECANCELED
        return 0

    def run(self, call, *args, **kwargs):
        """Run a librbd call taking ``on_progress``, honouring cancels."""
        try:
            call(*args, on_progress=self, **kwargs)
        except BaseException:
            self.reraise()
            raise
        self.reraise()

    def reraise(self):
        if self.error is not None:
            raise self.error
