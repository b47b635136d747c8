"""Method ``clone_flatten``: snapshot, clone, flatten, drop the snapshot."""

import uuid

from oslo_log import log as logging

from rbdmig import native
from rbdmig.ceph import images
from rbdmig.ceph.methods import base

LOG = logging.getLogger(__name__)

SNAP_PREFIX = 'rbdmig-migrate-'


class CloneFlattenMethod(base.Method):
    """Clone a temporary snapshot into the destination, then flatten.

    Progress comes from librbd's ``flatten``.  The snapshot is removed
    whatever happens; a failure to remove it costs no data and is logged.
    """

    name = 'clone_flatten'

    def _copy(self, move, relay):
        snap = SNAP_PREFIX + uuid.uuid4().hex[:12]
        with move.rbd.Image(move.src_ioctx, move.name) as src:
            args = images.create_args(move.rbd, src)
            args['features'] |= move.rbd.RBD_FEATURE_LAYERING
            src.create_snap(snap)
            try:
                src.protect_snap(snap)
                self._clone_and_flatten(move, snap, args, relay)
            finally:
                self._drop_snapshot(src, snap, move.name)

    def _clone_and_flatten(self, move, snap, args, relay):
        move.rbd.RBD().clone(move.src_ioctx, move.name, snap,
                             move.dst_ioctx, move.name, **args)
        try:
            with move.rbd.Image(move.dst_ioctx, move.name) as dst:
                progress = base.ByteProgress(relay.sink, move.size)
                native.run(lambda: progress.run(dst.flatten), relay)
        except BaseException:
            # The clone pins the snapshot: it must go first.
            self._remove_partial(move)
            raise

    def _drop_snapshot(self, src, snap, name):
        try:
            if src.is_protected_snap(snap):
                src.unprotect_snap(snap)
            src.remove_snap(snap)
        except Exception:
            LOG.exception('Could not remove temporary snapshot %s of %s; '
                          'remove it by hand.', snap, name)
