"""The database API: volumes, migrations, compare-and-set status changes."""

from oslo_db import exception as db_exc
from oslo_db.sqlalchemy import enginefacade
from oslo_log import log as logging
from oslo_utils import uuidutils
import sqlalchemy as sa

from rbdmig.db import migration_records
from rbdmig.db import models
from rbdmig.db import sqlite
from rbdmig import exception
from rbdmig.db import states

LOG = logging.getLogger(__name__)

# Volume columns callers may set; status fields only through CAS.
_VOLUME_FIELDS = frozenset(['name', 'display_name', 'size_gib', 'backend',
                            'status', 'migration_status', 'previous_status',
                            'hidden', 'extra_specs'])
_VOLUME_FILTERS = frozenset(['backend', 'status', 'migration_status'])


class _Context:
    """What enginefacade attaches its per-thread transaction state to."""


def _matches(column, value):
    """Return ``column = value``, or ``column IS NULL`` for None."""
    return column.is_(None) if value is None else column == value


class API(migration_records.MigrationRecordsMixin):
    """Volumes and migrations in one database.

    Sessions come from oslo.db's ``enginefacade``, one private transaction
    context per :class:`API` (no global state): it reads ``[database]``
    directly, translates driver errors into oslo.db's (a duplicate key is
    ``DBDuplicateEntry`` on every backend), switches SQLite's foreign keys on,
    and nests: a call made inside :meth:`API.transaction` joins that
    transaction, which is how two steps (claim the volume, record the
    migration) commit together or not at all.  Plain ``sessionmaker`` would
    need all of that by hand.

    SQLite rule: in a writing transaction the first statement writes.  A
    transaction that reads first and writes later can fail at once with
    "database is locked" when another process wrote in between (its snapshot
    is stale), without waiting for the busy timeout; a transaction that
    starts with ``UPDATE ... WHERE`` waits for the lock and then sees the
    newest rows.  Every method here follows the rule; callers of
    :meth:`API.transaction` should too.

    Records returned are detached snapshots: change them through this API.

    :param connection: a SQLAlchemy URL; SQLite files get WAL and a busy
        timeout (:mod:`rbdmig.db.sqlite`).
    :param engine_options: more ``[database]`` options for enginefacade,
        e.g. ``max_retries``.
    """

    def __init__(self, connection, **engine_options):
        self._manager = enginefacade.transaction_context()
        self._manager.configure(connection=sqlite.prepare_url(connection),
                                sqlite_fk=True, **engine_options)
        self._manager.append_on_engine_create(sqlite.on_engine_create)
        self._context = _Context()

    @classmethod
    def from_conf(cls, conf):
        """Return an API on ``conf``'s ``[database]`` section.

        ``conf`` must have rbdmig's options (``rbdmig.opts.register_opts``),
        which default the connection to an SQLite file under
        ``state_path``.
        """
        options = dict(conf.database)
        return cls(options.pop('connection'), **options)

    @property
    def engine(self):
        """The writer Engine, e.g. for :func:`rbdmig.db.migration.db_sync`."""
        return self._manager.writer.get_engine()

    def dispose(self):
        """Close the pooled connections (each process should own its own)."""
        self._manager.dispose_pool()

    def transaction(self):
        """Return a context manager: the calls inside commit together."""
        return self._manager.writer.using(self._context)

    def _reader(self):
        return self._manager.reader.using(self._context)

    # Volumes.

    def create_volume(self, backend, size_gib, id=None, name=None,
                      display_name=None, status=states.AVAILABLE,
                      hidden=False, extra_specs=None):
        """Record a volume and return it.

        :param name: the backend's image or file name; ``volume-<id>`` when
            omitted, as Cinder names them.
        :param status: one of ``states.INITIAL_VOLUME_STATUSES``.
        :param hidden: True for the destination of a generic migration,
            left out of listings until the switch-over.
        :param extra_specs: ``{key: requirement}`` a destination's
            capabilities must meet (Cinder's volume type extra specs).
        :raises VolumeExists: the id, or the name on that backend, is taken.
        """
        if status not in states.INITIAL_VOLUME_STATUSES:
            raise exception.InvalidInput(
                reason='a volume cannot be created %s.' % status)
        if (not isinstance(size_gib, int) or isinstance(size_gib, bool)
                or size_gib < 1):
            raise exception.InvalidInput(
                reason='size_gib must be a positive whole number, not %r.'
                % (size_gib,))
        id = id or uuidutils.generate_uuid()
        volume = models.Volume(
            id=id, name=name or 'volume-%s' % id, display_name=display_name,
            size_gib=size_gib, backend=backend, status=status, hidden=hidden,
            extra_specs=dict(extra_specs) if extra_specs else None)
        try:
            with self.transaction() as session:
                session.add(volume)
        except db_exc.DBDuplicateEntry:
            raise exception.VolumeExists(
                name='%s (%s on %s)' % (id, volume.name, backend))
        LOG.debug('Recorded volume %s on %s.', id, backend)
        return volume

    def get_volume(self, volume_id):
        """Return the volume, hidden or not.

        :raises VolumeNotFound: no such volume.
        """
        with self._reader() as session:
            volume = session.get(models.Volume, volume_id)
        if volume is None:
            raise exception.VolumeNotFound(name=volume_id)
        return volume

    def list_volumes(self, include_hidden=False, **filters):
        """Return the volumes, oldest first.

        :param filters: ``backend``, ``status`` and ``migration_status``;
            ``migration_status=None`` lists volumes never migrated.
        :param include_hidden: also list migration destinations.
        """
        unknown = set(filters) - _VOLUME_FILTERS
        if unknown:
            raise exception.InvalidInput(
                reason='cannot filter volumes by %s.'
                % ', '.join(sorted(unknown)))
        query = sa.select(models.Volume).order_by(models.Volume.created_at,
                                                  models.Volume.id)
        for key, value in filters.items():
            query = query.where(
                _matches(getattr(models.Volume, key), value))
        if not include_hidden:
            query = query.where(models.Volume.hidden.is_(False))
        with self._reader() as session:
            return list(session.scalars(query))

    def update_volume(self, volume_id, **values):
        """Set fields other than the statuses, which need CAS.

        :raises VolumeNotFound: no such volume.
        """
        self._check_fields(values)
        if set(values) & states.FIELDS:
            raise exception.InvalidInput(
                reason='statuses change through compare_and_set_status.')
        with self.transaction() as session:
            if not self._update(session, volume_id, {}, values):
                raise exception.VolumeNotFound(name=volume_id)

    def delete_volume(self, volume_id):
        """Delete the volume's record with its migration history.

        :returns: False if there was no such record (already deleted).
        :raises MigrationInProgress: a migration of the volume is running.
        """
        running = models.Volume.migration_status.in_(states.RUNNING)
        with self.transaction() as session:
            deleted = session.execute(
                sa.delete(models.Volume)
                .where(models.Volume.id == volume_id)
                .where(sa.or_(models.Volume.migration_status.is_(None),
                              sa.not_(running)))
            ).rowcount
            if deleted:
                return True
            volume = session.get(models.Volume, volume_id)
        if volume is None:
            return False
        raise exception.MigrationInProgress(volume=volume_id,
                                            holder=volume.migration_status)

    def compare_and_set_status(self, volume_id, expected, new):
        """Update the volume only if it still has the ``expected`` values.

        One ``UPDATE ... WHERE id = :id AND status = :expected ...``: of
        processes racing from the same values, exactly one wins.  On
        SQLite the writers take turns; on PostgreSQL (READ COMMITTED) an
        UPDATE finding the row locked by a rival waits for its commit and
        checks its WHERE again on the row as committed, so no ``SELECT
        ... FOR UPDATE`` is needed.  Every status field in ``new`` must
        be in ``expected``, and the change must be in the transition
        table.

        :param expected: field to value, e.g. ``{'migration_status': None}``.
        :param new: field to value; may set other fields too.
        :returns: True if this call changed the volume, False if it lost.
        :raises InvalidTransition: ``expected`` to ``new`` is not allowed.
        :raises VolumeNotFound: no such volume.
        """
        self._check_fields(expected)
        self._check_fields(new)
        for field in states.FIELDS & set(new):
            if field not in expected:
                raise exception.InvalidInput(
                    reason='changing %s needs its expected value.' % field)
            states.check_transition(expected[field], new[field], field)
        with self.transaction() as session:
            won = self._update(session, volume_id, expected, new)
            if not won and session.get(models.Volume, volume_id) is None:
                raise exception.VolumeNotFound(name=volume_id)
        LOG.debug('CAS on volume %(id)s from %(old)s to %(new)s: %(res)s.',
                  {'id': volume_id, 'old': expected, 'new': new,
                   'res': 'won' if won else 'lost'})
        return won

    @staticmethod
    def _check_fields(values):
        unknown = set(values) - _VOLUME_FIELDS
        if unknown:
            raise exception.InvalidInput(
                reason='volumes have no settable field %s.'
                % ', '.join(sorted(unknown)))

    @staticmethod
    def _update(session, volume_id, expected, new):
        """UPDATE one volume where ``expected`` holds; True if it did."""
        query = sa.update(models.Volume).where(models.Volume.id == volume_id)
        for key, value in expected.items():
            query = query.where(
                _matches(getattr(models.Volume, key), value))
        query = query.values(**new).execution_options(
            synchronize_session=False)
        return session.execute(query).rowcount == 1
