"""Named crash points: where a test makes a migrating process die or wait."""

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
# ``point``: wait at every reach of ``point`` for the test's word.  The
# Nth reach creates ``<RBDMIG_PAUSE_DIR>/<point>.<N>.reached`` and waits
# until ``<point>.<N>.go`` or ``release`` exists there: a handshake
# between processes, so a test looks at a run in flight at a known step
# instead of guessing how far a timer let it get.
PAUSE_AT = 'RBDMIG_PAUSE_AT'
PAUSE_DIR = 'RBDMIG_PAUSE_DIR'


class Points(object):
    """The crash points reached by this process, and the test's hook.

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
