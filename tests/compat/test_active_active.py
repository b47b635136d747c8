"""Two cinder-volume services of one active-active cluster.

Each is a child process (:mod:`tests.compat.crash_volume`) with its own
cinder.conf: another ``host`` (``aa-a``, ``aa-b``), the same ``cluster``,
the same backend sections, database and tooz file coordination, as Cinder
deploys them.  A migrates a volume and is killed mid-move; B starts (its
``init_host``: rbdmig's recovery), takes the move over and migrates the
volume again.  Both run on this machine: A's journal watch outlives it
(SIGKILL), and B, finding A's host-local lock free, fences A's client.
"""

import os
import subprocess
import sys

import pytest

from tests.compat import cinder_env
from tests.compat import crash
from tests.compat import crash_volume
from tests.compat import images

CLUSTER = 'aa'


@pytest.fixture
def members(cinder, backends, tmp_path):
    """``{name: cinder.conf}`` of the members ``aa-a`` and ``aa-b``."""
    state = os.path.dirname(cinder.conf_path)
    return {name: cinder_env.write_conf(
        str(tmp_path / ('%s.conf' % name)), state, backends, host=name,
        cluster=CLUSTER) for name in ('aa-a', 'aa-b')}


def _start(cinder, conf_path):
    """Start the member of ``conf_path`` (its recovery), then stop it."""
    child = subprocess.run(
        [sys.executable, '-m', 'tests.compat.crash_volume', conf_path,
         '-', crash_volume.START_ONLY], cwd=crash.ROOT,
        capture_output=True, text=True, timeout=300)
    assert child.returncode == crash_volume.SURVIVED, child.stderr[-4000:]


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
    volume = cinder.create_volume('rbdmig-a')
    cleanup.add('scrub %s' % volume.name, _scrub, ceph_cluster, volume.name)
    cleanup.add('delete %s' % volume.id, cinder.delete_volume, volume)
    cleanup.add('home %s' % volume.id, _back_home, cinder, volume)
    checksum = images.fill(ceph_cluster, 'volumes-a', volume.name,
                           extents=32)
    _clustered(volume, 'aa-a', 'rbdmig-a')

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
