"""rbdmig.ceph.connection: bounded, retried connections (fake librados)."""

import ast
import pathlib

import pytest

from rbdmig import exception
from rbdmig.ceph import connection
from tests.unit import rbd_fixtures as fx

ADDRESS = connection.Address('ceph', fx.CONF_A, 'cinder')


def test_timeouts_go_into_the_clients_own_conf():
    limits = connection.Limits(connect_timeout=10, osd_op_timeout=120,
                               concurrent_management_ops=8)
    address = connection.Address('ceph', fx.CONF_A, 'cinder', '/k/ring')
    assert connection.client_conf(address, limits) == {
        'client_mount_timeout': '10', 'rados_mon_op_timeout': '10',
        'rados_osd_op_timeout': '120', 'rbd_concurrent_management_ops': '8',
        'keyring': '/k/ring'}


def test_negative_and_unset_leave_librados_defaults():
    limits = connection.Limits(connect_timeout=-1, osd_op_timeout=None)
    assert connection.client_conf(ADDRESS, limits) == {}
    assert limits.worst_case() is None


def test_an_op_timeout_of_zero_is_passed_on_as_waiting_forever():
    limits = connection.Limits(osd_op_timeout=0)
    assert connection.client_conf(ADDRESS, limits) == {
        'rados_osd_op_timeout': '0'}


@pytest.mark.parametrize('setting, passed', [(None, None), (5, '5')])
def test_an_unset_op_timeout_defers_to_ceph_conf(setting, passed):
    # ceph.conf's "[client] rados osd op timeout" stands unless the
    # backend's options set one: no default replaces it.
    ceph = fx.make_ceph()
    options = {} if setting is None else {'rados_osd_op_timeout': setting}
    backend = fx.make_driver(ceph, **options).backend()
    assert backend.limits.osd_op_timeout == setting
    ceph.conf.clear()
    with backend.connect():
        pass
    assert ceph.conf.get('rados_osd_op_timeout') == passed
    # The extension's connections too: 0 there keeps the conf's value.
    assert backend.cluster_spec().rados_osd_op_timeout == (setting or 0)


def test_worst_case_is_attempts_times_timeout_plus_the_waits():
    limits = connection.Limits(connect_timeout=5, attempts=3, interval=2)
    assert limits.worst_case() == 3 * 5 + 2 * 2


def test_the_client_gets_the_bounds_before_it_connects():
    ceph = fx.make_ceph()
    limits = connection.Limits(connect_timeout=7, osd_op_timeout=30)
    with connection.connect(ceph.rados, ADDRESS, limits, 'hdd') as (
            client, ioctx):
        assert client.get_fsid() == fx.FSID
        assert ioctx.pool == 'hdd'
        assert ceph.connections == 1
    assert ceph.connections == 0
    assert ceph.conf == {'client_mount_timeout': '7',
                         'rados_mon_op_timeout': '7',
                         'rados_osd_op_timeout': '30'}


def test_timeouts_are_retried_then_reported():
    ceph = fx.make_ceph()
    sleeps = []
    ceph.fail('connect', ceph.rados.TimedOut('mon down'))
    limits = connection.Limits(connect_timeout=5, attempts=3, interval=4)
    with pytest.raises(exception.ClusterUnreachable) as err:
        with connection.connect(ceph.rados, ADDRESS, limits,
                                sleep=sleeps.append):
            pass
    assert sleeps == [4, 4]  # three attempts
    assert str(err.value).startswith(
        'Cannot connect to Ceph cluster ceph (conf /etc/ceph/a.conf, '
        'user cinder)')
    assert 'mon down' in str(err.value)
    assert ceph.connections == 0


@pytest.mark.parametrize('error', ['PermissionDeniedError',
                                   'ObjectNotFound'])
def test_a_wrong_key_or_a_missing_file_fails_at_once(error):
    ceph = fx.make_ceph()
    sleeps = []
    ceph.fail('connect', getattr(ceph.rados, error)('no'))
    with pytest.raises(exception.ClusterUnreachable):
        with connection.connect(ceph.rados, ADDRESS, connection.Limits(),
                                sleep=sleeps.append):
            pass
    assert sleeps == []


def test_a_missing_pool_is_its_own_error():
    ceph = fx.make_ceph()
    with pytest.raises(exception.PoolNotFound, match='Pool nope does not'):
        with connection.connect(ceph.rados, ADDRESS, connection.Limits(),
                                'nope'):
            pass
    assert ceph.connections == 0


def test_errors_name_paths_never_a_keys_contents(tmp_path):
    ceph = fx.make_ceph()
    secret = 'AQBSECRETSECRETSECRET=='
    keyring = tmp_path / 'keyring'
    keyring.write_text('[client.cinder]\n\tkey = %s\n' % secret)
    ceph.fail('connect', ceph.rados.PermissionDeniedError('denied'))
    address = connection.Address('ceph', fx.CONF_A, 'cinder', str(keyring))
    with pytest.raises(exception.ClusterUnreachable) as err:
        with connection.connect(ceph.rados, address, connection.Limits()):
            pass
    assert secret not in str(err.value) and secret not in repr(address)


def test_only_rbdmig_cinder_imports_cinder():
    root = pathlib.Path(__file__).parents[2] / 'rbdmig'
    offenders = []
    for path in root.rglob('*.py'):
        if path.parent.name == 'cinder' and path.parent.parent == root:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            if any(n == 'cinder' or n.startswith('cinder.') for n in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


def test_a_shared_client_is_connected_once_and_closed_at_the_end():
    ceph = fx.make_ceph()
    backend = fx.make_driver(ceph).backend()
    shared = connection.Shared()
    backend = type(backend)(**dict(vars(backend), shared=shared))
    seen = []
    for _ in range(3):
        with backend.connect() as (client, ioctx):
            seen.append(client)
            assert ioctx is not None
    assert len(set(map(id, seen))) == 1 and ceph.connections == 1
    shared.close()
    assert ceph.connections == 0


def test_a_driver_shares_its_connections_only_inside_the_block():
    ceph = fx.make_ceph()
    drv = fx.make_driver(ceph)
    with drv.sharing_connections():
        with drv.sharing_connections():  # nested: the outer one's
            drv.get_volume_stats(refresh=True)
        drv.get_volume_stats(refresh=True)
        assert ceph.connections == 1
    assert ceph.connections == 0
    drv.get_volume_stats(refresh=True)
    assert ceph.connections == 0


def test_overlapping_blocks_keep_the_client_until_the_last_ends():
    # Two drains on one driver: the first to end must not shut down the
    # client the other still uses.
    ceph = fx.make_ceph()
    drv = fx.make_driver(ceph)
    first, second = drv.sharing_connections(), drv.sharing_connections()
    first.__enter__()
    second.__enter__()
    drv.get_volume_stats(refresh=True)
    first.__exit__(None, None, None)
    assert ceph.connections == 1
    drv.get_volume_stats(refresh=True)
    assert ceph.connections == 1
    second.__exit__(None, None, None)
    assert ceph.connections == 0


def test_drivers_sharing_together_use_one_client_per_cluster():
    # A move's source and destination drivers, in one cluster: one
    # client, closed when the block ends.
    ceph = fx.make_ceph()
    a, b = fx.make_driver(ceph), fx.make_driver(ceph, backend='other')
    with a.sharing_connections(b, object()):  # not a driver: left alone
        a.get_volume_stats(refresh=True)
        b.get_volume_stats(refresh=True)
        assert ceph.connections == 1
    assert ceph.connections == 0


def test_a_driver_already_sharing_keeps_its_clients_past_a_joint_block():
    # A drain on b holds its own clients; a move's block joining a and b
    # shares b's, and ending it shuts down nothing the drain still uses.
    ceph = fx.make_ceph()
    a, b = fx.make_driver(ceph), fx.make_driver(ceph, backend='other')
    drain = b.sharing_connections()
    drain.__enter__()
    b.get_volume_stats(refresh=True)
    with b.sharing_connections(a):
        a.get_volume_stats(refresh=True)
        assert ceph.connections == 1
    assert ceph.connections == 1
    b.get_volume_stats(refresh=True)
    a.get_volume_stats(refresh=True)  # a's block ended: a client of its own
    assert ceph.connections == 1
    drain.__exit__(None, None, None)
    assert ceph.connections == 0
