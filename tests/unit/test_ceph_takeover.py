"""Who may take a move over, and a move that lost its record or stood."""

import errno

import pytest

from rbdmig import exception
from rbdmig import faults
from rbdmig.ceph import journal
from rbdmig.ceph import liveness
from rbdmig.ceph import location
from rbdmig.ceph import migrate
from rbdmig.ceph import recover
from rbdmig.ceph.methods import base
from rbdmig.migration import phases
from tests.unit import rbd_fixtures as fx

DATA = b'takeover' * 8192


@pytest.fixture
def ceph():
    return fx.make_ceph()


def _journal(ceph, pool='hdd'):
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx(pool)
    return journal.Journal(ceph.rados, ioctx)


def _images(ceph, pool):
    return sorted(ceph.clusters[fx.CONF_A].pools[pool])


def _record(image='volume-1', host=None):
    dest = location.LocationInfo('ceph', fx.CONF_A, fx.FSID, 'admin',
                                 'ssd')._asdict()
    record = journal.Record.new(image, 'copy', 'hdd', dest)
    if host:
        record.host = host
    return record


def _cannot_list(monkeypatch):
    """Ceph cannot say who watches the journal (no rados tool)."""
    def cannot_list(*args, **kwargs):
        raise exception.VolumeBackendAPIException(
            data='the rados tool (ceph-common) is needed')
    monkeypatch.setattr(liveness, 'watchers', cannot_list)


class _Told(recover.Authority):
    """Records what it is told; names the destination if ``dest``."""

    def __init__(self, dest=False):
        self.dest = dest
        self.calls = []

    def names(self, record):
        return phases.DEST if self.dest else phases.SOURCE

    def moved(self, record):
        self.calls.append('moved')

    def restored(self, record):
        self.calls.append('restored')

    def settle(self, record, decision):
        self.calls.append(decision)


# -- a phase written by a process whose record was taken over -----------------

def test_a_phase_write_after_the_record_was_finished_recreates_nothing(
        ceph):
    pool_journal = _journal(ceph)
    record = _record()
    pool_journal.claim(record)
    pool_journal.finish(record)  # a recovery took it over and ended it

    with pytest.raises(ceph.rados.ObjectNotFound):
        pool_journal.update(record, journal.COPYING)

    assert pool_journal.get(record.image) is None
    assert pool_journal.records() == []


def test_a_phase_write_never_overwrites_the_next_migrations_record(ceph):
    pool_journal = _journal(ceph)
    old, new = _record(), _record()
    pool_journal.claim(old)
    pool_journal.finish(old)
    pool_journal.claim(new)  # the image was claimed again since

    with pytest.raises(ceph.rados.Error) as raised:
        pool_journal.update(old, journal.COPYING)

    assert raised.value.errno == errno.ECANCELED
    kept = pool_journal.get(new.image)
    assert (kept.id, kept.phase) == (new.id, journal.CLAIMED)


# -- forced recovery ----------------------------------------------------------

@pytest.mark.parametrize('listable', [True, False])
def test_a_forced_recovery_leaves_a_move_running_on_this_host_alone(
        ceph, monkeypatch, listable):
    # Its lock is held: a process of this host runs it, whatever the
    # operator forces and whether Ceph can list the journal's watchers.
    src = fx.make_driver(ceph, pool='hdd')
    pool_journal, record = _journal(ceph), _record()
    record.clients = {'source': pool_journal.ioctx.client_id}
    pool_journal.claim(record)
    if not listable:
        _cannot_list(monkeypatch)
    with journal.running(record), liveness.watching(
            pool_journal.ioctx, pool_journal.oid(record)):
        outcomes = recover.recover(src.backend(), any_host=True)

    assert [o.action for o in outcomes] == ['skipped']
    assert ceph.blocklist == []
    assert [r.id for r in pool_journal.records()] == [record.id]


@pytest.mark.parametrize('any_host', [False, True])
def test_without_a_watcher_list_another_hosts_move_is_left_alone(
        ceph, monkeypatch, any_host):
    # Its client could not be fenced off: forced or not, it is left.
    src = fx.make_driver(ceph, pool='hdd')
    record = _record(host='host-b')
    _journal(ceph).claim(record)
    _journal(ceph).update(record, journal.COPYING)
    _cannot_list(monkeypatch)

    outcomes = recover.recover(src.backend(), any_host=any_host)

    assert [o.action for o in outcomes] == ['skipped']
    assert [r.id for r in _journal(ceph).records()] == [record.id]


@pytest.mark.parametrize('any_host', [False, True])
def test_without_a_watcher_list_this_hosts_dead_move_is_recovered(
        ceph, monkeypatch, any_host):
    src = fx.make_driver(ceph, pool='hdd')
    record = _record()
    record.lock_dir = '/nonexistent-rbdmig-test'  # its process is gone
    _journal(ceph).claim(record)
    _cannot_list(monkeypatch)

    outcomes = recover.recover(src.backend(), any_host=any_host)

    assert [o.action for o in outcomes] == ['released']
    assert _journal(ceph).records() == []


def test_a_move_whose_record_was_taken_over_fails_and_removes_nothing(
        ceph, monkeypatch):
    # A recovery takes the move over once the copy holds the name (here
    # by force: its liveness test patched), and gives the source back.
    # The move then journals the source's removal: the write fails, the
    # record is not recreated, and the move does not report success.
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='copy')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    real_place = base.Method.place
    taken = []

    def place_then_taken_over(self, move):
        real_place(self, move)
        with monkeypatch.context() as patch:
            patch.setattr(recover, '_owner_alive', lambda *a: False)
            taken.extend(recover.recover(src.backend()))

    monkeypatch.setattr(base.Method, 'place', place_then_taken_over)

    with pytest.raises(exception.MigrationError, match='journaling'):
        migrate.migrate(src.backend(), volume, fx.host_of(dst))

    assert [o.action for o in taken] == ['rolled back']
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _images(ceph, 'hdd') == [volume.name]
    assert _images(ceph, 'ssd') == []
    assert _journal(ceph).records() == []


@pytest.mark.parametrize('method', ['copy', 'live'])
def test_a_move_that_cannot_journal_the_removal_gives_the_source_back(
        ceph, monkeypatch, method):
    # The journal write of ``removing`` fails (the cluster did not
    # answer in time): nothing is removed unjournaled; the source gets
    # its name back and the authority, told of the copy, is told again.
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    told = _Told()

    def once_placed(name):
        if name == 'engine.placed':  # the next journal write fails
            ceph.fail('operate_write_op', ceph.rados.TimedOut('slow OSD'),
                      times=1)

    monkeypatch.setattr(faults.POINTS, 'hook', once_placed)
    with pytest.raises(exception.MigrationError, match='journaling'):
        migrate.migrate(src.backend(), volume, fx.host_of(dst),
                        authority=told)

    assert told.calls == ['moved', 'restored']
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _images(ceph, 'hdd') == [volume.name]
    assert _images(ceph, 'ssd') == []
    assert _journal(ceph).records() == []


# -- give-backs that tell the authority ---------------------------------------

@pytest.mark.parametrize('method', ['copy', 'live'])
def test_a_move_given_back_after_moved_failed_tells_the_authority(
        ceph, method):
    class SavedThenFailed(_Told):
        def moved(self, record):
            super().moved(record)
            raise ConnectionError('the answer was lost')

    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    told = SavedThenFailed()

    with pytest.raises(exception.MigrationError, match='recording that'):
        migrate.migrate(src.backend(), volume, fx.host_of(dst),
                        authority=told)

    assert told.calls == ['moved', 'restored']
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _images(ceph, 'ssd') == []
    assert _journal(ceph).records() == []


def test_an_authority_that_cannot_be_told_keeps_the_record_for_recovery(
        ceph, monkeypatch):
    # live, aborted at the end (a client opened the image): telling the
    # authority fails; the record stays, and recovery settles it.
    class CannotBeTold(_Told):
        def restored(self, record):
            super().restored(record)
            raise ConnectionError('the database went away')

    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='live')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    ceph.fail('migration_commit', ceph.rbd.ImageBusy('watcher appeared'),
              times=1)
    told = CannotBeTold()

    with pytest.raises(exception.MigrationRefused):
        migrate.migrate(src.backend(), volume, fx.host_of(dst),
                        authority=told)
    (left,) = _journal(ceph).records()
    assert left.phase == journal.REMOVING

    outcomes = recover.recover(src.backend(), authority=told)

    assert [o.action for o in outcomes] == ['released']
    assert told.calls == ['moved', 'restored', phases.RELEASE]
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _images(ceph, 'ssd') == []
    assert _journal(ceph).records() == []


# -- a move that stood, its record not closed ---------------------------------

def _closing_fails(ceph, monkeypatch, what):
    """Closing the record (a move calls it once, at its end) fails: its
    index write (the record is gone) or all of it (the record stays)."""
    def timed_out(*args):
        raise ceph.rados.TimedOut('%s timed out' % what)

    monkeypatch.setattr(journal.Journal, '_forget' if (
        what == 'the index write') else 'finish', timed_out)


@pytest.mark.parametrize('names_dest', [False, True])
@pytest.mark.parametrize('what', ['the index write', 'the record'])
@pytest.mark.parametrize('method', ['copy', 'deep_copy', 'live'])
def test_a_move_whose_record_could_not_be_closed_stood(
        ceph, monkeypatch, method, what, names_dest):
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    told = _Told(dest=names_dest)
    with monkeypatch.context() as patch:
        _closing_fails(ceph, patch, what)
        assert migrate.migrate(src.backend(), volume, fx.host_of(dst),
                               authority=told) == (True, None)
    assert _images(ceph, 'hdd') == []

    outcomes = recover.recover(src.backend(), authority=told)

    if what == 'the index write':
        assert outcomes == []  # the key without its record is dropped
        assert told.calls == ['moved']
    else:
        # Left at ``removing``: completed (never released, which would
        # have the authority name the source, where nothing is left).
        done = 'released' if method == 'live' else 'completed'
        assert [o.action for o in outcomes] == [done]
        assert told.calls == ['moved', phases.COMPLETE if (
            names_dest or method == 'live') else phases.ADOPT]
    assert _images(ceph, 'hdd') == []
    assert _images(ceph, 'ssd') == [volume.name]
    assert fx.read_head(ceph, 'ssd', volume.name, len(DATA)) == DATA
    assert ceph.image(fx.CONF_A, 'ssd', volume.name).metadata == {}
    assert _journal(ceph).records() == []
