"""Method ``deep_copy``: ``rbd.Image.deep_copy``, snapshots kept."""

from rbdmig import ext
from rbdmig import native
from rbdmig.ceph import images
from rbdmig.ceph.methods import base
from rbdmig.ceph.methods import copy


class DeepCopyMethod(base.Method):
    """librbd's deep copy: data, snapshots, metadata and parent link.

    Reports as it goes with :mod:`rbdmig.ext` built
    (``rbd_deep_copy_with_progress``, counting objects), at its end
    without, as ``copy``.
    """

    name = 'deep_copy'
    keeps_snapshots = True
    keeps_parent = True

    def _copy(self, move, relay):
        args = images.create_args(move.rbd, move.source)
        # The destination's data pool, as any new image there gets it.
        args['data_pool'] = base.destination_data_pool(move)
        if ext.available() and move.cluster is not None:
            counter = base.ScaledProgress(relay.sink, move.size)
            native.run(lambda: ext.deep_copy_image(
                move.cluster, move.src_pool, move.name, move.dst_pool,
                move.temp, callback=counter, **args), relay)
        else:
            native.run(lambda: copy.whole(relay.sink, move.size,
                                          move.source.deep_copy,
                                          move.dst_ioctx, move.temp, **args),
                       relay)
        self.tag(move)
