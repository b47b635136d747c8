"""Schema migrations: db_sync on fresh files, and models matching them."""

import shutil
import tempfile
import unittest

from alembic import script as alembic_script
from oslo_db.sqlalchemy import test_migrations
import sqlalchemy as sa

from rbdmig.db import migration
from rbdmig.db import models
from rbdmig.db import sqlite


def _head():
    scripts = alembic_script.ScriptDirectory.from_config(
        migration.alembic_config_for())
    heads = scripts.get_heads()
    assert len(heads) == 1, 'migration scripts branch: %s' % heads
    return heads[0]


def _tables(url):
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_db_sync_creates_a_fresh_file_in_a_missing_folder(tmp_path):
    url = 'sqlite:///%s' % (tmp_path / 'state' / 'rbdmig.sqlite')
    assert migration.db_version(url) is None
    migration.db_sync(url)
    assert (tmp_path / 'state' / 'rbdmig.sqlite').is_file()
    assert migration.db_version(url) == _head()
    assert {'volumes', 'migrations', 'alembic_version'} <= _tables(url)


def test_db_sync_twice_changes_nothing(tmp_path):
    url = 'sqlite:///%s' % (tmp_path / 'rbdmig.sqlite')
    migration.db_sync(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(models.Volume.__table__.insert().values(
            id='v1', name='volume-v1', size_gib=1, backend='b',
            status='available', hidden=False,
            created_at=sa.func.now(), updated_at=sa.func.now()))
    migration.db_sync(url)
    with engine.connect() as conn:
        names = conn.execute(sa.select(models.Volume.name)).scalars().all()
    engine.dispose()
    assert names == ['volume-v1']
    assert migration.db_version(url) == _head()


def test_db_sync_takes_an_engine_and_leaves_it_open(tmp_path):
    engine = sa.create_engine('sqlite:///%s' % (tmp_path / 'e.sqlite'))
    migration.db_sync(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text('SELECT count(*) FROM migrations')
                            ).scalar() == 0
    assert migration.db_version(engine) == _head()
    engine.dispose()


class TestModelsMigrationsSync(test_migrations.ModelsMigrationsSync,
                               unittest.TestCase):
    """alembic's autogenerate finds no difference after db_sync."""

    def setUp(self):
        super().setUp()
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        self.engine = sa.create_engine('sqlite:///%s/sync.sqlite' % folder,
                                       poolclass=sa.pool.NullPool)
        self.addCleanup(self.engine.dispose)

    def db_sync(self, engine):
        migration.db_sync(engine)

    def get_engine(self):
        return self.engine

    def get_metadata(self):
        return models.Base.metadata


def test_prepare_url_adds_a_busy_timeout_unless_given(tmp_path):
    url = sqlite.prepare_url('sqlite:///%s/a.db' % tmp_path)
    assert sa.engine.make_url(url).query['timeout'] == str(
        sqlite.BUSY_TIMEOUT)
    url = sqlite.prepare_url('sqlite:///%s/a.db?timeout=2' % tmp_path)
    assert sa.engine.make_url(url).query['timeout'] == '2'


def test_prepare_url_leaves_other_databases_alone():
    url = 'postgresql://rbdmig:s3cret@db.example/rbdmig'
    assert sqlite.prepare_url(url) == url


def test_wal_and_busy_timeout_on_new_connections(tmp_path):
    engine = sa.create_engine(sqlite.prepare_url(
        'sqlite:///%s/w.db?timeout=7' % tmp_path))
    sqlite.on_engine_create(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql('PRAGMA journal_mode').scalar() == 'wal'
        assert conn.exec_driver_sql('PRAGMA busy_timeout').scalar() == 7000
    engine.dispose()
