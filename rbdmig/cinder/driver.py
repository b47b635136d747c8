"""Cinder's own RBD driver, with rbdmig's assisted migration."""

from cinder import exception as cinder_exception
from cinder import interface
from cinder.volume.drivers import rbd as cinder_rbd
from oslo_log import log as logging

from rbdmig import exception
from rbdmig.ceph import connection
from rbdmig.ceph import location
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
      and connecting is bounded by ``rados_connect_timeout``.
    * :meth:`retype` when the new type lives in another pool.
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
        row's ``migration_status`` then says what happened.
        """
        super().do_setup(context)
        try:
            recover.recover(self.migration_backend(),
                            authority=CinderAuthority(context))
        except exception.RbdmigError as err:
            LOG.warning('Cannot read the migration journal of %(name)s: '
                        '%(err)s', {'name': self._backend_name, 'err': err})

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
        backend = self.migration_backend()
        dest = (host or {}).get('host') if isinstance(host, dict) else None
        with reporter.Reporter(
                'migration of %s' % volume.id,
                self.configuration.migration_progress_report_interval,
                notifier=_cinder_notifier(context, self.host),
                event=dict(volume_id=volume.id,
                           source_backend=self._backend_name,
                           destination_backend=dest,
                           method=backend.method)) as callback:
            try:
                return migrate.migrate(backend, volume, host, callback)
            except exception.MigrationError as err:
                raise cinder_exception.VolumeMigrationFailed(
                    reason=str(err))

    def retype(self, context, volume, new_type, diff, host):
        """Retype; when ``host`` is in another pool, rbdmig moves the image.

        Cinder asks the driver only when ``host`` is this backend's (or
        its cluster's); a backend change otherwise comes through
        :meth:`migrate_volume`.  A pool change is assisted only when the
        types differ in placement alone (Cinder's own rule for assisted
        migration on retype); otherwise ``(False, None)`` lets Cinder
        migrate generically.
        """
        if not self._in_another_pool(host):
            return super().retype(context, volume, new_type, diff, host)
        if not _placement_only(diff):
            LOG.info('Retype of %s changes more than its pool; Cinder '
                     'migrates it generically.', volume.id)
            return False, None
        return self.migrate_volume(context, volume, host)

    def _in_another_pool(self, host):
        try:
            dest = location.from_host(host)
        except exception.InvalidInput:
            return False
        return dest.pool != self.configuration.rbd_pool or (
            dest.fsid != self._get_fsid())


class CinderAuthority(recover.Authority):
    """Cinder's volume row names the volume; recovery settles it.

    Cinder moves the row to the destination (``host``) only once
    ``migrate_volume`` returned: before that it names the source.  After
    recovery the row reads as Cinder's own migration would have left it:
    ``success`` on the destination, or ``error`` with the source intact.
    """

    def __init__(self, context):
        self.context = context

    def _row(self, record):
        from cinder import objects
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
                updates['host'] = record.dest_host
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


def _placement_only(diff):
    """Whether two types differ in backend name and AZ only (or nothing)."""
    if not diff:
        return True
    if diff.get('qos_specs') or diff.get('encryption'):
        return False
    specs = dict(diff.get('extra_specs') or {})
    specs.pop('volume_backend_name', None)
    specs.pop('RESKEY:availability_zones', None)
    return not specs
