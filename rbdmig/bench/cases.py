"""One bench case, in a process of its own so its peak RSS is its own."""

# ``python -m rbdmig.bench.cases '<spec json>'`` runs the case the spec
# names and prints one JSON line: wall time, the CPU time and peak RSS of
# the process that did the work (this one for librbd calls made from
# Python, the ``rbd`` CLI for Ceph's tools), and what the case reports.

import json
import logging
import resource
import subprocess
import sys
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


def _rbd(spec, *args):
    res = subprocess.run(('rbd', '--conf', spec['ceph_conf']) + args,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, check=False)
    if res.returncode:
        raise RuntimeError('rbd %s failed (exit %d): %s' % (
            ' '.join(args), res.returncode,
            res.stderr.decode('utf-8', 'replace').strip()[-500:]))


def _cli(spec):
    return lambda: _run_cli(spec)


def _run_cli(spec):
    src = '%s/%s' % (spec['src_pool'], spec['name'])
    dst = '%s/%s' % (spec['dst_pool'], spec['name'])
    if spec['kind'] == RBD_CP:
        _rbd(spec, 'cp', '--no-progress', src, dst)
    elif spec['kind'] == RBD_DEEP_CP:
        _rbd(spec, 'deep', 'cp', '--no-progress', src, dst)
    else:
        _rbd(spec, 'migration', 'prepare', src, dst)
        _rbd(spec, 'migration', 'execute', '--no-progress', dst)
        _rbd(spec, 'migration', 'commit', '--no-progress', dst)
    return {}


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


def _run_rbdmig(spec, conf, drivers, objects, copy_engine, manager):
    callback = _callback(spec)
    vol = objects.Volume(name=spec['name'], size=max(1, spec['size_gib']))
    src, dst = drivers[spec['src']], drivers[spec['dst']]
    if spec['kind'] == ASSISTED:
        conf.set_override('rbd_migration_method', spec['method'],
                          group=spec['src'])
    if spec['kind'] in (ASSISTED, SAME_POOL):
        if spec['kind'] == SAME_POOL:
            dst = drivers['same']
        result = manager.migrate(None, vol, src, dst, callback=callback,
                                 allow_generic=False)
        return {'path': result.path}
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
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    extra = work()
    seconds = time.monotonic() - start
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli = spec['kind'] in CLI_KINDS
    return dict(
        extra, seconds=seconds,
        cpu_user=(self1.ru_utime - self0.ru_utime
                  + kids1.ru_utime - kids0.ru_utime),
        cpu_sys=(self1.ru_stime - self0.ru_stime
                 + kids1.ru_stime - kids0.ru_stime),
        # ru_maxrss is in KiB on Linux: of the largest child for the CLI
        # cases, of this process (interpreter and imports included) else.
        peak_rss=(kids1.ru_maxrss if cli else self1.ru_maxrss) * units.Ki,
        rss_before=0 if cli else self0.ru_maxrss * units.Ki,
        rss_measured='rbd CLI' if cli else 'case process')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = run(json.loads(argv[0]))
    sys.stdout.write(json.dumps(result) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
