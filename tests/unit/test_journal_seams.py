"""The journal's seams: a record closed only while it is the move's own,
and a phase write that fails as the source retires or the copy is placed.

Faults are injected at named crash points (:mod:`rbdmig.faults`, the
``at_point`` fixture) or by the fake's hooks, never by sleeping.
"""

import errno

import pytest

from rbdmig import exception
from rbdmig.ceph import journal
from rbdmig.ceph import location
from rbdmig.ceph import recover
from tests.unit import rbd_fixtures as fx

DATA = b'journal seams' * 5000


@pytest.fixture
def ceph():
    return fx.make_ceph()


def _journal(ceph, pool='hdd'):
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx(pool)
    return journal.Journal(ceph.rados, ioctx)


def _images(ceph, pool):
    return sorted(ceph.clusters[fx.CONF_A].pools[pool])


def _record(image='volume-1'):
    dest = location.LocationInfo('ceph', fx.CONF_A, fx.FSID, 'admin',
                                 'ssd')._asdict()
    return journal.Record.new(image, 'copy', 'hdd', dest)


def _take_over(ceph, record):
    """Another process (a recovery) ends ``record`` and a new migration
    claims its image: return the new migration's record."""
    _journal(ceph).finish(record)
    successor = _record(record.image)
    _journal(ceph).claim(successor)
    return successor


# -- closing a record: only while it is the move's own ------------------------

def test_closing_a_record_never_removes_the_next_migrations(ceph,
                                                            monkeypatch):
    # The runner closes its record; just before that write reaches Ceph
    # (whatever it read before), a recovery elsewhere ended the record and
    # a new migration claimed the image.  The successor's record stays,
    # and the runner is told (a refused compare, as update's).
    runner, record = _journal(ceph), _record()
    runner.claim(record)
    oid, taken = runner.oid(record), []

    def taken_over_first(call):
        def write(*args):
            if oid in args and not taken:
                taken.append(_take_over(ceph, record))
            return call(*args)
        return write

    for name in ('operate_write_op', 'remove_object'):
        monkeypatch.setattr(runner.ioctx, name,
                            taken_over_first(getattr(runner.ioctx, name)))

    with pytest.raises(ceph.rados.Error) as raised:
        runner.finish(record)

    assert raised.value.errno == errno.ECANCELED
    assert journal.taken_over(raised.value)
    (successor,) = taken
    kept = _journal(ceph).get(record.image)
    assert (kept.id, kept.phase) == (successor.id, journal.CLAIMED)
    assert [r.id for r in _journal(ceph).records()] == [successor.id]


def test_closing_a_record_already_closed_is_done(ceph):
    # A recovery that took the move over closed it first: nothing is
    # left to remove, and nothing is refused.
    runner, record = _journal(ceph), _record()
    runner.claim(record)
    _journal(ceph).finish(record)

    runner.finish(record)

    assert runner.get(record.image) is None
    assert runner.records() == []


def test_a_move_undone_after_its_record_was_taken_fails_cleanly(
        ceph, at_point):
    # Taken over as its copy began: the move's next phase write is
    # refused, it removes its own copy, and closing its record is refused
    # too; it fails with rbdmig's error, the successor's record kept.
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='copy')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    taken = []
    at_point['engine.copying'] = lambda: taken.append(
        _take_over(ceph, _journal(ceph).get(volume.name)))

    with pytest.raises(exception.MigrationError, match='source is intact'):
        src.migrate_volume(None, volume, fx.host_of(dst))

    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _images(ceph, 'hdd') == [volume.name]
    assert _images(ceph, 'ssd') == []
    assert [r.id for r in _journal(ceph).records()] == [taken[0].id]


def test_a_recovery_whose_record_was_taken_meanwhile_says_so(ceph):
    # Two recoveries race: while this one tells the authority, the other
    # ends the record and a new migration claims the image.  This one's
    # closing is refused: the successor's record stays, and the outcome
    # says what was done, not that the record stays in the journal.
    src = fx.make_driver(ceph, pool='hdd')
    volume = fx.make_volume(ceph, data=DATA)
    record = _record(volume.name)
    record.lock_dir = '/nonexistent-rbdmig-test'  # its process is gone
    _journal(ceph).claim(record)
    _journal(ceph).update(record, journal.COPYING)
    taken = []

    class Racing(recover.Authority):
        def settle(self, record, decision):
            taken.append(_take_over(ceph, record))

    (outcome,) = recover.recover(src.backend(), authority=Racing())

    assert outcome.action == 'rolled back'
    assert 'another migration' in outcome.detail
    assert [r.id for r in _journal(ceph).records()] == [taken[0].id]
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA


# -- a phase write that fails as the source retires or the copy is placed -----

def _journal_fails(ceph, error, times=1):
    """The next ``times`` journal writes fail with ``error``."""
    return lambda: ceph.fail('operate_write_op', error, times=times)


@pytest.mark.parametrize('timed_out', [False, True])
@pytest.mark.parametrize('method', ['copy', 'live'])
def test_a_move_that_cannot_journal_retiring_fails_with_the_source_named(
        ceph, at_point, method, timed_out):
    # The copy is verified; journaling ``retiring`` fails.  Nothing was
    # renamed: the move fails with rbdmig's error, the source intact
    # under its name; what it built is removed, or, the cluster not
    # answering, left to recovery, which removes it.
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    error = (ceph.rados.TimedOut('slow OSD') if timed_out else
             ceph.rados.Error('OSD said no', errno=errno.EIO))
    at_point['engine.verified'] = _journal_fails(ceph, error)

    with pytest.raises(exception.MigrationError,
                       match='journaling the retirement') as raised:
        src.migrate_volume(None, volume, fx.host_of(dst))

    assert 'intact under its name in pool hdd' in str(raised.value)
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _images(ceph, 'hdd') == [volume.name]
    if timed_out and method != 'live':
        # Cleanup would wait as long again; live's source is librbd's
        # until aborted, so it is given back all the same.
        assert 'rbdmig recover' in str(raised.value)
        (left,) = _journal(ceph).records()
        assert left.phase == journal.VERIFIED
        outcomes = recover.recover(src.backend())
        assert [o.action for o in outcomes] == ['rolled back']
    assert _images(ceph, 'ssd') == []
    assert _images(ceph, 'hdd') == [volume.name]
    assert _journal(ceph).records() == []


@pytest.mark.parametrize('timed_out', [False, True])
@pytest.mark.parametrize('method', ['copy', 'live'])
def test_a_move_that_cannot_journal_placed_gives_the_source_back(
        ceph, at_point, method, timed_out):
    # The source is retired (out of clients' reach); journaling
    # ``placed`` fails.  The move gives the source its name back (worth
    # a second wait: until then no client reaches the volume), removes
    # the copy and fails with rbdmig's error.
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    error = (ceph.rados.TimedOut('slow OSD') if timed_out else
             ceph.rados.Error('OSD said no', errno=errno.EIO))
    at_point['engine.retiring'] = _journal_fails(ceph, error)

    with pytest.raises(exception.MigrationError,
                       match='journaling the placing') as raised:
        src.migrate_volume(None, volume, fx.host_of(dst))

    assert 'intact under its name in pool hdd' in str(raised.value)
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _images(ceph, 'hdd') == [volume.name]
    assert _images(ceph, 'ssd') == []
    assert _journal(ceph).records() == []


@pytest.mark.parametrize('method', ['copy', 'live'])
def test_a_move_that_cannot_journal_placed_nor_give_back_says_where(
        ceph, at_point, method):
    # The journal keeps failing: the give-back's own write fails too,
    # so nothing more is touched.  The error says where the source is
    # and that recovery gives it back; recovery does.
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    at_point['engine.retiring'] = _journal_fails(
        ceph, ceph.rados.TimedOut('slow OSD'), times=2)

    with pytest.raises(exception.MigrationError,
                       match='journaling the placing') as raised:
        src.migrate_volume(None, volume, fx.host_of(dst))

    (left,) = _journal(ceph).records()
    assert left.phase == journal.RETIRING
    message = str(raised.value)
    assert 'rbdmig recover' in message and 'pool hdd' in message
    if method != 'live':
        assert left.retired in message
        assert _images(ceph, 'hdd') == [left.retired]

    outcomes = recover.recover(src.backend())

    assert [o.action for o in outcomes] == [
        'aborted' if method == 'live' else 'rolled back']
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _images(ceph, 'hdd') == [volume.name]
    assert _images(ceph, 'ssd') == []
    assert _journal(ceph).records() == []

