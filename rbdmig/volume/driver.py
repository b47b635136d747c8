"""VolumeDriver: the lifecycle cinder-volume calls on every backend."""

import contextlib
import threading

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import strutils
from oslo_utils import units

from rbdmig import exception
from rbdmig.migration import copy as copy_engine
from rbdmig.migration import progress
from rbdmig.volume import configuration as config

LOG = logging.getLogger(__name__)

volume_opts = [
    cfg.StrOpt('volume_backend_name',
               help='The name under which the scheduler sees this backend; '
                    'volume types select it with ``volume_backend_name``.'),
    cfg.IntOpt('reserved_percentage',
               default=0, min=0, max=100,
               help='The percentage of backend capacity that is reserved '
                    'and not offered to new volumes.'),
    cfg.IntOpt('volume_copy_bps_limit',
               default=0, min=0,
               help='The upper limit, in bytes per second, of host-driven '
                    'volume copies (``copy_volume_data``); 0 means '
                    'unlimited.'),
    cfg.IntOpt('volume_copy_chunk_size',
               default=4 * units.Mi, min=4 * units.Ki,
               help='The size in bytes of each read and write of a '
                    'host-driven volume copy.  Memory use of a copy is '
                    '``volume_copy_queue_depth`` chunks, whatever the '
                    'volume size.'),
    cfg.IntOpt('volume_copy_queue_depth',
               default=4, min=1, max=256,
               help='The number of chunks a host-driven volume copy keeps '
                    'in flight, on as many threads; 1 copies one chunk at '
                    'a time.  Memory use of a copy is this times '
                    '``volume_copy_chunk_size``.'),
    *progress.PROGRESS_OPTS,
    cfg.StrOpt('filter_function',
               help='A scheduler filter function for this backend, as in '
                    'cinder.'),
    cfg.StrOpt('goodness_function',
               help='A scheduler goodness function for this backend, as in '
                    'cinder.'),
]


class VolumeDriver(object):
    """Base class of rbdmig's drivers.

    Implements everything cinder-volume touches at start-up, with safe
    defaults, plus the generic, host-driven :meth:`copy_volume_data`.
    Subclasses provide the volume lifecycle, :meth:`open_volume` and
    :meth:`close_volume`, and may offer an assisted :meth:`migrate_volume`.
    """

    VERSION = '1.0.0'
    SUPPORTED = True
    # The driver's own options, registered in its backend group.
    OPTS = []
    # True when a volume this driver has just created reads as zeros
    # everywhere, so that a copy onto it may leave zeros unwritten.
    # False is always safe: the copy then zeroes them (deallocating where
    # the destination can, else writing them).
    CREATES_ZEROED_VOLUMES = False
    # True when :meth:`rename_volume` works: the generic copy renames its
    # source out of clients' reach before its last check and removal,
    # and refuses a source whose driver cannot.
    RENAMES_VOLUMES = False

    def __init__(self, *args, **kwargs):
        # cinder-volume passes configuration, host, cluster_name,
        # is_vol_db_empty and active_backend_id; others are ignored.
        self.configuration = kwargs.get('configuration')
        if self.configuration is None:
            self.configuration = config.Configuration(volume_opts)
        else:
            self.configuration.append_config_values(volume_opts)
        if self.OPTS:
            self.configuration.append_config_values(self.OPTS)
        self.host = kwargs.get('host')
        self.cluster_name = kwargs.get('cluster_name')
        self.active_backend_id = kwargs.get('active_backend_id')
        self.capabilities = {}
        self._stats = {}
        self._stats_lock = threading.RLock()
        self._initialized = False
        self._throttle = None

    # -- start-up, in the order cinder-volume calls it ---------------------

    @property
    def supported(self):
        return self.SUPPORTED

    def get_version(self):
        return self.VERSION

    @classmethod
    def get_driver_options(cls):
        """Return every option this driver reads (cinder's checklist)."""
        return list(volume_opts) + list(cls.OPTS)

    def do_setup(self, context):
        """Prepare the driver: check its options; connects nothing.

        Subclasses call this first.
        """
        self.check_options()

    def check_options(self):
        """Read every option this driver reads, now, to check its value.

        oslo.config checks a value from a file only when it is read: a
        bad one would otherwise surface in the middle of a migration, as
        oslo's own error.

        :raises InvalidConfiguration: one sentence naming the first option
            whose value is invalid, and why.
        """
        for opt in self.get_driver_options():
            try:
                getattr(self.configuration, opt.name)
            except (cfg.Error, ValueError) as err:
                # oslo says "Value for option X from <where> is not valid:
                # <why>"; the why is what the operator needs.  (Every
                # option here is registered: NoSuchOptError means a
                # ``$name`` in the value naming no option.)
                why = str(err).rpartition('is not valid: ')[2].strip()
                raise exception.InvalidConfiguration(
                    reason='option %s of [%s] is invalid: %s.' % (
                        opt.name, self.configuration.config_group,
                        strutils.mask_password(why.rstrip('.'))))

    def check_for_setup_error(self):
        """Raise InvalidConfiguration if the backend cannot work."""

    def init_capabilities(self):
        """Fetch stats once and keep them as the driver's capabilities."""
        stats = self.get_volume_stats(refresh=True)
        self.capabilities = dict(stats or {})
        return self.capabilities

    def update_provider_info(self, volumes, snapshots):
        """Return ``(volume_updates, snapshot_updates)``; none by default."""
        return None, None

    def set_throttle(self):
        self._throttle = self.configuration.safe_get('volume_copy_bps_limit')

    def set_initialized(self):
        self._initialized = True

    @property
    def initialized(self):
        return self._initialized

    def get_volume_stats(self, refresh=False):
        """Return the backend's stats, refreshing them first if asked.

        Never half built: a drain's threads refresh and read one
        destination's stats at once, and a move that read them before
        ``location_info`` was added fell back to the generic copy.  A
        refresh builds a new dict under the lock, so one returned is
        complete and never changed after.
        """
        with self._stats_lock:
            if refresh or not self._stats:
                self._update_volume_stats()
            return self._stats

    def _update_volume_stats(self):
        self._stats = {
            'volume_backend_name': self._backend_name(),
            'vendor_name': 'rbdmig',
            'driver_version': self.VERSION,
            'storage_protocol': 'unknown',
            'total_capacity_gb': 'unknown',
            'free_capacity_gb': 'unknown',
            # copy_volume_data reports progress, whatever the backend.
            'migration_progress_report': True,
            'reserved_percentage': self.configuration.safe_get(
                'reserved_percentage') or 0,
        }

    def _backend_name(self):
        return (self.configuration.safe_get('volume_backend_name') or
                self.__class__.__name__)

    def get_filter_function(self):
        return self.configuration.safe_get('filter_function')

    def get_goodness_function(self):
        return self.configuration.safe_get('goodness_function')

    # -- export and connection (no-ops unless a backend needs them) --------

    def ensure_export(self, context, volume):
        pass

    def create_export(self, context, volume, connector):
        return None

    def remove_export(self, context, volume):
        pass

    def initialize_connection(self, volume, connector):
        raise NotImplementedError()

    def terminate_connection(self, volume, connector, **kwargs):
        pass

    # -- volume lifecycle --

    def create_volume(self, volume):
        raise NotImplementedError()

    def delete_volume(self, volume):
        raise NotImplementedError()

    def extend_volume(self, volume, new_size):
        raise NotImplementedError()

    def rename_volume(self, volume, new_name):
        """Give the volume ``new_name``, never taking another's.

        A client that opens volumes by name reaches it no more under its
        old one: the generic copy renames its source to a retired name
        before its last check, so that nothing written after that check
        is lost when the source is removed.  Drivers that can set
        ``RENAMES_VOLUMES``.

        :raises VolumeNotFound: the volume does not exist.
        :raises VolumeExists: a volume named ``new_name`` already does.
        """
        raise NotImplementedError()

    def volume_identity(self, volume):
        """Return what tells this volume from every other, wherever named.

        Two drivers' answers are equal only for one volume: the same
        storage under the same or another name (a second driver on one
        pool, two hard links).  A recovery removes a volume only once it
        is proven not to be the one it keeps.  The base driver cannot
        tell, and says None.

        :raises VolumeNotFound: the volume does not exist.
        """
        return None

    def list_images(self):
        """Return ``[(name, size in bytes)]`` of every volume the backend
        holds, for ``rbdmig import``."""
        raise NotImplementedError()

    def allocated_bytes(self, volume):
        """Return the bytes of data the volume holds (what a copy moves).

        The base driver does not know, and says the whole size.
        """
        return volume.size * units.Gi

    # -- migration --

    def uncopied_parts(self, volume):
        """Say what a copy of the volume's blocks would leave behind.

        The generic copy moves the blocks a handle reads (the head) and
        then removes the source: snapshots, or clones depending on them,
        would exist nowhere after.  The base driver's volumes have none.

        :returns: a phrase (``'it has 2 snapshots (a, b)'``), or None.
        :raises VolumeNotFound: the volume does not exist.
        """
        return None

    def volume_in_use(self, volume):
        """Return True if a client has the volume open, as far as known.

        The generic copy refuses such a volume: its data may change while
        it is copied.  The base driver cannot tell, and says no.

        :raises VolumeNotFound: the volume does not exist.
        """
        return False

    def fence_writers(self, volume):
        """Cut off the writers that hold the volume, but this process.

        A resumed generic copy calls it on its copy, whose runner is gone:
        a lock that runner held must not make the copy wait, nor let it
        write should it still run.  The base driver knows no locks.

        :returns: the writers cut off.
        :raises VolumeNotFound: the volume does not exist.
        """
        return []

    def migrate_volume(self, context, volume, host,
                       callback=progress.DEFAULT_CALLBACK):
        """Move ``volume`` to ``host`` without the host in the data path.

        :param host: ``{'host': ..., 'capabilities': <destination stats>}``.
        :param callback: progress of the move, if the driver reports any.
        :returns: ``(moved, model_update)``; ``(False, None)`` asks the
            caller to fall back to the generic path.
        :raises MigrationRefused: the volume is unsafe to copy now by any
            path; the caller must not fall back.
        """
        return False, None

    def open_volume(self, context, volume, mode='rb'):
        """Return a file-like handle on the volume's blocks."""
        raise NotImplementedError()

    def close_volume(self, context, volume, handle):
        """Close a handle returned by :meth:`open_volume`."""
        handle.close()

    def copy_volume_data(self, context, src_vol, dest_vol, dest_driver=None,
                         callback=progress.DEFAULT_CALLBACK,
                         dest_zeroed=False, resume_from=0,
                         checkpoint=None):
        """Copy every block of ``src_vol`` into the existing ``dest_vol``.

        The source is opened by this driver, the destination by
        ``dest_driver`` (this driver when omitted); both handles are closed
        whatever happens.  Afterwards the destination's first bytes, as
        many as the source's handle holds, read exactly as the source's,
        whatever the destination held before.  The size copied is the
        source's own, not ``src_vol.size``: a record smaller than its
        image (grown behind it) must not have its tail cut off.

        :param callback: a :class:`rbdmig.migration.progress.Callback`;
            progress is logged every ``migration_progress_report_interval``
            seconds when omitted.
        :param dest_zeroed: the caller vouches that the destination reads
            as zeros (it has just created it, on a driver whose
            ``CREATES_ZEROED_VOLUMES`` is true): holes and zero blocks are
            then skipped, and a thin destination stays thin.  Otherwise
            they are zeroed on the destination too.
        :param resume_from: a checkpoint of an earlier copy onto this
            destination, in chunks of this backend's
            ``volume_copy_chunk_size``: what lies before is not copied
            again.
        :param checkpoint: ``checkpoint(offset)``, told now and then how
            far the destination is complete (see
            :func:`rbdmig.migration.copy.copy_volume`).
        :returns: a :class:`rbdmig.migration.copy.CopyResult`.
        :raises InvalidVolume: the destination is smaller than the source
            (by their records, or by what their handles hold).
        """
        dest_driver = dest_driver or self
        if dest_vol.size < src_vol.size:
            raise exception.InvalidVolume(
                reason='destination %s (%d GiB) is smaller than source %s '
                       '(%d GiB).' % (dest_vol.id, dest_vol.size, src_vol.id,
                                      src_vol.size))
        if callback is progress.DEFAULT_CALLBACK:
            callback = progress.log_progress(
                'copy %s -> %s' % (src_vol.id, dest_vol.id),
                self.configuration.safe_get(
                    'migration_progress_report_interval') or 0)
        with contextlib.ExitStack() as stack:
            src = self.open_volume(context, src_vol, 'rb')
            stack.callback(self.close_volume, context, src_vol, src)
            dst = dest_driver.open_volume(context, dest_vol, 'r+b')
            stack.callback(dest_driver.close_volume, context, dest_vol, dst)
            size, room = copy_engine.size_of(src), copy_engine.size_of(dst)
            if room < size:
                raise exception.InvalidVolume(
                    reason='destination %s holds %d bytes, fewer than the '
                           '%d of source %s (its record says %d GiB).' % (
                               dest_vol.id, room, size, src_vol.id,
                               src_vol.size))
            result = copy_engine.copy_volume(
                src, dst,
                size=size,
                chunk_size=self.configuration.safe_get(
                    'volume_copy_chunk_size') or 4 * units.Mi,
                bps_limit=self.configuration.safe_get(
                    'volume_copy_bps_limit') or 0,
                queue_depth=self.configuration.safe_get(
                    'volume_copy_queue_depth') or 1,
                callback=callback, dest_zeroed=dest_zeroed,
                resume_from=resume_from, checkpoint=checkpoint)
        LOG.info('Copied %(src)s to %(dst)s: %(result)s',
                 {'src': src_vol.id, 'dst': dest_vol.id, 'result': result})
        return result
