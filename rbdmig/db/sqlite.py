"""SQLite made fit for several processes: WAL, a busy timeout, its folder."""

import os
import sqlite3

from oslo_log import log as logging
import sqlalchemy as sa
import tenacity

LOG = logging.getLogger(__name__)

# Seconds a connection waits for another process's write lock before it
# gives up with "database is locked".  Writes here are single statements
# that take milliseconds, so waiting long only matters when a host is
# overloaded; a ``timeout`` in the connection URL overrides it.
BUSY_TIMEOUT = 30


def _is_file(url):
    return (url.get_backend_name() == 'sqlite'
            and url.database not in (None, '', ':memory:')
            and not url.database.startswith('file:'))


def prepare_url(connection):
    """Return ``connection`` ready for several processes, as a string.

    For an SQLite file: the busy timeout (the sqlite3 module's ``timeout``)
    is added unless the URL sets one, and the file's folder is created, so
    the default database under ``state_path`` works on first use.  Other
    URLs are returned unchanged.
    """
    url = sa.engine.make_url(connection)
    if url.get_backend_name() != 'sqlite':
        return connection
    if 'timeout' not in url.query:
        url = url.update_query_dict({'timeout': str(BUSY_TIMEOUT)})
    if _is_file(url):
        folder = os.path.dirname(os.path.abspath(url.database))
        if not os.path.isdir(folder):
            LOG.info('Creating %s for the database.', folder)
            os.makedirs(folder, mode=0o750, exist_ok=True)
    return url.render_as_string(hide_password=False)


def _locked(error):
    return (isinstance(error, sqlite3.OperationalError)
            and 'locked' in str(error))


def _waiting(retry_state):
    LOG.debug('Another process holds the database; switching it to WAL '
              'again (attempt %d).', retry_state.attempt_number)


def _switch_to_wal(dbapi_connection):
    """Switch the file to WAL unless it is already there; return its mode.

    The switch needs the file to itself, and SQLite refuses it at once,
    without the busy timeout, when waiting could deadlock: processes
    opening a new database together each try it, so it is tried again,
    for ``BUSY_TIMEOUT`` seconds whatever the URL's ``timeout`` (which
    bounds the waits SQLite agrees to; these are the ones it refuses).
    A file already in WAL (every later connection) takes no lock here.
    """
    def switch():
        cursor = dbapi_connection.cursor()
        try:
            mode = cursor.execute('PRAGMA journal_mode').fetchone()[0]
            if mode != 'wal':
                mode = cursor.execute(
                    'PRAGMA journal_mode=WAL').fetchone()[0]
        finally:
            cursor.close()
        return mode

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(_locked),
        wait=tenacity.wait_random_exponential(multiplier=0.01, max=0.5),
        stop=tenacity.stop_after_delay(BUSY_TIMEOUT), before_sleep=_waiting,
        reraise=True)(switch)


def on_engine_create(engine):
    """Switch each new SQLite connection of ``engine`` to WAL.

    In WAL mode readers never block the writer nor the writer them, so
    ``rbdmig show`` can read progress while a migration writes it.  The
    mode is stored in the file.  Foreign keys are switched on by oslo.db
    (``sqlite_fk``).
    """
    if engine.dialect.name != 'sqlite':
        return
    warned = []

    @sa.event.listens_for(engine, 'connect')
    def _wal(dbapi_connection, connection_record):
        mode = _switch_to_wal(dbapi_connection)
        if mode not in ('wal', 'memory') and not warned:
            # A file system without shared memory, say: readers and the
            # writer then wait for each other.  Said once per engine.
            warned.append(mode)
            LOG.warning('SQLite keeps %(path)s in journal mode %(mode)s, '
                        'not WAL: readers and writers will wait for each '
                        'other.', {'path': engine.url.database,
                                   'mode': mode})
