"""A cinder-volume that migrates one volume and dies at a crash point.

``python -m tests.compat.crash_volume CINDER_CONF VOLUME_ID BACKEND
[retype]`` brings up the cinder-volume services the compat tests run (same
cinder.conf, hence the same database file), in the mode its environment
names (``OS_CINDER_DISABLE_EVENTLET_PATCHING``, inherited from the compat
run: eventlet patches first, as ``cinder/cmd/volume.py`` does), and runs
the volume manager's ``migrate_volume`` of ``VOLUME_ID`` to ``BACKEND``,
as the RPC server does for ``cinder migrate`` (with ``retype``, its
``retype`` to ``BACKEND``'s volume type, migration policy on-demand, as
for ``cinder retype --migration-policy on-demand``).

With ``RBDMIG_CRASH_AT=<point>`` in its environment it SIGKILLs itself
there (:mod:`rbdmig.faults`): nothing of its own cleanup runs.  If it
survives, it prints the volume's row and exits with :data:`SURVIVED`.
BACKEND ``-`` only starts the services (their ``init_host``: rbdmig's
recovery) and stops them.  BACKEND ``+`` starts them and serves (a
member of a cluster recovers periodically) until the file named by
``RBDMIG_COMPAT_STOP`` exists.
"""

import sys

SURVIVED = 3
START_ONLY = '-'
SERVE = '+'
STOP = 'RBDMIG_COMPAT_STOP'
RETYPE = 'retype'


def main(conf_path, volume_id, backend, action='migrate'):
    import os

    from cinder import objects

    from rbdmig import native
    from tests.compat import cinder_env

    mode = os.environ.get('RBDMIG_COMPAT_MODE')
    if native.patched() != (mode == 'eventlet'):
        sys.exit('crash_volume: %s mode, yet eventlet %s patched'
                 % (mode, 'is' if native.patched() else 'is not'))
    services = cinder_env.CinderVolume(conf_path).start()
    try:
        if backend == START_ONLY:
            return SURVIVED
        if backend == SERVE:
            import time
            while not os.path.exists(os.environ[STOP]):
                time.sleep(0.1)  # a greenthread's sleep under eventlet
            return SURVIVED
        volume = objects.Volume.get_by_id(services.ctxt, volume_id)
        dest = services.destination(backend)
        # What VolumeAPI.migrate_volume's cast carries (rpcapi 3.5).
        host = {'host': dest.host, 'cluster_name': dest.cluster_name,
                'capabilities': dest.capabilities}
        source = services.manager(services.backend_of(volume))
        if action == RETYPE:
            source.retype(services.ctxt, volume,
                          services.backend_type(backend).id, host,
                          migration_policy='on-demand')
        else:
            source.migrate_volume(services.ctxt, volume, host)
        volume.refresh()
        print('survived: %s host %s, status %s, migration_status %s'
              % (volume.id, volume.host, volume.status,
                 volume.migration_status))
    finally:
        services.stop()
    return SURVIVED


if __name__ == '__main__':
    # First, before anything imports eventlet's victims (threading,
    # socket...): cinder-volume's own order.
    from cinder import monkey_patch
    monkey_patch.patch()
    sys.exit(main(*sys.argv[1:]))
