"""A migration that SIGKILLs itself at a named point: a crashed process.

``python -m tests.functional.crash_child CONF METHOD POINT VOLUME_ID``
migrates ``volume-<id>`` from ``ceph-a`` to ``ceph-b`` of the sandbox
whose rbdmig.conf is CONF, by METHOD (``manager``: by the library's
``manager.migrate`` to the file backend ``files``, its generic copy, which
keeps no record), and kills itself with SIGKILL at
POINT: a crash point of :mod:`rbdmig.faults` (``engine.placed``...),
through ``RBDMIG_CRASH_AT``, or ``mid``, at the first progress past 30 %
(``copy``/``deep_copy`` report only at their end: then).  POINT ``none``
kills nothing; with ``RBDMIG_CRASH_RECORD`` set, the run lists the points
it reached.

Nothing of rbdmig's own cleanup can run: the process is gone.
"""

import os
import signal
import sys

from rbdmig import faults
from rbdmig import objects
from rbdmig.migration import manager
from rbdmig.migration import progress
from tests.functional import helpers


class _DieMidway(progress.Callback):
    def call(self):
        if self.size and self.value >= 0.3 * self.size:
            os.kill(os.getpid(), signal.SIGKILL)


def main(conf, method, point, volume_id):
    if point not in ('mid', 'none'):
        os.environ[faults.CRASH_AT] = point
    cluster = type('Sandbox', (), {'rbdmig_conf_path': conf})
    volume = objects.Volume(id=volume_id, size=1)
    callback = _DieMidway() if point == 'mid' else progress.DEFAULT_CALLBACK
    if method == 'manager':
        drivers = helpers.load_drivers(cluster)
        moved = manager.migrate(None, volume, drivers['ceph-a'],
                                drivers['files'], callback=callback)
        print('survived: %s, the kill point was never reached' % (moved,))
        return 0 if point == 'none' else 1
    drivers = helpers.load_drivers(
        cluster, **{'ceph-a': {'rbd_migration_method': method}})
    moved = drivers['ceph-a'].migrate_volume(
        None, volume, helpers.host_of(drivers['ceph-b']), callback=callback)
    print('survived: %s, the kill point was never reached' % (moved,))
    return 0 if point == 'none' else 1


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
