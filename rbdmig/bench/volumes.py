"""Bench volumes: exact-size images and files, seeded data, checksums."""

import contextlib
import hashlib
import os
import queue
import random
import struct

from oslo_utils import units

from rbdmig.ceph import images
from rbdmig.migration import extents as data_map

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
# Requests in flight while filling and reading back a volume (setup, not
# a measured case: only its wall time matters).
DEPTH = 16
# Distinct random blocks an extent's data is drawn from: generating every
# MiB with random.randbytes took 2.4 s per GiB, longer than the copies.
POOL = 16

FILLS = {'full': 1.0, '10%': 0.10}


def chosen_extents(size, fraction, seed, piece=EXTENT):
    """Return the sorted extent indexes holding data.

    :param size: the volume's size in bytes (a multiple of ``piece``).
    :param fraction: the share of the volume holding data, 0 < f <= 1.
    :param seed: makes the choice, and the data, reproducible.
    :param piece: data is placed in pieces of this size (a multiple of
        EXTENT, aligned to it): the big thin volume's are whole objects.
    """
    slots = size // piece
    per_piece = piece // EXTENT
    if fraction >= 1:
        return list(range(size // EXTENT))
    count = max(1, round(slots * fraction))
    return [first * per_piece + n
            for first in sorted(random.Random(seed).sample(range(slots),
                                                           count))
            for n in range(per_piece)]


def extent_data(seed):
    """Return ``data(slot)``, the bytes of extent ``slot`` for ``seed``.

    Random bytes (nothing in Ceph compresses or deduplicates them), each
    extent stamped with the seed and its index, so that no two extents
    are alike and an extent written in the wrong place changes the
    volume's digest.
    """
    rng = random.Random(seed)
    blocks = [rng.randbytes(EXTENT) for _ in range(POOL)]

    def data(slot):
        block = blocks[(slot * 7 + seed) % POOL]
        return struct.pack('<QQ', seed, slot) + block[16:]

    return data


class Digest:
    """The volume's sha256 tree: the sha256 of its 4 MiB chunks' sha256s.

    As strong a check of every byte as one sha256 of the whole volume,
    but a chunk of zeros is recognised (a memory compare) instead of
    hashed: most of a thin volume is zeros, and hashing them took longer
    than the copies.
    """

    _ZEROS = bytes(CHUNK)
    _ZERO_SHA = hashlib.sha256(_ZEROS).digest()

    def __init__(self):
        self._tree = hashlib.sha256()

    def update(self, chunk):
        """Add the volume's next chunk (CHUNK bytes, or the last ones)."""
        self._tree.update(self._ZERO_SHA if chunk == self._ZEROS
                          else hashlib.sha256(chunk).digest())

    def update_zeros(self, count=1):
        """Add ``count`` whole chunks of zeros, without making them."""
        self._tree.update(self._ZERO_SHA * count)

    def hexdigest(self):
        return self._tree.hexdigest()


def expected_digest(size, fraction, seed, piece=EXTENT):
    """Return the :class:`Digest` of a volume :meth:`Cluster.fill` writes,
    computed without a cluster (chunks without data are never made)."""
    data = extent_data(seed)
    per_chunk = CHUNK // EXTENT
    slots = size // EXTENT
    chosen = set(chosen_extents(size, fraction, seed, piece))
    zeros = bytes(EXTENT)

    def chunk(first):
        return b''.join(data(slot) if slot in chosen else zeros
                        for slot in range(first, min(first + per_chunk,
                                                     slots)))

    return _sparse_digest(size, {s // per_chunk for s in chosen},
                          lambda offsets: (chunk(o // EXTENT)
                                           for o in offsets))


def _sparse_digest(size, with_data, read):
    """The :class:`Digest` of a volume whose chunks ``with_data`` (chunk
    indexes) are read by ``read(offsets)``, in order; the rest are zeros.

    A 256 GiB volume holding 1 GiB is hashed in the time of 1 GiB.
    """
    digest = Digest()
    chunks = -(-size // CHUNK)
    # A last, partial chunk of zeros is not a whole chunk of zeros.
    if size % CHUNK:
        with_data = set(with_data) | {chunks - 1}
    offsets = [n * CHUNK for n in sorted(with_data)]
    done = 0
    for offset, data in zip(offsets, read(offsets)):
        digest.update_zeros(offset // CHUNK - done)
        digest.update(data)
        done = offset // CHUNK + 1
    digest.update_zeros(chunks - done)
    return digest.hexdigest()


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

    def fill(self, backend, name, size, fraction, seed, piece=EXTENT):
        """Write the seeded data into a new, empty volume.

        The same arguments always write the same bytes in the same
        extents, in the same order (:func:`expected_digest` is their
        digest).
        """
        writes = _runs(extent_data(seed), chosen_extents(size, fraction,
                                                          seed, piece))
        with self._open(backend, name, write=True) as image:
            if backend == FILE:
                for chunk, offset in writes:
                    image.write(chunk, offset)
            else:
                _aio_writes(image, writes)
            image.flush()

    def digest(self, backend, name, found=None):
        """Return the volume's :class:`Digest`.

        Every byte of every chunk holding data (:meth:`extents`) is read;
        a chunk without any reads as zeros, to librbd and to a file
        system alike, and is counted as such without being read.

        :param found: the volume's :meth:`extents`, if just listed (a
            256 GiB image's take seconds to list).
        """
        if found is None:
            found = self.extents(backend, name)
        with_data = {n for offset, length in found
                     for n in range(offset // CHUNK,
                                    (offset + length - 1) // CHUNK + 1)}
        with self._open(backend, name) as image:
            size = image.size()
            if backend == FILE:
                def read(offsets):
                    return (image.read(o, min(CHUNK, size - o))
                            for o in offsets)
            else:
                def read(offsets):
                    return _aio_reads(image, size, offsets)
            return _sparse_digest(size, with_data, read)

    def extents(self, backend, name):
        """The ``[offset, length]`` ranges holding data, as JSON lists.

        librbd ``diff_iterate`` (an object's data from its start to its
        last written byte), or a file's ``SEEK_DATA``/``SEEK_HOLE`` runs.
        """
        with self._open(backend, name) as image:
            if backend == FILE:
                return image.data_runs()
            return [list(e) for e in images.data_extents(image,
                                                         image.size())]

    def allocated(self, backend, name, found=None):
        """Bytes holding data: diff_iterate's extents, or st_blocks.

        :param found: the volume's :meth:`extents`, if just listed.
        """
        if backend == FILE:
            return os.stat(self.path(name)).st_blocks * 512
        if found is None:
            found = self.extents(backend, name)
        return sum(length for _, length in found)


def _runs(data, slots):
    """Yield ``(bytes, offset)``: adjacent extents joined within a CHUNK.

    Whole 4 MiB objects are written faster than four quarters.
    """
    per_chunk = CHUNK // EXTENT
    run = []
    for slot in slots:
        if run and (slot != run[-1] + 1 or slot % per_chunk == 0):
            yield b''.join(data(s) for s in run), run[0] * EXTENT
            run = []
        run.append(slot)
    if run:
        yield b''.join(data(s) for s in run), run[0] * EXTENT


def _aio_writes(image, writes, depth=DEPTH):
    """Issue ``(data, offset)`` writes, ``depth`` in flight; wait for all."""
    done = queue.SimpleQueue()
    in_flight, failed = 0, []
    for data, offset in writes:
        if in_flight >= depth:
            failed += [r for r in (done.get(),) if r < 0]
            in_flight -= 1
        image.aio_write(data, offset,
                        lambda c: done.put(c.get_return_value()))
        in_flight += 1
    for _ in range(in_flight):
        failed += [r for r in (done.get(),) if r < 0]
    if failed:
        raise OSError(-failed[0], 'a write of the bench volume failed')


def _aio_reads(image, size, offsets, depth=DEPTH):
    """Yield the image's CHUNKs at ``offsets``, in order, read ahead."""
    done = queue.SimpleQueue()
    ready = {}
    wanted = offsets
    offsets = iter(offsets)
    in_flight = [0]

    def issue():
        offset = next(offsets, None)
        if offset is not None:
            image.aio_read(offset, min(CHUNK, size - offset),
                           lambda c, data: done.put((offset, data)))
            in_flight[0] += 1

    try:
        for _ in range(depth):
            issue()
        for offset in wanted:
            while offset not in ready:
                got, data = done.get()
                in_flight[0] -= 1
                ready[got] = data
            data = ready.pop(offset)
            if data is None or len(data) != min(CHUNK, size - offset):
                raise OSError('reading the bench volume at %d failed'
                              % offset)
            issue()
            yield data
    finally:
        # librbd must be done with every request before the image closes.
        while in_flight[0]:
            done.get()
            in_flight[0] -= 1


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

    def data_runs(self):
        """``[offset, length]`` runs holding data, from the file system."""
        found = data_map.data_extents(self.f, self.size())
        if found is None:  # the file system cannot tell: all of it
            return [[0, self.size()]]
        return [list(e) for e in found]
