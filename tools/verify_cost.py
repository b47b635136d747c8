"""Time whole moves at each ``migration_verify`` level on a sandbox.

``rbdmig bench`` measures every method and tool; this measures only what
the choice of the default verification level needs, in minutes: for each
method, fill and level, a fresh volume of the bench's seeded data is moved
from ``ceph-a`` to ``ceph-b`` by ``migrate_volume`` (checks, copy,
verification, rename, removal of the source), ``--repeat`` times in
alternating order; the destination's digest must equal the source's.
Prints the medians and each level's cost over ``none``::

    .venv/bin/python tools/verify_cost.py --size 1 --repeat 3

Fill ``thin`` is the bench's big thin volume: ``--thin`` GiB holding
``--size`` GiB in scattered 4 MiB pieces (whole objects)::

    .venv/bin/python tools/verify_cost.py --fills thin --thin 256
"""

import argparse
import contextlib
import logging
import statistics
import tempfile
import time

from oslo_config import cfg
from oslo_utils import units

from rbdmig import ext
from rbdmig import objects
from rbdmig import opts
from rbdmig import sandbox
from rbdmig import volume as volume_pkg
from rbdmig.bench import volumes

LEVELS = ('none', 'extents', 'osd_checksum', 'checksum')
THIN_PIECE = 4 * units.Mi
SEED = 20240613


class _Seen(logging.Handler):
    """The method that really moved a volume, and any verify fallback."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.method = None
        self.fallbacks = 0

    def emit(self, record):
        if str(record.msg).startswith('Migrating ') and isinstance(
                record.args, dict):
            self.method = record.args.get('method')
        if 'instead of osd_checksum' in str(record.msg):
            self.fallbacks += 1


def _drivers(cluster):
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    conf(['--config-file', cluster.rbdmig_conf_path], project='rbdmig')
    return conf, {name: volume_pkg.load_driver(name, conf=conf)
                  for name in ('ceph-a', 'ceph-b')}


def _move(conf, drivers, bench, case, size, thin):
    method, fill, level = case
    fraction, piece = volumes.FILLS.get(fill), volumes.EXTENT
    if fill == 'thin':
        size, fraction, piece = thin, size / thin, THIN_PIECE
    vol = objects.Volume(size=max(1, size // units.Gi))
    bench.create('ceph-a', vol.name, size)
    try:
        bench.fill('ceph-a', vol.name, size, fraction, SEED, piece=piece)
        before = bench.digest('ceph-a', vol.name)
        conf.set_override('rbd_migration_method', method, group='ceph-a')
        conf.set_override('migration_verify', level, group='ceph-a')
        dst = drivers['ceph-b']
        host = {'host': '%s#%s' % (dst.host, dst.configuration.rbd_pool),
                'capabilities': dst.get_volume_stats(refresh=True)}
        seen = _Seen()
        logger = logging.getLogger('rbdmig')
        logger.addHandler(seen)
        try:
            began = time.monotonic()
            moved = drivers['ceph-a'].migrate_volume(None, vol, host)
            took = time.monotonic() - began
        finally:
            logger.removeHandler(seen)
        if moved != (True, None) or seen.method != method:
            raise RuntimeError('%s: moved %s by %s' % (case, moved,
                                                       seen.method))
        if bench.digest('ceph-b', vol.name) != before:
            raise RuntimeError('%s: the copy differs' % (case,))
        return took, seen.fallbacks
    finally:
        bench.purge(vol.name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=1, help='GiB')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--methods', nargs='+',
                        default=['extents', 'offload'])
    parser.add_argument('--fills', nargs='+', default=['full', '10%'],
                        choices=sorted(volumes.FILLS) + ['thin'])
    parser.add_argument('--thin', type=int, default=256,
                        help='GiB of the thin fill\'s volume')
    parser.add_argument('--levels', nargs='+', default=list(LEVELS))
    parser.add_argument('--objectstore', default='bluestore')
    args = parser.parse_args()
    if not ext.available():
        parser.error(ext.unavailable_reason())
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger('rbdmig').setLevel(logging.INFO)
    logging.getLogger('rbdmig').propagate = False
    size = args.size * units.Gi
    cases = [(m, f, v) for m in args.methods for f in args.fills
             for v in args.levels]
    times = {case: [] for case in cases}
    fallbacks = 0
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(tempfile.TemporaryDirectory())
        cluster = stack.enter_context(sandbox.Cluster(
            workdir, name='verify-cost', objectstore=args.objectstore,
            osd_bytes=4 * size + 2 * units.Gi))
        bench = volumes.Cluster(cluster)
        stack.callback(bench.close)
        conf, drivers = _drivers(cluster)
        for rep in range(args.repeat):
            for case in (cases if rep % 2 == 0 else cases[::-1]):
                took, fell = _move(conf, drivers, bench, case, size,
                                   args.thin * units.Gi)
                fallbacks += fell
                times[case].append(took)
                print('run %d %-8s %-4s %-12s %7.3f s' % ((rep,) + case
                                                          + (took,)),
                      flush=True)
    print('\n%d GiB, %s, median of %d; %d osd_checksum fallbacks\n'
          % (args.size, args.objectstore, args.repeat, fallbacks))
    print('%-8s %-4s %-12s %9s %9s' % ('method', 'fill', 'level', 'seconds',
                                       'vs none'))
    for method in args.methods:
        for fill in args.fills:
            base = statistics.median(times[(method, fill, 'none')]) if (
                'none' in args.levels) else None
            for level in args.levels:
                median = statistics.median(times[(method, fill, level)])
                over = ('%+.0f %%' % ((median / base - 1) * 100)
                        if base else '-')
                print('%-8s %-4s %-12s %9.3f %9s' % (method, fill, level,
                                                     median, over))


if __name__ == '__main__':
    main()
