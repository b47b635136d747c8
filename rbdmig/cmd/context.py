"""What every management command needs: config, database, drivers."""

import argparse
import socket

from oslo_config import cfg

from rbdmig import opts
from rbdmig import volume as volume_pkg
from rbdmig.db import api as db_api
from rbdmig.db import migration as db_migration
from rbdmig.migration import notify
from rbdmig.migration import service


class Drivers(dict):
    """``{backend: driver}``, each loaded (set up, checked) when first
    needed: ``rbdmig show`` reads the database and reaches no cluster."""

    def __init__(self, conf):
        super().__init__()
        self.conf = conf
        self.names = list(conf.enabled_backends or [])

    def __missing__(self, backend):
        if backend not in self.names:
            raise KeyError(backend)
        driver = volume_pkg.load_driver(backend, conf=self.conf)
        self[backend] = driver
        return driver

    def __contains__(self, backend):
        return backend in self.names

    def __iter__(self):
        return iter(self.names)

    def items(self):
        return [(name, self[name]) for name in self.names]

    def __len__(self):
        return len(self.names)


def add_arguments(parser, command=False):
    """``--config-file``, before the command (as in every OpenStack tool)
    or, for convenience, after it."""
    parser.add_argument('--config-file', action='append',
                        default=argparse.SUPPRESS if command else [],
                        metavar='PATH',
                        help='rbdmig.conf naming the backends, the database '
                             'and notifications (repeatable; default: '
                             '/etc/rbdmig/rbdmig.conf)')


def load_conf(args):
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    argv = []
    for path in args.config_file:
        argv += ['--config-file', path]
    conf(argv, project='rbdmig')
    return conf


def load(args):
    """The :class:`rbdmig.migration.service.Service` the args configure."""
    conf = load_conf(args)
    db = db_api.API.from_conf(conf)
    db_migration.db_sync(db.engine)
    return service.Service(db, Drivers(conf),
                           notify.from_conf(conf, socket.gethostname()),
                           lease=conf.migration_lease)
