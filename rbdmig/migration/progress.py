"""Progress callbacks: a no-op default, so callers never test for None."""

import time

from oslo_config import cfg
from oslo_log import log as logging

LOG = logging.getLogger(__name__)

PROGRESS_OPTS = [
    cfg.IntOpt('migration_progress_report_interval',
               default=30, min=0,
               help='Seconds between two progress reports of a running '
                    'migration or copy (log lines; for a move by an RBD '
                    'backend, also its journal record, which ``rbdmig '
                    'status`` reads); 0 reports every update.'),
]


class Callback:
    """Receives progress of one copy; subclass and override ``call``.

    The copier calls :meth:`set_size` once, then :meth:`relative_update`
    as bytes are handled (copied or skipped as holes).  Raising from
    :meth:`call` cancels the copy; the exception propagates to the caller.
    """

    def __init__(self, size=None, value=0):
        self.size = size
        self.value = value

    def set_size(self, size):
        """Set the total number of bytes the work will handle."""
        self.size = size
        self.call()

    def absolute_update(self, value):
        """Set the number of bytes handled so far."""
        self.value = value
        self.call()

    def relative_update(self, inc):
        """Add ``inc`` to the number of bytes handled so far."""
        self.value += inc
        self.call()

    @property
    def fraction(self):
        """Share of the work done, from 0.0 to 1.0 (0.0 if size unknown)."""
        if not self.size:
            return 0.0
        return min(1.0, self.value / self.size)

    def call(self):
        """Hook run after every update; does nothing by default."""


class NoOpCallback(Callback):
    """The default callback: records nothing and never cancels."""

    def set_size(self, size):
        pass

    def absolute_update(self, value):
        pass

    def relative_update(self, inc):
        pass


DEFAULT_CALLBACK = NoOpCallback()


class Fanout(Callback):
    """Passes every update on to several callbacks, in order.

    Any of them may cancel by raising; the others have had the update.
    """

    def __init__(self, *callbacks):
        super().__init__()
        self.callbacks = callbacks

    def set_size(self, size):
        self.size = size
        for callback in self.callbacks:
            callback.set_size(size)

    def absolute_update(self, value):
        self.value = value
        for callback in self.callbacks:
            callback.absolute_update(value)

    def relative_update(self, inc):
        self.value += inc
        for callback in self.callbacks:
            callback.relative_update(inc)


class IntervalCallback(Callback):
    """Calls ``report(callback)`` at most once per ``interval`` seconds.

    The first and the final update (value reaching size) are always
    reported, so a short copy still says it started and finished.

    :param report: a function taking this callback.
    :param interval: seconds between reports; 0 reports every update.
    :param clock: a monotonic clock, injectable for tests.
    """

    def __init__(self, report, interval, clock=time.monotonic, size=None):
        super().__init__(size=size)
        self._report = report
        self.interval = interval
        self._clock = clock
        self._last = None
        self._finished = False

    def call(self):
        now = self._clock()
        done = self.size is not None and self.value >= self.size
        if done:
            if self._finished:
                return
            self._finished = True
        elif self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        self._report(self)


def log_progress(label, interval):
    """Return a callback that logs ``label``'s progress every interval."""

    def report(cb):
        LOG.info('%(label)s: %(pct).1f%% (%(done)d of %(size)s bytes)',
                 {'label': label, 'pct': cb.fraction * 100,
                  'done': cb.value, 'size': cb.size})

    return IntervalCallback(report, interval)
