"""Seams review: where a volume's data could be lost or stranded.

Each test drives one sequence at a seam of a migration (the engine and
its recovery, the service and its generic copy, the lease, Cinder's
bookkeeping) on the fake cluster, faults injected at named crash points
(:mod:`rbdmig.faults`) or by the fake's hooks, never by sleeping, and
asserts the invariant: one complete copy of the volume, under its name,
where the record says it is.
"""

import datetime
import socket
import sys
import threading
import types

import pytest
from oslo_utils import timeutils

from rbdmig import exception
from rbdmig import faults
from rbdmig.ceph import journal
from rbdmig.ceph import recover
from rbdmig.db import models
from rbdmig.migration import lease
from rbdmig.migration import manager
from rbdmig.migration import progress
from rbdmig.migration import service as service_mod
from tests.unit import db_fixtures
from tests.unit import rbd_fixtures as fx

DATA = bytes(range(256)) * (12 << 12)  # 12 MiB
SMALL = DATA[:64 << 10]


@pytest.fixture
def ceph():
    return fx.make_ceph()


@pytest.fixture
def svc(ceph, tmp_path):
    drivers = {'ceph-a': fx.make_driver(ceph, pool='hdd', backend='ceph-a'),
               'ceph-b': fx.make_driver(ceph, pool='ssd', backend='ceph-b')}
    for name, drv in drivers.items():
        # Checkpoints every 64 KiB, so a copy has several.
        drv.configuration._conf.set_override('volume_copy_chunk_size',
                                             64 << 10, group=name)
    return service_mod.Service(db_fixtures.make_db(tmp_path), drivers)


class Killed(BaseException):
    """A SIGKILL, in process: nothing of the code's own cleanup runs."""


def _images(ceph, pool):
    return sorted(ceph.clusters[fx.CONF_A].pools[pool])


def _volume(svc, ceph, data=DATA):
    record = svc.create('ceph-a', 1)
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    with ceph.rbd.Image(ioctx, record.name) as image:
        image.write(data, 0)
    return record


def _dead_process(svc, migration_id):
    """The migration's process is gone: a pid that cannot run here."""
    db_fixtures.set_row(svc.db, models.Migration, migration_id,
                        host='%s:999999999' % socket.gethostname())


def _silenced(svc, monkeypatch):
    """A killed process records nothing more: its finish_migration does
    nothing until the returned ``revive()`` (its process is gone)."""
    real = svc.db.finish_migration
    state = {'silent': True}
    monkeypatch.setattr(
        svc.db, 'finish_migration',
        lambda *a, **k: None if state['silent'] else real(*a, **k))

    def revive():
        state['silent'] = False
    return revive


def _copies(ceph, name):
    """Where a complete copy of DATA lives, as ``[(pool, image)]``."""
    length, found = len(DATA), []
    for pool, images in ceph.clusters[fx.CONF_A].pools.items():
        for image in sorted(images):
            if not image.startswith(name):
                continue
            if fx.read_head(ceph, pool, image, length) == DATA:
                found.append((pool, image))
    return found


# -- the generic copy's undo, while the record says "completing" -------------

@pytest.mark.parametrize('how', ['the copy removed', 'the copy half-removed'])
def test_a_generic_undo_killed_midway_never_lets_recovery_remove_the_source(
        svc, ceph, monkeypatch, at_point, how):
    # complete() journals ``completing`` (recovery: finish forward, remove
    # the source), then finds a client opened the source as it was being
    # removed and undoes the move.  It must end the record (``error``)
    # before it removes the verified copy: a record still saying
    # ``completing`` has recovery finish "forward", removing the source
    # too.  Killed in the copy's removal, the record says ``error`` and
    # recovery leaves the source alone.
    record = _volume(svc, ceph)
    source = ceph.image(fx.CONF_A, 'hdd', record.name)
    migration = svc.request(record.id, 'ceph-b')
    # A client opens the source just before its removal: librbd refuses
    # (busy), and the move undoes itself.
    at_point['service.remove_source.before'] = lambda: source.watchers.append(
        {'id': 7, 'addr': '10.0.0.7:0/7'})
    if how == 'the copy removed':
        # Killed once the copy is gone, before its record is.
        def die(volume_id):
            raise Killed('after the copy was removed')
        monkeypatch.setattr(svc.db, 'delete_volume', die)
    else:
        # Killed in the copy's removal (librbd removes the data objects
        # first, the header last: 'rbd.remove' is its crash point).
        def half_removed():
            ceph.image(fx.CONF_A, 'ssd', record.name).blocks.clear()
            raise Killed('removing the copy')
        at_point['rbd.remove'] = half_removed

    with pytest.raises(Killed):
        svc.run(migration.id, 'generic')
    monkeypatch.undo()
    assert svc.show(record.id)['migration_status'] == 'error'
    source.watchers.clear()  # the client closed it since
    _dead_process(svc, migration.id)

    outcomes = svc.recover()

    assert _copies(ceph, record.name), outcomes  # no complete copy left
    where = svc.db.get_volume(record.id)
    pool = {'ceph-a': 'hdd', 'ceph-b': 'ssd'}[where.backend]
    assert fx.read_head(ceph, pool, where.name, len(DATA)) == DATA


# -- a lease lost by a process that still runs --------------------------------

def _left_by(svc, migration_id, host, seconds_ago):
    db_fixtures.set_row(
        svc.db, models.Migration, migration_id, host=host,
        updated_at=timeutils.utcnow() - datetime.timedelta(
            seconds=seconds_ago))


def test_a_stale_lease_holder_never_removes_the_copy_its_successor_keeps(
        svc, ceph, monkeypatch):
    # Host A's generic move runs on, but its lease went stale (its
    # heartbeats did not reach the database for a while).  Host B's
    # recovery takes the move over, resumes and verifies the copy and
    # starts removing the source.  A, unaware, then fails (a client had
    # the source open for a moment) and, the source being "intact",
    # removes the destination: B removes the source.
    from rbdmig.db import api

    record = _volume(svc, ceph)
    source = ceph.image(fx.CONF_A, 'hdd', record.name)
    svc.host = 'host-a:1'
    other = service_mod.Service(
        db_fixtures.guarded(api.API(str(svc.db.engine.url))), svc.drivers,
        host='host-b:1')
    migration = svc.request(record.id, 'ceph-b')
    a_waits, a_goes = threading.Event(), threading.Event()
    runner = {}

    def hook(name):
        me = threading.current_thread()
        if me is runner.get('a') and name == 'service.verified':
            a_waits.set()
            assert a_goes.wait(60)
        elif me is threading.main_thread() and name == 'service.completing':
            # B removes the source next.  Meanwhile A sees a client with
            # the source open (it closes it again before B's removal).
            source.watchers.append({'id': 7, 'addr': '10.0.0.7:0/7'})
            a_goes.set()
            runner['a'].join(60)
            source.watchers.clear()

    monkeypatch.setattr(faults.POINTS, 'hook', hook)
    errors = []

    def run_a():
        try:
            svc.run(migration.id, 'generic')
        except Exception as err:  # noqa: BLE001 - looked at below
            errors.append(err)

    runner['a'] = threading.Thread(target=run_a)
    runner['a'].start()
    assert a_waits.wait(60)
    # A's lease is stale: B's recovery takes the move over.
    _left_by(svc, migration.id, 'host-a:1', lease.LEASE + 1)
    outcomes = other.recover()
    a_goes.set()
    runner['a'].join(60)

    assert _copies(ceph, record.name), (outcomes, errors)


# -- recovery reading "moved" into an image it did not make -------------------

def test_an_assisted_move_killed_before_it_began_is_not_read_as_moved(
        svc, ceph, monkeypatch, at_point):
    # The destination pool holds an image of the volume's name that
    # rbdmig did not create (the assisted move would refuse it).  Killed
    # before the engine ran, the move's record says ``migrating``, path
    # unknown; recovery finds "the volume" on the destination and records
    # the move a success: the record now names the other image, the
    # source is left out of every record, and deleting the volume
    # removes the other image.
    record = _volume(svc, ceph)
    theirs = b'not the volume, somebody else\'s image'
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('ssd')
    ceph.rbd.RBD().create(ioctx, record.name, 1 << 30)
    with ceph.rbd.Image(ioctx, record.name) as image:
        image.write(theirs, 0)
    migration = svc.request(record.id, 'ceph-b')
    revive = _silenced(svc, monkeypatch)

    def die():
        raise Killed('before the engine ran')

    at_point['service.migrating'] = die
    with pytest.raises(Killed):
        svc.run(migration.id)
    revive()
    _dead_process(svc, migration.id)

    outcomes = svc.recover()

    where = svc.db.get_volume(record.id)
    assert where.backend == 'ceph-a', outcomes
    svc.delete(record.id)
    assert fx.read_head(ceph, 'ssd', record.name, len(theirs)) == theirs


# -- Cinder's row, when a live move gives the source back ---------------------

class _Row(object):
    """A Cinder volume row: the fields CinderAuthority reads and saves."""

    def __init__(self, volume_id, host):
        self.id = volume_id
        self.host = host
        self.cluster_name = None
        self.service_uuid = None
        self.availability_zone = 'nova'
        self.migration_status = 'migrating'
        self.status = 'available'
        self.previous_status = None
        self.saved = {}

    def update(self, values):
        for key, value in values.items():
            setattr(self, key, value)

    def save(self):
        self.saved = {'host': self.host,
                      'migration_status': self.migration_status}


def _cinder_authority(monkeypatch, rows):
    """rbdmig.cinder.authority, loaded against a stand-in for Cinder (not
    installed for the unit tests): ``rows`` is Cinder's volume table."""
    import importlib.util
    import os

    class VolumeNotFound(Exception):
        pass

    class ServiceNotFound(Exception):
        pass

    def get_by_id(context, volume_id):
        try:
            return rows[volume_id]
        except KeyError:
            raise VolumeNotFound(volume_id)

    def get_by_args(context, host, binary):
        raise ServiceNotFound(host)

    def extract_host(host, level='backend'):
        return host.split('#')[0] if level == 'backend' else (
            host.partition('#')[2] or None)

    cinder = types.ModuleType('cinder')
    cinder.exception = types.SimpleNamespace(
        VolumeNotFound=VolumeNotFound, ServiceNotFound=ServiceNotFound)
    cinder.objects = types.SimpleNamespace(
        Volume=types.SimpleNamespace(get_by_id=get_by_id),
        Service=types.SimpleNamespace(get_by_args=get_by_args))
    volume = types.ModuleType('cinder.volume')
    volume.volume_utils = types.SimpleNamespace(
        extract_host=extract_host,
        append_host=lambda host, pool: '%s#%s' % (host, pool))
    cinder.volume = volume
    for name, module in (('cinder', cinder), ('cinder.volume', volume),
                         ('cinder.volume.volume_utils',
                          volume.volume_utils)):
        monkeypatch.setitem(sys.modules, name, module)
    path = os.path.join(os.path.dirname(recover.__file__), os.pardir,
                        'cinder', 'authority.py')
    spec = importlib.util.spec_from_file_location(
        'rbdmig_seams_review_authority', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CinderAuthority


@pytest.mark.parametrize('kill_at', ['engine.finished', 'finish'])
def test_an_aborted_live_move_killed_before_the_row_is_told_names_the_source(
        ceph, monkeypatch, kill_at):
    # ``live``: a client opened the source just before librbd's commit;
    # the move aborts (the source whole in its pool again) and tells
    # Cinder's row, which ``moved`` pointed at the destination, to name
    # the source again.  It closes its journal record first: killed in
    # between (the point ``engine.finished``), nothing is left to say the
    # row names a pool the volume is not in.  Killed just before closing
    # the record (``finish``), recovery finds the abort done and
    # "releases" it: the row is marked failed but still names the
    # destination.
    from rbdmig.ceph import migrate

    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='live')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA, size_mib=16)
    source_host = 'node@be#hdd'
    rows = {volume.id: _Row(volume.id, source_host)}
    authority_cls = _cinder_authority(monkeypatch, rows)
    ceph.fail('migration_commit', ceph.rbd.ImageBusy('watcher appeared'),
              times=1)
    if kill_at == 'finish':
        real_finish = journal.Journal.finish

        def die(self, record):
            monkeypatch.setattr(journal.Journal, 'finish', real_finish)
            raise Killed('closing the record')

        monkeypatch.setattr(journal.Journal, 'finish', die)
    else:
        def hook(name):
            if name == kill_at:
                raise Killed(name)
        monkeypatch.setattr(faults.POINTS, 'hook', hook)

    with pytest.raises(Killed):
        migrate.migrate(src.backend(), volume, fx.host_of(dst),
                        authority=authority_cls(None, 'node@be'))
    monkeypatch.setattr(faults.POINTS, 'hook', None)
    # The volume is whole in the source pool, and only there.
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert volume.name not in _images(ceph, 'ssd')

    outcomes = recover.recover(src.backend(),
                               authority=authority_cls(None, 'node@be'))

    assert rows[volume.id].host == source_host, outcomes



# -- the library's generic fallback (rbdmig demo, bench) ----------------------

def test_the_librarys_generic_fallback_removes_the_source_only_verified(
        ceph, tmp_path):
    # manager.migrate copies through this host, then removes the source:
    # no comparison of the two, no second look for clients.  A client
    # that wrote to the source during the copy (opened, wrote, closed:
    # nothing to see before or after) lost its acknowledged write.
    from tests.unit import test_file_driver as files

    src = fx.make_driver(ceph, pool='hdd')
    dst = files.make_driver(tmp_path)
    dst.do_setup(None)
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)

    class ClientWritesAtTheEnd(progress.Callback):
        def call(self):
            if self.size and self.value >= self.size:
                ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx(
                    'hdd')
                with ceph.rbd.Image(ioctx, volume.name) as image:
                    image.write(b'acknowledged', 0)

    try:
        manager.migrate(None, volume, src, dst,
                        callback=ClientWritesAtTheEnd())
    except exception.RbdmigError:
        pass  # refusing is fine; losing the write is not
    if volume.name in _images(ceph, 'hdd'):
        assert fx.read_head(ceph, 'hdd', volume.name, 12) == b'acknowledged'
    else:
        with open(dst.local_path(volume), 'rb') as f:
            assert f.read(12) == b'acknowledged'


# -- the service, when something fails after the engine's move stood ----------

@pytest.mark.parametrize('fails', ['the journal closing', 'the database'])
def test_an_assisted_move_that_stood_is_never_recorded_as_failed(
        svc, ceph, monkeypatch, fails):
    # The engine moved the volume (the copy holds its name on ceph-b, the
    # source is removed); then a transient error: closing the journal's
    # record (its index write), or the database's advance to
    # ``completing``.  The service records the move failed, the volume
    # on ceph-a "with its source intact", where no image is left; an
    # ended migration is never recovered.
    record = _volume(svc, ceph)
    migration = svc.request(record.id, 'ceph-b')
    if fails == 'the journal closing':
        real_forget = journal.Journal._forget
        removed = []

        def forget(self, key):
            if removed:
                raise ceph.rados.TimedOut('index write timed out')
            return real_forget(self, key)

        monkeypatch.setattr(journal.Journal, '_forget', forget)
        monkeypatch.setattr(faults.POINTS, 'hook', lambda name: (
            name == 'engine.source.removed' and removed.append(name)))
    else:
        real_advance = svc.db.advance_migration

        def advance(migration_id, status, **values):
            if status == 'completing':
                raise exception.ConcurrentUpdate(what='the row',
                                                 expected='a connection')
            return real_advance(migration_id, status, **values)

        monkeypatch.setattr(svc.db, 'advance_migration', advance)

    try:
        svc.run(migration.id)  # returns (the move stood) or raises
    except Exception:  # noqa: BLE001 - either is fine, an error is not
        pass
    monkeypatch.undo()
    assert _images(ceph, 'hdd') == []  # the move stood
    _dead_process(svc, migration.id)
    svc.drivers['ceph-a'].recover_migrations()
    outcomes = svc.recover()

    where = svc.db.get_volume(record.id)
    pool = {'ceph-a': 'hdd', 'ceph-b': 'ssd'}[where.backend]
    assert where.name in _images(ceph, pool), (where.backend, outcomes)
    assert fx.read_head(ceph, pool, where.name, len(DATA)) == DATA


def test_a_move_given_back_after_the_row_was_moved_names_the_source_again(
        ceph, monkeypatch):
    # The copy took the volume's name and ``moved`` saved Cinder's row on
    # the destination, but the save then failed (the database committed,
    # its answer was lost).  The engine gives the source back and removes
    # the copy, but never tells the row (``restored`` is only called on
    # live's abort): the row names a pool where the volume is not.
    from rbdmig.ceph import migrate

    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='copy')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA, size_mib=16)
    source_host = 'node@be#hdd'
    row = _Row(volume.id, source_host)
    authority_cls = _cinder_authority(monkeypatch, {volume.id: row})

    failures = [ConnectionError('lost the database\'s answer')]

    def save_then_fail():
        _Row.save(row)
        if failures:
            raise failures.pop()

    row.save = save_then_fail

    with pytest.raises(exception.MigrationError, match='recording that'):
        migrate.migrate(src.backend(), volume, fx.host_of(dst),
                        authority=authority_cls(None, 'node@be'))

    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _images(ceph, 'ssd') == []
    assert row.saved['host'] == source_host


# -- a forced recovery that cannot list watchers ------------------------------

def test_a_forced_recovery_never_takes_over_a_move_running_on_this_host(
        svc, ceph, monkeypatch):
    # ``rbdmig recover --any-host`` where Ceph cannot say who watches the
    # journal (no rados tool: liveness.watchers raises).  The log says
    # "this host's lock decides", but with any_host the lock is never
    # read: a move running in this very process is taken over.  Between
    # the copy taking the name and the source's removal the move holds no
    # image open, so nothing is fenced: recovery gives the source back
    # and removes the copy, the move then "completes" and reports it
    # moved, and the database names ceph-b, where nothing is.
    from rbdmig.ceph import liveness
    from rbdmig.ceph.methods import base

    record = _volume(svc, ceph)

    def cannot_list(*args, **kwargs):
        raise exception.VolumeBackendAPIException(
            data='the rados tool (ceph-common) is needed')

    monkeypatch.setattr(liveness, 'watchers', cannot_list)
    real_place = base.Method.place
    taken = []

    def place_then_forced_recovery(self, move):
        real_place(self, move)
        taken.extend(svc.drivers['ceph-a'].recover_migrations(any_host=True))

    monkeypatch.setattr(base.Method, 'place', place_then_forced_recovery)
    try:
        svc.migrate(record.id, 'ceph-b', method='copy')
    except exception.RbdmigError:
        pass  # refusing is fine; a record naming nothing is not

    assert [o.action for o in taken] in ([], ['skipped'])
    where = svc.db.get_volume(record.id)
    pool = {'ceph-a': 'hdd', 'ceph-b': 'ssd'}[where.backend]
    assert where.name in _images(ceph, pool), (where.backend, taken)


# -- checked seam: the engine killed anywhere, then its recovery too ----------

class _Told(recover.Authority):
    """An authority that names what it was last told: Cinder's row
    (``follows``: moved by ``moved``, put back by ``restored``, moved by a
    completing recovery), or rbdmig's database, naming the source until
    the move returned (the service decides afterwards)."""

    def __init__(self, follows):
        self.follows = follows
        self.naming = 'source'

    def names(self, record):
        return self.naming if self.follows else 'source'

    def moved(self, record):
        self.naming = 'destination'

    def restored(self, record):
        self.naming = 'source'

    def settle(self, record, decision):
        if decision in ('complete', 'adopt'):
            self.naming = 'destination'


def _kill_then_recover(ceph, monkeypatch, method, scenario, kill, rkill,
                       follows):
    """Migrate; die at the ``kill`` ``(point, nth)`` (no cleanup runs);
    recover, dying at ``rkill``; recover again.  Returns what is wrong
    (a list of sentences) and the points each run reached."""
    from rbdmig import ext
    from rbdmig.ceph import migrate
    from rbdmig.ceph.methods import base
    from rbdmig.ceph.methods import clone_flatten
    from rbdmig.ceph.methods import live

    monkeypatch.setenv(ext.DISABLE_ENV, '1')
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=SMALL)
    pools = ceph.clusters[fx.CONF_A].pools
    authority = _Told(follows)
    reached, counts, client = [], {}, {}

    def scenario_step(name):
        if client.get('done'):
            return
        if scenario == 'a client opens the retired source' and (
                name == 'engine.retired'):
            client['image'] = next(i for n, i in pools['hdd'].items()
                                   if n.endswith('.retired'))
            client['image'].watchers.append({'id': 4242,
                                             'addr': '10.9.9.9:0/1'})
            client['done'] = True
        if scenario == 'the name is taken as the copy is placed' and (
                name == 'engine.placed'):
            ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('ssd')
            ceph.rbd.RBD().create(ioctx, volume.name, 4096)
            with ceph.rbd.Image(ioctx, volume.name) as image:
                image.write(b'theirs', 0)
            client['done'] = True

    def engine_hook(name):
        reached.append(name)
        counts[name] = counts.get(name, 0) + 1
        scenario_step(name)
        if (name, counts[name]) == kill:
            # Killed: nothing of the move's own cleanup runs.
            for target in ('rbdmig.ceph.migrate._Migration._undo',
                           'rbdmig.ceph.migrate._Migration._give_back'):
                monkeypatch.setattr(target, lambda *a, **k: None)
            monkeypatch.setattr(base.Method, '_remove_partial',
                                lambda *a: None)
            monkeypatch.setattr(live.LiveMethod, '_abort', lambda *a: None)
            monkeypatch.setattr(clone_flatten, 'drop_snapshot',
                                lambda *a: None)
            raise Killed(name)

    with monkeypatch.context() as patch:
        patch.setattr(faults.POINTS, 'hook', engine_hook)
        try:
            migrate.migrate(src.backend(), volume, fx.host_of(dst),
                            authority=authority)
            returned = True
        except Killed:
            returned = False
        except exception.RbdmigError:
            returned = False  # refused or failed: the source stays
    if client.get('image') is not None:
        client['image'].watchers.clear()  # the client went away
    recovery, rcounts = [], {}

    def recovery_hook(name):
        recovery.append(name)
        rcounts[name] = rcounts.get(name, 0) + 1
        if (name, rcounts[name]) == rkill:
            raise Killed(name)

    outcomes = []
    with monkeypatch.context() as patch:
        patch.setattr(faults.POINTS, 'hook', recovery_hook)
        try:
            outcomes += recover.recover(src.backend(), authority=authority)
        except Killed:
            pass
    outcomes += recover.recover(src.backend(), authority=authority)

    wrong = []
    racer = scenario == 'the name is taken as the copy is placed' and (
        client.get('done'))
    ours = [pool for pool in ('hdd', 'ssd') if volume.name in pools[pool]
            and not (racer and pool == 'ssd')]
    if len(ours) != 1:
        wrong.append('the volume is in %s' % (ours or 'no pool'))
    else:
        pool = ours[0]
        image = pools[pool][volume.name]
        if fx.read_head(ceph, pool, volume.name, len(SMALL)) != SMALL:
            wrong.append('its data differ')
        if image.snaps or image.metadata:
            wrong.append('left: %s %s' % (list(image.snaps),
                                          image.metadata))
        if follows and pool != {'source': 'hdd', 'destination': 'ssd'}[
                authority.naming]:
            wrong.append('the authority names the %s, the volume is in %s'
                         % (authority.naming, pool))
        if returned and pool != 'ssd':
            wrong.append('the move returned, the volume is in %s' % pool)
    if racer and fx.read_head(ceph, 'ssd', volume.name, 6) != b'theirs':
        wrong.append('the image that took the name was touched')
    leftovers = [n for p in ('hdd', 'ssd') for n in pools[p]
                 if n != volume.name]
    if leftovers:
        wrong.append('left over: %s' % leftovers)
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    if journal.Journal(ceph.rados, ioctx).records():
        wrong.append('a record stays')
    if wrong:
        wrong.append('(recovery: %s)' % [o.action for o in outcomes])
    return wrong, reached, recovery


_SCENARIOS = ['plain', 'a client opens the retired source',
              'the name is taken as the copy is placed']


@pytest.mark.parametrize('scenario', _SCENARIOS)
@pytest.mark.parametrize('method', ['copy', 'extents', 'deep_copy',
                                    'clone_flatten', 'live'])
def test_a_move_killed_at_any_point_and_its_recovery_too_leaves_one_copy(
        monkeypatch, method, scenario):
    # The functional tests kill a move once at each point and recover it
    # (rbdmig's database naming the source).  Here, on the fake, for
    # every point: a recovery killed at each of its own points and run
    # again, an authority that follows the move (as Cinder's row does)
    # or not, and the moves that give the source back.
    if method == 'live' and scenario.startswith('the name is taken'):
        pytest.skip('live builds under the name itself')
    _, points, _ = _kill_then_recover(fx.make_ceph(), monkeypatch, method,
                                      scenario, None, None, False)
    monkeypatch.undo()
    failures, seen = [], {}
    for point in points:
        seen[point] = seen.get(point, 0) + 1
        kill = (point, seen[point])
        for follows in (False, True):
            wrong, _, recovery = _kill_then_recover(
                fx.make_ceph(), monkeypatch, method, scenario, kill, None,
                follows)
            monkeypatch.undo()
            if wrong:
                failures.append((kill, None, follows, wrong))
            rseen = {}
            for rpoint in recovery:
                rseen[rpoint] = rseen.get(rpoint, 0) + 1
                wrong, _, _ = _kill_then_recover(
                    fx.make_ceph(), monkeypatch, method, scenario, kill,
                    (rpoint, rseen[rpoint]), follows)
                monkeypatch.undo()
                if wrong:
                    failures.append((kill, (rpoint, rseen[rpoint]),
                                     follows, wrong))
    assert len(points) >= 6
    assert failures == []
