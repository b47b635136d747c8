"""A thread that wants to run every 20 ms, and how late it ran."""

import threading
import time


class Heartbeat(object):
    """Measures how long the service could not run a ready greenthread.

    Under eventlet, ``threading.Thread`` is a greenthread and
    ``time.sleep`` yields to the hub: a call that blocks the hub (a
    librbd call not on a native thread) shows as a late beat.  In
    threading mode it is a native thread and measures GIL starvation.
    Use as a context manager; :attr:`max_stall` is the longest delay
    beyond the 20 ms period, in seconds.
    """

    PERIOD = 0.02

    def __init__(self):
        self.max_stall = 0.0
        self.beats = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='compat-heartbeat')

    def _run(self):
        last = time.monotonic()
        while not self._stop:
            time.sleep(self.PERIOD)
            now = time.monotonic()
            self.max_stall = max(self.max_stall, now - last - self.PERIOD)
            self.beats += 1
            last = now

    def __enter__(self):
        self._thread.start()
        time.sleep(2 * self.PERIOD)
        return self

    def __exit__(self, *exc_info):
        self._stop = True
        self._thread.join()
