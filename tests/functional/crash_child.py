"""A migration that SIGKILLs itself at a chosen point: a crashed process.

``python -m tests.functional.crash_child CONF METHOD POINT VOLUME_ID``
migrates ``volume-<id>`` from ``ceph-a`` to ``ceph-b`` of the sandbox
whose rbdmig.conf is CONF, by METHOD, and kills itself with SIGKILL:

``copying``   right after the journal says the copy began;
``mid``       at the first progress past 30 % (``copy``/``deep_copy``
              report only at their end: then);
``verified``  right after the journal says the copy is verified;
``placed``    right after the copy took the image's name.

Nothing of rbdmig's own cleanup can run: the process is gone.
"""

import os
import signal
import sys

from rbdmig import objects
from rbdmig.ceph import journal
from rbdmig.ceph.methods import base
from rbdmig.migration import progress
from tests.functional import helpers


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


class _DieMidway(progress.Callback):
    def call(self):
        if self.size and self.value >= 0.3 * self.size:
            _die()


def main(conf, method, point, volume_id):
    real_update = journal.Journal.update
    real_place = base.Method.place

    def update(self, record, phase):
        real_update(self, record, phase)
        if phase == point:
            _die()

    def place(self, move):
        real_place(self, move)
        if point == 'placed':
            _die()

    journal.Journal.update = update
    base.Method.place = place
    cluster = type('Sandbox', (), {'rbdmig_conf_path': conf})
    drivers = helpers.load_drivers(
        cluster, **{'ceph-a': {'rbd_migration_method': method}})
    volume = objects.Volume(id=volume_id, size=1)
    callback = _DieMidway() if point == 'mid' else progress.DEFAULT_CALLBACK
    drivers['ceph-a'].migrate_volume(
        None, volume, helpers.host_of(drivers['ceph-b']), callback=callback)
    print('survived: the kill point was never reached')
    return 1


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))
