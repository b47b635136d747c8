"""A rename interrupted by a kill: no name is left behind, none is lost.

librbd renames an image in steps (``RenameRequest``): it creates
``rbd_id.<new>`` exclusively, holding the image's id; then renames the
directory's entry; then removes ``rbd_id.<old>``.  A process SIGKILLed
inside a rename leaves one of two states, which these tests build on
the sandbox object by object, exactly as those steps leave them, right
after a move killed at the crash point before (or after) its rename:

* killed before the directory moved: ``rbd_id.<new>`` exists, but the
  directory lists no ``<new>``, and librbd refuses every later create or
  rename to ``<new>`` (a fleet drain whose host was killed this way
  could never move the volume into that pool again);
* killed after: the directory lists ``<new>``, but ``rbd_id.<old>`` stays,
  through which ``<old>`` still opens (recovery then took the retired
  source for one under its name, and left it retired).

Never by a timer: the kill is a named crash point, the rest is the
objects the kill would have left.
"""

import signal
import struct

import pytest
import rados
import rbd

from rbdmig import exception
from rbdmig.ceph import images
from rbdmig.ceph import journal
from tests.functional import helpers
from tests.functional import test_faults

METHOD = 'extents'


def _id_object(ioctx, name, image_id):
    """Write ``rbd_id.<name>`` as librbd does: exclusively, the id as a
    length-prefixed string."""
    op = ioctx.create_write_op()
    try:
        op.new(rados.LIBRADOS_CREATE_EXCLUSIVE)
        op.write_full(struct.pack('<I', len(image_id)) + image_id.encode())
        ioctx.operate_write_op(op, images.ID_PREFIX + name)
    finally:
        ioctx.release_write_op(op)


def _has_object(ioctx, name):
    try:
        ioctx.stat(images.ID_PREFIX + name)
    except rados.ObjectNotFound:
        return False
    return True


def _image_id(ioctx, name):
    with rbd.Image(ioctx, name, read_only=True) as image:
        return image.id()


@pytest.fixture
def pools(ceph_cluster):
    """``{pool: ioctx}`` of both sandbox pools."""
    client = ceph_cluster.connect()
    opened = {pool: client.open_ioctx(pool) for pool in test_faults.POOLS}
    yield opened
    for ioctx in opened.values():
        ioctx.close()
    client.shutdown()


def _killed_at(ceph_cluster, point, cleanup):
    """A volume whose move was SIGKILLed at ``point``: ``(drivers,
    volume, digest, migration id)``."""
    drivers = helpers.load_drivers(ceph_cluster)
    volume, before = test_faults._new(drivers, 'ceph-a', cleanup, 24)
    child = test_faults._crash(ceph_cluster, METHOD, point, volume)
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    prefix = volume.name + '.rbdmig-'
    [migration_id] = {n[len(prefix):].split('.')[0]
                      for pool in test_faults.POOLS
                      for n in helpers.images(ceph_cluster, pool)
                      if n.startswith(prefix)}
    return drivers, volume, before, migration_id


def _recovered_and_moves_again(ceph_cluster, drivers, volume, before,
                               cleared):
    """``rbdmig recover``: the source whole under its name, the objects
    ``cleared`` (``(ioctx, name)``: ``rbd_id.<name>``) gone, nothing
    left over; then the volume moves, as any volume would."""
    code, said = test_faults._recover_cli(ceph_cluster)
    assert code == 0, said
    assert [n for ioctx, n in cleared if _has_object(ioctx, n)] == [], said
    assert test_faults._where(ceph_cluster, volume) == ['volumes-a'], said
    assert helpers.digest(drivers['ceph-a'], volume) == before
    assert test_faults._leftovers(ceph_cluster, volume) == [], said
    assert test_faults._journaled(ceph_cluster) == []
    assert drivers['ceph-a'].migrate_volume(
        None, volume, helpers.host_of(drivers['ceph-b'])) == (True, None)
    assert helpers.digest(drivers['ceph-b'], volume) == before
    return said


def test_a_copy_killed_taking_its_name_leaves_no_name_behind(
        ceph_cluster, pools, cleanup):
    drivers, volume, before, mid = _killed_at(ceph_cluster, 'engine.placed',
                                              cleanup)
    temp = journal.temp_name(volume.name, mid)
    # Killed inside the copy's rename, before the directory moved.
    _id_object(pools['volumes-b'], volume.name,
               _image_id(pools['volumes-b'], temp))

    _recovered_and_moves_again(ceph_cluster, drivers, volume, before,
                               [(pools['volumes-b'], volume.name)])


def test_a_source_killed_retiring_after_the_directory_moved_gets_its_name(
        ceph_cluster, pools, cleanup):
    drivers, volume, before, mid = _killed_at(ceph_cluster,
                                              'engine.retired', cleanup)
    retired = journal.retired_name(volume.name, mid)
    ioctx = pools['volumes-a']
    # Killed inside the retirement's rename, the directory moved, the
    # old name's id object not yet removed: the source still opens by
    # its name, though the directory lists it retired.
    _id_object(ioctx, volume.name, _image_id(ioctx, retired))
    assert images.exists(rbd, ioctx, volume.name)
    assert volume.name not in helpers.images(ceph_cluster, 'volumes-a')

    _recovered_and_moves_again(ceph_cluster, drivers, volume, before, [])


def test_a_source_killed_retiring_before_the_directory_moved_is_left_clean(
        ceph_cluster, pools, cleanup):
    drivers, volume, before, mid = _killed_at(ceph_cluster,
                                              'engine.retiring', cleanup)
    retired = journal.retired_name(volume.name, mid)
    ioctx = pools['volumes-a']
    _id_object(ioctx, retired, _image_id(ioctx, volume.name))

    _recovered_and_moves_again(ceph_cluster, drivers, volume, before,
                               [(ioctx, retired)])


def test_rename_finishes_a_rename_interrupted_either_way(ceph_cluster,
                                                         pools, cleanup):
    drivers = helpers.load_drivers(ceph_cluster)
    volume, before = test_faults._new(drivers, 'ceph-a', cleanup, 4)
    ioctx = pools['volumes-a']
    image_id = _image_id(ioctx, volume.name)
    error = rados.Error

    # Before the directory moved: rbd_id.<new> of this very image.
    _id_object(ioctx, 'renamed', image_id)
    cleanup.add('remove renamed', images.remove, rbd, ioctx, 'renamed')
    images.rename(rbd, ioctx, error, volume.name, 'renamed')
    assert 'renamed' in helpers.images(ceph_cluster, 'volumes-a')
    assert not _has_object(ioctx, volume.name)

    # After: the directory lists the new name, the old id stays.
    rbd.RBD().rename(ioctx, 'renamed', volume.name)
    _id_object(ioctx, 'renamed', image_id)
    images.rename(rbd, ioctx, error, 'renamed', volume.name)
    assert volume.name in helpers.images(ceph_cluster, 'volumes-a')
    assert not _has_object(ioctx, 'renamed')
    assert not images.exists(rbd, ioctx, 'renamed')
    assert helpers.digest(drivers['ceph-a'], volume) == before


def test_an_id_object_of_another_image_is_never_removed(ceph_cluster, pools,
                                                        cleanup):
    drivers = helpers.load_drivers(ceph_cluster)
    volume, before = test_faults._new(drivers, 'ceph-a', cleanup, 4)
    ioctx = pools['volumes-b']
    # Another image's rename (or create) under way, or its leftover: not
    # this move's to remove.  The move refuses before it copies.
    _id_object(ioctx, volume.name, 'f00dfeedbeef')
    cleanup.add('remove the stray', ioctx.remove_object,
                images.ID_PREFIX + volume.name)

    with pytest.raises(exception.MigrationRefused,
                       match='left by an interrupted rename.*rados -p '
                             'volumes-b rm rbd_id.%s' % volume.name):
        drivers['ceph-a'].migrate_volume(
            None, volume, helpers.host_of(drivers['ceph-b']))
    _id_object(pools['volumes-a'], 'other', 'f00dfeedbeef')
    cleanup.add('remove the other stray', pools['volumes-a'].remove_object,
                images.ID_PREFIX + 'other')
    with pytest.raises(rbd.ImageExists):
        images.rename(rbd, pools['volumes-a'], rados.Error, volume.name,
                      'other')

    assert _has_object(ioctx, volume.name)
    assert _has_object(pools['volumes-a'], 'other')
    assert test_faults._where(ceph_cluster, volume) == ['volumes-a']
    assert test_faults._leftovers(ceph_cluster, volume) == []
    assert helpers.digest(drivers['ceph-a'], volume) == before
