"""The demo: every migration path on a throwaway cluster, timed, checked."""

import hashlib
import os
import random
import sys
import tempfile
import time

from oslo_config import cfg
from oslo_utils import units

from rbdmig import exception
from rbdmig import objects
from rbdmig import opts
from rbdmig import sandbox
from rbdmig import volume as volume_pkg
from rbdmig.migration import manager
from rbdmig.migration import progress
from rbdmig.ceph import methods as rbd_methods

EXTENT = 4 * units.Mi


def run(args, out=sys.stdout):
    """Run the demo; return 0 when every move verified, else 1."""
    def say(text):
        out.write(text + '\n')
        out.flush()

    workdir = args.workdir or tempfile.mkdtemp(prefix='rbdmig-demo-')
    say('Starting a throwaway Ceph cluster (%s) in %s ...'
        % (args.objectstore, workdir))
    start = time.monotonic()
    cluster = sandbox.Cluster(workdir, objectstore=args.objectstore,
                              osd_bytes=(3 * args.size_gib + 1) * units.Gi)
    try:
        cluster.start()
        say('  up in %.1f s, fsid %s' % (time.monotonic() - start,
                                         cluster.fsid))
        ok = _scenario(cluster, args, say)
    finally:
        if args.keep:
            say('Cluster left running: rbdmig sandbox-stop %s' % workdir)
        else:
            cluster.stop()
            say('Cluster stopped and removed.')
    say('All moves verified.' if ok else 'VERIFICATION FAILED.')
    return 0 if ok else 1


def _scenario(cluster, args, say):
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    conf(['--config-file', cluster.rbdmig_conf_path], project='rbdmig')
    drivers = volume_pkg.load_enabled_drivers(conf=conf)
    names = sorted(b for b in drivers if b != 'files')
    first, second = names[0], names[1]

    volume = objects.Volume(size=args.size_gib, display_name='demo')
    drivers[first].create_volume(volume)
    data = _fill(drivers[first], volume, args.fill)
    digest = _digest(drivers[first], volume)
    say('Volume %s: %d GiB, %d MiB of random data in scattered extents, '
        'on %s; sha256 %s' % (volume.id, volume.size, data // units.Mi,
                              first, digest[:16]))

    ok = True
    here, there = first, second
    for method in rbd_methods.METHODS:
        conf.set_override('rbd_migration_method', method, group=here)
        ok &= _move(drivers, volume, here, there, digest, data, say,
                    label='assisted, %s' % method)
        here, there = there, here
    ok &= _move(drivers, volume, here, 'files', digest, data, say,
                label='generic copy to a file backend')
    ok &= _move(drivers, volume, 'files', first, digest, data, say,
                label='generic copy back to Ceph')
    drivers[first].delete_volume(volume)
    return ok


def _move(drivers, volume, src, dst, digest, data, say, label):
    say('%s -> %s (%s)' % (src, dst, label))
    callback = progress.IntervalCallback(
        lambda cb: say('    %5.1f%%' % (cb.fraction * 100)), interval=1.0)
    result = manager.migrate(None, volume, drivers[src], drivers[dst],
                             callback=callback)
    seconds = result.seconds
    matches = _digest(drivers[dst], volume) == digest
    gone = _is_gone(drivers[src], volume)
    say('    %s path, %.2f s: %.0f MiB/s provisioned, %.0f MiB/s of data; '
        'data %s; source %s' % (
            result.path, seconds, volume.size * units.Gi / units.Mi / seconds,
            data / units.Mi / seconds,
            'matches' if matches else 'DIFFERS',
            'removed' if gone else 'STILL THERE'))
    if dst == 'files':
        allocated = drivers[dst].get_allocated_bytes(volume)
        say('    destination file allocates %d MiB of %d MiB (thin)'
            % (allocated // units.Mi, volume.size * units.Ki))
    return matches and gone


def _fill(drv, volume, fill):
    """Write random data over ``fill`` of the volume; return its bytes."""
    slots = volume.size * units.Gi // EXTENT
    chosen = random.Random(volume.id).sample(range(slots),
                                             max(1, int(slots * fill)))
    handle = drv.open_volume(None, volume, 'r+b')
    try:
        for slot in sorted(chosen):
            handle.seek(slot * EXTENT)
            handle.write(os.urandom(EXTENT))
    finally:
        drv.close_volume(None, volume, handle)
    return len(chosen) * EXTENT


def _digest(drv, volume):
    """Return the sha256 of every byte of the volume."""
    sha = hashlib.sha256()
    buf = bytearray(EXTENT)
    handle = drv.open_volume(None, volume, 'rb')
    try:
        while True:
            n = handle.readinto(buf)
            if not n:
                break
            sha.update(memoryview(buf)[:n])
    finally:
        drv.close_volume(None, volume, handle)
    return sha.hexdigest()


def _is_gone(drv, volume):
    try:
        drv.close_volume(None, volume, drv.open_volume(None, volume, 'rb'))
    except (exception.VolumeNotFound, FileNotFoundError):
        return True
    return False
