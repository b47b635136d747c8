"""The volumes the database records: create, delete, show, list, adopt."""

from oslo_log import log as logging

from rbdmig import exception
from rbdmig import objects
from rbdmig.db import states

LOG = logging.getLogger(__name__)


def as_volume(record):
    """The driver's view of a volume record."""
    return objects.Volume(id=record.id, name=record.name,
                          size=record.size_gib, status=record.status,
                          host=record.backend,
                          migration_status=record.migration_status,
                          display_name=record.display_name)


class Inventory(object):
    """Volumes on the configured backends, as the database records them.

    Needs ``self.db`` (:class:`rbdmig.db.api.API`) and ``self.drivers``
    (``{backend: driver}``): the migration service mixes it in.
    """

    def driver(self, backend):
        """The driver of ``backend``; InvalidInput if none is configured."""
        try:
            return self.drivers[backend]
        except KeyError:
            raise exception.InvalidInput(
                reason='backend %s is not configured (enabled_backends: '
                       '%s).' % (backend, ', '.join(sorted(self.drivers))))

    # -- volumes ----------------------------------------------------------

    def create(self, backend, size_gib, name=None, extra_specs=None):
        """Create a volume (``volume-<id>`` on its backend); return it."""
        drv = self.driver(backend)
        objects.check_size(size_gib)
        record = self.db.create_volume(backend, size_gib, display_name=name,
                                       status=states.CREATING,
                                       extra_specs=extra_specs)
        try:
            drv.create_volume(as_volume(record))
        except BaseException:
            self.db.compare_and_set_status(
                record.id, {'status': states.CREATING},
                {'status': states.VOLUME_ERROR})
            raise
        self.db.compare_and_set_status(record.id,
                                       {'status': states.CREATING},
                                       {'status': states.AVAILABLE})
        return self.db.get_volume(record.id)

    def delete(self, volume_id):
        """Delete a volume that no migration holds."""
        record = self.db.get_volume(volume_id)
        if states.is_running(record.migration_status):
            raise exception.MigrationInProgress(
                volume=volume_id, holder=record.migration_status)
        # A record of another volume's copy (one adopted before import
        # knew better): its image is that volume's, once its move stood.
        incoming = self._moving_into(record.backend).get(record.name)
        if incoming and incoming['vol'] != volume_id:
            raise exception.InvalidVolume(
                reason='its image %s on %s is where migration %s moves '
                       'volume %s: deleting it could delete that volume. '
                       'Run "rbdmig recover" first.' % (
                           record.name, record.backend, incoming['mig'],
                           incoming['vol']))
        if not self.db.compare_and_set_status(
                volume_id, {'status': record.status},
                {'status': states.DELETING}):
            raise exception.ConcurrentUpdate(what='volume %s' % volume_id,
                                             expected=record.status)
        self.driver(record.backend).delete_volume(as_volume(record))
        self.db.delete_volume(volume_id)

    def show(self, volume_id):
        """A volume and its latest migration, as plain data."""
        return self._describe(self.db.get_volume(volume_id))

    def list(self, backend=None, migration_status=...):
        """Volumes, optionally by backend and migration status."""
        filters = {}
        if backend is not None:
            filters['backend'] = backend
        if migration_status is not ...:
            filters['migration_status'] = migration_status
        return [self._describe(r) for r in self.db.list_volumes(**filters)]

    def _describe(self, record):
        found = {'id': record.id, 'name': record.name,
                 'display_name': record.display_name,
                 'status': record.status,
                 'migration_status': record.migration_status,
                 'backend': record.backend, 'size': record.size_gib,
                 'extra_specs': record.extra_specs or {},
                 'progress': None}
        migration = self.db.latest_migration(record.id)
        if migration is not None:
            found['progress'] = {
                'migration': migration.id, 'status': migration.status,
                'destination': migration.dest_backend,
                'path': migration.path, 'method': migration.method,
                'percent': migration.percent,
                'bytes_done': migration.bytes_done,
                'bytes_total': migration.bytes_total,
                'rate': migration.rate, 'eta': migration.eta,
                'error': migration.error, 'host': migration.host,
                'checkpoint': migration.checkpoint_offset,
                'started_at': migration.started_at,
                'finished_at': migration.finished_at}
        return found

    def backends(self):
        """Each backend's capabilities and free space, refreshed."""
        found = []
        for name, drv in sorted(self.drivers.items()):
            stats = dict(drv.get_volume_stats(refresh=True))
            stats['backend'] = name
            found.append(stats)
        return found

    def adopt(self, backend):
        """Record the images of ``backend`` the database does not know.

        ``volume-<uuid>`` images keep their id; others get a new one and
        keep their name.  Sizes are rounded up to whole GiB.  An image
        a migration into ``backend`` may have made is never adopted: one
        named as the volume of a running migration into it, and the
        copies the driver leaves out of its list (an RBD image tagged as
        a migration's).  Adopted, such a copy would be a second record
        of the volume, under a name the migration's recovery then cannot
        record it on, and deleting it would remove the volume.
        :returns: the new records.
        """
        drv = self.driver(backend)
        known = {r.name for r in self.db.list_volumes(backend=backend,
                                                      include_hidden=True)}
        incoming = self._moving_into(backend)
        adopted = []
        for name, size in drv.list_images():
            if name in known:
                continue
            if name in incoming:
                LOG.warning('Not importing %(name)s from %(backend)s: '
                            'migration %(mig)s of volume %(vol)s is moving '
                            'it there, and the image may be its copy; '
                            'import again once "rbdmig recover" ended it.',
                            dict(incoming[name], name=name, backend=backend))
                continue
            uuid = name[len('volume-'):] if name.startswith('volume-') \
                else None
            if uuid and (len(uuid) != 36 or self._exists(uuid)):
                uuid = None
            adopted.append(self.db.create_volume(
                backend, max(1, -(-size // (1 << 30))), id=uuid, name=name))
        return adopted

    def _moving_into(self, backend):
        """``{name: {'mig': id, 'vol': volume id}}`` of the volumes that
        running migrations move into ``backend``: a move keeps the name."""
        incoming = {}
        for migration in self.db.list_migrations(running=True):
            if migration.dest_backend != backend:
                continue
            try:
                record = self.db.get_volume(migration.volume_id)
            except exception.VolumeNotFound:
                continue
            incoming[record.name] = {'mig': migration.id, 'vol': record.id}
        return incoming

    def _exists(self, volume_id):
        try:
            self.db.get_volume(volume_id)
            return True
        except exception.VolumeNotFound:
            return False
