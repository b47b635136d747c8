"""Checkpoints of a generic copy, and resuming from one."""

import pytest

from rbdmig.migration import copy
from rbdmig.migration import progress
from tests.unit.test_copy import pattern
from tests.unit.test_copy_parallel import Positional

CHUNK = 64 * 1024
SIZE = 64 * CHUNK


class Clock(object):
    now = 0.0

    def __call__(self):
        self.now += 1.0  # every call a second later: a report each time
        return self.now


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
                         queue_depth=depth, dest_zeroed=True, clock=Clock(),
                         checkpoint=marks.append, callback=Dies())
    assert marks == sorted(marks) and marks
    last = marks[-1]
    assert 0 < last <= 40 * CHUNK and last % CHUNK == 0
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
                     queue_depth=8, dest_zeroed=True, clock=Clock(),
                     checkpoint=checkpoint)
    assert seen and all(complete for _, complete in seen)
