"""rbdmig status on a real cluster: a paused move, seen from outside.

The move is paused at a named point (:mod:`rbdmig.faults`: a step of
its path, or mid-copy right after a progress write) while
``rbdmig status`` runs as a separate process, as an operator on another
host would: what it lists comes from Ceph (the journal record, its
progress, its watchers), not from the moving process.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import rbd
from oslo_utils import units

from rbdmig import faults
from rbdmig.ceph import connection
from rbdmig.ceph import journal
from rbdmig.ceph import liveness
from tests.functional import helpers

CINDER_CONF = """\
[DEFAULT]
enabled_backends = volumes,lvm

[volumes]
volume_driver = rbdmig.cinder.RBDDriver
rbd_pool = %(pool)s
rbd_ceph_conf = %(conf)s
rbd_user = admin
rbd_secret_uuid = 457eb676-33da-42ec-9a8c-9293d545c337

[lvm]
volume_driver = cinder.volume.drivers.lvm.LVMVolumeDriver
"""
# Seconds between two progress writes of the move looked at mid-copy.
REPORT_INTERVAL = 1
# librbd's QoS on the source, kept in its image metadata as Cinder keeps
# it: its 24 MiB of data are read at 8 MiB/s at most (a second's worth
# in a burst), so the copy lasts 2 s at least (7 s here) whatever this
# machine's speed, and the write one interval after the first is made
# mid-copy.  Without it the copy ends before that write.
QOS = ('conf_rbd_qos_read_bps_limit', str(8 * units.Mi))


def _status(*paths):
    command = [sys.executable, '-m', 'rbdmig.cmd.main', 'status',
               '--format', 'json']
    for path in paths:
        command += ['--config-file', str(path)]
    done = subprocess.run(command, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_a_paused_move_is_listed_with_its_progress(ceph_cluster, tmp_path,
                                                   monkeypatch, cleanup):
    drivers = helpers.load_drivers(ceph_cluster, **{'ceph-a': {
        'rbd_migration_method': 'extents',
        # Once an hour: only the first and the last update are written.
        'migration_progress_report_interval': 3600}})
    volume, before = helpers.new_volume(drivers['ceph-a'])
    for backend in ('ceph-a', 'ceph-b'):
        cleanup.add('delete %s' % volume.name,
                    drivers[backend].delete_volume, volume)
    cinder_conf = tmp_path / 'cinder.conf'
    cinder_conf.write_text(CINDER_CONF % {
        'pool': ceph_cluster.backends['ceph-a'],
        'conf': ceph_cluster.conf_path})
    seen = {}

    def hook(name):
        if name == 'engine.copied':
            seen['rbdmig'] = _status(ceph_cluster.rbdmig_conf_path)
            seen['cinder'] = _status(cinder_conf)

    monkeypatch.setattr(faults.POINTS, 'hook', hook)
    host = helpers.host_of(drivers['ceph-b'])
    assert drivers['ceph-a'].migrate_volume(None, volume, host) == (
        True, None)
    monkeypatch.setattr(faults.POINTS, 'hook', None)

    for config, backend in (('rbdmig', 'ceph-a'), ('cinder', 'volumes')):
        [found] = seen[config]['migrations']
        assert seen[config]['errors'] == []
        assert found['backend'] == backend
        assert (found['image'], found['volume']) == (volume.name, volume.id)
        assert found['source'] == ceph_cluster.backends['ceph-a']
        assert found['destination'] == ceph_cluster.backends['ceph-b']
        assert found['destination_host'] == host['host']
        assert (found['phase'], found['method']) == ('copying', 'extents')
        # The copy's last update, written whatever the interval.
        assert found['bytes_done'] == found['bytes_total'] == 1 << 30
        assert found['percent'] == 100.0 and found['eta'] == 0.0
        assert found['rate'] > 0
        assert found['host'] == socket.gethostname()
        assert found['age'] < 120
        # Its process watches the record (the rados tool lists it).
        assert found['stranded'] is False
    assert '457eb676' not in json.dumps(seen['cinder'])
    assert [b['backend'] for b in seen['cinder']['backends']] == ['volumes']

    assert _status(ceph_cluster.rbdmig_conf_path)['migrations'] == []
    assert helpers.digest(drivers['ceph-b'], volume) == before


def _wait_for(path, thread, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert thread.is_alive(), 'the move ended before %s' % path.name
        assert time.monotonic() < deadline, '%s never appeared' % path
        time.sleep(0.02)


def _metadata(drv, volume, key, value=None):
    """Set ``key`` of the volume's image metadata, or remove it."""
    with drv.backend().connect() as (_client, ioctx):
        with rbd.Image(ioctx, volume.name) as image:
            if value is None:
                image.metadata_remove(key)
            else:
                image.metadata_set(key, value)


def test_a_move_mid_copy_is_listed_as_its_last_progress_write(
        ceph_cluster, tmp_path, monkeypatch, cleanup):
    drivers = helpers.load_drivers(ceph_cluster, **{'ceph-a': {
        'rbd_migration_method': 'extents',
        'migration_progress_report_interval': REPORT_INTERVAL}})
    volume, before = helpers.new_volume(drivers['ceph-a'])
    for backend in ('ceph-a', 'ceph-b'):
        cleanup.add('delete %s' % volume.name,
                    drivers[backend].delete_volume, volume)
    _metadata(drivers['ceph-a'], volume, *QOS)
    # The move waits after each progress write it made until told to go
    # on (``journal.progress``, a pause point of :mod:`rbdmig.faults`).
    pauses = tmp_path / 'pauses'
    pauses.mkdir()
    monkeypatch.setenv(faults.PAUSE_AT, 'journal.progress')
    monkeypatch.setenv(faults.PAUSE_DIR, str(pauses))
    monkeypatch.setattr(faults, 'POINTS', faults.Points())
    host = helpers.host_of(drivers['ceph-b'])
    outcome = {}

    def move():
        try:
            outcome['moved'] = drivers['ceph-a'].migrate_volume(
                None, volume, host)
        except Exception as err:  # noqa: BLE001 - asserted below
            outcome['moved'] = err

    mover = threading.Thread(target=move, daemon=True)
    mover.start()
    try:
        # The first write (0 bytes) goes on at once; the next is made
        # once an interval has passed, mid-copy, and held there: no
        # further write, while the copy itself goes on (a native
        # thread), so what status shows ages as the real copy advances.
        _wait_for(pauses / 'journal.progress.1.reached', mover)
        went_on = time.time()
        (pauses / 'journal.progress.1.go').touch()
        _wait_for(pauses / 'journal.progress.2.reached', mover)
        asked = time.time()
        seen = _status(ceph_cluster.rbdmig_conf_path)
        answered = time.time()
        source = drivers['ceph-a'].backend()
        with source.connect() as (_client, ioctx):
            pool_journal = journal.Journal(source.rados, ioctx)
            written = pool_journal.progress(pool_journal.get(volume.name))
    finally:
        (pauses / 'release').touch()
        mover.join(timeout=300)
    assert outcome['moved'] == (True, None)

    [found] = seen['migrations']
    assert seen['errors'] == []
    # What the moving process last wrote, as it wrote it.
    assert found['bytes_done'] == written['bytes_done']
    assert found['updated'] == written['updated']
    assert found['bytes_total'] == 1 << 30
    assert 0 < found['percent'] < 100
    assert found['rate'] > 0 and found['eta'] > 0
    # Written one interval after the first write, after the test let the
    # move go on, and no more than one interval before status was asked.
    assert found['updated'] - found['started'] >= REPORT_INTERVAL
    assert went_on <= found['updated'] <= asked
    assert asked - found['updated'] <= REPORT_INTERVAL
    assert found['age'] <= answered - found['updated']
    assert (found['phase'], found['method']) == ('copying', 'extents')
    assert found['host'] == socket.gethostname()
    assert found['stranded'] is False
    print('\nstatus mid-copy: %.1f %%, %.2f s old when asked, answered in '
          '%.2f s' % (found['percent'], asked - found['updated'],
                      answered - asked))

    # The QoS went with the volume (its metadata); off again to read it.
    _metadata(drivers['ceph-b'], volume, QOS[0])
    assert _status(ceph_cluster.rbdmig_conf_path)['migrations'] == []
    assert helpers.digest(drivers['ceph-b'], volume) == before


def test_a_killed_move_is_listed_stranded_once_ceph_drops_its_watch(
        ceph_cluster, cleanup):
    drivers = helpers.load_drivers(ceph_cluster)
    volume, before = helpers.new_volume(drivers['ceph-a'])
    for backend in ('ceph-a', 'ceph-b'):
        cleanup.add('delete %s' % volume.name,
                    drivers[backend].delete_volume, volume)
    cleanup.add('recover', subprocess.run, [
        sys.executable, '-m', 'rbdmig.cmd.main', 'recover',
        '--config-file', ceph_cluster.rbdmig_conf_path])
    child = subprocess.run(
        [sys.executable, '-m', 'tests.functional.crash_child',
         ceph_cluster.rbdmig_conf_path, 'extents', 'engine.copied',
         volume.id], capture_output=True, text=True, timeout=300,
        env=dict(os.environ))
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr

    # The killed client's watch lasts until the OSD times it out: until
    # then Ceph cannot tell it from a live one.
    [found] = _status(ceph_cluster.rbdmig_conf_path)['migrations']
    assert found['stranded'] is False
    # Fenced off, as recovery does to a client it knows is dead.
    pool = ceph_cluster.backends['ceph-a']
    address = connection.Address(conf=ceph_cluster.conf_path, user='admin')
    oid = journal.RECORD_PREFIX + volume.name
    with drivers['ceph-a'].backend().connect() as (_client, ioctx):
        watchers = liveness.watchers(ioctx, address, pool, oid)
        assert watchers
        for watcher in watchers:
            ceph_cluster.ceph('osd', 'blocklist', 'add', watcher.addr)
        # The OSD drops the watch once it has the new OSD map: wait for
        # that, as recovery does, not for a time.
        deadline = time.monotonic() + 60
        while liveness.watchers(ioctx, address, pool, oid):
            assert time.monotonic() < deadline, 'the watch outlived 60 s'
            time.sleep(0.2)

    [found] = _status(ceph_cluster.rbdmig_conf_path)['migrations']
    assert found['stranded'] is True and found['eta'] is None
    # What the dead process last wrote: the copy's end, by extents.
    assert (found['phase'], found['method']) == ('copying', 'extents')
    assert found['percent'] == 100.0
    assert found['host'] == socket.gethostname()
