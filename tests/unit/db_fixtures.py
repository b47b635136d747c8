"""Builders shared by the database tests: a fresh SQLite file per test."""

from rbdmig.db import api
from rbdmig.db import migration


def url_for(folder, name='rbdmig.sqlite', query=''):
    """Return the SQLAlchemy URL of an SQLite file in ``folder``."""
    return 'sqlite:///%s/%s%s' % (folder, name, query)


def make_db(folder, name='rbdmig.sqlite', query=''):
    """Return an API on a new SQLite file in ``folder``, schema applied."""
    db = api.API(url_for(folder, name, query))
    migration.db_sync(db.engine)
    return db


def volume_row(db, volume_id):
    """Return every column of a volume, to compare before and after."""
    volume = db.get_volume(volume_id)
    return {c.name: getattr(volume, c.name)
            for c in volume.__table__.columns}


# Process bodies for the multi-process tests: module-level, so that the
# ``spawn`` start method can import them in a fresh interpreter.  Each
# reports failures through ``results`` instead of hanging its parent.

def cas_racer(url, volume_ids, barrier, results):
    """For each volume: wait for the rival, then CAS None -> starting."""
    db = api.API(url)
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
    db = api.API(url)
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


def progress_writer(url, migration_id, total, halfway, go, results):
    """Write half the progress, wait for ``go``, write the rest."""
    db = api.API(url)
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
