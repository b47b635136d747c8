"""The assisted copy methods: each moves an image to another pool."""

import errno
import queue
import uuid

from oslo_log import log as logging
from oslo_utils import units

from rbdmig.migration import copy as copy_engine
from rbdmig.migration import progress
from rbdmig.volume import rbd_io

LOG = logging.getLogger(__name__)

SNAP_PREFIX = 'rbdmig-migrate-'


def _create_args(rbd, image):
    """Return the create arguments that reproduce ``image``'s layout."""
    not_creatable = (rbd.RBD_FEATURE_OPERATIONS | rbd.RBD_FEATURE_MIGRATING |
                     rbd.RBD_FEATURE_NON_PRIMARY | rbd.RBD_FEATURE_DATA_POOL)
    features = image.features() & ~not_creatable
    args = {'features': features, 'order': image.stat()['order']}
    if features & rbd.RBD_FEATURE_STRIPINGV2:
        args.update(stripe_unit=image.stripe_unit(),
                    stripe_count=image.stripe_count())
    return args


class _Progress(object):
    """Adapts a Callback to librbd's ``on_progress(offset, total)``.

    librbd swallows exceptions raised in the callback, so a cancelling
    callback's exception is kept here, librbd is told to stop with
    -ECANCELED, and :meth:`reraise` raises it once librbd returns.
    """

    def __init__(self, callback):
        self.callback = callback
        self.error = None

    def __call__(self, offset, total):
        try:
            if self.callback.size != total:
                self.callback.set_size(total)
            self.callback.absolute_update(offset)
        except BaseException as err:
            self.error = err
            return -errno.ECANCELED
        return 0

    def reraise(self):
        if self.error is not None:
            raise self.error


def _run(call, callback, *args, **kwargs):
    """Run a librbd call taking ``on_progress``, honouring cancellation."""
    on_progress = _Progress(callback)
    try:
        call(*args, on_progress=on_progress, **kwargs)
    except BaseException:
        on_progress.reraise()
        raise
    on_progress.reraise()


def remove_image(rbd, ioctx, name, callback=progress.DEFAULT_CALLBACK):
    """Remove an image and its snapshots; an image already gone is fine."""
    try:
        with rbd.Image(ioctx, name) as image:
            for snap in list(image.list_snaps()):
                if image.is_protected_snap(snap['name']):
                    image.unprotect_snap(snap['name'])
                image.remove_snap(snap['name'])
    except rbd.ImageNotFound:
        return
    try:
        _run(rbd.RBD().remove, callback, ioctx, name)
    except rbd.ImageNotFound:
        pass


class CopyMethod(object):
    """``rbd.Image.copy``: a thin copy of the head, snapshots not kept."""

    name = 'copy'
    keeps_snapshots = False
    reports_progress = False
    # The method that moves a volume with snapshots instead; None refuses.
    snapshots_by = None

    def copy(self, rbd, src_ioctx, dst_ioctx, name, callback):
        """Create ``name`` in ``dst_ioctx`` with the source's data.

        On failure the partial destination is removed and the error
        re-raised; the source is never modified.
        """
        try:
            self._copy(rbd, src_ioctx, dst_ioctx, name, callback)
        except BaseException:
            self._remove_partial(rbd, dst_ioctx, name)
            raise

    def _copy(self, rbd, src_ioctx, dst_ioctx, name, callback):
        with rbd.Image(src_ioctx, name, read_only=True) as src:
            src.copy(dst_ioctx, name, **_create_args(rbd, src))

    def _remove_partial(self, rbd, dst_ioctx, name):
        try:
            remove_image(rbd, dst_ioctx, name)
        except Exception:
            LOG.exception('Could not remove the partial copy of %s; remove '
                          'it by hand (the source is intact).', name)

    def discard(self, rbd, src_ioctx, dst_ioctx, name):
        """Undo a completed :meth:`copy`; the source stays."""
        remove_image(rbd, dst_ioctx, name)

    def remove_source(self, rbd, src_ioctx, dst_ioctx, name, callback):
        """Remove the source once the destination is verified."""
        remove_image(rbd, src_ioctx, name, callback)


class DeepCopyMethod(CopyMethod):
    """``rbd.Image.deep_copy``: data, snapshots and parent link kept."""

    name = 'deep_copy'
    keeps_snapshots = True

    def _copy(self, rbd, src_ioctx, dst_ioctx, name, callback):
        with rbd.Image(src_ioctx, name, read_only=True) as src:
            src.deep_copy(dst_ioctx, name, **_create_args(rbd, src))


class CloneFlattenMethod(CopyMethod):
    """Snapshot, clone into the destination, flatten, drop the snapshot."""

    name = 'clone_flatten'
    reports_progress = True

    def _copy(self, rbd, src_ioctx, dst_ioctx, name, callback):
        snap = SNAP_PREFIX + uuid.uuid4().hex[:12]
        with rbd.Image(src_ioctx, name) as src:
            args = _create_args(rbd, src)
            args['features'] |= rbd.RBD_FEATURE_LAYERING
            src.create_snap(snap)
            try:
                src.protect_snap(snap)
                self._clone_and_flatten(rbd, src_ioctx, snap, dst_ioctx,
                                        name, args, callback)
            finally:
                self._drop_snapshot(src, snap)

    def _clone_and_flatten(self, rbd, src_ioctx, snap, dst_ioctx, name,
                           args, callback):
        rbd.RBD().clone(src_ioctx, name, snap, dst_ioctx, name, **args)
        try:
            with rbd.Image(dst_ioctx, name) as dst:
                _run(dst.flatten, callback)
        except BaseException:
            # The clone pins the snapshot: it must go first.
            self._remove_partial(rbd, dst_ioctx, name)
            raise

    def _drop_snapshot(self, src, snap):
        # A leftover snapshot never costs data, so a failure here is logged
        # rather than allowed to mask the copy's own outcome.
        try:
            if src.is_protected_snap(snap):
                src.unprotect_snap(snap)
            src.remove_snap(snap)
        except Exception:
            LOG.exception('Could not remove temporary snapshot %s of %s; '
                          'remove it by hand.', snap, src.get_name())


class LiveMethod(object):
    """RBD live migration: prepare, execute, then commit or abort.

    The source is only removed by ``migration_commit``, after the caller
    verified the destination; any failure before that aborts, which
    restores the source and removes the destination.
    """

    name = 'live'
    keeps_snapshots = True
    reports_progress = True
    snapshots_by = None

    def copy(self, rbd, src_ioctx, dst_ioctx, name, callback):
        with rbd.Image(src_ioctx, name, read_only=True) as src:
            args = _create_args(rbd, src)
        rbd.RBD().migration_prepare(src_ioctx, name, dst_ioctx, name, **args)
        try:
            _run(rbd.RBD().migration_execute, callback, dst_ioctx, name)
        except BaseException:
            self._abort(rbd, dst_ioctx, name)
            raise

    def _abort(self, rbd, dst_ioctx, name):
        try:
            rbd.RBD().migration_abort(dst_ioctx, name)
        except Exception:
            LOG.exception('Aborting the live migration of %s failed; run '
                          '"rbd migration abort" on it.', name)

    def discard(self, rbd, src_ioctx, dst_ioctx, name):
        rbd.RBD().migration_abort(dst_ioctx, name)

    def remove_source(self, rbd, src_ioctx, dst_ioctx, name, callback):
        _run(rbd.RBD().migration_commit, callback, dst_ioctx, name)


class ExtentsMethod(CopyMethod):
    """A host-driven copy with librbd async I/O, allocated extents only.

    The destination is created with the source's layout, the source's
    data extents are found with ``diff_iterate``, and chunks of them are
    read and written with ``aio_read``/``aio_write``, ``queue_depth``
    requests in flight.  All-zero chunks are not written (the destination
    is new, so it reads as zeros and stays thin).  Memory is bounded by
    ``queue_depth`` x ``chunk_size``.  Completion callbacks run on librbd's
    threads and only queue an event: every decision, and every progress
    update (so a callback may cancel by raising), happens in the calling
    thread.  It copies the head only: a volume with snapshots is moved by
    ``deep_copy`` instead, which keeps them.
    """

    name = 'extents'
    reports_progress = True
    snapshots_by = 'deep_copy'

    def __init__(self, queue_depth=16, chunk_size=4 * units.Mi):
        self.queue_depth = queue_depth
        self.chunk_size = chunk_size

    def configured(self, queue_depth, chunk_size):
        """Return a copy of this method with other settings."""
        return type(self)(queue_depth=queue_depth, chunk_size=chunk_size)

    def _copy(self, rbd, src_ioctx, dst_ioctx, name, callback):
        with rbd.Image(src_ioctx, name, read_only=True) as src:
            size = src.size()
            rbd.RBD().create(dst_ioctx, name, size, **_create_args(rbd, src))
            with rbd.Image(dst_ioctx, name) as dst:
                _AioPump(src, dst, self.queue_depth, self.chunk_size,
                         callback).run(rbd_io.image_extents(src, size))
                dst.flush()


class _AioPump(object):
    """Keeps up to ``depth`` chunks moving from ``src`` to ``dst``."""

    def __init__(self, src, dst, depth, chunk_size, callback):
        self.src, self.dst = src, dst
        self.depth, self.chunk_size = depth, chunk_size
        self.callback = callback
        self.events = queue.SimpleQueue()
        self.in_flight = 0
        self.zeros = bytes(chunk_size)

    def _chunks(self, extents):
        position = 0
        for offset, length in extents:
            end = offset + length
            while offset < end:
                n = min(self.chunk_size, end - offset)
                yield offset - position, offset, n
                position = offset = offset + n

    def run(self, extents):
        """Copy every extent; raise the first error once all are done."""
        try:
            for hole, offset, length in self._chunks(extents):
                while self.in_flight >= self.depth:
                    self._handle(self.events.get())
                if hole:
                    self.callback.relative_update(hole)
                self._read(offset, length)
            while self.in_flight:
                self._handle(self.events.get())
        except BaseException:
            # librbd still holds the images: wait for every request
            # before the caller may close them.  Each request in flight
            # sends exactly one more event; none is issued from here on.
            while self.in_flight:
                self.events.get()
                self._finish()
            raise

    def _read(self, offset, length):
        def done(completion, data):
            self.events.put(('read', offset, length,
                             completion.get_return_value(), data))

        self.in_flight += 1
        try:
            self.src.aio_read(offset, length, done)
        except BaseException:
            self.in_flight -= 1
            raise

    def _handle(self, event):
        kind, offset, length, ret = event[:4]
        if kind == 'read':
            data = event[4]
            if ret < 0 or data is None or len(data) != length:
                self._finish()
                raise OSError(-ret if ret < 0 else errno.EIO,
                              'reading %d bytes at offset %d of %s failed '
                              '(%d)' % (length, offset,
                                        self.src.get_name(), ret))
            # The read is done before anything that may raise (a
            # cancelling callback): in_flight must count only requests
            # that will still send an event.  Each write counts its own.
            self._finish()
            runs = copy_engine.nonzero_runs(data, self.zeros)
            skipped = length - sum(end - start for start, end in runs)
            if skipped:
                self.callback.relative_update(skipped)
            for start, end in runs:
                piece = data if (start, end) == (0, length) else (
                    data[start:end])
                self.in_flight += 1
                self._write(piece, offset + start)
            return
        self._finish()
        if ret < 0:
            raise OSError(-ret, 'writing %d bytes at offset %d of %s '
                                'failed (%d)' % (length, offset,
                                                 self.dst.get_name(), ret))
        self.callback.relative_update(length)

    def _write(self, data, offset):
        def done(completion):
            self.events.put(('write', offset, len(data),
                             completion.get_return_value()))

        try:
            self.dst.aio_write(data, offset, done)
        except BaseException:
            self._finish()
            raise

    def _finish(self):
        self.in_flight -= 1


METHODS = {m.name: m for m in (CopyMethod(), CloneFlattenMethod(),
                               DeepCopyMethod(), LiveMethod(),
                               ExtentsMethod())}


def method_for(configuration):
    """Return the method ``rbd_migration_method`` names, configured."""
    method = METHODS[configuration.rbd_migration_method]
    if isinstance(method, ExtentsMethod):
        method = method.configured(
            configuration.rbd_migration_queue_depth,
            configuration.rbd_migration_chunk_size)
    return method
