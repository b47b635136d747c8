"""Recovery's view of Cinder: the volume row names the volume."""

from cinder import exception as cinder_exception
from cinder import objects
from oslo_log import log as logging

from rbdmig import exception
from rbdmig.ceph import recover
from rbdmig.migration import phases

LOG = logging.getLogger(__name__)


class CinderAuthority(recover.Authority):
    """Cinder's volume row names the volume; recovery settles it.

    The row names the source until the move's copy holds the volume's
    name: then :meth:`moved` points its ``host`` at the destination,
    before the source goes (Cinder's manager records the rest once
    ``migrate_volume`` returned), and a move undone after that points it
    back (:meth:`restored`; a recovery, :meth:`settle`).  After recovery
    the row reads as Cinder's own migration would have left it:
    ``success`` on the destination, or ``error`` on the source, intact.
    """

    # The row's fields :meth:`moved` changes, and :meth:`restored` puts
    # back.
    NAMING = ('host', 'cluster_name', 'service_uuid', 'availability_zone')

    def __init__(self, context, service=None):
        self.context = context
        self.service = service
        self._before = {}  # record id: the row's NAMING fields, as found

    def _row(self, record):
        if not record.volume_id:
            return None
        try:
            return objects.Volume.get_by_id(self.context, record.volume_id)
        except cinder_exception.VolumeNotFound:
            return None

    def names(self, record):
        """The destination once the row's host is the move's destination
        host, as :meth:`moved` and Cinder's manager set it (the whole
        ``host@backend#pool``: two backends' pools may share a name,
        ``volume_backend_name`` by default)."""
        row = self._row(record)
        if row is None or not record.dest_host or not row.host:
            return phases.SOURCE
        return phases.DEST if row.host == record.dest_host else phases.SOURCE

    def moved(self, record):
        """The copy holds the volume's name: the row names it now, before
        the source goes (Cinder's manager records the rest on return)."""
        row = self._row(record)
        if row is None or not record.dest_host:
            raise exception.MigrationError(
                volume=record.volume_id,
                reason='its volume row cannot be moved to the destination')
        self._before[record.id] = {f: getattr(row, f) for f in self.NAMING}
        row.update(self._naming(record, record.dest_host))
        row.save()

    def restored(self, record):
        """The move gave the source back after :meth:`moved` (which may
        have saved, then raised): the row names the source again, as it
        did before.  Idempotent: a row naming the source is left as it
        is.

        :raises: what saving the row raised; the move then leaves its
            record for recovery, whose :meth:`settle` puts it back.
        """
        before = self._before.get(record.id)
        row = self._row(record)
        if row is not None:
            if before is not None and row.host == record.dest_host:
                updates = before
            else:
                updates = self._back_to_source(row, record)
            if updates:
                row.update(updates)
                row.save()
        self._before.pop(record.id, None)

    def _back_to_source(self, row, record):
        """The fields that name the source again, if ``row`` names the
        move's destination (as :meth:`moved` left it); else none."""
        if not record.dest_host or row.host != record.dest_host:
            return {}
        if not record.source_host:
            # A record journaled before rbdmig kept the source's host.  It
            # names the Ceph pool, not the row's ``host@backend#pool``:
            # the pool part is the backend's pool name (Cinder's RBD
            # driver: ``volume_backend_name``), and in a cluster the row's
            # host may be any member's.  Nothing is guessed.
            ran = ('the move was run by cinder-volume %s' % record.service
                   if record.service else 'the record does not say which '
                   'cinder-volume service ran the move')
            LOG.error('Volume %(id)s (image %(image)s) is in Ceph pool '
                      '%(pool)s again, but its row still names %(dest)s, '
                      'where it is not, and %(rec)s was journaled before '
                      'rbdmig kept the source\'s host: set it by hand.  In '
                      'Cinder\'s database, set volume %(id)s\'s host to '
                      'the host@backend#pool of the backend serving pool '
                      '%(pool)s (%(ran)s; its other volumes there show the '
                      'whole value), and its cluster_name, service_uuid '
                      'and availability_zone to that backend\'s; until '
                      'then Cinder sends the volume\'s requests to '
                      '%(dest)s.',
                      {'id': row.id, 'image': record.image,
                       'pool': record.source_pool, 'dest': record.dest_host,
                       'rec': record, 'ran': ran})
            return {}
        LOG.warning('%(rec)s was undone: volume %(id)s lives on %(host)s '
                    'again.', {'rec': record, 'id': row.id,
                               'host': record.source_host})
        return self._naming(record, record.source_host)

    def _naming(self, record, host):
        """The row's fields that name the backend of ``host`` (the move's
        destination, or its source), as Cinder's manager sets them once
        a driver moved a volume.

        In an active-active cluster Cinder sends a volume's requests to
        its ``cluster_name``: left naming the other side's cluster, a
        delete would reach the wrong backend and miss the image.
        """
        from cinder.volume import volume_utils
        updates = {'host': host}
        try:
            service = objects.Service.get_by_args(
                self.context, volume_utils.extract_host(host, 'backend'),
                'cinder-volume')
        except cinder_exception.ServiceNotFound:
            LOG.warning('No cinder-volume service runs %s; only the host '
                        'of volume %s names it.', host, record.volume_id)
            return updates
        pool = volume_utils.extract_host(host, 'pool')
        updates.update(
            cluster_name=service.cluster_name and volume_utils.append_host(
                service.cluster_name, pool),
            service_uuid=service.uuid,
            availability_zone=service.availability_zone)
        return updates

    def settle(self, record, decision):
        """Make the row say what recovery made of the move: on the
        destination, ``success``, once completed or adopted; on the
        source, ``error`` if it still says the move runs, once released,
        rolled back or restored (a row naming the move's destination, as
        :meth:`moved` left it, is put back: the record keeps the
        source's host)."""
        row = self._row(record)
        if row is None:
            return
        updates = {}
        if decision in (phases.RELEASE, phases.ROLL_BACK, phases.RESTORE):
            updates.update(self._back_to_source(row, record))
        if decision in (phases.COMPLETE, phases.ADOPT):
            if record.dest_host and row.host != record.dest_host:
                LOG.warning('%(rec)s completed while Cinder still named '
                            'its source: volume %(id)s now lives on '
                            '%(host)s.', {'rec': record, 'id': row.id,
                                          'host': record.dest_host})
            if record.dest_host:
                # The process that died after moving the host left the
                # rest (its cluster) to Cinder's manager.
                updates.update(self._naming(record, record.dest_host))
            updates['migration_status'] = 'success'
            if row.status == 'retyping':
                self._retype_unrecorded(row, record)
        elif decision != phases.KEEP and row.migration_status in (
                'migrating', 'starting'):
            updates['migration_status'] = 'error'
        if row.status in ('retyping', 'maintenance') and (
                decision != phases.KEEP):
            updates['status'] = row.previous_status or 'available'
        if updates:
            row.update(updates)
            row.save()

    @staticmethod
    def _retype_unrecorded(row, record):
        """Say so when a retype's move completed without its retype.

        Cinder's manager records a retype's new type once its
        ``migrate_volume`` returned, and passes it no driver: the process
        that died before that took the type with it, and nothing here
        can know it.  The volume is whole on the destination; its type
        is the one it had, until the operator retypes it again.
        """
        LOG.warning('%(rec)s completed a retype\'s move: volume %(id)s '
                    'lives on %(host)s now, but its volume type is still '
                    '%(type)s, the one it had before (Cinder records the '
                    'new type only once the process running the move '
                    'returns, and it died first).  Run "cinder retype '
                    '%(id)s <new type>" again to record it.',
                    {'rec': record, 'id': row.id, 'host': record.dest_host,
                     'type': getattr(row, 'volume_type_id', None)})
