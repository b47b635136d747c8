"""Reading and writing RBD images directly, bypassing both drivers."""

import contextlib
import hashlib
import os
import random
import uuid

import rbd
from oslo_utils import units

EXTENT = units.Mi


def token():
    """A short random name part."""
    return uuid.uuid4().hex[:8]


@contextlib.contextmanager
def opened(cluster, pool, name, read_only=True):
    """Yield an open ``rbd.Image`` of a sandbox cluster's pool."""
    with _image(cluster, pool, name, read_only) as image:
        yield image


def remove(cluster, pool, name):
    """Remove an image this test created, its snapshots first."""
    client = cluster.connect()
    try:
        ioctx = client.open_ioctx(pool)
        try:
            with rbd.Image(ioctx, name) as image:
                for snap in image.list_snaps():
                    if image.is_protected_snap(snap['name']):
                        image.unprotect_snap(snap['name'])
                    image.remove_snap(snap['name'])
            rbd.RBD().remove(ioctx, name)
        finally:
            ioctx.close()
    finally:
        client.shutdown()


def allocated(cluster, pool, name):
    """Bytes of the image that hold data (librbd diff_iterate)."""
    total = []
    with _image(cluster, pool, name, read_only=True) as image:
        image.diff_iterate(0, image.size(), None,
                           lambda o, length, exists: total.append(
                               length if exists else 0) or 0,
                           include_parent=True, whole_object=False)
    return sum(total)


@contextlib.contextmanager
def _image(cluster, pool, name, read_only):
    client = cluster.connect()
    try:
        ioctx = client.open_ioctx(pool)
        try:
            with rbd.Image(ioctx, name, read_only=read_only) as image:
                yield image
        finally:
            ioctx.close()
    finally:
        client.shutdown()


def fill(cluster, pool, name, extents=16, seed=None):
    """Write random data in scattered 1 MiB extents; return the sha256."""
    with _image(cluster, pool, name, read_only=False) as image:
        rng = random.Random(seed or name)
        for slot in rng.sample(range(image.size() // EXTENT), extents):
            image.write(os.urandom(EXTENT), slot * EXTENT)
    return digest(cluster, pool, name)


def digest(cluster, pool, name):
    """sha256 of every byte of the image."""
    sha = hashlib.sha256()
    with _image(cluster, pool, name, read_only=True) as image:
        size = image.size()
        for offset in range(0, size, 4 * units.Mi):
            sha.update(image.read(offset, min(4 * units.Mi, size - offset)))
    return sha.hexdigest()


def names(cluster, pool):
    """The images in a pool, as the rbd CLI lists them."""
    return cluster.rbd('ls', pool).split()
