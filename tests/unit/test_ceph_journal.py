"""The migration journal and recovery, against fake librados/librbd."""

import pytest

from rbdmig import exception
from rbdmig import ext
from rbdmig.ceph import journal
from rbdmig.ceph import liveness
from rbdmig.ceph import location
from rbdmig.ceph import methods
from rbdmig.ceph import recover
from rbdmig.migration import phases
from rbdmig.migration import progress
from tests.unit import rbd_fixtures as fx

DATA = b'journal' * 9000
METHODS = sorted(methods.METHODS)


@pytest.fixture
def ceph():
    return fx.make_ceph()


def _journal(ceph, pool='hdd', conf=fx.CONF_A):
    ioctx = ceph.rados.Rados(conffile=conf).open_ioctx(pool)
    return journal.Journal(ceph.rados, ioctx)


def _images(ceph, pool, conf=fx.CONF_A):
    return sorted(ceph.clusters[conf].pools[pool])


def _dest(pool='ssd', fsid=fx.FSID, conf=fx.CONF_A):
    return location.LocationInfo('ceph', conf, fsid, 'admin', pool)._asdict()


def test_a_second_claim_on_an_image_is_refused(ceph):
    first = journal.Record.new('volume-1', 'copy', 'hdd', _dest())
    second = journal.Record.new('volume-1', 'extents', 'hdd', _dest())
    _journal(ceph).claim(first)
    with pytest.raises(exception.MigrationInProgress,
                       match='volume-1 is already being migrated '
                             '.migration %s' % first.id):
        _journal(ceph).claim(second)
    assert [r.id for r in _journal(ceph).records()] == [first.id]
    _journal(ceph).finish(first)
    assert _journal(ceph).records() == []
    assert ceph.clusters[fx.CONF_A].objects['hdd']['rbdmig_migrations'][
        'omap'] == {}


def test_an_index_key_without_its_record_is_dropped(ceph):
    record = journal.Record.new('volume-2', 'copy', 'hdd', _dest())
    _journal(ceph).claim(record)
    # As if the process died between the index and the record:
    ceph.clusters[fx.CONF_A].objects['hdd'].pop(
        journal.RECORD_PREFIX + 'volume-2')
    assert _journal(ceph).records() == []
    assert ceph.clusters[fx.CONF_A].objects['hdd']['rbdmig_migrations'][
        'omap'] == {}


def test_the_record_says_nothing_secret_and_round_trips():
    record = journal.Record.new('volume-3', 'live', 'hdd', _dest(),
                                live=True)
    assert record.temp == 'volume-3'  # live builds under the final name
    again = journal.Record.from_bytes(record.to_bytes())
    assert again == record
    assert not journal.Record.new('v', 'copy', 'hdd', _dest()).temp == 'v'


def test_a_migration_in_progress_is_a_refusal(ceph):
    src = fx.make_driver(ceph, pool='hdd')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    other = journal.Record.new(volume.name, 'copy', 'hdd', _dest())
    _journal(ceph).claim(other)

    with pytest.raises(exception.MigrationRefused):
        src.migrate_volume(None, volume, fx.host_of(dst))
    assert _images(ceph, 'ssd') == []
    assert [r.id for r in _journal(ceph).records()] == [other.id]


@pytest.mark.parametrize('method', METHODS)
def test_a_finished_migration_leaves_no_trace(ceph, method):
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)
    assert _images(ceph, 'ssd') == [volume.name]  # no temporary name left
    assert journal.TAG not in ceph.image(fx.CONF_A, 'ssd',
                                         volume.name).metadata
    assert _journal(ceph).records() == []


# -- defect 1: cleanup must never remove someone else's image ------------

@pytest.mark.parametrize('method', ['copy', 'deep_copy', 'clone_flatten',
                                    'extents'])
def test_a_racing_creator_keeps_its_image(ceph, method, monkeypatch):
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    theirs = fx.make_volume(ceph, pool='ssd', data=b'not yours')
    racer = ceph.image(fx.CONF_A, 'ssd', theirs.name)
    host = fx.host_of(dst)
    # Someone creates the volume's name in the destination pool while
    # the copy runs (after the name was checked).
    real = ceph.rbd.RBD.rename

    def rename(self, ioctx, old, new):
        if ioctx.pool == 'ssd':
            ioctx.images[new] = racer
        return real(self, ioctx, old, new)

    monkeypatch.setattr(ceph.rbd.RBD, 'rename', rename)

    with pytest.raises(exception.MigrationRefused):
        src.migrate_volume(None, volume, host)
    assert ceph.image(fx.CONF_A, 'ssd', volume.name) is racer
    assert fx.read_head(ceph, 'ssd', volume.name, 9) == b'not yours'
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert sorted(_images(ceph, 'ssd')) == sorted([theirs.name,
                                                   volume.name])
    assert _journal(ceph).records() == []


# -- defect 2: a cancel at the very end leaves no orphan ------------------

@pytest.mark.parametrize('method', METHODS)
def test_a_cancel_at_the_last_update_leaves_one_copy(ceph, method):
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)

    class CancelAtTheEnd(progress.Callback):
        def call(self):
            if self.size and self.value >= self.size:
                raise KeyboardInterrupt('operator pressed ^C at 100%')

    with pytest.raises(KeyboardInterrupt):
        src.migrate_volume(None, volume, fx.host_of(dst),
                           callback=CancelAtTheEnd())
    assert _images(ceph, 'ssd') == []
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _journal(ceph).records() == []


# -- defect 3: recovery of what a killed process left ---------------------

def _undo(monkeypatch):
    """Undo the test's patches, as if the process had died; the fake
    still has no compiled extension (tests/unit/conftest.py)."""
    monkeypatch.undo()
    monkeypatch.setenv(ext.DISABLE_ENV, '1')


def _dead(record):
    # Its lock file is not held: as after the process died.
    record.lock_dir = '/nonexistent-rbdmig-test'
    return record


# The librbd call each method is killed in, once it has built something.
_MID_COPY = {'copy': 'copy', 'deep_copy': 'deep_copy',
             'clone_flatten': 'flatten', 'extents': 'flush'}


def _die_mid_copy(ceph, method, monkeypatch):
    """Migrate, but die inside the copy: no cleanup of any kind runs."""
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    real = journal.Journal.update
    monkeypatch.setattr(journal.Journal, 'update',
                        lambda self, record, phase: real(
                            self, _dead(record), phase))
    for cleanup in ('rbdmig.ceph.migrate._Migration._undo',
                    'rbdmig.ceph.methods.base.Method._remove_partial',
                    'rbdmig.ceph.methods.clone_flatten.drop_snapshot'):
        monkeypatch.setattr(cleanup, lambda *args: None)
    ceph.fail(_MID_COPY[method], SystemExit('killed'), times=1)
    with pytest.raises(SystemExit):
        src.migrate_volume(None, volume, fx.host_of(dst))
    _undo(monkeypatch)
    return src, volume


@pytest.mark.parametrize('method', sorted(_MID_COPY))
def test_recovery_removes_a_partial_copy(ceph, method, monkeypatch):
    src, volume = _die_mid_copy(ceph, method, monkeypatch)
    (left,) = _journal(ceph).records()
    assert left.phase == 'copying' and _images(ceph, 'ssd') == [left.temp]

    outcomes = recover.recover(src.backend())

    assert [o.action for o in outcomes] == ['rolled back']
    assert _images(ceph, 'ssd') == []
    assert list(ceph.image(fx.CONF_A, 'hdd', volume.name).snaps) == []
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _journal(ceph).records() == []


def test_recovery_of_a_verified_copy_standalone_and_under_cinder(
        ceph, monkeypatch):
    results = {}
    for complete in (True, False):
        ceph = fx.make_ceph()
        src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='copy')
        dst = fx.make_driver(ceph, pool='ssd', backend='fast')
        volume = fx.make_volume(ceph, data=DATA)
        monkeypatch.setattr('rbdmig.ceph.methods.base.Method.place',
                            _killed)
        real = journal.Journal.update
        monkeypatch.setattr(journal.Journal, 'update',
                            lambda self, record, phase: real(
                                self, _dead(record), phase))
        with pytest.raises(SystemExit):
            src.migrate_volume(None, volume, fx.host_of(dst))
        _undo(monkeypatch)

        outcomes = recover.recover(src.backend(),
                                   authority=_Names(complete))
        results[complete] = ([o.action for o in outcomes],
                             _images(ceph, 'hdd') == [volume.name],
                             _images(ceph, 'ssd') == [volume.name])
        pool = 'ssd' if complete else 'hdd'
        assert fx.read_head(ceph, pool, volume.name, len(DATA)) == DATA
        assert _journal(ceph).records() == []
    # The authority names the destination: the copy becomes the volume,
    # never duplicated.
    assert results[True] == (['completed'], False, True)
    # It names the source (rbdmig's database and Cinder's row do until
    # the move returned): the copy goes.
    assert results[False] == (['rolled back'], True, False)


class _Names(recover.Authority):
    """An authority naming the destination (True) or the source."""

    def __init__(self, dest):
        self.dest = dest

    def names(self, record):
        return phases.DEST if self.dest else phases.SOURCE


def _killed(*args):
    raise SystemExit('killed')


# Killed in the commit (removing: forward, whoever is named), or in the
# copy (the source is whole: aborted).
@pytest.mark.parametrize('executed,complete,action', [
    (True, True, 'committed'), (False, True, 'aborted'),
    (True, False, 'committed'), (False, False, 'aborted')])
def test_recovery_of_a_live_migration(ceph, monkeypatch, executed, complete,
                                      action):
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='live')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    real = journal.Journal.update
    monkeypatch.setattr(journal.Journal, 'update',
                        lambda self, record, phase: real(
                            self, _dead(record), phase))
    if executed:
        monkeypatch.setattr('rbdmig.ceph.methods.live.LiveMethod.'
                            'remove_source', _killed)
    else:
        ceph.fail('migration_execute', SystemExit('killed'), times=1)
    monkeypatch.setattr('rbdmig.ceph.migrate._Migration._undo',
                        lambda self, discard=True: None)
    monkeypatch.setattr('rbdmig.ceph.methods.live.LiveMethod._abort',
                        lambda self, move: None)
    with pytest.raises(SystemExit):
        src.migrate_volume(None, volume, fx.host_of(dst))
    _undo(monkeypatch)

    outcomes = recover.recover(src.backend(), authority=_Names(complete))

    assert [o.action for o in outcomes] == [action]
    pool = 'ssd' if action == 'committed' else 'hdd'
    assert fx.read_head(ceph, pool, volume.name, len(DATA)) == DATA
    assert _images(ceph, 'ssd') == ([volume.name] if action == 'committed'
                                    else [])
    assert _journal(ceph).records() == []


def _claimed_by_a_client(ceph, host=None, age=0):
    """A record claimed by a client of its own, as a migration would,
    ``age`` seconds ago."""
    pool_journal = _journal(ceph)
    record = journal.Record.new('volume-9', 'copy', 'hdd', _dest())
    record.clients = {'source': pool_journal.ioctx.client_id}
    if host:
        record.host = host
    pool_journal.claim(record)
    if age:
        record.updated -= age
        pool_journal._write(pool_journal.oid(record),
                            lambda op: op.write_full(record.to_bytes()))
    return pool_journal, record


def test_recovery_leaves_a_running_migration_alone(ceph):
    src = fx.make_driver(ceph, pool='hdd')
    pool_journal, record = _claimed_by_a_client(ceph)
    with journal.running(record):  # as a migration in this process
        with liveness.watching(pool_journal.ioctx,
                               pool_journal.oid(record)):
            outcomes = recover.recover(src.backend())

    assert [o.action for o in outcomes] == ['skipped']
    assert [r.id for r in _journal(ceph).records()] == [record.id]


def test_another_hosts_dead_migration_is_taken_over(ceph):
    # Its client's watch is gone: Ceph says the process is, whatever
    # host it ran on.  No host name or lock file decides.
    src = fx.make_driver(ceph, pool='hdd')
    _pool_journal, record = _claimed_by_a_client(
        ceph, host='host-b', age=liveness.WATCH_TIMEOUT + 1)

    outcomes = recover.recover(src.backend())

    assert [o.action for o in outcomes] == ['released']
    assert _journal(ceph).records() == []


def test_another_hosts_record_claimed_but_not_watched_yet_is_left(ceph):
    # Found by two hosts draining one source (test_fleet): one claimed a
    # record, the other's recovery, starting, saw no watch on it yet and
    # released it; the first one's watch then failed, and its move.
    src = fx.make_driver(ceph, pool='hdd')
    _claimed_by_a_client(ceph, host='host-b')

    assert [o.action for o in recover.recover(src.backend())] == [
        'skipped']
    assert [o.action for o in recover.recover(
        src.backend(), any_host=True)] == ['released']


def test_a_claimed_record_never_watched_is_taken_over_in_time(ceph):
    src = fx.make_driver(ceph, pool='hdd')
    _claimed_by_a_client(ceph, host='host-b',
                         age=liveness.WATCH_TIMEOUT + 1)

    assert [o.action for o in recover.recover(src.backend())] == [
        'released']


def test_another_hosts_live_migration_is_left_unless_forced(ceph):
    src = fx.make_driver(ceph, pool='hdd')
    pool_journal, record = _claimed_by_a_client(ceph, host='host-b')
    with liveness.watching(pool_journal.ioctx, pool_journal.oid(record)):
        skipped = recover.recover(src.backend())
        forced = recover.recover(src.backend(), any_host=True)

    assert [o.action for o in skipped] == ['skipped']
    # Forced: its client is blocklisted before anything is done.
    assert [o.action for o in forced] == ['released']
    assert ceph.blocklist == ['10.0.0.1:0/1']


def test_a_killed_process_on_this_host_is_fenced_at_once(ceph):
    # Killed: its lock is free, its watch lingers until the OSD drops it.
    src = fx.make_driver(ceph, pool='hdd')
    pool_journal, record = _claimed_by_a_client(ceph)
    pool_journal.ioctx.watch(pool_journal.oid(record), None)
    _dead(record)
    pool_journal.update(record, 'copying')

    (outcome,) = recover.recover(src.backend())

    assert outcome.action == 'released'  # volume-9 has no images
    assert ceph.blocklist == ['10.0.0.1:0/1']


def test_the_driver_recovers_when_it_starts(ceph):
    record = _dead(journal.Record.new('volume-8', 'copy', 'hdd', _dest()))
    _journal(ceph).claim(record)

    drv = fx.make_driver(ceph, pool='hdd')  # runs do_setup

    assert [o.action for o in drv.recovered] == ['released']
    assert _journal(ceph).records() == []


def test_recovery_fences_off_the_dead_process_first(ceph, monkeypatch):
    src, volume = _die_mid_copy(ceph, 'extents', monkeypatch)
    (left,) = _journal(ceph).records()
    source = ceph.image(fx.CONF_A, 'hdd', volume.name)
    dead = left.clients['source']
    # The killed process still 'watches' its source, someone else too.
    source.watchers = [{'id': dead, 'addr': '10.0.0.1:0/1'},
                       {'id': 99, 'addr': '10.0.0.2:0/2'}]

    (outcome,) = recover.recover(src.backend())

    assert outcome.action == 'rolled back'
    assert ceph.blocklist == ['10.0.0.1:0/1']  # only the dead one
    assert source.watchers == [{'id': 99, 'addr': '10.0.0.2:0/2'}]


def test_a_record_whose_images_are_all_gone_is_released(ceph, monkeypatch):
    src, volume = _die_mid_copy(ceph, 'copy', monkeypatch)
    (left,) = _journal(ceph).records()
    _journal(ceph).update(_dead(left), 'verified')
    # An operator removed both the source and the partial copy since.
    for pool, name in (('hdd', volume.name), ('ssd', left.temp)):
        del ceph.clusters[fx.CONF_A].pools[pool][name]

    (outcome,) = recover.recover(src.backend())

    assert outcome.action == 'released'
    assert _journal(ceph).records() == []
