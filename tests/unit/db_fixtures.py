"""The database tests' fixtures: each test on SQLite, then on PostgreSQL."""

import os

from oslo_db.sqlalchemy import provision
import pytest
import sqlalchemy as sa

from rbdmig.db import api
from rbdmig.db import migration
from rbdmig.db import models
from tests import pg_server

# db_url (and db, an API on it) is a new SQLite file in the test's
# tmp_path, then the session's PostgreSQL database, emptied.  oslo.db's
# provisioning makes that database, as Cinder's and Nova's opportunistic
# tests make theirs, on a server started by the first test that needs it
# and stopped at the end of the session, failed tests or not; without
# PostgreSQL installed these tests fail, never skip (tools/setup.sh
# installs it).  The migrations build the schema once and each test
# starts from empty tables, oslo.db's DeletesFromSchema way: a new
# database and migrations per test cost a second each.  empty_db_url is
# a new database without a schema, for the migration tests.
BACKENDS = ('sqlite', 'postgresql')
# Where oslo.db's provisioning finds the servers it may make databases on.
ADMIN_CONNECTION_ENV = 'OS_TEST_DBAPI_ADMIN_CONNECTION'


@pytest.fixture(scope='session')
def postgresql():
    """Return the session's PostgreSQL server, known to oslo.db.

    oslo.db reads ``OS_TEST_DBAPI_ADMIN_CONNECTION`` once, when
    ``provision`` is imported; the server's port is known only once it
    runs, so its backends are read again here, and again at the end.
    """
    server = pg_server.Server()
    saved = os.environ.get(ADMIN_CONNECTION_ENV)
    try:
        server.start()
        os.environ[ADMIN_CONNECTION_ENV] = 'sqlite://;%s' % server.url
        provision.Backend._setup()
        yield server
    finally:
        if saved is None:
            os.environ.pop(ADMIN_CONNECTION_ENV, None)
        else:
            os.environ[ADMIN_CONNECTION_ENV] = saved
        provision.Backend._setup()
        server.stop()


def _provision(request):
    """Return a new PostgreSQL database, dropped when ``request`` ends."""
    request.getfixturevalue('postgresql')
    resource = provision.DatabaseResource('postgresql')
    database = resource.getResource()
    request.addfinalizer(lambda: resource.finishedWith(database))
    return database


def _url(engine):
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture(scope='session')
def postgresql_schema(request):
    """Return the session's PostgreSQL database, schema applied."""
    database = _provision(request)
    migration.db_sync(database.engine)
    return database


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """Return the URL of an empty database with the schema."""
    if request.param == 'sqlite':
        url = url_for(tmp_path)
        migration.db_sync(url)
        return url
    engine = request.getfixturevalue('postgresql_schema').engine
    tables = ', '.join(t.name for t in models.Base.metadata.sorted_tables)
    with engine.begin() as conn:
        # Every connection of the previous test is closed by now: if one
        # were left in a transaction, fail rather than wait for it.
        conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
        conn.exec_driver_sql('TRUNCATE %s RESTART IDENTITY' % tables)
    return _url(engine)


@pytest.fixture(params=BACKENDS)
def empty_db_url(request, tmp_path):
    """Return the URL of a new database without a schema."""
    if request.param == 'sqlite':
        return url_for(tmp_path)
    return _url(_provision(request).engine)


@pytest.fixture
def db(db_url):
    """Return an API on ``db_url``, held to its first-statement rule."""
    db = guarded(api.API(db_url))
    yield db
    db.dispose()


# Statements that write, when SQLAlchemy's context does not say (text).
_WRITES = ('INSERT', 'UPDATE', 'DELETE', 'REPLACE', 'CREATE', 'DROP',
           'ALTER')
# Statements that neither read nor write (a plain BEGIN is deferred).
_NEITHER = ('BEGIN', 'SAVEPOINT', 'RELEASE', 'PRAGMA')
# What a guarded API saw break the rule; the tests' conftest fails the
# test that let it happen, even where the code under test swallowed the
# error (a heartbeat logs it, a service reports it).
VIOLATIONS = []


def _verb(statement):
    words = statement.split(None, 2)
    verb = words[0].upper() if words else ''
    if verb == 'BEGIN' and len(words) > 1 and words[1].upper() in (
            'IMMEDIATE', 'EXCLUSIVE'):
        return 'BEGIN IMMEDIATE'  # takes the write lock: a write
    return verb


def _writes(verb, context):
    if verb == 'BEGIN IMMEDIATE' or verb in _WRITES:
        return True
    return context is not None and bool(
        context.isinsert or context.isupdate or context.isdelete)


def guarded(db):
    """Fail any SQLite transaction of ``db`` that reads first and writes
    later.

    The rule :class:`rbdmig.db.api.API` states for SQLite: such a
    transaction fails at once with "database is locked" when another
    process wrote in between, whatever the busy timeout.  Held in every
    test that uses an API, so a change breaking it fails here, without
    the race it needs to fail in the field.
    """
    if db.engine.dialect.name != 'sqlite':
        return db

    @sa.event.listens_for(db.engine, 'begin')
    def _begin(conn):
        conn.info['first_statement'] = None

    @sa.event.listens_for(db.engine, 'before_cursor_execute')
    def _statement(conn, cursor, statement, parameters, context,
                   executemany):
        verb = _verb(statement)
        first = conn.info.get('first_statement', '')
        if first is None:
            if verb not in _NEITHER:
                conn.info['first_statement'] = (
                    '' if _writes(verb, context) else statement)
        elif first and _writes(verb, context):
            VIOLATIONS.append(statement)
            raise AssertionError(
                'a transaction read first (%s) and wrote later (%s): on '
                'SQLite it fails at once if another process writes in '
                'between; write first' % (first, statement))

    return db


def url_for(folder, name='rbdmig.sqlite', query=''):
    """Return the SQLAlchemy URL of an SQLite file in ``folder``."""
    return 'sqlite:///%s/%s%s' % (folder, name, query)


def make_db(folder, name='rbdmig.sqlite', query=''):
    """Return an API on a new SQLite file in ``folder``, schema applied."""
    db = guarded(api.API(url_for(folder, name, query)))
    migration.db_sync(db.engine)
    return db


def set_row(db, model, row_id, **values):
    """Set columns of one row as a test's setup, by an UPDATE (a write
    first: :func:`guarded`)."""
    with db.transaction() as session:
        session.execute(sa.update(model).where(model.id == row_id)
                        .values(**values))


def volume_row(db, volume_id):
    """Return every column of a volume, to compare before and after."""
    volume = db.get_volume(volume_id)
    return {c.name: getattr(volume, c.name)
            for c in volume.__table__.columns}


# Process bodies for the multi-process tests: module-level, so that a
# fresh interpreter (``forkserver`` or ``spawn``) can import them.  Each
# reports failures through ``results`` instead of hanging its parent.

def cas_racer(url, volume_ids, barrier, results):
    """For each volume: wait for the rival, then CAS None -> starting."""
    db = guarded(api.API(url))
    try:
        for volume_id in volume_ids:
            barrier.wait(timeout=60)
            try:
                won = db.compare_and_set_status(
                    volume_id, {'migration_status': None},
                    {'migration_status': 'starting'})
                results.put((volume_id, 'won' if won else 'lost'))
            except Exception as e:
                results.put((volume_id, 'failed: %r' % e))
    finally:
        db.dispose()


def start_racer(url, volume_ids, barrier, results):
    """For each volume: wait for the rival, then start_migration."""
    from rbdmig import exception
    db = guarded(api.API(url))
    try:
        for volume_id in volume_ids:
            barrier.wait(timeout=60)
            try:
                db.start_migration(volume_id, 'ssd', host='racer')
                results.put((volume_id, 'won'))
            except exception.MigrationInProgress:
                results.put((volume_id, 'lost'))
            except Exception as e:
                results.put((volume_id, 'failed: %r' % e))
    finally:
        db.dispose()


def take_over_racer(url, migration_ids, barrier, results):
    """For each migration: read it, wait for the rivals, take it over."""
    db = guarded(api.API(url))
    try:
        for migration_id in migration_ids:
            seen = db.get_migration(migration_id)
            barrier.wait(timeout=60)
            try:
                won = db.take_over(seen)
                results.put((migration_id, 'won' if won else 'lost'))
            except Exception as e:
                results.put((migration_id, 'failed: %r' % e))
    finally:
        db.dispose()


def db_sync_racer(url, names, barrier, results):
    """For each name: wait for the rivals, then apply the schema.

    On the API's engine, as every ``rbdmig`` command does as it starts.
    """
    db = guarded(api.API(url))
    try:
        for name in names:
            barrier.wait(timeout=60)
            try:
                migration.db_sync(db.engine)
                results.put((name, 'synced'))
            except Exception as e:
                results.put((name, 'failed: %r' % e))
    finally:
        db.dispose()


def progress_writer(url, migration_id, total, halfway, go, results):
    """Write half the progress, wait for ``go``, write the rest."""
    db = guarded(api.API(url))
    try:
        for done in (total // 4, total // 2):
            db.update_progress(migration_id, done, bytes_total=total,
                               rate=1e6, eta=9.0)
        db.save_checkpoint(migration_id, total // 2, total // 8)
        halfway.set()
        if not go.wait(timeout=60):
            raise RuntimeError('the reader never said go')
        db.update_progress(migration_id, total, rate=2e6, eta=0.0)
        db.save_checkpoint(migration_id, total, total // 8)
        results.put('done')
    except Exception as e:
        results.put('failed: %r' % e)
    finally:
        db.dispose()
