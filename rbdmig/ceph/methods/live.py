"""Method ``live``: RBD live migration, prepare, execute, commit."""

from oslo_log import log as logging

from rbdmig import native
from rbdmig.ceph import images
from rbdmig.ceph.methods import base

LOG = logging.getLogger(__name__)


class LiveMethod(base.Method):
    """RBD live migration: prepare, execute, then commit or abort.

    librbd links the target (under the final name: there is no temporary
    one) to the source, which it moves to the trash; ``migration_commit``
    removes the source, after the caller verified the target; any failure
    before that aborts, which restores the source and removes the target.
    Progress comes from librbd's ``migration_execute``.
    """

    name = 'live'
    keeps_snapshots = True
    keeps_parent = True
    uses_source_handle = False

    def copy(self, move, relay):
        rbd = move.rbd
        with rbd.Image(move.src_ioctx, move.name, read_only=True) as src:
            args = images.create_args(rbd, src)
        rbd.RBD().migration_prepare(move.src_ioctx, move.name,
                                    move.dst_ioctx, move.temp, **args)
        try:
            progress = base.ByteProgress(relay.sink, move.size)
            native.run(lambda: progress.run(rbd.RBD().migration_execute,
                                            move.dst_ioctx, move.temp),
                       relay)
        except BaseException:
            self._abort(move)
            raise

    def _abort(self, move):
        try:
            move.rbd.RBD().migration_abort(move.dst_ioctx, move.temp)
        except Exception:
            LOG.exception('Aborting the live migration of %s failed; '
                          '"rbdmig recover" will.', move.name)

    def tag(self, move, copy=None):
        """Nothing to tag: librbd's migration state names the target."""

    def discard(self, move):
        """Abort the migration; one already aborted is fine."""
        try:
            move.rbd.RBD().migration_abort(move.dst_ioctx, move.temp)
        except (move.rbd.ImageNotFound, move.rbd.InvalidArgument):
            pass  # no migration of it in progress

    def place(self, move):
        """The target has its final name already."""

    def remove_source(self, move):
        move.rbd.RBD().migration_commit(move.dst_ioctx, move.temp)
