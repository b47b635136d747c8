"""The bench run: sandboxes, a fresh identical volume per case, timings."""

import contextlib
import hashlib
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

from rbdmig import ext
from rbdmig import sandbox
from rbdmig.bench import drain
from rbdmig.bench import link as thin_link
from rbdmig.bench import placement
from rbdmig.bench import plan
from rbdmig.bench import volumes
from rbdmig.ceph import methods as rbd_methods

A, B, FILE = 'ceph-a', 'ceph-b', volumes.FILE


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


def _extents_digest(extents):
    return hashlib.sha256(json.dumps(extents).encode()).hexdigest()


class Bench:
    """One bench run on one started sandbox.

    :param cluster: a started :class:`rbdmig.sandbox.Cluster`.
    :param label: the cluster's name in the results (``1 OSD``).
    :param say: prints one line of progress.
    """

    def __init__(self, cluster, label, say, repeat=1, timeout=1800):
        self.sandbox = cluster
        self.label = label
        self.vols = volumes.Cluster(cluster)
        self.say = say
        self.repeat = repeat
        self.timeout = timeout
        self.steps = plan.plan(cluster.osd_count)
        self.osd_pids = [pid for name, pid in cluster.pids.items()
                         if name.startswith('osd.')]
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
                row = {'cluster': self.label, 'size': size,
                       'backend': backend, 'rep': rep}
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

    # -- one volume, every case on a fresh copy of it --

    def run_volume(self, volume, steps=None, link=None):
        """Describe a volume, run every case ``repeat`` times on it.

        Odd repetitions run the cases in reverse order, so that no case
        always follows the same one.

        :param volume: from :func:`describe`.
        :param steps: the cases (default: the cluster's plan).
        :param link: a :class:`link.Link`: the cases run behind it.
        """
        steps = steps or self.steps
        name = volume['name']
        backends = [(A, 'rbd')]
        if any(s['route'] in (plan.TO_FILE, plan.FROM_FILE) for s in steps):
            backends.append((FILE, 'file'))
        self.vols.purge(name)
        try:
            for backend, key in backends:
                found = self._fresh(volume, backend, check=False)
                volume.update({key + '_extents': len(found),
                               key + '_extents_sha256':
                                   _extents_digest(found),
                               key + '_allocated':
                                   self.vols.allocated(backend, name,
                                                       found)})
        finally:
            self.vols.purge(name)
        volume['allocated'] = volume['rbd_allocated']
        if link:
            volume['link_mbit'] = link.mbit
        self.volumes.append(volume)
        self.say('volume %s: %s MiB, %s allocated (%d MiB in %d extents)%s'
                 % (name, volume['size'] // units.Mi, volume['fill'],
                    volume['allocated'] // units.Mi, volume['rbd_extents'],
                    ', behind %d Mbit/s' % link.mbit if link else ''))
        for rep in range(self.repeat):
            for step in steps if rep % 2 == 0 else steps[::-1]:
                self._case(volume, step, rep, link)

    def _fresh(self, volume, backend, check=True):
        """Create the volume anew in ``backend``; check it is the same.

        :returns: its data extents.
        :raises RuntimeError: its sha256, or its extents, differ from
            the volume's.
        """
        # The name is free: every case ends by purging it.
        name, size = volume['name'], volume['size']
        self.vols.create(backend, name, size)
        self.vols.fill(backend, name, size, volume['fraction'],
                       volume['seed'], volume['piece'])
        found = self.vols.extents(backend, name)
        if self.vols.digest(backend, name, found) != volume['sha256']:
            raise RuntimeError('the fresh volume in %s has another sha256'
                               % backend)
        key = ('file' if backend == FILE else 'rbd') + '_extents_sha256'
        if check and _extents_digest(found) != volume[key]:
            raise RuntimeError('the fresh volume in %s has other extents'
                               % backend)
        return found

    def _route(self, route):
        return {plan.COPY: (A, B), plan.MOVE: (A, B), plan.STAY: (A, A),
                plan.TO_FILE: (A, FILE), plan.FROM_FILE: (FILE, B)}[route]

    def _case(self, volume, step, rep, link=None):
        """Run one case on a fresh volume; record it in :attr:`runs`."""
        name, route = volume['name'], step['route']
        src, dst = self._route(route)
        row = {'cluster': volume['cluster'], 'size': volume['size'],
               'fill': volume['fill'], 'rep': rep, 'case': step['label'],
               'kind': step['kind'], 'method': step.get('method'),
               'verify': step.get('verify'), 'route': route, 'src': src,
               'dst': dst, 'progress': bool(step.get('progress')),
               'load1': os.getloadavg()[0]}
        began = time.monotonic()
        try:
            row['src_allocated'] = self.vols.allocated(
                src, name, self._fresh(volume, src))
            if step['kind'] in ('cinder generic', 'generic'):
                self.vols.create(dst, name, volume['size'])
            row['setup_seconds'] = time.monotonic() - began
            row.update(self._spawn(volume, step, src, dst, link))
            found = self.vols.extents(dst, name)
            row['checksum_ok'] = (self.vols.digest(dst, name, found)
                                  == volume['sha256'])
            row['dst_allocated'] = self.vols.allocated(dst, name, found)
            # What the same data takes when written straight into that
            # kind of backend: files count bytes, librbd whole extents.
            row['dst_reference'] = (volume['data_bytes'] if dst == FILE
                                    else volume['allocated'])
            if route == plan.MOVE and self.vols.exists(src, name):
                raise RuntimeError('the source is still there after a move')
            used = row.get('method_used')
            if step.get('method') and used != step['method']:
                raise RuntimeError('moved by %s, not %s (extension: %s)' % (
                    used, step['method'], ext.unavailable_reason() or 'ok'))
            row['ok'] = row['checksum_ok']
            if not row['ok']:
                row['error'] = 'destination checksum differs'
        except Exception as err:  # reported in the table, the run goes on
            row.update(ok=False, error=str(err).strip()[-800:])
        self.vols.purge(name)
        row['case_wall'] = time.monotonic() - began
        self.runs.append(row)
        self.say('  %-36s %s' % (step['label'], _outcome(row)))

    def _spawn(self, volume, step, src, dst, link=None):
        pools = self.vols.pools
        spec = {'kind': step['kind'], 'method': step.get('method'),
                'verify': step.get('verify'),
                'options': step.get('options') or {},
                'progress': bool(step.get('progress')),
                'name': volume['name'], 'size': volume['size'],
                'size_gib': volume['size'] // units.Gi, 'src': src,
                'dst': dst, 'src_pool': pools.get(src),
                'dst_pool': pools.get(dst), 'osd_pids': self.osd_pids,
                'ceph_conf': self.sandbox.conf_path,
                'rbdmig_conf': self.sandbox.rbdmig_conf_path}
        argv = (sys.executable, '-m', 'rbdmig.bench.cases', json.dumps(spec))
        proc = subprocess.run(
            link.wrap(argv) if link else argv, capture_output=True,
            text=True, timeout=self.timeout, env=sandbox.processes.env(),
            check=False)
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


def _merged(data, bench):
    """``data`` with ``bench``'s rows so far added (a copy)."""
    return dict(data, ceiling=data['ceiling'] + bench.ceiling,
                volumes=data['volumes'] + bench.volumes,
                runs=data['runs'] + bench.runs)


def run_drains(cluster, steps, say, data):
    """Run the drains of :func:`drain.plan` on ``cluster``; add their
    rows to ``data['drain']``.

    ``offload`` where the extension is built; else the default method
    (and the page says which ran).
    """
    method = drain.OFFLOAD if ext.available() else plan.default_method()
    if method != drain.OFFLOAD:
        say('Drain: offload is not available here (%s); draining with %s.'
            % (ext.unavailable_reason(), method))
    for step in steps:
        row = drain.run_in_process(cluster, step, method)
        row['load1'] = os.getloadavg()[0]
        data.setdefault('drain', []).append(row)
        for line in drain.summarize(row):
            say(line)


def run_cluster(osds, sizes, objectstore, repeat, workdir, say, data,
                checkpoint=None, link_mbit=0, thin_size=0, fills=None,
                thin_verify=True, drains=()):
    """Start a sandbox of ``osds`` OSDs, run every size and fill, stop it.

    Adds the cluster's description and every row measured to ``data``,
    even when interrupted.

    :param checkpoint: called with the data so far after each volume.
    :param link_mbit: also run every contender on the full smallest
        volume from a network namespace behind a link of this many
        Mbit/s (the cluster listens on the link's host end); 0: not.
    :param thin_size: also move a volume of this size holding the
        smallest size's worth of data in scattered objects; 0: not.
    :param fills: of ``volumes.FILLS`` (default: all).
    :param thin_verify: the big thin volume's cases include the default
        method's ``migration_verify`` levels.
    :param drains: the drain runs (:func:`drain.plan`), last.
    """
    label = plan.cluster_name(osds)
    desc = {'name': label, 'osds': osds, 'sizes': sizes,
            'fills': list(fills or volumes.FILLS),
            'cases': [s['label'] for s in plan.plan(osds)]}
    data['config']['clusters'].append(desc)
    bench = None
    with contextlib.ExitStack() as stack:
        link = None
        if link_mbit:
            link = stack.enter_context(thin_link.Link(link_mbit))
            say('Thin link %s: %s <-> %s, %d Mbit/s each way' % (
                link.netns, link.host_ip, link.ns_ip, link_mbit))
        # Only the data written takes room: the big thin volume's is the
        # smallest size's.
        cluster = sandbox.Cluster(
            os.path.join(workdir, 'osd%d' % osds), name='bench%d' % osds,
            objectstore=objectstore, osd_count=osds,
            osd_bytes=max([3 * max(sizes)] + [
                2 * d['volumes'] * drain.DATA for d in drains]) + units.Gi,
            public_addr=link.host_ip if link else '127.0.0.1')
        say('Starting a %s sandbox of %s in %s ...' % (objectstore, label,
                                                       cluster.base_dir))
        try:
            cluster.start()
            placement.spread(cluster)
            desc['pool_size'] = placement.pool_size(cluster,
                                                    cluster.pools[0])
            desc['pgs_per_osd'] = placement.pgs_per_osd(cluster)
            bench = Bench(cluster, label, say, repeat=repeat)

            def volume(*args, **kwargs):
                bench.run_volume(*args, **kwargs)
                if checkpoint:
                    checkpoint(_merged(data, bench))

            for size in sizes:
                say('%s, size %d MiB' % (label, size // units.Mi))
                bench.measure_ceiling(size)
                for number, fill in enumerate(volumes.FILLS):
                    if fill in desc['fills']:
                        volume(plan.describe(label, size, fill, size + number))
            if thin_size:
                fill = plan.thin_fill(sizes[0])
                desc['thin'] = {'size': thin_size, 'data': sizes[0],
                                'fill': fill}
                say('%s, a %s volume holding %s' % (
                    label, plan.size_text(thin_size), fill))
                volume(plan.describe(label, thin_size, fill, thin_size,
                                     data_bytes=sizes[0]),
                       plan.plan_thin(thin_verify))
            if link:
                steps = plan.plan_link()
                behind = plan.link_label(osds, link.mbit)
                data['config']['clusters'].append({
                    'name': behind, 'osds': osds, 'sizes': sizes[:1],
                    'fills': ['full'], 'link_mbit': link.mbit,
                    'cases': [s['label'] for s in steps]})
                say('%s, size %d MiB, behind %d Mbit/s' % (
                    label, sizes[0] // units.Mi, link.mbit))
                volume(plan.describe(behind, sizes[0], 'full', sizes[0],
                                     slug='full-link'), steps, link=link)
            if drains:
                run_drains(cluster, drains, say, data)
                if checkpoint:
                    checkpoint(_merged(data, bench))
        finally:
            if bench is not None:
                data['ceiling'] += bench.ceiling
                data['volumes'] += bench.volumes
                data['runs'] += bench.runs
                bench.close()
            cluster.stop()
            say('Sandbox of %s stopped and removed.' % label)


def run(sizes, objectstore, repeat, workdir=None, say=print,
        osd_counts=(1,), multi_osd_sizes=None, checkpoint=None,
        link_mbit=0, thin_size=0, multi_osd_fills=None, thin_verify=True,
        drains=()):
    """Run the bench on a sandbox per OSD count; return the data.

    A sandbox that fails (to start, or to spread its PGs) is recorded
    with its error, and the next one runs: what was measured is kept.

    :param sizes: volume sizes in bytes.
    :param osd_counts: the OSDs of each sandbox, one after the other.
    :param multi_osd_sizes: sizes for sandboxes of more than one OSD
        (default: ``sizes``), and
    :param multi_osd_fills: their fills (default: every one).
    :param checkpoint: called with the data so far after each volume.
    :param link_mbit: the thin link's rate (0: no such case), and
    :param thin_size: the big thin volume's size (0: none), and
    :param thin_verify: its cases, and
    :param drains: the drain runs (:func:`drain.plan`), all on the
        first one-OSD sandbox (:func:`run_cluster`).
    :returns: a JSON-able dict: machine, config, ceiling, volumes, runs.
    """
    data = {'machine': machine_info(objectstore),
            'config': {'sizes': sorted(set(sizes) | set(
                           multi_osd_sizes or ())),
                       'fills': list(volumes.FILLS),
                       'repeat': repeat, 'objectstore': objectstore,
                       'default_method': plan.default_method(),
                       'default_verify': plan.option_default(
                           'migration_verify'),
                       'queue_depth': plan.option_default(
                           'rbd_migration_queue_depth'),
                       'chunk_size': plan.option_default(
                           'rbd_migration_chunk_size'),
                       'methods': list(rbd_methods.METHODS),
                       'verify_methods': plan.verify_methods(),
                       'ext_available': ext.available(),
                       'ext_reason': ext.unavailable_reason(),
                       'link_mbit': link_mbit, 'thin_size': thin_size,
                       'drains': list(drains), 'clusters': []},
            'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
            'ceiling': [], 'volumes': [], 'runs': []}
    workdir = workdir or tempfile.mkdtemp(prefix='rbdmig-bench-')
    began = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        extra = {'link_mbit': link_mbit, 'thin_size': thin_size,
                 'thin_verify': thin_verify, 'drains': drains}
        for osds in osd_counts:
            mine = sizes if osds == 1 else (multi_osd_sizes or sizes)
            first = len(data['config']['clusters'])
            try:
                run_cluster(osds, sorted(mine), objectstore, repeat,
                            workdir, say, data, checkpoint=checkpoint,
                            **(extra if osds == 1
                               else {'fills': multi_osd_fills}))
                if osds == 1:
                    extra = {}
            except Exception as err:  # recorded; the next sandbox runs
                data['config']['clusters'][first]['error'] = str(
                    err)[-1500:]
                say('Sandbox of %s FAILED: %s' % (plan.cluster_name(osds),
                                                  err))
    finally:
        signal.signal(signal.SIGTERM, previous)
        if os.path.isdir(workdir) and not os.listdir(workdir):
            os.rmdir(workdir)
    data['machine']['load_at_end'] = os.getloadavg()
    data['finished'] = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
    data['wall_seconds'] = time.monotonic() - began
    return data
