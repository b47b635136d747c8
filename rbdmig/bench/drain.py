"""The bench's drain case: many thin volumes, the cost of each one's move."""

# ``python -m rbdmig.bench.drain '<spec json>'`` creates the spec's
# volumes (1 GiB, thin, one 4 MiB object of data each) in the source
# pool, adopts them into a database of its own, drains them with
# ``Service.drain`` as ``rbdmig drain`` does, and prints one JSON line:
# the drain's wall time, and where each volume's time went, from the
# crash points (``faults.POINTS.hook``) each move passes.

import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from oslo_utils import units

DEFAULT_VOLUMES = 1000
QUICK_VOLUMES = 20
VOLUME_SIZE = units.Gi
DATA = 4 * units.Mi         # one object of data per volume
OFFLOAD = 'offload'
# Marks of the bench's own, around what the service's points do not
# bound: a volume's move begins, its checks and claim end, it ends.
BEGIN, CLAIMED, END = 'drain.begin', 'drain.claimed', 'drain.end'


def plan(volumes, parallels):
    """The drain runs, in order: one per parallelism, ``volumes`` each.

    :returns: ``[{'label', 'volumes', 'parallel'}]``; none for 0 volumes.
    """
    if not volumes:
        return []
    return [{'label': 'drain %d x 1 GiB thin, parallel %d' % (volumes, p),
             'volumes': volumes, 'parallel': p}
            for p in dict.fromkeys(parallels)]


class Recorder(object):
    """Times between the points each thread reaches, by segment.

    A segment is named ``previous -> point``; the time from a thread's
    previous point to this one is added to it.  Summed over threads,
    it is busy time: with ``parallel`` moves at once, a segment's wall
    share is about its busy time over ``parallel``.
    """

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.seconds = collections.defaultdict(float)
        self.counts = collections.Counter()
        self._last = threading.local()
        self._lock = threading.Lock()

    def __call__(self, name):
        now = self.clock()
        last = getattr(self._last, 'point', None)
        self._last.point = None if name == END else (name, now)
        if name == BEGIN or last is None:
            return
        segment = '%s -> %s' % (last[0], name)
        with self._lock:
            self.seconds[segment] += now - last[1]
            self.counts[segment] += 1


def breakdown(seconds, counts, volumes):
    """Segments by cost, each as busy seconds per volume.

    :returns: ``[{'segment', 'per_volume', 'count'}]``, costliest first.
    """
    return sorted(({'segment': s, 'per_volume': t / volumes,
                    'count': counts[s]} for s, t in seconds.items()),
                  key=lambda row: -row['per_volume'])


def summarize(row):
    """The lines the bench prints for one drain run."""
    if not row.get('ok'):
        return ['  %-44s FAILED: %s' % (row['label'], row.get('error'))]
    lines = ['  %-44s %7.2f s, %.3f s wall per volume (%d moved, method '
             '%s, %d by the generic copy)' % (
                 row['label'], row['seconds'], row['per_volume'],
                 row['moved'], row['method'], row.get('generic', 0))]
    for seg in row['breakdown'][:8]:
        lines.append('      %-52s %.4f s/volume busy' % (
            seg['segment'], seg['per_volume']))
    lines.append('      process start (once) %.2f s' % row['process_start'])
    return lines


def table_lines(rows, top=5):
    """The RST section of the drain runs (none without runs)."""
    from rbdmig.bench import report

    if not rows:
        return []
    lines = [[r['label'], r.get('method', '-'),
              '%.1f' % r['seconds'] if r.get('ok') else 'FAILED',
              '%.3f' % r['per_volume'] if r.get('ok') else '-',
              '%.2f' % r['process_start'] if r.get('ok') else '-']
             for r in rows]
    out = ['Drain: orchestration cost per volume', '=' * 36, '',
           'Service.drain (what ``rbdmig drain`` runs) of N thin volumes '
           '(1 GiB, one 4 MiB object of data each), adopted into a '
           'database of its own: its wall time, that over N, and the '
           'start of a fresh ``rbdmig`` process (paid once per drain).',
           '', report.table(['run', 'method', 'wall s', 's per volume',
                             'process start s'], lines), '',
           'Where each volume\'s time went (busy seconds per volume, from '
           'one crash point to the next, summed over the moves running at '
           'once; the %d costliest):' % top, '']
    for row in rows:
        if row.get('ok'):
            out += [row['label'], '', report.table(
                ['segment', 's per volume'],
                [[seg['segment'], '%.4f' % seg['per_volume']]
                 for seg in row['breakdown'][:top]]), '']
    return out


def run_in_process(sandbox_cluster, step, method, timeout=3600):
    """Run one drain (of :func:`plan`) in a process of its own on a
    started sandbox whose first two backends are RBD; return its row."""
    from rbdmig import sandbox

    (src, src_pool), (dst, dst_pool) = list(
        sandbox_cluster.backends.items())[:2]
    spec = dict(step, method=method, src=src, dst=dst, src_pool=src_pool,
                dst_pool=dst_pool, ceph_conf=sandbox_cluster.conf_path,
                rbdmig_conf=sandbox_cluster.rbdmig_conf_path)
    proc = subprocess.run(
        (sys.executable, '-m', 'rbdmig.bench.drain', json.dumps(spec)),
        capture_output=True, text=True, env=sandbox.processes.env(),
        timeout=timeout, check=False)
    if proc.returncode:
        lines = proc.stderr.strip().splitlines() or ['(no output)']
        return dict(step, method=method, ok=False,
                    error='drain exited %d: %s' % (proc.returncode,
                                                   lines[-1]))
    return dict(step, **json.loads(proc.stdout.strip().splitlines()[-1]))


# -- in the case's own process --


def _create(ioctx, count, rbd):
    """``count`` thin volumes of :data:`VOLUME_SIZE`, :data:`DATA` each."""
    block = os.urandom(DATA)
    names = []
    for _ in range(count):
        name = 'volume-%s' % uuid.uuid4()
        rbd.RBD().create(ioctx, name, VOLUME_SIZE)
        with rbd.Image(ioctx, name) as image:
            image.write(block, 0)
        names.append(name)
    return names


def _purge(spec, names, rbd, rados):
    """Remove the run's volumes, where they are: the next run starts
    with the pools as they were."""
    names = set(names)
    with rados.Rados(conffile=spec['ceph_conf'],
                     rados_id='admin') as client:
        for pool in (spec['src_pool'], spec['dst_pool']):
            with client.open_ioctx(pool) as ioctx:
                for name in names.intersection(rbd.RBD().list(ioctx)):
                    rbd.RBD().remove(ioctx, name)


def _conf(spec, workdir):
    """The sandbox's rbdmig.conf, with a database and method of our own."""
    extra = os.path.join(workdir, 'drain.conf')
    with open(extra, 'w') as f:
        f.write('[%s]\nrbd_migration_method = %s\n[database]\n'
                'connection = sqlite:///%s\n' % (
                    spec['src'], spec['method'],
                    os.path.join(workdir, 'rbdmig.sqlite')))
    return [spec['rbdmig_conf'], extra]


def _process_start():
    """Seconds a fresh interpreter takes to import the CLI."""
    began = time.monotonic()
    subprocess.run((sys.executable, '-c', 'import rbdmig.cmd.main'),
                   check=True)
    return time.monotonic() - began


def run(spec):
    """Create, adopt and drain the spec's volumes; return the row."""
    import argparse

    import rados
    import rbd

    from rbdmig import faults
    from rbdmig.cmd import context

    row = {'volumes': spec['volumes'], 'parallel': spec['parallel'],
           'method': spec['method']}
    with tempfile.TemporaryDirectory(prefix='rbdmig-drain-') as workdir:
        began = time.monotonic()
        with rados.Rados(conffile=spec['ceph_conf'],
                         rados_id='admin') as client:
            with client.open_ioctx(spec['src_pool']) as ioctx:
                names = _create(ioctx, spec['volumes'], rbd)
        args = argparse.Namespace(config_file=_conf(spec, workdir))
        svc = context.load(args)
        row['adopted'] = len(svc.adopt(spec['src']))
        row['setup_seconds'] = time.monotonic() - began
        recorder = Recorder()
        request = svc.request

        def claimed(*a, **kw):
            try:
                return request(*a, **kw)
            finally:
                recorder(CLAIMED)

        migrate = svc.migrate

        def timed(*a, **kw):
            recorder(BEGIN)
            try:
                return migrate(*a, **kw)
            finally:
                recorder(END)

        svc.request, svc.migrate = claimed, timed
        faults.POINTS.hook = recorder
        began = time.monotonic()
        try:
            failed = svc.drain(spec['src'], spec['dst'], spec['parallel'])
        finally:
            faults.POINTS.hook = None
        row['seconds'] = time.monotonic() - began
        row['moved'] = row['volumes'] - failed
        row['left'] = len(svc.db.list_volumes(backend=spec['src']))
        row['breakdown'] = breakdown(recorder.seconds, recorder.counts,
                                     row['volumes'])
        _purge(spec, names, rbd, rados)
    # Moves the source driver handed to the generic copy (the data
    # through this host): an offload drain should have none.
    row['generic'] = sum(n for s, n in recorder.counts.items()
                         if s.endswith('-> service.generic'))
    row['per_volume'] = row['seconds'] / row['volumes']
    row['process_start'] = _process_start()
    row['ok'] = failed == 0 and row['adopted'] == row['volumes']
    if not row['ok']:
        row['error'] = '%d of %d volumes did not move' % (failed,
                                                          row['volumes'])
    return row


def main():
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps(run(json.loads(sys.argv[1]))))


if __name__ == '__main__':
    main()
