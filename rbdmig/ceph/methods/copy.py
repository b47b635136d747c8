"""Method ``copy``: ``rbd.Image.copy``, the head only, thin."""

from rbdmig import ext
from rbdmig import native
from rbdmig.ceph import images
from rbdmig.ceph.methods import base


class CopyMethod(base.Method):
    """librbd's copy: a thin copy of the head; snapshots refused.

    With :mod:`rbdmig.ext` built, ``rbd_copy_with_progress4`` (as ``rbd
    cp``: runs of zeros are not written) reports as it goes; without it,
    ``rbd.Image.copy`` reports nothing, and the copy is reported done at
    its end.
    """

    name = 'copy'

    def _copy(self, move, relay):
        args = images.create_args(move.rbd, move.source)
        # The destination's data pool, as any new image there gets it.
        args['data_pool'] = base.destination_data_pool(move)
        if ext.available() and move.cluster is not None:
            native.run(lambda: ext.copy_image(
                move.cluster, move.src_pool, move.name, move.dst_pool,
                move.temp, callback=relay.sink, **args), relay)
        else:
            native.run(lambda: whole(relay.sink, move.size,
                                     move.source.copy, move.dst_ioctx,
                                     move.temp, **args), relay)
        self.tag(move)


def whole(sink, size, call, *args, **kwargs):
    """Run a librbd call that reports no progress; report it at the end."""
    sink.set_size(size)
    call(*args, **kwargs)
    sink.absolute_update(size)
