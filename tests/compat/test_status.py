"""rbdmig status reads a cinder.conf and lists what cinder-volume moves.

A child cinder-volume (:mod:`tests.compat.crash_volume`) migrates a
volume and holds at a named point (the ``RBDMIG_PAUSE_AT`` handshake of
:mod:`rbdmig.faults`: alive, its heartbeat and librados client running,
however long the test looks); ``rbdmig status --config-file
<cinder.conf>`` runs meanwhile as its own process, with nothing but the
cinder.conf: no Cinder API, no database, no driver.
"""

import json
import os
import socket
import subprocess
import sys

from rbdmig import faults
from rbdmig.ceph import opts as ceph_opts
from tests.compat import cinder_env
from tests.compat import crash
from tests.compat import crash_volume
from tests.compat import images
from tests.compat import test_active_active

DEFAULT_METHOD = next(o.default for o in ceph_opts.MIGRATION_OPTS
                      if o.name == 'rbd_migration_method')


def _held_at(cinder, volume, backend, point, tmp_path, conf_path=None):
    """A child cinder-volume migrating ``volume`` (:func:`crash.start`,
    its output in ``tmp_path/points.out``), held at ``point`` until
    ``pauses/release`` exists: ``(child, pauses)``."""
    pauses = tmp_path / 'pauses'
    pauses.mkdir()
    child = crash.start(cinder, volume, backend, tmp_path / 'points',
                        {faults.PAUSE_AT: point,
                         faults.PAUSE_DIR: str(pauses)},
                        conf_path=conf_path)
    test_active_active._until(
        lambda: (pauses / ('%s.1.reached' % point)).exists(), point, child,
        tmp_path / 'points.out')
    return child, pauses


def _status(cinder):
    done = subprocess.run(
        [sys.executable, '-m', 'rbdmig.cmd.main', 'status',
         '--config-file', cinder.conf_path, '--format', 'json'],
        cwd=crash.ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_status_lists_the_move_cinder_volume_runs(cinder, ceph_cluster,
                                                  ceph_cluster2, cleanup,
                                                  tmp_path):
    volume = cinder.create_volume('rbdmig-a')
    cleanup.add('delete %s' % volume.id, cinder.delete_volume, volume)
    checksum = images.fill(ceph_cluster, 'volumes-a', volume.name,
                           extents=32)

    log = tmp_path / 'points.out'
    child, pauses = _held_at(cinder, volume, 'rbdmig-b', 'engine.copied',
                             tmp_path)
    try:
        seen = _status(cinder)
    finally:
        (pauses / 'release').touch()
        child.wait(timeout=300)
    assert child.returncode == crash_volume.SURVIVED, log.read_text()[
        -4000:]

    assert seen['errors'] == []
    # Every RBD section of the cinder.conf, Cinder's own driver's too.
    assert sorted(b['backend'] for b in seen['backends']) == [
        'cinder-rbd', 'other-a', 'rbdmig-a', 'rbdmig-b']
    [found] = seen['migrations']
    assert found['backend'] == 'rbdmig-a'
    assert (found['volume'], found['image']) == (volume.id, volume.name)
    assert (found['source'], found['destination']) == ('volumes-a',
                                                       'volumes-b')
    assert found['destination_host'] == 'compat@rbdmig-b#rbdmig-b'
    assert (found['phase'], found['method']) == ('copying',
                                                  DEFAULT_METHOD)
    # The copy's last update: written whatever the report interval.
    assert found['percent'] == 100.0 and found['bytes_total'] == 1 << 30
    assert found['host'] == socket.gethostname()
    assert found['service'] == 'compat@rbdmig-a'
    assert found['stranded'] is False
    assert _status(cinder)['migrations'] == []
    row = crash.check(cinder, (ceph_cluster, ceph_cluster2), volume,
                      checksum)
    assert (row.host, row.migration_status) == ('compat@rbdmig-b#rbdmig-b',
                                                'success')


def test_status_names_the_member_of_a_cluster_running_it(
        cinder, ceph_cluster, ceph_cluster2, cleanup, tmp_path, backends):
    """Two members of an active-active cluster on one machine: the host
    is the same, the service says which one runs the move."""
    volume = cinder.create_volume('rbdmig-a')
    cleanup.add('delete %s' % volume.id, cinder.delete_volume, volume)
    cleanup.add('home %s' % volume.id, test_active_active._back_home,
                cinder, volume)
    checksum = images.fill(ceph_cluster, 'volumes-a', volume.name,
                           extents=32)
    state = os.path.dirname(cinder.conf_path)
    member = cinder_env.write_conf(str(tmp_path / 'aa-b.conf'), state,
                                   backends, host='aa-b', cluster='aa')
    test_active_active._clustered(volume, 'aa-a', 'rbdmig-a')

    log = tmp_path / 'points.out'
    child, pauses = _held_at(cinder, volume, 'rbdmig-b', 'engine.copied',
                             tmp_path, conf_path=member)
    try:
        [found] = _status(cinder)['migrations']
    finally:
        (pauses / 'release').touch()
        child.wait(timeout=300)
    assert child.returncode == crash_volume.SURVIVED, log.read_text()[
        -4000:]

    assert (found['volume'], found['phase']) == (volume.id, 'copying')
    assert (found['host'], found['service']) == (socket.gethostname(),
                                                 'aa-b@rbdmig-a')
    assert found['destination_host'] == 'aa-b@rbdmig-b#rbdmig-b'
    row = crash.check(cinder, (ceph_cluster, ceph_cluster2), volume,
                      checksum)
    assert (row.host, row.cluster_name, row.migration_status) == (
        'aa-b@rbdmig-b#rbdmig-b', 'aa@rbdmig-b#rbdmig-b', 'success')
