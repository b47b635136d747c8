"""The database API on volumes: CRUD, listing filters, compare-and-set."""

from oslo_config import cfg
from oslo_db import exception as db_exception
import pytest
import sqlalchemy as sa

from rbdmig.db import api
from rbdmig.db import migration
from rbdmig import exception
from rbdmig.db import states
from rbdmig import opts
from tests.unit import db_fixtures as fx


def test_create_and_get_a_volume(db):
    volume = db.create_volume('hdd', 3, display_name='web')
    assert volume.name == 'volume-%s' % volume.id
    assert (volume.status, volume.migration_status, volume.hidden) == (
        'available', None, False)
    got = db.get_volume(volume.id)
    assert (got.id, got.name, got.size_gib, got.backend, got.display_name) == (
        volume.id, volume.name, 3, 'hdd', 'web')
    assert got.created_at is not None and got.updated_at is not None


def test_create_with_given_id_name_and_status(db):
    volume = db.create_volume('files', 1, id='a' * 36, name='img',
                              status=states.CREATING)
    got = db.get_volume('a' * 36)
    assert (got.name, got.status) == ('img', 'creating')
    assert volume.id == got.id


def test_an_image_is_recorded_once_per_backend(db):
    db.create_volume('hdd', 1, name='img')
    with pytest.raises(exception.VolumeExists):
        db.create_volume('hdd', 2, name='img')
    db.create_volume('ssd', 1, name='img')   # same name elsewhere is fine
    assert len(db.list_volumes()) == 2


def test_an_id_is_recorded_once(db):
    db.create_volume('hdd', 1, id='v1')
    with pytest.raises(exception.VolumeExists):
        db.create_volume('ssd', 1, id='v1')


@pytest.mark.parametrize('kwargs', [
    {'status': states.MAINTENANCE}, {'status': 'bogus'}, {'size_gib': 0},
    {'size_gib': True}, {'size_gib': 1.5}])
def test_create_refuses_bad_input(db, kwargs):
    args = {'backend': 'hdd', 'size_gib': 1}
    args.update(kwargs)
    with pytest.raises(exception.InvalidInput):
        db.create_volume(**args)
    assert db.list_volumes(include_hidden=True) == []


def test_get_a_missing_volume(db):
    with pytest.raises(exception.VolumeNotFound) as err:
        db.get_volume('nope')
    assert str(err.value) == 'Volume nope could not be found.'


def test_list_filters_and_hidden_records(db):
    a = db.create_volume('hdd', 1)
    b = db.create_volume('ssd', 1)
    c = db.create_volume('hdd', 1, status=states.CREATING)
    hidden = db.create_volume('ssd', 1, hidden=True, status=states.CREATING)
    assert db.compare_and_set_status(
        b.id, {'migration_status': None},
        {'migration_status': states.STARTING})

    def ids(**kw):
        return [v.id for v in db.list_volumes(**kw)]

    assert ids() == [a.id, b.id, c.id]
    assert ids(include_hidden=True) == [a.id, b.id, c.id, hidden.id]
    assert ids(backend='hdd') == [a.id, c.id]
    assert ids(backend='ssd') == [b.id]
    assert ids(backend='ssd', include_hidden=True) == [b.id, hidden.id]
    assert ids(migration_status=None) == [a.id, c.id]
    assert ids(migration_status=states.STARTING) == [b.id]
    assert ids(status=states.CREATING) == [c.id]
    assert ids(backend='hdd', status=states.AVAILABLE) == [a.id]
    with pytest.raises(exception.InvalidInput):
        db.list_volumes(size_gib=1)


def test_update_volume_sets_plain_fields_only(db):
    volume = db.create_volume('hdd', 1)
    db.update_volume(volume.id, display_name='db', size_gib=4)
    got = db.get_volume(volume.id)
    assert (got.display_name, got.size_gib) == ('db', 4)
    with pytest.raises(exception.InvalidInput):
        db.update_volume(volume.id, status=states.MAINTENANCE)
    with pytest.raises(exception.InvalidInput):
        db.update_volume(volume.id, colour='red')
    with pytest.raises(exception.VolumeNotFound):
        db.update_volume('nope', display_name='x')
    assert db.get_volume(volume.id).status == states.AVAILABLE


def test_delete_is_idempotent(db):
    volume = db.create_volume('hdd', 1)
    assert db.delete_volume(volume.id) is True
    assert db.delete_volume(volume.id) is False
    with pytest.raises(exception.VolumeNotFound):
        db.get_volume(volume.id)


@pytest.mark.parametrize('status', sorted(states.RUNNING))
def test_delete_refused_while_a_migration_runs(db, status):
    volume = db.create_volume('hdd', 1)
    fx.set_row(db, type(volume), volume.id, migration_status=status)
    with pytest.raises(exception.MigrationInProgress):
        db.delete_volume(volume.id)
    assert db.get_volume(volume.id).migration_status == status


@pytest.mark.parametrize('status', [states.SUCCESS, states.ERROR])
def test_delete_allowed_after_a_migration_ended(db, status):
    volume = db.create_volume('hdd', 1)
    fx.set_row(db, type(volume), volume.id, migration_status=status)
    assert db.delete_volume(volume.id) is True


def test_cas_wins_once_and_a_losing_cas_changes_nothing(db):
    volume = db.create_volume('hdd', 1)
    expected = {'migration_status': None}
    new = {'migration_status': states.STARTING}
    assert db.compare_and_set_status(volume.id, expected, new) is True
    before = fx.volume_row(db, volume.id)
    assert db.compare_and_set_status(volume.id, expected, new) is False
    assert fx.volume_row(db, volume.id) == before
    assert before['migration_status'] == states.STARTING


def test_cas_compares_every_expected_field(db):
    volume = db.create_volume('hdd', 1)
    before = fx.volume_row(db, volume.id)
    assert not db.compare_and_set_status(
        volume.id, {'status': states.AVAILABLE, 'migration_status': None,
                    'backend': 'ssd'},
        {'status': states.MAINTENANCE, 'previous_status': 'available'})
    assert fx.volume_row(db, volume.id) == before
    assert db.compare_and_set_status(
        volume.id, {'status': states.AVAILABLE, 'backend': 'hdd'},
        {'status': states.MAINTENANCE, 'previous_status': 'available'})
    got = db.get_volume(volume.id)
    assert (got.status, got.previous_status) == ('maintenance', 'available')


def test_cas_refuses_an_illegal_transition_and_changes_nothing(db):
    volume = db.create_volume('hdd', 1)
    before = fx.volume_row(db, volume.id)
    with pytest.raises(exception.InvalidTransition):
        db.compare_and_set_status(volume.id, {'migration_status': None},
                                  {'migration_status': states.SUCCESS})
    with pytest.raises(exception.InvalidTransition):
        db.compare_and_set_status(volume.id, {'status': states.AVAILABLE},
                                  {'status': states.CREATING})
    with pytest.raises(exception.InvalidInput):
        db.compare_and_set_status(volume.id, {},
                                  {'migration_status': states.STARTING})
    assert fx.volume_row(db, volume.id) == before


def test_cas_on_a_missing_volume(db):
    with pytest.raises(exception.VolumeNotFound):
        db.compare_and_set_status('nope', {'migration_status': None},
                                  {'migration_status': states.STARTING})


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(
        tmp_path):
    db = fx.make_db(tmp_path)
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql(
                'PRAGMA journal_mode').scalar() == 'wal'
            assert conn.exec_driver_sql('PRAGMA foreign_keys').scalar() == 1
            assert conn.exec_driver_sql(
                'PRAGMA busy_timeout').scalar() == 30000
    finally:
        db.dispose()


def test_postgresql_transactions_are_read_committed(postgresql):
    """The claims are written for PostgreSQL's default isolation level."""
    db = api.API(postgresql.url)
    try:
        with db.transaction() as session:
            level = session.execute(
                sa.text('SHOW transaction_isolation')).scalar()
    finally:
        db.dispose()
    assert level == 'read committed'


def test_from_conf_uses_the_file_under_state_path(tmp_path):
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    conf([], project='rbdmig-test', default_config_files=[])
    conf.set_override('state_path', str(tmp_path / 'state'))
    db = api.API.from_conf(conf)
    try:
        migration.db_sync(db.engine)
        db.create_volume('hdd', 1)
    finally:
        db.dispose()
    assert (tmp_path / 'state' / 'rbdmig.sqlite').is_file()


def test_the_tests_refuse_a_transaction_that_reads_first(tmp_path):
    """The guard every SQLite API test runs under (db_fixtures.guarded)."""
    db = fx.make_db(tmp_path)
    try:
        volume = db.create_volume('hdd', 1)
        # oslo.db wraps what fails during a statement in a DBError
        with pytest.raises(db_exception.DBError, match='read first'):
            with db.transaction() as session:
                session.get(type(volume), volume.id).migration_status = (
                    states.STARTING)
        assert len(fx.VIOLATIONS) == 1  # the test would fail on it
        del fx.VIOLATIONS[:]
        with db.transaction() as session:  # what the guard lets by
            session.execute(sa.text('SAVEPOINT s'))
            session.execute(sa.text(
                "UPDATE volumes SET status = 'error' WHERE id = :id"),
                {'id': volume.id})
            session.get(type(volume), volume.id)
        # db_sync's BEGIN IMMEDIATE counts as the write (make_db ran it)
        assert fx.VIOLATIONS == []
        assert db.get_volume(volume.id).migration_status is None
    finally:
        db.dispose()
