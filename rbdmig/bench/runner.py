"""The bench run: one sandbox, the same volumes, every case timed."""

import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time

from oslo_utils import units

from rbdmig import sandbox
from rbdmig.bench import cases
from rbdmig.bench import volumes
from rbdmig.volume.drivers import rbd as rbd_driver
from rbdmig.ceph import methods as rbd_methods

A, B, FILE = 'ceph-a', 'ceph-b', volumes.FILE
# Routes: where a case copies the volume, and what becomes of it.
COPY, MOVE, STAY, TO_FILE, FROM_FILE = ('copy', 'move', 'stay', 'to file',
                                        'from file')


def default_method():
    """The driver's default ``rbd_migration_method``."""
    return next(o.default for o in rbd_driver.RBD_OPTS
                if o.name == 'rbd_migration_method')


def plan():
    """Return the cases, in run order, as dicts (label, kind, route...).

    Every method of ``rbd_methods.METHODS`` is included, so a new one
    shows up without touching the bench.
    """
    # Ceph's tools as whole moves, the source removed, as rbdmig's.
    steps = [
        {'label': cases.RBD_CP, 'kind': cases.RBD_CP, 'route': MOVE},
        {'label': cases.RBD_DEEP_CP, 'kind': cases.RBD_DEEP_CP,
         'route': MOVE},
        {'label': cases.RBD_MIGRATION, 'kind': cases.RBD_MIGRATION,
         'route': MOVE},
        {'label': 'cinder generic RBD->RBD', 'kind': cases.CINDER,
         'route': COPY},
    ]
    for method in rbd_methods.METHODS:
        steps.append({'label': 'rbdmig ' + method, 'kind': cases.ASSISTED,
                      'method': method, 'route': MOVE})
    steps += [
        {'label': 'rbdmig %s +progress' % default_method(),
         'kind': cases.ASSISTED, 'method': default_method(),
         'progress': True, 'route': MOVE},
        {'label': 'rbdmig same pool', 'kind': cases.SAME_POOL,
         'route': STAY},
        {'label': 'rbdmig generic RBD->RBD', 'kind': cases.GENERIC,
         'route': COPY},
        {'label': 'rbdmig generic RBD->file', 'kind': cases.GENERIC,
         'route': TO_FILE},
        {'label': 'rbdmig generic file->RBD', 'kind': cases.GENERIC,
         'route': FROM_FILE},
        {'label': 'rbdmig generic RBD->file +progress',
         'kind': cases.GENERIC, 'progress': True, 'route': TO_FILE},
    ]
    return steps


def machine_info(objectstore):
    """CPU, cores, RAM, kernel, Ceph version and load, for the JSON."""
    info = {'objectstore': objectstore, 'cores': os.cpu_count(),
            'python': platform.python_version(),
            'kernel': platform.release(), 'load_at_start': os.getloadavg()}
    with open('/proc/cpuinfo') as f:
        models = re.findall(r'^model name\s*:\s*(.*)$', f.read(), re.M)
    info['cpu'] = models[0] if models else platform.processor()
    with open('/proc/meminfo') as f:
        info['ram_bytes'] = int(re.search(r'MemTotal:\s*(\d+)',
                                          f.read()).group(1)) * units.Ki
    out = subprocess.run(('ceph', '--version'), capture_output=True,
                         text=True, check=False).stdout.strip()
    info['ceph'] = out or 'unknown'
    return info


_RATE = re.compile(r'bytes/sec:\s*([\d.]+)\s*([KMGT]i?B)?(?:/s)?')
_UNITS = {None: 1, 'B': 1, 'KiB': units.Ki, 'MiB': units.Mi,
          'GiB': units.Gi, 'TiB': units.Ti}


def parse_rbd_bench(output):
    """Return the bytes/s of ``rbd bench``'s summary line."""
    found = _RATE.findall(output)
    if not found:
        raise ValueError('no bytes/sec in rbd bench output: %r'
                         % output[-300:])
    number, unit = found[-1]
    return float(number) * _UNITS[unit or None]


class Bench:
    """One bench run on a started sandbox.

    :param cluster: a started :class:`rbdmig.sandbox.Cluster`.
    :param say: prints one line of progress.
    """

    def __init__(self, cluster, say, repeat=1, timeout=1800):
        self.sandbox = cluster
        self.vols = volumes.Cluster(cluster)
        self.say = say
        self.repeat = repeat
        self.timeout = timeout
        self.runs = []
        self.ceiling = []
        self.volumes = []

    def close(self):
        self.vols.close()

    # -- the cluster's ceiling --

    def measure_ceiling(self, size):
        """``rbd bench`` seq write then read of ``size`` bytes per pool."""
        for backend in (A, B):
            image = self.vols.spec(backend, 'bench-ceiling')
            for rep in range(self.repeat):
                row = {'size': size, 'backend': backend, 'rep': rep}
                try:
                    self.vols.create(backend, 'bench-ceiling', size)
                    for io in ('write', 'read'):
                        row[io] = parse_rbd_bench(self.sandbox.rbd(
                            'bench', '--io-type', io, '--io-pattern', 'seq',
                            '--io-size', '4M', '--io-threads', '16',
                            '--io-total', str(size), image))
                    row['ok'] = True
                except Exception as err:  # reported, the run goes on
                    row.update(ok=False, error=str(err)[-500:])
                self.vols.purge('bench-ceiling')
                self.ceiling.append(row)
                self.say('  ceiling %-7s write %s read %s' % (
                    backend, _mibs(row.get('write')), _mibs(row.get('read'))))

    # -- one volume, every case --

    def run_volume(self, size, fill, seed):
        """Create a volume, run every case on it ``repeat`` times."""
        name = 'bench-%dm-%s' % (size // units.Mi, fill.rstrip('%') + (
            'pct' if fill.endswith('%') else ''))
        self.vols.purge(name)
        digest = self._create(name, size, fill, seed)
        volume = {'name': name, 'size': size, 'fill': fill, 'seed': seed,
                  'sha256': digest,
                  'allocated': self.vols.allocated(A, name),
                  'data_bytes': len(volumes.chosen_extents(
                      size, volumes.FILLS[fill], seed)) * volumes.EXTENT}
        self.volumes.append(volume)
        self.say('volume %s: %s MiB, %s allocated (%d MiB)' % (
            name, size // units.Mi, fill, volume['allocated'] // units.Mi))
        where = A
        try:
            for rep in range(self.repeat):
                for step in plan():
                    where = self._case(volume, step, rep, where)
        finally:
            self.vols.purge(name)

    def _create(self, name, size, fill, seed, backend=A):
        self.vols.create(backend, name, size)
        return self.vols.fill(backend, name, size, volumes.FILLS[fill], seed)

    def _route(self, route, where):
        other = B if where == A else A
        return {COPY: (where, other), MOVE: (where, other),
                STAY: (where, where), TO_FILE: (where, FILE),
                FROM_FILE: (FILE, other)}[route]

    def _case(self, volume, step, rep, where):
        """Run one case; return where the volume now lives."""
        name, route = volume['name'], step['route']
        src, dst = self._route(route, where)
        row = {'size': volume['size'], 'fill': volume['fill'], 'rep': rep,
               'case': step['label'], 'kind': step['kind'],
               'method': step.get('method'), 'route': route, 'src': src,
               'dst': dst, 'progress': bool(step.get('progress'))}
        try:
            if route == FROM_FILE and not self.vols.exists(FILE, name):
                # The RBD->file case failed: put the file there by hand.
                self._create(name, volume['size'], volume['fill'],
                             volume['seed'], backend=FILE)
            row['src_allocated'] = self.vols.allocated(src, name)
            if step['kind'] in (cases.CINDER, cases.GENERIC):
                self.vols.create(dst, name, volume['size'])
            row.update(self._spawn(volume, step, src, dst))
            row['checksum_ok'] = (self.vols.digest(dst, name)
                                  == volume['sha256'])
            row['dst_allocated'] = self.vols.allocated(dst, name)
            # What the same data takes when written straight into that
            # kind of backend: files count bytes, librbd whole extents.
            row['dst_reference'] = (volume['data_bytes'] if dst == FILE
                                    else volume['allocated'])
            if route == MOVE and self.vols.exists(src, name):
                raise RuntimeError('the source is still there after a move')
            used = row.get('method_used')
            if step.get('method') and used != step['method']:
                raise RuntimeError('moved by %s, not %s' % (used,
                                                            step['method']))
            row['ok'] = row['checksum_ok']
            if not row['ok']:
                row['error'] = 'destination checksum differs'
        except Exception as err:  # reported in the table, the run goes on
            row.update(ok=False, error=str(err).strip()[-800:])
        self.runs.append(row)
        self.say('  %-36s %s' % (step['label'], _outcome(row)))
        if not row['ok']:
            self.vols.purge(name)
            self._create(name, volume['size'], volume['fill'],
                         volume['seed'])
            return A
        if route in (COPY, FROM_FILE):
            self.vols.remove(dst, name)
        if route == FROM_FILE or (route == TO_FILE and step.get("progress")):
            self.vols.remove(FILE, name)
        return dst if route == MOVE else where

    def _spawn(self, volume, step, src, dst):
        pools = self.vols.pools
        spec = {'kind': step['kind'], 'method': step.get('method'),
                'progress': bool(step.get('progress')),
                'name': volume['name'], 'size': volume['size'],
                'size_gib': volume['size'] // units.Gi, 'src': src,
                'dst': dst, 'src_pool': pools.get(src),
                'dst_pool': pools.get(dst),
                'osd_pids': [pid for n, pid in self.sandbox.pids.items()
                             if n.startswith('osd.')],
                'ceph_conf': self.sandbox.conf_path,
                'rbdmig_conf': self.sandbox.rbdmig_conf_path}
        proc = subprocess.run(
            (sys.executable, '-m', 'rbdmig.bench.cases', json.dumps(spec)),
            capture_output=True, text=True, timeout=self.timeout,
            env=sandbox.processes.env(), check=False)
        if proc.returncode:
            lines = proc.stderr.strip().splitlines() or ['(no output)']
            raise RuntimeError('case exited %d: %s' % (proc.returncode,
                                                        lines[-1]))
        return json.loads(proc.stdout.strip().splitlines()[-1])


def _mibs(rate):
    return '-' if rate is None else '%.0f MiB/s' % (rate / units.Mi)


def _outcome(row):
    if not row.get('ok'):
        return 'FAILED: %s' % row.get('error', '?').splitlines()[-1][:120]
    return '%7.3f s  %s' % (row['seconds'], _mibs(row['size']
                                                  / row['seconds']))


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt('SIGTERM')


def run(sizes, objectstore, repeat, workdir=None, say=print):
    """Start a sandbox, run every size and fill, stop it; return the data.

    :param sizes: volume sizes in bytes.
    :returns: a JSON-able dict: machine, config, ceiling, volumes, runs.
    """
    data = {'machine': machine_info(objectstore),
            'config': {'sizes': sizes, 'fills': list(volumes.FILLS),
                       'repeat': repeat, 'objectstore': objectstore,
                       'default_method': default_method(),
                       'methods': list(rbd_methods.METHODS),
                       'cases': [s['label'] for s in plan()]},
            'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
    workdir = workdir or tempfile.mkdtemp(prefix='rbdmig-bench-')
    cluster = sandbox.Cluster(workdir, name='bench', objectstore=objectstore,
                              osd_bytes=3 * max(sizes) + units.Gi)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    bench = None
    try:
        say('Starting a %s sandbox in %s ...' % (objectstore, workdir))
        cluster.start()
        bench = Bench(cluster, say, repeat=repeat)
        for size in sorted(sizes):
            say('size %d MiB' % (size // units.Mi))
            bench.measure_ceiling(size)
            for number, fill in enumerate(volumes.FILLS):
                bench.run_volume(size, fill, seed=size + number)
    finally:
        if bench is not None:
            data.update(ceiling=bench.ceiling, volumes=bench.volumes,
                        runs=bench.runs)
            bench.close()
        cluster.stop()
        signal.signal(signal.SIGTERM, previous)
        say('Sandbox stopped and removed.')
    data['machine']['load_at_end'] = os.getloadavg()
    data['finished'] = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
    return data
