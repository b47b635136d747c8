"""An in-memory stand-in for the rados and rbd modules, for unit tests.

It models what rbdmig relies on: clusters reached through a conf path,
pools, images with data, allocation, snapshots, clones, and the copy and
migration calls.  Any call can be made to fail with :meth:`Ceph.fail`.
Each :class:`Ceph` is independent, so nothing is global.
"""

import errno
import itertools
import json
import queue
import struct
import threading
import time
import types
import uuid

BLOCK = 4096
_IDS = itertools.count(0x1000)  # images' ids, as in rbd_data.<id>


def c_string(value):
    """A name as librados and librbd see it through their bindings.

    The bindings encode names to UTF-8 (lone surrogates raise
    UnicodeEncodeError) and hand C strings over: a NUL ends the name, so
    ``'a\x00b'`` silently names ``'a'`` (measured with librbd 16.2).
    """
    if isinstance(value, str):
        value.encode('utf-8')
        return value.split('\x00', 1)[0]
    return value


class _Image(object):
    def __init__(self, size, order=22, features=61, parent=None,
                 data_pool=None):
        self.size = size
        self.order = order
        self.features = features
        # Where its data objects live: a pool name, None for its own pool.
        self.data_pool = data_pool
        self.prefix = 'rbd_data.%x' % next(_IDS)
        self.blocks = {}  # block index -> bytes(BLOCK)
        self.snaps = {}  # name -> {'blocks': ..., 'protected': bool}
        self.parent = parent  # (pool, image, snap) of a clone
        self.migrating = None  # (source pool, name) during live migration
        self.watchers = []
        # Addresses of the clients holding its exclusive lock (librbd's
        # lock_get_owners); a test puts a gone client's there.
        self.lock_owners = []
        self.metadata = {}  # rbd image-meta
        self.id = uuid.uuid4().hex[:12]
        self.flags = 0  # RBD_FLAG_*: an invalid object map, say
        # The head's object map: the object numbers it was told exist by
        # cls_rbd's object_map_update or _save; None without the
        # OBJECT_MAP feature (8).  What object_map_load answers adds the
        # objects librbd wrote (it persists their state first), all but
        # those written behind its back (``behind``: copy_from).
        self.object_map = set() if (features or 0) & 8 else None
        self.behind = set()

    def copy_data(self):
        clone = _Image(self.size, self.order, self.features)
        clone.blocks = dict(self.blocks)
        return clone

    def object_count(self):
        return -(-self.size // (1 << self.order))

    def mapped(self):
        """The numbers the on-disk object map says exist."""
        per = (1 << self.order) // BLOCK
        written = {idx // per for idx in self.blocks} - self.behind
        return self.object_map | written

    def object_blocks(self, index):
        """The block indexes object ``index`` holds (its own data only)."""
        per = (1 << self.order) // BLOCK
        return range(index * per, (index + 1) * per)

    def resolved(self):
        """Every block this image reads, its parent's included."""
        blocks = {}
        if self.parent is not None:
            pool, name, snap = self.parent
            blocks.update(pool[name].snaps[snap]['blocks'])
        blocks.update(self.blocks)
        return blocks


class Ceph(object):
    """One fake installation: clusters, and the two modules to inject."""

    def __init__(self):
        self.clusters = {}  # conf path -> cluster
        self._failures = {}  # call name -> exception to raise
        self.rados = self._rados_module()
        self.rbd = self._rbd_module()
        self.connections = 0  # open connections, to prove none leak
        self.connects = 0  # connections ever made, to count what a call costs
        self.conf = {}  # what clients set with conf_set
        self._aio_failures = {}  # call name -> [calls left, return value]
        self.aio_in_flight = 0  # requests issued and not yet completed
        self.aio_max_in_flight = 0
        self.aio_calls = []  # (call, offset, length), in issue order
        self._finisher = None
        self._lock = threading.Lock()
        self.blocklist = []  # addresses blocklisted with 'osd blocklist'
        self.watches = {}  # (pool, oid) -> [{'client': id, 'addr': ...}]
        self.executed = []  # (pool, oid, cls, method) of OSD class calls
        # Seconds each async request and each librbd progress step takes,
        # so that progress can be seen as it goes.
        self.latency = 0

    def add_cluster(self, conf, fsid, pools, quota=0):
        """Add a cluster; its ``default_data_pool`` stands for the
        ``rbd_default_data_pool`` its conf sets (None: unset)."""
        self.clusters[conf] = types.SimpleNamespace(
            fsid=fsid, pools={p: {} for p in pools}, quota=quota,
            total=100 << 30, used=0, objects={}, default_data_pool=None)
        return self.clusters[conf]

    @staticmethod
    def pool_id(cluster, name):
        """Pools are numbered from 1 in the order they were added."""
        return list(cluster.pools).index(name) + 1

    @staticmethod
    def pool_name(cluster, pool):
        """A pool given by name or id, as its name (KeyError if none)."""
        if isinstance(pool, int):
            names = list(cluster.pools)
            if not 0 < pool <= len(names):
                raise KeyError(pool)
            return names[pool - 1]
        if pool not in cluster.pools:
            raise KeyError(pool)
        return pool

    @staticmethod
    def data_objects(cluster, pool, prefix):
        """The image whose data objects are ``<prefix>.*`` in ``pool``."""
        for home, images in cluster.pools.items():
            for image in images.values():
                if image.prefix == prefix and (
                        image.data_pool or home) == pool:
                    return image
        return None

    def fail(self, call, error, times=None):
        """Make the next calls named ``call`` raise ``error``.

        :param times: how many calls fail; all of them when None.
        """
        self._failures[call] = [error, times]

    def fail_aio(self, call, ret=-errno.EIO, after=0):
        """Complete the ``call`` (aio_read or aio_write) issued after
        ``after`` successful ones with return value ``ret``."""
        self._aio_failures[call] = [after, ret]

    def _aio(self, call, offset, length, work, finish):
        """Issue an async request: librbd completes it on its own thread.

        ``work()`` does the I/O and returns ``(ret, data)``;
        ``finish(ret, data)`` then runs on the finisher thread, as
        librbd's completion callbacks do.  An injected failure skips the
        I/O and completes with its return value and no data.
        """
        self._check(call)
        with self._lock:
            self.aio_calls.append((call, offset, length))
            self.aio_in_flight += 1
            self.aio_max_in_flight = max(self.aio_max_in_flight,
                                         self.aio_in_flight)
            failure = self._aio_failures.get(call)
            ret = None
            if failure is not None:
                if failure[0] == 0:
                    ret = failure[1]
                failure[0] -= 1
            if self._finisher is None:
                self._finisher = queue.SimpleQueue()
                threading.Thread(target=self._finish_loop, daemon=True,
                                 name='fake-librbd-finisher').start()
        self._finisher.put((ret, work, finish))

    def _finish_loop(self):
        while True:
            ret, work, finish = self._finisher.get()
            time.sleep(self.latency)
            data = None
            if ret is None:
                ret, data = work()
            with self._lock:
                self.aio_in_flight -= 1
            try:
                finish(ret, data)
            except Exception:  # noqa: BLE001 - the binding ignores them
                pass

    def _check(self, call):
        failure = self._failures.get(call)
        if failure is None:
            return
        error, times = failure
        if times is not None:
            if times <= 1:
                del self._failures[call]
            failure[1] = times - 1
        raise error

    def image(self, conf, pool, name):
        return self.clusters[conf].pools[pool][name]

    # -- rados --------------------------------------------------------------

    def _rados_module(self):
        ceph = self
        mod = types.SimpleNamespace()

        class Error(Exception):
            default_errno = None

            def __init__(self, message='', errno=None):
                super().__init__(message)
                self.errno = errno or self.default_errno

        class ObjectNotFound(Error):
            default_errno = errno.ENOENT

        class TimedOut(Error):
            default_errno = errno.ETIMEDOUT

        class PermissionDeniedError(Error):
            default_errno = errno.EACCES

        class ObjectExists(Error):
            default_errno = errno.EEXIST

        class Completion(object):
            def __init__(self, ret):
                self.ret = ret

            def wait_for_complete(self):
                pass

            def get_return_value(self):
                return self.ret

        def object_map_update(images, oid, data):
            """cls_rbd's object_map_update on ``rbd_object_map.<id>``."""
            image = next((i for i in images.values()
                          if oid == 'rbd_object_map.%s' % i.id), None)
            if image is None or image.object_map is None:
                return -errno.ENOENT
            start, stop, state, current = struct.unpack('<QQBB', data)
            if start >= stop or stop > image.object_count() or current:
                return -errno.ERANGE  # (no state filter is modelled)
            numbers = set(range(start, stop))
            if state:
                image.object_map |= numbers
            else:
                image.object_map -= numbers
            return 0

        def map_image(images, oid):
            image = next((i for i in images.values()
                          if oid == 'rbd_object_map.%s' % i.id), None)
            if image is None or image.object_map is None:
                raise ObjectNotFound(oid)
            return image

        def object_map_load(image):
            """cls_rbd's object_map_load: BitVector<2>, no CRCs."""
            count = image.object_count()
            states = bytearray(-(-count // 4))
            for number in image.mapped():
                states[number // 4] |= 1 << (3 - number % 4) * 2
            return (struct.pack('<IBBIQ', 14, 1, 1, 8, count)
                    + bytes(states) + struct.pack('<I', 0))

        def object_map_save(image, data):
            """cls_rbd's object_map_save: EINVAL for what it cannot
            decode.  Stricter than cls_rbd, which saves a map of any
            size: here the map must be the image's own."""
            count = image.object_count()
            length = -(-count // 4)
            if (len(data) != 18 + length + 4
                    or struct.unpack_from('<IBBIQ', data)
                    != (14, 1, 1, 8, count)
                    or data[18 + length:] != struct.pack('<I', 0)):
                raise Error(image.id, errno=errno.EINVAL)
            states = data[18:18 + length]
            image.object_map = {
                n for n in range(count)
                if states[n // 4] >> (3 - n % 4) * 2 & 3}

        class _Op(object):
            """A write or read operation: steps applied on operate."""

            def __init__(self):
                self.steps = []

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                pass

            def new(self, exclusive):
                self.steps.append(('new', exclusive))

            def write_full(self, data):
                self.steps.append(('write_full', bytes(data)))

            def omap_cmp(self, key, val, cmp_op=1):
                assert cmp_op == 1  # EQ: the only one rbdmig uses
                self.steps.append(('omap_cmp', (key, val.encode())))

            def remove(self):
                self.steps.append(('remove', None))

        class Ioctx(object):
            def __init__(self, cluster, pool):
                self.cluster, self.pool = cluster, pool
                self.images = cluster.pools[pool]
                self.objects = cluster.objects.setdefault(pool, {})

            def close(self):
                pass

            def get_pool_id(self):
                return ceph.pool_id(self.cluster, self.pool)

            def get_pool_name(self):
                return self.pool

            # RADOS objects: data and omap, enough for rbdmig's journal.
            def set_omap(self, op, keys, values):
                op.steps.append(('set_omap', dict(zip(keys, values))))

            def remove_omap_keys(self, op, keys):
                op.steps.append(('remove_omap_keys', tuple(keys)))

            def get_omap_vals(self, op, start, prefix, count):
                found = []
                op.steps.append(('get_omap_vals', (found, None)))
                return iter(found), 0

            def get_omap_vals_by_keys(self, op, keys):
                found = []
                op.steps.append(('get_omap_vals', (found, tuple(keys))))
                return iter(found), 0

            def operate_write_op(self, op, oid):
                ceph._check('operate_write_op')
                obj = self.objects.get(oid)
                steps = op.steps
                if steps and steps[0][0] == 'new':
                    if obj is not None:
                        raise ObjectExists(oid)
                if steps and steps[0][0] == 'remove_omap_keys' and (
                        obj is None):
                    raise ObjectNotFound(oid)
                for step, arg in steps:
                    if step != 'omap_cmp':
                        continue
                    if obj is None:
                        raise ObjectNotFound(oid)  # as the OSD: ENOENT
                    if obj['omap'].get(arg[0]) != arg[1]:
                        raise Error(oid, errno=errno.ECANCELED)
                if ('remove', None) in steps:
                    if obj is None:
                        raise ObjectNotFound(oid)
                    del self.objects[oid]  # steps after it: not modelled
                    return
                obj = self.objects.setdefault(oid, {'data': b'',
                                                    'omap': {}})
                for step, arg in steps:
                    if step == 'write_full':
                        obj['data'] = arg
                    elif step == 'set_omap':
                        obj['omap'].update(arg)
                    elif step == 'remove_omap_keys':
                        for key in arg:
                            obj['omap'].pop(key, None)

            def operate_read_op(self, op, oid):
                if oid not in self.objects:
                    raise ObjectNotFound(oid)
                for step, (found, keys) in op.steps:
                    found.extend(sorted(
                        item for item in self.objects[oid]['omap'].items()
                        if keys is None or item[0] in keys))

            def read(self, oid, length=8192, offset=0):
                if oid not in self.objects:
                    raise ObjectNotFound(oid)
                return self.objects[oid]['data'][offset:offset + length]

            def remove_object(self, oid):
                if self.objects.pop(oid, None) is None:
                    raise ObjectNotFound(oid)

            def stat(self, oid):
                if oid.startswith('rbd_object_map.'):
                    # header, states, footer's length, header CRC, CRCs
                    count = map_image(self.images, oid).object_count()
                    size = 18 + -(-count // 4) + 8 + 4 * (
                        1 + -(-count // 16384))
                    return size, time.localtime()
                if oid not in self.objects:
                    raise ObjectNotFound(oid)
                return len(self.objects[oid]['data']), time.localtime()

            def execute(self, oid, cls, method, data, length=8192):
                ceph._check('execute')
                ceph.executed.append((self.pool, oid, cls, method))
                image = map_image(self.images, oid)
                if (cls, method) == ('rbd', 'object_map_load'):
                    out = object_map_load(image)
                    if len(out) > length:
                        raise Error(oid, errno=errno.ERANGE)
                    return len(out), out
                if (cls, method) == ('rbd', 'object_map_save'):
                    object_map_save(image, data)
                    return 0, b''
                raise Error(oid, errno=errno.EOPNOTSUPP)

            def aio_execute(self, oid, cls, method, data, length=8192,
                            oncomplete=None, onsafe=None):
                ceph._check('aio_execute')
                ceph.executed.append((self.pool, oid, cls, method))
                if (cls, method) != ('rbd', 'object_map_update'):
                    return Completion(-errno.EOPNOTSUPP)
                return Completion(object_map_update(self.images, oid, data))

            def list_objects(self):
                return [types.SimpleNamespace(key=k)
                        for k in sorted(self.objects)]

            # Watches (the real binding has watch() but no listing).
            def watch(self, oid, callback, error_callback=None,
                      timeout=None):
                watches = ceph.watches.setdefault((self.pool, oid), [])
                entry = {'client': getattr(self, 'client_id', None),
                         'addr': '10.0.0.%d:0/1' % (len(watches) + 1)}
                watches.append(entry)
                return types.SimpleNamespace(
                    close=lambda: entry in watches and watches.remove(entry))

            def list_watchers(self, oid):
                return list(ceph.watches.get((self.pool, oid), []))

        class Rados(object):
            def __init__(self, rados_id=None, clustername='ceph',
                         conffile='', conf=None):
                ceph._check('Rados')
                conffile = c_string(conffile)
                if conffile not in ceph.clusters:
                    raise ObjectNotFound('conf %r not found' % conffile)
                self.cluster = ceph.clusters[conffile]
                self.rados_id = rados_id
                self.connected = False
                for option, value in (conf or {}).items():
                    self.conf_set(option, value)

            def connect(self, timeout=0):
                ceph._check('connect')
                self.connected = True
                ceph.connections += 1
                ceph.connects += 1

            def shutdown(self):
                if self.connected:
                    self.connected = False
                    ceph.connections -= 1

            def get_fsid(self):
                return self.cluster.fsid

            def get_instance_id(self):
                return id(self)

            def get_addrs(self):
                return '127.0.0.1:0/%d' % id(self)

            def pool_lookup(self, name):
                return ceph.pool_id(self.cluster, name)

            def pool_reverse_lookup(self, pool_id):
                return ceph.pool_name(self.cluster, pool_id)

            def conf_set(self, option, value):
                if not isinstance(value, str):
                    raise TypeError('value must be a string')
                ceph.conf[option] = value

            def open_ioctx(self, pool):
                pool = c_string(pool)
                if pool not in self.cluster.pools:
                    raise ObjectNotFound('pool %s' % pool)
                ioctx = Ioctx(self.cluster, pool)
                ioctx.client_id = self.get_instance_id()
                return ioctx

            def mon_command(self, cmd, inbuf):
                ceph._check('mon_command')
                cmd = json.loads(cmd)
                c = self.cluster
                if cmd['prefix'] == 'df':
                    out = {'stats': {'total_bytes': c.total},
                           'pools': [{'name': p, 'stats': {
                               'stored': c.used,
                               'max_avail': c.total - c.used}}
                               for p in c.pools]}
                elif cmd['prefix'] == 'osd pool get-quota':
                    out = {'quota_max_bytes': c.quota}
                elif cmd['prefix'] == 'osd blocklist':
                    # The OSDs drop a blocklisted client's watches.
                    ceph.blocklist.append(cmd['addr'])
                    for watches in ceph.watches.values():
                        watches[:] = [w for w in watches
                                      if w['addr'] != cmd['addr']]
                    for pool in c.pools.values():
                        for image in pool.values():
                            image.watchers = [
                                w for w in image.watchers
                                if w.get('addr') != cmd['addr']]
                    out = {}
                elif cmd['prefix'] == 'mon dump':
                    out = {'mons': [{'public_addrs': {'addrvec': [
                        {'type': 'v2', 'addr': '127.0.0.1:3300'},
                        {'type': 'v1', 'addr': '127.0.0.1:6789'}]}}]}
                else:
                    return -22, b'', 'unknown command'
                return 0, json.dumps(out).encode(), ''

        mod.Error, mod.ObjectNotFound, mod.TimedOut = (
            Error, ObjectNotFound, TimedOut)
        mod.PermissionDeniedError = PermissionDeniedError
        mod.ObjectExists = ObjectExists
        mod.WriteOpCtx = mod.ReadOpCtx = _Op
        mod.LIBRADOS_CREATE_EXCLUSIVE = 1
        mod.LIBRADOS_CMPXATTR_OP_EQ = 1
        mod.Rados, mod.Ioctx = Rados, Ioctx
        return mod

    # -- rbd ------------------------------------------------------------------

    def _rbd_module(self):
        ceph = self
        mod = types.SimpleNamespace()
        for i, name in enumerate(('LAYERING', 'STRIPINGV2', 'EXCLUSIVE_LOCK',
                                  'OBJECT_MAP', 'FAST_DIFF', 'DEEP_FLATTEN',
                                  'JOURNALING', 'DATA_POOL', 'OPERATIONS',
                                  'MIGRATING', 'NON_PRIMARY')):
            setattr(mod, 'RBD_FEATURE_' + name, 1 << i)

        class Error(Exception):
            pass

        for name in ('ImageNotFound', 'ImageExists', 'ImageHasSnapshots',
                     'ImageBusy', 'InvalidArgument', 'NoSpace'):
            setattr(mod, name, type(name, (Error,), {}))
        mod.Error = Error

        def lookup(ioctx, name):
            try:
                return ioctx.images[c_string(name)]
            except KeyError:
                raise mod.ImageNotFound(name)

        def new(ioctx, name, image, data_pool=None):
            """Add ``image`` as ``name``, its data where librbd puts it.

            That is ``data_pool`` if given, else the cluster's default
            (``rbd_default_data_pool``), else the image's own pool.
            """
            name = c_string(name)
            if not name:
                raise mod.InvalidArgument('error creating image')
            if name in ioctx.images or 'rbd_id.' + name in ioctx.objects:
                # An rbd_id object alone takes the name too (librbd
                # creates it exclusively): what an interrupted rename left.
                raise mod.ImageExists(name)
            data_pool = data_pool or ioctx.cluster.default_data_pool
            if data_pool and data_pool != ioctx.pool:
                if data_pool not in ioctx.cluster.pools:
                    raise mod.ImageNotFound('data pool %s' % data_pool)
                image.data_pool = data_pool
                image.features = (image.features or 0) | (
                    mod.RBD_FEATURE_DATA_POOL)
            ioctx.images[name] = image
            return image

        def progress(on_progress, total):
            if on_progress is not None:
                for done in (0, total // 2, total):
                    time.sleep(ceph.latency)
                    if on_progress(done, total):
                        raise Error('cancelled by callback')

        class Completion(object):
            def __init__(self, ret):
                self.ret = ret

            def get_return_value(self):
                return self.ret

        class Image(object):
            def __init__(self, ioctx, name, snapshot=None, read_only=False):
                ceph._check('Image')
                self.ioctx, self.name = ioctx, c_string(name)
                self.data = lookup(ioctx, name)
                self.read_only = read_only
                self.closed = False

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.close()

            def close(self):
                self.closed = True

            def get_name(self):
                return self.name

            def size(self):
                return self.data.size

            def id(self):
                return self.data.id

            def block_name_prefix(self):
                return 'rbd_data.%s' % self.data.id

            def stat(self):
                # As librbd's rbd_stat: its parent fields are deprecated
                # and empty, a clone's too (overlap() tells a clone).
                return {'size': self.data.size, 'order': self.data.order,
                        'obj_size': 1 << self.data.order,
                        'num_objs': self.data.object_count(),
                        'block_name_prefix': self.data.prefix,
                        'parent_pool': 2 ** 64 - 1, 'parent_name': b''}

            def data_pool_id(self):
                return ceph.pool_id(self.ioctx.cluster,
                                    self.data.data_pool or self.ioctx.pool)

            def features(self):
                return self.data.features

            def stripe_unit(self):
                return 1 << self.data.order

            def stripe_count(self):
                return 1

            def flags(self):
                return self.data.flags

            def overlap(self):
                """The bytes read from the parent: 0 without one."""
                return 0 if self.data.parent is None else self.data.size

            def read(self, offset, length):
                ceph._check('read')
                if offset + length > self.data.size:
                    raise mod.InvalidArgument('read past end')
                out = bytearray()
                pos = offset
                blocks = self.data.resolved()
                while pos < offset + length:
                    block = blocks.get(pos // BLOCK, bytes(BLOCK))
                    start = pos % BLOCK
                    take = min(BLOCK - start, offset + length - pos)
                    out += block[start:start + take]
                    pos += take
                return bytes(out)

            def write(self, data, offset):
                ceph._check('write')
                if not isinstance(data, bytes):
                    raise TypeError('data must be a byte string')
                if self.read_only:
                    raise mod.InvalidArgument('read-only image')
                pos = offset
                end = offset + len(data)
                while pos < end:
                    idx, start = divmod(pos, BLOCK)
                    block = bytearray(self.data.resolved().get(idx,
                                                               bytes(BLOCK)))
                    take = min(BLOCK - start, end - pos)
                    block[start:start + take] = data[pos - offset:
                                                     pos - offset + take]
                    self.data.blocks[idx] = bytes(block)
                    self.data.behind.discard(
                        idx * BLOCK >> self.data.order)  # librbd maps it
                    pos += take
                return len(data)

            def aio_read(self, offset, length, oncomplete, fadvise_flags=0):
                def work():
                    return length, self.read(offset, length)

                ceph._aio('aio_read', offset, length, work,
                          lambda ret, data: oncomplete(Completion(ret), data))
                return Completion(None)

            def aio_write(self, data, offset, oncomplete, fadvise_flags=0):
                if not isinstance(data, bytes):
                    raise TypeError('data must be a byte string')

                def work():
                    self.write(data, offset)
                    return 0, None

                ceph._aio('aio_write', offset, len(data), work,
                          lambda ret, _: oncomplete(Completion(ret)))
                return Completion(None)

            def write_zeroes(self, offset, length, zero_flags=0):
                ceph._check('write_zeroes')
                if self.read_only:
                    raise mod.InvalidArgument('read-only image')
                if offset + length > self.data.size:
                    raise mod.InvalidArgument('zeroing past end')
                end = offset + length
                first = -(-offset // BLOCK)  # whole blocks are dropped
                for idx in range(first, end // BLOCK):
                    self.data.blocks.pop(idx, None)
                for start, stop in ((offset, min(end, first * BLOCK)),
                                    (max(offset, end // BLOCK * BLOCK),
                                     end)):
                    if start < stop:
                        self.write(bytes(stop - start), start)

            def flush(self):
                ceph._check('flush')

            def resize(self, size):
                self.data.size = size

            def diff_iterate(self, offset, length, from_snapshot, cb,
                             include_parent=True, whole_object=False):
                blocks = (self.data.resolved() if include_parent
                          else self.data.blocks)
                step = (1 << self.data.order) if whole_object else BLOCK
                reported = sorted({idx * BLOCK // step for idx in blocks})
                for unit in reported:
                    start = unit * step
                    if offset <= start < offset + length:
                        cb(start, min(step, self.data.size - start), True)

            def list_snaps(self):
                return [{'name': n, 'id': i, 'size': self.data.size}
                        for i, n in enumerate(self.data.snaps)]

            def create_snap(self, name):
                ceph._check('create_snap')
                self.data.snaps[name] = {'blocks': self.data.resolved(),
                                         'protected': False, 'children': 0}

            def protect_snap(self, name):
                self.data.snaps[name]['protected'] = True

            def unprotect_snap(self, name):
                if self.data.snaps[name]['children']:
                    raise mod.ImageBusy('snapshot has children')
                self.data.snaps[name]['protected'] = False

            def is_protected_snap(self, name):
                return self.data.snaps[name]['protected']

            def remove_snap(self, name):
                if self.data.snaps[name]['protected']:
                    raise mod.ImageBusy('snapshot is protected')
                del self.data.snaps[name]

            def parent_info(self):
                if self.data.parent is None:
                    raise mod.ImageNotFound('not a clone')
                pool, name, snap = self.data.parent
                return ('parent-pool', name, snap)

            def metadata_list(self):
                return sorted(self.data.metadata.items())

            def metadata_set(self, key, value):
                self.data.metadata[key] = value

            def metadata_remove(self, key):
                del self.data.metadata[key]

            def metadata_get(self, key):
                return self.data.metadata[key]

            def update_features(self, features, enabled):
                if self.read_only:
                    raise mod.InvalidArgument('read-only image')
                if enabled:
                    self.data.features |= features
                else:
                    self.data.features &= ~features

            def rebuild_object_map(self):
                # The fake keeps no object map: remember it was asked.
                self.data.object_map_rebuilt = True

            def lock_acquire(self, mode):
                ceph._check('lock_acquire')
                self.data.locked = mode

            def list_children2(self):
                return [{'image': 'child'}
                        for s in self.data.snaps.values() if s['children']]

            def watchers_list(self):
                return list(self.data.watchers)

            def lock_get_owners(self):
                return [{'mode': 0, 'owner': owner}
                        for owner in self.data.lock_owners]

            def lock_break(self, mode, lock_owner):
                ceph._check('lock_break')
                if self.read_only:
                    raise mod.InvalidArgument('read-only image')
                # As rbd_blocklist_on_break_lock (librbd's default).
                self.data.lock_owners.remove(lock_owner)
                ceph.blocklist.append(lock_owner)

            def copy(self, dest_ioctx, dest_name, features=None, order=None,
                     stripe_unit=None, stripe_count=None, data_pool=None):
                image = new(dest_ioctx, dest_name,
                            _Image(self.data.size, order, features),
                            data_pool)
                ceph._check('copy')
                image.blocks = self.data.resolved()
                image.metadata = dict(self.data.metadata)

            def deep_copy(self, dest_ioctx, dest_name, features=None,
                          order=None, stripe_unit=None, stripe_count=None,
                          data_pool=None):
                image = new(dest_ioctx, dest_name,
                            _Image(self.data.size, order, features),
                            data_pool)
                image.snaps = {n: dict(s, protected=False, children=0)
                               for n, s in self.data.snaps.items()}
                ceph._check('deep_copy')
                image.blocks = dict(self.data.blocks)
                image.parent = self.data.parent
                if image.parent is not None:
                    pool, name, snap = image.parent
                    pool[name].snaps[snap]['children'] += 1
                image.metadata = dict(self.data.metadata)

            def flatten(self, on_progress=None):
                ceph._check('flatten')
                progress(on_progress, self.data.size)
                pool, name, snap = self.data.parent
                parent = pool[name]
                parent.snaps[snap]['children'] -= 1
                self.data.blocks = self.data.resolved()
                self.data.parent = None

        class RBD(object):
            def rename(self, ioctx, src, dest):
                ceph._check('rename')
                image = lookup(ioctx, src)
                new(ioctx, dest, image)
                del ioctx.images[src]

            def migration_status(self, ioctx, image_name):
                target = lookup(ioctx, image_name)
                if target.migrating is None:
                    raise mod.InvalidArgument('not migrating')
                return {'state': target.migration_state,
                        'source_image_name': target.migrating[1]}

            def create(self, ioctx, name, size, order=None, old_format=False,
                       features=None, stripe_unit=None, stripe_count=None,
                       data_pool=None):
                ceph._check('create')
                if not 0 <= size < 1 << 64:
                    # The binding's uint64_t conversion, measured.
                    raise OverflowError('size out of range for uint64_t')
                new(ioctx, name, _Image(size, order or 22, features or 61),
                    data_pool)

            def remove(self, ioctx, name, on_progress=None):
                ceph._check('remove')
                image = lookup(ioctx, name)
                if image.snaps:
                    raise mod.ImageHasSnapshots(name)
                if image.watchers:
                    raise mod.ImageBusy(name)
                progress(on_progress, image.size)
                if image.parent:
                    pool, parent, snap = image.parent
                    pool[parent].snaps[snap]['children'] -= 1
                del ioctx.images[c_string(name)]

            def list(self, ioctx):
                return sorted(ioctx.images)

            def list2(self, ioctx):
                return iter([{'name': name, 'id': ioctx.images[name].id}
                             for name in sorted(ioctx.images)])

            def config_list(self, ioctx):
                default = ioctx.cluster.default_data_pool
                return iter([{'name': 'rbd_default_data_pool',
                              'value': default or '', 'source': 0}])

            def clone(self, p_ioctx, p_name, p_snapname, c_ioctx, c_name,
                      features=None, order=None, stripe_unit=None,
                      stripe_count=None, data_pool=None):
                ceph._check('clone')
                parent = lookup(p_ioctx, p_name)
                snap = parent.snaps[p_snapname]
                if not snap['protected']:
                    raise mod.InvalidArgument('snapshot not protected')
                new(c_ioctx, c_name, _Image(parent.size, order or 22,
                                            features or 61,
                                            (p_ioctx.images, p_name,
                                             p_snapname)), data_pool)
                snap['children'] += 1

            def migration_prepare(self, ioctx, image_name, dest_ioctx,
                                  dest_image_name, features=None, order=None,
                                  stripe_unit=None, stripe_count=None,
                                  data_pool=None):
                ceph._check('migration_prepare')
                source = lookup(ioctx, image_name)
                target = new(dest_ioctx, dest_image_name,
                             _Image(source.size, order, features), data_pool)
                image_name = c_string(image_name)
                target.migrating = (ioctx.images, image_name, source)
                target.migration_state = mod.RBD_IMAGE_MIGRATION_STATE_PREPARED
                # The source leaves its pool (librbd moves it to the trash).
                del ioctx.images[image_name]

            def migration_execute(self, ioctx, image_name, on_progress=None):
                ceph._check('migration_execute')
                target = lookup(ioctx, image_name)
                progress(on_progress, target.size)
                source = target.migrating[2]
                target.blocks = dict(source.blocks)
                target.parent = source.parent
                target.snaps = {n: dict(s) for n, s in source.snaps.items()}
                target.migration_state = mod.RBD_IMAGE_MIGRATION_STATE_EXECUTED

            def migration_commit(self, ioctx, image_name, on_progress=None):
                ceph._check('migration_commit')
                lookup(ioctx, image_name).migrating = None

            def migration_abort(self, ioctx, image_name, on_progress=None):
                ceph._check('migration_abort')
                target = lookup(ioctx, image_name)
                pool, name, source = target.migrating
                pool[name] = source
                del ioctx.images[c_string(image_name)]

        mod.Image, mod.RBD = Image, RBD
        mod.RBD_FLAG_OBJECT_MAP_INVALID = 1
        mod.RBD_FLAG_FAST_DIFF_INVALID = 2
        mod.RBD_LOCK_MODE_EXCLUSIVE = 0
        (mod.RBD_IMAGE_MIGRATION_STATE_PREPARED,
         mod.RBD_IMAGE_MIGRATION_STATE_EXECUTING,
         mod.RBD_IMAGE_MIGRATION_STATE_EXECUTED) = (2, 3, 4)
        return mod
