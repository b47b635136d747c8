"""Alembic environment: runs rbdmig's migration scripts online."""

from alembic import context
import sqlalchemy as sa

from rbdmig.db import models

config = context.config
target_metadata = models.Base.metadata


def _run(connection):
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode copies the table.
        render_as_batch=connection.dialect.name == 'sqlite',
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run on the caller's connection, else on ``sqlalchemy.url``."""
    connection = config.attributes.get('connection')
    if connection is not None:
        _run(connection)
        return
    engine = sa.create_engine(config.get_main_option('sqlalchemy.url'),
                              poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError('rbdmig runs its migrations online only.')
run_migrations_online()
