"""RBDDriver: Ceph RBD volumes, stats, location_info and migration."""

import contextlib
import json
import math
import threading
import time

from oslo_log import log as logging
from oslo_utils import encodeutils
from oslo_utils import units

from rbdmig import exception
from rbdmig import faults
from rbdmig import native
from rbdmig import objects
from rbdmig import redact
from rbdmig.ceph import connection
from rbdmig.ceph import images
from rbdmig.ceph import journal
from rbdmig.ceph import limits
from rbdmig.ceph import location
from rbdmig.ceph import migrate
from rbdmig.ceph import opts as ceph_opts
from rbdmig.ceph import recover
from rbdmig.migration import progress
from rbdmig.volume import driver
from rbdmig.volume import rbd_io
from rbdmig.volume.drivers import rbd_opts

try:
    import rados
    import rbd
except ImportError:
    rados = None
    rbd = None

from os_brick.initiator import linuxrbd

LOG = logging.getLogger(__name__)


def _removing(done, total):
    """librbd's progress while removing an image: a crash point.

    librbd removes the data objects first and the header last, so a
    process killed here leaves an image partly removed, still listed.
    """
    faults.point('rbd.remove')
    return 0


def _migration_tag(image):
    """The id of the migration whose copy ``image`` is, or None."""
    try:
        return image.metadata_get(journal.TAG)
    except KeyError:  # librbd's answer for a key the image lacks
        return None


RBD_OPTS = rbd_opts.RBD_OPTS


class RBDDriver(driver.VolumeDriver):
    """Volumes as RBD images; assisted migration between pools.

    Version history:

    * 1.0.0 - stats with location_info, lifecycle, file-like handles and
      assisted migration by copy, clone_flatten, deep_copy or live.
    * 1.1.0 - assisted migration by extents (librbd async I/O over the
      allocated extents; the default), ``rbd_concurrent_management_ops``;
      handles read and write at offsets for the threaded generic copy.
    * 1.2.0 - ``volume_in_use`` (watchers); handles zero ranges with
      ``write_zeroes`` for copies onto used volumes; names librbd cannot
      take whole are refused (:mod:`rbdmig.ceph.limits`).
    * 1.3.0 - ``rename_volume`` (the generic copy retires its source
      before its last check) and ``uncopied_parts`` (snapshots and
      clones, which the generic copy refuses to leave behind).
    """

    VERSION = '1.3.0'
    STORAGE_PROTOCOL = 'ceph'
    OPTS = RBD_OPTS
    # A new image has no objects: every block reads as zeros.
    CREATES_ZEROED_VOLUMES = True
    RENAMES_VOLUMES = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Injectable, as in os-brick, so unit tests never touch sys.modules.
        self.rados = kwargs.get('rados', rados)
        self.rbd = kwargs.get('rbd', rbd)
        self._sleep = kwargs.get('sleep', time.sleep)
        # librbd images and RBD() calls on native threads under eventlet.
        self._rbd = native.Module(self.rbd, ('Image', 'RBD'))
        self.recovered = []
        # A connection.Shared while sharing_connections blocks run.
        self._shared, self._sharers = None, 0
        self._sharing_lock = threading.Lock()

    # -- set-up ---------------------------------------------------------------

    def do_setup(self, context):
        """Check the options and the bindings; recover migrations.

        Interrupted migrations are finished or undone; the outcomes are
        kept in :attr:`recovered` (the CLI prints them).
        """
        super().do_setup(context)
        if self.rados is None or self.rbd is None:
            raise exception.InvalidConfiguration(
                reason='the rados and rbd Python modules are missing; '
                       'install python3-rados and python3-rbd.')
        self.recovered = self.recover_migrations()

    def recover_migrations(self, any_host=False):
        """Finish or undo the migrations a dead process left journaled.

        Undone while the source is whole, finished once the source was
        being removed (see :func:`rbdmig.ceph.recover.recover`).  A
        failure is logged, not raised: it must not stop the backend.

        :returns: the list of :class:`rbdmig.ceph.recover.Outcome`.
        """
        try:
            return recover.recover(self.backend(), any_host=any_host)
        except exception.RbdmigError as err:
            LOG.warning('Cannot read the migration journal of %(name)s: '
                        '%(err)s', {'name': self._backend_name(),
                                    'err': err})
            return []

    def check_for_setup_error(self):
        """Raise InvalidConfiguration unless the backend can work."""
        chunk = self.configuration.rbd_store_chunk_size
        # librbd's objects are 4 KiB to 32 MiB (orders 12 to 25).
        if chunk & (chunk - 1) or chunk > 32:
            raise exception.InvalidConfiguration(
                reason='rbd_store_chunk_size %d is not a power of two from '
                       '1 to 32 (MiB).' % chunk)
        for name in rbd_opts.C_STRING_OPTS:
            if limits.has_control(getattr(self.configuration, name) or ''):
                raise exception.InvalidConfiguration(
                    reason='%s holds a control character (NUL, newline...).'
                           % name)
        with self._connect() as (client, ioctx):
            fsid = client.get_fsid()
        location_info = self._location_info(fsid)
        try:
            location.parse_location(location_info)
        except exception.InvalidInput as err:
            LOG.warning('Backend %(name)s cannot be a destination of '
                        'assisted migration: %(err)s',
                        {'name': self._backend_name(), 'err': err})

    # -- connections --

    def backend(self):
        """Return this backend as :mod:`rbdmig.ceph` sees it, options now.

        The demo and tests change options between calls, so it is built
        afresh each time (it is cheap).
        """
        cfg_ = self.configuration
        address = connection.Address(
            cluster_name=cfg_.rbd_cluster_name, conf=cfg_.rbd_ceph_conf,
            user=cfg_.rbd_user, keyring=cfg_.rbd_keyring_conf or None)
        return ceph_opts.make_backend(cfg_, self._backend_name(), address,
                                      self.rados, self.rbd, sleep=self._sleep,
                                      shared=self._shared)

    @contextlib.contextmanager
    def sharing_connections(self, *others):
        """Within this block, one client per cluster serves every call
        of this driver, and of ``others`` that are drivers of this kind
        (the rest are left as they are).

        For a drain's many moves (:meth:`rbdmig.migration.service.
        Service.drain`) and for one move's checks and copy (its source
        and destination drivers, most often of one cluster): each check
        and move connected anew, a good part of a small volume's cost.
        Every check still runs; only the connection is kept.  Blocks may
        overlap (two drains on one driver): the clients are shut down
        when the last block using them ends.  A driver already sharing
        keeps its own clients.
        """
        drivers = [self] + [d for d in others
                            if isinstance(d, RBDDriver) and d is not self]
        offered = None
        with contextlib.ExitStack() as stack:
            for drv in dict.fromkeys(drivers):
                offered = drv._join_sharing(offered)
                stack.callback(drv._leave_sharing)
            yield

    def _join_sharing(self, offered):
        """Share ``offered`` (or a new one) unless already sharing; return
        the :class:`connection.Shared` this driver now uses."""
        with self._sharing_lock:
            if self._shared is None:
                self._shared = offered or connection.Shared()
            self._sharers += 1
            return self._shared.hold()

    def _leave_sharing(self):
        with self._sharing_lock:
            shared = self._shared
            self._sharers -= 1
            if not self._sharers:
                self._shared = None
        shared.release()

    def _connect(self, pool=None):
        """Connect to this backend's cluster; see ``Backend.connect``."""
        return self.backend().connect(pool=pool)

    # -- stats --

    def _location_info(self, fsid):
        cfg_ = self.configuration
        return location.format_location(
            cfg_.rbd_cluster_name, cfg_.rbd_ceph_conf, fsid, cfg_.rbd_user,
            cfg_.rbd_pool)

    def _update_volume_stats(self):
        super()._update_volume_stats()
        stats = self._stats
        stats.update(vendor_name='Open Source',
                     storage_protocol=self.STORAGE_PROTOCOL,
                     thin_provisioning_support=True,
                     multiattach=False,
                     backend_state='down',
                     **ceph_opts.capabilities(self.configuration))
        try:
            with self._connect(pool='') as (client, _):
                fsid = encodeutils.safe_decode(client.get_fsid())
                free, total = self._pool_capacity(client)
        except (exception.RbdmigError, self.rados.Error) as err:
            # librados' own errors are not masked as rbdmig's are.
            LOG.warning('Cannot read stats of %(name)s: %(err)s',
                        {'name': self._backend_name(),
                         'err': redact.mask(err)})
            return
        stats.update(location_info=self._location_info(fsid),
                     free_capacity_gb=free, total_capacity_gb=total,
                     backend_state='up')

    def _mon_json(self, client, command):
        ret, out, err = client.mon_command(
            json.dumps(dict(command, format='json')), b'')
        if ret:
            raise exception.VolumeBackendAPIException(
                data='%s failed: %s' % (command['prefix'], err))
        return json.loads(encodeutils.safe_decode(out))

    def _pool_capacity(self, client):
        """Return ``(free_gb, total_gb)`` of the pool, honouring a quota."""
        pool = self.configuration.rbd_pool
        df = self._mon_json(client, {'prefix': 'df'})
        stats = [p['stats'] for p in df['pools'] if p['name'] == pool]
        if not stats:
            raise exception.VolumeBackendAPIException(
                data='pool %s does not exist' % pool)
        used = stats[0].get('stored', stats[0].get('bytes_used', 0))
        free = stats[0]['max_avail']
        total = free + used
        quota = self._mon_json(client, {'prefix': 'osd pool get-quota',
                                        'pool': pool})['quota_max_bytes']
        if quota:
            total = quota
            free = max(0, min(quota - used, free))
        return round(free / units.Gi, 2), round(total / units.Gi, 2)

    # -- lifecycle --

    def create_volume(self, volume):
        """Create the volume's image, thin.

        :raises InvalidVolume: its name cannot name an RBD image.
        :raises VolumeExists: an image of that name is already there.
        """
        name = limits.check_image_name(volume.name)
        size = limits.image_bytes(objects.check_size(volume.size))
        order = int(math.log2(self.configuration.rbd_store_chunk_size)) + 20
        with self._connect() as (client, ioctx):
            try:
                self._rbd.RBD().create(ioctx, name, size, order=order)
            except self.rbd.ImageExists:
                raise exception.VolumeExists(name=name)
            except self.rbd.InvalidArgument as err:
                # Measured: librbd refuses 1 PiB and more (EINVAL) when
                # the object map could not cover the image.
                raise exception.InvalidVolume(
                    reason='librbd refused to create %.40r of %d GiB in '
                           '%d MiB objects (%s).' % (
                               name, volume.size,
                               self.configuration.rbd_store_chunk_size, err))
        return None

    def delete_volume(self, volume):
        """Delete the image; an image that is already gone is success.

        :raises InvalidVolume: its name cannot name an RBD image (a name
            librbd would cut short would delete another image).
        """
        limits.check_image_name(volume.name)
        with self._connect() as (client, ioctx):
            try:
                self._rbd.RBD().remove(ioctx, volume.name,
                                       on_progress=_removing)
            except self.rbd.ImageNotFound:
                LOG.info('Volume %s is already gone.', volume.name)
            except self.rbd.ImageHasSnapshots:
                raise exception.InvalidVolume(
                    reason='%s has snapshots; delete them first.'
                           % volume.name)
            except self.rbd.ImageBusy:
                raise exception.InvalidVolume(
                    reason='%s is in use by a client.' % volume.name)

    def extend_volume(self, volume, new_size):
        """Grow the image to ``new_size`` GiB.

        :raises InvalidInput: ``new_size`` is not a whole number of GiB,
            or smaller than the volume.
        """
        limits.check_image_name(volume.name)
        objects.check_size(new_size, 'the new size')
        if new_size < volume.size:
            raise exception.InvalidInput(
                reason='cannot shrink %s from %d to %d GiB.' % (
                    volume.name, volume.size, new_size))
        size = limits.image_bytes(new_size)
        with self._connect() as (client, ioctx):
            with self._rbd.Image(ioctx, volume.name) as image:
                try:
                    image.resize(size)
                except self.rbd.InvalidArgument as err:
                    raise exception.InvalidVolume(
                        reason='librbd refused to grow %.40r to %d GiB '
                               '(%s).' % (volume.name, new_size, err))

    def volume_identity(self, volume):
        """The cluster's fsid, the pool's id, the image's id.

        :raises VolumeNotFound: no image has the volume's name.
        """
        limits.check_image_name(volume.name)
        with self._connect() as (client, ioctx):
            try:
                with self._rbd.Image(ioctx, volume.name,
                                     read_only=True) as image:
                    image_id = image.id()
            except self.rbd.ImageNotFound:
                raise exception.VolumeNotFound(name=volume.name)
            return ('rbd', encodeutils.safe_decode(client.get_fsid()),
                    ioctx.get_pool_id(), image_id)

    def rename_volume(self, volume, new_name):
        """Rename the image; librbd never renames over another.

        Clients that have it open keep it (librbd addresses an open
        image by its id); new ones cannot open it by its old name.

        :raises VolumeNotFound: no image has the volume's name.
        :raises VolumeExists: an image is named ``new_name`` already.
        :raises InvalidVolume: either name cannot name an RBD image.
        """
        limits.check_image_name(volume.name)
        limits.check_image_name(new_name)
        with self._connect() as (client, ioctx):
            try:
                images.rename(self._rbd, ioctx, self.rados.Error,
                              volume.name, new_name)
            except self.rbd.ImageNotFound:
                raise exception.VolumeNotFound(name=volume.name)
            except self.rbd.ImageExists:
                raise exception.VolumeExists(name=new_name)
        LOG.info('Renamed %(old)s to %(new)s in pool %(pool)s.',
                 {'old': volume.name, 'new': new_name,
                  'pool': self.configuration.rbd_pool})

    def fence_writers(self, volume):
        """Break every lock on the image that this process's client does not
        hold, blocklisting its holder; return the holders' addresses.

        For the copy of a migration taken over from a process found gone:
        the image's exclusive lock is still its, and librbd's first write
        here would wait for its watch to lapse (the OSDs'
        ``osd_client_watch_timeout``, 30 s) before breaking it; and a
        process thought gone that is not could still write.  librbd's
        ``lock_break``, as ``rbd lock rm`` does, blocklists the holder
        (``rbd_blocklist_on_break_lock``): it can write nowhere in the
        cluster any more.  Likewise for a retired source whose remover
        was killed inside librbd's removal: half-removed, the image no
        longer opens by name, but by the id the directory lists it does,
        and librbd's next removal would wait on that remover's lock.

        :raises VolumeNotFound: the image does not exist.
        :raises InvalidVolume: its name cannot name an RBD image.
        """
        limits.check_image_name(volume.name)
        with self._connect() as (client, ioctx):
            ours = client.get_addrs()
            try:
                with images.open_listed(self._rbd, ioctx,
                                        volume.name) as image:
                    return images.break_locks(image, ours, volume.name,
                                              self.configuration.rbd_pool)
            except self.rbd.ImageNotFound:
                raise exception.VolumeNotFound(name=volume.name)

    # -- connections for hosts --

    def initialize_connection(self, volume, connector):
        """Return connection info os-brick's RBD connector accepts.

        It carries no keyring: users can read connection info, so the
        host's keyring is os-brick's to find (OSSN-0085), as with
        Cinder's own driver.
        """
        cfg_ = self.configuration
        limits.check_image_name(volume.name)
        with self._connect(pool='') as (client, _):
            monmap = self._mon_json(client, {'prefix': 'mon dump'})
        hosts, ports = [], []
        for mon in monmap['mons']:
            addrs = mon.get('public_addrs', {}).get('addrvec', [])
            # os-brick writes bare host:port.  librados 16.2 reads port
            # 6789 as v1 and reaches a v1-only mon on another port too
            # (tests/compat: the sandbox's mon, through os-brick).
            addr = next((a['addr'] for a in addrs if a['type'] == 'v1'),
                        mon.get('addr', '').split('/')[0])
            host, port = addr.rsplit(':', 1)
            hosts.append(host.strip('[]'))
            ports.append(port)
        data = {'name': '%s/%s' % (cfg_.rbd_pool, volume.name),
                'hosts': hosts, 'ports': ports,
                'cluster_name': cfg_.rbd_cluster_name,
                'auth_enabled': bool(cfg_.rbd_user),
                'auth_username': cfg_.rbd_user,
                'secret_type': 'ceph', 'secret_uuid': cfg_.rbd_secret_uuid,
                'volume_id': volume.id, 'discard': True}
        return {'driver_volume_type': 'rbd', 'data': data}

    # -- handles --

    def open_volume(self, context, volume, mode='rb'):
        """Return an :class:`rbdmig.volume.rbd_io.RBDHandle` on the image."""
        if mode not in rbd_io.MODES:
            raise exception.InvalidInput(
                reason='mode %r is not one of %s.'
                       % (mode, ', '.join(rbd_io.MODES)))
        limits.check_image_name(volume.name)
        with contextlib.ExitStack() as stack:
            client, ioctx = stack.enter_context(self._connect())
            try:
                image = self._rbd.Image(ioctx, volume.name,
                                        read_only=(mode == 'rb'))
            except self.rbd.ImageNotFound:
                raise exception.VolumeNotFound(name=volume.name)
            cfg_ = self.configuration
            meta = linuxrbd.RBDImageMetadata(
                image, cfg_.rbd_pool, cfg_.rbd_user, cfg_.rbd_ceph_conf)
            try:
                handle = rbd_io.RBDHandle(meta, mode)
            except BaseException:
                image.close()
                raise
            # The handle closes the image, then the connection.
            handle.on_close = stack.pop_all().close
            return handle

    def list_images(self):
        """The pool's images and sizes, without a migration's own copies.

        Images named ``<image>.rbdmig-<id>`` are copies in progress
        (:mod:`rbdmig.ceph.journal`), never volumes of their own.  Nor
        is an image tagged as a migration's (:data:`journal.TAG`): a
        copy placed under the volume's name, whose move a recovery
        finishes or undoes (the tag goes once the move ends).
        """
        found = []
        with self._connect() as (client, ioctx):
            for name in self._rbd.RBD().list(ioctx):
                if '.rbdmig-' in name:
                    continue
                try:
                    with self._rbd.Image(ioctx, name,
                                         read_only=True) as image:
                        size, tag = image.size(), _migration_tag(image)
                except self.rbd.ImageNotFound:
                    continue  # removed meanwhile
                if tag is not None:
                    LOG.warning('Not listing %(name)s of pool %(pool)s as '
                                'a volume: it is the copy of migration '
                                '%(tag)s (image metadata %(key)s), which '
                                '"rbdmig recover" with its source backend '
                                'configured finishes or undoes.  If no '
                                'migration holds it, remove that key '
                                '(rbd image-meta remove) and import again.',
                                {'name': name, 'tag': tag, 'key': journal.TAG,
                                 'pool': self.configuration.rbd_pool})
                    continue
                found.append((name, size))
        return sorted(found)

    def _read_image(self, volume, read):
        """``read(image)`` of the volume's image, opened read-only.

        :raises VolumeNotFound: the image does not exist.
        """
        with self._connect() as (client, ioctx):
            try:
                with self._rbd.Image(ioctx, volume.name,
                                     read_only=True) as image:
                    return read(image)
            except self.rbd.ImageNotFound:
                raise exception.VolumeNotFound(name=volume.name)

    def allocated_bytes(self, volume):
        """The bytes librbd says hold data, a parent's included."""
        return self._read_image(volume, lambda image: sum(
            length for _, length in images.data_extents(image,
                                                         image.size())))

    # -- migration --

    def migration_journaled(self, volume):
        """Whether this pool's journal holds a move of ``volume``.

        A journaled move is running (its process alive) or was left
        for a recovery to finish or undo: until the record is gone, no
        one but Ceph's recovery may say where the volume is.

        :raises RbdmigError: the journal cannot be read.
        """
        with self._connect() as (client, ioctx):
            return journal.Journal(self.rados, ioctx).get(
                volume.name) is not None

    def uncopied_parts(self, volume):
        """Say what a copy of the image's head would leave behind: its
        snapshots, and the clones depending on them; None if nothing.

        :raises VolumeNotFound: the image does not exist.
        :raises InvalidVolume: its name cannot name an RBD image.
        """
        limits.check_image_name(volume.name)
        snaps, children = self._read_image(volume, lambda image: (
            sorted(s['name'] for s in image.list_snaps()),
            list(image.list_children2())))
        parts = []
        if snaps:
            named = ', '.join(snaps[:5]) + (', ...' if len(snaps) > 5
                                            else '')
            parts.append('%d snapshot(s) (%s)' % (len(snaps), named))
        if children:
            parts.append('%d clone(s) depending on them' % len(children))
        return 'it has %s' % ' and '.join(parts) if parts else None

    def volume_in_use(self, volume):
        """Return True if a client has the image open (a watcher).

        Every read-write open of an image registers a watch on its
        header; read-only opens (this one too) do not, and are not seen.

        :raises VolumeNotFound: the image does not exist.
        :raises InvalidVolume: its name cannot name an RBD image.
        """
        limits.check_image_name(volume.name)
        watchers = self._read_image(
            volume, lambda image: list(image.watchers_list()))
        if watchers:
            LOG.debug('%(name)s has %(n)d watcher(s).',
                      {'name': volume.name, 'n': len(watchers)})
        return bool(watchers)

    def migrate_volume(self, context, volume, host,
                       callback=progress.DEFAULT_CALLBACK):
        """Move the image to another pool, name kept.

        :param host: ``{'host': ..., 'capabilities': <destination stats>}``.
        :param callback: progress of the copy, called on this thread
            (``clone_flatten``, ``live`` and ``extents`` report as they
            go, ``copy`` and ``deep_copy`` at their end); it may cancel by
            raising.
        :returns: ``(moved, model_update)``: ``(True, None)`` once the
            image is in the destination pool (of this cluster, or of
            another one this host reaches through the destination's
            location_info); ``(False, None)`` when it cannot be done
            here: the destination is not Ceph or is unreachable, its
            ``location_info`` is unusable, the volume is attached, or its
            name is not an RBD image's.  The caller then falls back to
            the generic path.
        :raises MigrationRefused: it is unsafe to copy now, by this path
            or the generic one: a client has the image open, it has
            clones, journaling, or snapshots that would be lost (another
            cluster, or a method that drops them), or an image of its
            name is in the destination pool.  Nothing was changed; the
            move ends there, with no fallback.
        :raises MigrationError: the copy failed; the partial destination
            was removed and the source is intact.
        """
        try:
            limits.check_image_name(volume.name)
        except exception.InvalidVolume as err:
            LOG.info('Not migrating %(vol)s with the backend: %(why)s '
                     'Falling back to generic migration.',
                     {'vol': volume.id, 'why': err})
            return False, None
        if callback is progress.DEFAULT_CALLBACK:
            # Cinder passes no callback: report to the log, as often as
            # migration_progress_report_interval says.
            callback = progress.log_progress(
                'migration of %s' % volume.id,
                self.configuration.migration_progress_report_interval)
        return migrate.migrate(self.backend(), volume, host, callback)
