"""Cinder's RBD features, through rbdmig.cinder.RBDDriver, in real Cinder."""

import pytest
import rbd

from rbdmig.ceph import methods
from tests.compat import images

GiB = 1 << 30


def test_snapshot_clone_extend_delete(cinder, ceph_cluster, cleanup):
    volume = cinder.create_volume('rbdmig-a')
    cleanup.add('delete %s' % volume.id, cinder.delete_volume, volume)
    checksum = images.fill(ceph_cluster, 'volumes-a', volume.name)

    snapshot = cinder.create_snapshot(volume, name='before')
    cleanup.add('delete snapshot', cinder.delete_snapshot, snapshot)
    with images.opened(ceph_cluster, 'volumes-a', volume.name) as image:
        assert [s['name'] for s in image.list_snaps()] == [snapshot.name]
    images.fill(ceph_cluster, 'volumes-a', volume.name, extents=2,
                seed='after the snapshot')

    from_snap = cinder.create_volume('rbdmig-a', snapshot_id=snapshot.id)
    cleanup.add('delete %s' % from_snap.id, cinder.delete_volume, from_snap)
    assert images.digest(ceph_cluster, 'volumes-a',
                         from_snap.name) == checksum

    clone = cinder.create_volume('rbdmig-a', source_volid=from_snap.id)
    cleanup.add('delete %s' % clone.id, cinder.delete_volume, clone)
    assert images.digest(ceph_cluster, 'volumes-a', clone.name) == checksum

    cinder.manager('rbdmig-a').extend_volume(cinder.ctxt, clone, 2, None)
    with images.opened(ceph_cluster, 'volumes-a', clone.name) as image:
        assert image.size() == 2 * GiB
        assert image.read(0, 1 << 20) == _head(ceph_cluster, from_snap)

    for vol in (clone, from_snap):
        cinder.delete_volume(vol)
        assert vol.name not in images.names(ceph_cluster, 'volumes-a')


def _head(cluster, volume):
    with images.opened(cluster, 'volumes-a', volume.name) as image:
        return image.read(0, 1 << 20)


@pytest.fixture
def glance_image(ceph_cluster, cleanup):
    """An image as Glance stores it in RBD: data, protected snapshot."""
    name = 'glance-%s' % images.token()
    client = ceph_cluster.connect()
    ioctx = client.open_ioctx('images')
    rbd.RBD().create(ioctx, name, GiB, features=rbd.RBD_FEATURE_LAYERING)
    checksum = images.fill(ceph_cluster, 'images', name, extents=8)
    with rbd.Image(ioctx, name) as image:
        image.create_snap('snap')
        image.protect_snap('snap')
    ioctx.close()
    client.shutdown()
    cleanup.add('remove %s' % name, images.remove, ceph_cluster, 'images',
                name)
    url = 'rbd://%s/images/%s/snap' % (ceph_cluster.fsid, name)
    return url, checksum


@pytest.mark.parametrize('method', sorted(methods.METHODS))
def test_glance_clone_migrates_with_its_parent_data(cinder, ceph_cluster,
                                                    cleanup, glance_image,
                                                    method):
    url, checksum = glance_image
    driver = cinder.manager('rbdmig-a').driver
    volume = cinder.new_volume_row('rbdmig-a')
    cleanup.add('delete %s' % volume.id, cinder.delete_volume, volume)

    # What Cinder's create flow does for an image whose Glance location
    # it can clone: driver.clone_image instead of create_volume.
    update, cloned = driver.clone_image(
        cinder.ctxt, volume, (url, None),
        {'disk_format': 'raw', 'id': 'glance-image'}, None)
    assert cloned
    volume.update(dict(update, status='available'))
    volume.save()
    with images.opened(ceph_cluster, 'volumes-a', volume.name) as image:
        assert image.parent_info()[0] == 'images'  # a real clone

    cinder.conf.set_override('rbd_migration_method', method,
                             group='rbdmig-a')
    try:
        moved = cinder.migrate(volume, 'rbdmig-b')
    finally:
        cinder.conf.clear_override('rbd_migration_method', group='rbdmig-a')

    assert moved.migration_status == 'success'
    assert moved.name == volume.name
    assert volume.name not in images.names(ceph_cluster, 'volumes-a')
    # The parent's data came along, the link kept whatever the method
    # (Cinder's parent bookkeeping holds).
    assert images.digest(ceph_cluster, 'volumes-b', volume.name) == checksum
    with images.opened(ceph_cluster, 'volumes-b', volume.name) as image:
        assert image.parent_info()[:2] == ('images', url.split('/')[-2])
