"""``rbdmig bench``: its arguments, and the run from start to files."""

import argparse
import json
import os
import re
import sys
import tempfile

from oslo_utils import units

from rbdmig.cmd import migrations

DEFAULT_SIZES = ('1', '4')     # GiB
QUICK_SIZES = ('64M',)
DEFAULT_OSDS = (1, 3)
DEFAULT_LINK_MBIT = 800
DEFAULT_THIN_SIZE = '256'   # GiB, holding the smallest size in objects
QUICK_THIN_SIZE = '1'
DEFAULT_DRAIN_VOLUMES, QUICK_DRAIN_VOLUMES = 1000, 20
# The data measured so far, kept in the output directory until the run
# is written out: a long run that fails late is not lost.
PARTIAL = '.benchmark-partial.json'
_SIZE = re.compile(r'^(\d+)\s*(M|MiB|G|GiB)?$', re.I)


def parse_size(text):
    """``'4'`` or ``'4G'`` is 4 GiB, ``'64M'`` 64 MiB; returns bytes."""
    match = _SIZE.match(text.strip())
    if not match or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(
            '%r is not a size: a whole number of GiB (4, 4G) or MiB (64M)'
            % text)
    unit = (match.group(2) or 'G')[0].upper()
    return int(match.group(1)) * (units.Mi if unit == 'M' else units.Gi)


def parse_thin_size(text):
    """A size as :func:`parse_size` reads it, or ``0`` for none."""
    return 0 if text.strip() == '0' else parse_size(text)


def _whole(text):
    if not text.isdigit():
        raise argparse.ArgumentTypeError('%r is not a whole number >= 0'
                                         % text)
    return int(text)


def _positive(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError('%r is not a whole number >= 1'
                                         % text)
    return int(text)


def add_parser(sub):
    """Add the ``bench`` subcommand to an argparse subparsers object."""
    bench = sub.add_parser(
        'bench', help='benchmark every migration path against rbd cp/deep '
                      'cp/migration and Cinder\'s generic copy on '
                      'throwaway clusters of one and three OSDs; writes '
                      'JSON, an RST page, a PNG')
    bench.add_argument('--sizes', nargs='+', type=parse_size,
                       metavar='SIZE',
                       help='volume sizes: GiB (1, 4G) or MiB (64M) '
                            '(default: %s; --quick: %s)' % (
                                ' '.join(DEFAULT_SIZES),
                                ' '.join(QUICK_SIZES)))
    bench.add_argument('--osds', nargs='+', type=int, choices=range(1, 9),
                       metavar='N', default=list(DEFAULT_OSDS),
                       help='one sandbox per number of OSDs, run one after '
                            'the other; more than one OSD runs the moves '
                            'only (default: %s)' % ' '.join(
                                map(str, DEFAULT_OSDS)))
    bench.add_argument('--multi-osd-sizes', nargs='+', type=parse_size,
                       metavar='SIZE',
                       help='volume sizes for the sandboxes of more than '
                            'one OSD (default: --sizes)')
    bench.add_argument('--link-mbit', type=_whole, metavar='N',
                       default=DEFAULT_LINK_MBIT,
                       help='also run every contender on the full smallest '
                            'volume from a network namespace whose only link '
                            'to the one-OSD sandbox is a veth pair shaped to '
                            'N Mbit/s each way (needs root, ip and tc); 0 '
                            'leaves the case out (default: %d)'
                            % DEFAULT_LINK_MBIT)
    bench.add_argument('--thin-size', type=parse_thin_size, metavar='SIZE',
                       help='also move, on the one-OSD sandbox, a volume of '
                            'SIZE holding the smallest size\'s worth of data '
                            'in scattered 4 MiB objects; 0 leaves it out '
                            '(default: %s GiB; --quick: %s GiB)' % (
                                DEFAULT_THIN_SIZE, QUICK_THIN_SIZE))
    bench.add_argument('--drain-volumes', type=_whole, metavar='N',
                       help='also drain, on the one-OSD sandbox, N thin '
                            'volumes (1 GiB, one 4 MiB object each) with '
                            'offload, and report the wall time per volume '
                            'and where it goes; 0 leaves it out (default: '
                            '%d; --quick: %d)' % (DEFAULT_DRAIN_VOLUMES,
                                                  QUICK_DRAIN_VOLUMES))
    bench.add_argument('--drain-parallel', nargs='+', type=_positive,
                       metavar='N',
                       help='one drain per N, the volumes moving at once '
                            '(default: rbdmig drain\'s default with '
                            'offload, %d)' % migrations.DRAIN_PARALLEL_OFFLOAD)
    bench.add_argument('--objectstore', choices=('bluestore', 'memstore'),
                       help='OSD store: bluestore on a sparse file '
                            '(default) or memstore in RAM (--quick)')
    bench.add_argument('--repeat', type=_positive,
                       help='runs of every case; medians are reported '
                            '(default 3; --quick: 1)')
    bench.add_argument('--quick', action='store_true',
                       help='tiny and fast, to check the bench works: 64 '
                            'MiB volumes (the full one only on more than '
                            'one OSD), a big thin volume of 1 GiB (the '
                            'moves only), memstore, one run, on each '
                            'sandbox')
    bench.add_argument('--output-dir',
                       help='where benchmark.json/.rst/.png go (default: '
                            'doc; --quick: a new temporary directory)')
    bench.add_argument('--workdir', help='directory for the clusters '
                                         '(default: a new temporary one)')


def run(args, out=sys.stdout):
    """Run the bench; return 0 when every case ran and verified, else 1.

    2 when the thin link cannot be made here (nothing is run).
    """
    from rbdmig.bench import drain
    from rbdmig.bench import link
    from rbdmig.bench import output
    from rbdmig.bench import runner

    def say(line):
        out.write(line + '\n')
        out.flush()

    try:
        link.check(args.link_mbit)
    except link.LinkError as err:
        say(str(err))
        return 2
    quick = args.quick
    sizes = args.sizes or [parse_size(s) for s in (
        QUICK_SIZES if quick else DEFAULT_SIZES)]
    thin_size = args.thin_size
    if thin_size is None:
        thin_size = parse_size(QUICK_THIN_SIZE if quick
                               else DEFAULT_THIN_SIZE)
    if thin_size and (thin_size <= min(sizes) or thin_size % (4 * units.Mi)):
        say('--thin-size must be a multiple of 4 MiB above the smallest '
            'size (%d MiB), which it holds in data; 0 leaves it out.'
            % (min(sizes) // units.Mi))
        return 2
    drain_volumes = args.drain_volumes
    if drain_volumes is None:
        drain_volumes = (QUICK_DRAIN_VOLUMES if quick
                         else DEFAULT_DRAIN_VOLUMES)
    # The drain moves by offload: rbdmig drain's default for it.
    drains = drain.plan(drain_volumes, args.drain_parallel or
                        [migrations.DRAIN_PARALLEL_OFFLOAD])
    objectstore = args.objectstore or ('memstore' if quick else 'bluestore')
    repeat = args.repeat or (1 if quick else 3)
    out_dir = args.output_dir or (
        tempfile.mkdtemp(prefix='rbdmig-bench-quick-') if quick else 'doc')
    partial = os.path.join(out_dir, PARTIAL)

    def checkpoint(data):
        os.makedirs(out_dir, exist_ok=True)
        with open(partial + '.tmp', 'w') as f:
            json.dump(data, f)
        os.replace(partial + '.tmp', partial)

    try:
        data = runner.run(sorted(set(sizes)), objectstore, repeat,
                          workdir=args.workdir, say=say,
                          osd_counts=list(dict.fromkeys(args.osds)),
                          multi_osd_sizes=args.multi_osd_sizes and sorted(
                              set(args.multi_osd_sizes)),
                          checkpoint=checkpoint, link_mbit=args.link_mbit,
                          thin_size=thin_size,
                          multi_osd_fills=['full'] if quick else None,
                          thin_verify=not quick, drains=drains)
    except KeyboardInterrupt:
        say('Interrupted; the sandboxes were stopped.  What was measured '
            'until the last volume is in %s.' % partial)
        return 130
    paths = output.write(data, out_dir)
    if os.path.exists(partial):
        os.unlink(partial)
    with open(paths['rst']) as f:
        say(f.read())
    say('Results: %s (the bench took %.1f minutes)' % (
        ', '.join(p for p in paths.values() if p),
        data['wall_seconds'] / 60))
    if not paths['png']:
        say('No chart: matplotlib is missing (pip install -e .[bench]).')
    runs = data.get('runs', [])
    bad = [r for r in runs if not r.get('ok')]
    bad += [r for r in data.get('ceiling', []) if not r.get('ok')]
    bad += [c for c in data['config']['clusters'] if c.get('error')]
    bad += [d for d in data.get('drain', []) if not d.get('ok')]
    say('%d of %d cases failed.' % (len(bad), len(runs)) if bad
        else 'Every case ran and every checksum matched.')
    return 1 if bad else 0
