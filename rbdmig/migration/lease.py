"""Whether a migration's process still runs: its pid here, its lease anywhere.

The process running a migration refreshes the record's ``updated_at``
every eighth of the lease (:class:`Heartbeat`).  Recovery on any host
may take a record over once that lease (:data:`LEASE` seconds by
default, the ``migration_lease`` option) is older; on the record's own
host a vanished pid says so at once.  The lease is compared with this
host's clock: hosts sharing a database must keep their clocks within
seven eighths of the lease of each other.
"""

import datetime
import os
import socket
import threading

from oslo_log import log as logging
from oslo_utils import timeutils

LOG = logging.getLogger(__name__)

LEASE = 120  # seconds without a heartbeat: its process is presumed dead
HEARTBEAT = LEASE // 8  # seconds between two refreshes of a record


def heartbeat_interval(lease=LEASE):
    """Seconds between two heartbeats for a lease of ``lease`` seconds."""
    return max(1, lease // 8)


def alive(migration, now=None, lease=LEASE):
    """Return whether the process running ``migration`` may still run.

    On its own host: its pid exists, and its lease is fresh (a pid that
    exists past the lease is another process's, reused).  On another
    host: its lease is fresh.
    """
    name, _, pid = (migration.host or '').rpartition(':')
    if name == socket.gethostname() and not (
            pid.isdigit() and os.path.exists('/proc/%s' % pid)):
        return False
    now = now or timeutils.utcnow()
    return now - migration.updated_at < datetime.timedelta(seconds=lease)


class Heartbeat(object):
    """Refreshes a migration's lease from a thread of its own, until exit.

    :param touch: ``touch()`` refreshes the record; it returns False when
        the migration no longer runs (then the heartbeat stops).
    """

    def __init__(self, touch, interval=HEARTBEAT):
        self.touch, self.interval = touch, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='rbdmig-heartbeat')

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                if not self.touch():
                    return
            except Exception:
                # The next beat tries again; a lease lost for good lets
                # recovery take over, which is the point of it.
                LOG.exception('Refreshing a migration\'s lease failed.')

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
