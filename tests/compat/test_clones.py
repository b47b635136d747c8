"""Cinder's clones moved by rbdmig: the parent link and its bookkeeping."""

import contextlib
import logging
import time

import pytest
import rados

from rbdmig.ceph import journal
from tests.compat import images

RBDMIG_DRIVER = 'rbdmig.cinder.driver'


@pytest.fixture(autouse=True)
def _info_logs(caplog):
    caplog.set_level(logging.INFO)


def _from_snapshot(cinder, ceph_cluster, cleanup):
    """A volume Cinder created from a snapshot of another one."""
    parent = cinder.create_volume('rbdmig-a')
    cleanup.add('delete %s' % parent.id, cinder.delete_volume, parent)
    images.fill(ceph_cluster, 'volumes-a', parent.name, extents=16)
    snapshot = cinder.create_snapshot(parent)
    cleanup.add('delete %s' % snapshot.id, _delete_snapshot, cinder,
                snapshot)
    clone = cinder.create_volume('rbdmig-a', snapshot_id=snapshot.id)

    def delete_parent():
        """What a user then does: the snapshot goes, then its volume."""
        cinder.delete_snapshot(snapshot)
        cinder.delete_volume(parent)

    return clone, ('volumes-a', parent.name, snapshot.name), delete_parent


def _from_image(cinder, ceph_cluster, cleanup):
    """A volume Cinder cloned from a Glance image's protected snapshot.

    The image as Glance stores it in RBD; the volume made as Cinder's
    create flow makes it when it can clone the image's location
    (``driver.clone_image``): a clone of ``images/<image>@snap``.
    """
    image = 'glance-%s' % images.token()
    ceph_cluster.rbd('create', '--size', '1G', '--image-feature', 'layering',
                     'images/%s' % image)
    cleanup.add('remove %s' % image, _remove_if_there, ceph_cluster,
                'images', image)
    images.fill(ceph_cluster, 'images', image, extents=16)
    ceph_cluster.rbd('snap', 'create', 'images/%s@snap' % image)
    ceph_cluster.rbd('snap', 'protect', 'images/%s@snap' % image)
    clone = cinder.new_volume_row('rbdmig-a')
    update, cloned = cinder.manager('rbdmig-a').driver.clone_image(
        cinder.ctxt, clone,
        ('rbd://%s/images/%s/snap' % (ceph_cluster.fsid, image), None),
        {'disk_format': 'raw', 'id': image}, None)
    assert cloned
    clone.update(dict(update or {}, status='available'))
    clone.save()

    def delete_parent():
        """What Glance does when the image is deleted."""
        ceph_cluster.rbd('snap', 'unprotect', 'images/%s@snap' % image)
        ceph_cluster.rbd('snap', 'rm', 'images/%s@snap' % image)
        ceph_cluster.rbd('rm', 'images/%s' % image)

    return clone, ('images', image, 'snap'), delete_parent


def _delete_snapshot(cinder, snapshot):
    """Delete a snapshot the test may have deleted already."""
    from cinder import exception
    from cinder import objects
    try:
        snapshot = objects.Snapshot.get_by_id(cinder.ctxt, snapshot.id)
    except exception.SnapshotNotFound:
        return
    cinder.delete_snapshot(snapshot)


def _remove_if_there(cluster, pool, name):
    if name in images.names(cluster, pool):
        images.remove(cluster, pool, name)


def _parent(cluster, pool, name):
    with images.opened(cluster, pool, name) as image:
        return tuple(image.parent_info())


def _anything_of(cluster, names):
    """Images, trash entries and RADOS objects naming any of ``names``.

    Every journal record and index key of rbdmig's too (the index object
    itself is the pool's).
    """
    found = []
    client = cluster.connect()
    try:
        for pool in cluster.pools:
            ioctx = client.open_ioctx(pool)
            try:
                listed = [o.key for o in ioctx.list_objects()]
                with rados.ReadOpCtx() as op:
                    keys, _ = ioctx.get_omap_vals(op, '', '', 100000)
                    with contextlib.suppress(rados.ObjectNotFound):
                        ioctx.operate_read_op(op, journal.INDEX)
                        listed += ['%s key %s' % (journal.INDEX, key)
                                   for key, _ in keys]
            finally:
                ioctx.close()
            listed += images.names(cluster, pool)
            listed += cluster.rbd('trash', 'ls', pool).split()
            found += ['%s/%s' % (pool, n) for n in listed
                      if n.startswith(journal.RECORD_PREFIX) or
                      any(name in n for name in names)]
    finally:
        client.shutdown()
    return sorted(set(found))


@pytest.mark.parametrize('make', [_from_snapshot, _from_image],
                         ids=['from-snapshot', 'from-glance-image'])
def test_a_clone_moved_in_its_cluster_keeps_its_parent(
        cinder, ceph_cluster, cleanup, caplog, make):
    clone, parent, delete_parent = make(cinder, ceph_cluster, cleanup)
    cleanup.add('delete %s' % clone.id, cinder.delete_volume, clone)
    # Its own writes over its parent's data.
    checksum = images.fill(ceph_cluster, 'volumes-a', clone.name, extents=8,
                           seed='own')
    assert _parent(ceph_cluster, 'volumes-a', clone.name) == parent

    moved = cinder.migrate(clone, 'rbdmig-b')

    assert moved.migration_status == 'success'
    assert moved.host == 'compat@rbdmig-b#rbdmig-b'
    assert clone.name not in images.names(ceph_cluster, 'volumes-a')
    assert images.digest(ceph_cluster, 'volumes-b', clone.name) == checksum
    # Still a clone of the same parent: Cinder's bookkeeping holds.
    assert _parent(ceph_cluster, 'volumes-b', clone.name) == parent
    assert [r for r in caplog.records if r.name == RBDMIG_DRIVER and
            'moving it by deep_copy, which keeps the link' in r.getMessage()]

    # Cinder deletes it, then its parent goes as it would have anyway.
    cinder.delete_volume(moved)
    delete_parent()
    assert _anything_of(ceph_cluster, (clone.name, parent[1])) == []


def test_a_clone_is_left_to_cinder_across_clusters(
        cinder, ceph_cluster, ceph_cluster2, cleanup, caplog):
    """Flattened there, its source must go through Cinder's delete."""
    clone, parent, delete_parent = _from_snapshot(cinder, ceph_cluster,
                                                  cleanup)
    cleanup.add('delete %s' % clone.id, cinder.delete_volume, clone)
    checksum = images.digest(ceph_cluster, 'volumes-a', clone.name)

    there = cinder.migrate(clone, 'other-a')

    assert there.migration_status == 'success'
    assert there.host == 'compat@other-a#other-a'
    assert [r for r in caplog.records if r.name == RBDMIG_DRIVER and
            'is a clone of %s/%s@%s' % parent in r.getMessage()]
    # Cinder's generic copy: its own delete_volume removes the source
    # (a cast, once the copy completed).
    _wait_until(lambda: clone.name not in images.names(ceph_cluster,
                                                       'volumes-a'))
    assert images.digest(ceph_cluster2, 'volumes-a', there.name) == checksum
    cinder.delete_volume(there)
    delete_parent()
    assert _anything_of(ceph_cluster, (clone.name, parent[1])) == []
    assert _anything_of(ceph_cluster2, (clone.name, there.name)) == []


def _wait_until(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError('still false after %d s' % timeout)
        time.sleep(0.2)


def test_a_volume_clone_moved_leaves_what_cinder_leaves_unmoved(
        cinder, ceph_cluster, cleanup):
    """A clone of a volume (``<clone>.clone_snap`` on its parent).

    Cinder 29's own delete of such a clone takes its fast path and skips
    ``_delete_clone_parent_refs``: the parent's ``.clone_snap`` stays,
    and the parent, deleted later, stays as ``<parent>.deleted``.  Moved
    by rbdmig, the same must be left, nothing more.
    """
    left = []
    for move in (False, True):
        parent = cinder.create_volume('rbdmig-a')
        cleanup.add('scrub %s' % parent.name, _scrub, ceph_cluster,
                    parent.name)
        cleanup.add('delete %s' % parent.id, cinder.delete_volume, parent)
        images.fill(ceph_cluster, 'volumes-a', parent.name, extents=8)
        clone = cinder.create_volume('rbdmig-a', source_volid=parent.id)
        cleanup.add('delete %s' % clone.id, cinder.delete_volume, clone)
        link = _parent(ceph_cluster, 'volumes-a', clone.name)
        assert link[1:] == (parent.name, '%s.clone_snap' % clone.name)
        if move:
            checksum = images.digest(ceph_cluster, 'volumes-a', clone.name)
            clone = cinder.migrate(clone, 'rbdmig-b')
            assert clone.migration_status == 'success'
            assert images.digest(ceph_cluster, 'volumes-b',
                                 clone.name) == checksum
            assert _parent(ceph_cluster, 'volumes-b', clone.name) == link
        cinder.delete_volume(clone)
        cinder.delete_volume(parent)
        found = _anything_of(ceph_cluster, (clone.name, parent.name))
        left.append([n.replace(parent.name, '<parent>').replace(
            clone.name, '<clone>') for n in found])
    unmoved, moved = left
    assert moved == unmoved


def _scrub(cluster, name):
    """Remove what Cinder leaves of a parent volume (``.deleted``)."""
    for pool in cluster.pools:
        for image in images.names(cluster, pool):
            if image.startswith(name):
                images.remove(cluster, pool, image)
