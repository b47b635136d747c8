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
RBDMIG = 'rbdmig.volume.drivers.rbd.RBDDriver'
CINDER_RBD = 'cinder.volume.drivers.rbd.RBDDriver'


def write_conf(path, state_dir, backends):
    """Write a cinder.conf naming ``backends`` in ``enabled_backends``.

    :param backends: ``{name: {option: value}}``, in the order listed.
    """
    sections = {
        'DEFAULT': {'transport_url': 'fake:/', 'host': HOST,
                    'state_path': state_dir,
                    'enabled_backends': ', '.join(backends),
                    # A stuck generic migration fails in 2 minutes, not 5.
                    'migration_create_volume_timeout_secs': 120},
        'database': {'connection': 'sqlite:///%s' % os.path.join(
            state_dir, 'cinder.sqlite')},
        'oslo_concurrency': {'lock_path': os.path.join(state_dir, 'locks')},
        'coordination': {'backend_url': 'file://%s' % os.path.join(
            state_dir, 'coordination')},
    }
    sections.update(backends)
    with open(path, 'w') as conf:
        for name, options in sections.items():
            conf.write('[%s]\n' % name)
            conf.writelines('%s = %s\n' % item for item in options.items())
            conf.write('\n')
    return path


def rbd_backend(driver, cluster, pool, user='admin'):
    """A backend section for an RBD driver on a sandbox cluster's pool.

    :param user: ``None`` leaves ``rbd_user`` unset (Cinder's driver then
        writes ``None`` in its location_info).
    """
    section = {'volume_driver': driver, 'rbd_pool': pool,
               'rbd_ceph_conf': cluster.conf_path,
               'rbd_keyring_conf': cluster.admin_keyring_path}
    if user:
        section['rbd_user'] = user
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
            svc = service.Service.create(
                host='%s@%s' % (HOST, backend), service_name=backend,
                binary='cinder-volume', coordination=True,
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
        ``compat@<backend>#<pool>``.
        """
        from cinder.scheduler import host_manager
        mgr = self.manager(backend)
        mgr.publish_service_capabilities(self.ctxt)
        caps = dict(mgr.last_capabilities, timestamp=time.time())
        state = host_manager.BackendState(mgr.host, None)
        state.update_from_volume_capability(caps)
        (pool,) = state.pools.values()
        return pool

    def create_volume(self, backend, size=1, name=None):
        """Create a volume on ``backend`` through its VolumeManager."""
        from cinder import objects
        pool = self.destination(backend)
        volume = objects.Volume(
            context=self.ctxt, size=size, host=pool.host,
            status='creating', attach_status='detached',
            volume_type_id=self.backend_type(backend).id,
            project_id=self.ctxt.project_id, user_id=self.ctxt.user_id,
            availability_zone='nova', display_name=name)
        volume.create()
        self.manager(backend).create_volume(self.ctxt, volume)
        volume.refresh()
        if volume.status != 'available':
            raise AssertionError('volume %s is %s after create_volume'
                                 % (volume.id, volume.status))
        return volume

    def delete_volume(self, volume):
        """Delete the volume through the manager of its current backend."""
        from cinder import objects
        from cinder.volume import volume_utils
        volume = objects.Volume.get_by_id(self.ctxt, volume.id)
        backend = volume_utils.extract_host(volume.host, 'backend')
        backend = backend.split('@', 1)[1]
        self.manager(backend).delete_volume(self.ctxt, volume)

    def migrate(self, volume, backend, timeout=180):
        """Migrate as cinder's API and scheduler do: an RPC cast.

        :returns: the volume re-read from the database once its
            ``migration_status`` is final.
        """
        from cinder.volume import rpcapi
        volume.update({'migration_status': 'starting',
                       'previous_status': volume.status})
        volume.save()
        rpcapi.VolumeAPI().migrate_volume(
            self.ctxt, volume, self.destination(backend),
            force_host_copy=False)
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
