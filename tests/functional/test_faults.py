"""Faults injected into real clusters: nothing is lost, nothing is left.

After each test the data reads back identical from exactly one place, no
image rbdmig did not create was touched, and ``rbdmig recover`` leaves
no orphan.  Each test adds a row to the fault table (``fault_table``).
"""

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import rbd

from rbdmig import exception
from rbdmig import faults
from rbdmig import objects
from rbdmig import sandbox
from rbdmig.ceph import location
from rbdmig.migration import progress
from tests.functional import helpers

POOLS = ('volumes-a', 'volumes-b')


def _leftovers(cluster, volume):
    """Images of either pool that are not a volume's plain name."""
    return [name for pool in POOLS for name in helpers.images(cluster, pool)
            if '.rbdmig-' in name]


def _journaled(cluster):
    """Migration records left in either pool."""
    client = cluster.connect()
    try:
        found = []
        for pool in POOLS:
            ioctx = client.open_ioctx(pool)
            found += [o.key for o in ioctx.list_objects()
                      if o.key.startswith('rbdmig_migration.')]
            ioctx.close()
        return found
    finally:
        client.shutdown()


def _new(drivers, backend, cleanup, extents):
    """A volume on ``backend``, deleted from wherever it ends up."""
    volume, before = helpers.new_volume(drivers[backend], extents=extents)
    for drv in drivers.values():
        if drv.configuration.safe_get('rbd_pool'):
            cleanup.add('delete %s' % volume.name, drv.delete_volume, volume)
    return volume, before


def _where(cluster, volume):
    return [pool for pool in POOLS
            if volume.name in helpers.images(cluster, pool)]


def _actions(said):
    """The actions ``rbdmig recover`` reported, e.g. ``['rolled back']``."""
    return re.findall(r'\): ([a-z ]+) \(', said)


def _recover_cli(cluster):
    out = subprocess.run(
        [sys.executable, '-m', 'rbdmig.cmd.main', 'recover',
         '--config-file', cluster.rbdmig_conf_path],
        capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout


# -- 3: the migrating process SIGKILLed, at every point --------------------

METHODS = ('copy', 'deep_copy', 'clone_flatten', 'extents', 'offload',
           'live')
# Methods that keep snapshots: their volume has one, so that removing
# the source's snapshots has crash points too.
SNAPSHOTS = ('deep_copy', 'live')
_REMOVAL = ['engine.source.stripped', 'engine.source.removing',
            'engine.source.removed']
# Every crash point a whole move reaches, in order (``mid``: the copy's
# progress past 30 %).  test_the_enumeration_is_complete checks that a
# real move reaches exactly these: a new point fails it until listed.
PATHS = {m: ['engine.claimed', 'engine.copying', 'mid', 'engine.copied',
             'engine.verified', 'engine.retiring', 'engine.retired',
             'engine.placed', 'engine.removing']
         + (['engine.source.snapshot_removed'] if m in SNAPSHOTS else [])
         + _REMOVAL + ['engine.finished'] for m in METHODS}
PATHS['live'] = ['engine.claimed', 'engine.copying', 'mid', 'engine.copied',
                 'engine.verified', 'engine.retiring', 'engine.placed',
                 'engine.removing', 'engine.finished']
POINTS = [(m, p) for m in METHODS for p in PATHS[m]]
# Where recovery must leave the volume: rbdmig's database names the
# source until the move returned, so the source until its removal began,
# the copy from then on.
_MOVED = 'engine.removing'


def _after(method, point):
    path = PATHS[method]
    return 'volumes-b' if path.index(point) >= path.index(_MOVED) else (
        'volumes-a')


def _new_for(drivers, method, cleanup, cluster):
    volume, before = _new(drivers, 'ceph-a', cleanup, 48)
    if method in SNAPSHOTS:
        _snapshot(drivers['ceph-a'], volume, 'kept')
        cleanup.add('purge the snapshots of %s' % volume.name,
                    _purge_snapshots, cluster, volume)
    return volume, before


def _purge_snapshots(cluster, volume):
    for pool in POOLS:
        if volume.name in helpers.images(cluster, pool):
            cluster.rbd('snap', 'purge', '%s/%s' % (pool, volume.name))


def _snapshot(drv, volume, name):
    with drv.backend().connect() as (_client, ioctx):
        with rbd.Image(ioctx, volume.name) as image:
            image.create_snap(name)


def _snapshots(cluster, pool, name):
    return cluster.rbd('snap', 'ls', '%s/%s' % (pool, name)).split()


def _crash(cluster, method, point, volume, env=None):
    return subprocess.run(
        [sys.executable, '-m', 'tests.functional.crash_child',
         cluster.rbdmig_conf_path, method, point, volume.id],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, **(env or {})))


@pytest.mark.parametrize('method', METHODS)
def test_the_enumeration_is_complete(ceph_cluster, method, cleanup,
                                     tmp_path):
    drivers = helpers.load_drivers(ceph_cluster)
    volume, before = _new_for(drivers, method, cleanup, ceph_cluster)
    record = tmp_path / 'points'

    done = _crash(ceph_cluster, method, 'none', volume,
                  {'RBDMIG_CRASH_RECORD': str(record)})

    assert done.returncode == 0, done.stdout + done.stderr
    reached = record.read_text().split()
    assert reached == [p for p in PATHS[method] if p != 'mid']
    assert helpers.digest(drivers['ceph-b'], volume) == before


@pytest.mark.parametrize('method,point', POINTS)
def test_a_killed_migration_is_repaired_by_recover(
        ceph_cluster, method, point, crash_table, cleanup):
    drivers = helpers.load_drivers(ceph_cluster)
    volume, before = _new_for(drivers, method, cleanup, ceph_cluster)

    child = _crash(ceph_cluster, method, point, volume)
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr

    code, said = _recover_cli(ceph_cluster)

    assert code == 0, said
    after = _after(method, point)
    assert _where(ceph_cluster, volume) == [after]
    owner = drivers['ceph-a' if after == 'volumes-a' else 'ceph-b']
    intact = helpers.digest(owner, volume) == before
    if method in SNAPSHOTS:
        intact = intact and 'kept' in _snapshots(ceph_cluster, after,
                                                 volume.name)
    clean = (_leftovers(ceph_cluster, volume) == [] and
             _journaled(ceph_cluster) == [])
    # And it moves again, as any volume would.
    src, dst = ('ceph-a', 'ceph-b') if after == 'volumes-a' else (
        'ceph-b', 'ceph-a')
    again = drivers[src].migrate_volume(
        None, volume, helpers.host_of(drivers[dst])) == (True, None) and (
            helpers.digest(drivers[dst], volume) == before)
    crash_table('%s (rbdmig recover)' % method, point, '%s: %s%s' % (
        ', '.join(_actions(said)) or 'nothing to do',
        'source' if after == 'volumes-a' else 'copy',
        '' if intact and clean and again else ' **FAILED**'))
    assert intact, 'the data differs where it should be'
    assert clean, 'a leftover or a journal record remains'
    assert again, 'it did not move again'


@pytest.mark.parametrize('data_pool', [None, 'volumes-b'])
def test_a_half_removed_source_is_finished_by_recover(
        ceph_cluster, fault_table, cleanup, data_pool):
    drivers = helpers.load_drivers(ceph_cluster)
    if data_pool:  # its data objects in another pool, swept there too
        volume = objects.Volume(size=1)
        ceph_cluster.rbd('create', '--size', '1G', '--data-pool', data_pool,
                         'volumes-a/' + volume.name)
        for drv in drivers.values():
            if drv.configuration.safe_get('rbd_pool'):
                cleanup.add('delete %s' % volume.name, drv.delete_volume,
                            volume)
        handle = drivers['ceph-a'].open_volume(None, volume, 'r+b')
        for slot in (0, 37, 300, 1000):
            handle.seek(slot << 20)
            handle.write(os.urandom(1 << 20))
        drivers['ceph-a'].close_volume(None, volume, handle)
        before = helpers.digest(drivers['ceph-a'], volume)
    else:
        volume, before = _new_for(drivers, 'extents', cleanup, ceph_cluster)
    with drivers['ceph-a'].backend().connect() as (_client, ioctx):
        with rbd.Image(ioctx, volume.name, read_only=True) as image:
            image_id = image.id()
    child = _crash(ceph_cluster, 'extents', 'engine.source.stripped', volume)
    assert child.returncode == -signal.SIGKILL, child.stderr
    # As if the kill had landed inside librbd's removal, past the header:
    # the image lists, but no longer opens.
    client = ceph_cluster.connect()
    try:
        ioctx = client.open_ioctx('volumes-a')
        ioctx.remove_object('rbd_header.%s' % image_id)
        ioctx.close()
    finally:
        client.shutdown()
    assert [n for n in helpers.images(ceph_cluster, 'volumes-a')
            if n.startswith(volume.name)]

    code, said = _recover_cli(ceph_cluster)

    assert code == 0, said
    assert helpers.images(ceph_cluster, 'volumes-a') == []
    left = _objects(ceph_cluster, 'volumes-a', image_id) + _objects(
        ceph_cluster, 'volumes-b', image_id)
    intact = helpers.digest(drivers['ceph-b'], volume) == before
    fault_table('process SIGKILLed inside source removal, the source '
                'half-removed (lists, does not open)%s' % (
                    ', its data in pool %s' % data_pool if data_pool
                    else ''),
                'recover: the source finished, every object of it swept',
                'recover: %s; %d objects of the source left' % (
                    ', '.join(_actions(said)), len(left)), intact)
    assert intact and left == []
    assert _journaled(ceph_cluster) == []


def _objects(cluster, pool, image_id):
    client = cluster.connect()
    try:
        ioctx = client.open_ioctx(pool)
        found = [o.key for o in ioctx.list_objects() if image_id in o.key]
        ioctx.close()
        return found
    finally:
        client.shutdown()


# -- 1: an OSD paused mid-copy ---------------------------------------------

def test_a_paused_osd_ends_the_migration_within_the_op_timeout(
        ceph_cluster, fault_table, cleanup):
    drivers = helpers.load_drivers(ceph_cluster, **{'ceph-a': {
        'rados_osd_op_timeout': 5, 'rbd_migration_method': 'extents'}})
    volume, before = _new(drivers, 'ceph-a', cleanup, 256)
    paused = []

    class PauseTheOSD(progress.Callback):
        def call(self):
            if self.value and not paused:
                ceph_cluster.signal('osd.0', signal.SIGSTOP)
                paused.append(time.monotonic())

    try:
        with pytest.raises(exception.MigrationError):
            drivers['ceph-a'].migrate_volume(
                None, volume, helpers.host_of(drivers['ceph-b']),
                callback=PauseTheOSD())
        took = time.monotonic() - paused[0]
    finally:
        ceph_cluster.resume('osd.0')

    code, said = _recover_cli(ceph_cluster)
    assert code == 0, said
    intact = helpers.digest(drivers['ceph-a'], volume) == before
    fault_table('OSD paused (SIGSTOP) mid-copy, op timeout 5 s',
                'MigrationError within the timeouts; recover cleans up',
                'MigrationError after %.1f s; recover: %s' % (
                    took, ', '.join(_actions(said)) or 'nothing left'),
                intact)
    assert intact
    # The copy's operations time out after 5 s (twice: 10 s measured);
    # closing each image that was open (the copy, the locked source:
    # flush, unwatch, lock release) waits 5 s per operation (15 s each
    # measured), the journal's watch 5 s more: 45 s measured alone on
    # this machine.  A bound in operations, with room for a loaded one.
    assert took < 14 * 5 + 10
    assert _where(ceph_cluster, volume) == ['volumes-a']
    assert _leftovers(ceph_cluster, volume) == []


# -- 2: an OSD killed and restarted, replicated pool -----------------------

@pytest.fixture(scope='module')
def three_osds(cluster_registry, tmp_path_factory):
    """Three OSDs, pools of size 2: an OSD can die without losing data."""
    cluster = cluster_registry.start(tmp_path_factory.mktemp('three'),
                                     name='three', backend_prefix='three',
                                     osd_count=3, osd_bytes=1 << 30)
    for pool in POOLS:
        cluster.ceph('osd', 'pool', 'set', pool, 'size', '2')
    deadline = time.monotonic() + 60
    while 'active+clean' not in cluster.ceph('pg', 'stat') or any(
            s in cluster.ceph('pg', 'stat') for s in ('peering', 'undersized',
                                                     'degraded')):
        assert time.monotonic() < deadline, cluster.ceph('pg', 'stat')
        time.sleep(0.5)
    return cluster


def test_an_osd_killed_and_restarted_mid_copy_does_not_stop_it(
        three_osds, fault_table, cleanup):
    drivers = helpers.load_drivers(three_osds)
    volume, before = _new(drivers, 'three-a', cleanup, 128)
    killed = []

    class KillAnOSD(progress.Callback):
        def call(self):
            if self.value and not killed:
                three_osds.signal('osd.1', signal.SIGKILL)
                killed.append(time.monotonic())
                threading.Timer(1.0, three_osds.restart,
                                args=('osd.1',)).start()

    start = time.monotonic()
    moved = drivers['three-a'].migrate_volume(
        None, volume, helpers.host_of(drivers['three-b']),
        callback=KillAnOSD())
    took = time.monotonic() - start

    intact = helpers.digest(drivers['three-b'], volume) == before
    fault_table('one of 3 OSDs SIGKILLed mid-copy and restarted (size 2)',
                'the migration completes', '%s in %.1f s' % (
                    'completed' if moved == (True, None) else moved, took),
                intact)
    assert killed and moved == (True, None) and intact
    assert _where(three_osds, volume) == ['volumes-b']


# -- 4: the destination pool full -------------------------------------------

def test_a_full_destination_is_a_clean_error(ceph_cluster, fault_table,
                                             cleanup):
    drivers = helpers.load_drivers(ceph_cluster)
    volume, before = _new(drivers, 'ceph-a', cleanup, 64)
    ceph_cluster.ceph('osd', 'pool', 'set-quota', 'volumes-b', 'max_bytes',
                      str(16 << 20))
    try:
        with pytest.raises(exception.MigrationError,
                           match='nothing was changed') as err:
            drivers['ceph-a'].migrate_volume(
                None, volume, helpers.host_of(drivers['ceph-b']))
    finally:
        ceph_cluster.ceph('osd', 'pool', 'set-quota', 'volumes-b',
                          'max_bytes', '0')
    intact = helpers.digest(drivers['ceph-a'], volume) == before
    fault_table('destination pool quota (16 MiB) below the data (64 MiB)',
                'a clean error before anything moves',
                str(err.value).split(': ', 1)[1][:70], intact)
    assert intact and _where(ceph_cluster, volume) == ['volumes-a']
    assert _journaled(ceph_cluster) == []


# -- 5: the destination unreachable or misconfigured ------------------------

def _conf_with(cluster, tmp_path, name, **changes):
    text = open(cluster.conf_path).read()
    for key, value in changes.items():
        lines = [line for line in text.splitlines()
                 if not line.startswith(key + ' =')]
        text = '\n'.join(lines[:1] + ['%s = %s' % (key, value)] + lines[1:])
    path = tmp_path / name
    path.write_text(text + '\n')
    return str(path)


def _bad_key(cluster, tmp_path):
    keyring = tmp_path / 'wrong.keyring'
    keyring.write_text('[client.admin]\n\tkey = %s\n'
                       % sandbox.templates.new_key())
    return _conf_with(cluster, tmp_path, 'wrong-key.conf',
                      keyring=str(keyring))


FAULTY_CONFS = {
    'mon unreachable': lambda c, t: _conf_with(
        c, t, 'no-mon.conf', **{'mon host': 'v1:127.0.0.1:9'}),
    'wrong cephx key': _bad_key,
    'missing keyring': lambda c, t: _conf_with(
        c, t, 'no-keyring.conf', keyring=str(t / 'absent.keyring')),
    'missing ceph.conf': lambda c, t: str(t / 'absent.conf'),
}


@pytest.mark.parametrize('fault', sorted(FAULTY_CONFS))
def test_a_broken_destination_is_refused_in_bounded_time(
        ceph_cluster, tmp_path, fault, fault_table, cleanup, caplog):
    caplog.set_level(logging.INFO, logger='rbdmig')
    limits = {'rados_connect_timeout': 3, 'rados_connection_retries': 2,
              'rados_connection_interval': 1}
    drivers = helpers.load_drivers(ceph_cluster, **{'ceph-a': limits})
    volume, before = _new(drivers, 'ceph-a', cleanup, 4)
    conf = FAULTY_CONFS[fault](ceph_cluster, tmp_path)
    caps = {'storage_protocol': 'ceph', 'location_info':
            location.format_location('ceph', conf, ceph_cluster.fsid,
                                     'admin', 'volumes-b')}

    start = time.monotonic()
    answer = drivers['ceph-a'].migrate_volume(
        None, volume, {'host': 'x@y#z', 'capabilities': caps})
    took = time.monotonic() - start

    why = [r.getMessage() for r in caplog.records
           if 'Not migrating' in r.getMessage()]
    intact = helpers.digest(drivers['ceph-a'], volume) == before
    fault_table('destination: %s' % fault,
                '(False, None) within 2 x 3 s + 1 s, a clear reason',
                '%s in %.1f s: %s' % (answer, took, why[0].split(
                    'cannot be reached: ')[-1][:60] if why else '?'), intact)
    assert answer == (False, None) and intact and why
    # The connect timeouts, and room for a loaded machine's source side.
    assert took < 2 * 3 + 1 + 4


# -- 6: a destination name taken during the copy -----------------------------

def test_a_racing_creator_keeps_its_image(ceph_cluster, fault_table,
                                          cleanup):
    drivers = helpers.load_drivers(ceph_cluster)
    volume, before = _new(drivers, 'ceph-a', cleanup, 64)
    theirs = {}

    class CreateTheName(progress.Callback):
        def call(self):
            if self.value and not theirs:
                client = ceph_cluster.connect()
                ioctx = client.open_ioctx('volumes-b')
                rbd.RBD().create(ioctx, volume.name, 1 << 20)
                with rbd.Image(ioctx, volume.name) as image:
                    image.write(b'theirs', 0)
                ioctx.close()
                client.shutdown()
                theirs['made'] = True

    answer = _answer(drivers['ceph-a'].migrate_volume, None, volume,
                     helpers.host_of(drivers['ceph-b']),
                     callback=CreateTheName())

    client = ceph_cluster.connect()
    ioctx = client.open_ioctx('volumes-b')
    with rbd.Image(ioctx, volume.name) as image:
        untouched = image.read(0, 6) == b'theirs' and image.size() == 1 << 20
    ioctx.close()
    client.shutdown()
    intact = helpers.digest(drivers['ceph-a'], volume) == before
    fault_table('destination name created during the copy',
                'refused; their image untouched; our copy removed',
                '%s; theirs %s' % (answer, 'untouched' if untouched
                                   else 'CHANGED'), intact and untouched)
    assert answer == 'refused' and untouched and intact
    assert _leftovers(ceph_cluster, volume) == []
    ceph_cluster.rbd('rm', 'volumes-b/' + volume.name)


def _answer(call, *args, **kwargs):
    """``call``'s answer, or ``'refused'`` for an unsafe move."""
    try:
        return call(*args, **kwargs)
    except exception.MigrationRefused:
        return 'refused'


# -- 7: two processes migrating one volume at once ---------------------------

def test_two_processes_migrating_one_volume_one_runs(ceph_cluster,
                                                     fault_table, cleanup,
                                                     tmp_path):
    drivers = helpers.load_drivers(ceph_cluster)
    volume, before = _new(drivers, 'ceph-a', cleanup, 256)
    script = ('import sys; from tests.functional import helpers; '
              'from rbdmig import objects; '
              'c = type("S", (), {"rbdmig_conf_path": sys.argv[1]}); '
              'd = helpers.load_drivers(c); '
              'from rbdmig import exception\n'
              'try: print(d["ceph-a"].migrate_volume(None, objects.Volume('
              'id=sys.argv[2], size=1), helpers.host_of(d["ceph-b"])))\n'
              'except exception.MigrationRefused: print("refused")')
    # The first holds its move at engine.copying while the second tries
    # (``RBDMIG_PAUSE_AT``): they overlap however fast either runs.
    pauses = tmp_path / 'pauses'
    pauses.mkdir()

    def child(env):
        return subprocess.Popen(
            [sys.executable, '-c', script, ceph_cluster.rbdmig_conf_path,
             volume.id], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=dict(os.environ, **env))

    first = child({faults.PAUSE_AT: 'engine.copying',
                   faults.PAUSE_DIR: str(pauses)})
    try:
        deadline = time.monotonic() + 120
        while not (pauses / 'engine.copying.1.reached').exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, 'engine.copying not reached'
            time.sleep(0.1)
        second = child({}).communicate(timeout=300)[0].strip()
    finally:
        (pauses / 'release').touch()
    answers = sorted([first.communicate(timeout=300)[0].strip(), second])

    intact = helpers.digest(drivers['ceph-b'], volume) == before
    fault_table('two processes migrate one volume at once',
                'exactly one moves it', ' / '.join(answers), intact)
    assert answers == ['(True, None)', 'refused'] and intact
    assert _where(ceph_cluster, volume) == ['volumes-b']
    assert _leftovers(ceph_cluster, volume) == []


# -- 8: a writer opens the source during the migration ------------------------

def test_a_writer_during_the_copy_aborts_it_cleanly(ceph_cluster,
                                                    fault_table, cleanup):
    drivers = helpers.load_drivers(ceph_cluster)
    volume, _ = _new(drivers, 'ceph-a', cleanup, 128)
    writer = {}

    def write():
        client = ceph_cluster.connect()
        ioctx = client.open_ioctx('volumes-a')
        with rbd.Image(ioctx, volume.name) as image:
            writer['open'] = True
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:  # blocked while the migration holds the lock
                    image.write(b'written by a client', 0)
                    writer['wrote'] = True
                    break
                except (rbd.ReadOnlyImage, rbd.ImageBusy, OSError):
                    time.sleep(0.1)
        ioctx.close()
        client.shutdown()

    class OpenAWriter(progress.Callback):
        def call(self):
            if self.value and not writer:
                writer['thread'] = threading.Thread(target=write)
                writer['thread'].start()
                while 'open' not in writer:
                    time.sleep(0.01)

    answer = _answer(drivers['ceph-a'].migrate_volume, None, volume,
                     helpers.host_of(drivers['ceph-b']),
                     callback=OpenAWriter())
    writer['thread'].join()

    handle = drivers['ceph-a'].open_volume(None, volume)
    try:
        kept = handle.read(19) == b'written by a client'
    finally:
        handle.close()
    fault_table('a client opens and writes the source mid-copy',
                'the migration aborts; the write lands in the source',
                '%s; write %s' % (answer, 'kept' if kept else 'LOST'), kept)
    assert answer == 'refused' and writer.get('wrote') and kept
    assert _where(ceph_cluster, volume) == ['volumes-a']
    assert _leftovers(ceph_cluster, volume) == []


# -- two hosts: B's recovery takes over A's killed migration ---------------

def test_another_hosts_recovery_takes_over_once_ceph_says_it_is_dead(
        ceph_cluster, fault_table, cleanup):
    drivers = helpers.load_drivers(ceph_cluster)
    volume, before = _new_for(drivers, 'extents', cleanup, ceph_cluster)
    # Host A: a process with a host name of its own (a UTS namespace),
    # killed once the copy is verified.
    host_a = subprocess.run(
        ['unshare', '--uts', 'sh', '-c', 'hostname rbdmig-host-a && exec '
         '"$0" -m tests.functional.crash_child "$@"', sys.executable,
         ceph_cluster.rbdmig_conf_path, 'extents', 'engine.verified',
         volume.id], capture_output=True, text=True, timeout=300)
    assert host_a.returncode == -signal.SIGKILL, host_a.stderr
    killed = time.monotonic()

    # Host B (this one) cannot tell from its own lock files: Ceph can.
    # The killed client's watch lingers until the OSD times it out.
    code, first = _recover_cli(ceph_cluster)
    assert code == 0 and _actions(first) == ['skipped'], first
    while True:
        code, said = _recover_cli(ceph_cluster)
        if _actions(said) != ['skipped'] or (
                time.monotonic() - killed > 90):
            break
        time.sleep(2)
    waited = time.monotonic() - killed

    assert code == 0, said
    assert _actions(said) == ['rolled back'], said
    intact = helpers.digest(drivers['ceph-a'], volume) == before
    fault_table('host A killed at verified; host B runs rbdmig recover',
                'B takes over once Ceph drops A\'s watch',
                'skipped while A\'s watch lasted; %s after %.0f s' % (
                    ', '.join(_actions(said)), waited), intact)
    assert intact and waited < 60
    assert _where(ceph_cluster, volume) == ['volumes-a']
    assert _leftovers(ceph_cluster, volume) == []
    assert _journaled(ceph_cluster) == []
