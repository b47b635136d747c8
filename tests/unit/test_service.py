"""The migration service against fake Ceph and a real SQLite file."""

import datetime
import socket
import threading

import pytest
from oslo_utils import timeutils

from rbdmig import exception
from rbdmig.db import api
from rbdmig.db import models
from rbdmig.migration import lease
from rbdmig.migration import notify
from rbdmig.migration import progress
from rbdmig.migration import service as service_mod
from rbdmig.db import states
from tests.unit import db_fixtures
from tests.unit import rbd_fixtures as fx

GiB = 1 << 30


@pytest.fixture
def ceph():
    return fx.make_ceph()


@pytest.fixture
def events():
    return []


@pytest.fixture
def svc(ceph, tmp_path, events):
    drivers = {'ceph-a': fx.make_driver(ceph, pool='hdd', backend='ceph-a'),
               'ceph-b': fx.make_driver(ceph, pool='ssd', backend='ceph-b')}
    notifier = notify.Notifier(
        lambda event, body, error: events.append((event, body)))
    return service_mod.Service(db_fixtures.make_db(tmp_path), drivers,
                               notifier)


def _images(ceph, pool):
    return sorted(ceph.clusters[fx.CONF_A].pools[pool])


def _volume(svc, ceph, data=b'payload' * 1000, **kwargs):
    record = svc.create('ceph-a', 1, **kwargs)
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    with ceph.rbd.Image(ioctx, record.name) as image:
        image.write(data, 0)
    return record


def test_create_show_list_delete(svc, ceph):
    record = svc.create('ceph-a', 1, name='data')
    assert record.status == 'available' and record.name == (
        'volume-%s' % record.id)
    assert _images(ceph, 'hdd') == [record.name]
    shown = svc.show(record.id)
    assert (shown['backend'], shown['size'], shown['display_name'],
            shown['migration_status'], shown['progress']) == (
        'ceph-a', 1, 'data', None, None)
    assert [v['id'] for v in svc.list(backend='ceph-a')] == [record.id]
    assert svc.list(backend='ceph-b') == []
    svc.delete(record.id)
    assert _images(ceph, 'hdd') == [] and svc.list() == []


def test_an_assisted_move_is_recorded(svc, ceph, events):
    record = _volume(svc, ceph)
    migration = svc.migrate(record.id, 'ceph-b')

    assert (migration.status, migration.path, migration.method) == (
        'success', 'assisted', 'offload')
    shown = svc.show(record.id)
    assert (shown['backend'], shown['status'], shown['migration_status']) \
        == ('ceph-b', 'available', 'success')
    assert shown['progress']['percent'] == 100.0
    assert _images(ceph, 'ssd') == [record.name] and \
        _images(ceph, 'hdd') == []
    kinds = [event for event, _ in events]
    assert kinds[0] == notify.START and kinds[-1] == notify.END
    assert events[-1][1]['volume_id'] == record.id


def test_the_generic_path_when_asked(svc, ceph):
    record = _volume(svc, ceph)
    migration = svc.migrate(record.id, 'ceph-b', method='generic')
    assert (migration.path, migration.method) == ('generic', 'generic')
    assert fx.read_head(ceph, 'ssd', record.name, 7) == b'payload'
    assert _images(ceph, 'hdd') == []
    assert [v['id'] for v in svc.list()] == [record.id]  # no hidden one


def _refused(svc, ceph, record, dest, **kwargs):
    before = (svc.show(record.id), _images(ceph, 'hdd'),
              _images(ceph, 'ssd'))
    with pytest.raises(service_mod.Rejected) as err:
        svc.request(record.id, dest, **kwargs)
    assert (svc.show(record.id), _images(ceph, 'hdd'),
            _images(ceph, 'ssd')) == before  # nothing changed
    message = str(err.value)
    assert message.count('.') >= 1 and '\n' not in message
    return message


def test_every_check_refuses_in_one_sentence_and_changes_nothing(
        svc, ceph, monkeypatch):
    record = _volume(svc, ceph, extra_specs={'tier': 'ssd'})
    assert _refused(svc, ceph, record, 'ceph-a').endswith(
        'it is on ceph-a already.')
    assert 'backend nowhere is not configured' in _refused(
        svc, ceph, record, 'nowhere')
    assert 'method telepathy is not one of' in _refused(
        svc, ceph, record, 'ceph-b', method='telepathy')
    assert 'extra spec tier=ssd is not met' in _refused(
        svc, ceph, record, 'ceph-b')
    svc.db.update_volume(record.id, extra_specs={})  # met now
    ceph.clusters[fx.CONF_A].total = 100 * (1 << 20)  # 100 MiB pools
    ceph.clusters[fx.CONF_A].used = 99 * (1 << 20)
    assert 'of data and the destination offers' in _refused(
        svc, ceph, record, 'ceph-b')
    ceph.clusters[fx.CONF_A].total, ceph.clusters[fx.CONF_A].used = (
        100 * GiB, 0)
    ceph.image(fx.CONF_A, 'hdd', record.name).watchers = [{'id': 1}]
    assert 'a client has it open on ceph-a' in _refused(
        svc, ceph, record, 'ceph-b')
    ceph.image(fx.CONF_A, 'hdd', record.name).watchers = []
    svc.db.compare_and_set_status(record.id, {'status': 'available'},
                                  {'status': 'in-use'})
    assert 'its status is in-use' in _refused(svc, ceph, record, 'ceph-b')
    with pytest.raises(service_mod.Rejected, match='no such volume'):
        svc.request('0' * 36, 'ceph-b')


def test_a_running_migration_refuses_a_second(svc, ceph):
    record = _volume(svc, ceph)
    svc.request(record.id, 'ceph-b')
    assert 'a migration of it is running (starting)' in _refused(
        svc, ceph, record, 'ceph-b')


def test_force_holds_the_volume_in_maintenance_then_restores_it(svc, ceph):
    record = _volume(svc, ceph)
    seen = []

    class Look(progress.Callback):
        def call(self):
            seen.append(svc.db.get_volume(record.id).status)

    svc.migrate(record.id, 'ceph-b', force=True, callback=Look())
    assert set(seen) == {'maintenance'}
    assert svc.show(record.id)['status'] == 'available'


def test_a_failure_is_recorded_and_the_source_stays(svc, ceph, events):
    record = _volume(svc, ceph)
    ceph.fail_aio('aio_write', after=0)

    with pytest.raises(exception.MigrationError):
        svc.migrate(record.id, 'ceph-b')

    shown = svc.show(record.id)
    assert (shown['backend'], shown['status'], shown['migration_status']) \
        == ('ceph-a', 'available', 'error')
    assert 'source is intact' in shown['progress']['error']
    assert fx.read_head(ceph, 'hdd', record.name, 7) == b'payload'
    assert _images(ceph, 'ssd') == []
    assert events[-1][0] == notify.ERROR
    assert 'source is intact' in events[-1][1]['error']
    # and it can be tried again
    ceph._aio_failures.clear()
    assert svc.migrate(record.id, 'ceph-b').status == 'success'


def test_a_failed_generic_copy_removes_its_destination(svc, ceph):
    record = _volume(svc, ceph)
    ceph.fail('read', OSError(5, 'injected'), times=1)
    with pytest.raises(OSError):
        svc.migrate(record.id, 'ceph-b', method='generic')
    assert _images(ceph, 'ssd') == []
    assert [v.id for v in svc.db.list_volumes(include_hidden=True)] == [
        record.id]


def test_a_client_opening_the_source_ends_the_move_without_a_copy(
        svc, ceph, events, at_point):
    # Issue 13, defect 2: the assisted path refuses a source a client has
    # open; the service used to copy the same live volume generically.
    record = _volume(svc, ceph)
    image = ceph.image(fx.CONF_A, 'hdd', record.name)
    at_point['service.migrating'] = lambda: image.watchers.append(
        'client.7')

    with pytest.raises(exception.MigrationRefused):
        svc.migrate(record.id, 'ceph-b', force=True)

    shown = svc.show(record.id)
    assert (shown['backend'], shown['status'], shown['migration_status']) \
        == ('ceph-a', 'available', 'error')
    assert 'open by 1 client' in shown['progress']['error']
    assert 'source is intact' in shown['progress']['error']
    migration = svc.db.latest_migration(record.id)
    assert migration.path is None  # neither moved nor copied
    assert fx.read_head(ceph, 'hdd', record.name, 7) == b'payload'
    assert _images(ceph, 'ssd') == []
    assert [v.id for v in svc.db.list_volumes(include_hidden=True)] == [
        record.id]
    assert events[-1][0] == notify.ERROR


def test_a_generic_copy_killed_midway_resumes(svc, ceph, monkeypatch):
    record = _volume(svc, ceph, data=b'x' * (32 << 20))
    for name in ('ceph-a', 'ceph-b'):
        cfg = svc.drivers[name].configuration
        cfg._conf.set_override('volume_copy_chunk_size', 1 << 20,
                               group=name)

    class Dies(progress.Callback):
        def call(self):
            if self.value >= 24 << 20:
                raise Killed('killed')

    # A killed process records nothing more, and leaves its partial copy
    # (SystemExit no longer stands for a kill: like Ctrl-C, it has the
    # move remove its copy and end its record).
    migration = svc.request(record.id, 'ceph-b')
    with monkeypatch.context() as patch:
        patch.setattr(svc.db, 'finish_migration', lambda *a, **k: None)
        with pytest.raises(Killed):
            svc.run(migration.id, 'generic', callback=Dies())
    assert svc.show(record.id)['migration_status'] == 'migrating'
    mark = svc.show(record.id)['progress']['checkpoint']
    assert mark and mark % (1 << 20) == 0
    # Its process is gone: a pid that cannot run on this host.
    _dead_process(svc, migration.id)

    (outcome,) = svc.recover()

    assert outcome == (migration.id, 'resumed at %.1f MiB and completed'
                       % (mark / (1 << 20)))
    assert svc.show(record.id)['backend'] == 'ceph-b'
    assert fx.read_head(ceph, 'ssd', record.name, 32 << 20) == (
        b'x' * (32 << 20))


class Killed(BaseException):
    """A SIGKILL, in process: nothing of the service's own cleanup runs."""


class _Kill(object):
    """Makes the service die at crash point ``name``, as a kill would.

    A killed process records nothing more: ``finish_migration`` does
    nothing until :meth:`dead` says the process is gone (and gives it a
    pid that cannot run here).
    """

    def __init__(self, svc, monkeypatch, at_point, name, then=None):
        self.svc, self.silent = svc, True
        real = svc.db.finish_migration
        monkeypatch.setattr(
            svc.db, 'finish_migration',
            lambda *a, **k: None if self.silent else real(*a, **k))

        def die():
            if then is not None:
                then()
            raise Killed(name)

        if name is not None:  # None: the test kills it its own way
            at_point[name] = die

    def dead(self, migration_id):
        self.silent = False
        _dead_process(self.svc, migration_id)


def _killed(svc, monkeypatch, at_point, record, point, method=None,
            dest='ceph-b'):
    """Request ``record``'s move to ``dest``, run it until it dies at
    ``point``; its process is gone.  Returns the migration."""
    migration = svc.request(record.id, dest)
    kill = _Kill(svc, monkeypatch, at_point, point)
    with pytest.raises(Killed):
        svc.run(migration.id, method)
    kill.dead(migration.id)
    return migration


def _dead_process(svc, migration_id):
    """The migration's process is gone: a pid that cannot run here."""
    db_fixtures.set_row(svc.db, models.Migration, migration_id,
                        host='%s:999999999' % socket.gethostname())


def _generic_volume(svc, ceph, data):
    """A volume holding ``data``, copied in 64 KiB chunks: checkpoints
    every MiB (the fake writes slowly)."""
    record = _volume(svc, ceph, data=data)
    for name in ('ceph-a', 'ceph-b'):
        cfg = svc.drivers[name].configuration
        cfg._conf.set_override('volume_copy_chunk_size', 64 << 10,
                               group=name)
    return record


def test_recovery_never_deletes_the_copy_of_a_removed_source(
        svc, ceph, monkeypatch):
    # Issue 13, defect 1: killed once the source was removed, the move
    # was resumed as a copy; the source would not open, and the copy was
    # deleted too.
    data = bytes(range(256)) * (12 << 12)  # 3 MiB
    record = _generic_volume(svc, ceph, data)
    src = svc.drivers['ceph-a']
    real_delete = src.delete_volume

    def delete_then_die(volume):
        real_delete(volume)
        raise Killed('after the source was removed')

    migration = svc.request(record.id, 'ceph-b')
    with monkeypatch.context() as patch:
        patch.setattr(svc.db, 'finish_migration', lambda *a, **k: None)
        patch.setattr(src, 'delete_volume', delete_then_die)
        with pytest.raises(Killed):
            svc.run(migration.id, 'generic')
    _dead_process(svc, migration.id)

    (outcome,) = svc.recover()

    assert outcome == (migration.id,
                       'completed on ceph-b (the source was removed)')
    shown = svc.show(record.id)
    assert (shown['backend'], shown['migration_status']) == (
        'ceph-b', 'success')
    name = svc.db.get_volume(record.id).name
    assert fx.read_head(ceph, 'ssd', name, len(data)) == data
    assert _images(ceph, 'hdd') == []


@pytest.mark.parametrize('point', ['service.completing',
                                   'service.remove_source.before',
                                   'service.remove_source.after',
                                   'partly removed'])
def test_killed_while_completing_recovery_finishes_forward(
        svc, ceph, monkeypatch, at_point, point):
    data = bytes(range(256)) * (12 << 12)  # 3 MiB
    record = _generic_volume(svc, ceph, data)
    then = None
    if point == 'partly removed':
        # librbd removes the data objects first, the header last.
        image = ceph.image(fx.CONF_A, 'hdd', record.name)
        point = 'service.remove_source.before'
        then = lambda: image.blocks.clear()  # noqa: E731
    migration = svc.request(record.id, 'ceph-b')
    kill = _Kill(svc, monkeypatch, at_point, point, then)
    with pytest.raises(Killed):
        svc.run(migration.id, 'generic')
    assert svc.show(record.id)['migration_status'] == 'completing'
    kill.dead(migration.id)

    (outcome,) = svc.recover()

    assert outcome == (migration.id,
                       'completed on ceph-b (the source was removed)')
    shown = svc.show(record.id)
    assert (shown['backend'], shown['status'], shown['migration_status']) \
        == ('ceph-b', 'available', 'success')
    moved = svc.db.get_volume(record.id)
    assert fx.read_head(ceph, 'ssd', moved.name, len(data)) == data
    assert _images(ceph, 'hdd') == [] and _images(ceph, 'ssd') == [
        moved.name]
    assert [v.id for v in svc.db.list_volumes(include_hidden=True)] == [
        record.id]
    assert svc.recover() == []
    # and it moves back
    assert svc.migrate(record.id, 'ceph-a', method='generic').status == \
        'success'
    back = svc.db.get_volume(record.id)
    assert fx.read_head(ceph, 'hdd', back.name, len(data)) == data


def test_a_completing_move_whose_copy_is_gone_keeps_its_source(
        svc, ceph, monkeypatch, at_point):
    """Recovery of ``completing`` removes the source only while the
    verified copy is there: removed by hand meanwhile, the source stays,
    and so does the record, for the operator to look at."""
    data = bytes(range(256)) * (12 << 12)
    record = _generic_volume(svc, ceph, data)
    _killed(svc, monkeypatch, at_point, record,
            'service.completing', 'generic')
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('ssd')
    (copy,) = _images(ceph, 'ssd')
    ceph.rbd.RBD().remove(ioctx, copy)

    (outcome,) = svc.recover()

    assert outcome[1].startswith('left completing: ')
    assert 'is missing, so its source was left as it is' in outcome[1]
    assert fx.read_head(ceph, 'hdd', record.name, len(data)) == data
    assert svc.show(record.id)['migration_status'] == 'completing'


@pytest.mark.parametrize('where', ['neither', 'unknown'])
def test_an_assisted_move_recovered_where_the_source_is_not_found(
        svc, ceph, monkeypatch, at_point, where):
    """Killed before the engine ran: with the source gone from both
    backends (removed by hand) the record ends saying so; with the
    source's backend not answering, nothing is decided."""
    record = _volume(svc, ceph)
    migration = _killed(svc, monkeypatch, at_point, record,
                        'service.migrating')
    src = svc.drivers['ceph-a']
    if where == 'neither':
        ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
        ceph.rbd.RBD().remove(ioctx, record.name)
    else:
        def unreachable(*args, **kwargs):
            raise ConnectionError('ceph-a does not answer')
        monkeypatch.setattr(src, 'open_volume', unreachable)

    (outcome,) = svc.recover()

    if where == 'neither':
        assert outcome == (migration.id,
                           'ended: the volume is on neither backend')
        assert svc.show(record.id)['migration_status'] == 'error'
    else:
        assert outcome == (migration.id, 'left as it is: whether its '
                           'source exists cannot be told now; recover '
                           'again')
        assert svc.show(record.id)['migration_status'] == 'migrating'


def test_a_copy_whose_source_vanished_is_kept(svc, ceph, monkeypatch,
                                              at_point):
    data = b'y' * (3 << 20)
    record = _generic_volume(svc, ceph, data)
    migration = _killed(svc, monkeypatch, at_point, record,
                        'service.checkpoint', 'generic')
    # Someone removes the source by hand before recovery runs.
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    ceph.rbd.RBD().remove(ioctx, record.name)

    (outcome,) = svc.recover()

    assert outcome == (migration.id, 'ended: the source is missing, its '
                                     'copy on ceph-b was kept')
    assert len(_images(ceph, 'ssd')) == 1
    shown = svc.show(record.id)
    assert shown['migration_status'] == 'error'
    assert 'its copy' in shown['progress']['error']


@pytest.mark.parametrize('point', ['service.verified',
                                   'service.remove_source.before'])
def test_a_client_opening_the_source_before_its_removal_keeps_it(
        svc, ceph, at_point, point):
    # Issue 13, defect 2: the source could not be removed (busy), the
    # move was recorded a success on the destination, and the client
    # went on writing to the orphaned source.
    record = _volume(svc, ceph)
    image = ceph.image(fx.CONF_A, 'hdd', record.name)
    at_point[point] = lambda: image.watchers.append('client.9')

    with pytest.raises(exception.MigrationError, match='a client opened'):
        svc.migrate(record.id, 'ceph-b', method='generic', force=True)

    shown = svc.show(record.id)
    assert (shown['backend'], shown['status'], shown['migration_status']) \
        == ('ceph-a', 'available', 'error')
    assert 'a client opened it' in shown['progress']['error']
    assert 'source is intact' in shown['progress']['error']
    assert fx.read_head(ceph, 'hdd', record.name, 7) == b'payload'
    assert _images(ceph, 'ssd') == []
    assert [v.id for v in svc.db.list_volumes(include_hidden=True)] == [
        record.id]


def test_a_copy_that_reads_otherwise_is_removed(svc, ceph, monkeypatch):
    record = _volume(svc, ceph)
    src = svc.drivers['ceph-a']
    real_copy = src.copy_volume_data

    def copy_then_corrupt(context, volume, dest, **kwargs):
        done = real_copy(context, volume, dest, **kwargs)
        ceph.image(fx.CONF_A, 'ssd', dest.name).blocks[0] = b'?' * 4096
        return done

    monkeypatch.setattr(src, 'copy_volume_data', copy_then_corrupt)
    with pytest.raises(exception.CopyError, match='differs from the source '
                                                  'at byte 0'):
        svc.migrate(record.id, 'ceph-b', method='generic')

    assert svc.show(record.id)['backend'] == 'ceph-a'
    assert fx.read_head(ceph, 'hdd', record.name, 7) == b'payload'
    assert _images(ceph, 'ssd') == []


@pytest.mark.parametrize('point', ['service.assisted',
                                   'service.completing'])
def test_an_assisted_move_killed_after_it_moved_is_completed(
        svc, ceph, monkeypatch, at_point, point):
    record = _volume(svc, ceph)
    migration = _killed(svc, monkeypatch, at_point, record, point)

    (outcome,) = svc.recover()

    assert outcome == (migration.id, 'completed on ceph-b')
    shown = svc.show(record.id)
    assert (shown['backend'], shown['migration_status']) == (
        'ceph-b', 'success')
    assert fx.read_head(ceph, 'ssd', record.name, 7) == b'payload'


def test_a_move_still_journaled_is_left_to_cephs_recovery(
        svc, ceph, monkeypatch, at_point):
    # Seams review: killed once the copy held the volume's name on the
    # destination but before its source was being removed (live's
    # prepared target is the same case), the database said "completed
    # on ceph-b" while the source pool's journal still held the move,
    # and Ceph's recovery then gave the source its name back and removed
    # the copy (``rbdmig recover --backend ceph-b`` sets up ceph-b's
    # driver only).
    from rbdmig.ceph.methods import base

    record = _volume(svc, ceph)
    migration = svc.request(record.id, 'ceph-b')
    kill = _Kill(svc, monkeypatch, at_point, None)
    real_place = base.Method.place

    def place_then_die(self, move):
        real_place(self, move)
        raise Killed('after the copy took the name')

    with monkeypatch.context() as patch:
        patch.setattr(base.Method, 'place', place_then_die)
        with pytest.raises(Killed):
            svc.run(migration.id, 'copy')
    kill.dead(migration.id)
    assert record.name in _images(ceph, 'ssd')  # the name, on ceph-b

    (outcome,) = svc.recover()
    assert outcome == (migration.id, 'left as it is: its move is still '
                       'in the journal of ceph-a; recover again')
    assert svc.show(record.id)['migration_status'] == 'migrating'

    # Ceph's recovery of the source pool (the source driver's set-up)
    # undoes it; the next recovery (another process) follows.
    svc.drivers['ceph-a'].recover_migrations()
    _dead_process(svc, migration.id)
    (outcome,) = svc.recover()
    assert outcome == (migration.id, 'ended: the source is intact')
    shown = svc.show(record.id)
    assert (shown['backend'], shown['migration_status']) == (
        'ceph-a', 'error')
    assert fx.read_head(ceph, 'hdd', record.name, 7) == b'payload'
    assert record.name not in _images(ceph, 'ssd')


def test_a_resumed_copy_never_copies_into_an_image_it_did_not_create(
        svc, ceph, monkeypatch, at_point):
    # Seams review: two backends on one pool, a generic move killed
    # after recording its destination (the source's own name) but before
    # creating it; recovery found "the destination" (the source itself),
    # copied it onto itself, and removed the source: the only copy.
    svc.drivers['ceph-c'] = fx.make_driver(ceph, pool='hdd',
                                           backend='ceph-c')
    record = _volume(svc, ceph)
    _killed(svc, monkeypatch, at_point, record, 'service.generic',
            'generic', dest='ceph-c')

    (outcome,) = svc.recover()

    assert outcome[1].startswith('resumed at 0.0 MiB, and failed'), outcome
    assert 'did not record creating it' in outcome[1]
    shown = svc.show(record.id)
    assert (shown['backend'], shown['migration_status']) == (
        'ceph-a', 'error')
    assert fx.read_head(ceph, 'hdd', record.name, 7) == b'payload'
    assert [v for v in svc.db.list_volumes(include_hidden=True)
            if v.id != record.id] == []  # its record of "the copy" went


def test_a_resumed_copy_goes_on_into_the_image_it_created(
        svc, ceph, monkeypatch, at_point):
    data = bytes(range(256)) * (12 << 12)  # 3 MiB
    record = _generic_volume(svc, ceph, data)
    migration = _killed(svc, monkeypatch, at_point, record,
                        'service.dest_created', 'generic')

    (outcome,) = svc.recover()

    assert outcome == (migration.id, 'resumed at 0.0 MiB and completed')
    assert svc.show(record.id)['backend'] == 'ceph-b'


def test_an_unreadable_journal_leaves_the_move_as_it_is(
        svc, ceph, monkeypatch, at_point):
    record = _volume(svc, ceph)
    _killed(svc, monkeypatch, at_point, record, 'engine.copied', 'live')

    def unreadable(volume):
        raise exception.VolumeBackendAPIException(data='ceph-a is down')

    monkeypatch.setattr(svc.drivers['ceph-a'], 'migration_journaled',
                        unreadable)
    (outcome,) = svc.recover()
    assert outcome[1].startswith('left as it is: the journal of ceph-a '
                                 'cannot be read'), outcome
    assert svc.show(record.id)['backend'] == 'ceph-a'


def test_a_failed_switch_over_is_never_recorded_as_an_error(
        svc, ceph, monkeypatch):
    record = _volume(svc, ceph)
    real_finish = svc.db.finish_migration

    def finish(migration_id, status, **kwargs):
        if status == states.SUCCESS:
            raise exception.ConcurrentUpdate(what='it', expected='x')
        return real_finish(migration_id, status, **kwargs)

    migration = svc.request(record.id, 'ceph-b')
    with monkeypatch.context() as patch:
        patch.setattr(svc.db, 'finish_migration', finish)
        with pytest.raises(exception.ConcurrentUpdate):
            svc.run(migration.id, 'generic')
    assert svc.show(record.id)['migration_status'] == 'completing'
    _dead_process(svc, migration.id)

    (outcome,) = svc.recover()

    assert outcome == (migration.id,
                       'completed on ceph-b (the source was removed)')
    assert svc.show(record.id)['backend'] == 'ceph-b'


def _left_by(svc, migration_id, host, seconds_ago):
    db_fixtures.set_row(
        svc.db, models.Migration, migration_id, host=host,
        updated_at=timeutils.utcnow() - datetime.timedelta(
            seconds=seconds_ago))


def test_another_hosts_dead_move_is_recovered_here(svc, ceph, monkeypatch,
                                                   at_point):
    # Issue 13, defect 11: a record another host wrote was never
    # recovered; now its lease decides, not its host name.
    data = b'z' * (3 << 20)
    record = _generic_volume(svc, ceph, data)
    migration = _killed(svc, monkeypatch, at_point, record,
                        'service.checkpoint', 'generic')
    _left_by(svc, migration.id, 'host-a:4242', 10)  # alive, by its lease

    assert svc.recover() == []
    assert svc.show(record.id)['migration_status'] == 'migrating'

    _left_by(svc, migration.id, 'host-a:4242', lease.LEASE + 1)
    (outcome,) = svc.recover()

    assert outcome[1].startswith('resumed at ')
    assert svc.show(record.id)['backend'] == 'ceph-b'
    name = svc.db.get_volume(record.id).name
    assert fx.read_head(ceph, 'ssd', name, len(data)) == data


def test_two_recoveries_take_one_record_over_once(svc, ceph):
    record = _volume(svc, ceph)
    migration = svc.request(record.id, 'ceph-b')
    _left_by(svc, migration.id, 'host-a:4242', lease.LEASE + 1)
    seen = svc.db.get_migration(migration.id)

    assert svc.db.take_over(seen, host='host-b:1')
    assert not svc.db.take_over(seen, host='host-c:1')
    assert svc.db.get_migration(migration.id).host == 'host-b:1'


def test_drain_moves_every_volume_at_most_n_at_a_time(svc, ceph,
                                                      monkeypatch):
    records = [_volume(svc, ceph) for _ in range(5)]
    running, most = [0], [0]
    lock = threading.Lock()
    real_run = service_mod.Service.run

    def run(self, *args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return real_run(self, *args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(service_mod.Service, 'run', run)
    ceph.latency = 0.01  # long enough to overlap
    reported = []
    failed = svc.drain('ceph-a', 'ceph-b', parallel=2,
                       report=lambda vol, what: reported.append(vol))
    assert failed == 0 and most[0] == 2
    assert sorted(reported) == sorted(r.id for r in records)
    assert {v['backend'] for v in svc.list()} == {'ceph-b'}


def test_a_claim_lost_to_another_host_is_its_move_not_a_failure(
        svc, ceph, monkeypatch):
    # CI found it (1 in 15 runs of the test above): host B claimed and
    # moved a volume between host A's read of it and A's claim; A's lost
    # claim (ConcurrentUpdate) was reported as A's failure.
    record = _volume(svc, ceph)
    other = service_mod.Service(
        db_fixtures.guarded(api.API(str(svc.db.engine.url))), svc.drivers,
        host='host-b:1')
    svc.host = 'host-a:1'
    real_cas = svc.db.compare_and_set_status

    def cas(volume_id, expected, new):
        if new.get('migration_status') == states.STARTING:
            # Between A's read of the volume and A's claim, B claims and
            # moves it.
            other.migrate(volume_id, 'ceph-b')
        return real_cas(volume_id, expected, new)

    monkeypatch.setattr(svc.db, 'compare_and_set_status', cas)
    said = {}
    assert svc.drain('ceph-a', 'ceph-b', report=said.__setitem__) == 0
    assert said == {record.id: 'moved to ceph-b by another host'}


def test_hosts_draining_one_source_walk_it_in_orders_of_their_own(
        svc, monkeypatch):
    # Walking one shared order, hosts draining at once would each check
    # every volume together and all but one lose its claim: measured on
    # a real cluster (test_fleet), two hosts took 1.7 times as long as
    # one.  Each walks its own order instead, the same every time.
    ids = ['%08d-0000-4000-8000-000000000000' % n for n in range(8)]
    for volume_id in ids:
        svc.db.create_volume('ceph-a', 1, id=volume_id)
    walked = {}

    def drained_elsewhere(self, volume_id, source):
        walked.setdefault(self.host, []).append(volume_id)
        return 'looked at only'

    monkeypatch.setattr(service_mod.Service, '_drained_elsewhere',
                        drained_elsewhere)
    for host in ('host-a:1', 'host-b:1', 'host-a:1'):
        svc.host = host
        assert svc.drain('ceph-a', 'ceph-b', parallel=1) == 0
    a, b = walked['host-a:1'], walked['host-b:1']
    assert sorted(a[:8]) == sorted(b) == ids
    assert a[:8] == a[8:]  # the same host, the same order
    assert a[0] != b[0] and a != b


def test_a_drain_connects_once_per_cluster_and_closes(svc, ceph,
                                                     monkeypatch):
    # Each check and move connected anew: most of a small volume's
    # cost.  A drain keeps one client per cluster (both backends are in
    # one here), and every check runs.
    for _ in range(5):
        _volume(svc, ceph)
    svc.drivers['ceph-a'].get_volume_stats(refresh=True)
    svc.drivers['ceph-b'].get_volume_stats(refresh=True)
    before, checks = ceph.connects, []
    in_use = fx.rbd_driver.RBDDriver.volume_in_use
    monkeypatch.setattr(fx.rbd_driver.RBDDriver, 'volume_in_use',
                        lambda drv, vol: checks.append(vol.id) or in_use(
                            drv, vol))
    assert svc.drain('ceph-a', 'ceph-b', parallel=2) == 0
    assert ceph.connects - before == 1 and len(checks) == 5
    assert ceph.connections == 0
    assert {v['backend'] for v in svc.list()} == {'ceph-b'}


@pytest.mark.parametrize('how', ['migrate', 'cli', 'run'])
def test_a_migration_connects_once_per_cluster_and_closes(svc, ceph, how):
    # Its checks (in use?), the destination's stats and the move each
    # connected: three clients for one cluster.  ``cli`` is what
    # ``rbdmig migrate`` does; ``run`` what ``run-migration`` does, the
    # request made before (by another process).
    volume_id = _volume(svc, ceph).id
    if how == 'run':
        claimed = svc.request(volume_id, 'ceph-b')
    before = ceph.connects
    if how == 'migrate':
        svc.migrate(volume_id, 'ceph-b')
    elif how == 'cli':
        with svc.sharing():
            svc.run(svc.request(volume_id, 'ceph-b').id)
    else:
        svc.run(claimed.id)
    assert ceph.connects - before == 1 and ceph.connections == 0
    assert svc.db.get_volume(volume_id).backend == 'ceph-b'


def test_adopt_records_existing_images_once(svc, ceph):
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    ceph.rbd.RBD().create(ioctx, 'legacy', 3 * GiB // 2)
    ceph.rbd.RBD().create(ioctx, 'volume-%s' % ('1' * 36), GiB)
    ceph.rbd.RBD().create(ioctx, 'volume-x.rbdmig-abc', GiB)  # a copy
    adopted = svc.adopt('ceph-a')
    assert sorted((r.name, r.size_gib) for r in adopted) == [
        ('legacy', 2), ('volume-%s' % ('1' * 36), 1)]
    assert svc.adopt('ceph-a') == []


def test_states_are_data(svc):
    # The service only walks the table's transitions: an illegal one
    # raises (the table is tested on its own in test_states).
    assert (states.STARTING, states.MIGRATING) in \
        states.MIGRATION_TRANSITIONS


def test_two_hosts_draining_one_source_move_each_volume_once(
        svc, ceph, monkeypatch):
    # Two services on one database, as two hosts: each volume is claimed
    # by one of them, and neither counts the other's volumes as failed.
    records = [_volume(svc, ceph) for _ in range(8)]
    other = service_mod.Service(
        db_fixtures.guarded(api.API(str(svc.db.engine.url))), svc.drivers,
        host='host-b:1')
    svc.host = 'host-a:1'
    claims = []
    real_start = svc.db.start_migration.__func__

    def start(db, volume_id, dest, host=None, **kwargs):
        done = real_start(db, volume_id, dest, host=host, **kwargs)
        claims.append((volume_id, host))
        return done

    monkeypatch.setattr(type(svc.db), 'start_migration', start)
    ceph.latency = 0.005  # long enough for the two to overlap
    said = {'host-a:1': {}, 'host-b:1': {}}
    failed = {}

    def drain(service):
        failed[service.host] = service.drain(
            'ceph-a', 'ceph-b', parallel=2,
            report=lambda vol, what: said[service.host].__setitem__(
                vol, what))

    threads = [threading.Thread(target=drain, args=(s,))
               for s in (svc, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failed == {'host-a:1': 0, 'host-b:1': 0}, said
    assert sorted(v for v, _ in claims) == sorted(r.id for r in records)
    assert {h for _, h in claims} == {'host-a:1', 'host-b:1'}  # shared
    for host, words in said.items():
        assert sorted(words) == sorted(r.id for r in records)
        mine = {v for v, h in claims if h == host}
        assert all(words[v].startswith('moved in') for v in mine), words
        assert not any(words[v].startswith('moved in')
                       for v in set(words) - mine), words
    assert {v['backend'] for v in svc.list()} == {'ceph-b'}
    assert sorted(ceph.clusters[fx.CONF_A].pools['ssd']) == sorted(
        r.name for r in records)


def test_the_lease_is_the_operators(svc, ceph, monkeypatch, at_point):
    # ``migration_lease``: a shorter lease lets another host's recovery
    # take a dead host's move over sooner, and no sooner than it says.
    record = _generic_volume(svc, ceph, b'q' * (3 << 20))
    migration = _killed(svc, monkeypatch, at_point, record,
                        'service.checkpoint', 'generic')
    svc.lease = 30

    _left_by(svc, migration.id, 'host-a:4242', 20)
    assert svc.recover() == []
    _left_by(svc, migration.id, 'host-a:4242', 31)  # < LEASE, > 30
    (outcome,) = svc.recover()
    assert 'completed' in outcome[1], outcome
    assert svc.show(record.id)['backend'] == 'ceph-b'
