"""rbdmig migrate, drain and recover."""

import os
import subprocess
import sys
import time

from rbdmig import exception
from rbdmig.cmd import context
from rbdmig.cmd import output
from rbdmig.migration import progress

# Watcher's zone migration moves 2 volumes per pool at a time, 6 in all:
# the bound where the data crosses this host.  With ``offload`` it never
# does (the OSDs copy it) and the host's share of a move is its checks,
# claims and journal: more at once pays, up to DRAIN_MAX_OFFLOAD (README,
# "rbdmig drain", for the measurement).
DRAIN_PARALLEL, DRAIN_MAX = 2, 6
DRAIN_PARALLEL_OFFLOAD, DRAIN_MAX_OFFLOAD = 8, 16
OFFLOAD = 'offload'


def drain_limit(stats):
    """The most volumes a drain moves at once from a source whose
    ``get_volume_stats()`` are ``stats``.

    :data:`DRAIN_MAX_OFFLOAD` when its moves are ``offload``'s (the
    method chosen and its extension built), else :data:`DRAIN_MAX`.
    """
    if (stats.get('rbd_migration_method') == OFFLOAD and
            stats.get('offload_available')):
        return DRAIN_MAX_OFFLOAD
    return DRAIN_MAX


def drain_default(stats):
    """``--parallel``'s default for a source whose stats are ``stats``."""
    if drain_limit(stats) == DRAIN_MAX_OFFLOAD:
        return DRAIN_PARALLEL_OFFLOAD
    return DRAIN_PARALLEL


def check_parallel(parallel, source, stats):
    """Raise InvalidInput, in one sentence, if ``parallel`` is above
    :func:`drain_limit` for ``source``."""
    limit = drain_limit(stats)
    if parallel <= limit:
        return
    method = stats.get('rbd_migration_method') or 'the generic copy'
    why = ('its method is %s, whose data crosses this host' % method
           if method != OFFLOAD else
           'offload is not available here (%s)'
           % (stats.get('offload_unavailable_reason') or 'not built'))
    raise exception.InvalidInput(
        reason='--parallel %d: %s moves at most %d volumes at once: %s; '
               'only offload (rbd_migration_method = offload, its '
               'extension built) allows up to %d.' % (
                   parallel, source, limit, why, DRAIN_MAX_OFFLOAD))


def add_parsers(sub):
    p = sub.add_parser(
        'migrate', help='move a volume to another backend: checked first, '
                        'refused in one sentence if it cannot be done')
    p.add_argument('volume')
    p.add_argument('backend')
    p.add_argument('--force', action='store_true',
                   help='put the (available) volume in maintenance until '
                        'the move ends')
    p.add_argument('--method', help='an rbd_migration_method of the source '
                                    'backend, or "generic" for the host '
                                    'copy')
    p.add_argument('--wait', action='store_true',
                   help='stay until it ends, showing its progress')
    p = sub.add_parser('run-migration',
                       help='run a migration "migrate" claimed (what '
                            '"migrate" without --wait starts)')
    p.add_argument('migration', type=int)
    p.add_argument('--method')
    p = sub.add_parser('drain', help='move every volume of a backend to '
                                     'another, some at a time')
    p.add_argument('source')
    p.add_argument('dest')
    p.add_argument('--parallel', type=int,
                   choices=range(1, DRAIN_MAX_OFFLOAD + 1), metavar='N',
                   help='volumes moving at once (default %d, at most %d; '
                        'when the source\'s method is offload, default %d, '
                        'at most %d)' % (DRAIN_PARALLEL, DRAIN_MAX,
                                         DRAIN_PARALLEL_OFFLOAD,
                                         DRAIN_MAX_OFFLOAD))
    p = sub.add_parser('recover', help='finish or undo what a killed or '
                                       'crashed migration left')
    p.add_argument('--backend', action='append', default=[],
                   help='recover only this backend (repeatable)')
    p.add_argument('--any-host', action='store_true',
                   help='also take over migrations another host journaled '
                        '(only when that host is gone for good)')


class _View(progress.Callback):
    """Feeds a :class:`output.ProgressView` with rate and time left."""

    def __init__(self, view, clock=time.monotonic):
        super().__init__(size=0, value=0)
        self.view, self.clock = view, clock
        self.start, self._shown = clock(), 0.0

    def call(self):
        now = self.clock()
        done = bool(self.size) and self.value >= self.size
        if now - self._shown < 0.5 and not done:
            return
        self._shown = now
        rate = self.value / (now - self.start) if now > self.start else None
        self.view.show({
            'percent': 100.0 * self.value / self.size if self.size else 0,
            'bytes_done': self.value, 'bytes_total': self.size,
            'rate': rate, 'eta': (self.size - self.value) / rate
            if rate else None}, force=done)


def run(args, out=None):
    out = out or sys.stdout
    svc = context.load(args)
    if args.command == 'migrate':
        with svc.sharing():  # its checks and move connect once per cluster
            return _migrate(svc, args, out)
    if args.command == 'run-migration':
        svc.run(args.migration, args.method)
        return 0
    if args.command == 'drain':
        stats = svc.driver(args.source).get_volume_stats()
        parallel = args.parallel or drain_default(stats)
        check_parallel(parallel, args.source, stats)
        failed = svc.drain(args.source, args.dest, parallel,
                           report=lambda vol, what: out.write(
                               '%s: %s\n' % (vol, what)) or out.flush())
        out.write('%s drained into %s: %s\n' % (
            args.source, args.dest, 'every volume moved' if not failed
            else '%d volume(s) did not move' % failed))
        return 1 if failed else 0
    return _recover(svc, args, out)


def _migrate(svc, args, out):
    migration = svc.request(args.volume, args.backend, args.force,
                            args.method)
    out.write('accepted: migration %d moves %s from %s to %s.\n' % (
        migration.id, args.volume, migration.source_backend, args.backend))
    out.flush()
    if not args.wait:
        _detach(args, migration.id)
        out.write('follow it with: rbdmig show %s\n' % args.volume)
        return 0
    view = output.ProgressView(out)
    try:
        svc.run(migration.id, args.method, callback=_View(view))
    finally:
        found = svc.show(args.volume)
        view.end('%s: %s on %s%s' % (
            args.volume, found['migration_status'], found['backend'],
            ' (%s)' % found['progress']['error']
            if found['progress'] and found['progress']['error'] else ''))
    return 0


def _detach(args, migration_id):
    """Run the claimed migration in a process of its own, and return."""
    conf = context.load_conf(args)
    logs = os.path.join(conf.state_path, 'logs')
    os.makedirs(logs, mode=0o700, exist_ok=True)
    command = [sys.executable, '-m', 'rbdmig.cmd.main']
    for path in args.config_file:
        command += ['--config-file', path]
    command += ['run-migration', str(migration_id)]
    if args.method:
        command += ['--method', args.method]
    with open(os.path.join(logs, 'migration-%d.log' % migration_id),
              'ab') as log:
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                         stderr=subprocess.STDOUT, start_new_session=True)


def _recover(svc, args, out):
    failed = 0
    names = args.backend or list(svc.drivers)
    for backend in names:
        driver = svc.driver(backend)  # set up: Ceph's journal recovered
        recover = getattr(driver, 'recover_migrations', None)
        if recover is None:
            continue
        outcomes = list(driver.recovered)
        if args.any_host:
            outcomes += recover(any_host=True)
        if not outcomes:
            out.write('%s: nothing to recover\n' % backend)
        for outcome in outcomes:
            out.write('%s: %s\n' % (backend, outcome))
            failed += outcome.action == 'failed'
    for found in svc.recover():
        out.write('migration %d: %s\n' % (found.migration_id, found.outcome))
        failed += found.failed
    return 1 if failed else 0

