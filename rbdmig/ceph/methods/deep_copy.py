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
        args = images.create_args(move.rbd, move.source)
        native.run(lambda: copy.whole(relay.sink, move.size,
                                      move.source.deep_copy, move.dst_ioctx,
                                      move.temp, **args), relay)
        self.tag(move)
