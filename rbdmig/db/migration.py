"""Schema migrations: bring a database to the newest schema with alembic."""

from alembic import command as alembic_command
from alembic import config as alembic_config
from alembic import migration as alembic_migration
from oslo_log import log as logging
import sqlalchemy as sa

from rbdmig.db import sqlite

LOG = logging.getLogger(__name__)

# The scripts ship inside the package (no alembic.ini to find).
SCRIPT_LOCATION = 'rbdmig.db:migrations'
# The PostgreSQL advisory lock db_sync holds: any number, the same for all.
_SCHEMA_LOCK = 0x72626d67


def alembic_config_for(connection=None):
    """Return the alembic ``Config`` of rbdmig's migration scripts.

    To write a new migration against a scratch database::

        cfg = alembic_config_for()
        cfg.set_main_option('sqlalchemy.url', 'sqlite:////tmp/scratch.db')
        alembic.command.upgrade(cfg, 'head')
        alembic.command.revision(cfg, 'what it does', autogenerate=True)

    :param connection: a SQLAlchemy Connection the scripts run on.
    """
    config = alembic_config.Config()
    config.set_main_option('script_location', SCRIPT_LOCATION)
    if connection is not None:
        config.attributes['connection'] = connection
    return config


def _engine(engine_or_url):
    """Return ``(engine, made)``; ``made`` if it is ours to dispose of."""
    if isinstance(engine_or_url, sa.engine.Engine):
        return engine_or_url, False
    url = sqlite.prepare_url(str(engine_or_url))
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    sqlite.on_engine_create(engine)
    return engine, True


def _lock_schema(connection):
    """Wait until no other process changes the schema, until commit.

    Processes starting at once on a new database (hosts sharing one
    PostgreSQL, commands on one host) would each create the tables, and
    all but one fail.  Serialized, the later ones find the schema there.
    """
    if connection.dialect.name == 'postgresql':
        connection.execute(sa.text('SELECT pg_advisory_xact_lock(:key)'),
                           {'key': _SCHEMA_LOCK})
    elif connection.dialect.name == 'sqlite':
        # The write lock first (waiting out the busy timeout), and the DDL
        # inside the transaction, where Python's sqlite3 would run it
        # outside any.  oslo.db's engines have begun a deferred
        # transaction already, with nothing in it yet: end it first.
        raw = connection.connection.driver_connection
        if raw.in_transaction:
            raw.rollback()
        connection.exec_driver_sql('BEGIN IMMEDIATE')


def db_sync(engine_or_url, revision='head'):
    """Upgrade the database to ``revision`` (the newest by default).

    Works on an empty or missing SQLite file and does nothing when the
    schema is already there, so it can run at every start, on every host
    at once (:func:`_lock_schema`).

    :param engine_or_url: an Engine, or a SQLAlchemy URL.
    """
    engine, made = _engine(engine_or_url)
    try:
        with engine.begin() as connection:
            _lock_schema(connection)
            LOG.debug('Upgrading the database to %s.', revision)
            alembic_command.upgrade(alembic_config_for(connection), revision)
    finally:
        if made:
            engine.dispose()


def db_version(engine_or_url):
    """Return the database's alembic revision, None if it has no schema."""
    engine, made = _engine(engine_or_url)
    try:
        with engine.connect() as connection:
            context = alembic_migration.MigrationContext.configure(
                connection)
            return context.get_current_revision()
    finally:
        if made:
            engine.dispose()
