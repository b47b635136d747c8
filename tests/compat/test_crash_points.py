"""cinder-volume killed at each crash point of a migration, restarted.

Cinder mode of issue 13's crash-point enumeration: a child cinder-volume
(:mod:`tests.compat.crash_volume`) migrates a volume and SIGKILLs itself
at a named point; this process then starts its services again (what
cinder-volume runs at start) and checks the invariants
(:func:`tests.compat.crash.check`).
"""

import logging
import os

import pytest

from tests.compat import crash
from tests.compat import crash_volume
from tests.compat import images

# Every point a Cinder-mode migration passes (the default method); the
# engine's are its journal phases and the steps of the source's removal.
POINTS = ['cinder.migrating', 'engine.claimed', 'engine.copying',
          'engine.copied', 'engine.verified', 'engine.retiring',
          'engine.retired', 'engine.placed', 'engine.removing',
          'engine.source.stripped', 'engine.source.removing',
          'engine.source.removed',
          'engine.finished', 'cinder.migrated']
# Cinder's production mode (eventlet) runs every point; threading mode,
# the same code under native threads, the points around the switch of
# Cinder's row (placed) and the source's removal.
THREADING = ['engine.placed', 'engine.removing', 'cinder.migrated']

# The title of this run's table in doc/reliability.rst's include.
TABLE = 'Cinder mode'


def _points():
    if os.environ.get('RBDMIG_COMPAT_MODE') == 'threading':
        return THREADING
    return POINTS


def _volume(cinder, ceph_cluster, cleanup):
    volume = cinder.create_volume('rbdmig-a')
    # Last, whatever a failed check left where Cinder does not look.
    cleanup.add('scrub %s' % volume.name, _scrub, ceph_cluster, volume.name)
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
    assert reached == POINTS
    row = crash.check(cinder, (ceph_cluster, ceph_cluster2), volume,
                      checksum)
    assert (row.host, row.migration_status) == ('compat@rbdmig-b#rbdmig-b',
                                                'success')


@pytest.mark.parametrize('point', _points())
def test_cinder_volume_killed_at_a_point_is_whole_after_restart(
        cinder, ceph_cluster, ceph_cluster2, cleanup, tmp_path, point,
        crash_table):
    clusters = (ceph_cluster, ceph_cluster2)
    volume, checksum = _volume(cinder, ceph_cluster, cleanup)
    path = 'cinder-volume, %s mode' % os.environ.get('RBDMIG_COMPAT_MODE')

    crash.kill_at(cinder, volume, 'rbdmig-b', point, tmp_path / 'points')
    crash.restart(cinder, ('rbdmig-a', 'rbdmig-b'))

    try:
        row = crash.check(cinder, clusters, volume, checksum)
        settled = row.migration_status
        # ...and it migrates again, wherever the row says it is.
        _, pool = crash.where(cinder, clusters, row)
        again = cinder.migrate(row, 'rbdmig-b' if pool == 'volumes-a'
                               else 'rbdmig-a')
        assert again.migration_status == 'success'
        crash.check(cinder, clusters, again, checksum)
    except AssertionError:
        crash_table(path, point, '**FAILED**', table=TABLE)
        raise
    crash_table(path, point, 'row names the %s (%s); moved again' % (
        'source' if pool == 'volumes-a' else 'copy', settled), table=TABLE)


def test_a_retype_whose_move_recovery_completed_says_to_retype_again(
        cinder, ceph_cluster, ceph_cluster2, cleanup, tmp_path, caplog):
    """A retype killed once its copy took the volume's place.

    The restart's recovery completes the move; Cinder records a retype's
    new type only once ``migrate_volume`` returned, so the row keeps the
    old one.  The log says so and what to run; running it records the
    type, the volume staying where it is.
    """
    clusters = (ceph_cluster, ceph_cluster2)
    volume, checksum = _volume(cinder, ceph_cluster, cleanup)
    old_type, new_type = (volume.volume_type_id,
                          cinder.backend_type('rbdmig-b').id)
    assert old_type != new_type
    caplog.set_level(logging.WARNING, logger='rbdmig.cinder.authority')

    crash.kill_at(cinder, volume, 'rbdmig-b', 'engine.removing',
                  tmp_path / 'points', retype=True)
    crash.restart(cinder, ('rbdmig-a', 'rbdmig-b'))

    row = crash.check(cinder, clusters, volume, checksum)
    assert (row.host, row.migration_status, row.volume_type_id) == (
        'compat@rbdmig-b#rbdmig-b', 'success', old_type)
    said = [r.getMessage() for r in caplog.records
            if r.name == 'rbdmig.cinder.authority'
            and 'completed a retype' in r.getMessage()]
    assert len(said) == 1, said
    assert 'its volume type is still %s' % old_type in said[0]
    assert 'Run "cinder retype %s <new type>" again' % volume.id in said[0]

    # What the log says to run: the volume is on the new type's backend
    # already, so Cinder retypes it where it is.
    again = cinder.retype(row, 'rbdmig-b')
    assert (again.host, again.volume_type_id) == (
        'compat@rbdmig-b#rbdmig-b', new_type)
    crash.check(cinder, clusters, again, checksum)


def _scrub(cluster, name):
    for pool in cluster.pools:
        for image in images.names(cluster, pool):
            if image.startswith(name):
                images.remove(cluster, pool, image)
