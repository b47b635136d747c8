"""Cinder's own RBD driver, with rbdmig's assisted migration."""

import dataclasses
import threading

from cinder import exception as cinder_exception
from cinder import interface
from cinder import objects
from cinder.volume.drivers import rbd as cinder_rbd
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import encodeutils

from rbdmig import exception
from rbdmig import faults
from rbdmig.ceph import connection
from rbdmig.ceph import liveness
from rbdmig.ceph import location
from rbdmig.ceph import methods
from rbdmig.ceph import migrate
from rbdmig.ceph import opts as ceph_opts
from rbdmig.ceph import recover
from rbdmig.cinder import authority
from rbdmig.migration import notify
from rbdmig.migration import progress
from rbdmig.migration import reporter

LOG = logging.getLogger(__name__)

RECOVERY_OPTS = [
    cfg.IntOpt('migration_recovery_interval', default=60, min=0,
               help='In an active-active cluster (``cluster`` set), '
                    'seconds between the recoveries each member runs, '
                    'while it runs, of the migrations journaled in its '
                    'backend\'s pool whose process died: another '
                    'member\'s, killed mid-move, is finished or undone '
                    'without waiting for a restart.  Ceph says which '
                    'died (their journal watch is gone, '
                    '%d s after the process); a live member\'s moves, '
                    'this one\'s included, are left alone.  Every member '
                    'also recovers at start.  0: only at start.'
                    % liveness.WATCH_TIMEOUT),
]

# What rbdmig adds to Cinder's RBD options; Cinder's own are used as they
# are (rbd_pool, rbd_user, rados_connect_timeout...).
EXTRA_OPTS = (ceph_opts.MIGRATION_OPTS + progress.PROGRESS_OPTS +
              RECOVERY_OPTS)


@interface.volumedriver
class RBDDriver(cinder_rbd.RBDDriver):
    """Cinder's RBD driver, every feature kept, migrating with rbdmig.

    Snapshots, clones, Glance cloning, backups, replication, QoS, manage,
    active-active and the rest are Cinder's own code, inherited.  rbdmig
    replaces what it does better:

    * :meth:`migrate_volume`: every ``rbd_migration_method``, into another
      pool or another cluster this host reaches, verified before the
      source goes, every refusal ``(False, None)``, progress logged;
      blocking librados/librbd calls run on native threads under eventlet,
      and connecting is bounded by ``rados_connect_timeout``.  A retype
      that changes backend reaches it too (Cinder's manager calls
      ``retype`` only within this backend, i.e. this pool).  A Cinder
      clone keeps its parent link (``deep_copy``) within the cluster and
      is left to Cinder's generic migration across clusters, so Cinder's
      parent bookkeeping holds.
    * Capabilities: ``migration_progress_report`` and the methods.

    Version history:

    * 2.0.0 - first release as a subclass of Cinder's driver (Cinder's
      own RBD driver is 1.3.0).
    """

    VERSION = '2.0.0'
    CI_WIKI_NAME = 'rbdmig'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(EXTRA_OPTS)
        # Set to stop the periodic recovery (:meth:`stop_recovery`).
        self._recovery_stop = threading.Event()
        self._recovery_thread = None

    def do_setup(self, context):
        """Cinder's set-up, then recovery of interrupted migrations.

        Cinder's volume row is the authority
        (:class:`authority.CinderAuthority`): a migration journaled by a
        cinder-volume that died is undone while the row names the source
        and the source is whole, completed when the row names the
        destination; one whose source was already being removed is
        completed and the row moved to the destination.  The
        row's ``migration_status`` then says what happened.  Recovery
        never keeps the backend from starting: what it cannot recover is
        logged and stays in the journal.

        A member of an active-active cluster then goes on recovering,
        every ``migration_recovery_interval`` seconds, the moves of
        members that died (:meth:`_start_periodic_recovery`).
        """
        super().do_setup(context)
        self._recover_migrations(context)
        self._settle_interrupted_migrations(context)
        self._start_periodic_recovery(context)

    def _start_periodic_recovery(self, context):
        """Recover dead members' moves periodically, in a cluster only.

        Outside a cluster no other service runs this backend: a move
        whose process died is this service's own, recovered when it
        starts again.  In a cluster, a member killed mid-move leaves its
        record, and the volume's row ``migrating``, until some member
        restarts: the members still running take it over instead.  The
        thread is a greenthread when eventlet patched the process (the
        Ceph calls run on native threads, :mod:`rbdmig.native`), a
        daemon thread otherwise.
        """
        interval = self.configuration.safe_get(
            'migration_recovery_interval')
        if not (self.cluster_name and interval) or self._recovery_thread:
            return
        self._recovery_thread = threading.Thread(
            target=self._recover_periodically, args=(context, interval),
            name='rbdmig-recovery', daemon=True)
        self._recovery_thread.start()
        LOG.info('Recovering the migrations of dead members of cluster '
                 '%(cluster)s every %(n)d s.',
                 {'cluster': self.cluster_name, 'n': interval})

    def _recover_periodically(self, context, interval):
        while not self._recovery_stop.wait(interval):
            self._recover_migrations(context)
            faults.point('cinder.recovery_round')

    def stop_recovery(self):
        """Stop the periodic recovery (a round under way ends first)."""
        self._recovery_stop.set()
        thread, self._recovery_thread = self._recovery_thread, None
        if thread is not None:
            thread.join()

    def _recover_migrations(self, context):
        try:
            outcomes = recover.recover(
                self.migration_backend(),
                authority=authority.CinderAuthority(context))
        except Exception:  # noqa: BLE001 - the backend must start anyway
            # The one place a broad catch is right: a lock directory this
            # process may not read, a journal librados cannot read, a
            # record of another version must not stop the volumes of this
            # backend from being served.  Nothing was changed by failing.
            LOG.exception('Could not recover the interrupted migrations of '
                          '%s; they stay in its journal for the next '
                          'recovery or "rbdmig recover". The backend serves '
                          'its volumes anyway.', self._backend_name)
            return
        for outcome in outcomes:
            if outcome.action == 'failed':
                LOG.error('Could not recover %s; it stays in the journal '
                          'for the next recovery or "rbdmig recover".',
                          outcome)

    def _settle_interrupted_migrations(self, context):
        """Mark the migrations this service died running as failed.

        Cinder's manager sets ``migration_status`` to ``error`` when a
        migration fails, but nothing does it at start-up for one its
        process died running: ``init_host`` cleans up only what the
        workers table lists, and ``migrate_volume`` keeps no entry there.
        The row would stay ``migrating``, and Cinder's API refuses to
        delete or migrate the volume.  Recovery has just finished or
        undone what the journal records; the row now says the migration
        failed, as Cinder's manager would have.  In an active-active
        cluster another member may be running it: left alone.
        """
        if self.cluster_name:
            return
        for volume in objects.VolumeList.get_all_by_host(context, self.host):
            if volume.migration_status != 'migrating':
                continue
            updates = {'migration_status': 'error'}
            if volume.status in ('retyping', 'maintenance'):
                updates['status'] = volume.previous_status
            volume.update(updates)
            volume.save()
            LOG.warning('The migration of volume %s stopped with its '
                        'cinder-volume; marked failed.', volume.id)

    @classmethod
    def get_driver_options(cls):
        return super().get_driver_options() + EXTRA_OPTS

    def _update_volume_stats(self):
        super()._update_volume_stats()
        self._stats.update(
            driver_version=self.VERSION, migration_progress_report=True,
            **ceph_opts.capabilities(self.configuration))

    def migration_backend(self):
        """Return this backend as rbdmig's migration engine sees it.

        The cluster is Cinder's active one (the replication target after
        a failover), the keyring Cinder's (cinderlib's
        ``rbd_keyring_conf``) or the conf's.
        """
        name, conf, user, _secret_uuid = self._get_config_tuple()
        address = connection.Address(cluster_name=name or 'ceph',
                                     conf=conf or '', user=user,
                                     keyring=self.keyring_file or None)
        return ceph_opts.make_backend(self.configuration, self._backend_name,
                                      address, self.rados, self.rbd)

    def migrate_volume(self, context, volume, host):
        """Move the volume's image to the pool ``host`` names, name kept.

        :returns: ``(True, None)`` once moved and the source removed;
            ``(False, None)`` when rbdmig cannot do it safely, and Cinder
            then migrates generically.
        :raises VolumeMigrationFailed: the copy failed; the partial copy
            was removed and the source is intact.
        """
        backend = self._for_clones(self.migration_backend(), volume, host)
        if backend is None:
            return False, None
        dest = (host or {}).get('host') if isinstance(host, dict) else None
        with reporter.Reporter(
                'migration of %s' % volume.id,
                self.configuration.migration_progress_report_interval,
                notifier=_cinder_notifier(context, self.host),
                event=dict(volume_id=volume.id,
                           source_backend=self._backend_name,
                           destination_backend=dest,
                           method=backend.method)) as callback:
            faults.point('cinder.migrating')
            try:
                moved, model_update = migrate.migrate(
                    backend, volume, host, callback,
                    authority=authority.CinderAuthority(context, self.host))
            except exception.MigrationError as err:
                raise cinder_exception.VolumeMigrationFailed(
                    reason=str(err))
        # The engine is done; Cinder's manager has yet to record the host.
        faults.point('cinder.migrated')
        return moved, model_update


    def _for_clones(self, backend, volume, host):
        """The backend that moves ``volume`` with Cinder's clone bookkeeping.

        Cinder tracks a clone's parent (a volume's snapshot, a
        ``*.clone_snap`` of a volume that may be ``*.deleted`` since, a
        Glance image) and cleans it up when the clone is deleted through
        its driver.  Within one cluster the clone stays a clone of it: a
        method that would flatten it gives way to ``deep_copy``, which
        keeps the link.  Into another cluster it could only be flattened
        and its source removed behind Cinder's back: None, and Cinder
        migrates it generically, deleting the source with its own
        ``delete_volume``.

        :returns: ``backend``, maybe with another method; None to leave
            the move to Cinder.
        """
        try:
            dest = location.from_host(host)
        except exception.InvalidInput:
            return backend  # the engine refuses it and says why
        rbd = backend.native_rbd
        try:
            with backend.connect() as (client, ioctx):
                fsid = encodeutils.safe_decode(client.get_fsid())
                with rbd.Image(ioctx, volume.name, read_only=True) as image:
                    parent = image.parent_info()
        except rbd.ImageNotFound:
            return backend  # not a clone (or no image: the engine says)
        except exception.RbdmigError:
            return backend  # unreachable: the engine refuses it
        parent = '%s/%s@%s' % tuple(parent)
        if fsid != dest.fsid:
            LOG.info('Not migrating %(vol)s with the backend: it is a clone '
                     'of %(parent)s, which would be flattened into cluster '
                     '%(fsid)s and its source removed behind Cinder\'s '
                     'parent bookkeeping. Falling back to generic '
                     'migration.', {'vol': volume.id, 'parent': parent,
                                    'fsid': dest.fsid})
            return None
        if methods.get(backend.method).keeps_parent:
            return backend
        LOG.info('%(name)s is a clone of %(parent)s: moving it by deep_copy, '
                 'which keeps the link, instead of %(method)s.',
                 {'name': volume.name, 'parent': parent,
                  'method': backend.method})
        return dataclasses.replace(backend, method='deep_copy')


def _cinder_notifier(context, host):
    """rbdmig's migration events, sent through Cinder's own notifier
    (``[oslo_messaging_notifications]`` of cinder.conf), publisher
    ``rbdmig.<host>``."""
    from cinder import rpc
    cinder_notifier = rpc.get_notifier('rbdmig', host)

    def send(event_type, body, error):
        send_as = cinder_notifier.error if error else cinder_notifier.info
        send_as(context, event_type, body)

    return notify.Notifier(send)
