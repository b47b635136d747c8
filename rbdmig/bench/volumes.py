"""Bench volumes: exact-size images and files, seeded data, checksums."""

import contextlib
import hashlib
import os
import random

from oslo_utils import units

from rbdmig.ceph import images

try:
    import rbd
except ImportError:  # only the arithmetic is usable without the bindings
    rbd = None

# Data is written in extents of this size, scattered over the volume.
EXTENT = 1 * units.Mi
# Reads for checksums, and the order (object size) of created images: the
# RBD driver's default rbd_store_chunk_size of 4 MiB.
CHUNK = 4 * units.Mi
ORDER = 22
FILE = 'files'  # the sandbox's file backend

FILLS = {'full': 1.0, '10%': 0.10, '1%': 0.01}


def chosen_extents(size, fraction, seed):
    """Return the sorted extent indexes holding data.

    :param size: the volume's size in bytes (a multiple of EXTENT).
    :param fraction: the share of the volume holding data, 0 < f <= 1.
    :param seed: makes the choice, and the data, reproducible.
    """
    slots = size // EXTENT
    if fraction >= 1:
        return list(range(slots))
    count = max(1, round(slots * fraction))
    return sorted(random.Random(seed).sample(range(slots), count))


class Cluster:
    """The bench's view of the sandbox: pools by backend, and the files."""

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.pools = {b: p for b, p in sandbox.backends.items() if p != 'file'}
        self.file_dir = sandbox.file_volume_dir
        self._client = sandbox.connect()
        self._ioctx = {}

    def close(self):
        for ioctx in self._ioctx.values():
            ioctx.close()
        self._ioctx = {}
        self._client.shutdown()

    def ioctx(self, backend):
        if backend not in self._ioctx:
            self._ioctx[backend] = self._client.open_ioctx(
                self.pools[backend])
        return self._ioctx[backend]

    def path(self, name):
        return os.path.join(self.file_dir, name)

    def spec(self, backend, name):
        """``pool/name`` for the rbd CLI."""
        return '%s/%s' % (self.pools[backend], name)

    # -- create, remove, find --

    def create(self, backend, name, size):
        """Create an empty volume of exactly ``size`` bytes."""
        if backend == FILE:
            fd = os.open(self.path(name),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, size)
            finally:
                os.close(fd)
            return
        # The RBD driver's own call, with a size in bytes, not GiB.
        rbd.RBD().create(self.ioctx(backend), name, size, order=ORDER)

    def exists(self, backend, name):
        if backend == FILE:
            return os.path.exists(self.path(name))
        try:
            with rbd.Image(self.ioctx(backend), name, read_only=True):
                return True
        except rbd.ImageNotFound:
            return False

    def remove(self, backend, name):
        """Remove a volume, its snapshots, any migration; gone is fine."""
        if backend == FILE:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(name))
            return
        ioctx = self.ioctx(backend)
        # A failed "rbd migration" leaves a linked pair: abort it first.
        with contextlib.suppress(rbd.Error):
            rbd.RBD().migration_abort(ioctx, name)
        images.remove(rbd, ioctx, name)

    def purge(self, name):
        """Remove every volume called ``name``, in every backend."""
        for backend in list(self.pools) + [FILE]:
            self.remove(backend, name)

    # -- data --

    @contextlib.contextmanager
    def _open(self, backend, name, write=False):
        if backend == FILE:
            with open(self.path(name), 'r+b' if write else 'rb',
                      buffering=0) as f:
                yield _FileIO(f)
            return
        with rbd.Image(self.ioctx(backend), name,
                       read_only=not write) as image:
            yield image

    def fill(self, backend, name, size, fraction, seed):
        """Write seeded random data; return the whole volume's sha256."""
        sha = hashlib.sha256()
        zeros = bytes(EXTENT)
        data = set(chosen_extents(size, fraction, seed))
        rng = random.Random(seed)
        with self._open(backend, name, write=True) as image:
            for slot in range(size // EXTENT):
                if slot in data:
                    chunk = rng.randbytes(EXTENT)
                    image.write(chunk, slot * EXTENT)
                    sha.update(chunk)
                else:
                    sha.update(zeros)
            image.flush()
        return sha.hexdigest()

    def digest(self, backend, name):
        """Return the sha256 of every byte of the volume."""
        sha = hashlib.sha256()
        with self._open(backend, name) as image:
            size = image.size()
            for offset in range(0, size, CHUNK):
                sha.update(image.read(offset, min(CHUNK, size - offset)))
        return sha.hexdigest()

    def allocated(self, backend, name):
        """Bytes holding data: diff_iterate's extents, or st_blocks."""
        if backend == FILE:
            return os.stat(self.path(name)).st_blocks * 512
        total = [0]

        def count(offset, length, exists):
            if exists:
                total[0] += length
            return 0

        with self._open(backend, name) as image:
            image.diff_iterate(0, image.size(), None, count,
                               whole_object=False)
        return total[0]


class _FileIO:
    """A raw file with the few ``rbd.Image`` calls the bench makes."""

    def __init__(self, f):
        self.f = f

    def size(self):
        return os.fstat(self.f.fileno()).st_size

    def read(self, offset, length):
        return os.pread(self.f.fileno(), length, offset)

    def write(self, data, offset):
        return os.pwrite(self.f.fileno(), data, offset)

    def flush(self):
        os.fsync(self.f.fileno())
