"""rbdmig inside real cinder-volume: load, stats, migrate, retype."""

import json
import logging
import time

import pytest
from cinder.volume.drivers import rbd as cinder_rbd_driver

import rbdmig.cinder
from rbdmig.ceph import location as rbd_location
from rbdmig.ceph import methods
from rbdmig.ceph import opts as ceph_opts
from tests.compat import images

RBDMIG_MIGRATE = 'rbdmig.ceph.migrate'
# The method rbdmig uses when cinder.conf does not choose one.
DEFAULT_METHOD = next(o.default for o in ceph_opts.MIGRATION_OPTS
                      if o.name == 'rbd_migration_method')
CINDER_RBD = 'cinder.volume.drivers.rbd'
POOL = {'rbdmig-a': 'volumes-a', 'rbdmig-b': 'volumes-b',
        'cinder-rbd': 'volumes-c'}


def _new_volume(cinder, cleanup, cluster, backend):
    """A 1 GiB volume made by Cinder on ``backend``, holding random data."""
    volume = cinder.create_volume(backend)
    cleanup.add('delete %s' % volume.id, cinder.delete_volume, volume)
    checksum = images.fill(cluster, POOL[backend], volume.name)
    return volume, checksum


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO)


def _logged(caplog, logger, text):
    """Messages of ``logger`` (RPC server threads included) with ``text``."""
    return [r.getMessage() for r in caplog.records
            if r.name == logger and text in r.getMessage()]


def _timed(what, func, *args):
    start = time.monotonic()
    result = func(*args)
    print('%s: %.2f s' % (what, time.monotonic() - start))
    return result


def test_cinder_volume_loads_rbdmig_and_publishes_its_stats(
        cinder, ceph_cluster, ceph_cluster2):
    print('start-up: %s' % ', '.join('%s %.2f s' % item
                                     for item in cinder.timings.items()))
    clusters = {'rbdmig-a': ceph_cluster, 'rbdmig-b': ceph_cluster,
                'other-a': ceph_cluster2}
    for backend, cluster in clusters.items():
        mgr = cinder.manager(backend)
        assert type(mgr.driver) is rbdmig.cinder.RBDDriver
        # Cinder's own driver underneath: every Cinder RBD feature.
        assert isinstance(mgr.driver, cinder_rbd_driver.RBDDriver)
        assert mgr.driver.initialized
        caps = mgr.last_capabilities
        assert caps['migration_progress_report'] is True
        assert caps['rbd_migration_methods'] == sorted(methods.METHODS)
        assert caps['rbd_migration_method'] == DEFAULT_METHOD
        assert caps['driver_version'] == rbdmig.cinder.RBDDriver.VERSION
        assert caps['volume_backend_name'] == backend
        assert caps['storage_protocol'] == 'ceph'
        assert caps['backend_state'] == 'up'
        assert caps['total_capacity_gb'] > 0
        location = rbd_location.parse_location(caps['location_info'])
        assert location.fsid == cluster.fsid
        assert location.pool == mgr.driver.configuration.rbd_pool
        # what the scheduler's host manager makes of it
        pool = cinder.destination(backend)
        assert pool.host == 'compat@%s#%s' % (backend, backend)
        assert pool.capabilities['location_info'] == caps['location_info']
    # Cinder's own RBD driver, listed after rbdmig's backends, started too
    # (rbdmig's options no longer clash with the ones it registers).
    cinder_rbd = cinder.manager('cinder-rbd')
    assert type(cinder_rbd.driver).__module__ == 'cinder.volume.drivers.rbd'
    assert cinder_rbd.driver.initialized
    # (The session's own services; test_active_active's cluster members
    # share its database.)
    services = {s.host for s in _services(cinder)
                if s.host.startswith('compat@')}
    assert services == {'compat@%s' % b for b in cinder.services}


def _services(cinder):
    from cinder import objects
    return objects.ServiceList.get_all_by_binary(cinder.ctxt,
                                                 'cinder-volume')


def test_migrate_between_pools_is_assisted_by_rbdmig(cinder, ceph_cluster,
                                                     cleanup, caplog):
    volume, checksum = _new_volume(cinder, cleanup, ceph_cluster, 'rbdmig-a')
    assert volume.name in images.names(ceph_cluster, 'volumes-a')
    rows = set(cinder.volumes())

    moved = _timed('migrate rbdmig-a -> rbdmig-b (assisted)',
                   cinder.migrate, volume, 'rbdmig-b')

    assert moved.migration_status == 'success'
    assert moved.host == 'compat@rbdmig-b#rbdmig-b'
    assert moved.status == 'available'
    # rbdmig moved it: same image name, no temporary volume row
    assert moved.name == volume.name == 'volume-%s' % volume.id
    assert set(cinder.volumes()) == rows
    assert volume.name not in images.names(ceph_cluster, 'volumes-a')
    assert volume.name in images.names(ceph_cluster, 'volumes-b')
    assert images.digest(ceph_cluster, 'volumes-b', volume.name) == checksum
    assert _logged(caplog, RBDMIG_MIGRATE,
                   'Migrated %s to pool volumes-b by %s'
                   % (volume.name, DEFAULT_METHOD))


def test_retype_to_another_backend_migrates_through_rbdmig(
        cinder, ceph_cluster, cleanup, caplog):
    volume, checksum = _new_volume(cinder, cleanup, ceph_cluster, 'rbdmig-b')
    rows = set(cinder.volumes())
    new_type = cinder.backend_type('rbdmig-a')

    retyped = _timed('retype rbdmig-b -> rbdmig-a (assisted)',
                     cinder.retype, volume, 'rbdmig-a')

    assert retyped.migration_status == 'success'
    assert retyped.status == 'available'
    assert retyped.volume_type_id == new_type.id
    assert retyped.host == 'compat@rbdmig-a#rbdmig-a'
    # assisted: the image kept its name, no generic-copy volume was made
    assert retyped.name == volume.name and retyped.name_id == volume.id
    assert set(cinder.volumes()) == rows
    assert volume.name not in images.names(ceph_cluster, 'volumes-b')
    assert images.digest(ceph_cluster, 'volumes-a', volume.name) == checksum
    assert _logged(caplog, RBDMIG_MIGRATE,
                   'Migrated %s to pool volumes-a by %s'
                   % (volume.name, DEFAULT_METHOD))


def _spy_retype(monkeypatch, driver):
    """Record the ``host`` of every call Cinder makes to driver.retype."""
    calls = []
    original = driver.retype

    def retype(context, volume, new_type, diff, host):
        calls.append(host)
        return original(context, volume, new_type, diff, host)

    monkeypatch.setattr(driver, 'retype', retype)
    return calls


def test_cinder_calls_driver_retype_only_within_the_pool(
        cinder, ceph_cluster, cleanup, monkeypatch):
    """driver.retype never sees another pool: rbdmig keeps Cinder's.

    Cinder's manager asks the driver only when the destination is this
    backend (``_is_our_backend``), and an RBD backend is one pool; a
    retype into another pool is a migration (the test above).
    """
    assert 'retype' not in vars(rbdmig.cinder.RBDDriver)
    volume, checksum = _new_volume(cinder, cleanup, ceph_cluster, 'rbdmig-a')
    mgr = cinder.manager('rbdmig-a')
    calls = _spy_retype(monkeypatch, mgr.driver)
    gold = cinder.volume_type('gold-rbdmig-a', volume_backend_name='rbdmig-a',
                              rbdmig_compat_tier='gold')
    pool = cinder.destination('rbdmig-a')
    volume.update({'status': 'retyping', 'previous_status': volume.status})
    volume.save()

    # What the RPC server runs for "cinder retype" within the backend.
    mgr.retype(cinder.ctxt, volume, gold.id,
               {'host': pool.host, 'cluster_name': None,
                'capabilities': pool.capabilities},
               migration_policy='on-demand')

    volume.refresh()
    assert (volume.status, volume.volume_type_id) == ('available', gold.id)
    (host,) = calls
    assert rbd_location.from_host(host).pool == 'volumes-a'
    assert images.digest(ceph_cluster, 'volumes-a', volume.name) == checksum

    # Into another backend: Cinder migrates, driver.retype is not asked.
    other = _timed('retype rbdmig-a -> rbdmig-b (assisted)', cinder.retype,
                   volume, 'rbdmig-b')
    assert other.migration_status == 'success'
    assert other.host == 'compat@rbdmig-b#rbdmig-b'
    assert len(calls) == 1
    assert images.digest(ceph_cluster, 'volumes-b', volume.name) == checksum


def test_cinders_generic_copy_attaches_rbdmig_volumes(cinder, ceph_cluster,
                                                     cleanup, caplog):
    """Cinder's generic path, when asked for, copies through os-brick."""
    volume, checksum = _new_volume(cinder, cleanup, ceph_cluster, 'rbdmig-a')
    rows = set(cinder.volumes())
    source = cinder.manager('rbdmig-a').driver

    # Users can read connection info: it carries no keyring (OSSN-0085),
    # os-brick finds the host's, as on a real cinder-volume host.
    info = source.initialize_connection(volume, {})
    assert 'keyring' not in info['data']

    moved = _timed('migrate rbdmig-a -> rbdmig-b (Cinder generic)',
                   cinder.migrate, volume, 'rbdmig-b', 180, True)

    assert moved.migration_status == 'success'
    assert moved.host == 'compat@rbdmig-b#rbdmig-b'
    # Cinder's generic path: a new volume, attached through os-brick on
    # both sides, whose image Cinder's own update_migrated_volume then
    # renames to the volume's name (rbdmig.cinder inherits it).
    assert moved.name == volume.name
    assert images.digest(ceph_cluster, 'volumes-b', moved.name) == checksum
    (temporary,) = set(cinder.volumes()) - rows
    _wait_until(lambda: cinder.volumes()[temporary].deleted)
    assert volume.name not in images.names(ceph_cluster, 'volumes-a')
    assert not _logged(caplog, RBDMIG_MIGRATE, 'Migrated')


def test_interoperates_with_cinders_own_rbd_driver(cinder, ceph_cluster,
                                                   cleanup, caplog):
    cinder_caps = cinder.destination('cinder-rbd').capabilities
    # rbd_user is unset there: Cinder writes 'None', rbdmig reads unset.
    assert cinder_caps['location_info'].split(':')[3] == 'None'
    assert rbd_location.parse_location(
        cinder_caps['location_info']).user is None
    volume, checksum = _new_volume(cinder, cleanup, ceph_cluster,
                                   'cinder-rbd')
    rows = set(cinder.volumes())

    there = _timed('migrate cinder-rbd -> rbdmig-a (Cinder\'s driver)',
                   cinder.migrate, volume, 'rbdmig-a')

    assert there.migration_status == 'success'
    assert there.host == 'compat@rbdmig-a#rbdmig-a'
    assert there.name == volume.name and set(cinder.volumes()) == rows
    assert volume.name not in images.names(ceph_cluster, 'volumes-c')
    assert images.digest(ceph_cluster, 'volumes-a', volume.name) == checksum
    # Cinder's driver recognised rbdmig's location_info as its cluster
    assert _logged(caplog, CINDER_RBD,
                   'Successful RBD assisted volume migration')

    back = _timed('migrate rbdmig-a -> cinder-rbd (rbdmig)',
                  cinder.migrate, there, 'cinder-rbd')

    assert back.migration_status == 'success'
    assert back.host == 'compat@cinder-rbd#cinder-rbd'
    assert back.name == volume.name and set(cinder.volumes()) == rows
    assert volume.name not in images.names(ceph_cluster, 'volumes-a')
    assert images.digest(ceph_cluster, 'volumes-c', volume.name) == checksum
    # ...and rbdmig Cinder's, 'None' user and all
    assert _logged(caplog, RBDMIG_MIGRATE,
                   'Migrated %s to pool volumes-c' % volume.name)


def _wait_until(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError('still false after %d s' % timeout)
        time.sleep(0.2)


def test_migration_events_go_out_through_cinders_notifier(
        cinder, ceph_cluster, cleanup, caplog):
    volume, _ = _new_volume(cinder, cleanup, ceph_cluster, 'rbdmig-a')
    cinder.migrate(volume, 'rbdmig-b')

    events = [json.loads(r.getMessage()) for r in caplog.records
              if r.name.startswith('oslo.messaging.notification.volume.'
                                   'migration')]
    kinds = [e['event_type'] for e in events]
    assert kinds[0] == 'volume.migration.start'
    assert kinds[-1] == 'volume.migration.end'
    assert set(kinds[1:-1]) <= {'volume.migration.progress'}
    assert {e['publisher_id'] for e in events} == {'rbdmig.compat@rbdmig-a'}
    end = events[-1]['payload']
    assert (end['volume_id'], end['source_backend'], end['percent']) == (
        volume.id, 'rbdmig-a', 100.0)
    assert end['destination_backend'] == 'compat@rbdmig-b#rbdmig-b'
