"""The copy methods of assisted migration, by the name operators give."""

from rbdmig.ceph.methods import clone_flatten
from rbdmig.ceph.methods import copy
from rbdmig.ceph.methods import deep_copy
from rbdmig.ceph.methods import extents
from rbdmig.ceph.methods import live
from rbdmig.ceph.methods import offload

METHODS = {m.name: m for m in (copy.CopyMethod(),
                               clone_flatten.CloneFlattenMethod(),
                               deep_copy.DeepCopyMethod(),
                               live.LiveMethod(),
                               extents.ExtentsMethod(),
                               offload.OffloadMethod())}

# The method that moves a volume into another cluster.
CROSS_CLUSTER = 'extents'


def get(name, backend=None):
    """Return the method called ``name``, with ``backend``'s settings.

    :param backend: an :class:`rbdmig.ceph.backend.Backend`, whose
        ``queue_depth``, ``chunk_size`` and ``offload_through_host`` the
        methods that have settings take; None: their defaults.
    :raises KeyError: no method has that name.
    """
    method = METHODS[name]
    if hasattr(method, 'configured') and backend is not None:
        method = method.configured(backend)
    return method
