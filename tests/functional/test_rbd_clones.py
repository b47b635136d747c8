"""Clones and parents in assisted migration, against a real cluster."""

import logging

import pytest

from rbdmig import exception
from tests.functional import helpers


def _drivers(cluster, method, verify='extents'):
    return helpers.load_drivers(
        cluster, **{'ceph-a': {'rbd_migration_method': method,
                               'migration_verify': verify}})


def test_a_volume_with_clones_is_refused(ceph_cluster):
    drivers = _drivers(ceph_cluster, 'deep_copy')
    volume, before = helpers.new_volume(drivers['ceph-a'], extents=2)
    parent = 'volumes-a/%s' % volume.name
    ceph_cluster.rbd('snap', 'create', parent + '@base')
    ceph_cluster.rbd('snap', 'protect', parent + '@base')
    ceph_cluster.rbd('clone', parent + '@base', 'volumes-b/dependent')

    with pytest.raises(exception.MigrationRefused, match='has clones'):
        drivers['ceph-a'].migrate_volume(
            None, volume, helpers.host_of(drivers['ceph-b']))

    assert helpers.digest(drivers['ceph-a'], volume) == before
    assert 'dependent' in helpers.images(ceph_cluster, 'volumes-b')
    ceph_cluster.rbd('rm', 'volumes-b/dependent')
    ceph_cluster.rbd('snap', 'unprotect', parent + '@base')
    ceph_cluster.rbd('snap', 'purge', parent)
    drivers['ceph-a'].delete_volume(volume)


@pytest.mark.parametrize('method,verify', [
    ('copy', 'extents'), ('clone_flatten', 'extents'),
    ('deep_copy', 'extents'), ('live', 'extents'),
    ('copy', 'osd_checksum'), ('deep_copy', 'osd_checksum')])
def test_a_clone_moves_with_its_parents_data(ceph_cluster, method, verify,
                                             caplog):
    """Verified as it reads, its parent's data included: librbd's stat()
    names no parent (a clone told by it was compared by its own objects
    alone, and a flattened copy refused)."""
    caplog.set_level(logging.INFO, logger='rbdmig')
    drivers = _drivers(ceph_cluster, method, verify)
    golden, _ = helpers.new_volume(drivers['ceph-a'], extents=4)
    golden_spec = 'volumes-a/%s@golden' % golden.name
    ceph_cluster.rbd('snap', 'create', golden_spec)
    ceph_cluster.rbd('snap', 'protect', golden_spec)
    volume = type(golden)(size=1)
    ceph_cluster.rbd('clone', golden_spec, 'volumes-a/' + volume.name)
    before = helpers.digest(drivers['ceph-a'], volume)

    assert drivers['ceph-a'].migrate_volume(
        None, volume, helpers.host_of(drivers['ceph-b'])) == (True, None)

    assert helpers.digest(drivers['ceph-b'], volume) == before
    assert volume.name not in helpers.images(ceph_cluster, 'volumes-a')
    if verify == 'osd_checksum':
        assert 'instead of osd_checksum: the source is a clone' in (
            caplog.text)
    drivers['ceph-b'].delete_volume(volume)
    ceph_cluster.rbd('snap', 'unprotect', golden_spec)
    ceph_cluster.rbd('snap', 'purge', 'volumes-a/' + golden.name)
    drivers['ceph-a'].delete_volume(golden)
