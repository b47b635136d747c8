"""A cinder-volume that migrates one volume and stops itself at a point.

``python -m tests.compat.pause_volume CINDER_CONF VOLUME_ID BACKEND POINT``
runs :mod:`tests.compat.crash_volume`'s migration, in the mode its
environment names, with a crash-point hook (:mod:`rbdmig.faults`) that
sends the process SIGSTOP when it reaches POINT: it stands there, its
threads and its librados client included, until the test sends SIGCONT
(``os.waitpid(pid, os.WUNTRACED)`` tells the test when it stopped).
"""

import os
import signal
import sys


def main(conf_path, volume_id, backend, point):
    from rbdmig import faults
    from tests.compat import crash_volume

    def stop_there(name):
        if name == point:
            os.kill(os.getpid(), signal.SIGSTOP)

    faults.POINTS.hook = stop_there
    return crash_volume.main(conf_path, volume_id, backend)


if __name__ == '__main__':
    # As crash_volume: cinder-volume's own order, patched first.
    from cinder import monkey_patch
    monkey_patch.patch()
    sys.exit(main(*sys.argv[1:]))
