"""Method ``copy``: ``rbd.Image.copy``, the head only, thin."""

from rbdmig import native
from rbdmig.ceph import images
from rbdmig.ceph.methods import base


class CopyMethod(base.Method):
    """``rbd.Image.copy``: a thin copy of the head; snapshots refused.

    librbd copies whole objects and reports no progress to Python: the
    copy is reported done at its end.
    """

    name = 'copy'

    def _copy(self, move, relay):
        args = images.create_args(move.rbd, move.source)
        native.run(lambda: whole(relay.sink, move.size, move.source.copy,
                                 move.dst_ioctx, move.temp, **args), relay)
        self.tag(move)


def whole(sink, size, call, *args, **kwargs):
    """Run a librbd call that reports no progress; report it at the end."""
    sink.set_size(size)
    call(*args, **kwargs)
    sink.absolute_update(size)
