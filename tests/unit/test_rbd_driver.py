"""RBDDriver stats, lifecycle, connection info and setup checks."""

import pytest

from rbdmig import exception
from rbdmig import objects
from rbdmig.ceph import location as rbd_location
from tests.unit import fake_ceph
from tests.unit import rbd_fixtures as fx

MiB = fx.MiB


@pytest.fixture
def ceph():
    return fx.make_ceph()


def test_stats_carry_location_info_and_capacity(ceph):
    drv = fx.make_driver(ceph, pool='ssd', reserved_percentage=7)
    stats = drv.get_volume_stats(refresh=True)

    assert stats['storage_protocol'] == 'ceph'
    assert stats['volume_backend_name'] == 'be'
    assert stats['driver_version'] == drv.VERSION
    assert stats['reserved_percentage'] == 7
    assert stats['thin_provisioning_support'] is True
    assert stats['migration_progress_report'] is True
    assert stats['backend_state'] == 'up'
    assert stats['total_capacity_gb'] == 100.0
    assert stats['free_capacity_gb'] == 100.0
    assert stats['location_info'] == 'ceph:%s:%s:admin:ssd' % (fx.CONF_A,
                                                              fx.FSID)


def test_stats_honour_pool_quota(ceph):
    ceph.clusters[fx.CONF_A].quota = 10 << 30
    ceph.clusters[fx.CONF_A].used = 4 << 30
    stats = fx.make_driver(ceph).get_volume_stats(refresh=True)
    assert stats['total_capacity_gb'] == 10.0
    assert stats['free_capacity_gb'] == 6.0


def test_unset_user_is_empty_not_none_text(ceph):
    drv = fx.make_driver(ceph, rbd_user=None)
    info = drv.get_volume_stats(refresh=True)['location_info']
    assert 'None' not in info
    assert rbd_location.parse_location(info).user is None


def test_stats_when_cluster_down_offer_no_location(ceph):
    drv = fx.make_driver(ceph)
    ceph.fail('connect', ceph.rados.TimedOut('mon down'))
    stats = drv.get_volume_stats(refresh=True)
    assert stats['backend_state'] == 'down'
    assert 'location_info' not in stats
    assert stats['free_capacity_gb'] == 'unknown'


def test_connect_retries_then_reports_clearly(ceph):
    sleeps = []
    drv = fx.make_driver(ceph, rados_connection_retries=2,
                         rados_connection_interval=9)
    drv._sleep = sleeps.append
    ceph.fail('connect', ceph.rados.TimedOut('mon down'))
    with pytest.raises(exception.ClusterUnreachable,
                       match='Cannot connect to Ceph cluster ceph .conf '
                             '/etc/ceph/a.conf, user admin.*mon down'):
        drv.create_volume(objects.Volume(size=1))
    assert sleeps == [9]  # two attempts, as in Cinder
    assert ceph.connections == 0


def test_create_delete_extend(ceph):
    drv = fx.make_driver(ceph)
    volume = objects.Volume(size=2)
    drv.create_volume(volume)
    image = ceph.image(fx.CONF_A, 'hdd', volume.name)
    assert image.size == 2 << 30
    assert image.order == 22

    with pytest.raises(exception.VolumeExists):
        drv.create_volume(volume)

    drv.extend_volume(volume, 3)
    assert image.size == 3 << 30
    with pytest.raises(exception.InvalidInput, match='cannot shrink'):
        drv.extend_volume(objects.Volume(id=volume.id, size=3), 1)

    drv.delete_volume(volume)
    assert volume.name not in ceph.clusters[fx.CONF_A].pools['hdd']
    drv.delete_volume(volume)  # already gone is success


def test_delete_refuses_images_with_snapshots(ceph):
    drv = fx.make_driver(ceph)
    volume = fx.make_volume(ceph)
    ceph.image(fx.CONF_A, 'hdd', volume.name).snaps['s'] = {
        'protected': False, 'children': 0, 'blocks': {}}
    with pytest.raises(exception.InvalidVolume, match='has snapshots'):
        drv.delete_volume(volume)


def test_chunk_size_must_be_power_of_two(ceph):
    drv = fx.make_driver(ceph, rbd_store_chunk_size=3)
    with pytest.raises(exception.InvalidConfiguration, match='power of two'):
        drv.check_for_setup_error()
    fx.make_driver(ceph, rbd_store_chunk_size=8).check_for_setup_error()


def test_setup_requires_bindings(ceph):
    drv = fx.make_driver(ceph)
    drv.rados = None
    with pytest.raises(exception.InvalidConfiguration, match='python3-rados'):
        drv.do_setup(None)


def test_initialize_connection_for_os_brick(ceph, tmp_path):
    keyring = tmp_path / 'keyring'
    keyring.write_text('[client.admin]\n\tkey = AQSECRETKEY==\n')
    drv = fx.make_driver(ceph, rbd_keyring_conf=str(keyring),
                         rbd_secret_uuid='5e1f0000-0000-0000-0000-000000000000')
    volume = objects.Volume(size=1)
    info = drv.initialize_connection(volume, {'host': 'node'})
    assert info['driver_volume_type'] == 'rbd'
    data = info['data']
    assert data['name'] == 'hdd/' + volume.name
    assert (data['hosts'], data['ports']) == (['127.0.0.1'], ['6789'])
    assert data['auth_enabled'] is True
    assert data['auth_username'] == 'admin'
    assert data['secret_uuid'].startswith('5e1f')
    # Users read connection info: the key stays on the host (OSSN-0085).
    assert 'keyring' not in data
    assert 'SECRETKEY' not in repr(info)


def test_open_volume_modes_and_missing_image(ceph):
    drv = fx.make_driver(ceph)
    volume = fx.make_volume(ceph, data=b'abc')
    with pytest.raises(exception.InvalidInput, match='mode'):
        drv.open_volume(None, volume, 'w')
    with pytest.raises(exception.VolumeNotFound):
        drv.open_volume(None, objects.Volume(size=1))
    assert ceph.connections == 0

    handle = drv.open_volume(None, volume, 'rb')
    assert ceph.connections == 1
    assert handle.read(3) == b'abc'
    drv.close_volume(None, volume, handle)
    assert ceph.connections == 0


def test_driver_options_listed(ceph):
    names = {o.name for o in fx.make_driver(ceph).get_driver_options()}
    assert {'rbd_pool', 'rbd_user', 'rbd_ceph_conf', 'rbd_cluster_name',
            'rbd_secret_uuid', 'rbd_keyring_conf', 'rados_connect_timeout',
            'rados_connection_retries', 'rados_connection_interval',
            'rbd_store_chunk_size', 'reserved_percentage',
            'rbd_migration_method', 'volume_copy_bps_limit'} <= names


def test_open_volume_closes_what_it_opened_when_the_handle_fails(
        ceph, monkeypatch):
    from rbdmig.volume import rbd_io
    drv = fx.make_driver(ceph)
    volume = fx.make_volume(ceph, data=b'abc')
    closed = []
    real_close = ceph.rbd.Image.close

    def close(image):
        closed.append(image.name)
        real_close(image)

    def broken(*args, **kwargs):
        raise RuntimeError('the handle could not be built')

    monkeypatch.setattr(ceph.rbd.Image, 'close', close)
    monkeypatch.setattr(rbd_io, 'RBDHandle', broken)
    with pytest.raises(RuntimeError):
        drv.open_volume(None, volume)
    assert closed == [volume.name]
    assert ceph.connections == 0


def test_copy_volume_data_onto_a_used_image_leaves_nothing_stale(ceph):
    # Issue #5 on RBD: the destination image already holds data.
    src_drv = fx.make_driver(ceph, pool='hdd')
    dst_drv = fx.make_driver(ceph, pool='ssd', backend='fast')
    src = fx.make_volume(ceph, pool='hdd', size_mib=1024, data=b'new')
    dst = fx.make_volume(ceph, pool='ssd', size_mib=1024,
                         data=b'\xff' * (2 * MiB))
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('ssd')
    with ceph.rbd.Image(ioctx, dst.name) as image:
        image.write(b'\xee' * 4096, 700 * MiB)

    result = src_drv.copy_volume_data(None, src, dst, dest_driver=dst_drv)

    with ceph.rbd.Image(ioctx, dst.name) as image:
        assert image.read(0, 2 * MiB) == b'new' + bytes(2 * MiB - 3)
        assert image.read(700 * MiB, 4096) == bytes(4096)
    # The stale data was deallocated (write_zeroes), not overwritten.
    assert len(ceph.image(fx.CONF_A, 'ssd', dst.name).blocks) == 1
    assert result.bytes_zeroed == 1024 * MiB - fake_ceph.BLOCK
