"""rbdmig status on a real cluster: a paused move, seen from outside.

The move is paused at a named crash point (:mod:`rbdmig.faults`) while
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
import time

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
