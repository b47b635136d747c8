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


def get(name, queue_depth=None, chunk_size=None):
    """Return the method called ``name``, with the ``extents`` settings.

    :raises KeyError: no method has that name.
    """
    method = METHODS[name]
    if hasattr(method, 'configured') and queue_depth:
        method = method.configured(queue_depth, chunk_size)
    return method
