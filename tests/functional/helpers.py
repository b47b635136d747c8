"""Shared steps of the functional tests: drivers, data, checksums."""

import functools
import hashlib
import json
import os
import random
import time

import rbd

from oslo_config import cfg
from oslo_utils import units

from rbdmig import objects
from rbdmig import opts
from rbdmig.ceph import journal
from rbdmig.migration import progress
from rbdmig import volume as volume_pkg

EXTENT = 1 * units.Mi


def load_drivers(cluster, **overrides):
    """Load every backend of the cluster's rbdmig.conf, on a fresh conf.

    :param overrides: ``{backend: {option: value}}`` applied before load.
    """
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    conf(['--config-file', cluster.rbdmig_conf_path], project='rbdmig')
    drivers = {}
    for backend in conf.enabled_backends:
        drivers[backend] = volume_pkg.load_driver(backend, conf=conf)
        for name, value in overrides.get(backend, {}).items():
            conf.set_override(name, value, group=backend)
    return drivers


def new_volume(drv, extents=24, seed=None, **fields):
    """Create a 1 GiB volume with random data in scattered 1 MiB extents.

    :returns: ``(volume, sha256 of the whole volume)``.
    """
    volume = objects.Volume(size=1, **fields)
    drv.create_volume(volume)
    rng = random.Random(seed or volume.id)
    slots = rng.sample(range(units.Gi // EXTENT), extents)
    handle = drv.open_volume(None, volume, 'r+b')
    try:
        for slot in slots:
            handle.seek(slot * EXTENT)
            handle.write(os.urandom(EXTENT))
    finally:
        drv.close_volume(None, volume, handle)
    return volume, digest(drv, volume)


def digest(drv, volume):
    """sha256 of every byte of the volume, read through its driver."""
    sha = hashlib.sha256()
    buf = bytearray(4 * units.Mi)
    handle = drv.open_volume(None, volume, 'rb')
    try:
        while n := handle.readinto(buf):
            sha.update(memoryview(buf)[:n])
    finally:
        drv.close_volume(None, volume, handle)
    return sha.hexdigest()


def images(cluster, pool):
    """Names of the images in a pool, as the rbd CLI lists them."""
    return cluster.rbd('ls', pool).split()


def rbdmig_leftovers(cluster, pools):
    """rbdmig's tagged images (``.rbdmig-``) and journal records left in
    ``pools``."""
    found = [n for pool in pools for n in images(cluster, pool)
             if '.rbdmig-' in n]
    client = cluster.connect()
    try:
        for pool in pools:
            ioctx = client.open_ioctx(pool)
            found += [o.key for o in ioctx.list_objects()
                      if o.key.startswith(journal.RECORD_PREFIX)]
            ioctx.close()
    finally:
        client.shutdown()
    return found


def allocated_bytes(cluster, pool, name):
    """Bytes of the image that hold data, per librbd's diff_iterate."""
    client = cluster.connect()
    try:
        ioctx = client.open_ioctx(pool)
        try:
            with rbd.Image(ioctx, name, read_only=True) as image:
                found = []

                def count(offset, length, exists):
                    if exists:
                        found.append(length)
                    return 0

                image.diff_iterate(0, image.size(), None, count)
                return sum(found)
        finally:
            ioctx.close()
    finally:
        client.shutdown()


def pool_stored(cluster, pool, timeout=60):
    """The bytes ``pool``'s objects take in the OSDs' stores (``ceph
    df``'s ``stored``: with bluestore, written data, holes not counted),
    once every OSD has reported what it holds now."""
    osds = ['osd.%d' % n for n in range(cluster.osd_count)]
    wanted = {osd: int(cluster.ceph('tell', osd, 'flush_pg_stats'))
              for osd in osds}
    deadline = time.monotonic() + timeout
    while any(int(cluster.ceph('osd', 'last-stat-seq', osd)) < seq
              for osd, seq in wanted.items()):
        if time.monotonic() > deadline:
            raise TimeoutError('the OSDs did not report their stats')
        time.sleep(0.2)
    found = json.loads(cluster.ceph('df', '--format', 'json'))
    return next(p['stats']['stored'] for p in found['pools']
                if p['name'] == pool)


def host_of(drv):
    """The ``host`` argument cinder passes when migrating to ``drv``."""
    return {'host': '%s#%s' % (drv.host, drv.configuration.safe_get(
        'rbd_pool')), 'capabilities': drv.get_volume_stats(refresh=True)}


def with_image_faults(**faults):
    """The ``rbd`` module, with chosen ``Image`` methods replaced.

    ``faults[name](real_method, *args, **kwargs)`` runs instead of the
    image's method ``name``.  Assign the result to a driver's ``rbd``
    attribute (drivers take their librbd module by injection) to make
    chosen librbd calls fail for real.  Images are wrapped, not
    subclassed: a Python subclass of the binding's ``Image`` type
    crashed the interpreter when its instances outlived a test.
    """
    class Image(object):
        def __init__(self, *args, **kwargs):
            self._image = rbd.Image(*args, **kwargs)

        def __getattr__(self, name):
            real = getattr(self._image, name)
            if name in faults:
                return functools.partial(faults[name], real)
            return real

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            self._image.close()

    class Module(object):
        def __getattr__(self, name):
            return Image if name == 'Image' else getattr(rbd, name)

    return Module()


class ProgressRecorder(progress.Callback):
    """Records the value after every progress update in ``seen``."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def call(self):
        self.seen.append(self.value)
