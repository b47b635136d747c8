"""A cinder-volume restarted after a crash mid-migration repairs itself."""

import logging
import signal
import subprocess
import sys

import pytest
import rados

from rbdmig.ceph import journal
from tests.compat import images


@pytest.mark.parametrize('point', ['mid', 'engine.verified'])
def test_restart_undoes_a_migration_killed_mid_way(cinder, ceph_cluster,
                                                   cleanup, point):
    volume = cinder.create_volume('rbdmig-a')
    cleanup.add('delete %s' % volume.id, cinder.delete_volume, volume)
    checksum = images.fill(ceph_cluster, 'volumes-a', volume.name,
                           extents=32)
    # A process migrating it (rbdmig's own driver, same pools) is killed;
    # Cinder's database still says the volume is on rbdmig-a.
    child = subprocess.run(
        [sys.executable, '-m', 'tests.functional.crash_child',
         ceph_cluster.rbdmig_conf_path, 'extents', point, volume.id],
        capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert [n for n in images.names(ceph_cluster, 'volumes-b')
            if n.startswith(volume.name)]  # a copy was left behind

    # What cinder-volume runs when it starts again.
    cinder.manager('rbdmig-a').driver.do_setup(cinder.ctxt)

    # Even a verified copy is undone: Cinder's database names the source.
    assert volume.name in images.names(ceph_cluster, 'volumes-a')
    assert not [n for n in images.names(ceph_cluster, 'volumes-b')
                if n.startswith(volume.name)]
    assert images.digest(ceph_cluster, 'volumes-a', volume.name) == checksum


def test_a_backend_whose_journal_cannot_be_read_still_starts(
        cinder, ceph_cluster, cleanup, caplog):
    """A record no recovery can read is logged; the backend starts."""
    name = 'volume-compat-unreadable-%s' % images.token()
    key = '%s/%s' % (name, 'f' * 8)
    client = ceph_cluster.connect()
    cleanup.add('disconnect', client.shutdown)
    ioctx = client.open_ioctx('volumes-a')
    cleanup.add('close volumes-a', ioctx.close)
    # As written by another version, or torn: not a record this one reads.
    ioctx.write_full(journal.RECORD_PREFIX + name, b'{"id": "ffffffff", ')
    cleanup.add('remove the record', ioctx.remove_object,
                journal.RECORD_PREFIX + name)
    with rados.WriteOpCtx() as op:
        ioctx.set_omap(op, (key,), (b'f' * 8,))
        ioctx.operate_write_op(op, journal.INDEX)
    cleanup.add('remove the index key', _forget, ioctx, key)
    mgr = cinder.manager('rbdmig-a')
    caplog.set_level(logging.INFO)

    # cinder-volume starting again (its driver not initialized yet).
    mgr.driver._initialized = False
    try:
        mgr.init_host(service_id=mgr.service_id)
        started = mgr.driver.initialized
    finally:
        mgr.driver._initialized = True  # the other tests' backend
    assert started
    assert [r for r in caplog.records
            if r.name == 'rbdmig.cinder.driver' and r.getMessage().startswith(
                'Could not recover the interrupted migrations of rbdmig-a')]
    assert not [r for r in caplog.records
                if 'Failed to initialize driver' in r.getMessage()]


def _forget(ioctx, key):
    with rados.WriteOpCtx() as op:
        ioctx.remove_omap_keys(op, (key,))
        ioctx.operate_write_op(op, journal.INDEX)
