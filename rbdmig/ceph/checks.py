"""What must hold before a move: every check that can refuse it."""

import dataclasses
import json

from oslo_log import log as logging
from oslo_utils import encodeutils
from oslo_utils import units

from rbdmig import exception
from rbdmig.ceph import connection
from rbdmig.ceph import images
from rbdmig.ceph import location
from rbdmig.ceph import methods

LOG = logging.getLogger(__name__)

# The statuses cinder lets reach a driver's migrate_volume.
ALLOWED_STATUSES = ('available', 'retyping', 'maintenance', 'in-use')


class Refusal(Exception):
    """The move cannot be done here; the message says why.

    Another backend type, no route to the destination, no method that
    can: nothing was changed, and the caller may copy the volume the
    generic way instead.
    """


class Unsafe(Refusal):
    """The volume is unsafe to copy now, by any path; the message says why.

    A client has it open, snapshots or clones would be lost, its name is
    taken in the destination, a migration of it runs already: a generic
    copy would be as wrong as this one, so the move ends here with the
    source intact (:class:`rbdmig.exception.MigrationRefused`).
    """


@dataclasses.dataclass(frozen=True)
class Source:
    """What the source image is."""

    size: int
    snaps: tuple
    features: int
    allocated: int  # bytes holding data, a parent's included
    parent: bool = False  # a clone
    data_pool: bool = False  # data objects in a pool of their own


def destination(volume, host):
    """Return the destination's LocationInfo, or refuse.

    Everything the caller handed over is checked here, before anything
    is connected to: ``host`` may be anything (see
    :func:`location.from_host`).
    """
    if volume.status not in ALLOWED_STATUSES:
        raise Refusal('its status is %.40r, not one of %s.'
                      % (volume.status, ', '.join(ALLOWED_STATUSES)))
    try:
        return location.from_host(host)
    except exception.InvalidInput as err:
        raise Refusal(str(err))


def connect_source(backend, stack):
    try:
        client, ioctx = stack.enter_context(backend.connect())
    except exception.RbdmigError as err:
        raise Refusal('this backend\'s cluster cannot be reached: %s' % err)
    return client, encodeutils.safe_decode(client.get_fsid()), ioctx


def destination_address(backend, dest):
    """How this host reaches the cluster a LocationInfo names.

    The destination's conf and user come from its location_info; when
    they are this backend's own, so is the keyring.
    """
    address = connection.Address(dest.cluster_name or 'ceph',
                                 dest.ceph_conf or '', dest.user)
    own = backend.address
    if (address.conf, address.user) == (own.conf, own.user):
        return own
    return address


def connect_destination(backend, stack, dest):
    """Connect to the destination pool; it must be the cluster named."""
    try:
        client, ioctx = stack.enter_context(backend.connect(
            pool=dest.pool, address=destination_address(backend, dest)))
    except exception.PoolNotFound:
        raise Refusal('the destination pool %s does not exist.' % dest.pool)
    except exception.RbdmigError as err:
        raise Refusal('the destination cannot be reached: %s' % err)
    reached = encodeutils.safe_decode(client.get_fsid())
    if reached != dest.fsid:
        raise Refusal('the destination\'s conf reaches cluster %s, not the '
                       '%s its location_info names.' % (reached, dest.fsid))
    return client, ioctx


def _mon_json(client, prefix, **args):
    ret, out, err = client.mon_command(
        json.dumps(dict(args, prefix=prefix, format='json')), b'')
    if ret:
        raise exception.VolumeBackendAPIException(
            data='%s failed: %s' % (prefix, err))
    return json.loads(encodeutils.safe_decode(out))


def check_room(client, pool, source, volume):
    """Fail before anything changes if the data cannot fit.

    The pool's own view: what the OSDs can still take for it
    (``max_avail``), and what its quota leaves.  The data to move is what
    the source holds, not its provisioned size.
    """
    try:
        stats = next(p['stats'] for p in _mon_json(client, 'df')['pools']
                     if p['name'] == pool)
        quota = _mon_json(client, 'osd pool get-quota',
                          pool=pool)['quota_max_bytes']
    except (exception.RbdmigError, StopIteration, KeyError) as err:
        LOG.warning('Cannot read the free space of pool %(pool)s (%(err)s); '
                    'copying without checking it.', {'pool': pool,
                                                     'err': err})
        return
    free = stats['max_avail']
    if quota:
        free = min(free, quota - stats.get('stored', stats['bytes_used']))
    if source.allocated > free:
        raise exception.MigrationError(
            volume=volume.id,
            reason='pool %s has %d MiB free (quota and OSDs), and the volume '
                   'holds %d MiB; nothing was changed.'
                   % (pool, max(0, free) // units.Mi,
                      source.allocated // units.Mi))


def choose_method(backend, other_cluster):
    method = methods.get(backend.method, backend)
    if other_cluster and not method.crosses_clusters:
        LOG.info('Method %(method)s cannot copy into another cluster; '
                 'using %(cross)s.', {'method': method.name,
                                      'cross': methods.CROSS_CLUSTER})
        method = methods.get(methods.CROSS_CLUSTER, backend)
    return method


def method_for_snapshots(method, source, other_cluster):
    """The method that moves ``source``'s snapshots too, or a refusal."""
    if not source.snaps or method.keeps_snapshots:
        return method
    snaps = ', '.join(source.snaps)
    if other_cluster:
        raise Unsafe('it has snapshots (%s), and no method moves '
                      'snapshots into another cluster.' % snaps)
    if not method.snapshots_by:
        raise Unsafe('it has snapshots (%s), which method %s would drop; '
                     'use deep_copy or live.' % (snaps, method.name))
    LOG.info('Method %(method)s cannot move it: it has snapshots '
             '(%(snaps)s); using %(other)s, which keeps them.',
             {'method': method.name, 'snaps': snaps,
              'other': method.snapshots_by})
    return methods.get(method.snapshots_by)


def inspect_source(backend, ioctx, name):
    """Return what the source is, or refuse."""
    rbd = backend.native_rbd
    try:
        with rbd.Image(ioctx, name, read_only=True) as image:
            snaps = tuple(sorted(s['name'] for s in image.list_snaps()))
            children = list(image.list_children2())
            watchers = list(image.watchers_list())
            features = image.features()
            size = image.size()
            allocated = images.allocated_bytes(backend.rbd, image, size,
                                               ioctx)
            try:
                image.parent_info()
                parent = True
            except rbd.ImageNotFound:
                parent = False
    except rbd.ImageNotFound:
        raise Refusal('its image %s does not exist in the source pool.'
                       % name)
    except rbd.Error as err:
        raise Refusal('its image %s cannot be inspected: %s' % (name, err))
    if children:
        raise Unsafe('it has clones (%d) that depend on its snapshots.'
                     % len(children))
    if watchers:
        raise Unsafe('its image is open by %d client(s), so its data may '
                     'change during the copy.' % len(watchers))
    if features & backend.rbd.RBD_FEATURE_JOURNALING:
        raise Unsafe('it has journaling enabled (RBD mirroring), which a '
                     'copy would not carry over.')
    return Source(size=size, snaps=snaps, features=features,
                   allocated=allocated, parent=parent,
                   data_pool=bool(features &
                                  backend.rbd.RBD_FEATURE_DATA_POOL))


def substitute(method, source, backend):
    """The method that can move ``source``: ``method``, or its stand-in."""
    while True:
        stand_in = method.substitute(source)
        if stand_in is None:
            return method
        LOG.info('Method %(method)s cannot move it: %(why)s; using '
                 '%(other)s.', {'method': method.name, 'why': stand_in[1],
                                'other': stand_in[0]})
        method = methods.get(stand_in[0], backend)


def check_name_free(backend, ioctx, name, dest):
    rbd = backend.native_rbd
    try:
        with rbd.Image(ioctx, name, read_only=True):
            pass
    except rbd.ImageNotFound:
        pass
    except rbd.Error as err:
        raise Refusal('the destination pool %s cannot be checked for an '
                       'image named %s: %s' % (dest.pool, name, err))
    else:
        raise Unsafe('an image named %s already exists in pool %s and is '
                     'never overwritten.' % (name, dest.pool))
    try:
        stray = images.stray_name(rbd, ioctx, backend.rados.Error, name)
    except (rbd.Error, backend.rados.Error) as err:
        raise Refusal('the destination pool %s cannot be checked for an '
                      'image named %s: %s' % (dest.pool, name, err))
    if stray is not None:
        # librbd creates rbd_id.<name> exclusively for a create and a
        # rename alike: the copy could never take the name.
        raise Unsafe(
            'pool %(pool)s holds the object %(obj)s, left by an '
            'interrupted rename (it names image id %(id)s, and no image '
            'in the pool is named %(name)s), so librbd would refuse the '
            'name to the copy.  Once no one is creating an image named '
            '%(name)s there, remove it ("rados -p %(pool)s rm %(obj)s") '
            'and migrate again.' % {'pool': dest.pool, 'name': name,
                                    'id': stray,
                                    'obj': images.ID_PREFIX + name})
