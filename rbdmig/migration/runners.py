"""How a copy's chunks are run: in this thread, or several at a time."""

import collections
import concurrent.futures as futures

from oslo_utils import units


class Checkpoints(object):
    """Reports each multiple of ``every`` bytes once every task below it
    is done.

    Tasks finish out of order on worker threads; the mark is the start of
    the oldest one still in flight (or the end of the last one issued).
    Each boundary past ``start`` (a multiple of ``every``: 16 chunks, 64
    MiB by default) is reported once, in order, when the mark reaches it.
    So a copy that dies resumes within ``every`` bytes of where it was,
    and every run of one copy reports the same checkpoints, however its
    chunks interleave and however fast they go: a fault injected at the
    Nth checkpoint is reached in every run.
    """

    def __init__(self, report, every=64 * units.Mi, start=0):
        self.report, self.every = report, every
        self.in_flight = set()
        self.issued_to = 0
        self.next = (start // every + 1) * every

    def issue(self, offset, n):
        self.in_flight.add(offset)
        self.issued_to = offset + n

    def finish(self, offset):
        self.in_flight.discard(offset)
        mark = min(self.in_flight) if self.in_flight else self.issued_to
        while self.next <= mark:
            self.report(self.next)
            self.next += self.every


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
