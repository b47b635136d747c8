"""``manager.migrate`` killed anywhere in its generic copy: it keeps no
record, and ``manager.recover`` puts the volume back in one place."""

import os

import pytest

from rbdmig import exception
from rbdmig.migration import manager
from rbdmig.migration import phases
from rbdmig.migration import progress
from rbdmig.migration import unrecorded
from tests.unit import rbd_fixtures as fx
from tests.unit import test_file_driver as files

DATA = os.urandom(3 << 20)  # 3 MiB: the copy reports progress midway
RETIRED = '.rbdmig-generic.retired'


class Killed(BaseException):
    """A SIGKILL, in process: nothing of the code's own cleanup runs
    (:func:`_killed` makes its cleanup do nothing)."""


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
    with pytest.MonkeyPatch.context() as patch:
        # The move's cleanup runs on any BaseException: a kill runs none.
        for cleanup in ('_give_back', '_discard'):
            patch.setattr(manager, cleanup, lambda *args: None)
        with pytest.raises(Killed):
            manager.migrate(None, volume, src, dst, callback=callback)
    at_point.clear()


def _source_only(ceph, src, dst, volume):
    """The volume is its source, under its name, whole; nothing else."""
    assert sorted(_pool(ceph, 'hdd')) == [volume.name]
    assert _read(src, volume, len(DATA)) == DATA
    assert _dst_names(ceph, dst) == []


# In the fake, librbd's removal is killed before it removes anything:
# the source is whole, under its retired name.  (Real librbd moves it to
# the trash first: tests/functional/test_generic_copy.py kills it there.)
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

    found = manager.recover(volume, src, dst)

    assert found.decision == (phases.RESTORE if retired
                              else phases.ROLL_BACK)
    assert found.volume is volume and not found.kept
    assert any('copy' in line for line in found.done)
    assert any('name' in line for line in found.done) is retired
    _source_only(ceph, src, dst, volume)
    # Nothing is left in the way: recovering again finds nothing, and
    # the volume moves.
    assert manager.recover(volume, src, dst) == unrecorded.Recovery(
        phases.RELEASE, volume)
    moved = manager.migrate(None, volume, src, dst)
    assert moved.path == 'generic'
    assert _read(dst, moved.volume, len(DATA)) == DATA
    assert list(_pool(ceph, 'hdd')) == []


def test_a_copy_sized_by_a_record_larger_than_its_image_goes(
        ceph, src, dst, at_point):
    # The image holds 8 MiB, its record says 1 GiB: the move sized its
    # copy by the record, and the copy's tail reads as zeros.
    volume = fx.make_volume(ceph, data=DATA, size_mib=8)
    _killed(src, dst, volume, 'manager.retired', at_point)

    found = manager.recover(volume, src, dst)

    assert found.decision == phases.RESTORE and not found.kept, found
    _source_only(ceph, src, dst, volume)


def test_a_copy_holding_data_past_its_source_s_end_is_kept(
        ceph, src, dst, at_point):
    volume = fx.make_volume(ceph, data=DATA, size_mib=8)
    _killed(src, dst, volume, 'manager.retired', at_point)
    handle = dst.open_volume(None, volume, 'r+b')
    try:
        handle.seek(100 << 20)
        handle.write(b'theirs')
    finally:
        dst.close_volume(None, volume, handle)

    found = manager.recover(volume, src, dst)

    assert found.decision == phases.RESTORE
    assert 'at byte %d' % (100 << 20) in found.kept[0]
    assert _dst_names(ceph, dst) != []
    assert _read(src, volume, len(DATA)) == DATA


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


def test_a_source_another_move_retired_is_not_given_back(ceph, src, dst,
                                                         at_point):
    # Two moves of one volume at once: the other retired the source
    # during this one's copy.  This one must not rename it back (the
    # other may be removing it, and would then report a move the source
    # outlived): its own copy goes, nothing else changes.
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    at_point['manager.copied'] = lambda: src.rename_volume(
        volume, volume.name + RETIRED)

    with pytest.raises(exception.MigrationError, match='another migration'):
        manager.migrate(None, volume, src, dst)

    assert sorted(_pool(ceph, 'hdd')) == [volume.name + RETIRED]
    assert _dst_names(ceph, dst) == []


def test_a_move_killed_once_its_source_went_completes(ceph, src, dst,
                                                      at_point):
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    _killed(src, dst, volume, 'manager.checked', at_point)
    # What the removal, begun next, leaves: no source under either name.
    src.delete_volume(fx.objects.Volume(name=volume.name + RETIRED,
                                        size=1))

    found = manager.recover(volume, src, dst)

    assert found.decision == phases.COMPLETE
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

    found = manager.recover(volume, src, dst)

    assert found.decision == phases.RESTORE
    assert len(found.kept) == 1
    assert 'at byte %d' % (5 << 20) in found.kept[0]
    assert sorted(_pool(ceph, 'hdd')) == [volume.name]
    assert _read(src, volume, len(DATA)) == DATA
    assert _dst_names(ceph, dst) != []


def test_a_copy_of_another_size_is_kept(ceph, src, dst):
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    dst.create_volume(fx.objects.Volume(name=volume.name, size=2))

    found = manager.recover(volume, src, dst)

    assert found.decision == phases.ROLL_BACK and not found.done
    assert 'bytes' in found.kept[0]
    assert _dst_names(ceph, dst) != []
    assert sorted(_pool(ceph, 'hdd')) == [volume.name]


def test_an_untouched_volume_has_nothing_to_recover(ceph, src, dst):
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)

    found = manager.recover(volume, src, dst)

    assert found == unrecorded.Recovery(phases.RELEASE, volume)
    _source_only(ceph, src, dst, volume)


def test_two_volumes_under_the_source_s_names_change_nothing(
        ceph, src, dst, at_point):
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    _killed(src, dst, volume, 'manager.retired', at_point)
    fx.make_volume(ceph, size_mib=8, name=volume.name)
    before = (sorted(_pool(ceph, 'hdd')), _dst_names(ceph, dst))

    with pytest.raises(exception.MigrationError,
                       match='two distinct volumes'):
        manager.recover(volume, src, dst)
    assert (sorted(_pool(ceph, 'hdd')), _dst_names(ceph, dst)) == before


def test_a_volume_nowhere_is_not_found(ceph, src, dst):
    volume = fx.objects.Volume(size=1)
    with pytest.raises(exception.VolumeNotFound):
        manager.recover(volume, src, dst)


def test_a_backend_that_cannot_answer_changes_nothing(ceph, src, dst,
                                                      at_point):
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    _killed(src, dst, volume, 'manager.retired', at_point)
    before = (sorted(_pool(ceph, 'hdd')), _dst_names(ceph, dst))
    ceph.fail('Image', ceph.rbd.Error('timed out'))

    with pytest.raises(exception.MigrationError, match='could not say'):
        manager.recover(volume, src, dst)
    assert (sorted(_pool(ceph, 'hdd')), _dst_names(ceph, dst)) == before


# -- the destination given is the source's own storage ------------------


def test_a_destination_on_the_source_s_own_pool_removes_nothing(ceph, src):
    # Another driver of the same pool: "its copy" is the source itself.
    volume = fx.make_volume(ceph, data=DATA, size_mib=1024)
    same = fx.make_driver(ceph, pool='hdd', backend='same')

    for dst in (same, src):
        with pytest.raises(exception.MigrationError,
                           match='holds the source itself'):
            manager.recover(volume, src, dst)
        assert sorted(_pool(ceph, 'hdd')) == [volume.name]
        assert _read(src, volume, len(DATA)) == DATA


def _file_volume(drv, data=DATA):
    volume = fx.objects.Volume(size=1)
    drv.create_volume(volume)
    with open(drv.local_path(volume), 'r+b') as f:
        f.write(data)
    return volume


def test_a_destination_on_the_source_s_own_directory_removes_nothing(
        tmp_path):
    one, other = files.make_driver(tmp_path), files.make_driver(tmp_path)
    for drv in (one, other):
        drv.do_setup(None)
    volume = _file_volume(one)

    with pytest.raises(exception.MigrationError,
                       match='holds the source itself'):
        manager.recover(volume, one, other)
    assert _read(one, volume, len(DATA)) == DATA


# -- a file backend's source ---------------------------------------------


@pytest.fixture
def file_src(tmp_path):
    drv = files.make_driver(tmp_path / 'src')
    drv.do_setup(None)
    return drv


def test_a_file_source_killed_retired_is_refused_then_restored(
        ceph, file_src, at_point):
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = _file_volume(file_src)
    _killed(file_src, dst, volume, 'manager.checked', at_point)

    # The file backend cannot tell a client from a missing file: the
    # retired source is what refuses the move.
    with pytest.raises(exception.MigrationRefused, match='recover'):
        manager.migrate(None, volume, file_src, dst)

    found = manager.recover(volume, file_src, dst)

    assert found.decision == phases.RESTORE and not found.kept
    assert sorted(os.listdir(file_src.volume_dir)) == [volume.name]
    assert _read(file_src, volume, len(DATA)) == DATA
    assert sorted(_pool(ceph, 'ssd')) == []


def test_a_rename_cut_short_on_one_file_is_finished(ceph, file_src):
    # Killed between the hard link and the unlink: two names, one file.
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = _file_volume(file_src)
    os.link(file_src.local_path(volume),
            os.path.join(file_src.volume_dir, volume.name + RETIRED))

    found = manager.recover(volume, file_src, dst)

    assert found.decision == phases.RESTORE
    assert 'cut short' in found.done[0]
    assert sorted(os.listdir(file_src.volume_dir)) == [volume.name]
    assert _read(file_src, volume, len(DATA)) == DATA
