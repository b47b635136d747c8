"""The Ceph sandbox: real clusters that come up, serve RBD and go away."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import rados
import rbd
from oslo_config import cfg
from oslo_utils import units

from rbdmig import sandbox
from rbdmig.sandbox import processes
from rbdmig.sandbox import templates


def _running(pid):
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def _json(cluster, *args):
    return json.loads(cluster.ceph(*args, '--format', 'json'))


def _write_read_rbd(cluster, pool, name, size=64 * units.Mi):
    """Create an image with the rbd CLI, write and read it with librbd."""
    cluster.rbd('create', '--size', f'{size // units.Mi}M', f'{pool}/{name}')
    data = os.urandom(units.Mi + 4321)
    client = cluster.connect()
    try:
        with client.open_ioctx(pool) as ioctx, rbd.Image(ioctx, name) as img:
            assert img.size() == size
            img.write(data, 5 * units.Mi + 7)
            img.flush()
        with client.open_ioctx(pool) as ioctx, rbd.Image(
                ioctx, name, read_only=True) as img:
            assert img.read(5 * units.Mi + 7, len(data)) == data
            assert img.read(0, 4096) == b'\0' * 4096
    finally:
        client.shutdown()


def test_cluster_has_mgr_and_capacity(ceph_cluster):
    df = _json(ceph_cluster, 'df')
    assert df['stats']['total_bytes'] > 0
    if ceph_cluster.objectstore == 'memstore':
        assert df['stats']['total_bytes'] == (ceph_cluster.osd_bytes
                                              * ceph_cluster.osd_count)
    mgr = _json(ceph_cluster, 'mgr', 'dump')
    assert mgr['available'] and mgr['active_name'] == 'x'
    client = ceph_cluster.connect()
    try:
        assert client.get_cluster_stats()['kb'] > 0
    finally:
        client.shutdown()


def test_cluster_is_healthy_and_clean(ceph_cluster):
    status = _json(ceph_cluster, 'status')
    assert status['health']['status'] == 'HEALTH_OK', status['health']
    assert status['osdmap']['num_up_osds'] == ceph_cluster.osd_count
    pgmap = status['pgmap']
    assert pgmap['num_pgs'] > 0
    assert pgmap['pgs_by_state'] == [
        {'state_name': 'active+clean', 'count': pgmap['num_pgs']}]
    assert ceph_cluster.mon_addr.startswith('v1:127.0.0.1:')
    pids = dict(ceph_cluster.pids)
    assert ceph_cluster.start() is ceph_cluster  # a no-op when started
    assert ceph_cluster.pids == pids
    assert all(_running(pid) for pid in pids.values())


def test_cephx_is_enforced(ceph_cluster, tmp_path):
    entities = {e['entity'] for e in _json(ceph_cluster, 'auth', 'ls')[
        'auth_dump']}
    assert {'client.admin', 'mgr.x', 'osd.0'} <= entities
    wrong = tmp_path / 'wrong.keyring'
    wrong.write_text('[client.admin]\n\tkey = %s\n' % templates.new_key())
    client = rados.Rados(conffile=ceph_cluster.conf_path, rados_id='admin',
                         conf={'keyring': str(wrong)})
    try:
        with pytest.raises(rados.Error):
            client.connect(timeout=10)
    finally:
        client.shutdown()


@pytest.mark.parametrize('pool_index', [0, 1])
def test_pools_take_rbd_io(ceph_cluster, pool_index):
    pool = ceph_cluster.pools[pool_index]
    assert pool in ceph_cluster.ceph('osd', 'pool', 'ls').split()
    assert 'rbd' in _json(ceph_cluster, 'osd', 'pool', 'application', 'get',
                          pool)
    assert _json(ceph_cluster, 'osd', 'pool', 'get', pool,
                 'size')['size'] == 1
    name = f'sandbox-io-{pool_index}'
    try:
        _write_read_rbd(ceph_cluster, pool, name)
        assert name in ceph_cluster.rbd('ls', pool).split()
    finally:
        ceph_cluster.rbd('rm', '--no-progress', f'{pool}/{name}')


def test_two_clusters_are_independent(ceph_cluster, ceph_cluster2):
    one, two = ceph_cluster, ceph_cluster2
    assert one.fsid != two.fsid
    assert one.mon_addr != two.mon_addr
    assert one.base_dir != two.base_dir
    assert set(one.pids.values()).isdisjoint(two.pids.values())
    for cluster in (one, two):
        assert cluster.ceph('fsid').strip() == cluster.fsid
        client = cluster.connect()
        try:
            assert client.get_fsid() == cluster.fsid
        finally:
            client.shutdown()
    # Same pool names on both; an image made in one is not in the other.
    pool = one.pools[0]
    assert pool == two.pools[0]
    one.rbd('create', '--size', '8M', f'{pool}/only-in-one')
    try:
        assert 'only-in-one' in one.rbd('ls', pool).split()
        assert 'only-in-one' not in two.rbd('ls', pool).split()
        _write_read_rbd(two, pool, 'only-in-two', size=8 * units.Mi)
        assert 'only-in-two' not in one.rbd('ls', pool).split()
    finally:
        one.rbd('rm', '--no-progress', f'{pool}/only-in-one')
        two.rbd('rm', '--no-progress', f'{pool}/only-in-two')


@pytest.mark.parametrize('fixture, prefix', [('ceph_cluster', 'ceph'),
                                             ('ceph_cluster2', 'other')])
def test_rbdmig_conf_parses(request, fixture, prefix):
    cluster = request.getfixturevalue(fixture)
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.ListOpt('enabled_backends'))
    names = ['volume_driver', 'volume_backend_name', 'rbd_pool',
             'rbd_ceph_conf', 'rbd_user', 'rbd_cluster_name',
             'file_volume_dir']
    backends = [f'{prefix}-a', f'{prefix}-b', 'files']
    for backend in backends:
        conf.register_opts([cfg.StrOpt(n) for n in names], group=backend)
    conf(args=[], default_config_files=[cluster.rbdmig_conf_path])

    assert conf.enabled_backends == backends
    assert cluster.backends == {backends[0]: cluster.pools[0],
                                backends[1]: cluster.pools[1],
                                'files': 'file'}
    for backend, pool in zip(backends, cluster.pools, strict=False):
        group = conf[backend]
        assert group.volume_driver == 'rbdmig.volume.drivers.rbd.RBDDriver'
        assert group.volume_backend_name == backend
        assert group.rbd_pool == pool
        assert group.rbd_ceph_conf == cluster.conf_path
        assert group.rbd_user == 'admin'
        assert group.rbd_cluster_name == 'ceph'
    assert conf.files.volume_driver == 'rbdmig.volume.drivers.file.FileDriver'
    assert conf.files.file_volume_dir == cluster.file_volume_dir
    assert os.path.isdir(cluster.file_volume_dir)


def test_bluestore_cluster_starts_and_stops(tmp_path):
    base = tmp_path / 'blue'
    cluster = sandbox.Cluster(base, name='blue', objectstore='bluestore',
                              osd_bytes=units.Gi, pools=('blue',))
    with cluster:
        pids = dict(cluster.pids)
        assert sorted(pids) == ['mgr.x', 'mon.a', 'osd.0']
        assert all(_running(pid) for pid in pids.values())
        meta = _json(cluster, 'osd', 'metadata', '0')
        assert meta['osd_objectstore'] == 'bluestore'
        block = base / 'osd.0.block'
        assert block.stat().st_size == units.Gi
        assert _json(cluster, 'df')['stats']['total_bytes'] > 0
        _write_read_rbd(cluster, 'blue', 'img', size=16 * units.Mi)
    assert not any(_running(pid) for pid in pids.values())
    assert not base.exists()
    cluster.stop()  # a second stop is harmless


def test_failed_start_leaves_no_process(tmp_path):
    base = tmp_path / 'short'
    # Too short for anything to come up: the OSD at least cannot.
    cluster = sandbox.Cluster(base, name='short', timeout=0.01)
    with pytest.raises(sandbox.SandboxError, match='timed out after 0.01s '
                       'waiting for the .* of short') as err:
        cluster.start()
    assert '--- ' in str(err.value)  # it shows the tail of a log
    with open(base / sandbox.PIDS_FILE) as f:
        pids = json.load(f)
    assert 'mon.a' in pids
    assert not any(_running(pid) for pid in pids.values())
    assert (base / 'log').is_dir()  # kept for a look at the logs
    cluster.stop()
    assert not base.exists()
    cluster.stop()


def test_start_refuses_a_directory_in_use(tmp_path):
    (tmp_path / 'precious').write_text('keep me')
    cluster = sandbox.Cluster(tmp_path)
    with pytest.raises(sandbox.SandboxError, match='is not empty'):
        cluster.start()
    cluster.stop()
    assert (tmp_path / 'precious').read_text() == 'keep me'


def _start_in_child(base, detach):
    """Start a cluster in a child process, which exits without stop()."""
    script = textwrap.dedent(f"""
        import json
        from rbdmig import sandbox
        cluster = sandbox.Cluster({str(base)!r}, name='child',
                                  osd_bytes=256 * 1024 * 1024, pools=['p'],
                                  detach={detach!r})
        print(json.dumps(cluster.start().pids))
    """)
    out = subprocess.run([sys.executable, '-c', script], check=True,
                         capture_output=True, text=True, timeout=180)
    return json.loads(out.stdout.splitlines()[-1])


def test_stop_dir_stops_a_cluster_started_by_another_process(tmp_path):
    base = tmp_path / 'detached'
    pids = _start_in_child(base, detach=True)
    try:
        assert all(_running(pid) for pid in pids.values())
        conf = str(base / 'ceph.conf')
        status = json.loads(subprocess.run(
            ['ceph', '--conf', conf, 'status', '--format', 'json'],
            check=True, capture_output=True, text=True, timeout=60).stdout)
        assert status['osdmap']['num_up_osds'] == 1
    finally:
        stopped = sandbox.stop_dir(base)
    assert sorted(stopped) == sorted(pids.values())
    assert not any(_running(pid) for pid in pids.values())
    assert not base.exists()
    assert sandbox.stop_dir(base) == []


def test_exit_without_stop_stops_the_cluster(tmp_path):
    base = tmp_path / 'attached'
    pids = _start_in_child(base, detach=False)
    assert sorted(pids) == ['mgr.x', 'mon.a', 'osd.0']
    assert not any(_running(pid) for pid in pids.values())
    assert not base.exists()


def test_rados_binding_sees_the_pools(ceph_cluster):
    client = ceph_cluster.connect()
    try:
        for pool in ceph_cluster.pools:
            assert client.pool_exists(pool)
        with client.open_ioctx(ceph_cluster.pools[0]) as ioctx:
            ioctx.write_full('sandbox-object', b'hello ceph')
            assert ioctx.read('sandbox-object') == b'hello ceph'
            ioctx.remove_object('sandbox-object')
            with pytest.raises(rados.ObjectNotFound):
                ioctx.stat('sandbox-object')
    finally:
        client.shutdown()


def test_a_sandbox_killed_by_sigterm_stops_its_daemons(tmp_path):
    """SIGTERM skips atexit by default; the sandbox must not leak."""
    script = ('import sys, time; from rbdmig import sandbox; '
              'c = sandbox.Cluster(sys.argv[1]).start(); '
              'print(" ".join(str(p) for p in c.pids.values()), flush=True); '
              'time.sleep(120)')
    child = subprocess.Popen([sys.executable, '-c', script,
                              str(tmp_path / 'cluster')],
                             stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in child.stdout.readline().split()]
    assert len(pids) == 3  # mon, mgr, osd
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == 128 + signal.SIGTERM
    conf = str(tmp_path / 'cluster' / 'ceph.conf')
    assert [p for p in pids if processes.alive(p, conf)] == []
