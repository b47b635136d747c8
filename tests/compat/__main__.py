"""Run the compat tests in the process model of cinder-volume.

``python -m tests.compat eventlet|threading [pytest args]``: like
``cinder/cmd/volume.py``, the first thing it does is
``cinder.monkey_patch.patch()``, before pytest or anything else is
imported.  ``eventlet`` is Cinder's default (and production) mode;
``threading`` sets ``OS_CINDER_DISABLE_EVENTLET_PATCHING=1``.
"""

import os
import sys

MODES = {'eventlet': '0', 'threading': '1'}

if __name__ == '__main__':
    if len(sys.argv) < 2 or sys.argv[1] not in MODES:
        sys.exit('usage: python -m tests.compat {eventlet|threading} '
                 '[pytest arguments]')
    mode = sys.argv[1]
    os.environ['OS_CINDER_DISABLE_EVENTLET_PATCHING'] = MODES[mode]
    os.environ['RBDMIG_COMPAT_MODE'] = mode
    from cinder import monkey_patch
    monkey_patch.patch()

    import pytest
    sys.exit(pytest.main(['tests/compat', '-p', 'no:cacheprovider']
                         + sys.argv[2:]))
