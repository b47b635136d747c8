"""Builders shared by the RBD unit tests: fake clusters and drivers."""

from oslo_config import cfg

from rbdmig import native
from rbdmig import objects
from rbdmig.migration import progress
from rbdmig.volume import configuration
from rbdmig.volume.drivers import rbd as rbd_driver
from tests.unit import fake_ceph

FSID = '11111111-2222-3333-4444-555555555555'
OTHER_FSID = '99999999-8888-7777-6666-555555555555'
CONF_A = '/etc/ceph/a.conf'
CONF_B = '/etc/ceph/b.conf'
MiB = 1 << 20


def make_ceph():
    """Two fake clusters: A (pools hdd, ssd) and B (pool hdd)."""
    ceph = fake_ceph.Ceph()
    ceph.add_cluster(CONF_A, FSID, ['hdd', 'ssd'])
    ceph.add_cluster(CONF_B, OTHER_FSID, ['hdd'])
    return ceph


def make_driver(ceph, pool='hdd', conf_path=CONF_A, backend='be', **opts):
    """An RBDDriver on its own ConfigOpts, wired to the fake modules."""
    conf = cfg.ConfigOpts()
    conf([], project='rbdmig-test')
    config = configuration.Configuration([], config_group=backend,
                                         conf=conf)
    drv = rbd_driver.RBDDriver(configuration=config, host='node@' + backend,
                               rados=ceph.rados, rbd=ceph.rbd,
                               sleep=lambda seconds: None)
    settings = dict(rbd_pool=pool, rbd_ceph_conf=conf_path, rbd_user='admin',
                    volume_backend_name=backend)
    settings.update(opts)
    for name, value in settings.items():
        conf.set_override(name, value, group=backend)
    drv.do_setup(None)
    return drv


def host_of(drv):
    """The ``host`` argument cinder passes when migrating to ``drv``."""
    return {'host': '%s#%s' % (drv.host, drv.configuration.rbd_pool),
            'capabilities': drv.get_volume_stats(refresh=True)}


def make_volume(ceph, pool='hdd', size_mib=8, data=b'', conf=CONF_A,
                **fields):
    """Create an image holding ``data`` at offset 0; return its Volume."""
    volume = objects.Volume(size=1, **fields)
    ioctx = ceph.rados.Rados(conffile=conf).open_ioctx(pool)
    ceph.rbd.RBD().create(ioctx, volume.name, size_mib * MiB)
    if data:
        with ceph.rbd.Image(ioctx, volume.name) as image:
            image.write(data, 0)
    return volume


def read_head(ceph, pool, name, length, conf=CONF_A):
    """Return the first ``length`` bytes of an image."""
    ioctx = ceph.rados.Rados(conffile=conf).open_ioctx(pool)
    with ceph.rbd.Image(ioctx, name) as image:
        return image.read(0, length)


class ProgressRecorder(progress.Callback):
    """Records ``(value, size)`` after every progress update."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def call(self):
        self.seen.append((self.value, self.size))


def pace(ceph, monkeypatch, latency=0.002):
    """Make the fake take ``latency`` per request and progress step, and
    relay progress every millisecond, so updates are seen as they go."""
    ceph.latency = latency
    monkeypatch.setattr(native, 'POLL_INTERVAL', 0.001)
