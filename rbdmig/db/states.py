"""Volume and migration statuses, and the transitions allowed between them."""

from rbdmig import exception

# Migration statuses, shared by ``volumes.migration_status`` (the volume's
# latest migration) and ``migrations.status`` (one attempt).  A volume that
# was never migrated has ``None``, as in Cinder.
STARTING = 'starting'
MIGRATING = 'migrating'
COMPLETING = 'completing'
SUCCESS = 'success'
ERROR = 'error'

MIGRATION_STATUSES = frozenset([None, STARTING, MIGRATING, COMPLETING,
                                SUCCESS, ERROR])

# A migration in one of these holds the volume: no second one may start,
# and the volume may not be deleted.
RUNNING = frozenset([STARTING, MIGRATING, COMPLETING])

# No migration holds the volume; a new one may start from any of these.
IDLE = MIGRATION_STATUSES - RUNNING

MIGRATION_TRANSITIONS = frozenset([
    # A volume never migrated before is claimed by a migration.
    (None, STARTING),
    # A volume whose last migration succeeded is claimed again.
    (SUCCESS, STARTING),
    # A volume whose last migration failed is claimed again (a retry).
    (ERROR, STARTING),
    # The path is chosen and data starts to move.
    (STARTING, MIGRATING),
    # The data has moved; the records are being switched over.
    (MIGRATING, COMPLETING),
    # The volume now lives on the destination.
    (COMPLETING, SUCCESS),
    # Refused or failed before any data moved; the source is untouched.
    (STARTING, ERROR),
    # The copy failed or was interrupted; the source is intact.
    (MIGRATING, ERROR),
    # Switching over failed; the source is intact.
    (COMPLETING, ERROR),
])

# Volume statuses, Cinder's names.  A migration without ``--force`` leaves
# the status alone (``migration_status`` says a migration runs); with
# ``--force`` an available volume goes to maintenance for the duration.
CREATING = 'creating'
AVAILABLE = 'available'
IN_USE = 'in-use'
MAINTENANCE = 'maintenance'
DELETING = 'deleting'
VOLUME_ERROR = 'error'
ERROR_DELETING = 'error_deleting'

VOLUME_STATUSES = frozenset([CREATING, AVAILABLE, IN_USE, MAINTENANCE,
                             DELETING, VOLUME_ERROR, ERROR_DELETING])

# The statuses a record may be created with (``import`` adopts existing
# images as available or in-use).
INITIAL_VOLUME_STATUSES = frozenset([CREATING, AVAILABLE, IN_USE])

# A migration may start from these; an in-use volume only without --force.
MIGRATABLE = frozenset([AVAILABLE, IN_USE])

VOLUME_TRANSITIONS = frozenset([
    # The backend created the image.
    (CREATING, AVAILABLE),
    # The backend failed to create the image.
    (CREATING, VOLUME_ERROR),
    # The volume was attached to an instance.
    (AVAILABLE, IN_USE),
    # The volume was detached.
    (IN_USE, AVAILABLE),
    # A forced migration takes the volume out of service (--force).
    (AVAILABLE, MAINTENANCE),
    # The forced migration ended, well or not: the status is restored.
    (MAINTENANCE, AVAILABLE),
    # Deletion of a healthy volume starts.
    (AVAILABLE, DELETING),
    # Deletion of a volume the backend failed to create starts.
    (VOLUME_ERROR, DELETING),
    # Deletion is retried after it failed.
    (ERROR_DELETING, DELETING),
    # The backend failed to delete the image.
    (DELETING, ERROR_DELETING),
])

# Which table governs which column of a volume record.
_TABLES = {
    'migration_status': MIGRATION_TRANSITIONS,
    'status': VOLUME_TRANSITIONS,
}
FIELDS = frozenset(_TABLES)

# How a migration moved the data: the source backend moved it itself, or
# blocks were copied through this host into a new destination volume.
ASSISTED = 'assisted'
GENERIC = 'generic'
PATHS = frozenset([ASSISTED, GENERIC])


def _transitions(field):
    try:
        return _TABLES[field]
    except KeyError:
        raise exception.InvalidInput(
            reason='%r is not a status field; use one of %s.'
            % (field, ', '.join(sorted(_TABLES))))


def is_allowed(old, new, field='migration_status'):
    """Return whether ``field`` may go from ``old`` to ``new``.

    :param field: ``'migration_status'`` or ``'status'`` (a volume's).
    :raises InvalidInput: ``field`` names neither.
    """
    return (old, new) in _transitions(field)


def allowed_from(new, field='migration_status'):
    """Return the statuses from which ``field`` may go to ``new``."""
    return frozenset(old for old, to in _transitions(field) if to == new)


def check_transition(old, new, field='migration_status'):
    """Raise unless ``field`` may go from ``old`` to ``new``.

    :param field: ``'migration_status'`` (the default) or ``'status'``.
    :raises InvalidTransition: the table has no ``(old, new)`` pair.
    """
    if not is_allowed(old, new, field):
        raise exception.InvalidTransition(field=field, old=old, new=new)


def is_running(migration_status):
    """Return whether a migration with this status holds its volume."""
    return migration_status in RUNNING
