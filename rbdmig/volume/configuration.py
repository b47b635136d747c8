"""Per-backend option groups, behaving like cinder.volume.configuration."""

import contextlib

from oslo_config import cfg

SHARED_CONF_GROUP = 'backend_defaults'


class Configuration(object):
    """Attribute access to one backend's option group.

    Behaves like ``cinder.volume.configuration.Configuration`` so a driver
    runs unchanged under either: options are read from the backend's own
    section (``[ceph-a]``) and fall back to ``[backend_defaults]``, then to
    the option's default.  Without a group, options live in ``[DEFAULT]``.

    :param volume_opts: options to register (more can be appended later).
    :param config_group: the backend's section name, or None for DEFAULT.
    :param conf: the ``ConfigOpts`` to use; the global ``cfg.CONF`` when
        omitted, as in cinder.
    """

    def __init__(self, volume_opts, config_group=None, conf=None):
        self.config_group = config_group
        self._conf = conf if conf is not None else cfg.CONF
        self._ensure_config_values(volume_opts)

    def _safe_register(self, opt, group):
        try:
            self._conf.register_opt(opt, group=group)
        except cfg.DuplicateOptError:
            pass  # the same option appended twice, or by two drivers

    def _ensure_config_values(self, volume_opts):
        if not self.config_group:
            for opt in volume_opts:
                self._safe_register(opt, None)
            return
        for opt in volume_opts:
            self._safe_register(opt, SHARED_CONF_GROUP)
            if self.config_group != SHARED_CONF_GROUP:
                # The backend group's default is None so that an unset
                # value can be told apart and taken from the shared group.
                self._safe_register(opt, self.config_group)
                self._conf.set_default(opt.name, None,
                                       group=self.config_group)

    def append_config_values(self, volume_opts):
        """Register more options in this backend's group."""
        self._ensure_config_values(volume_opts)

    def set_default(self, opt_name, default):
        """Change an option's shared default."""
        self._conf.set_default(opt_name, default, group=SHARED_CONF_GROUP)

    @contextlib.contextmanager
    def override(self, opt_name, value):
        """Set an option of this backend for the duration of a block."""
        group = self.config_group or None
        self._conf.set_override(opt_name, value, group=group)
        try:
            yield
        finally:
            self._conf.clear_override(opt_name, group=group)

    def get(self, key, default=None):
        return getattr(self, key, default)

    def safe_get(self, value):
        """Return the option's value, or None if it is not registered."""
        try:
            return getattr(self, value)
        except cfg.NoSuchOptError:
            return None

    def __getattr__(self, opt_name):
        # Fetch via object.__getattribute__ so a missing attribute during
        # construction cannot recurse into __getattr__.
        conf = object.__getattribute__(self, '_conf')
        group = object.__getattribute__(self, 'config_group')
        if opt_name.startswith('__'):
            raise AttributeError(opt_name)
        if not group:
            return getattr(conf, opt_name)
        value = getattr(conf[group], opt_name)
        if value is None and group != SHARED_CONF_GROUP:
            value = getattr(conf[SHARED_CONF_GROUP], opt_name)
        return value
