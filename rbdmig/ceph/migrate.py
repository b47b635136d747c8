"""Assisted migration of one image: check, copy, verify, remove the source."""

import contextlib
import dataclasses
import time

from oslo_log import log as logging
from oslo_utils import encodeutils
from oslo_utils import units

from rbdmig import exception
from rbdmig import native
from rbdmig.ceph import connection
from rbdmig.ceph import location
from rbdmig.ceph import methods
from rbdmig.ceph.methods import base
from rbdmig.migration import progress

LOG = logging.getLogger(__name__)

# The statuses cinder lets reach a driver's migrate_volume.
ALLOWED_STATUSES = ('available', 'retyping', 'maintenance', 'in-use')


class _Refusal(Exception):
    """Raised inside this module when the move cannot be done safely."""


@dataclasses.dataclass(frozen=True)
class _Source:
    size: int
    snaps: tuple


def migrate(backend, volume, host, callback=progress.DEFAULT_CALLBACK):
    """Move ``volume``'s image to the pool ``host`` names, keeping its name.

    Within one cluster by ``backend.method``; into another cluster, when
    this host reaches it through the conf in the destination's
    ``location_info``, by the ``extents`` method.

    :param backend: the source :class:`rbdmig.ceph.backend.Backend`.
    :param host: ``{'host': ..., 'capabilities': <destination stats>}``.
    :param callback: a :class:`rbdmig.migration.progress.Callback`, called
        on this thread; it may cancel by raising.
    :returns: ``(moved, model_update)``: ``(True, None)`` once the image is
        in the destination pool and the source is gone, ``(False, None)``
        whenever the move cannot be done safely (nothing was changed).
    :raises MigrationError: the copy failed; the partial destination was
        removed and the source is intact.
    """
    try:
        dest = _destination(volume, host)
        with contextlib.ExitStack() as stack:
            fsid, src_ioctx = _connect_source(backend, stack)
            dst_ioctx = _connect_destination(backend, stack, dest)
            if fsid == dest.fsid and dest.pool == backend.pool:
                LOG.info('%s is already in pool %s of this cluster; only '
                         'its host changes.', volume.name, dest.pool)
                return True, None
            if volume.status == 'in-use' or volume.volume_attachment:
                raise _Refusal('it is attached, and an attached volume '
                               'cannot change pools.')
            method = _method(backend, fsid != dest.fsid)
            source = _inspect_source(backend, src_ioctx, volume.name)
            method = _method_for_snapshots(method, source,
                                           fsid != dest.fsid)
            _check_name_free(backend, dst_ioctx, volume.name, dest)
            move = base.Move(backend.native_rbd, src_ioctx, dst_ioctx,
                             volume.name, source.size)
            where = 'pool %s' % dest.pool
            if fsid != dest.fsid:
                where += ' of cluster %s' % dest.fsid
            _move(backend, method, move, source, volume, where, callback)
    except _Refusal as why:
        LOG.info('Not migrating %(vol)s with the backend: %(why)s Falling '
                 'back to generic migration.',
                 {'vol': volume.id, 'why': why})
        return False, None
    return True, None


def _destination(volume, host):
    """Return the destination's LocationInfo, or refuse.

    Everything the caller handed over is checked here, before anything
    is connected to: ``host`` may be anything (see
    :func:`location.from_host`).
    """
    if volume.status not in ALLOWED_STATUSES:
        raise _Refusal('its status is %.40r, not one of %s.'
                       % (volume.status, ', '.join(ALLOWED_STATUSES)))
    try:
        return location.from_host(host)
    except exception.InvalidInput as err:
        raise _Refusal(str(err))


def _connect_source(backend, stack):
    try:
        client, ioctx = stack.enter_context(backend.connect())
    except exception.RbdmigError as err:
        raise _Refusal('this backend\'s cluster cannot be reached: %s' % err)
    return encodeutils.safe_decode(client.get_fsid()), ioctx


def _connect_destination(backend, stack, dest):
    """Connect to the destination pool as its location_info says.

    The destination's conf and user come from its location_info; when
    they are this backend's own, so is the keyring.  The cluster reached
    must be the one location_info names.
    """
    address = connection.Address(dest.cluster_name or 'ceph',
                                 dest.ceph_conf or '', dest.user)
    own = backend.address
    if (address.conf, address.user) == (own.conf, own.user):
        address = own
    try:
        client, ioctx = stack.enter_context(
            backend.connect(pool=dest.pool, address=address))
    except exception.PoolNotFound:
        raise _Refusal('the destination pool %s does not exist.' % dest.pool)
    except exception.RbdmigError as err:
        raise _Refusal('the destination cannot be reached: %s' % err)
    reached = encodeutils.safe_decode(client.get_fsid())
    if reached != dest.fsid:
        raise _Refusal('the destination\'s conf reaches cluster %s, not the '
                       '%s its location_info names.' % (reached, dest.fsid))
    return ioctx


def _method(backend, other_cluster):
    method = methods.get(backend.method, backend.queue_depth,
                         backend.chunk_size)
    if other_cluster and not method.crosses_clusters:
        LOG.info('Method %(method)s cannot copy into another cluster; '
                 'using %(cross)s.', {'method': method.name,
                                      'cross': methods.CROSS_CLUSTER})
        method = methods.get(methods.CROSS_CLUSTER, backend.queue_depth,
                             backend.chunk_size)
    return method


def _method_for_snapshots(method, source, other_cluster):
    if not source.snaps or method.keeps_snapshots:
        return method
    snaps = ', '.join(source.snaps)
    if other_cluster:
        raise _Refusal('it has snapshots (%s), and no method moves '
                       'snapshots into another cluster.' % snaps)
    if not method.snapshots_by:
        raise _Refusal('it has snapshots (%s), which method %s would drop; '
                       'use deep_copy or live.' % (snaps, method.name))
    return methods.get(method.snapshots_by)


def _inspect_source(backend, ioctx, name):
    """Return the source's size and snapshot names, or refuse."""
    rbd = backend.native_rbd
    try:
        with rbd.Image(ioctx, name, read_only=True) as image:
            snaps = tuple(sorted(s['name'] for s in image.list_snaps()))
            children = list(image.list_children2())
            watchers = list(image.watchers_list())
            features = image.features()
            size = image.size()
    except rbd.ImageNotFound:
        raise _Refusal('its image %s does not exist in the source pool.'
                       % name)
    except rbd.Error as err:
        raise _Refusal('its image %s cannot be inspected: %s' % (name, err))
    if children:
        raise _Refusal('it has clones (%d) that depend on its snapshots.'
                       % len(children))
    if watchers:
        raise _Refusal('its image is open by %d client(s), so its data may '
                       'change during the copy.' % len(watchers))
    if features & backend.rbd.RBD_FEATURE_JOURNALING:
        raise _Refusal('it has journaling enabled (RBD mirroring), which a '
                       'copy would not carry over.')
    return _Source(size=size, snaps=snaps)


def _check_name_free(backend, ioctx, name, dest):
    rbd = backend.native_rbd
    try:
        with rbd.Image(ioctx, name, read_only=True):
            pass
    except rbd.ImageNotFound:
        return
    except rbd.Error as err:
        raise _Refusal('the destination pool %s cannot be checked for an '
                       'image named %s: %s' % (dest.pool, name, err))
    raise _Refusal('an image named %s already exists in pool %s and is '
                   'never overwritten.' % (name, dest.pool))


def _move(backend, method, move, source, volume, where, callback):
    rbd = move.rbd
    LOG.info('Migrating %(name)s (%(size).1f GiB) to %(where)s by '
             '%(method)s.', {'name': move.name, 'size': source.size /
                             units.Gi, 'where': where,
                             'method': method.name})
    start = time.monotonic()
    relay = native.ProgressRelay(callback)
    try:
        method.copy(move, relay)
    except rbd.ImageExists:
        raise _Refusal('an image named %s appeared in %s before the copy '
                       'began; it was left untouched.' % (move.name, where))
    except Exception as err:
        if relay.sink.cancelled:
            raise  # the caller cancelled: its own exception, unchanged
        raise exception.MigrationError(
            volume=volume.id,
            reason='%s to %s failed (%s); the partial copy was removed and '
                   'the source is intact.' % (method.name, where, err)
        ) from err
    try:
        _verify(rbd, method, source, move)
    except Exception as err:
        try:
            method.discard(move)
        except Exception:
            LOG.exception('Could not remove the unverified copy of %s in '
                          '%s; the source is intact.', move.name, where)
        raise exception.MigrationError(
            volume=volume.id, reason='the copy in %s did not verify: %s; '
                                     'the source is intact.'
                                     % (where, err)) from err
    copied = time.monotonic() - start
    try:
        method.remove_source(move)
    except Exception:
        # The volume is complete in its new pool: the migration stands.
        LOG.exception('LEFTOVER: %(name)s was migrated to %(where)s, but '
                      'removing the source from pool %(src)s failed; remove '
                      'it by hand.', {'name': move.name, 'where': where,
                                      'src': backend.pool})
    LOG.info('Migrated %(name)s to %(where)s by %(method)s in %(sec).2f s '
             '(copy %(copy).2f s).',
             {'name': move.name, 'where': where, 'method': method.name,
              'sec': time.monotonic() - start, 'copy': copied})


def _verify(rbd, method, source, move):
    """Raise unless the destination matches the source's size and snaps."""
    with rbd.Image(move.dst_ioctx, move.name, read_only=True) as image:
        size = image.size()
        snaps = tuple(sorted(s['name'] for s in image.list_snaps()))
    if size != source.size:
        raise exception.CopyError(reason='size %d, source %d'
                                  % (size, source.size))
    if method.keeps_snapshots and snaps != source.snaps:
        raise exception.CopyError(reason='snapshots %s, source %s'
                                  % (snaps, source.snaps))
