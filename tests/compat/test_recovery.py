"""A cinder-volume restarted after a crash mid-migration repairs itself."""

import signal
import subprocess
import sys

import pytest

from tests.compat import images


@pytest.mark.parametrize('point', ['mid', 'verified'])
def test_restart_undoes_a_migration_killed_mid_way(cinder, ceph_cluster,
                                                   cleanup, point):
    volume = cinder.create_volume('rbdmig-a')
    cleanup.add('delete %s' % volume.id, cinder.delete_volume, volume)
    checksum = images.fill(ceph_cluster, 'volumes-a', volume.name,
                           extents=32)
    # A process migrating it (rbdmig's own driver, same pools) is killed;
    # Cinder's database still says the volume is on rbdmig-a.
    child = subprocess.run(
        [sys.executable, '-m', 'tests.functional.crash_child',
         ceph_cluster.rbdmig_conf_path, 'extents', point, volume.id],
        capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert [n for n in images.names(ceph_cluster, 'volumes-b')
            if n.startswith(volume.name)]  # a copy was left behind

    # What cinder-volume runs when it starts again.
    cinder.manager('rbdmig-a').driver.do_setup(cinder.ctxt)

    # Even a verified copy is undone: Cinder's database names the source.
    assert volume.name in images.names(ceph_cluster, 'volumes-a')
    assert not [n for n in images.names(ceph_cluster, 'volumes-b')
                if n.startswith(volume.name)]
    assert images.digest(ceph_cluster, 'volumes-a', volume.name) == checksum
