"""Migration records: claiming a volume, steps, progress and checkpoints."""

import os
import socket

from oslo_log import log as logging
from oslo_utils import strutils
from oslo_utils import timeutils
import sqlalchemy as sa

from rbdmig.db import models
from rbdmig import exception
from rbdmig.db import states

LOG = logging.getLogger(__name__)

# Fields advance_migration may set along with the status.
_STEP_FIELDS = frozenset(['path', 'method', 'dest_volume_id', 'bytes_total',
                          'host'])
_FINAL = frozenset([states.SUCCESS, states.ERROR])


def this_host():
    """Return ``hostname:pid``, the default ``host`` of a migration."""
    return '%s:%d' % (socket.gethostname(), os.getpid())


class MigrationRecordsMixin:
    """The ``migrations`` half of :class:`rbdmig.db.api.API`.

    A migration's status and its volume's ``migration_status`` change
    together, in one transaction, following ``states.MIGRATION_TRANSITIONS``.
    """

    def start_migration(self, volume_id, dest_backend, host=None,
                        force=False):
        """Claim the volume for a migration and record it as ``starting``.

        The claim is a compare-and-set of the volume's status, migration
        status and backend as read just before: of processes racing to
        migrate one volume, one gets the record, the others
        :class:`MigrationInProgress`.

        :param host: who runs it; :func:`this_host` by default.
        :param force: put the (available) volume in ``maintenance`` until
            :meth:`finish_migration` restores its status.
        :returns: the new :class:`~rbdmig.db.models.Migration`.
        :raises MigrationInProgress: a migration of the volume is running.
        :raises InvalidVolume: the volume cannot be migrated as it is.
        :raises VolumeNotFound: no such volume.
        """
        volume = self.get_volume(volume_id)
        _check_migratable(volume, dest_backend, force)
        expected = {'status': volume.status, 'backend': volume.backend,
                    'migration_status': volume.migration_status}
        new = {'migration_status': states.STARTING}
        if force:
            new.update(status=states.MAINTENANCE,
                       previous_status=volume.status)
        with self.transaction() as session:
            if not self.compare_and_set_status(volume_id, expected, new):
                now = session.get(models.Volume, volume_id,
                                  populate_existing=True)
                if states.is_running(now.migration_status):
                    raise exception.MigrationInProgress(
                        volume=volume_id, holder=now.migration_status)
                raise exception.ConcurrentUpdate(
                    what='Volume %s' % volume_id,
                    expected='%(status)s on %(backend)s with migration '
                             'status %(migration_status)s' % expected)
            migration = models.Migration(
                volume_id=volume_id, source_backend=volume.backend,
                dest_backend=dest_backend, status=states.STARTING,
                host=host or this_host())
            session.add(migration)
        LOG.info('Migration %(mig)s of volume %(vol)s from %(src)s to '
                 '%(dst)s started%(force)s.',
                 {'mig': migration.id, 'vol': volume_id,
                  'src': volume.backend, 'dst': dest_backend,
                  'force': ' (volume in maintenance)' if force else ''})
        return migration

    def advance_migration(self, migration_id, status, runner=None,
                          **values):
        """Move a running migration to ``migrating`` or ``completing``.

        :param runner: the host that runs it (see :meth:`_update_running`),
            or None for any.
        :param values: ``path`` (``'assisted'`` or ``'generic'``),
            ``method``, ``dest_volume_id``, ``bytes_total``, ``host``.
        :returns: the migration as it now is.
        :raises InvalidTransition: it is not in a status that leads there.
        :raises MigrationTakenOver: another host runs it now.
        :raises ConcurrentUpdate: its volume is no longer being migrated.
        :raises MigrationNotFound: no such migration.
        """
        if status in _FINAL:
            raise exception.InvalidInput(
                reason='a migration ends through finish_migration.')
        unknown = set(values) - _STEP_FIELDS
        if unknown:
            raise exception.InvalidInput(
                reason='migrations have no settable field %s.'
                % ', '.join(sorted(unknown)))
        if values.get('path', states.GENERIC) not in states.PATHS:
            raise exception.InvalidInput(
                reason='path must be one of %s.'
                % ', '.join(sorted(states.PATHS)))
        with self.transaction() as session:
            migration = _step(session, migration_id, status, values, runner)
            self._mirror(session, migration, {'migration_status': status})
        return migration

    def finish_migration(self, migration_id, status, error=None, name=None,
                         runner=None):
        """End a running migration with ``success`` or ``error``.

        The volume's ``migration_status`` becomes ``status`` and a status
        saved by ``force`` is restored.  On success the volume record moves
        to the destination backend (renamed to ``name`` if given) and a
        hidden destination record is deleted; on error it stays where it
        was and the destination record is kept for a resume.

        :param error: why it failed; passwords in it are masked.
        :param runner: the host that runs it, or None for any.
        :returns: the migration as it now is.
        :raises InvalidTransition: it is not running.
        :raises MigrationTakenOver: another host runs it now.
        :raises ConcurrentUpdate: its volume is no longer being migrated.
        :raises MigrationNotFound: no such migration.
        """
        if status not in _FINAL:
            raise exception.InvalidInput(
                reason='a migration ends with %s.'
                % ' or '.join(sorted(_FINAL)))
        values = {'finished_at': timeutils.utcnow(), 'eta': None}
        if error is not None:
            values['error'] = strutils.mask_password(error)
        volume_values = {
            'migration_status': status,
            # Only a forced migration saved a status: put it back.
            'status': sa.func.coalesce(models.Volume.previous_status,
                                       models.Volume.status),
            'previous_status': None,
        }
        with self.transaction() as session:
            migration = _step(session, migration_id, status, values, runner)
            if status == states.SUCCESS:
                if migration.dest_volume_id:
                    session.execute(sa.delete(models.Volume).where(
                        models.Volume.id == migration.dest_volume_id,
                        models.Volume.hidden.is_(True)))
                volume_values['backend'] = migration.dest_backend
                if name is not None:
                    volume_values['name'] = name
            self._mirror(session, migration, volume_values)
            session.refresh(migration)
        LOG.info('Migration %(mig)s of volume %(vol)s ended: %(status)s.',
                 {'mig': migration_id, 'vol': migration.volume_id,
                  'status': status})
        return migration

    def _mirror(self, session, migration, volume_values):
        """Update the migration's volume, which must be migrating."""
        sources = states.allowed_from(volume_values['migration_status'])
        done = session.execute(
            sa.update(models.Volume)
            .where(models.Volume.id == migration.volume_id,
                   models.Volume.migration_status.in_(sources))
            .values(**volume_values)
            .execution_options(synchronize_session=False)).rowcount
        if not done:
            raise exception.ConcurrentUpdate(
                what='Volume %s' % migration.volume_id,
                expected='being migrated by migration %s' % migration.id)

    def set_path(self, migration_id, path, method=None,
                 dest_volume_id=None, runner=None):
        """Record how a running migration moves its volume.

        A generic copy's destination is recorded before any data is
        written, so a copy that dies can be resumed.

        :returns: False if the migration no longer runs.
        """
        if path not in states.PATHS:
            raise exception.InvalidInput(
                reason='path must be one of %s.'
                % ', '.join(sorted(states.PATHS)))
        values = {'path': path}
        if method is not None:
            values['method'] = method
        if dest_volume_id is not None:
            values['dest_volume_id'] = dest_volume_id
        return self._update_running(migration_id, values, runner)

    def update_progress(self, migration_id, bytes_done, bytes_total=None,
                        rate=None, eta=None, runner=None):
        """Record how far a running migration is.

        :param rate: bytes per second; ``eta``: seconds left.
        :returns: False if the migration no longer runs (another process
            ended it): the copy should stop.
        :raises MigrationNotFound: no such migration.
        """
        values = {'bytes_done': bytes_done, 'rate': rate, 'eta': eta}
        if bytes_total is not None:
            values['bytes_total'] = bytes_total
        return self._update_running(migration_id, values, runner)

    def save_checkpoint(self, migration_id, offset, chunk_size,
                        runner=None):
        """Record that the first ``offset`` bytes are on the destination.

        :param chunk_size: the copy's chunk size; a resume must use the
            same (see :func:`resume_offset`).
        :returns: False if the migration no longer runs.
        :raises MigrationNotFound: no such migration.
        """
        if offset < 0 or chunk_size < 1:
            raise exception.InvalidInput(
                reason='a checkpoint needs offset >= 0 and chunk_size >= 1.')
        return self._update_running(migration_id, {
            'checkpoint_offset': offset, 'checkpoint_chunk_size': chunk_size},
            runner)

    def heartbeat(self, migration_id, runner=None):
        """Refresh a running migration's lease (its ``updated_at``).

        :returns: False if the migration no longer runs, or (``runner``
            given) another host runs it now: its lease is not ours.
        """
        return self._update_running(migration_id,
                                    {'updated_at': timeutils.utcnow()},
                                    runner)

    def take_over(self, migration, host=None):
        """Make ``host`` run a migration whose process is gone.

        A compare-and-set on the host and lease as ``migration`` holds
        them: of recoveries racing for one record, on one host or many,
        one gets it.

        :param migration: the record as read when judged dead.
        :param host: the new runner; :func:`this_host` by default.
        :returns: True if this caller now runs it.
        """
        with self.transaction() as session:
            done = session.execute(
                sa.update(models.Migration)
                .where(models.Migration.id == migration.id,
                       models.Migration.status.in_(states.RUNNING),
                       models.Migration.host == migration.host,
                       models.Migration.updated_at == migration.updated_at)
                .values(host=host or this_host(),
                        updated_at=timeutils.utcnow())
                .execution_options(synchronize_session=False)).rowcount
        return bool(done)

    def _update_running(self, migration_id, values, runner=None):
        """Set ``values`` of a running migration; False if it no longer
        runs.

        With ``runner``, only while that host runs it: the ``host``
        column is the fencing token of a migration's runner.  A runner
        whose lease lapsed (a stalled process, a host cut off from the
        database) may still be going when another host's recovery takes
        the migration over (:meth:`take_over`); every write of the old
        runner names itself, and fails from then on, so it cannot undo
        what its successor does.
        """
        conditions = [models.Migration.id == migration_id,
                      models.Migration.status.in_(states.RUNNING)]
        if runner is not None:
            conditions.append(models.Migration.host == runner)
        with self.transaction() as session:
            done = session.execute(
                sa.update(models.Migration)
                .where(*conditions)
                .values(**values)
                .execution_options(synchronize_session=False)).rowcount
            if not done and session.get(models.Migration,
                                        migration_id) is None:
                raise exception.MigrationNotFound(id=migration_id)
        return bool(done)

    def get_migration(self, migration_id):
        """Return the migration record.

        :raises MigrationNotFound: no such migration.
        """
        with self._reader() as session:
            migration = session.get(models.Migration, migration_id)
        if migration is None:
            raise exception.MigrationNotFound(id=migration_id)
        return migration

    def latest_migration(self, volume_id):
        """Return the volume's most recent migration, or None."""
        query = (sa.select(models.Migration)
                 .where(models.Migration.volume_id == volume_id)
                 .order_by(models.Migration.id.desc()).limit(1))
        with self._reader() as session:
            return session.scalars(query).first()

    def list_migrations(self, volume_id=None, host=None, running=None):
        """Return migrations, oldest first.

        :param running: True for those holding their volume, False for
            those that ended, None for all.
        """
        query = sa.select(models.Migration).order_by(models.Migration.id)
        if volume_id is not None:
            query = query.where(models.Migration.volume_id == volume_id)
        if host is not None:
            query = query.where(models.Migration.host == host)
        if running is not None:
            in_running = models.Migration.status.in_(states.RUNNING)
            query = query.where(in_running if running else ~in_running)
        with self._reader() as session:
            return list(session.scalars(query))


def _check_migratable(volume, dest_backend, force):
    """Raise unless ``volume`` may start moving to ``dest_backend``."""
    if states.is_running(volume.migration_status):
        raise exception.MigrationInProgress(
            volume=volume.id, holder=volume.migration_status)
    reason = None
    if volume.hidden:
        reason = 'it is the destination of another migration.'
    elif volume.backend == dest_backend:
        reason = 'it is already on %s.' % dest_backend
    elif volume.status not in states.MIGRATABLE:
        reason = 'its status is %s.' % volume.status
    elif force and volume.status != states.AVAILABLE:
        reason = 'only an available volume can be forced into maintenance.'
    if reason:
        raise exception.InvalidVolume(
            reason='cannot migrate %s, %s' % (volume.id, reason))


def _step(session, migration_id, status, values, runner=None):
    """Set a migration's status where the table allows (and, with
    ``runner``, while that host runs it); return it."""
    sources = states.allowed_from(status)
    conditions = [models.Migration.id == migration_id,
                  models.Migration.status.in_(sources)]
    if runner is not None:
        conditions.append(models.Migration.host == runner)
    done = session.execute(
        sa.update(models.Migration)
        .where(*conditions)
        .values(status=status, **values)
        .execution_options(synchronize_session=False)).rowcount
    migration = session.get(models.Migration, migration_id,
                            populate_existing=True)
    if migration is None:
        raise exception.MigrationNotFound(id=migration_id)
    if not done and runner is not None and migration.host != runner and (
            migration.status in states.RUNNING):
        raise exception.MigrationTakenOver(id=migration_id,
                                           holder=migration.host,
                                           runner=runner)
    if not done:
        raise exception.InvalidTransition(
            field='the status of migration %s' % migration_id,
            old=migration.status, new=status)
    return migration


def resume_offset(migration, dest_volume_id, chunk_size):
    """Return where a generic copy into ``dest_volume_id`` may resume.

    The checkpoint of ``migration`` (normally the volume's latest) counts
    only for the same destination volume and chunk size: anything else
    starts from 0.
    """
    if migration is None or not migration.checkpoint_offset:
        return 0
    why = None
    if migration.dest_volume_id is None or (
            migration.dest_volume_id != dest_volume_id):
        why = 'it was for destination %s' % migration.dest_volume_id
    elif migration.checkpoint_chunk_size != chunk_size:
        why = 'it was made with chunks of %s bytes' % (
            migration.checkpoint_chunk_size)
    elif (migration.bytes_total is not None
          and migration.checkpoint_offset > migration.bytes_total):
        why = 'it lies beyond the end of the volume'
    if why:
        LOG.info('Not resuming from the checkpoint of migration %(mig)s: '
                 '%(why)s.', {'mig': migration.id, 'why': why})
        return 0
    return migration.checkpoint_offset
