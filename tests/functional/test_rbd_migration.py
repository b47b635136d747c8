"""Assisted migration between pools, against a real Ceph cluster."""

import logging
import time

import pytest
import rbd

from rbdmig import exception
from rbdmig import ext
from rbdmig.migration import progress
from rbdmig.ceph import location as rbd_location
from rbdmig.ceph import methods as rbd_methods
from tests.functional import helpers

METHODS = sorted(rbd_methods.METHODS)


def _drivers(cluster, method='deep_copy'):
    return helpers.load_drivers(
        cluster, **{'ceph-a': {'rbd_migration_method': method}})


def test_stats_describe_the_real_cluster(ceph_cluster):
    stats = _drivers(ceph_cluster)['ceph-b'].get_volume_stats(refresh=True)
    location = rbd_location.parse_location(stats['location_info'])
    assert location.fsid == ceph_cluster.fsid
    assert location.pool == ceph_cluster.backends['ceph-b']
    assert location.ceph_conf == ceph_cluster.conf_path
    assert stats['backend_state'] == 'up'
    # capacity is served by the mgr: zero would mean it is not counted
    assert stats['total_capacity_gb'] > 0
    assert 0 < stats['free_capacity_gb'] <= stats['total_capacity_gb']


@pytest.mark.parametrize('method', METHODS)
def test_cross_pool_migration_moves_data_and_removes_source(ceph_cluster,
                                                            method):
    drivers = _drivers(ceph_cluster, method)
    volume, before = helpers.new_volume(drivers['ceph-a'])

    start = time.monotonic()
    result = drivers['ceph-a'].migrate_volume(
        None, volume, helpers.host_of(drivers['ceph-b']))
    seconds = time.monotonic() - start

    assert result == (True, None)
    assert helpers.digest(drivers['ceph-b'], volume) == before
    assert volume.name not in helpers.images(ceph_cluster, 'volumes-a')
    assert volume.name in helpers.images(ceph_cluster, 'volumes-b')
    # no temporary snapshot or migration state is left behind
    assert ceph_cluster.rbd('snap', 'ls', 'volumes-b/' + volume.name) == ''
    print('%s: %.2f s' % (method, seconds))
    drivers['ceph-b'].delete_volume(volume)


@pytest.mark.parametrize('method', ['deep_copy', 'live', 'extents'])
def test_snapshots_move_with_the_volume(ceph_cluster, method):
    drivers = _drivers(ceph_cluster, method)
    volume, before = helpers.new_volume(drivers['ceph-a'])
    ceph_cluster.rbd('snap', 'create', 'volumes-a/%s@daily' % volume.name)

    assert drivers['ceph-a'].migrate_volume(
        None, volume, helpers.host_of(drivers['ceph-b'])) == (True, None)

    assert 'daily' in ceph_cluster.rbd('snap', 'ls',
                                       'volumes-b/' + volume.name)
    assert helpers.digest(drivers['ceph-b'], volume) == before
    assert volume.name not in helpers.images(ceph_cluster, 'volumes-a')
    ceph_cluster.rbd('snap', 'purge', 'volumes-b/' + volume.name)
    drivers['ceph-b'].delete_volume(volume)


@pytest.mark.parametrize('method', ['copy', 'clone_flatten'])
def test_snapshots_are_never_silently_dropped(ceph_cluster, method):
    drivers = _drivers(ceph_cluster, method)
    volume, before = helpers.new_volume(drivers['ceph-a'], extents=2)
    ceph_cluster.rbd('snap', 'create', 'volumes-a/%s@keep' % volume.name)

    with pytest.raises(exception.MigrationRefused, match='would drop'):
        drivers['ceph-a'].migrate_volume(
            None, volume, helpers.host_of(drivers['ceph-b']))

    assert volume.name not in helpers.images(ceph_cluster, 'volumes-b')
    assert 'keep' in ceph_cluster.rbd('snap', 'ls',
                                      'volumes-a/' + volume.name)
    ceph_cluster.rbd('snap', 'purge', 'volumes-a/' + volume.name)
    drivers['ceph-a'].delete_volume(volume)


def test_same_pool_moves_nothing(ceph_cluster):
    drivers = _drivers(ceph_cluster)
    volume, before = helpers.new_volume(drivers['ceph-a'], extents=4)
    host = helpers.host_of(drivers['ceph-a'])

    start = time.monotonic()
    assert drivers['ceph-a'].migrate_volume(None, volume, host) == (True,
                                                                    None)
    assert time.monotonic() - start < 2.0
    assert volume.name in helpers.images(ceph_cluster, 'volumes-a')
    assert volume.name not in helpers.images(ceph_cluster, 'volumes-b')
    assert helpers.digest(drivers['ceph-a'], volume) == before
    drivers['ceph-a'].delete_volume(volume)


@pytest.mark.parametrize('method', METHODS)
def test_another_cluster_is_moved_by_extents(ceph_cluster, ceph_cluster2,
                                             method, caplog):
    drivers = _drivers(ceph_cluster, method)
    far = helpers.load_drivers(ceph_cluster2)['other-b']
    volume, before = helpers.new_volume(drivers['ceph-a'], extents=6)
    allocated = helpers.allocated_bytes(ceph_cluster, 'volumes-a',
                                        volume.name)

    with caplog.at_level(logging.INFO, logger='rbdmig'):
        assert drivers['ceph-a'].migrate_volume(
            None, volume, helpers.host_of(far)) == (True, None)

    # Same name there, identical, as thin as the source; source gone.
    assert helpers.digest(far, volume) == before
    assert helpers.allocated_bytes(ceph_cluster2, 'volumes-b',
                                   volume.name) == allocated
    assert volume.name not in helpers.images(ceph_cluster, 'volumes-a')
    assert 'of cluster %s by extents' % ceph_cluster2.fsid in caplog.text
    far.delete_volume(volume)


def test_another_cluster_this_host_cannot_reach_is_refused(ceph_cluster,
                                                           ceph_cluster2,
                                                           tmp_path):
    drivers = _drivers(ceph_cluster)
    volume, before = helpers.new_volume(drivers['ceph-a'], extents=2)
    caps = {'storage_protocol': 'ceph',
            'location_info': rbd_location.format_location(
                'ceph', str(tmp_path / 'not-here.conf'), ceph_cluster2.fsid,
                'admin', 'volumes-b')}

    assert drivers['ceph-a'].migrate_volume(
        None, volume, {'host': 'x', 'capabilities': caps}) == (False, None)

    assert volume.name not in helpers.images(ceph_cluster2, 'volumes-b')
    assert helpers.digest(drivers['ceph-a'], volume) == before
    drivers['ceph-a'].delete_volume(volume)


def test_a_location_lying_about_its_cluster_is_refused(ceph_cluster,
                                                       ceph_cluster2):
    # The fsid is this cluster's, but the conf reaches the other cluster.
    drivers = _drivers(ceph_cluster)
    volume, _ = helpers.new_volume(drivers['ceph-a'], extents=1)
    caps = {'storage_protocol': 'ceph',
            'location_info': rbd_location.format_location(
                'ceph', ceph_cluster2.conf_path, ceph_cluster.fsid, 'admin',
                'volumes-b')}

    assert drivers['ceph-a'].migrate_volume(
        None, volume, {'host': 'x', 'capabilities': caps}) == (False, None)
    assert volume.name not in helpers.images(ceph_cluster2, 'volumes-b')
    drivers['ceph-a'].delete_volume(volume)


def test_missing_destination_pool_is_refused(ceph_cluster):
    drivers = _drivers(ceph_cluster)
    volume, _ = helpers.new_volume(drivers['ceph-a'], extents=1)
    caps = dict(helpers.host_of(drivers['ceph-b'])['capabilities'])
    caps['location_info'] = caps['location_info'].replace('volumes-b',
                                                          'no-such-pool')

    assert drivers['ceph-a'].migrate_volume(
        None, volume, {'host': 'x', 'capabilities': caps}) == (False, None)
    assert volume.name in helpers.images(ceph_cluster, 'volumes-a')
    drivers['ceph-a'].delete_volume(volume)


def test_attached_volume_is_refused_across_pools(ceph_cluster):
    drivers = _drivers(ceph_cluster)
    volume, before = helpers.new_volume(drivers['ceph-a'], extents=2,
                                        status='in-use')

    assert drivers['ceph-a'].migrate_volume(
        None, volume, helpers.host_of(drivers['ceph-b'])) == (False, None)
    assert volume.name not in helpers.images(ceph_cluster, 'volumes-b')
    drivers['ceph-a'].delete_volume(volume)


def test_existing_destination_is_not_overwritten(ceph_cluster):
    drivers = _drivers(ceph_cluster)
    volume, before = helpers.new_volume(drivers['ceph-a'], extents=2)
    squatter, theirs = helpers.new_volume(drivers['ceph-b'], extents=2,
                                          id=volume.id)

    with pytest.raises(exception.MigrationRefused, match='already exists'):
        drivers['ceph-a'].migrate_volume(
            None, volume, helpers.host_of(drivers['ceph-b']))

    assert helpers.digest(drivers['ceph-b'], squatter) == theirs
    assert helpers.digest(drivers['ceph-a'], volume) == before
    drivers['ceph-a'].delete_volume(volume)
    drivers['ceph-b'].delete_volume(squatter)


class _CancelHalfway(progress.Callback):
    """Cancels once librbd reports progress past the first object."""

    def call(self):
        if self.size and 0 < self.value < self.size:
            raise RuntimeError('operator cancelled')


@pytest.mark.parametrize('method', ['clone_flatten', 'live'])
def test_cancelled_mid_copy_leaves_source_and_no_destination(ceph_cluster,
                                                             method):
    drivers = _drivers(ceph_cluster, method)
    volume, before = helpers.new_volume(drivers['ceph-a'])

    with pytest.raises(RuntimeError, match='operator cancelled'):
        drivers['ceph-a'].migrate_volume(
            None, volume, helpers.host_of(drivers['ceph-b']),
            callback=_CancelHalfway())

    assert volume.name not in helpers.images(ceph_cluster, 'volumes-b')
    assert helpers.digest(drivers['ceph-a'], volume) == before
    assert ceph_cluster.rbd('snap', 'ls', 'volumes-a/' + volume.name) == ''
    drivers['ceph-a'].delete_volume(volume)


@pytest.mark.parametrize('method', ['copy', 'deep_copy'])
@pytest.mark.parametrize('through', ['binding', 'extension'])
def test_failure_mid_copy_leaves_source_and_no_destination(
        ceph_cluster, method, through, monkeypatch):
    """Fail librbd's copies from inside, through either path.

    The real copy runs into the destination pool, then the call fails as
    an OSD error would, leaving a real partial image behind it.
    """
    drivers = _drivers(ceph_cluster, method)
    src = drivers['ceph-a']
    volume, before = helpers.new_volume(src)

    def fail_after(call, dest_ioctx, dest_name, **kwargs):
        call(dest_ioctx, dest_name, **kwargs)
        with rbd.Image(dest_ioctx, dest_name) as partial:
            assert partial.size() > 0  # a real image to clean up
        raise rbd.IOError('injected: OSD went away')

    if through == 'binding':
        monkeypatch.setenv(ext.DISABLE_ENV, '1')
        src.rbd = helpers.with_image_faults(copy=fail_after,
                                            deep_copy=fail_after)
    else:
        for name in ('copy_image', 'deep_copy_image'):
            real = getattr(ext, name)

            def fail_in_ext(*args, _real=real, **kwargs):
                _real(*args, **kwargs)  # a real, complete copy...
                raise OSError(5, 'injected: OSD went away')  # ...failed

            monkeypatch.setattr(ext, name, fail_in_ext)
    with pytest.raises(exception.MigrationError, match='source is intact'):
        src.migrate_volume(None, volume, helpers.host_of(drivers['ceph-b']))

    assert volume.name not in helpers.images(ceph_cluster, 'volumes-b')
    assert helpers.digest(src, volume) == before
    src.delete_volume(volume)
