"""Drain wall time by ``--parallel`` on a throwaway sandbox.

``tools/drain_sweep.py --volumes 200 --parallel 1 2 4 8 16`` starts a
one-OSD sandbox, and for each parallelism creates that many thin
volumes (1 GiB, one 4 MiB object each), drains them with ``offload``
(``rbdmig drain``'s Service.drain) and prints the wall time per volume
and where it went (``rbdmig.bench.drain``).
"""

import argparse
import json
import os
import sys
import tempfile

from oslo_utils import units

from rbdmig import sandbox
from rbdmig.bench import drain


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--volumes', type=int, default=200)
    parser.add_argument('--parallel', type=int, nargs='+',
                        default=[1, 2, 4, 8, 16])
    parser.add_argument('--objectstore', default='bluestore',
                        choices=('bluestore', 'memstore'))
    parser.add_argument('--method', default=drain.OFFLOAD)
    parser.add_argument('--output', help='write the rows as JSON here')
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix='rbdmig-sweep-') as workdir:
        cluster = sandbox.Cluster(
            os.path.join(workdir, 'ceph'), name='drain-sweep',
            objectstore=args.objectstore,
            osd_bytes=2 * args.volumes * drain.DATA + 2 * units.Gi)
        cluster.start()
        try:
            for step in drain.plan(args.volumes, args.parallel):
                rows.append(drain.run_in_process(cluster, step,
                                                  args.method))
                for line in drain.summarize(rows[-1]):
                    print(line, flush=True)
        finally:
            cluster.stop()
    if args.output:
        with open(args.output, 'w') as f:
            json.dump(rows, f, indent=1)
    return 0 if all(r.get('ok') for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
