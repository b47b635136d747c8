"""Checkpoints of a generic copy, and resuming from one."""

import pytest

from rbdmig.migration import copy
from rbdmig.migration import progress
from tests.unit.test_copy import pattern
from tests.unit.test_copy_parallel import Positional

CHUNK = 64 * 1024
SIZE = 64 * CHUNK


@pytest.mark.parametrize('depth', [1, 4])
def test_a_copy_that_dies_resumes_from_its_last_checkpoint(depth):
    data = pattern(SIZE)
    dst = Positional(size=SIZE)
    marks = []

    class Dies(progress.Callback):  # the process is killed at chunk 40
        def call(self):
            if self.value >= 40 * CHUNK:
                raise SystemExit('killed')

    with pytest.raises(SystemExit):
        copy.copy_volume(Positional(data), dst, chunk_size=CHUNK,
                         queue_depth=depth, dest_zeroed=True,
                         checkpoint=marks.append, callback=Dies())
    assert marks == [16 * CHUNK, 32 * CHUNK]  # every 16 chunks, in order
    last = marks[-1]
    assert bytes(dst.buf[:last]) == data[:last]  # what it vouched for

    result = copy.copy_volume(Positional(data), dst, chunk_size=CHUNK,
                              queue_depth=depth, dest_zeroed=True,
                              resume_from=last)

    assert bytes(dst.buf) == data
    assert result.bytes_read == SIZE - last  # nothing read again


def test_checkpoints_wait_for_every_chunk_below_them():
    # With chunks finishing out of order, a checkpoint never passes one
    # still in flight.
    data = pattern(SIZE)
    dst = Positional(size=SIZE)
    seen = []

    def checkpoint(offset):
        seen.append((offset, bytes(dst.buf[:offset]) == data[:offset]))

    copy.copy_volume(Positional(data, delay=0.001), dst, chunk_size=CHUNK,
                     queue_depth=8, dest_zeroed=True, checkpoint=checkpoint)
    assert seen and all(complete for _, complete in seen)


def _checkpoints(depth, delay, resume_from=0):
    marks = []
    copy.copy_volume(Positional(pattern(SIZE), delay=delay),
                     Positional(size=SIZE), chunk_size=CHUNK,
                     queue_depth=depth, dest_zeroed=True,
                     resume_from=resume_from, checkpoint=marks.append)
    return marks


@pytest.mark.parametrize('depth', [1, 3, 8])
def test_every_run_reports_the_same_checkpoints(depth):
    # A fault injected at the Nth checkpoint must be reached in every run
    # (tests/functional/test_service_crashes kills there): however the
    # chunks interleave and however slow they are, a copy reports each
    # multiple of 16 chunks once.
    every = [16 * CHUNK, 32 * CHUNK, 48 * CHUNK, 64 * CHUNK]
    assert _checkpoints(depth, delay=0.0) == every
    assert _checkpoints(depth, delay=0.003) == every


def test_a_resumed_copy_reports_only_checkpoints_past_its_start():
    assert _checkpoints(4, 0.0, resume_from=20 * CHUNK) == [
        32 * CHUNK, 48 * CHUNK, 64 * CHUNK]
    assert _checkpoints(1, 0.0, resume_from=32 * CHUNK) == [
        48 * CHUNK, 64 * CHUNK]
