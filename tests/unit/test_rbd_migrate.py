"""Every branch of RBDDriver.migrate_volume, against fake librados/librbd."""

import logging
import os

import pytest

from rbdmig import exception
from rbdmig import faults
from rbdmig.ceph import recover
from rbdmig.migration import progress
from tests.unit import rbd_fixtures as fx

METHODS = ['copy', 'clone_flatten', 'deep_copy', 'live', 'extents']
DATA = os.urandom(64 * 1024) + b'tail'


@pytest.fixture
def ceph():
    return fx.make_ceph()


def _pair(ceph, method='deep_copy'):
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    return src, dst


def _exists(ceph, pool, name, conf=fx.CONF_A):
    return name in ceph.clusters[conf].pools[pool]


@pytest.mark.parametrize('method', METHODS)
def test_moves_data_and_removes_source(ceph, method):
    src, dst = _pair(ceph, method)
    volume = fx.make_volume(ceph, data=DATA)

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)

    assert fx.read_head(ceph, 'ssd', volume.name, len(DATA)) == DATA
    assert not _exists(ceph, 'hdd', volume.name)
    assert ceph.connections == 0


@pytest.mark.parametrize('method', ['deep_copy', 'live'])
def test_snapshots_travel_with_methods_that_keep_them(ceph, method):
    src, dst = _pair(ceph, method)
    volume = fx.make_volume(ceph, data=DATA)
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    with ceph.rbd.Image(ioctx, volume.name) as image:
        image.create_snap('before-upgrade')

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)

    moved = ceph.image(fx.CONF_A, 'ssd', volume.name)
    assert list(moved.snaps) == ['before-upgrade']
    assert not _exists(ceph, 'hdd', volume.name)


@pytest.mark.parametrize('method', ['copy', 'clone_flatten'])
def test_snapshots_refused_by_methods_that_drop_them(ceph, method):
    src, dst = _pair(ceph, method)
    volume = fx.make_volume(ceph, data=DATA)
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    with ceph.rbd.Image(ioctx, volume.name) as image:
        image.create_snap('keep-me')

    with pytest.raises(exception.MigrationRefused,
                       match='which method %s would drop' % method):
        src.migrate_volume(None, volume, fx.host_of(dst))
    assert list(ceph.image(fx.CONF_A, 'hdd', volume.name).snaps) == [
        'keep-me']
    assert not _exists(ceph, 'ssd', volume.name)


def test_same_pool_moves_nothing(ceph):
    src = fx.make_driver(ceph, pool='hdd')
    other_backend_same_pool = fx.make_driver(ceph, pool='hdd', backend='b2')
    volume = fx.make_volume(ceph, size_mib=1 << 14, data=DATA)  # 16 GiB
    ceph.fail('copy', AssertionError('no data may move'))
    ceph.fail('deep_copy', AssertionError('no data may move'))

    result = src.migrate_volume(None, volume,
                                fx.host_of(other_backend_same_pool))

    assert result == (True, None)
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA


@pytest.mark.parametrize('status', ['creating', 'error', 'deleting',
                                    'downloading', 'attaching'])
def test_refuses_statuses_cinder_does_not_allow(ceph, status):
    src, dst = _pair(ceph)
    volume = fx.make_volume(ceph, data=DATA, status=status)
    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (False, None)
    assert _exists(ceph, 'hdd', volume.name)


@pytest.mark.parametrize('status', ['available', 'retyping', 'maintenance'])
def test_accepts_statuses_cinder_allows(ceph, status):
    src, dst = _pair(ceph)
    volume = fx.make_volume(ceph, data=DATA, status=status)
    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)


def test_in_use_refused_across_pools_but_fine_in_same_pool(ceph):
    src, dst = _pair(ceph)
    same = fx.make_driver(ceph, pool='hdd', backend='b2')
    volume = fx.make_volume(ceph, data=DATA, status='in-use',
                            volume_attachment=[{'id': 'a1'}])

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (False, None)
    assert src.migrate_volume(None, volume, fx.host_of(same)) == (True, None)
    assert _exists(ceph, 'hdd', volume.name)


@pytest.mark.parametrize('caps', [
    {'storage_protocol': 'iSCSI', 'location_info': 'x'},
    {'storage_protocol': 'ceph'},
    {'storage_protocol': 'ceph', 'location_info': ''},
    {'storage_protocol': 'ceph',
     'location_info': 'ceph:/etc/ceph/a.conf:%s:admin' % fx.FSID},
    # a conf path holding ':' makes six fields: refused, not guessed at
    {'storage_protocol': 'ceph',
     'location_info': 'ceph:/etc/ceph:a.conf:%s:admin:ssd' % fx.FSID},
    {'storage_protocol': 'ceph',
     'location_info': 'ceph:/etc/ceph/a.conf:not-a-uuid:admin:ssd'},
    {'storage_protocol': 'ceph',
     'location_info': 'ceph:/etc/ceph/a.conf:%s:admin:' % fx.FSID},
])
def test_refuses_unusable_capabilities(ceph, caps):
    src, _ = _pair(ceph)
    volume = fx.make_volume(ceph, data=DATA)
    assert src.migrate_volume(None, volume,
                              {'host': 'x@y#z', 'capabilities': caps}) == (
        False, None)
    assert _exists(ceph, 'hdd', volume.name)


def test_refuses_missing_capabilities(ceph):
    src, _ = _pair(ceph)
    volume = fx.make_volume(ceph, data=DATA)
    assert src.migrate_volume(None, volume, {'host': 'x'}) == (False, None)


@pytest.mark.parametrize('method', METHODS)
def test_moves_into_another_cluster_by_extents(ceph, method):
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    other = fx.make_driver(ceph, pool='hdd', conf_path=fx.CONF_B,
                           backend='far')
    volume = fx.make_volume(ceph, data=DATA)

    assert src.migrate_volume(None, volume, fx.host_of(other)) == (
        True, None)
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA),
                        conf=fx.CONF_B) == DATA
    assert not _exists(ceph, 'hdd', volume.name)
    # extents did it, whatever the method: the others cannot cross.
    assert ceph.aio_calls


@pytest.mark.parametrize('conf, pool, clients', [(fx.CONF_A, 'ssd', 1),
                                                    (fx.CONF_B, 'hdd', 2)])
def test_a_move_connects_once_per_cluster(ceph, monkeypatch, conf, pool,
                                          clients):
    """Source and destination in one cluster share one client (each
    connection is a good part of a small move's fixed cost); another
    cluster has a client of its own; none outlives the move."""
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='deep_copy')
    dst = fx.make_driver(ceph, pool=pool, conf_path=conf, backend='far')
    volume = fx.make_volume(ceph, data=DATA)
    seen = []
    monkeypatch.setattr(faults.POINTS, 'hook',
                        lambda point: seen.append(ceph.connections))

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (
        True, None)

    assert seen and max(seen) == clients
    assert ceph.connections == 0
    assert fx.read_head(ceph, pool, volume.name, len(DATA),
                        conf=conf) == DATA


def test_another_cluster_with_snapshots_is_refused(ceph):
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='deep_copy')
    other = fx.make_driver(ceph, pool='hdd', conf_path=fx.CONF_B,
                           backend='far')
    volume = fx.make_volume(ceph, data=DATA)
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    with ceph.rbd.Image(ioctx, volume.name) as image:
        image.create_snap('keep-me')

    with pytest.raises(exception.MigrationRefused,
                       match='no method moves snapshots into another '
                             'cluster.*source is intact'):
        src.migrate_volume(None, volume, fx.host_of(other))
    assert not _exists(ceph, 'hdd', volume.name, conf=fx.CONF_B)
    assert _exists(ceph, 'hdd', volume.name)


def test_another_cluster_this_host_cannot_reach_is_refused(ceph):
    src = fx.make_driver(ceph, pool='hdd')
    volume = fx.make_volume(ceph, data=DATA)
    caps = {'storage_protocol': 'ceph', 'location_info':
            'far:/etc/ceph/far.conf:%s:admin:hdd' % fx.OTHER_FSID}

    assert src.migrate_volume(None, volume, {'capabilities': caps}) == (
        False, None)
    assert _exists(ceph, 'hdd', volume.name)


def test_refuses_when_the_conf_reaches_another_cluster(ceph):
    # location_info claims this cluster's fsid, but its conf leads to B.
    src = fx.make_driver(ceph, pool='hdd')
    volume = fx.make_volume(ceph, data=DATA)
    caps = {'storage_protocol': 'ceph',
            'location_info': 'ceph:%s:%s:admin:hdd' % (fx.CONF_B, fx.FSID)}
    assert src.migrate_volume(None, volume, {'capabilities': caps}) == (
        False, None)


@pytest.mark.parametrize('location', [
    'ceph:/nonexistent.conf:%s:admin:ssd' % fx.FSID,   # unreachable
    'ceph:%s:%s:admin:nopool' % (fx.CONF_A, fx.FSID),  # pool missing
])
def test_refuses_unreachable_destination_instead_of_raising(ceph, location):
    src, _ = _pair(ceph)
    volume = fx.make_volume(ceph, data=DATA)
    caps = {'storage_protocol': 'ceph', 'location_info': location}
    assert src.migrate_volume(None, volume, {'capabilities': caps}) == (
        False, None)
    assert ceph.connections == 0


def test_refuses_when_own_cluster_unreachable(ceph):
    src, dst = _pair(ceph)
    volume = fx.make_volume(ceph, data=DATA)
    host = fx.host_of(dst)
    ceph.fail('connect', ceph.rados.TimedOut('no mon'))
    assert src.migrate_volume(None, volume, host) == (False, None)


def test_existing_destination_is_never_overwritten(ceph):
    src, dst = _pair(ceph)
    volume = fx.make_volume(ceph, data=DATA)
    fx.make_volume(ceph, pool='ssd', data=b'precious', id=volume.id)

    with pytest.raises(exception.MigrationRefused, match='already exists'):
        src.migrate_volume(None, volume, fx.host_of(dst))
    assert fx.read_head(ceph, 'ssd', volume.name, 8) == b'precious'
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA


def test_refuses_image_with_clones_or_watchers(ceph):
    src, dst = _pair(ceph)
    volume = fx.make_volume(ceph, data=DATA)
    ceph.image(fx.CONF_A, 'hdd', volume.name).watchers.append('client.7')
    with pytest.raises(exception.MigrationRefused, match='open by 1 client'):
        src.migrate_volume(None, volume, fx.host_of(dst))

    ceph.image(fx.CONF_A, 'hdd', volume.name).watchers.clear()
    ceph.image(fx.CONF_A, 'hdd', volume.name).snaps['base'] = {
        'blocks': {}, 'protected': True, 'children': 1}
    with pytest.raises(exception.MigrationRefused, match='has clones'):
        src.migrate_volume(None, volume, fx.host_of(dst))
    assert not _exists(ceph, 'ssd', volume.name)


def test_refuses_missing_source_image(ceph):
    src, dst = _pair(ceph)
    volume = fx.make_volume(ceph, data=DATA)
    del ceph.clusters[fx.CONF_A].pools['hdd'][volume.name]
    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (False, None)


@pytest.mark.parametrize('method,call', [
    ('copy', 'copy'), ('deep_copy', 'deep_copy'),
    ('clone_flatten', 'flatten'), ('clone_flatten', 'clone'),
    ('live', 'migration_execute')])
def test_failed_copy_removes_partial_destination(ceph, method, call):
    src, dst = _pair(ceph, method)
    volume = fx.make_volume(ceph, data=DATA)
    host = fx.host_of(dst)
    ceph.fail(call, ceph.rbd.NoSpace('pool full'))

    with pytest.raises(exception.MigrationError, match='source is intact'):
        src.migrate_volume(None, volume, host)

    assert not _exists(ceph, 'ssd', volume.name)
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    # no temporary snapshot is left on the source either
    assert ceph.image(fx.CONF_A, 'hdd', volume.name).snaps == {}
    assert ceph.connections == 0


@pytest.mark.parametrize('method', METHODS)
def test_unverified_copy_is_discarded(ceph, method, monkeypatch):
    src, dst = _pair(ceph, method)
    volume = fx.make_volume(ceph, data=DATA)
    host = fx.host_of(dst)
    real_image = ceph.rbd.Image

    class ShrunkenCopy(real_image):
        def size(self):
            if self.ioctx.pool == 'ssd':
                return 4096
            return super().size()

    monkeypatch.setattr(ceph.rbd, 'Image', ShrunkenCopy)
    with pytest.raises(exception.MigrationError, match='did not verify'):
        src.migrate_volume(None, volume, host)

    assert not _exists(ceph, 'ssd', volume.name)
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA


@pytest.mark.parametrize('method,call', [('deep_copy', 'remove'),
                                         ('live', 'migration_commit')])
def test_failed_source_removal_still_reports_the_move(ceph, method, call,
                                                      caplog):
    src, dst = _pair(ceph, method)
    volume = fx.make_volume(ceph, data=DATA)
    host = fx.host_of(dst)
    ceph.fail(call, ceph.rbd.Error('OSD went away'))

    with caplog.at_level(logging.ERROR):
        assert src.migrate_volume(None, volume, host) == (True, None)

    assert fx.read_head(ceph, 'ssd', volume.name, len(DATA)) == DATA
    assert 'LEFTOVER' in caplog.text
    # The journal stays at "removing": recovery only goes forward.
    record = _journal(ceph).get(volume.name)
    assert record.phase == 'removing'
    assert not _exists(ceph, 'hdd', volume.name)  # out of clients' reach


def test_a_source_that_failed_to_go_is_removed_by_recovery(ceph):
    src, dst = _pair(ceph, 'deep_copy')
    volume = fx.make_volume(ceph, data=DATA)
    ceph.image(fx.CONF_A, 'hdd', volume.name).snaps['before'] = {
        'blocks': {}, 'protected': True, 'children': 0}
    ceph.fail('remove', ceph.rbd.Error('OSD went away'), times=1)
    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)
    record = _journal(ceph).get(volume.name)
    record.lock_dir = '/nonexistent-rbdmig-test'  # its process is gone

    (outcome,) = recover.recover(src.backend())

    assert outcome.action == 'completed'
    assert ceph.clusters[fx.CONF_A].pools['hdd'] == {}
    assert fx.read_head(ceph, 'ssd', volume.name, len(DATA)) == DATA
    assert _journal(ceph).records() == []


def test_recovery_tells_the_authority_before_the_record_goes(
        ceph, monkeypatch):
    # Seams review: the authority (Cinder's row) was told after the
    # journal's record was gone: a recovery killed in between left the
    # row on the source, the volume on the destination, and no record.
    from rbdmig import faults

    class Told(recover.Authority):
        settled = []

        def settle(self, record, decision):
            self.settled.append(decision)

    class Killed(BaseException):
        pass

    def die(name):
        if name == 'engine.finished':
            raise Killed(name)

    src, dst = _pair(ceph, 'deep_copy')
    volume = fx.make_volume(ceph, data=DATA)
    ceph.fail('remove', ceph.rbd.Error('OSD went away'), times=1)
    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)
    record = _journal(ceph).get(volume.name)
    record.lock_dir = '/nonexistent-rbdmig-test'  # its process is gone

    monkeypatch.setattr(faults.POINTS, 'hook', die)
    with pytest.raises(Killed):
        recover.recover(src.backend(), authority=Told())

    assert Told.settled == ['adopt']  # removing, the source named
    assert fx.read_head(ceph, 'ssd', volume.name, len(DATA)) == DATA


def test_a_client_opening_the_source_before_it_retires_keeps_it_whole(
        ceph, monkeypatch):
    src, dst = _pair(ceph, 'deep_copy')
    volume = fx.make_volume(ceph, data=DATA)
    source = ceph.image(fx.CONF_A, 'hdd', volume.name)
    source.snaps['kept'] = {'blocks': {}, 'protected': True, 'children': 0}

    def client_opens(point):
        if point == 'engine.verified':
            source.watchers.append({'id': 4242, 'addr': '10.0.0.9:0/1'})

    monkeypatch.setattr(faults.POINTS, 'hook', client_opens)
    with pytest.raises(exception.MigrationRefused):
        src.migrate_volume(None, volume, fx.host_of(dst))

    # Whole: its name, its snapshot, its data; the copy is gone.
    assert _exists(ceph, 'hdd', volume.name)
    assert list(source.snaps) == ['kept']
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert ceph.clusters[fx.CONF_A].pools['ssd'] == {}
    assert _journal(ceph).records() == []


def test_a_client_opening_a_live_source_at_the_end_aborts(ceph):
    src, dst = _pair(ceph, 'live')
    volume = fx.make_volume(ceph, data=DATA)
    ceph.fail('migration_commit', ceph.rbd.ImageBusy('watcher appeared'),
              times=1)

    with pytest.raises(exception.MigrationRefused):
        src.migrate_volume(None, volume, fx.host_of(dst))

    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert not _exists(ceph, 'ssd', volume.name)
    assert _journal(ceph).records() == []


def test_an_aborted_live_move_names_the_source_again(ceph):
    # Seams review: under Cinder the row was told the copy held the name
    # (``moved``) and kept naming it once the abort gave the source back.
    from rbdmig.ceph import migrate

    class Told(recover.Authority):
        def __init__(self):
            self.calls = []

        def moved(self, record):
            self.calls.append('moved')

        def restored(self, record):
            self.calls.append('restored')

    src, dst = _pair(ceph, 'live')
    volume = fx.make_volume(ceph, data=DATA)
    ceph.fail('migration_commit', ceph.rbd.ImageBusy('watcher appeared'),
              times=1)
    told = Told()

    with pytest.raises(exception.MigrationRefused):
        migrate.migrate(src.backend(), volume, fx.host_of(dst),
                        authority=told)

    assert told.calls == ['moved', 'restored']
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _journal(ceph).records() == []


def _journal(ceph, pool='hdd'):
    from rbdmig.ceph import journal
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx(pool)
    return journal.Journal(ceph.rados, ioctx)


@pytest.mark.parametrize('method', ['clone_flatten', 'live'])
def test_progress_is_reported(ceph, method, monkeypatch):
    # Steps far apart next to the relay's 1 ms poll: each is seen, even
    # on a loaded machine.
    fx.pace(ceph, monkeypatch, latency=0.05)
    src, dst = _pair(ceph, method)
    volume = fx.make_volume(ceph, data=DATA)
    recorder = fx.ProgressRecorder()
    src.migrate_volume(None, volume, fx.host_of(dst), callback=recorder)
    seen = recorder.seen

    size = 8 * fx.MiB
    assert (size // 2, size) in seen
    assert seen[-1] == (size, size)


@pytest.mark.parametrize('method', ['clone_flatten', 'live'])
def test_callback_cancels_and_source_survives(ceph, method):
    src, dst = _pair(ceph, method)
    volume = fx.make_volume(ceph, data=DATA)

    class Cancel(progress.Callback):
        def call(self):
            if self.value:
                raise KeyboardInterrupt('operator pressed ^C')

    with pytest.raises(KeyboardInterrupt):
        src.migrate_volume(None, volume, fx.host_of(dst), callback=Cancel())
    assert not _exists(ceph, 'ssd', volume.name)
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA


def test_without_a_callback_progress_goes_to_the_log(ceph, caplog):
    src, dst = _pair(ceph, 'live')
    volume = fx.make_volume(ceph, data=DATA)
    with caplog.at_level(logging.INFO, logger='rbdmig'):
        assert src.migrate_volume(None, volume, fx.host_of(dst)) == (
            True, None)
    lines = [r.getMessage() for r in caplog.records
             if 'migration of %s' % volume.id in r.getMessage()]
    assert lines[0].startswith('migration of %s: 0.0%%' % volume.id)
    assert '100.0%' in lines[-1]


@pytest.mark.parametrize('error', ['PermissionError', 'TimedOut'])
def test_an_inspection_error_is_a_refusal_not_a_crash(ceph, error):
    src, dst = _pair(ceph, 'copy')
    volume = fx.make_volume(ceph, data=DATA)
    cls = type(error, (ceph.rbd.Error,), {})
    ceph.fail('Image', cls('cannot read the header'), times=1)

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (False, None)
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert not _exists(ceph, 'ssd', volume.name)


@pytest.mark.parametrize('method', ['extents', 'copy', 'deep_copy'])
def test_a_write_to_a_source_without_exclusive_lock_is_never_lost(
        ceph, monkeypatch, method):
    # No lock held the writer off: it opened, wrote and closed while the
    # copy ran, between two looks at the watchers.
    src, dst = _pair(ceph, method)
    volume = fx.make_volume(ceph, data=DATA)
    source = ceph.image(fx.CONF_A, 'hdd', volume.name)
    source.features &= ~4  # RBD_FEATURE_EXCLUSIVE_LOCK

    def client_writes(point):
        if point == 'engine.copied':
            ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
            with ceph.rbd.Image(ioctx, volume.name) as image:
                image.write(b'acknowledged', 0)

    monkeypatch.setattr(faults.POINTS, 'hook', client_writes)
    with pytest.raises(exception.MigrationRefused):
        src.migrate_volume(None, volume, fx.host_of(dst))

    assert fx.read_head(ceph, 'hdd', volume.name, 12) == b'acknowledged'
    assert ceph.clusters[fx.CONF_A].pools['ssd'] == {}
    assert _journal(ceph).records() == []
