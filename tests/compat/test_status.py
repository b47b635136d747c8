"""rbdmig status reads a cinder.conf and lists what cinder-volume moves.

A child cinder-volume (:mod:`tests.compat.crash_volume`) migrates a
volume and holds at a named point (the ``RBDMIG_PAUSE_AT`` handshake of
:mod:`rbdmig.faults`: alive, its heartbeat and librados client running,
however long the test looks): after the copy, or mid-copy right after a
progress write; ``rbdmig status --config-file
<cinder.conf>`` runs meanwhile as its own process, with nothing but the
cinder.conf: no Cinder API, no database, no driver.
"""

import json
import os
import socket
import subprocess
import sys
import time

import rados
from oslo_utils import units

from rbdmig import faults
from rbdmig.ceph import journal
from rbdmig.ceph import opts as ceph_opts
from tests.compat import cinder_env
from tests.compat import crash
from tests.compat import crash_volume
from tests.compat import images
from tests.compat import test_active_active

DEFAULT_METHOD = next(o.default for o in ceph_opts.MIGRATION_OPTS
                      if o.name == 'rbd_migration_method')
# Seconds between two progress writes of the move looked at mid-copy.
REPORT_INTERVAL = 1
# librbd's QoS on the source, in its image metadata where Cinder keeps
# it: its 24 MiB of data are read at 8 MiB/s at most (a second's worth
# in a burst), so the copy lasts 2 s at least whatever this machine's
# speed, and the write one interval after the first is made mid-copy.
# Without it the copy ends before that write.
QOS = ('conf_rbd_qos_read_bps_limit', str(8 * units.Mi))


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


def _metadata(cluster, pool, name, key, value=None):
    """Set ``key`` of an image's metadata, or remove it."""
    with images.opened(cluster, pool, name, read_only=False) as image:
        if value is None:
            image.metadata_remove(key)
        else:
            image.metadata_set(key, value)


def _progress(cluster, pool, name):
    """The progress a move of ``name`` last wrote in its record."""
    client = cluster.connect()
    try:
        ioctx = client.open_ioctx(pool)
        try:
            pool_journal = journal.Journal(rados, ioctx)
            return pool_journal.progress(pool_journal.get(name))
        finally:
            ioctx.close()
    finally:
        client.shutdown()


def test_status_shows_a_move_mid_copy_as_cinder_volume_last_wrote_it(
        cinder, ceph_cluster, ceph_cluster2, cleanup, tmp_path, backends):
    """Within one report interval: the child held right after its second
    progress write, one interval after its first, status shows that
    write, made mid-copy, less than an interval before it was asked."""
    volume = cinder.create_volume('rbdmig-a')
    cleanup.add('delete %s' % volume.id, cinder.delete_volume, volume)
    checksum = images.fill(ceph_cluster, 'volumes-a', volume.name,
                           extents=24)
    _metadata(ceph_cluster, 'volumes-a', volume.name, *QOS)
    # The child's cinder.conf: this service host, its source backend
    # moving by extents (librbd reads, which the QoS paces) and writing
    # its progress every second.
    state = os.path.dirname(cinder.conf_path)
    sections = dict(backends)
    sections['rbdmig-a'] = dict(
        backends['rbdmig-a'], rbd_migration_method='extents',
        migration_progress_report_interval=REPORT_INTERVAL)
    conf = cinder_env.write_conf(str(tmp_path / 'child.conf'), state,
                                 sections)

    pauses = tmp_path / 'pauses'
    pauses.mkdir()
    log = tmp_path / 'points.out'
    child = crash.start(cinder, volume, 'rbdmig-b', tmp_path / 'points',
                        {faults.PAUSE_AT: 'journal.progress',
                         faults.PAUSE_DIR: str(pauses)}, conf_path=conf)
    try:
        # The first write (0 bytes) goes on at once; the next is made
        # once an interval has passed, mid-copy, and held there: no
        # further write, while the copy itself goes on (a native
        # thread), so what status shows ages as the real copy advances.
        first = pauses / 'journal.progress.1.reached'
        test_active_active._until(first.exists, 'a first write', child,
                                  log)
        went_on = time.time()
        (pauses / 'journal.progress.1.go').touch()
        second = pauses / 'journal.progress.2.reached'
        test_active_active._until(second.exists, 'a second write', child,
                                  log)
        asked = time.time()
        seen = _status(cinder)
        answered = time.time()
        written = _progress(ceph_cluster, 'volumes-a', volume.name)
    finally:
        (pauses / 'release').touch()
        child.wait(timeout=300)
    assert child.returncode == crash_volume.SURVIVED, log.read_text()[
        -4000:]

    assert seen['errors'] == []
    [found] = seen['migrations']
    assert (found['backend'], found['volume']) == ('rbdmig-a', volume.id)
    # What cinder-volume last wrote, as it wrote it.
    assert found['bytes_done'] == written['bytes_done']
    assert found['updated'] == written['updated']
    assert found['bytes_total'] == 1 << 30
    assert 0 < found['percent'] < 100
    assert found['rate'] > 0 and found['eta'] > 0
    # Written one interval after the first write, after the test let the
    # child go on, and no more than one interval before status was asked.
    assert found['updated'] - found['started'] >= REPORT_INTERVAL
    assert went_on <= found['updated'] <= asked
    assert asked - found['updated'] <= REPORT_INTERVAL
    assert found['age'] <= answered - found['updated']
    assert (found['phase'], found['method']) == ('copying', 'extents')
    assert found['host'] == socket.gethostname()
    assert found['service'] == 'compat@rbdmig-a'
    assert found['stranded'] is False
    # A pause point, not a step of the move's path: never recorded.
    reached = crash.reached_points(tmp_path / 'points')
    assert 'engine.copied' in reached and 'journal.progress' not in reached
    print('\nstatus mid-copy (%s): %.1f %%, %.2f s old when asked, '
          'answered in %.2f s' % (os.environ.get('RBDMIG_COMPAT_MODE'),
                                  found['percent'],
                                  asked - found['updated'],
                                  answered - asked))

    assert _status(cinder)['migrations'] == []
    # The QoS went with the volume (its metadata); off again to read it.
    _metadata(ceph_cluster, 'volumes-b', volume.name, QOS[0])
    row = crash.check(cinder, (ceph_cluster, ceph_cluster2), volume,
                      checksum)
    assert (row.host, row.migration_status) == ('compat@rbdmig-b#rbdmig-b',
                                                'success')
