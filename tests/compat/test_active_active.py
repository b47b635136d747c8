"""Two cinder-volume services of one active-active cluster.

Each is a child process (:mod:`tests.compat.crash_volume`) with its own
cinder.conf: another ``host`` (``aa-a``, ``aa-b``), the same ``cluster``,
the same backend sections, database and tooz file coordination, as Cinder
deploys them.  A migrates a volume and is killed mid-move; B starts (its
``init_host``: rbdmig's recovery), takes the move over and migrates the
volume again.  Both run on this machine: A's journal watch outlives it
(SIGKILL), and B, finding A's host-local lock free, fences A's client.
A member that keeps running takes the move over too, at its next
periodic recovery (``migration_recovery_interval``).
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from rbdmig import faults
from tests.compat import cinder_env
from tests.compat import crash
from tests.compat import crash_volume
from tests.compat import images

CLUSTER = 'aa'
# A member's periodic recovery reaches this point after each round.
ROUND = 'cinder.recovery_round'


@pytest.fixture
def members(cinder, backends, tmp_path):
    """``{name: cinder.conf}`` of the members ``aa-a`` and ``aa-b``."""
    return {name: _member_conf(cinder, backends, tmp_path, name)
            for name in ('aa-a', 'aa-b')}


def _member_conf(cinder, backends, tmp_path, member, only=None):
    """The cinder.conf of ``member`` serving ``backends`` (or ``only``
    those named), each recovering every second while it runs."""
    periodic = {name: dict(options, migration_recovery_interval=1)
                for name, options in backends.items()
                if only is None or name in only}
    return cinder_env.write_conf(
        str(tmp_path / ('%s-%s.conf' % (member, '-'.join(periodic)))),
        os.path.dirname(cinder.conf_path), periodic, host=member,
        cluster=CLUSTER)


def _start(cinder, conf_path):
    """Start the member of ``conf_path`` (its recovery), then stop it."""
    child = subprocess.run(
        [sys.executable, '-m', 'tests.compat.crash_volume', conf_path,
         '-', crash_volume.START_ONLY], cwd=crash.ROOT,
        capture_output=True, text=True, timeout=300)
    assert child.returncode == crash_volume.SURVIVED, child.stderr[-4000:]


def _serve(conf_path, directory):
    """Start the member of ``conf_path``, serving until :func:`_stop`.

    Its periodic recovery waits after each round, the Nth announced by
    ``<directory>/cinder.recovery_round.<N>.reached``, until the test
    says go (:mod:`rbdmig.faults`'s handshake).
    """
    env = dict(os.environ)
    env.pop(faults.CRASH_AT, None)
    env.update({crash_volume.STOP: str(directory / 'stop'),
                faults.PAUSE_AT: ROUND, faults.PAUSE_DIR: str(directory)})
    out = open(directory / 'member.out', 'w')
    return subprocess.Popen(
        [sys.executable, '-m', 'tests.compat.crash_volume', conf_path, '-',
         crash_volume.SERVE], cwd=crash.ROOT, env=env, stdout=out,
        stderr=subprocess.STDOUT)


def _stop(member, directory):
    (directory / 'release').touch()
    (directory / 'stop').touch()
    assert member.wait(120) == crash_volume.SURVIVED, (
        directory / 'member.out').read_text()[-4000:]


def _until(done, what, child, output, timeout=300):
    """Wait for ``done()``; fail at once, showing the end of the child's
    ``output`` file, if ``child`` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while not done():
        assert child.poll() is None, '%s: the child exited %s:\n%s' % (
            what, child.returncode, output.read_text()[-4000:])
        assert time.monotonic() < deadline, '%s: not in %d s' % (what,
                                                                 timeout)
        time.sleep(0.1)


def _clustered(volume, member, backend):
    """Put ``volume``'s row on ``member``'s ``backend``, clustered."""
    volume.update({'host': '%s@%s#%s' % (member, backend, backend),
                   'cluster_name': '%s@%s#%s' % (CLUSTER, backend,
                                                 backend)})
    volume.save()


def _back_home(cinder, volume):
    """The row back on this process's services, for their delete."""
    from cinder import objects
    row = objects.Volume.get_by_id(cinder.ctxt, volume.id)
    backend = cinder.backend_of(row)
    row.update({'host': '%s@%s#%s' % (cinder_env.HOST, backend, backend),
                'cluster_name': None})
    row.save()


def _volume_of_a(cinder, cluster, cleanup):
    """A new volume with data, on member ``aa-a``'s ``rbdmig-a``;
    ``(volume, its checksum)``."""
    volume = cinder.create_volume('rbdmig-a')
    cleanup.add('scrub %s' % volume.name, _scrub, cluster, volume.name)
    cleanup.add('delete %s' % volume.id, cinder.delete_volume, volume)
    cleanup.add('home %s' % volume.id, _back_home, cinder, volume)
    checksum = images.fill(cluster, 'volumes-a', volume.name, extents=32)
    _clustered(volume, 'aa-a', 'rbdmig-a')
    return volume, checksum


def _scrub(cluster, name):
    for pool in cluster.pools:
        for image in images.names(cluster, pool):
            if image.startswith(name):
                images.remove(cluster, pool, image)


@pytest.mark.parametrize('point', ['engine.copied', 'engine.removing'])
def test_a_member_recovers_the_move_of_a_killed_member(
        cinder, ceph_cluster, ceph_cluster2, cleanup, members, tmp_path,
        point):
    clusters = (ceph_cluster, ceph_cluster2)
    volume, checksum = _volume_of_a(cinder, ceph_cluster, cleanup)

    crash.kill_at(cinder, volume, 'rbdmig-b', point, tmp_path / 'a',
                  conf_path=members['aa-a'])
    _start(cinder, members['aa-b'])

    row = crash.check(cinder, clusters, volume, checksum)
    backend = cinder.backend_of(row)
    # Cinder sends the volume's requests to its cluster: the one of the
    # backend that holds it.
    assert row.cluster_name == '%s@%s#%s' % (CLUSTER, backend, backend)
    assert backend == ('rbdmig-a' if point == 'engine.copied'
                       else 'rbdmig-b')

    other = 'rbdmig-b' if backend == 'rbdmig-a' else 'rbdmig-a'
    child, _ = crash.run(cinder, row, other, tmp_path / 'b',
                         conf_path=members['aa-b'])
    assert child.returncode == crash_volume.SURVIVED, child.stderr[-4000:]
    again = crash.check(cinder, clusters, volume, checksum)
    assert (again.host, again.cluster_name, again.migration_status) == (
        'aa-b@%s#%s' % (other, other), '%s@%s#%s' % (CLUSTER, other, other),
        'success')


def test_a_running_member_takes_over_the_move_of_a_killed_member(
        cinder, ceph_cluster, ceph_cluster2, backends, cleanup, members,
        tmp_path):
    """B runs while A migrates: it leaves A's live move alone, and once A
    is killed removing the source, B's next round completes the move.

    B serves the source backend only: one recovery thread, whose rounds
    the test counts (the move's record is in the source pool's journal).
    """
    from cinder import objects

    clusters = (ceph_cluster, ceph_cluster2)
    volume, checksum = _volume_of_a(cinder, ceph_cluster, cleanup)
    a_dir, b_dir = tmp_path / 'a', tmp_path / 'b'
    a_dir.mkdir()
    b_dir.mkdir()

    def rounds(n):
        return (b_dir / ('%s.%d.reached' % (ROUND, n))).exists()

    member_b = _serve(_member_conf(cinder, backends, tmp_path, 'aa-b',
                                   only=['rbdmig-a']), b_dir)
    cleanup.add('stop aa-b', _stop, member_b, b_dir)
    _until(lambda: rounds(1), 'aa-b\'s first round', member_b,
           b_dir / 'member.out')

    # A copies the volume and waits there, alive; it will die removing
    # the source.
    member_a = crash.start(
        cinder, volume, 'rbdmig-b', a_dir / 'points',
        {faults.PAUSE_AT: 'engine.copied', faults.PAUSE_DIR: str(a_dir),
         faults.CRASH_AT: 'engine.removing'}, conf_path=members['aa-a'])
    cleanup.add('kill aa-a', member_a.kill)
    _until(lambda: (a_dir / 'engine.copied.1.reached').exists(),
           'aa-a copying', member_a, a_dir / 'points.out')

    # A whole round of B while A runs: A's move is left alone.
    (b_dir / ('%s.1.go' % ROUND)).touch()
    _until(lambda: rounds(2), 'aa-b\'s second round', member_b,
           b_dir / 'member.out')
    row = objects.Volume.get_by_id(cinder.ctxt, volume.id)
    assert (row.host, row.migration_status) == (
        'aa-a@rbdmig-a#rbdmig-a', 'migrating')
    assert crash.leftovers(clusters, volume.name,
                           (ceph_cluster, 'volumes-a')) != []  # A's copy

    (a_dir / 'engine.copied.1.go').touch()
    assert member_a.wait(300) == -signal.SIGKILL, (
        a_dir / 'points.out').read_text()[-4000:]
    assert crash.reached_points(a_dir / 'points')[-1] == 'engine.removing'

    # B's next round: A is dead; its move is completed on rbdmig-b.
    (b_dir / ('%s.2.go' % ROUND)).touch()
    _until(lambda: rounds(3), 'aa-b\'s third round', member_b,
           b_dir / 'member.out')
    row = crash.check(cinder, clusters, volume, checksum)
    assert (row.migration_status, cinder.backend_of(row),
            row.cluster_name) == ('success', 'rbdmig-b',
                                  '%s@rbdmig-b#rbdmig-b' % CLUSTER)
