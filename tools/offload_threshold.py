"""Time ``offload`` at several ``rbd_offload_through_host_below`` shares.

``rbdmig bench`` measures the default only; this measures what choosing
the default needs, in minutes: the bench's own volumes and cases (a fresh
seeded volume per case, moved ``ceph-a`` -> ``ceph-b``, its digest
checked), ``rbd deep cp`` + ``rm`` beside them, ``--repeat`` times in
alternating order, on a one-OSD sandbox, optionally with every contender
behind a shaped link (``--link-mbit``, as root).  Prints the medians of
wall time, host CPU and OSD CPU, and each share's ratio to ``rbd deep
cp``::

    sudo .venv/bin/python tools/offload_threshold.py --shares 0 0.5 1
    sudo .venv/bin/python tools/offload_threshold.py --link-mbit 800
"""

import argparse
import contextlib
import statistics
import tempfile

from oslo_utils import units

from rbdmig import ext
from rbdmig import sandbox
from rbdmig.bench import cases
from rbdmig.bench import command
from rbdmig.bench import link as thin_link
from rbdmig.bench import plan
from rbdmig.bench import runner
from rbdmig.bench import volumes

OPTION = 'rbd_offload_through_host_below'


def steps(shares):
    """``rbd deep cp`` + ``rm``, then ``offload`` at each share."""
    found = [{'label': cases.RBD_DEEP_CP, 'kind': cases.RBD_DEEP_CP,
              'route': plan.MOVE}]
    for share in shares:
        step = plan._assisted(plan.OFFLOAD)
        step.update(label='offload below=%g' % share,
                    options={OPTION: share})
        found.append(step)
    return found


def medians(runs, label, key):
    good = [r for r in runs if r['case'] == label and r.get('ok')]
    if len(good) < len([r for r in runs if r['case'] == label]):
        raise RuntimeError('%s failed: %s' % (label, [
            r.get('error') for r in runs if r['case'] == label
            and not r.get('ok')]))
    return statistics.median(key(r) for r in good)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=command.parse_size, default='1',
                        help='GiB (1, 1G) or MiB (64M)')
    parser.add_argument('--fills', nargs='+', default=list(volumes.FILLS),
                        choices=list(volumes.FILLS))
    parser.add_argument('--shares', nargs='+', type=float,
                        default=[0, 0.25, 0.5, 0.75, 1])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--link-mbit', type=int, default=0)
    parser.add_argument('--objectstore', default='bluestore',
                        choices=('bluestore', 'memstore'))
    args = parser.parse_args()
    if not ext.available():
        parser.error(ext.unavailable_reason())
    if args.link_mbit:
        try:
            thin_link.check(args.link_mbit)
        except thin_link.LinkError as err:
            parser.error(str(err))
    chosen = steps(args.shares)
    with contextlib.ExitStack() as stack:
        link = (stack.enter_context(thin_link.Link(args.link_mbit))
                if args.link_mbit else None)
        workdir = stack.enter_context(tempfile.TemporaryDirectory())
        cluster = stack.enter_context(sandbox.Cluster(
            workdir, name='threshold', objectstore=args.objectstore,
            osd_bytes=3 * args.size + units.Gi,
            public_addr=link.host_ip if link else '127.0.0.1'))
        label = (plan.link_label(1, link.mbit) if link
                 else plan.cluster_name(1))
        bench = runner.Bench(cluster, label, print, repeat=args.repeat)
        stack.callback(bench.close)
        for number, fill in enumerate(args.fills):
            bench.run_volume(plan.describe(label, args.size, fill,
                                           args.size + number),
                             chosen, link=link)
    print('\n%s, %s, %s, median of %d\n' % (
        plan.size_text(args.size), label, args.objectstore, args.repeat))
    print('%-5s %-20s %8s %8s %8s %10s' % (
        'fill', 'case', 'seconds', 'host cpu', 'osd cpu', 'vs deep cp'))
    for fill in args.fills:
        runs = [r for r in bench.runs if r['fill'] == fill]
        tool = medians(runs, cases.RBD_DEEP_CP, lambda r: r['seconds'])
        for step in chosen:
            seconds = medians(runs, step['label'], lambda r: r['seconds'])
            print('%-5s %-20s %8.3f %8.3f %8.3f %9.2fx' % (
                fill, step['label'], seconds,
                medians(runs, step['label'],
                        lambda r: r['cpu_user'] + r['cpu_sys']),
                medians(runs, step['label'], lambda r: r['osd_cpu']),
                tool / seconds))


if __name__ == '__main__':
    main()
