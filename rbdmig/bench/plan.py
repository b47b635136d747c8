"""What the bench runs: its clusters, and the cases on each, in order."""

from rbdmig.bench import cases
from rbdmig.ceph import methods as rbd_methods
from rbdmig.volume.drivers import rbd as rbd_driver

# Routes: where a case copies the volume, and what becomes of it.
COPY, MOVE, STAY, TO_FILE, FROM_FILE = ('copy', 'move', 'stay', 'to file',
                                        'from file')
# The method the targets are about: copies inside the OSDs.
OFFLOAD = 'offload'
# Every level of migration_verify, cheapest first.
VERIFY_LEVELS = ('none', 'extents', 'osd_checksum', 'checksum')


def option_default(name):
    """The RBD driver's default for option ``name``."""
    return next(o.default for o in rbd_driver.RBD_OPTS if o.name == name)


def default_method():
    """The driver's default ``rbd_migration_method``."""
    return option_default('rbd_migration_method')


def cluster_name(osds):
    """The label of a sandbox with ``osds`` OSDs: ``1 OSD``, ``3 OSDs``."""
    return '%d OSD%s' % (osds, '' if osds == 1 else 's')


def method_label(method, verify=None, progress=False):
    """``rbdmig <method>``, with the verify level or progress if not default.

    ``verify`` None (or the option's default) is the plain case.
    """
    label = 'rbdmig ' + method
    if verify and verify != option_default('migration_verify'):
        label += ' verify=' + verify
    return label + (' +progress' if progress else '')


def verify_methods():
    """The methods whose ``migration_verify`` cost is measured.

    The driver's default, and ``offload``, the candidate to replace it.
    """
    return list(dict.fromkeys((default_method(), OFFLOAD)))


def _assisted(method, verify=None, progress=False):
    return {'label': method_label(method, verify, progress),
            'kind': cases.ASSISTED, 'method': method, 'route': MOVE,
            'verify': verify or option_default('migration_verify'),
            'progress': progress}


def plan(osds=1):
    """Return the cases of a cluster of ``osds`` OSDs, in run order.

    Every case moves or copies a fresh volume of the same content.
    Every method of ``rbd_methods.METHODS`` is a case, so a new one
    shows up without touching the bench.  A cluster of more than one OSD
    runs only the moves (Ceph's tools and rbdmig's methods): how they
    scale with OSDs; the host-side copies are measured on one.
    """
    steps = [{'label': kind, 'kind': kind, 'route': MOVE}
             for kind in cases.CLI_KINDS]
    if osds == 1:
        steps.append({'label': 'cinder generic RBD->RBD',
                      'kind': cases.CINDER, 'route': COPY})
    steps += [_assisted(method) for method in rbd_methods.METHODS]
    if osds > 1:
        return steps
    steps.append(_assisted(default_method(), progress=True))
    for method in verify_methods():
        steps += [_assisted(method, verify=level) for level in VERIFY_LEVELS
                  if level != option_default('migration_verify')]
    steps += [
        {'label': 'rbdmig same pool', 'kind': cases.SAME_POOL,
         'route': STAY},
        {'label': 'rbdmig generic RBD->RBD', 'kind': cases.GENERIC,
         'route': COPY},
        {'label': 'rbdmig generic RBD->file', 'kind': cases.GENERIC,
         'route': TO_FILE},
        {'label': 'rbdmig generic file->RBD', 'kind': cases.GENERIC,
         'route': FROM_FILE},
        {'label': 'rbdmig generic RBD->file +progress',
         'kind': cases.GENERIC, 'progress': True, 'route': TO_FILE},
    ]
    return steps
