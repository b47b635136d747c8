"""``manager.migrate`` killed anywhere in its generic copy: it keeps no
record, and ``manager.recover`` puts the volume back in one place."""

import os

import pytest

from rbdmig import exception
from rbdmig.migration import manager
from rbdmig.migration import progress
from tests.unit import rbd_fixtures as fx
from tests.unit import test_file_driver as files

DATA = os.urandom(3 << 20)  # 3 MiB: the copy reports progress midway
RETIRED = '.rbdmig-generic.retired'


class Killed(BaseException):
    """A SIGKILL, in process: nothing of the code's own cleanup runs."""


class _DieMidway(progress.Callback):
    def call(self):
        if self.size and self.value >= 0.3 * self.size:
            raise Killed()


@pytest.fixture
def ceph():
    return fx.make_ceph()


@pytest.fixture
def src(ceph):
    return fx.make_driver(ceph, pool='hdd')


@pytest.fixture(params=['file', 'rbd'])
def dst(request, ceph, src, tmp_path, monkeypatch):
    if request.param == 'rbd':
        # Another cluster, and a source driver that cannot move there
        # itself: the generic copy, RBD to RBD.
        monkeypatch.setattr(src, 'migrate_volume',
                            lambda *args, **kwargs: (False, None))
        return fx.make_driver(ceph, pool='hdd', conf_path=fx.CONF_B,
                              backend='far')
    drv = files.make_driver(tmp_path)
    drv.do_setup(None)
    return drv


def _pool(ceph, pool):
    return ceph.clusters[fx.CONF_A].pools[pool]


def _dst_names(ceph, dst):
    if hasattr(dst, 'volume_dir'):
        return sorted(os.listdir(dst.volume_dir))
    return sorted(ceph.clusters[fx.CONF_B].pools['hdd'])


def _read(drv, volume, length):
    handle = drv.open_volume(None, volume, 'rb')
    try:
        return handle.read(length)
    finally:
        drv.close_volume(None, volume, handle)


def _killed(src, dst, volume, point, at_point):
    """Run a generic move killed at ``point`` (``mid``: during the copy)."""
    callback = progress.DEFAULT_CALLBACK
    if point == 'mid':
        callback = _DieMidway()
    else:
        def die():
            raise Killed()
        at_point[point] = die
    with pytest.raises(Killed):
        manager.migrate(None, volume, src, dst, callback=callback)
    at_point.clear()


def _source_only(ceph, src, dst, volume):
    """The volume is its source, under its name, whole; nothing else."""
    assert sorted(_pool(ceph, 'hdd')) == [volume.name]
    assert _read(src, volume, len(DATA)) == DATA
    assert _dst_names(ceph, dst) == []


ROLLED_BACK_AT = ['manager.created', 'mid', 'manager.copied',
                  'manager.retired', 'manager.checked', 'rbd.remove']


@pytest.mark.parametrize('point', ROLLED_BACK_AT)
def test_a_move_killed_before_its_source_went_rolls_back(
        ceph, src, dst, at_point, point):
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    _killed(src, dst, volume, point, at_point)
    retired = point not in ('manager.created', 'mid', 'manager.copied')
    # Killed, the move left its copy, and perhaps its retired source.
    assert (volume.name + RETIRED in _pool(ceph, 'hdd')) is retired
    assert (volume.name in _pool(ceph, 'hdd')) is not retired
    assert _dst_names(ceph, dst) != []

    found = manager.recover(None, volume, src, dst)

    assert found.outcome == manager.ROLLED_BACK
    assert found.volume is volume and not found.kept
    assert any('copy' in line for line in found.done)
    assert any('name' in line for line in found.done) is retired
    _source_only(ceph, src, dst, volume)
    # Nothing is left in the way: the volume moves, and a recovery then
    # finds nothing more to do.
    moved = manager.migrate(None, volume, src, dst)
    assert moved.path == 'generic'
    assert _read(dst, moved.volume, len(DATA)) == DATA
    assert _pool(ceph, 'hdd') == {} or not list(_pool(ceph, 'hdd'))


def test_a_move_left_retired_is_refused_until_recovered(ceph, src, dst,
                                                        at_point):
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    _killed(src, dst, volume, 'manager.checked', at_point)
    before = (sorted(_pool(ceph, 'hdd')), _dst_names(ceph, dst))

    with pytest.raises(exception.MigrationRefused,
                       match=r'retired as .*\.rbdmig-generic\.retired.*'
                             r'recover\(\)'):
        manager.migrate(None, volume, src, dst)

    assert (sorted(_pool(ceph, 'hdd')), _dst_names(ceph, dst)) == before


def test_a_stale_retired_source_refuses_a_move_before_anything(
        ceph, src, dst):
    # The name is back (by hand, say) but the retired one is there too:
    # the move's own retirement would fail after a whole copy.
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    fx.make_volume(ceph, size_mib=8, name=volume.name + RETIRED)

    with pytest.raises(exception.MigrationRefused, match='recover'):
        manager.migrate(None, volume, src, dst)
    assert _dst_names(ceph, dst) == []


def test_a_move_killed_once_its_source_went_completes(ceph, src, dst,
                                                      at_point):
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    _killed(src, dst, volume, 'manager.checked', at_point)
    # What the removal, begun next, leaves: no source under either name.
    src.delete_volume(fx.objects.Volume(name=volume.name + RETIRED,
                                        size=1))

    found = manager.recover(None, volume, src, dst)

    assert found.outcome == manager.COMPLETED
    assert found.volume.host == manager.destination_host(dst)['host']
    assert found.volume.name == volume.name
    assert _read(dst, found.volume, len(DATA)) == DATA
    assert list(_pool(ceph, 'hdd')) == []


def test_a_copy_holding_other_data_is_kept(ceph, src, dst, at_point):
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    _killed(src, dst, volume, 'manager.retired', at_point)
    # Someone wrote into the destination volume since.
    handle = dst.open_volume(None, volume, 'r+b')
    try:
        handle.seek(5 << 20)
        handle.write(b'theirs')
    finally:
        dst.close_volume(None, volume, handle)

    found = manager.recover(None, volume, src, dst)

    assert found.outcome == manager.ROLLED_BACK
    assert len(found.kept) == 1
    assert 'at byte %d' % (5 << 20) in found.kept[0]
    assert sorted(_pool(ceph, 'hdd')) == [volume.name]
    assert _read(src, volume, len(DATA)) == DATA
    assert _dst_names(ceph, dst) != []


def test_a_copy_of_another_size_is_kept(ceph, src, dst, at_point):
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    other = fx.objects.Volume(name=volume.name, size=2)
    dst.create_volume(other)

    found = manager.recover(None, volume, src, dst)

    assert found.outcome == manager.ROLLED_BACK and not found.done
    assert 'bytes' in found.kept[0]
    assert _dst_names(ceph, dst) != []
    assert sorted(_pool(ceph, 'hdd')) == [volume.name]


def test_an_untouched_volume_has_nothing_to_recover(ceph, src, dst):
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)

    found = manager.recover(None, volume, src, dst)

    assert found == manager.Recovery(manager.NOTHING, volume)
    _source_only(ceph, src, dst, volume)


def test_a_source_under_both_names_changes_nothing(ceph, src, dst,
                                                   at_point):
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    _killed(src, dst, volume, 'manager.retired', at_point)
    fx.make_volume(ceph, size_mib=8, name=volume.name)
    before = (sorted(_pool(ceph, 'hdd')), _dst_names(ceph, dst))

    with pytest.raises(exception.MigrationError, match='both under'):
        manager.recover(None, volume, src, dst)
    assert (sorted(_pool(ceph, 'hdd')), _dst_names(ceph, dst)) == before


def test_a_volume_nowhere_is_not_found(ceph, src, dst):
    volume = fx.objects.Volume(size=1)
    with pytest.raises(exception.VolumeNotFound):
        manager.recover(None, volume, src, dst)


def test_a_backend_that_cannot_answer_changes_nothing(ceph, src, dst,
                                                      at_point):
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    _killed(src, dst, volume, 'manager.retired', at_point)
    before = (sorted(_pool(ceph, 'hdd')), _dst_names(ceph, dst))
    ceph.fail('Image', ceph.rbd.Error('timed out'))

    with pytest.raises(exception.MigrationError, match='could not say'):
        manager.recover(None, volume, src, dst)
    assert (sorted(_pool(ceph, 'hdd')), _dst_names(ceph, dst)) == before
