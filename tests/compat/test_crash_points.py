"""cinder-volume killed at each crash point of a migration, restarted.

Cinder mode of issue 13's crash-point enumeration: a child cinder-volume
(:mod:`tests.compat.crash_volume`) migrates a volume and SIGKILLs itself
at a named point; this process then starts its services again (what
cinder-volume runs at start) and checks the invariants
(:func:`tests.compat.crash.check`).
"""

import pytest

from tests.compat import crash
from tests.compat import crash_volume
from tests.compat import images

# Every point a Cinder-mode migration passes; the engine's own (the
# journal phases) appear as rbdmig/ceph marks them.
POINTS = ['cinder.migrating', 'engine.copying', 'engine.verified',
          'engine.placed']


def _param(point):
    if crash.exists_in_code(point):
        return point
    # Not marked in this tree yet: the child finishes, the harness says
    # so (PointNotReached).  Once the code marks it, this xfail turns
    # into a real run by itself.
    return pytest.param(point, marks=pytest.mark.xfail(
        raises=crash.PointNotReached, strict=True,
        reason='%s is not marked in rbdmig yet' % point))


def _volume(cinder, ceph_cluster, cleanup):
    volume = cinder.create_volume('rbdmig-a')
    cleanup.add('delete %s' % volume.id, cinder.delete_volume, volume)
    return volume, images.fill(ceph_cluster, 'volumes-a', volume.name,
                               extents=32)


def test_the_points_a_cinder_migration_reaches(
        cinder, ceph_cluster, ceph_cluster2, cleanup, tmp_path):
    """Killed nowhere, the child migrates; the points are the ones to try."""
    volume, checksum = _volume(cinder, ceph_cluster, cleanup)

    child, reached = crash.run(cinder, volume, 'rbdmig-b',
                               tmp_path / 'points')

    assert child.returncode == crash_volume.SURVIVED, child.stderr[-4000:]
    print('points reached: %s' % ', '.join(reached))
    assert reached[0] == 'cinder.migrating'
    assert reached[-1] == 'cinder.migrated'
    row = crash.check(cinder, (ceph_cluster, ceph_cluster2), volume,
                      checksum)
    assert (row.host, row.migration_status) == ('compat@rbdmig-b#rbdmig-b',
                                                'success')
