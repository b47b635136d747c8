"""Method ``extents``: librbd async I/O over the allocated extents."""

import collections
import errno

from oslo_utils import units

from rbdmig import native
from rbdmig.ceph import images
from rbdmig.ceph.methods import base
from rbdmig.migration import copy as copy_engine


class ExtentsMethod(base.Method):
    """A copy driven by this host with librbd async I/O, data only.

    The destination is created with the source's layout and metadata,
    the source's data extents are found with ``diff_iterate`` (parent data
    included), and chunks of them are read and written with
    ``aio_read``/``aio_write``, at most ``queue_depth`` requests in
    flight.  All-zero 64 KiB blocks are not written (the destination is
    new, so it reads as zeros and stays as thin as the source).  Memory
    is bounded by about ``queue_depth`` x ``chunk_size``.  It copies the
    head only: a volume with snapshots is moved by ``deep_copy`` instead.
    It works between two clusters as well as two pools.
    """

    name = 'extents'
    snapshots_by = 'deep_copy'
    crosses_clusters = True

    def __init__(self, queue_depth=16, chunk_size=4 * units.Mi):
        self.queue_depth = queue_depth
        self.chunk_size = chunk_size

    def configured(self, backend):
        """Return a copy of this method with ``backend``'s settings."""
        return type(self)(queue_depth=backend.queue_depth,
                          chunk_size=backend.chunk_size)

    def _copy(self, move, relay):
        rbd, src = move.rbd, move.source
        rbd.RBD().create(move.dst_ioctx, move.temp, move.size,
                         **images.create_args(rbd, src))
        with rbd.Image(move.dst_ioctx, move.temp) as dst:
            self.tag(move, dst)
            images.copy_metadata(src, dst)
            pump = AioPump(src, dst, self.queue_depth, self.chunk_size,
                           relay.sink)
            native.run(lambda: pump.run(
                images.data_extents(src, move.size), move.size), relay)


class AioPump(object):
    """Moves chunks from ``src`` to ``dst``, ``depth`` requests at a time.

    Runs on one native thread: librbd completes requests on its own
    threads, whose callbacks only queue an event on a native queue
    (:func:`rbdmig.native.native_queue`); every decision and every
    progress report happens on the pump's thread, so a cancelled sink
    stops it.  A read yields the chunk's non-zero runs as writes, which
    wait their turn: reads and writes together never exceed ``depth``.
    """

    def __init__(self, src, dst, depth, chunk_size, sink):
        self.src, self.dst = src, dst
        self.depth, self.chunk_size = depth, chunk_size
        self.sink = sink
        self.events = native.native_queue()
        self.in_flight = 0
        self.writes = collections.deque()  # (data, offset) not yet issued
        self.zeros = bytes(chunk_size)

    def _chunks(self, extents, size):
        """Yield ``(hole, offset, length)``: a chunk and the hole before."""
        position = 0
        for offset, length in extents:
            end = offset + length
            while offset < end:
                n = min(self.chunk_size, end - offset)
                yield offset - position, offset, n
                position = offset = offset + n
        if size > position:
            yield size - position, None, 0

    def run(self, extents, size):
        """Copy every extent; raise the first error once none is in flight.

        :param extents: sorted ``(offset, length)`` pairs.
        :param size: the image size, for progress (holes count as done).
        """
        self.sink.set_size(size)
        chunks = self._chunks(extents, size)
        try:
            while True:
                while self.in_flight < self.depth:
                    if self.writes:
                        self._write(*self.writes.popleft())
                        continue
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    hole, offset, length = chunk
                    if hole:
                        self.sink.relative_update(hole)
                    if length:
                        self._read(offset, length)
                if not self.in_flight:
                    break
                self._handle(self.events.get())
            self.dst.flush()
        except BaseException:
            # librbd still holds the images: wait for every request before
            # the caller may close them.  Each request in flight sends
            # exactly one more event; none is issued from here on.
            while self.in_flight:
                self.events.get()
                self.in_flight -= 1
            raise

    def _read(self, offset, length):
        def done(completion, data):
            self.events.put(('read', offset, length,
                             completion.get_return_value(), data))

        self.src.aio_read(offset, length, done)
        self.in_flight += 1

    def _write(self, data, offset):
        def done(completion):
            self.events.put(('write', offset, len(data),
                             completion.get_return_value(), None))

        self.dst.aio_write(data, offset, done)
        self.in_flight += 1

    def _handle(self, event):
        kind, offset, length, ret, data = event
        # Counted before anything may raise: in_flight counts only the
        # requests that will still send an event.
        self.in_flight -= 1
        if kind == 'read':
            if ret < 0 or data is None or len(data) != length:
                raise OSError(-ret if ret < 0 else errno.EIO,
                              'reading %d bytes at offset %d of %s failed '
                              '(%d)' % (length, offset, self.src.get_name(),
                                        ret))
            runs = copy_engine.nonzero_runs(data, self.zeros)
            for start, end in runs:
                self.writes.append((data if (start, end) == (0, length)
                                    else data[start:end], offset + start))
            skipped = length - sum(end - start for start, end in runs)
            if skipped:
                self.sink.relative_update(skipped)
            return
        if ret < 0:
            raise OSError(-ret, 'writing %d bytes at offset %d of %s failed '
                                '(%d)' % (length, offset, self.dst.get_name(),
                                          ret))
        self.sink.relative_update(length)
