"""rbdmig status: the migrations running or stranded in RBD backends."""

import sys
import time

from oslo_config import cfg
from oslo_utils import units

from rbdmig import exception
from rbdmig import redact
from rbdmig.ceph import connection
from rbdmig.ceph import status
from rbdmig.cmd import output

try:
    import rados
except ImportError:
    rados = None

COLUMNS = ('BACKEND', 'IMAGE', 'SOURCE -> DESTINATION', 'PHASE', 'METHOD',
           'DONE', 'RATE', 'LEFT', 'HOST', 'UPDATED', 'STRANDED')
# Seconds connecting to a cluster, and each operation, may take.
TIMEOUT = 30


def add_parser(sub):
    """Add ``status`` to the CLI's subcommands."""
    p = sub.add_parser(
        'status', help='list the migrations running or stranded in the '
                       'RBD backends of the config files (rbdmig.conf '
                       'or cinder.conf), read from Ceph: any host sees '
                       'them')
    p.add_argument('--format', choices=('table', 'json'), default='table')
    p.add_argument('--timeout', type=int, default=TIMEOUT, metavar='S',
                   help='seconds connecting to a cluster and each '
                        'operation may take (default %d)' % TIMEOUT)


def _duration(seconds):
    if seconds is None:
        return '-'
    seconds = int(round(seconds))
    if seconds < 60:
        return '%ds' % seconds
    if seconds < 3600:
        return '%dm%02ds' % divmod(seconds, 60)
    return '%dh%02dm' % (seconds // 3600, seconds % 3600 // 60)


def _row(found):
    stranded = found['stranded']
    return {
        'BACKEND': found['backend'], 'IMAGE': found['image'],
        'SOURCE -> DESTINATION': '%s -> %s' % (found['source'],
                                               found['destination']),
        'PHASE': found['phase'], 'METHOD': found['method'],
        'DONE': '-' if found['percent'] is None
        else '%.1f%%' % found['percent'],
        'RATE': '%.1f MiB/s' % (found['rate'] / units.Mi)
        if found['rate'] else '-',
        'LEFT': _duration(found['eta']),
        'HOST': found['host'] if not found.get('service')
        else '%s (%s)' % (found['host'], found['service']),
        'UPDATED': '%s ago' % _duration(found['age']),
        'STRANDED': 'unknown' if stranded is None
        else 'yes' if stranded else 'no'}


def collect(paths, rados_module, timeout=TIMEOUT, clock=time.time):
    """Read every backend's journal.

    :returns: ``{'backends': [...], 'migrations': [...], 'errors':
        [...]}``, JSON-able; an unreachable backend is an error entry,
        the others are read.
    """
    sources = status.sources(paths)
    limits = connection.Limits(connect_timeout=timeout, attempts=1,
                               osd_op_timeout=timeout)
    result = {'backends': [s.describe() for s in sources],
              'migrations': [], 'errors': []}
    for source in sources:
        try:
            found = status.read(rados_module, source, limits)
        except (exception.RbdmigError, rados_module.Error) as err:
            result['errors'].append({'backend': source.backend,
                                     'error': redact.mask(err)})
            continue
        now = clock()
        result['migrations'] += [m.as_dict(now) for m in found]
    return result


def run(args, out=None, err=None, rados_module=None, clock=time.time):
    """Print the migrations; 1 if a backend could not be read."""
    out, err = out or sys.stdout, err or sys.stderr
    rados_module = rados_module or rados
    if rados_module is None:
        raise exception.InvalidConfiguration(
            reason='the rados Python module is missing; install '
                   'python3-rados.')
    paths = args.config_file or cfg.find_config_files(project='rbdmig')
    if not paths:
        raise exception.InvalidInput(
            reason='no config file: name rbdmig.conf or cinder.conf with '
                   '--config-file.')
    result = collect(paths, rados_module, args.timeout, clock)
    if args.format == 'json':
        out.write(output.dumps(result) + '\n')
    else:
        if result['migrations']:
            output.table([_row(m) for m in result['migrations']], COLUMNS,
                         out=out)
        else:
            out.write('no migration running or stranded in %d RBD '
                      'backend(s)\n' % (len(result['backends'])
                                        - len(result['errors'])))
        for error in result['errors']:
            err.write('rbdmig status: %s: %s\n' % (
                error['backend'], error['error']))
    return 1 if result['errors'] else 0
