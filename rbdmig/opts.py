"""Options: registration of the global ones and list_opts for generators."""

import itertools

from oslo_config import cfg
from oslo_db import options as db_options

from rbdmig import volume
from rbdmig.volume import driver
from rbdmig.volume.drivers import file as file_driver
from rbdmig.volume.drivers import rbd as rbd_driver

_global_opts = [
    cfg.ListOpt('enabled_backends',
                default=[],
                help='The backend sections to serve, e.g. ``ceph-a, '
                     'ceph-b, files``.  Each names a section that sets '
                     '``volume_driver`` and that driver\'s options.'),
    cfg.StrOpt('state_path',
               default='/var/lib/rbdmig',
               help='Directory where rbdmig keeps its state.  The default '
                    '``[database] connection`` is an SQLite file in it, '
                    'created with the directory on first use.'),
    cfg.IntOpt('migration_lease',
               default=120, min=20,
               help='Seconds a migration\'s record may go without its '
                    'process\'s heartbeat (every eighth of this) before '
                    '``rbdmig recover`` on any host sharing the database '
                    'presumes that process dead and takes the migration '
                    'over.  On the record\'s own host a vanished process '
                    'is seen at once.  Every host sharing a database '
                    'should use the same value, and keep its clock within '
                    'seven eighths of it of the others\'.'),
]

# The database when ``[database] connection`` is not set: an SQLite file,
# no server to start.  oslo.config fills in ``$state_path`` when it is read.
DEFAULT_CONNECTION = 'sqlite:///$state_path/rbdmig.sqlite'


def register_opts(conf):
    """Register the [DEFAULT] and [database] options in ``conf``."""
    conf.register_opts(_global_opts)
    db_options.set_defaults(conf, connection=DEFAULT_CONNECTION)


def update_default_opts():
    """Show rbdmig's default ``[database] connection`` in generated samples.

    oslo-config-generator calls this (the ``oslo.config.opts.defaults``
    entry point) before it lists oslo.db's options; at run time
    :func:`register_opts` sets the same default on one ConfigOpts.
    """
    cfg.set_defaults(db_options.database_opts,
                     connection=DEFAULT_CONNECTION)


def list_opts():
    """Return the options for oslo-config-generator.

    Backend options are listed under ``backend_defaults``: each of them can
    be set there for every backend, or in a backend's own section.
    """
    backend = itertools.chain(volume.backend_opts, driver.volume_opts,
                              rbd_driver.RBD_OPTS, file_driver.FILE_OPTS)
    return [
        ('DEFAULT', _global_opts),
        ('backend_defaults', list(backend)),
    ]
