"""What the bench runs: its clusters, volumes, and cases, in order."""

from oslo_utils import units

from rbdmig.bench import cases
from rbdmig.bench import volumes
from rbdmig.ceph import methods as rbd_methods
from rbdmig.volume.drivers import rbd as rbd_driver

# Routes: where a case copies the volume, and what becomes of it.
COPY, MOVE, STAY, TO_FILE, FROM_FILE = ('copy', 'move', 'stay', 'to file',
                                        'from file')
# The method the targets are about: copies inside the OSDs.
OFFLOAD = 'offload'
CINDER = 'cinder generic RBD->RBD'
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


def link_label(osds, mbit):
    """The cluster label of the cases behind the thin link."""
    return '%s behind %d Mbit/s' % (cluster_name(osds), mbit)


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


def _moves(cinder):
    """Ceph's three moves, Cinder's loop if asked, every rbdmig method."""
    steps = [{'label': kind, 'kind': kind, 'route': MOVE}
             for kind in cases.CLI_KINDS]
    if cinder:
        steps.append({'label': CINDER, 'kind': cases.CINDER,
                      'route': COPY})
    return steps + [_assisted(method) for method in rbd_methods.METHODS]


def _verify_levels(method):
    default = option_default('migration_verify')
    return [_assisted(method, verify=level) for level in VERIFY_LEVELS
            if level != default]


def plan_thin(verify=True):
    """The cases of the big thin volume: every move, and (``verify``)
    the default method's ``migration_verify`` levels.

    Not Cinder's loop: it writes every byte of the provisioned size,
    zeros included, 256 GiB that neither the OSDs' capacity nor the
    bench's time has room for.
    """
    return _moves(cinder=False) + (_verify_levels(default_method())
                                   if verify else [])


def plan_link():
    """The cases run behind the thin link: every contender."""
    return _moves(cinder=True)


def plan(osds=1):
    """Return the cases of a cluster of ``osds`` OSDs, in run order.

    Every case moves or copies a fresh volume of the same content.
    Every method of ``rbd_methods.METHODS`` is a case, so a new one
    shows up without touching the bench.  A cluster of more than one OSD
    runs only the moves (Ceph's tools and rbdmig's methods): how they
    scale with OSDs; the host-side copies are measured on one.
    """
    steps = _moves(cinder=osds == 1)
    if osds > 1:
        return steps
    steps.append(_assisted(default_method(), progress=True))
    for method in verify_methods():
        steps += _verify_levels(method)
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


def size_text(n):
    """``4 GiB``, or ``64 MiB`` for what is not whole GiB."""
    return ('%d GiB' % (n // units.Gi) if n % units.Gi == 0
            else '%d MiB' % (n // units.Mi))


def thin_fill(data_bytes):
    """The fill label of the big thin volume: ``1 GiB in 4 MiB pieces``."""
    return '%s in %d MiB pieces' % (size_text(data_bytes),
                                    volumes.CHUNK // units.Mi)


def describe(cluster, size, fill, seed, data_bytes=None, slug=None):
    """A volume of the run, as the JSON records it.

    :param fill: a key of ``volumes.FILLS``, or (with ``data_bytes``)
        the label of a volume holding ``data_bytes`` in whole objects
        scattered over it.
    :param slug: ends the image's name (default: from ``fill``).
    """
    if data_bytes is None:
        fraction, piece = volumes.FILLS[fill], volumes.EXTENT
        slug = slug or fill.replace('%', 'pct')
    else:
        fraction, piece = data_bytes / size, volumes.CHUNK
        slug = slug or 'thin'
    chosen = volumes.chosen_extents(size, fraction, seed, piece)
    return {'cluster': cluster, 'name': 'bench-%dm-%s' % (size // units.Mi,
                                                         slug),
            'size': size, 'fill': fill, 'seed': seed, 'fraction': fraction,
            'piece': piece,
            'sha256': volumes.expected_digest(size, fraction, seed, piece),
            'data_bytes': len(chosen) * volumes.EXTENT}
