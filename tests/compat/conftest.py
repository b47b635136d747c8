"""Fixtures for compat tests: real cinder-volume on real sandbox clusters.

Run them with ``python -m tests.compat eventlet|threading`` (``tox -e
compat`` runs both): the process is patched, or not, exactly as
cinder-volume is.  Cinder (``cinder==29.0.0``, see tox.ini's ``compat``
env) and Ceph must be installed; without them these tests fail, they are
never skipped.

The clusters are the functional tests' (same environment variables),
with bigger OSDs by default.  Each gets a Cinder-style cephx user
(``profile rbd``); as on a real cinder-volume host, its keyring is also
installed as ``/etc/ceph/ceph.client.<user>.keyring``, where os-brick
looks when Cinder copies generically (connection info carries no keyring,
OSSN-0085).  Those files are named after a random token, and removed at
the end.
"""

import os
import shutil
import uuid

import pytest

from rbdmig import native
from tests.compat import cinder_env
from tests.compat import heartbeat
from tests.functional import conftest as functional
from tests.functional.conftest import cleanup  # noqa: F401
from tests.functional.conftest import crash_table  # noqa: F401
from tests.functional.conftest import cluster_registry  # noqa: F401
from tests.functional.conftest import sandbox_settings

MODE = os.environ.get('RBDMIG_COMPAT_MODE')
POOLS = ('volumes-a', 'volumes-b', 'volumes-c', 'images')
HOST_KEYRINGS = '/etc/ceph'
# Bounded connections for rbdmig's backends: an unreachable destination
# is refused within 2 x 5 s + 1 s.
LIMITS = {'rados_connect_timeout': 5, 'rados_connection_retries': 2,
          'rados_connection_interval': 1}


def pytest_configure(config):
    if MODE not in ('eventlet', 'threading'):
        raise pytest.UsageError(
            'run the compat tests as cinder-volume runs: "python -m '
            'tests.compat eventlet" or "... threading" (tox -e compat)')


def _settings():
    settings = sandbox_settings()
    if 'RBDMIG_SANDBOX_OSD_BYTES' not in os.environ:
        settings['osd_bytes'] = 4 << 30  # room for the heartbeat volumes
    return settings


class _Cluster(object):
    """A sandbox cluster and the cephx user Cinder uses on it."""

    def __init__(self, registry, base_dir, name, pools, keyrings):
        self.sandbox = registry.start(base_dir, name=name,
                                      backend_prefix=name, pools=pools,
                                      **_settings())
        self.user = 'rbdmig-compat-%s-%s' % (uuid.uuid4().hex[:8], name)
        keyring = self.sandbox.add_client(self.user)
        keyrings.install(keyring, 'ceph.client.%s.keyring' % self.user)

    def __getattr__(self, name):
        return getattr(self.sandbox, name)


class _HostKeyrings(object):
    """Keyrings copied into /etc/ceph; only those are ever removed."""

    def __init__(self):
        self.paths = []

    def install(self, source, name):
        os.makedirs(HOST_KEYRINGS, exist_ok=True)
        path = os.path.join(HOST_KEYRINGS, name)
        if os.path.exists(path):
            raise RuntimeError('%s exists already; not ours to replace'
                               % path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'wb') as out, open(source, 'rb') as keyring:
            shutil.copyfileobj(keyring, out)
        self.paths.append(path)

    def remove(self):
        for path in self.paths:
            os.unlink(path)


@pytest.fixture(scope='session')
def host_keyrings():
    keyrings = _HostKeyrings()
    yield keyrings
    keyrings.remove()


@pytest.fixture(scope='session')
def ceph_cluster(cluster_registry, tmp_path_factory,  # noqa: F811
                 host_keyrings):
    """The first cluster: rbdmig's pools, Cinder's driver's, Glance's."""
    return _Cluster(cluster_registry, tmp_path_factory.mktemp('ceph'),
                    'ceph', POOLS, host_keyrings)


@pytest.fixture(scope='session')
def ceph_cluster2(cluster_registry, tmp_path_factory,  # noqa: F811
                  host_keyrings):
    """A second, independent cluster."""
    return _Cluster(cluster_registry, tmp_path_factory.mktemp('other'),
                    'other', ('volumes-a',), host_keyrings)


@pytest.fixture(scope='session')
def backends(ceph_cluster, ceph_cluster2):
    """``enabled_backends``: rbdmig's listed before Cinder's own driver.

    ``rbdmig-a``/``rbdmig-b`` share a cluster with ``cinder-rbd``;
    ``other-a`` is on the second cluster.  ``cinder-rbd`` leaves
    ``rbd_user`` unset, so its location_info says ``None`` there.
    """
    rbdmig, cinder = cinder_env.RBDMIG, cinder_env.CINDER_RBD
    sections = {
        'rbdmig-a': cinder_env.rbd_backend(rbdmig, ceph_cluster,
                                           'volumes-a', ceph_cluster.user,
                                           **LIMITS),
        'rbdmig-b': cinder_env.rbd_backend(rbdmig, ceph_cluster,
                                           'volumes-b', ceph_cluster.user,
                                           **LIMITS),
        'other-a': cinder_env.rbd_backend(rbdmig, ceph_cluster2,
                                          'volumes-a', ceph_cluster2.user,
                                          **LIMITS),
        'cinder-rbd': cinder_env.rbd_backend(cinder, ceph_cluster,
                                             'volumes-c'),
    }
    for name, section in sections.items():
        section['volume_backend_name'] = name
    return sections


@pytest.fixture(scope='session')
def cinder(backends, tmp_path_factory):
    """cinder-volume, started from a cinder.conf naming ``backends``."""
    assert native.patched() == (MODE == 'eventlet')
    state = tmp_path_factory.mktemp('cinder')
    conf = cinder_env.write_conf(str(state / 'cinder.conf'), str(state),
                                 backends)
    volume = cinder_env.CinderVolume(conf)
    try:
        yield volume.start()
    finally:
        errors = volume.stop()
        if errors:
            raise RuntimeError('Stopping cinder-volume failed: '
                               + '; '.join(errors))


@pytest.fixture
def beat():
    """A :class:`heartbeat.Heartbeat` running for the test."""
    with heartbeat.Heartbeat() as monitor:
        yield monitor


_MEASURED = []


@pytest.fixture
def record():
    """``record(what, text)``: a measurement printed after the run."""
    def add(what, text):
        _MEASURED.append('%-58s %s' % (what, text))
    return add


def pytest_terminal_summary(terminalreporter):
    # The crash-point table (tests/compat/test_crash_points.py), written
    # to $RBDMIG_CINDER_CRASH_TABLE, "{mode}" replaced by this run's mode.
    path = os.environ.get('RBDMIG_CINDER_CRASH_TABLE')
    if path and functional._CRASHES:
        functional._write_crash_table(path.format(mode=MODE))
    if _MEASURED:
        terminalreporter.section('measured (%s mode)' % MODE)
        for line in _MEASURED:
            terminalreporter.write_line(line)
