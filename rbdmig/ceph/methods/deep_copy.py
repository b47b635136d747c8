"""Method ``deep_copy``: ``rbd.Image.deep_copy``, snapshots kept."""

from rbdmig import native
from rbdmig.ceph import images
from rbdmig.ceph.methods import base
from rbdmig.ceph.methods import copy


class DeepCopyMethod(base.Method):
    """``rbd.Image.deep_copy``: data, snapshots, metadata and parent link.

    Reported done at its end, as ``copy``.
    """

    name = 'deep_copy'
    keeps_snapshots = True

    def _copy(self, move, relay):
        with move.rbd.Image(move.src_ioctx, move.name,
                            read_only=True) as src:
            args = images.create_args(move.rbd, src)
            native.run(lambda: copy._whole(relay.sink, move.size,
                                           src.deep_copy, move.dst_ioctx,
                                           move.name, **args),
                       relay)
