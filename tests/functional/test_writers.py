"""Clients writing to a volume while it moves: no acknowledged write lost.

A client opens the volume by name (in its source pool, else in the
destination: where a client that looked it up would find it), writes one
sequence-numbered block, and closes it.  Every write librbd acknowledged
must be in the volume wherever it ends, whether the move completed or
was refused; on images with and without exclusive-lock.
"""

import json
import struct
import threading

import pytest
import rados
import rbd

from rbdmig import faults
from tests.functional import helpers

POOLS = ('volumes-a', 'volumes-b')
BLOCK = 4096
# Writes land past the volume's own data (helpers.new_volume fills the
# first GiB's scattered MiBs): a region of their own, one block each.
BASE = 2 << 30
LAYERING = rbd.RBD_FEATURE_LAYERING
LOCKED = (LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK |
          rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF)


class Client(object):
    """A client of its own (another librados instance), as a VM is."""

    def __init__(self, cluster, name):
        self.cluster, self.name = cluster, name
        self.conn = cluster.connect()
        self.acked = []  # sequence numbers librbd acknowledged
        self.refused = 0

    def write_once(self, seq):
        """Open, write block ``seq``, close; True if acknowledged."""
        for pool in POOLS:
            ioctx = self.conn.open_ioctx(pool)
            try:
                with rbd.Image(ioctx, self.name) as image:
                    image.write(struct.pack('>Q', seq) * (BLOCK // 8),
                                BASE + seq * BLOCK)
                self.acked.append(seq)
                return True
            except rbd.ImageNotFound:
                continue
            except (rbd.Error, rados.Error):
                self.refused += 1  # EROFS: the move holds the lock
                return False
            finally:
                ioctx.close()
        return False

    def close(self):
        self.conn.shutdown()


def _volume(cluster, drivers, cleanup, features):
    volume, _ = helpers.new_volume(drivers['ceph-a'], extents=8)
    for drv in (drivers['ceph-a'], drivers['ceph-b']):
        cleanup.add('delete %s' % volume.name, drv.delete_volume, volume)
    if features != LOCKED:
        conn = cluster.connect()
        try:
            ioctx = conn.open_ioctx('volumes-a')
            with rbd.Image(ioctx, volume.name) as image:
                image.update_features(LOCKED & ~features, False)
            ioctx.close()
        finally:
            conn.shutdown()
    # The writes' region: the volume grows to hold it.
    drivers['ceph-a'].extend_volume(volume, 3)
    volume.size = 3
    return volume


def _where(cluster, volume):
    return [p for p in POOLS if volume.name in helpers.images(cluster, p)]


def _missing(cluster, pool, name, acked):
    conn = cluster.connect()
    try:
        ioctx = conn.open_ioctx(pool)
        with rbd.Image(ioctx, name, read_only=True) as image:
            return [seq for seq in acked
                    if image.read(BASE + seq * BLOCK, 8) !=
                    struct.pack('>Q', seq)]
    finally:
        conn.shutdown()


POINTS = ('engine.copying', 'engine.copied', 'engine.verified',
          'engine.retiring', 'engine.retired', 'engine.placed',
          'engine.removing')


@pytest.mark.parametrize('features', [LOCKED, LAYERING],
                         ids=['exclusive-lock', 'no-exclusive-lock'])
@pytest.mark.parametrize('method', ['extents', 'deep_copy'])
def test_a_write_at_every_step_is_kept(ceph_cluster, cleanup, monkeypatch,
                                       fault_table, method, features):
    drivers = helpers.load_drivers(
        ceph_cluster, **{'ceph-a': {'rbd_migration_method': method}})
    volume = _volume(ceph_cluster, drivers, cleanup, features)
    client = Client(ceph_cluster, volume.name)
    cleanup.add('close the client', client.close)
    client.write_once(0)
    steps = iter(range(1, len(POINTS) + 1))

    def write_at(point):
        if point in POINTS:
            client.write_once(next(steps))

    monkeypatch.setattr(faults.POINTS, 'hook', write_at)
    try:
        moved, _ = drivers['ceph-a'].migrate_volume(
            None, volume, helpers.host_of(drivers['ceph-b']))
    except Exception as err:  # noqa: BLE001 - an error keeps the source
        moved = 'error: %s' % err
    monkeypatch.setattr(faults.POINTS, 'hook', None)

    (pool,) = _where(ceph_cluster, volume)
    lost = _missing(ceph_cluster, pool, volume.name, client.acked)
    fault_table('a client writes at every step, %s, %s' % (
        method, 'exclusive-lock' if features == LOCKED else 'no lock'),
        'every acknowledged write in the volume',
        '%s; %d acknowledged, %d refused, %d lost; the volume in %s' % (
            'moved' if moved is True else 'not moved (%s)' % moved,
            len(client.acked), client.refused, len(lost), pool),
        not lost)
    assert not lost
    assert moved is True or pool == 'volumes-a'


@pytest.mark.parametrize('features', [LOCKED, LAYERING],
                         ids=['exclusive-lock', 'no-exclusive-lock'])
def test_a_writer_looping_through_the_whole_move_loses_nothing(
        ceph_cluster, cleanup, fault_table, features):
    drivers = helpers.load_drivers(ceph_cluster)
    volume = _volume(ceph_cluster, drivers, cleanup, features)
    client = Client(ceph_cluster, volume.name)
    cleanup.add('close the client', client.close)
    stop = threading.Event()

    def loop():
        seq = 0
        while not stop.is_set() and seq < 100000:
            seq += 1
            client.write_once(seq)

    writer = threading.Thread(target=loop)
    writer.start()
    try:
        moved, _ = drivers['ceph-a'].migrate_volume(
            None, volume, helpers.host_of(drivers['ceph-b']))
    except Exception as err:  # noqa: BLE001 - an error keeps the source
        moved = 'error: %s' % err
    finally:
        stop.set()
        writer.join(60)

    (pool,) = _where(ceph_cluster, volume)
    lost = _missing(ceph_cluster, pool, volume.name, client.acked)
    fault_table('a client opens, writes, closes in a loop through the move, '
                '%s' % ('exclusive-lock' if features == LOCKED else
                        'no lock'),
                'every acknowledged write in the volume',
                '%s; %d acknowledged, %d refused, %d lost; the volume in %s'
                % ('moved' if moved is True else 'not moved (%s)' % moved,
                   len(client.acked), client.refused, len(lost), pool),
                not lost)
    assert client.acked, 'the writer never wrote'
    assert not lost


def _snaps(cluster, pool, name):
    return [s['name'] for s in json.loads(cluster.rbd(
        'snap', 'ls', '--format', 'json', '%s/%s' % (pool, name)))]


@pytest.mark.parametrize('who', ['a client opens it', 'a clone appears'])
def test_the_source_is_used_just_before_its_removal_and_kept_whole(
        ceph_cluster, cleanup, monkeypatch, fault_table, who):
    # Issue 13, defect 3: the source was stripped of its snapshots, then
    # found busy and its copy thrown away.  Now a user that appears
    # while the source retires (the last step before it is stripped)
    # undoes the move: the source keeps its name, its data and its
    # snapshots, and the copy that also kept them goes.
    drivers = helpers.load_drivers(
        ceph_cluster, **{'ceph-a': {'rbd_migration_method': 'deep_copy'}})
    volume, before = helpers.new_volume(drivers['ceph-a'])
    for drv in drivers.values():
        if drv.configuration.safe_get('rbd_pool'):
            cleanup.add('delete %s' % volume.name, drv.delete_volume, volume)
    cleanup.add('purge the snapshots', lambda: [ceph_cluster.rbd(
        'snap', 'purge', '%s/%s' % (p, volume.name))
        for p in _where(ceph_cluster, volume)])
    spec = 'volumes-a/%s' % volume.name
    ceph_cluster.rbd('snap', 'create', spec + '@kept')
    ceph_cluster.rbd('snap', 'protect', spec + '@kept')
    cleanup.add('unprotect', lambda: [ceph_cluster.rbd(
        'snap', 'unprotect', '%s/%s@kept' % (p, volume.name))
        for p in _where(ceph_cluster, volume)])
    client = Client(ceph_cluster, volume.name)
    cleanup.add('close the client', client.close)
    users = []

    def use(point):
        if point != 'engine.retiring' or users:
            return
        if who == 'a client opens it':
            ioctx = client.conn.open_ioctx('volumes-a')
            users.append(rbd.Image(ioctx, volume.name))
            cleanup.add('close', users[0].close)
        else:
            ceph_cluster.rbd('clone', spec + '@kept', 'volumes-a/child')
            users.append('child')
            cleanup.add('remove the clone', ceph_cluster.rbd, 'rm',
                        'volumes-a/child')

    monkeypatch.setattr(faults.POINTS, 'hook', use)
    try:
        moved, _ = drivers['ceph-a'].migrate_volume(
            None, volume, helpers.host_of(drivers['ceph-b']))
    except Exception as err:  # noqa: BLE001 - a refusal keeps the source
        moved = 'error: %s' % err
    monkeypatch.setattr(faults.POINTS, 'hook', None)

    where = _where(ceph_cluster, volume)
    snaps = _snaps(ceph_cluster, 'volumes-a', volume.name)
    intact = (users and where == ['volumes-a'] and 'kept' in snaps and
              helpers.digest(drivers['ceph-a'], volume) == before and
              not [n for p in POOLS for n in helpers.images(ceph_cluster, p)
                   if '.rbdmig-' in n])
    fault_table('%s as the source (with a protected snapshot) retires, '
                'deep_copy' % who,
                'the move undone; the source whole: its name, data and '
                'snapshot; the copy removed',
                '%s; volume in %s, its snapshots %s' % (
                    'moved' if moved is True else 'not moved (%s)'
                    % str(moved)[:120], ', '.join(where), snaps),
                bool(intact))
    assert users, 'the move never reached engine.retiring'
    assert moved is not True
    assert intact
