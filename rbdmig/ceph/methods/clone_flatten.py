"""Method ``clone_flatten``: snapshot, clone, flatten, drop the snapshot."""

from oslo_log import log as logging

from rbdmig import native
from rbdmig.ceph import images
from rbdmig.ceph import journal
from rbdmig.ceph.methods import base

LOG = logging.getLogger(__name__)


class CloneFlattenMethod(base.Method):
    """Clone a temporary snapshot into the destination, then flatten.

    The snapshot is named after the migration
    (:func:`journal.snapshot_name`), so recovery finds it.  Progress
    comes from librbd's ``flatten``.  The snapshot is removed whatever
    happens; a failure to remove it costs no data and is logged.
    """

    name = 'clone_flatten'

    def _copy(self, move, relay):
        snap = journal.snapshot_name(move.migration_id)
        args = images.create_args(move.rbd, move.source)
        args['features'] |= move.rbd.RBD_FEATURE_LAYERING
        move.guard.create_snap(snap)
        try:
            move.guard.protect_snap(snap)
            self._clone_and_flatten(move, snap, args, relay)
        finally:
            drop_snapshot(move.guard, snap, move.name)

    def _clone_and_flatten(self, move, snap, args, relay):
        move.rbd.RBD().clone(move.src_ioctx, move.name, snap,
                             move.dst_ioctx, move.temp, **args)
        try:
            self.tag(move)
            with move.rbd.Image(move.dst_ioctx, move.temp) as dst:
                progress = base.ByteProgress(relay.sink, move.size)
                native.run(lambda: progress.run(dst.flatten), relay)
        except BaseException:
            # The clone pins the snapshot: it must go first.
            self._remove_partial(move)
            raise


def drop_snapshot(image, snap, name):
    """Remove a temporary snapshot; a failure is logged, not raised."""
    try:
        if image.is_protected_snap(snap):
            image.unprotect_snap(snap)
        image.remove_snap(snap)
    except Exception:
        LOG.exception('Could not remove temporary snapshot %s of %s; '
                      '"rbdmig recover" will.', snap, name)
