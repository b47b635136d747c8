"""Options: registration of the global ones and list_opts for generators."""

import itertools

from oslo_config import cfg

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
]


def register_opts(conf):
    """Register the [DEFAULT] options in ``conf``."""
    conf.register_opts(_global_opts)


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
