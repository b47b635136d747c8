"""Named points: where a test makes a migrating process die or wait."""

import os
import signal
import time

# ``point`` or ``point#N``: SIGKILL this process the Nth time (the first
# by default) it reaches ``point``.  Read where a point is reached, so a
# subprocess (the CLI, cinder-volume) inherits it from its environment.
CRASH_AT = 'RBDMIG_CRASH_AT'
# A file each reached point's name is appended to, one a line: the test
# learns the points of a path from a run, then kills a run at each.
RECORD = 'RBDMIG_CRASH_RECORD'
# ``point``: wait at every reach of ``point`` (a crash or a pause point)
# for the test's word.  The Nth reach creates
# ``<RBDMIG_PAUSE_DIR>/<point>.<N>.reached`` and waits until
# ``<point>.<N>.go`` or ``release`` exists there: a handshake between
# processes, so a test looks at a run in flight at a known step instead
# of guessing how far a timer let it get.
PAUSE_AT = 'RBDMIG_PAUSE_AT'
PAUSE_DIR = 'RBDMIG_PAUSE_DIR'


class Points(object):
    """The crash points reached by this process, and the test's hook.

    A crash point (:func:`point`) is a step of a path: each reach is
    recorded, may be killed at and is passed to the hook.  A pause point
    (:func:`pause_point`) is reached at a rate (once a progress write),
    so it is none of those: only ``RBDMIG_PAUSE_AT`` acts on it, and the
    paths the crash tests record stay the same however often it is
    reached.

    Off unless a test sets :attr:`hook` or one of the environment
    variables above: then :meth:`reach` costs one dictionary lookup.
    """

    def __init__(self):
        self.hook = None  # hook(name), called at every point reached
        self.counts = {}

    def reach(self, name):
        """Mark that the code reached ``name``; a test may act on it."""
        if self.hook is not None:
            self.hook(name)
        environ = os.environ
        if (RECORD not in environ and CRASH_AT not in environ and
                PAUSE_AT not in environ):
            return
        count = self.counts[name] = self.counts.get(name, 0) + 1
        record = environ.get(RECORD)
        if record:
            with open(record, 'a') as out:
                out.write('%s\n' % name)
        target, _, nth = environ.get(CRASH_AT, '').partition('#')
        if target == name and count == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
        if environ.get(PAUSE_AT) == name:
            _pause(environ[PAUSE_DIR], '%s.%d' % (name, count))

    def pause(self, name):
        """Mark that the code reached pause point ``name``: wait there
        if ``RBDMIG_PAUSE_AT`` names it, else nothing (no record, no
        kill, no hook)."""
        environ = os.environ
        if environ.get(PAUSE_AT) != name:
            return
        count = self.counts[name] = self.counts.get(name, 0) + 1
        _pause(environ[PAUSE_DIR], '%s.%d' % (name, count))


def _pause(directory, step, poll=0.05):
    """Announce ``step`` in ``directory`` and wait for the test's word."""
    with open(os.path.join(directory, step + '.reached'), 'w'):
        pass
    go = os.path.join(directory, step + '.go')
    release = os.path.join(directory, 'release')
    while not (os.path.exists(go) or os.path.exists(release)):
        time.sleep(poll)


POINTS = Points()


def point(name):
    """Mark crash point ``name`` (``phase.step``) of the running code."""
    POINTS.reach(name)


def pause_point(name):
    """Mark pause point ``name``: reached at a rate, not a step of a path.

    Only the ``RBDMIG_PAUSE_AT`` handshake acts on it, so a test can hold
    the process at its Nth reach (releasing the earlier ones) and look
    at what it had just done.  It is never recorded
    (``RBDMIG_CRASH_RECORD``), never killed at (``RBDMIG_CRASH_AT``) and
    never passed to :attr:`Points.hook`.
    """
    POINTS.pause(name)
