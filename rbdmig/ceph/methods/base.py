"""What a copy method is, and what the engine hands it."""

import dataclasses
import errno

from oslo_log import log as logging

from rbdmig.ceph import images

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Move:
    """One image to move: the same name, from one pool to another.

    :ivar rbd: the ``rbd`` module, native-threaded
        (:class:`rbdmig.native.Module`).
    :ivar src_ioctx: the source pool.
    :ivar dst_ioctx: the destination pool (maybe in another cluster).
    :ivar name: the image's name in both.
    :ivar size: the source's size in bytes.
    """

    rbd: object
    src_ioctx: object
    dst_ioctx: object
    name: str
    size: int


class Method(object):
    """A way to copy an image to another pool; subclasses do the copy.

    :meth:`copy` runs on the caller's thread, which may be a greenthread:
    short librbd calls go through ``move.rbd``'s native proxies, the long
    data move through :func:`rbdmig.native.run`, whose job reports bytes
    to ``relay.sink`` and never logs (under eventlet, logging's locks are
    green and must not be taken on a native thread).  On failure it
    leaves no destination behind and the source untouched.
    """

    name = None
    # Whether the destination keeps the source's snapshots.
    keeps_snapshots = False
    # The method that moves a volume with snapshots instead; None refuses.
    snapshots_by = None
    # Whether it can copy into another cluster (librados ioctx of another
    # client and cluster); methods built on clones or live migration
    # cannot.
    crosses_clusters = False

    def copy(self, move, relay):
        """Create ``move.name`` in the destination with the source's data.

        :param relay: a :class:`rbdmig.native.ProgressRelay`.
        """
        try:
            self._copy(move, relay)
        except move.rbd.ImageExists:
            raise  # another image took the name: never ours to remove
        except BaseException:
            self._remove_partial(move)
            raise

    def _copy(self, move, relay):
        raise NotImplementedError()

    def _remove_partial(self, move):
        try:
            images.remove(move.rbd, move.dst_ioctx, move.name)
        except Exception:
            LOG.exception('Could not remove the partial copy of %s; remove '
                          'it by hand (the source is intact).', move.name)

    def discard(self, move):
        """Undo a completed :meth:`copy`; the source stays."""
        images.remove(move.rbd, move.dst_ioctx, move.name)

    def remove_source(self, move):
        """Remove the source once the destination is verified."""
        images.remove(move.rbd, move.src_ioctx, move.name)


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
