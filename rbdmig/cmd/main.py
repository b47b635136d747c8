"""rbdmig's command line: demo, bench, status, recover, sandboxes."""

import argparse
import logging as std_logging
import os
import sys
import warnings

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import units

from rbdmig import exception
from rbdmig import redact


def _bounded(kind, low, high=None):
    """An argparse type: ``kind`` within [low, high], else a clear error."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError('%r is not a number' % text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                '%s is outside %s..%s' % (text, low, high or 'any'))
        return value
    return parse


def _parser():
    # Imported here, after main() filtered eventlet's deprecation warning:
    # os-brick imports oslo.privsep, hence eventlet.
    from rbdmig.bench import command as bench_command
    from rbdmig.cmd import context
    from rbdmig.cmd import migrations
    from rbdmig.cmd import status
    from rbdmig.cmd import volumes

    parser = argparse.ArgumentParser(
        prog='rbdmig', description='Fast, lossless Ceph volume migration.',
        epilog='Exit status: 0 done or accepted, 1 failed, 2 bad usage, '
               '3 refused before anything changed.')
    parser.add_argument('--debug', action='store_true',
                        help='log at debug level to standard error')
    context.add_arguments(parser)
    sub = parser.add_subparsers(dest='command', required=True)

    demo = sub.add_parser(
        'demo', help='migrate a volume with real data on a throwaway Ceph '
                     'cluster, timing and verifying every move')
    demo.add_argument('--size-gib', type=_bounded(int, 1, 64), default=1,
                      help='provisioned size of the demo volume (default 1)')
    demo.add_argument('--fill', type=_bounded(float, 0.0, 1.0),
                      default=0.25,
                      help='share of the volume holding random data, in '
                           'scattered extents (default 0.25)')
    demo.add_argument('--objectstore', choices=('memstore', 'bluestore'),
                      default='memstore',
                      help='OSD store of the throwaway cluster')
    demo.add_argument('--workdir', help='directory for the cluster '
                                        '(default: a new temporary one)')
    demo.add_argument('--keep', action='store_true',
                      help='leave the cluster running and print how to '
                           'stop it')

    start = sub.add_parser('sandbox-start',
                           help='start a throwaway Ceph cluster in DIR')
    start.add_argument('dir')
    start.add_argument('--objectstore', choices=('memstore', 'bluestore'),
                       default='memstore')
    start.add_argument('--osd-gib', type=_bounded(int, 1, 1024), default=2,
                       help='capacity of the OSD in GiB (memstore keeps '
                            'it in RAM, bluestore in a sparse file; '
                            'default: 2)')
    stop = sub.add_parser('sandbox-stop',
                          help='stop the sandbox cluster in DIR, remove DIR')
    stop.add_argument('dir')
    bench_command.add_parser(sub)
    volumes.add_parsers(sub)
    migrations.add_parsers(sub)
    status.add_parser(sub)
    for name in MANAGEMENT + ('status',):
        context.add_arguments(sub.choices[name], command=True)
    return parser


def _setup_logging(args):
    """oslo.log as the config files say (``log_file``...), and quiet on
    standard error when they name no log file: standard output is the
    command's answer."""
    conf = cfg.ConfigOpts()
    logging.register_options(conf)
    argv = []
    for path in getattr(args, 'config_file', None) or []:
        argv += ['--config-file', path]
    conf(argv, project='rbdmig')
    if args.debug:
        conf.set_override('debug', True)
    if not conf.log_file:
        conf.set_override('use_stderr', True)
    logging.setup(conf, 'rbdmig')
    if not args.debug and not conf.log_file:
        # Say only what goes wrong; the commands print their own progress.
        std_logging.getLogger().setLevel(std_logging.WARNING)


MANAGEMENT = ('backends', 'create', 'list', 'show', 'delete', 'import',
              'migrate', 'run-migration', 'drain', 'recover')
# Errors that refuse a request before anything changed: exit status 3.
_REFUSALS = (exception.InvalidInput, exception.InvalidVolume,
             exception.VolumeNotFound, exception.VolumeExists,
             exception.MigrationInProgress)
EXIT_FAILED, EXIT_REFUSED = 1, 3


def main(argv=None):
    """Run the command; return its exit status (0 done or accepted, 1
    failed, 2 bad usage, 3 refused before anything changed)."""
    # It means nothing to an operator, and would be printed on --help.
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    args = _parser().parse_args(argv)
    _setup_logging(args)
    try:
        return _run(args)
    except exception.RbdmigError as err:
        from rbdmig.migration import service
        refused = isinstance(err, _REFUSALS + (service.Rejected,))
        print('rbdmig: %s: %s' % ('refused' if refused else 'error',
                                  redact.mask(err)), file=sys.stderr)
        return EXIT_REFUSED if refused else EXIT_FAILED
    except KeyboardInterrupt:
        print('rbdmig: interrupted', file=sys.stderr)
        return 130


def _run(args):
    if args.command == 'demo':
        from rbdmig.cmd import demo
        return demo.run(args)
    if args.command == 'bench':
        from rbdmig.bench import command as bench_command
        return bench_command.run(args)
    if args.command == 'status':
        from rbdmig.cmd import status
        return status.run(args)
    if args.command in MANAGEMENT[:6]:
        from rbdmig.cmd import volumes
        return volumes.run(args)
    if args.command in MANAGEMENT:
        from rbdmig.cmd import migrations
        return migrations.run(args)
    from rbdmig import sandbox
    if args.command == 'sandbox-start':
        # detach: the cluster outlives this command, until sandbox-stop.
        cluster = sandbox.Cluster(args.dir, objectstore=args.objectstore,
                                  osd_bytes=args.osd_gib * units.Gi,
                                  detach=True).start()
        print('cluster %s is up (%s, %d GiB); rbdmig config: %s'
              % (cluster.fsid, args.objectstore, args.osd_gib,
                 cluster.rbdmig_conf_path))
        print('stop it with: rbdmig sandbox-stop %s' % args.dir)
        return 0
    if not os.path.exists(os.path.join(args.dir, sandbox.MARKER_FILE)):
        raise exception.InvalidInput(
            reason='%s holds no rbdmig sandbox.' % args.dir)
    pids = sandbox.stop_dir(args.dir)
    print('stopped %d daemon(s); removed %s' % (len(pids), args.dir))
    return 0


if __name__ == '__main__':
    sys.exit(main())
