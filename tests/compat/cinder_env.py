"""A real cinder-volume, in this process, serving rbdmig's backends.

Cinder imports eventlet and pins its own libraries, so these tests run in
their own tox env (``tox -e compat``).  Everything here is Cinder's own
code: its config, database, RPC (oslo.messaging's in-process ``fake:/``
transport), ``Service`` and ``VolumeManager``; the tests only play the
API and the scheduler, building the destination exactly as the
scheduler's ``BackendState`` does.
"""

import os
import time

HOST = 'compat'
RBDMIG = 'rbdmig.cinder.RBDDriver'
CINDER_RBD = 'cinder.volume.drivers.rbd.RBDDriver'


def write_conf(path, state_dir, backends, host=HOST, cluster=None):
    """Write a cinder.conf naming ``backends`` in ``enabled_backends``.

    :param backends: ``{name: {option: value}}``, in the order listed.
    :param host: ``host``, the services' ``<host>@<backend>``.
    :param cluster: ``cluster``: the services are members of the
        active-active clusters ``<cluster>@<backend>``, as any other
        cinder-volume naming it with the same ``state_dir`` (database,
        locks, tooz's file coordination).
    """
    defaults = {'transport_url': 'fake:/', 'host': host,
                    'state_path': state_dir,
                    'enabled_backends': ', '.join(backends),
                    # A stuck generic migration fails in 2 minutes, not 5.
                    'migration_create_volume_timeout_secs': 120}
    if cluster:
        defaults['cluster'] = cluster
    sections = {
        'DEFAULT': defaults,
        'database': {'connection': 'sqlite:///%s' % os.path.join(
            state_dir, 'cinder.sqlite')},
        'oslo_concurrency': {'lock_path': os.path.join(state_dir, 'locks')},
        'coordination': {'backend_url': 'file://%s' % os.path.join(
            state_dir, 'coordination')},
        # Notifications to the log, where the tests read them.
        'oslo_messaging_notifications': {'driver': 'log'},
    }
    sections.update(backends)
    with open(path, 'w') as conf:
        for name, options in sections.items():
            conf.write('[%s]\n' % name)
            conf.writelines('%s = %s\n' % item for item in options.items())
            conf.write('\n')
    return path


def rbd_backend(driver, cluster, pool, user=None, **options):
    """A backend section for an RBD driver on a sandbox cluster's pool.

    :param user: the cephx user (its keyring named in the cluster's conf);
        ``None`` leaves ``rbd_user`` unset (librados then uses
        ``client.admin``, and Cinder's driver writes ``None`` in its
        location_info).
    :param options: more options of the section.
    """
    section = {'volume_driver': driver, 'rbd_pool': pool,
               'rbd_ceph_conf': cluster.conf_path}
    if user:
        section['rbd_user'] = user
    section.update(options)
    return section


class CinderVolume(object):
    """cinder-volume services, one per enabled backend, in one process."""

    def __init__(self, conf_path):
        # Import order matters: objects before cinder.volume.manager.
        from cinder import objects
        objects.register_all()
        from cinder.common import config  # noqa: F401 - registers options
        from oslo_config import cfg

        self.conf = cfg.CONF
        # cinder/cmd/volume.py's option (that module patches at import).
        self.conf.register_opt(cfg.StrOpt(
            'cluster', help='Name of this cluster. Used to group volume '
                            'hosts that share the same backend '
                            'configurations to work in HA Active-Active '
                            'mode.'))
        self.conf_path = conf_path
        self.conf(['--config-file', conf_path], project='cinder')
        self.services = {}
        self.timings = {}

    def start(self):
        """Sync the database, then create and start every backend."""
        from cinder import context
        from cinder import rpc
        from cinder import service
        from cinder.db import migration

        from os_brick import privileged
        # cinder-volume runs os-brick's privileged calls (connector
        # properties) in a privsep daemon started through sudo and
        # cinder-rootwrap; the tests run as root, so in this process.
        privileged.default.set_client_mode(False)
        rpc.init(self.conf)
        migration.db_sync()
        self.ctxt = context.RequestContext(user_id='compat',
                                           project_id='compat',
                                           is_admin=True)
        for backend in self.conf.enabled_backends:
            start = time.monotonic()
            # cinder/cmd/volume.py's names for each backend.
            cluster = self.conf.cluster
            svc = service.Service.create(
                host='%s@%s' % (self.conf.host, backend),
                cluster=cluster and '%s@%s' % (cluster, backend),
                service_name=backend, binary='cinder-volume',
                coordination=True,
                report_interval=0, periodic_interval=0)
            self.services[backend] = svc
            svc.start()
            self.timings[backend] = time.monotonic() - start
        return self

    def stop(self):
        """Stop the services in reverse order; return the errors."""
        errors = []
        for backend in reversed(list(self.services)):
            svc = self.services.pop(backend)
            try:
                svc.stop()
                svc.wait()
            except Exception as err:  # noqa: BLE001 - collected
                errors.append('stopping %s: %r' % (backend, err))
        try:
            from cinder import rpc
            if rpc.initialized():
                rpc.cleanup()
        except Exception as err:  # noqa: BLE001 - collected
            errors.append('rpc cleanup: %r' % err)
        return errors

    def manager(self, backend):
        return self.services[backend].manager

    # -- what the API and the scheduler do ---------------------------------

    def volume_type(self, name, **extra_specs):
        """The volume type ``name``, created on first use."""
        from cinder import exception
        from cinder import objects
        from cinder.volume import volume_types
        try:
            return objects.VolumeType.get_by_name_or_id(self.ctxt, name)
        except exception.VolumeTypeNotFoundByName:
            volume_types.create(self.ctxt, name, extra_specs=extra_specs)
            return objects.VolumeType.get_by_name_or_id(self.ctxt, name)

    def backend_type(self, backend):
        """A type bound to ``backend`` by ``volume_backend_name``."""
        return self.volume_type('type-%s' % backend,
                                volume_backend_name=backend)

    def destination(self, backend):
        """The scheduler's pool state for ``backend``, from its stats.

        Built as cinder-scheduler's host manager builds it from the
        capabilities the backend published; ``.host`` is
        ``<host>@<backend>#<pool>``, ``.cluster_name`` its cluster's.
        """
        from cinder.scheduler import host_manager
        mgr = self.manager(backend)
        mgr.publish_service_capabilities(self.ctxt)
        caps = dict(mgr.last_capabilities, timestamp=time.time())
        state = host_manager.BackendState(mgr.host, mgr.cluster)
        state.update_from_volume_capability(caps)
        (pool,) = state.pools.values()
        return pool

    def new_volume_row(self, backend, size=1, name=None, **fields):
        """A volume row on ``backend``, 'creating', as the API makes it."""
        from cinder import objects
        pool = self.destination(backend)
        volume = objects.Volume(
            context=self.ctxt, size=size, host=pool.host,
            status='creating', attach_status='detached',
            volume_type_id=self.backend_type(backend).id,
            project_id=self.ctxt.project_id, user_id=self.ctxt.user_id,
            availability_zone='nova', display_name=name, **fields)
        volume.create()
        return volume

    def create_volume(self, backend, size=1, name=None, **source):
        """Create a volume on ``backend`` through its VolumeManager.

        :param source: ``snapshot_id`` or ``source_volid`` to create it
            from a snapshot or as a clone, as Cinder's API sets them.
        """
        volume = self.new_volume_row(backend, size, name, **source)
        self.manager(backend).create_volume(self.ctxt, volume)
        volume.refresh()
        if volume.status != 'available':
            raise AssertionError('volume %s is %s after create_volume'
                                 % (volume.id, volume.status))
        return volume

    def create_snapshot(self, volume, name=None):
        """Snapshot ``volume`` through its backend's VolumeManager."""
        from cinder import objects
        snapshot = objects.Snapshot(
            context=self.ctxt, volume_id=volume.id, status='creating',
            progress='0%', volume_size=volume.size, display_name=name,
            volume_type_id=volume.volume_type_id,
            project_id=self.ctxt.project_id, user_id=self.ctxt.user_id)
        snapshot.create()
        self.manager(self.backend_of(volume)).create_snapshot(self.ctxt,
                                                              snapshot)
        snapshot.refresh()
        if snapshot.status != 'available':
            raise AssertionError('snapshot %s is %s after create_snapshot'
                                 % (snapshot.id, snapshot.status))
        return snapshot

    def delete_snapshot(self, snapshot):
        """Delete a snapshot through its volume's VolumeManager."""
        from cinder import objects
        volume = objects.Volume.get_by_id(self.ctxt, snapshot.volume_id)
        self.manager(self.backend_of(volume)).delete_snapshot(self.ctxt,
                                                              snapshot)

    def backend_of(self, volume):
        """The backend section a volume's host names."""
        from cinder.volume import volume_utils
        return volume_utils.extract_host(volume.host, 'backend').split(
            '@', 1)[1]

    def delete_volume(self, volume):
        """Delete the volume through the manager of its current backend.

        A volume already deleted is fine (tests delete some themselves).
        """
        from cinder import exception
        from cinder import objects
        try:
            volume = objects.Volume.get_by_id(self.ctxt, volume.id)
        except exception.VolumeNotFound:
            return
        self.manager(self.backend_of(volume)).delete_volume(self.ctxt, volume)

    def migrate(self, volume, backend, timeout=180, force_host_copy=False):
        """Migrate as cinder's API and scheduler do: an RPC cast.

        :param force_host_copy: Cinder's generic copy, never the driver.
        :returns: the volume re-read from the database once its
            ``migration_status`` is final.
        """
        from cinder.volume import rpcapi
        volume.update({'migration_status': 'starting',
                       'previous_status': volume.status})
        volume.save()
        rpcapi.VolumeAPI().migrate_volume(
            self.ctxt, volume, self.destination(backend),
            force_host_copy=force_host_copy)
        return self._wait(volume, timeout)

    def retype(self, volume, backend, timeout=180):
        """Retype to ``backend``'s type, migration_policy on-demand."""
        from cinder.volume import rpcapi
        new_type = self.backend_type(backend)
        volume.update({'status': 'retyping',
                       'previous_status': volume.status})
        volume.save()
        rpcapi.VolumeAPI().retype(
            self.ctxt, volume, new_type.id, self.destination(backend),
            migration_policy='on-demand')
        return self._wait(volume, timeout, retype=True)

    def _wait(self, volume, timeout, retype=False):
        from cinder import objects
        deadline = time.monotonic() + timeout
        while True:
            current = objects.Volume.get_by_id(self.ctxt, volume.id)
            done = current.migration_status in ('success', 'error')
            if done and (not retype or current.status != 'retyping'):
                return current
            if time.monotonic() > deadline:
                raise AssertionError('migration of %s not finished after '
                                     '%d s: %s/%s' % (
                                         volume.id, timeout, current.status,
                                         current.migration_status))
            time.sleep(0.2)

    def volumes(self):
        """Every volume row, deleted or not, keyed by id."""
        from cinder import objects
        ctxt = self.ctxt.elevated(read_deleted='yes')
        return {v.id: v for v in objects.VolumeList.get_all(ctxt)}
