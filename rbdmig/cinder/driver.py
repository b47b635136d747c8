"""Cinder's own RBD driver, with rbdmig's assisted migration."""

import dataclasses

from cinder import exception as cinder_exception
from cinder import interface
from cinder import objects
from cinder.volume.drivers import rbd as cinder_rbd
from oslo_log import log as logging
from oslo_utils import encodeutils

from rbdmig import exception
from rbdmig import faults
from rbdmig.ceph import connection
from rbdmig.ceph import location
from rbdmig.ceph import methods
from rbdmig.ceph import migrate
from rbdmig.ceph import opts as ceph_opts
from rbdmig.ceph import recover
from rbdmig.migration import notify
from rbdmig.migration import phases
from rbdmig.migration import progress
from rbdmig.migration import reporter

LOG = logging.getLogger(__name__)

# What rbdmig adds to Cinder's RBD options; Cinder's own are used as they
# are (rbd_pool, rbd_user, rados_connect_timeout...).
EXTRA_OPTS = ceph_opts.MIGRATION_OPTS + progress.PROGRESS_OPTS


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

    def do_setup(self, context):
        """Cinder's set-up, then recovery of interrupted migrations.

        Cinder's volume row is the authority (:class:`CinderAuthority`): a
        migration journaled by a cinder-volume that died is undone while
        the row names the source and the source is whole, completed when
        the row names the destination; one whose source was already being
        removed is completed and the row moved to the destination.  The
        row's ``migration_status`` then says what happened.  Recovery
        never keeps the backend from starting: what it cannot recover is
        logged and stays in the journal.
        """
        super().do_setup(context)
        self._recover_migrations(context)
        self._settle_interrupted_migrations(context)

    def _recover_migrations(self, context):
        try:
            outcomes = recover.recover(self.migration_backend(),
                                       authority=CinderAuthority(context))
        except Exception:  # noqa: BLE001 - the backend must start anyway
            # The one place a broad catch is right: a lock directory this
            # process may not read, a journal librados cannot read, a
            # record of another version must not stop the volumes of this
            # backend from being served.  Nothing was changed by failing.
            LOG.exception('Could not recover the interrupted migrations of '
                          '%s; they stay in its journal for the next start '
                          'or "rbdmig recover". The backend starts anyway.',
                          self._backend_name)
            return
        for outcome in outcomes:
            if outcome.action == 'failed':
                LOG.error('Could not recover %s; it stays in the journal '
                          'for the next start or "rbdmig recover".', outcome)

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
                    authority=CinderAuthority(context, self.host))
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


class CinderAuthority(recover.Authority):
    """Cinder's volume row names the volume; recovery settles it.

    The row names the source until the move's copy holds the volume's
    name: then :meth:`moved` points its ``host`` at the destination,
    before the source goes (Cinder's manager records the rest once
    ``migrate_volume`` returned).  After recovery the row reads as
    Cinder's own migration would have left it: ``success`` on the
    destination, or ``error`` with the source intact.
    """

    def __init__(self, context, service=None):
        self.context = context
        self.service = service

    def _row(self, record):
        if not record.volume_id:
            return None
        try:
            return objects.Volume.get_by_id(self.context, record.volume_id)
        except cinder_exception.VolumeNotFound:
            return None

    def names(self, record):
        from cinder.volume import volume_utils
        row = self._row(record)
        if row is None or not record.dest_host or not row.host:
            return phases.SOURCE
        here = volume_utils.extract_host(row.host, 'pool')
        there = volume_utils.extract_host(record.dest_host, 'pool')
        return phases.DEST if here == there else phases.SOURCE

    def moved(self, record):
        """The copy holds the volume's name: the row names it now, before
        the source goes (Cinder's manager records the rest on return)."""
        row = self._row(record)
        if row is None or not record.dest_host:
            raise exception.MigrationError(
                volume=record.volume_id,
                reason='its volume row cannot be moved to the destination')
        row.update(self._on_destination(record))
        row.save()

    def _on_destination(self, record):
        """The row's fields that name the destination, as Cinder's
        manager sets them once a driver moved a volume.

        In an active-active cluster Cinder sends a volume's requests to
        its ``cluster_name``: left naming the source's cluster, a delete
        would reach the source backend and miss the image.
        """
        from cinder.volume import volume_utils
        updates = {'host': record.dest_host}
        try:
            service = objects.Service.get_by_args(
                self.context,
                volume_utils.extract_host(record.dest_host, 'backend'),
                'cinder-volume')
        except cinder_exception.ServiceNotFound:
            LOG.warning('No cinder-volume service runs %s; only the host '
                        'of volume %s names it.', record.dest_host,
                        record.volume_id)
            return updates
        pool = volume_utils.extract_host(record.dest_host, 'pool')
        updates.update(
            cluster_name=service.cluster_name and volume_utils.append_host(
                service.cluster_name, pool),
            service_uuid=service.uuid,
            availability_zone=service.availability_zone)
        return updates

    def settle(self, record, decision):
        row = self._row(record)
        if row is None:
            return
        updates = {}
        if decision in (phases.COMPLETE, phases.ADOPT):
            if record.dest_host and row.host != record.dest_host:
                LOG.warning('%(rec)s completed while Cinder still named '
                            'its source: volume %(id)s now lives on '
                            '%(host)s.', {'rec': record, 'id': row.id,
                                          'host': record.dest_host})
            if record.dest_host:
                # The process that died after moving the host left the
                # rest (its cluster) to Cinder's manager.
                updates.update(self._on_destination(record))
            updates['migration_status'] = 'success'
        elif decision != phases.KEEP and row.migration_status in (
                'migrating', 'starting'):
            updates['migration_status'] = 'error'
        if row.status in ('retyping', 'maintenance') and (
                decision != phases.KEEP):
            updates['status'] = row.previous_status or 'available'
        if updates:
            row.update(updates)
            row.save()


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
