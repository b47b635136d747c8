"""rbdmig recover: finish or undo migrations an interrupted process left."""

import sys

from oslo_config import cfg

from rbdmig import exception
from rbdmig import opts
from rbdmig import volume as volume_pkg


def add_parser(sub):
    parser = sub.add_parser(
        'recover', help='finish or undo the migrations that a killed or '
                        'crashed process left journaled in Ceph')
    parser.add_argument('--config-file', action='append', default=[],
                        metavar='PATH',
                        help='rbdmig.conf naming the backends (repeatable; '
                             'default: /etc/rbdmig/rbdmig.conf)')
    parser.add_argument('--backend', action='append', default=[],
                        help='recover only this backend (repeatable; '
                             'default: every RBD backend enabled)')
    parser.add_argument('--any-host', action='store_true',
                        help='also take over migrations another host '
                             'journaled (only when that host is gone for '
                             'good)')


def run(args, out=sys.stdout):
    """Recover every RBD backend asked for; 0 unless one failed."""
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    argv = []
    for path in args.config_file:
        argv += ['--config-file', path]
    conf(argv, project='rbdmig')
    backends = args.backend or list(conf.enabled_backends)
    if not backends:
        raise exception.InvalidConfiguration(
            reason='no backend to recover: enabled_backends is empty and '
                   'no --backend was given.')
    failed = 0
    for backend in backends:
        driver = volume_pkg.load_driver(backend, conf=conf)
        recover = getattr(driver, 'recover_migrations', None)
        if recover is None:
            if args.backend:
                raise exception.InvalidInput(
                    reason='backend %s is not an RBD backend.' % backend)
            continue
        outcomes = list(driver.recovered)  # done when the driver started
        if args.any_host:
            outcomes += recover(any_host=True)
        if not outcomes:
            out.write('%s: nothing to recover\n' % backend)
        for outcome in outcomes:
            out.write('%s: %s\n' % (backend, outcome))
            failed += outcome.action == 'failed'
    return 1 if failed else 0
