"""A stand-in for the compiled rbdmig.ext._offload, over the fake Ceph.

It takes the extension's own arguments (as rbdmig.ext's front end passes
them, ``cluster`` a ClusterSpec's tuple whose conf path names a fake
cluster) and does to the fake's images what the OSDs would do to their
objects: object ``<prefix>.%016x`` is the image's blocks of that object,
its own (not its parent's), in the pool its data lives in.  Objects
written where no image reads them are kept as raw RADOS objects of that
pool: orphans, as on a real cluster.
"""

import errno
import hashlib

from tests.unit import fake_ceph


def _hash(data):
    """The fake OSDs' XXH64: any 64-bit digest serves, used throughout."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(),
                          'little')


class Extension(object):
    """The functions of ``rbdmig.ext._offload``, for one fake Ceph.

    :ivar calls: the names of the functions called, in order, so that a
        test can tell which server-side path ran.
    :ivar data_pools: the ``data_pool`` each image copy was asked for.
    :ivar checksummed: ``(conf path, pool)`` of each object_checksums.
    :ivar checksummed_objects: the object numbers each was given.
    :ivar copied: the object numbers each copy_objects was given.
    :ivar through_host_below: what each copy_objects was given as that.
    :ivar keep_holes: likewise.
    """

    def __init__(self, ceph):
        self.ceph = ceph
        self.calls = []
        self.data_pools = []
        self.checksummed = []
        self.checksummed_objects = []
        self.copied = []
        self.through_host_below = []
        self.keep_holes = []

    def _cluster(self, conn):
        try:
            return self.ceph.clusters[conn[0]]
        except KeyError:
            raise OSError(errno.ENOENT, 'reading Ceph configuration %s'
                          % (conn[0],)) from None

    def _pool(self, cluster, pool):
        try:
            return self.ceph.pool_name(cluster, pool)
        except KeyError:
            raise OSError(errno.ENOENT, 'opening pool %r' % (pool,)) from None

    def _object(self, cluster, pool, prefix, index):
        """``(size, data)`` of an object, or None if there is none."""
        image = self.ceph.data_objects(cluster, pool, prefix)
        if image is None:
            raw = cluster.objects.get(pool, {}).get(
                '%s.%016x' % (prefix, index))
            return None if raw is None else (len(raw['data']), raw['data'])
        blocks = image.object_blocks(index)
        held = [i for i in blocks if i in image.blocks]
        if not held:
            return None
        data = b''.join(image.blocks.get(i, bytes(fake_ceph.BLOCK))
                        for i in range(blocks.start, held[-1] + 1))
        return len(data), data

    def object_numbers(self, conn, pool, ns, prefix):
        """A listing: the objects an image holds, and raw ones named so."""
        self.calls.append('object_numbers')
        self.ceph._check('object_numbers')
        cluster = self._cluster(conn)
        pool = self._pool(cluster, pool)
        numbers = set()
        image = self.ceph.data_objects(cluster, pool, prefix)
        if image is not None:
            per = (1 << image.order) // fake_ceph.BLOCK
            numbers.update(i // per for i in image.blocks)
        for name in cluster.objects.get(pool, {}):
            head, _, number = name.rpartition('.')
            if head == prefix and len(number) == 16:
                numbers.add(int(number, 16))
        return sorted(numbers)

    def copy_objects(self, conn, src_pool, src_ns, src_prefix, dst_pool,
                     dst_ns, dst_prefix, numbers, depth, object_size,
                     through_host_below, keep_holes, progress):
        """copy_from each object whole (a hole in it written as zeros,
        then zeroed again with ``keep_holes``: a hole), or one holding
        fewer bytes than ``through_host_below`` (its blocks held, as
        bluestore's mapext counts them) through the host: its blocks
        only, holes kept."""
        self.calls.append('copy_objects')
        self.through_host_below.append(through_host_below)
        self.keep_holes.append(keep_holes)
        self.ceph._check('copy_objects')
        view = memoryview(numbers)  # TypeError for no buffer, as there
        if view.format != 'Q':
            raise TypeError("objects must be a buffer of uint64 "
                            "(array('Q')).")
        numbers = view.tolist()
        self.copied.append(numbers)
        cluster = self._cluster(conn)
        src_pool = self._pool(cluster, src_pool)
        dst_pool = self._pool(cluster, dst_pool)
        dst = self.ceph.data_objects(cluster, dst_pool, dst_prefix)
        copied, missing, host, host_bytes, punched, holes = 0, [], 0, 0, 0, 0
        for index in numbers:
            found = self._object(cluster, src_pool, src_prefix, index)
            if found is None:
                missing.append(index)
                continue
            copied += 1
            data = found[1]
            held = self._held(cluster, src_pool, src_prefix, index, data)
            if sum(len(piece) for piece in held.values()) < (
                    through_host_below):
                host += 1
                host_bytes += sum(len(piece) for piece in held.values())
                data = held
            elif keep_holes:
                gaps = max(held, default=-1) + 1 - len(held)
                punched += bool(gaps)
                holes += gaps * fake_ceph.BLOCK
                data = held
            data = (dict(sorted(data.items())) if isinstance(data, dict)
                    else _blocks(data))  # {block number: its data}
            if dst is None:  # nobody reads these: orphans
                last = max(data, default=-1) + 1
                cluster.objects.setdefault(dst_pool, {})[
                    '%s.%016x' % (dst_prefix, index)] = {
                        'data': b''.join(data.get(n, bytes(fake_ceph.BLOCK))
                                         for n in range(last)),
                        'omap': {}}
                continue
            blocks = dst.object_blocks(index)
            dst.behind.add(index)  # copy_from: not in the object map
            for i in blocks:
                dst.blocks.pop(i, None)
            for n, chunk in data.items():
                if chunk:
                    dst.blocks[blocks.start + n] = chunk
        progress(len(numbers), len(numbers))
        return (copied, len(missing), missing, host, host_bytes, punched,
                holes)

    def _held(self, cluster, pool, prefix, index, data):
        """``{block number in the object: data}`` of the blocks it holds."""
        image = self.ceph.data_objects(cluster, pool, prefix)
        if image is None:
            return _blocks(data)
        blocks = image.object_blocks(index)
        return {i - blocks.start: image.blocks[i] for i in blocks
                if i in image.blocks}

    def object_checksums(self, conn, pool, ns, prefix, numbers, depth,
                         progress):
        self.calls.append('object_checksums')
        self.checksummed.append((conn[0], pool))
        self.checksummed_objects.append(tuple(numbers))
        self.ceph._check('object_checksums')
        cluster = self._cluster(conn)
        pool = self._pool(cluster, pool)
        sums = []
        for index in numbers:
            found = self._object(cluster, pool, prefix, index)
            sums.append(None if found is None
                        else (found[0], _hash(found[1])))
        progress(len(numbers), len(numbers))
        return sums

    def xxhash64(self, data, seed):
        return _hash(bytes(data))

    def copy_image(self, conn, src_pool, src_ns, src_name, src_snap,
                   dst_pool, dst_ns, dst_name, features, order, stripe_unit,
                   stripe_count, data_pool, sparse_size, deep, progress):
        self.calls.append('deep_copy_image' if deep else 'copy_image')
        self.data_pools.append(data_pool)
        rados = self.ceph.rados.Rados(conffile=conn[0])
        src = rados.open_ioctx(src_pool)
        dst = rados.open_ioctx(dst_pool)
        with self.ceph.rbd.Image(src, src_name, read_only=True) as image:
            call = image.deep_copy if deep else image.copy
            call(dst, dst_name, features=features, order=order,
                 stripe_unit=stripe_unit, stripe_count=stripe_count,
                 data_pool=data_pool)
            size = image.size()
        progress(size, size)

    def live_completions(self):
        return 0


def install(monkeypatch, ceph):
    """Make rbdmig.ext use a fake extension over ``ceph``; return it."""
    from rbdmig import ext
    fake = Extension(ceph)
    monkeypatch.delenv(ext.DISABLE_ENV, raising=False)
    monkeypatch.setattr(ext, '_extension', lambda: (fake, None))
    return fake


def _blocks(data):
    """``{block number: its data}`` of an object's bytes, holes as zeros."""
    return {n: data[n * fake_ceph.BLOCK:(n + 1) * fake_ceph.BLOCK]
            for n in range(-(-len(data) // fake_ceph.BLOCK))}
