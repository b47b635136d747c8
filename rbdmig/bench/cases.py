"""One bench case, in a process of its own so its peak RSS is its own."""

# ``python -m rbdmig.bench.cases '<spec json>'`` runs the case the spec
# names and prints one JSON line: wall time, the CPU time and peak RSS of
# the process that did the work (this one for librbd calls made from
# Python, the ``rbd`` CLI for Ceph's tools), the CPU time the sandbox's
# OSDs spent meanwhile, and what the case reports.

import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings

from oslo_utils import units

# The bench's own kinds of case, beside rbdmig's assisted methods.
RBD_CP = 'rbd cp'
RBD_DEEP_CP = 'rbd deep cp'
RBD_MIGRATION = 'rbd migration'
CINDER = 'cinder generic'
SAME_POOL = 'same pool'
GENERIC = 'generic'
ASSISTED = 'assisted'
CLI_KINDS = (RBD_CP, RBD_DEEP_CP, RBD_MIGRATION)

# cinder.volume.volume_utils._copy_volume_with_file's chunk.
CINDER_CHUNK = 4 * units.Mi


def peak_rss(pid='self'):
    """The process's peak RSS in bytes since its exec (``VmHWM``), or 0.

    Not ``ru_maxrss``: Linux folds into it the RSS of the memory the
    process had before its exec, i.e. its parent's (a vfork'd child
    shares it), so a case spawned by the bench counted the bench's RSS.
    """
    try:
        with open('/proc/%s/status' % pid) as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * units.Ki
    except OSError:
        pass
    return 0


def _rbd(spec, *args):
    """Run the rbd CLI; return its peak RSS, sampled every 20 ms."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(('rbd', '--conf', spec['ceph_conf']) + args,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        peak = 0
        while True:
            try:
                proc.wait(timeout=0.02)
                break
            except subprocess.TimeoutExpired:
                peak = max(peak, peak_rss(proc.pid))
        if proc.returncode:
            err.seek(0)
            raise RuntimeError('rbd %s failed (exit %d): %s' % (
                ' '.join(args), proc.returncode,
                err.read().decode('utf-8', 'replace').strip()[-500:]))
    return peak


def _cli(spec):
    return lambda: _run_cli(spec)


def _run_cli(spec):
    """Ceph's tools as a whole move: the copy, then the source removed."""
    src = '%s/%s' % (spec['src_pool'], spec['name'])
    dst = '%s/%s' % (spec['dst_pool'], spec['name'])
    if spec['kind'] == RBD_MIGRATION:
        # commit removes the source.
        calls = [('migration', 'prepare', src, dst),
                 ('migration', 'execute', '--no-progress', dst),
                 ('migration', 'commit', '--no-progress', dst)]
    else:
        calls = [('cp',) if spec['kind'] == RBD_CP else ('deep', 'cp')]
        calls = [calls[0] + ('--no-progress', src, dst),
                 ('rm', '--no-progress', src)]
    return {'cli_peak_rss': max(_rbd(spec, *call) for call in calls)}


def osd_cpu(pids):
    """Seconds of CPU (user + system) the processes ``pids`` have used.

    From ``/proc/<pid>/stat`` (utime and stime, fields 14 and 15, in
    clock ticks); a process that is gone counts 0.
    """
    total = 0
    for pid in pids:
        try:
            with open('/proc/%d/stat' % pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        # fields[0] is field 3 (state): utime and stime are 14 and 15.
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf('SC_CLK_TCK')


def _cinder(spec):
    """Cinder's generic copy: os-brick file objects, 4 MiB read/write.

    As ``volume_utils._transfer_data`` does over the provisioned size,
    without eventlet's tpool hop (which could only add to it): no hole
    is skipped, every chunk is written, zeros included.
    """
    import rados
    import rbd
    from os_brick.initiator import linuxrbd

    return lambda: _run_cinder(spec, rados, rbd, linuxrbd)


def _run_cinder(spec, rados, rbd, linuxrbd):
    # Connecting and opening are timed, as rbdmig's open_volume is.
    with rados.Rados(conffile=spec['ceph_conf'], rados_id='admin') as client:
        src_io = client.open_ioctx(spec['src_pool'])
        dst_io = client.open_ioctx(spec['dst_pool'])
        src_image = rbd.Image(src_io, spec['name'], read_only=True)
        dst_image = rbd.Image(dst_io, spec['name'])
        size = src_image.size()
        src = linuxrbd.RBDVolumeIOWrapper(linuxrbd.RBDImageMetadata(
            src_image, spec['src_pool'], 'admin', spec['ceph_conf']))
        dst = linuxrbd.RBDVolumeIOWrapper(linuxrbd.RBDImageMetadata(
            dst_image, spec['dst_pool'], 'admin', spec['ceph_conf']))
        try:
            remaining = size
            while remaining:
                data = src.read(min(CINDER_CHUNK, remaining))
                if data == b'':
                    break
                dst.write(data)
                remaining -= len(data)
            dst.flush()
        finally:
            src.close()
            dst.close()
            src_io.close()
            dst_io.close()
    return {'bytes_written': size - remaining}


def _drivers(spec):
    from oslo_config import cfg

    from rbdmig import opts
    from rbdmig import volume as volume_pkg

    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    conf(['--config-file', spec['rbdmig_conf']], project='rbdmig')
    drivers = {b: volume_pkg.load_driver(b, conf=conf)
               for b in (spec['src'], spec['dst'])}
    if spec['kind'] == SAME_POOL:
        # Another host of the same backend: what a cinder "retype" to a
        # backend sharing the pool looks like.
        drivers['same'] = volume_pkg.load_driver(
            spec['src'], conf=conf, host='bench-elsewhere@' + spec['src'])
    return conf, drivers


def _callback(spec):
    from rbdmig.migration import progress

    if not spec.get('progress'):
        return progress.DEFAULT_CALLBACK
    # A real reporter: formats and writes a line at most once a second.
    return progress.IntervalCallback(
        lambda cb: sys.stderr.write('progress %5.1f%% (%d of %s bytes)\n'
                                    % (cb.fraction * 100, cb.value,
                                       cb.size)),
        interval=1.0)


def _rbdmig(spec):
    """Load the drivers (not timed: a running service has them)."""
    from rbdmig import objects
    from rbdmig.migration import copy as copy_engine
    from rbdmig.migration import manager

    conf, drivers = _drivers(spec)
    return lambda: _run_rbdmig(spec, conf, drivers, objects, copy_engine,
                               manager)


class _MethodSeen(logging.Handler):
    """Catches the method a move really used (``Migrating ... by X``).

    A method may hand a volume to another (``offload`` without the
    extension goes by ``extents``): the bench must not report the one
    asked for.
    """

    def __init__(self):
        super().__init__(logging.INFO)
        self.method = None

    def emit(self, record):
        args = record.args
        if str(record.msg).startswith('Migrating ') and isinstance(
                args, dict):
            self.method = args.get('method')


def _run_rbdmig(spec, conf, drivers, objects, copy_engine, manager):
    callback = _callback(spec)
    vol = objects.Volume(name=spec['name'], size=max(1, spec['size_gib']))
    src, dst = drivers[spec['src']], drivers[spec['dst']]
    if spec['kind'] == ASSISTED:
        conf.set_override('rbd_migration_method', spec['method'],
                          group=spec['src'])
        if spec.get('verify'):
            conf.set_override('migration_verify', spec['verify'],
                              group=spec['src'])
        for name, value in (spec.get('options') or {}).items():
            conf.set_override(name, value, group=spec['src'])
    if spec['kind'] in (ASSISTED, SAME_POOL):
        if spec['kind'] == SAME_POOL:
            dst = drivers['same']
        seen = _MethodSeen()
        logger = logging.getLogger('rbdmig.ceph.migrate')
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.addHandler(seen)
        try:
            result = manager.migrate(None, vol, src, dst, callback=callback,
                                     allow_generic=False)
        finally:
            logger.removeHandler(seen)
        return {'path': result.path, 'method_used': seen.method}
    if spec['size'] % units.Gi == 0:
        # The runner created the destination just before: it reads as
        # zeros, as in a migration.
        copied = src.copy_volume_data(None, vol, vol, dest_driver=dst,
                                      callback=callback, dest_zeroed=True)
        entry = 'copy_volume_data'
    else:
        # Volume records count whole GiB; a quick run's MiB-sized volume
        # goes through the same engine call copy_volume_data makes.
        s = src.open_volume(None, vol, 'rb')
        try:
            d = dst.open_volume(None, vol, 'r+b')
            try:
                config = src.configuration
                copied = copy_engine.copy_volume(
                    s, d, chunk_size=config.safe_get(
                        'volume_copy_chunk_size') or 4 * units.Mi,
                    queue_depth=config.safe_get(
                        'volume_copy_queue_depth') or 1,
                    callback=callback, dest_zeroed=True)
            finally:
                dst.close_volume(None, vol, d)
        finally:
            src.close_volume(None, vol, s)
        entry = 'copy_volume'
    return {'path': 'generic', 'entry': entry,
            'bytes_read': copied.bytes_read,
            'bytes_written': copied.bytes_written}


def run(spec):
    """Run one case; return its measurements as a dict."""
    prepare = _cli if spec['kind'] in CLI_KINDS else (
        _cinder if spec['kind'] == CINDER else _rbdmig)
    work = prepare(spec)
    osds = spec.get('osd_pids', ())
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    osd0 = osd_cpu(osds)
    rss_before = peak_rss()
    start = time.monotonic()
    extra = work()
    seconds = time.monotonic() - start
    osd1 = osd_cpu(osds)
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli = extra.pop('cli_peak_rss', None)
    return dict(
        extra, seconds=seconds, osd_cpu=osd1 - osd0,
        cpu_user=(self1.ru_utime - self0.ru_utime
                  + kids1.ru_utime - kids0.ru_utime),
        cpu_sys=(self1.ru_stime - self0.ru_stime
                 + kids1.ru_stime - kids0.ru_stime),
        # Of the largest rbd CLI for Ceph's tools, else of this process
        # (interpreter and imports included).
        peak_rss=peak_rss() if cli is None else cli,
        rss_before=0 if cli is not None else rss_before,
        rss_measured='case process' if cli is None else 'rbd CLI')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = run(json.loads(argv[0]))
    sys.stdout.write(json.dumps(result) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
