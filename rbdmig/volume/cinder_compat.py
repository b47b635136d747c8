"""What cinder-volume expects of a driver that never imports Cinder."""

from oslo_config import cfg


class _SameNamedOpt(object):
    """An option equal to any other of its name, type class and default.

    Cinder's RBD driver registers options of these names in
    ``[backend_defaults]`` when its module is imported, and oslo.config
    refuses a second option of a name unless the two compare equal.  Help
    texts and bounds differ, the meaning does not: without this, a
    cinder-volume whose ``enabled_backends`` lists an rbdmig backend before
    one of Cinder's RBD driver fails to start the latter
    (DuplicateOptError).  Whichever registers first is kept.
    """

    def __eq__(self, other):
        if not isinstance(other, cfg.Opt):
            return NotImplemented
        return (other.name == self.name and other.default == self.default
                and type(other.type) is type(self.type))

    def __ne__(self, other):
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = cfg.Opt.__hash__


class StrOpt(_SameNamedOpt, cfg.StrOpt):
    """A StrOpt that coexists with Cinder's option of the same name."""


class IntOpt(_SameNamedOpt, cfg.IntOpt):
    """An IntOpt that coexists with Cinder's option of the same name."""


class BoolOpt(_SameNamedOpt, cfg.BoolOpt):
    """A BoolOpt that coexists with Cinder's option of the same name."""


# Read by Cinder's volume manager from the backend's section when it
# attaches volumes for a generic migration; Cinder's base driver registers
# them, so rbdmig's drivers must too.  Cinder's names and defaults; not
# rbdmig's own options, hence not in the sample config.
MANAGER_OPTS = [
    BoolOpt('use_multipath_for_image_xfer', default=False,
            help='Whether Cinder attaches volumes for copies with '
                 'multipath (read by Cinder only).'),
    BoolOpt('enforce_multipath_for_image_xfer', default=False,
            help='Whether Cinder refuses copies without multipath (read '
                 'by Cinder only).'),
    IntOpt('num_volume_device_scan_tries', default=3,
           help='Cinder\'s attempts to find an attached volume (read by '
                'Cinder only).'),
    StrOpt('volume_dd_blocksize', default='1M',
           help='The block size of Cinder\'s host-driven copies (read by '
                'Cinder only).'),
]
