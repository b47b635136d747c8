"""Progress beside a copy: every interval, record, log and notify it."""

import threading
import time

from oslo_log import log as logging

from rbdmig.migration import notify
from rbdmig.migration import progress

LOG = logging.getLogger(__name__)


class Reporter(progress.Callback):
    """The callback a migration reports to, and a thread reporting it.

    The copy updates it (bytes done of bytes total, on the caller's
    thread); every ``interval`` seconds, whether or not the copy moved,
    :meth:`report` computes the percentage, the rate since the last
    report and the time left, hands them to ``record`` (the database, so
    that any process can read them), logs them and emits a
    ``volume.migration.progress`` event.

    :param label: how the log names the migration.
    :param interval: seconds between two reports (0: no thread, reports
        at the start and the end only).
    :param record: ``record(bytes_done, bytes_total, rate, eta)``, or
        None.
    :param notifier: a :class:`notify.Notifier`.
    :param event: the payload's fixed fields (``notify.payload``'s
        volume_id, source_backend, destination_backend, method).
    :param clock: a monotonic clock, injectable for tests.
    """

    def __init__(self, label, interval, record=None, notifier=notify.NULL,
                 event=None, clock=time.monotonic):
        super().__init__(size=None, value=0)
        self.label, self.interval = label, interval
        self._record = record
        self.notifier = notifier
        self.event = dict(event or {})
        self._clock = clock
        self.started = clock()
        self._last = (self.started, 0)
        self._stop = threading.Event()
        self._thread = None
        self._begun = False

    def set_size(self, size):
        """The copy begins: the start event, and a first report."""
        super().set_size(size)
        if not self._begun:
            self._begun = True
            self.started = self._clock()
            self._last = (self.started, self.value)
            self.notifier.emit(notify.START, self._payload())
            self.report()

    def start(self):
        """Report every interval until :meth:`stop`, once the copy began.

        A move refused before any copy began sends no event.
        """
        if self.interval > 0:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name='rbdmig-progress')
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            if self._begun:
                self.report()

    def stop(self, error=None):
        """Stop reporting; emit the end (or error) event."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._begun:
            self.report(final=True)
        if self._begun or error:
            elapsed = self._clock() - self.started
            mean = round(self.value / elapsed) if elapsed > 0 else None
            self.notifier.emit(notify.ERROR if error else notify.END,
                               self._payload(rate=mean,
                                             error=error and str(error)))

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop(error=exc)

    def _payload(self, rate=None, error=None):
        return notify.payload(
            bytes_done=self.value, bytes_total=self.size or 0, rate=rate,
            duration=round(self._clock() - self.started, 3), error=error,
            **self.event)

    def report(self, final=False):
        """Record, log and notify the progress now."""
        now, done, total = self._clock(), self.value, self.size or 0
        then, before = self._last
        rate = (done - before) / (now - then) if now > then else None
        if final:
            elapsed = now - self.started
            rate = done / elapsed if elapsed > 0 else None
        eta = ((total - done) / rate) if rate and total > done else None
        self._last = (now, done)
        body = self._payload(rate=rate and round(rate))
        if self._record is not None:
            try:
                self._record(done, total, body['rate'], eta)
            except Exception:  # progress must not fail the move
                LOG.exception('Could not record the progress of %s',
                              self.label)
        LOG.info('%(label)s: %(pct).1f%% (%(done)d of %(total)d bytes, '
                 '%(rate)s, %(eta)s)',
                 {'label': self.label, 'pct': body['percent'],
                  'done': done, 'total': total,
                  'rate': '%.1f MiB/s' % (rate / 2 ** 20) if rate
                  else 'no rate yet',
                  'eta': '%.0f s left' % eta if eta is not None else
                  ('done' if total and done >= total else 'time left '
                   'unknown')})
        if not final:
            self.notifier.emit(notify.PROGRESS, body)
