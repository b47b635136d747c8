"""Volume drivers and the loader that builds one from a backend section."""

import socket

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import importutils

from rbdmig import exception
from rbdmig.volume import configuration

LOG = logging.getLogger(__name__)

backend_opts = [
    cfg.StrOpt('volume_driver',
               help='The import path of the driver class serving this '
                    'backend, e.g. ``rbdmig.volume.drivers.rbd.RBDDriver``.'),
]


def load_driver(backend, conf=None, host=None, context=None):
    """Build, set up and check the driver of one backend section.

    Mirrors what cinder-volume does: the driver class named by the
    section's ``volume_driver`` is constructed with cinder's keyword
    arguments, then ``do_setup`` and ``check_for_setup_error`` run.

    :param backend: the section name, one of ``enabled_backends``.
    :param conf: a ``ConfigOpts`` holding the parsed files (global CONF
        when omitted).
    :param host: the service host; ``<hostname>@<backend>`` when omitted.
    :returns: the ready driver.
    :raises InvalidConfiguration: the section or its driver is unusable.
    """
    conf = conf if conf is not None else cfg.CONF
    backend_conf = configuration.Configuration(
        backend_opts, config_group=backend, conf=conf)
    driver_path = backend_conf.volume_driver
    if not driver_path:
        raise exception.InvalidConfiguration(
            reason='section [%s] sets no volume_driver.' % backend)
    try:
        driver_cls = importutils.import_class(driver_path)
    except (ImportError, ValueError) as err:
        raise exception.InvalidConfiguration(
            reason='volume_driver %r of [%s] cannot be imported: %s' % (
                driver_path, backend, err))
    driver = driver_cls(
        configuration=backend_conf,
        host=host or '%s@%s' % (socket.gethostname(), backend),
        cluster_name=None,
        is_vol_db_empty=False,
        active_backend_id=None)
    driver.do_setup(context)
    driver.check_for_setup_error()
    LOG.debug('Loaded backend %(backend)s with %(driver)s',
              {'backend': backend, 'driver': driver_path})
    return driver


def load_enabled_drivers(conf=None, host=None, context=None):
    """Return ``{backend: driver}`` for every backend in enabled_backends."""
    conf = conf if conf is not None else cfg.CONF
    return {name: load_driver(name, conf=conf, host=host, context=context)
            for name in conf.enabled_backends or []}
