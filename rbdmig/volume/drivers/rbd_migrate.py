"""Assisted migration between pools of one cluster: check, copy, verify."""

import contextlib
import time

from oslo_log import log as logging
from oslo_utils import encodeutils
from oslo_utils import units

from rbdmig import exception
from rbdmig.migration import progress
from rbdmig.volume.drivers import rbd_location
from rbdmig.volume.drivers import rbd_methods

LOG = logging.getLogger(__name__)

# The statuses cinder lets reach a driver's migrate_volume.
ALLOWED_STATUSES = ('available', 'retyping', 'maintenance', 'in-use')


class _Refusal(Exception):
    """Raised inside this module when the move cannot be done safely."""


def migrate(drv, volume, host, callback):
    """Run :meth:`RBDDriver.migrate_volume`; see there."""
    try:
        dest = _destination(volume, host)
        with contextlib.ExitStack() as stack:
            src_ioctx, dst_ioctx = _connect_both(drv, stack, dest)
            if dest.pool == drv.configuration.rbd_pool:
                LOG.info('%s is already in pool %s of this cluster; only '
                         'its host changes.', volume.name, dest.pool)
                return True, None
            if volume.status == 'in-use' or volume.volume_attachment:
                raise _Refusal('it is attached, and an attached volume '
                               'cannot change pools.')
            method = rbd_methods.method_for(drv.configuration)
            source = _inspect_source(drv, method, src_ioctx, volume.name)
            if source['snaps'] and not method.keeps_snapshots:
                method = rbd_methods.METHODS[method.snapshots_by]
            _check_name_free(drv, dst_ioctx, volume.name, dest.pool)
            _move(drv, method, source, src_ioctx, dst_ioctx, volume, dest,
                  callback)
    except _Refusal as why:
        LOG.info('Not migrating %(vol)s with the backend: %(why)s Falling '
                 'back to generic migration.',
                 {'vol': volume.id, 'why': why})
        return False, None
    return True, None


def _destination(volume, host):
    """Return the destination's LocationInfo, or refuse."""
    if volume.status not in ALLOWED_STATUSES:
        raise _Refusal('its status is %r, not one of %s.'
                       % (volume.status, ', '.join(ALLOWED_STATUSES)))
    caps = (host or {}).get('capabilities') or {}
    protocol = str(caps.get('storage_protocol', '')).lower()
    if protocol != 'ceph':
        raise _Refusal('the destination is not a Ceph backend (protocol '
                       '%r).' % caps.get('storage_protocol'))
    try:
        return rbd_location.parse_location(caps.get('location_info'))
    except exception.InvalidInput as err:
        raise _Refusal(str(err))


def _connect_both(drv, stack, dest):
    """Connect to both pools, proving they are in one cluster."""
    try:
        src_client, src_ioctx = stack.enter_context(drv._connect())
    except Exception as err:
        raise _Refusal('this backend\'s cluster cannot be reached: %s' % err)
    fsid = encodeutils.safe_decode(src_client.get_fsid())
    if fsid != dest.fsid:
        raise _Refusal('the destination is in cluster %s, this backend in '
                       '%s.' % (dest.fsid, fsid))
    try:
        dst_client, dst_ioctx = stack.enter_context(drv._connect(
            pool=dest.pool, conf=dest.ceph_conf or '', user=dest.user,
            cluster_name=dest.cluster_name))
    except drv.rados.ObjectNotFound:
        raise _Refusal('the destination pool %s does not exist.' % dest.pool)
    except Exception as err:
        raise _Refusal('the destination cannot be reached: %s' % err)
    reached = encodeutils.safe_decode(dst_client.get_fsid())
    if reached != dest.fsid:
        raise _Refusal('the destination\'s conf reaches cluster %s, not the '
                       '%s its location_info names.' % (reached, dest.fsid))
    return src_ioctx, dst_ioctx


def _inspect_source(drv, method, ioctx, name):
    """Return the source's size and snapshot names, or refuse."""
    rbd = drv.rbd
    try:
        image = rbd.Image(ioctx, name, read_only=True)
    except rbd.ImageNotFound:
        raise _Refusal('its image %s does not exist in the source pool.'
                       % name)
    with image:
        snaps = sorted(s['name'] for s in image.list_snaps())
        children = list(image.list_children2())
        watchers = list(image.watchers_list())
        size = image.size()
    if snaps and not method.keeps_snapshots and not method.snapshots_by:
        raise _Refusal('it has snapshots (%s), which method %s would drop; '
                       'use deep_copy or live.' % (', '.join(snaps),
                                                   method.name))
    if children:
        raise _Refusal('it has clones (%d) that depend on its snapshots.'
                       % len(children))
    if watchers:
        raise _Refusal('its image is open by %d client(s), so its data may '
                       'change during the copy.' % len(watchers))
    return {'size': size, 'snaps': snaps}


def _check_name_free(drv, ioctx, name, pool):
    try:
        with drv.rbd.Image(ioctx, name, read_only=True):
            pass
    except drv.rbd.ImageNotFound:
        return
    raise _Refusal('an image named %s already exists in pool %s and is '
                   'never overwritten.' % (name, pool))


def _move(drv, method, source, src_ioctx, dst_ioctx, volume, dest,
          callback):
    rbd = drv.rbd
    name = volume.name
    LOG.info('Migrating %(name)s (%(size).1f GiB) to pool %(pool)s by '
             '%(method)s.', {'name': name, 'size': source['size'] / units.Gi,
                             'pool': dest.pool, 'method': method.name})
    start = time.monotonic()
    callback = _Watched(callback)
    callback.set_size(source['size'])
    try:
        method.copy(rbd, src_ioctx, dst_ioctx, name, callback)
    except Exception as err:
        if err is callback.raised:
            raise  # the caller cancelled: its own exception, unchanged
        raise exception.MigrationError(
            volume=volume.id,
            reason='%s to pool %s failed (%s); the partial copy was removed '
                   'and the source is intact.' % (method.name, dest.pool,
                                                  err)) from err
    try:
        _verify(rbd, method, source, dst_ioctx, name)
    except Exception as err:
        try:
            method.discard(rbd, src_ioctx, dst_ioctx, name)
        except Exception:
            LOG.exception('Could not remove the unverified copy of %s in '
                          'pool %s; the source is intact.', name, dest.pool)
        raise exception.MigrationError(
            volume=volume.id, reason='the copy in pool %s did not verify: '
                                     '%s; the source is intact.'
                                     % (dest.pool, err)) from err
    callback.absolute_update(source['size'])
    copied = time.monotonic() - start
    try:
        method.remove_source(rbd, src_ioctx, dst_ioctx, name,
                             progress.DEFAULT_CALLBACK)
    except Exception:
        # The volume is complete in its new pool: the migration stands.
        LOG.exception('LEFTOVER: %(name)s was migrated to pool %(pool)s, '
                      'but removing the source from pool %(src)s failed; '
                      'remove it by hand.',
                      {'name': name, 'pool': dest.pool,
                       'src': drv.configuration.rbd_pool})
    LOG.info('Migrated %(name)s to pool %(pool)s by %(method)s in '
             '%(sec).2f s (copy %(copy).2f s).',
             {'name': name, 'pool': dest.pool, 'method': method.name,
              'sec': time.monotonic() - start, 'copy': copied})


class _Watched(progress.Callback):
    """Passes updates on to a callback, remembering what it raised."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.raised = None

    def _forward(self, update, value):
        try:
            update(value)
        except BaseException as err:
            self.raised = err
            raise

    def set_size(self, size):
        self.size = size
        self._forward(self.inner.set_size, size)

    def absolute_update(self, value):
        self.value = value
        self._forward(self.inner.absolute_update, value)

    def relative_update(self, inc):
        self.value += inc
        self._forward(self.inner.relative_update, inc)


def _verify(rbd, method, source, ioctx, name):
    """Raise unless the destination matches the source's size and snaps."""
    with rbd.Image(ioctx, name, read_only=True) as image:
        size = image.size()
        snaps = sorted(s['name'] for s in image.list_snaps())
    if size != source['size']:
        raise exception.CopyError(reason='size %d, source %d'
                                  % (size, source['size']))
    if method.keeps_snapshots and snaps != source['snaps']:
        raise exception.CopyError(reason='snapshots %s, source %s'
                                  % (snaps, source['snaps']))
