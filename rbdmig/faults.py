"""Named crash points: where a test makes a migrating process die."""

import os
import signal

# ``point`` or ``point#N``: SIGKILL this process the Nth time (the first
# by default) it reaches ``point``.  Read where a point is reached, so a
# subprocess (the CLI, cinder-volume) inherits it from its environment.
CRASH_AT = 'RBDMIG_CRASH_AT'
# A file each reached point's name is appended to, one a line: the test
# learns the points of a path from a run, then kills a run at each.
RECORD = 'RBDMIG_CRASH_RECORD'


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
        if RECORD not in environ and CRASH_AT not in environ:
            return
        count = self.counts[name] = self.counts.get(name, 0) + 1
        record = environ.get(RECORD)
        if record:
            with open(record, 'a') as out:
                out.write('%s\n' % name)
        target, _, nth = environ.get(CRASH_AT, '').partition('#')
        if target == name and count == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)


POINTS = Points()


def point(name):
    """Mark crash point ``name`` (``phase.step``) of the running code."""
    POINTS.reach(name)
