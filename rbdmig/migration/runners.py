"""How a copy's chunks are run: in this thread, or several at a time."""

import collections
import concurrent.futures as futures

from oslo_utils import units


class Checkpoints(object):
    """Reports the offset below which every task is done, now and then.

    Tasks finish out of order on worker threads; the checkpoint is the
    start of the oldest one still in flight (or the end of the last one
    issued).  Reported on the calling thread when it moved by ``every``
    bytes (16 chunks: 64 MiB by default) or ``seconds``, so a copy that
    dies resumes near where it was.
    """

    def __init__(self, report, clock, every=64 * units.Mi, seconds=5.0):
        self.report, self.clock = report, clock
        self.every, self.seconds = every, seconds
        self.in_flight = set()
        self.issued_to = 0
        self.reported = (0, clock())

    def issue(self, offset, n):
        self.in_flight.add(offset)
        self.issued_to = offset + n

    def finish(self, offset):
        self.in_flight.discard(offset)
        mark = min(self.in_flight) if self.in_flight else self.issued_to
        last, when = self.reported
        now = self.clock()
        if mark > last and (mark - last >= self.every or
                            now - when >= self.seconds):
            self.reported = (mark, now)
            self.report(mark)


def run_serial(copier, tasks, chunk_size, callback, throttle, counts,
                marks):
    """One chunk at a time, in the calling thread, through one buffer."""
    buffer = bytearray(chunk_size)
    for kind, offset, n in tasks:
        marks.issue(offset, n)
        if kind == 'skip':
            counts.skipped += n
        elif kind != 'done':
            throttle.take(n)
            work = copier.chunk if kind == 'data' else copier.zero_chunk
            counts.add(work(offset, n, buffer))
        callback.relative_update(n)
        marks.finish(offset)


def run_pool(copier, tasks, chunk_size, depth, callback, throttle,
              counts, marks):
    """Up to ``depth`` chunks in flight on worker threads.

    librbd and file I/O release the GIL, so reads and writes of different
    chunks overlap.  Memory is ``depth`` buffers of ``chunk_size``.  The
    throttle, the callback and the counters are only touched here, in the
    calling thread.  The first error (a worker's, or the callback's when
    it cancels) stops new work; chunks already in flight are waited for,
    so no thread touches the handles after this returns.
    """
    buffers = [bytearray(chunk_size) for _ in range(depth)]
    pending = collections.OrderedDict()  # future -> (buffer, offset, n)

    def collect(done):
        for future in done:
            buffer, offset, n = pending.pop(future)
            buffers.append(buffer)
            counts.add(future.result())  # a worker's error raises here
            callback.relative_update(n)
            marks.finish(offset)

    with futures.ThreadPoolExecutor(max_workers=depth,
                                    thread_name_prefix='rbdmig-copy') as ex:
        try:
            for kind, offset, n in tasks:
                marks.issue(offset, n)
                if kind in ('skip', 'done'):
                    if kind == 'skip':
                        counts.skipped += n
                    callback.relative_update(n)
                    marks.finish(offset)
                    continue
                while not buffers:
                    done, _ = futures.wait(
                        pending, return_when=futures.FIRST_COMPLETED)
                    collect(done)
                throttle.take(n)
                work = copier.chunk if kind == 'data' else copier.zero_chunk
                buffer = buffers.pop()
                pending[ex.submit(work, offset, n, buffer)] = (buffer, offset,
                                                               n)
            while pending:
                done, _ = futures.wait(
                    pending, return_when=futures.FIRST_COMPLETED)
                collect(done)
        except BaseException:
            for future in pending:
                future.cancel()
            futures.wait(pending)
            raise
