"""Fixtures for compat tests: real cinder-volume on real sandbox clusters.

Cinder (``cinder==29.0.0``, see tox.ini's ``compat`` env) and Ceph must be
installed; without them these tests fail, they are never skipped.  The
clusters are the functional tests' (same environment variables); the
first one gets a third pool for Cinder's own RBD driver.
"""

import pytest

from tests.compat import cinder_env
from tests.functional.conftest import ceph_cluster2  # noqa: F401
from tests.functional.conftest import cluster_registry  # noqa: F401
from tests.functional.conftest import sandbox_settings

POOLS = ('volumes-a', 'volumes-b', 'volumes-c')


@pytest.fixture(scope='session')
def ceph_cluster(cluster_registry, tmp_path_factory):  # noqa: F811
    """The first cluster, with a pool per Cinder backend."""
    return cluster_registry.start(tmp_path_factory.mktemp('ceph'),
                                  name='ceph', backend_prefix='ceph',
                                  pools=POOLS, **sandbox_settings())


@pytest.fixture(scope='session')
def backends(ceph_cluster, ceph_cluster2):  # noqa: F811
    """``enabled_backends``: rbdmig's listed before Cinder's own driver.

    ``rbdmig-a``/``rbdmig-b`` share a cluster with ``cinder-rbd``;
    ``other-a`` is on the second cluster.  ``cinder-rbd`` leaves
    ``rbd_user`` unset, so its location_info says ``None`` there.
    """
    rbdmig, cinder = cinder_env.RBDMIG, cinder_env.CINDER_RBD
    sections = {
        'rbdmig-a': cinder_env.rbd_backend(rbdmig, ceph_cluster,
                                           'volumes-a'),
        'rbdmig-b': cinder_env.rbd_backend(rbdmig, ceph_cluster,
                                           'volumes-b'),
        'other-a': cinder_env.rbd_backend(rbdmig, ceph_cluster2,
                                          'volumes-a'),
        'cinder-rbd': cinder_env.rbd_backend(cinder, ceph_cluster,
                                             'volumes-c', user=None),
    }
    for name, section in sections.items():
        section['volume_backend_name'] = name
    return sections


@pytest.fixture(scope='session')
def cinder(backends, tmp_path_factory):
    """cinder-volume, started from a cinder.conf naming ``backends``."""
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


class Cleanup(object):
    """Undo steps run in reverse order; every failure is reported."""

    def __init__(self):
        self.steps = []

    def add(self, what, func, *args):
        self.steps.append((what, func, args))

    def run(self):
        errors = []
        while self.steps:
            what, func, args = self.steps.pop()
            try:
                func(*args)
            except Exception as err:  # noqa: BLE001 - collect, then raise
                errors.append('%s: %r' % (what, err))
        if errors:
            raise RuntimeError('Cleanup failed: ' + '; '.join(errors))


@pytest.fixture
def cleanup():
    steps = Cleanup()
    yield steps
    steps.run()
