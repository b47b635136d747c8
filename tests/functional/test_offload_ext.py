"""rbdmig.ext's compiled copies on a real cluster (fails if not built)."""

import errno
import hashlib
import os
import random
import threading
import time
import uuid

import pytest
import rbd

from rbdmig import ext
from rbdmig.ext import _offload  # noqa: F401 - fail loudly if not built
from rbdmig.migration import progress
from rbdmig.sandbox import processes

MiB = 1 << 20
SRC, DST = 'volumes-a', 'volumes-b'
# Features a copy cannot know about until its object map is rebuilt.
MAP_FEATURES = rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF


class Cancelled(Exception):
    """What the tests' callbacks raise to cancel a copy."""


class Recorder(progress.Callback):
    """Records ``(value, size, thread)``; raises at update ``cancel_at``."""

    def __init__(self, cancel_at=None):
        super().__init__()
        self.cancel_at = cancel_at
        self.seen = []

    def absolute_update(self, value):
        super().absolute_update(value)
        self.seen.append((self.value, self.size, threading.get_ident()))
        if len(self.seen) == self.cancel_at:
            raise Cancelled('stop')


class Ticker(threading.Thread):
    """A Python thread ticking every 10 ms while the GIL lets it.

    Progress callbacks run Python code every 0.1 s, which hands the GIL
    around: a copy holding the GIL between them would keep ``max_gap``
    near 0.1 s, so ``mean_gap`` tells that apart from a released GIL.
    """

    def __init__(self):
        super().__init__(daemon=True)
        self.max_gap = 0.0
        self.ticks = 0
        self.stopping = threading.Event()

    def run(self):
        began = last = time.monotonic()
        while not self.stopping.is_set():
            time.sleep(0.01)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            self.ticks += 1
            last = now
        self.mean_gap = (last - began) / max(1, self.ticks)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stopping.set()
        self.join()

    def assert_never_starved(self):
        # Sleeps of 10 ms: a copy holding the GIL would stall them for
        # all of its second or more; the bounds leave a loaded machine
        # room to schedule.
        assert self.max_gap < 0.5
        assert self.mean_gap < 0.06


@pytest.fixture(scope='module')
def client(ceph_cluster):
    assert ext.available(), ext.unavailable_reason()
    conn = ceph_cluster.connect()
    ioctxs = {pool: conn.open_ioctx(pool) for pool in (SRC, DST)}
    yield ioctxs
    for ioctx in ioctxs.values():
        ioctx.close()
    conn.shutdown()


@pytest.fixture(scope='module')
def spec(ceph_cluster):
    return ext.ClusterSpec(ceph_cluster.conf_path,
                           keyring_path=ceph_cluster.admin_keyring_path,
                           client_mount_timeout=10, rados_mon_op_timeout=10,
                           rados_osd_op_timeout=10)


def _name(kind):
    return f'offload-{kind}-{uuid.uuid4().hex[:8]}'


def _sha(ioctx, name, snapshot=None):
    sha = hashlib.sha256()
    with rbd.Image(ioctx, name, snapshot=snapshot, read_only=True) as image:
        for offset in range(0, image.size(), 4 * MiB):
            sha.update(image.read(offset, 4 * MiB))
    return sha.hexdigest()


def _extents(ioctx, name):
    """The (offset, length) extents holding data, per diff_iterate."""
    found = []
    with rbd.Image(ioctx, name, read_only=True) as image:
        image.diff_iterate(0, image.size(), None,
                           lambda off, n, exists: exists and found.append(
                               (off, n)))
    return found


def _objects(ioctx, prefix):
    return sorted(o.key for o in ioctx.list_objects()
                  if o.key.startswith(prefix + '.'))


def _remove_objects(ioctx, prefix):
    for key in _objects(ioctx, prefix):
        ioctx.remove_object(key)


def _remove_image(ioctx, name):
    """Remove an image and its snapshots, as a caller cleaning up would."""
    try:
        with rbd.Image(ioctx, name) as image:
            for snap in list(image.list_snaps()):
                image.remove_snap(snap['name'])
    except rbd.ImageNotFound:
        return
    rbd.RBD().remove(ioctx, name)


def _blocklist(cluster):
    """The blocklisted addresses (Pacific's JSON output is malformed)."""
    return sorted(line.split()[0] for line in cluster.ceph(
        'osd', 'blocklist', 'ls').splitlines() if line.strip())


@pytest.fixture(scope='module')
def full_image(client):
    """256 MiB of random data, and a snapshot ``before`` of other data."""
    name = _name('full')
    rbd.RBD().create(client[SRC], name, 256 * MiB)
    try:
        with rbd.Image(client[SRC], name) as image:
            for offset in range(0, 256 * MiB, 4 * MiB):
                image.write(os.urandom(4 * MiB), offset)
            image.create_snap('before')
            image.write(os.urandom(8 * MiB), 0)
            prefix = image.stat()['block_name_prefix']
        yield {'name': name, 'prefix': prefix, 'objects': 64,
               'sha': _sha(client[SRC], name),
               'sha_before': _sha(client[SRC], name, 'before')}
    finally:
        _remove_image(client[SRC], name)


def _like(client, src, dst, features_off=0):
    """Create ``dst`` in DST with ``src``'s size and layout."""
    with rbd.Image(client[SRC], src, read_only=True) as image:
        stat, features = image.stat(), image.features()
        striped = features & rbd.RBD_FEATURE_STRIPINGV2
        rbd.RBD().create(client[DST], dst, stat['size'], order=stat['order'],
                         features=features & ~features_off,
                         stripe_unit=image.stripe_unit() if striped else 0,
                         stripe_count=image.stripe_count() if striped else 0)
    with rbd.Image(client[DST], dst, read_only=True) as image:
        return stat, image.stat()['block_name_prefix']


def _copy_image_objects(client, spec, src, dst, **kwargs):
    """copy_objects an RBD image, then make its object map true."""
    stat, dst_prefix = _like(client, src, dst, features_off=MAP_FEATURES)
    result = ext.copy_objects(spec, SRC, stat['block_name_prefix'], DST,
                              dst_prefix, range(stat['num_objs']), **kwargs)
    with rbd.Image(client[DST], dst) as image:
        if image.features() & MAP_FEATURES != MAP_FEATURES:
            image.update_features(MAP_FEATURES, True)
        image.rebuild_object_map()
    return stat, result


def test_copy_objects_copies_a_thin_image_exactly(client, spec):
    src, dst = _name('thin'), _name('thin-copy')
    rbd.RBD().create(client[SRC], src, 1024 * MiB)
    try:
        rng = random.Random(src)
        with rbd.Image(client[SRC], src) as image:
            for slot in rng.sample(range(1024), 102):  # 10% of 1 GiB
                image.write(os.urandom(MiB), slot * MiB)
            present = len(_objects(client[SRC],
                                   image.stat()['block_name_prefix']))

        stat, result = _copy_image_objects(client, spec, src, dst)

        assert result[:2] == (present, stat['num_objs'] - present)
        assert len(result.missing) == result.skipped
        assert _sha(client[DST], dst) == _sha(client[SRC], src)
        extents = _extents(client[SRC], src)
        assert _extents(client[DST], dst) == extents
        assert sum(n for _, n in extents) < 512 * MiB  # thin, not 1 GiB
    finally:
        _remove_image(client[DST], dst)
        _remove_image(client[SRC], src)


def test_copy_objects_copies_a_striped_image(client, spec):
    src, dst = _name('striped'), _name('striped-copy')
    size = 40 * MiB + 512 * 1024  # not a whole number of 12 MiB periods
    rbd.RBD().create(client[SRC], src, size, order=22, stripe_unit=MiB,
                     stripe_count=3)
    try:
        with rbd.Image(client[SRC], src) as image:
            image.write(os.urandom(size), 0)

        stat, result = _copy_image_objects(client, spec, src, dst)

        assert stat['num_objs'] == 12  # not ceil(size / 4 MiB) == 11
        assert result == ext.ObjectCopyResult(copied=12, skipped=0)
        listed = ext.object_numbers(spec, SRC, stat['block_name_prefix'])
        assert listed == list(range(12))
        assert _sha(client[DST], dst) == _sha(client[SRC], src)
    finally:
        _remove_image(client[DST], dst)
        _remove_image(client[SRC], src)


def test_copy_objects_reports_monotonic_progress_on_this_thread(
        client, spec, full_image):
    prefix = _name('progress')
    recorder = Recorder()
    try:
        result = ext.copy_objects(spec, SRC, full_image['prefix'], DST,
                                  prefix, range(64), queue_depth=1,
                                  callback=recorder)

        values = [value for value, _, _ in recorder.seen]
        assert result == ext.ObjectCopyResult(copied=64, skipped=0)
        assert len(values) >= 3  # reports along the way, not just the end
        assert values == sorted(values) and values[-1] == 64
        assert {size for _, size, _ in recorder.seen} == {64}
        assert {thread for _, _, thread in recorder.seen} == {
            threading.get_ident()}
    finally:
        _remove_objects(client[DST], prefix)


def test_copy_objects_releases_the_gil(client, spec, full_image):
    # Copies (over the same objects) for a second at least, however fast
    # the OSD: a copy that held the GIL would stop the ticker for all of
    # each call.
    prefix = _name('gil')
    try:
        with Ticker() as ticker:
            began = time.monotonic()
            while time.monotonic() - began < 1.0:
                ext.copy_objects(spec, SRC, full_image['prefix'], DST,
                                 prefix, range(64), queue_depth=1)
        ticker.assert_never_starved()
    finally:
        _remove_objects(client[DST], prefix)


def test_cancelling_copy_objects_stops_promptly_and_drains(
        client, spec, full_image, report_each_change):
    prefix = _name('cancel')
    recorder = Recorder(cancel_at=1)
    try:
        began = time.monotonic()
        with pytest.raises(Cancelled):
            ext.copy_objects(spec, SRC, full_image['prefix'], DST, prefix,
                             range(64), queue_depth=1, callback=recorder)
        took = time.monotonic() - began

        assert _offload.live_completions() == 0
        landed = _objects(client[DST], prefix)
        # Cancelled at the first object done, with one op at a time: the
        # next one was never sent.
        assert [value for value, _, _ in recorder.seen] == [1]
        assert len(landed) == 1
        time.sleep(0.5)
        assert _objects(client[DST], prefix) == landed  # nothing in flight
        assert took < 4
    finally:
        _remove_objects(client[DST], prefix)


def test_copy_objects_within_and_across_namespaces(client, spec):
    src_ioctx, dst_ioctx = client[SRC], client[DST]
    data = {index: os.urandom(4096) for index in (0, 1, 3)}
    try:
        src_ioctx.set_namespace('ns-a')
        for index, blob in data.items():
            src_ioctx.write_full('obj.%016x' % index, blob)

        result = ext.copy_objects(spec, SRC, 'obj', DST, 'copy', range(4),
                                  src_namespace='ns-a',
                                  dst_namespace='ns-b')

        assert result == ext.ObjectCopyResult(copied=3, skipped=1,
                                              missing=(2,))
        assert ext.object_numbers(spec, SRC, 'obj', namespace='ns-a') == [
            0, 1, 3]
        assert ext.object_numbers(spec, SRC, 'obj') == []  # another one
        assert ext.copy_objects(spec, SRC, 'obj', DST, 'copy', [],
                                src_namespace='ns-a', dst_namespace='ns-b'
                                ) == ext.ObjectCopyResult(0, 0)
        dst_ioctx.set_namespace('ns-b')
        assert {key: dst_ioctx.read(key, 8192)
                for key in _objects(dst_ioctx, 'copy')} == {
            'copy.%016x' % index: blob for index, blob in data.items()}
        dst_ioctx.set_namespace('')
        assert _objects(dst_ioctx, 'copy') == []  # not in the default one
    finally:
        for ioctx, namespace, prefix in ((src_ioctx, 'ns-a', 'obj'),
                                         (dst_ioctx, 'ns-b', 'copy')):
            ioctx.set_namespace(namespace)
            _remove_objects(ioctx, prefix)
            ioctx.set_namespace('')


def _sparse_objects(ioctx, prefix, count=1):
    """Objects of every shape the host path meets, ``count`` times over.

    Per group of five: 0 holds 100 bytes and is 1 MiB long (a hole to its
    end), 1 is a full 4 MiB, 2 holds 512 KiB at 0 and 512 KiB at 1 MiB (a
    hole between), 3 exists and is empty, 4 does not exist.

    :returns: ``{number: (size, bytes)}`` of those that exist.
    """
    made = {}
    for group in range(count):
        first = group * 5
        shapes = {
            first: {0: os.urandom(100)},
            first + 1: {0: os.urandom(4 * MiB)},
            first + 2: {0: os.urandom(512 * 1024),
                        MiB: os.urandom(512 * 1024)},
            first + 3: {}}
        for number, pieces in shapes.items():
            key = '%s.%016x' % (prefix, number)
            ioctx.write_full(key, b'')
            for offset, blob in pieces.items():
                ioctx.write(key, blob, offset)
            if number == first:
                ioctx.trunc(key, MiB)
            size = ioctx.stat(key)[0]
            made[number] = (size, ioctx.read(key, size) if size else b'')
    return made


def test_objects_holding_little_data_are_copied_through_the_host(client,
                                                                 spec):
    """Every object holding less than a whole object's data goes through
    the host (on memstore an object's extent runs to its end, on
    bluestore only its data: either is under 4 MiB), its shape kept: its
    size, its bytes, an empty object empty; the full one by copy_from.
    Objects already in the destination keep nothing of their own, as
    copy_from's do not."""
    src, dst = _name('sparse-src'), _name('sparse-dst')
    made = _sparse_objects(client[SRC], src)
    for number in (0, 2, 3):
        client[DST].write_full('%s.%016x' % (dst, number),
                               b'\xff' * (4 * MiB))
    try:
        result = ext.copy_objects(spec, SRC, src, DST, dst, range(5),
                                  object_size=4 * MiB,
                                  through_host_below=4 * MiB)

        assert result[:4] == (4, 1, (4,), 3)
        # 100 B + 1 MiB of data (bluestore) to 1 MiB + 1.5 MiB (memstore)
        assert MiB + 100 <= result.host_bytes <= MiB + 1536 * 1024
        assert _offload.live_completions() == 0
        for number, (size, data) in made.items():
            key = '%s.%016x' % (dst, number)
            assert client[DST].stat(key)[0] == size
            assert (client[DST].read(key, size) if size else b'') == data
        assert _objects(client[DST], dst) == [
            '%s.%016x' % (dst, n) for n in range(4)]
    finally:
        _remove_objects(client[SRC], src)
        _remove_objects(client[DST], dst)


def test_without_a_threshold_every_object_is_copied_whole(client, spec):
    src, dst = _name('whole-src'), _name('whole-dst')
    made = _sparse_objects(client[SRC], src)
    try:
        result = ext.copy_objects(spec, SRC, src, DST, dst, range(5))

        assert result == ext.ObjectCopyResult(copied=4, skipped=1,
                                              missing=(4,))
        for number, (size, data) in made.items():
            key = '%s.%016x' % (dst, number)
            assert client[DST].stat(key)[0] == size
    finally:
        _remove_objects(client[SRC], src)
        _remove_objects(client[DST], dst)


def test_keep_holes_zeroes_the_holes_of_objects_copied_whole(
        bluestore_cluster):
    """On bluestore (whose mapext says only where data is), the objects
    copied whole by copy_from get their holes below their last byte of
    data zeroed: object 2's 512 KiB between its two pieces, nothing of
    the others (object 0's hole runs to its end; object 1 is full;
    object 3 is empty).  Every object reads as its source: size and
    bytes."""
    spec = ext.ClusterSpec(bluestore_cluster.conf_path,
                           keyring_path=bluestore_cluster.admin_keyring_path,
                           client_mount_timeout=10, rados_mon_op_timeout=10,
                           rados_osd_op_timeout=10)
    conn = bluestore_cluster.connect()
    src_io, dst_io = conn.open_ioctx(SRC), conn.open_ioctx(DST)
    src, dst = _name('holes-src'), _name('holes-dst')
    try:
        made = _sparse_objects(src_io, src)
        result = ext.copy_objects(spec, SRC, src, DST, dst, range(5),
                                  object_size=4 * MiB, keep_holes=True)

        assert result == ext.ObjectCopyResult(
            copied=4, skipped=1, missing=(4,), punched=1,
            punched_bytes=512 * 1024)
        for number, (size, data) in made.items():
            key = '%s.%016x' % (dst, number)
            assert dst_io.stat(key)[0] == size
            assert (dst_io.read(key, size) if size else b'') == data
    finally:
        _remove_objects(src_io, src)
        _remove_objects(dst_io, dst)
        src_io.close()
        dst_io.close()
        conn.shutdown()


@pytest.mark.parametrize('below', [0, 1 << 20, 4 << 20])
def test_a_threshold_needs_an_object_size_it_fits(spec, below):
    with pytest.raises((TypeError, ValueError), match='object_size|'
                       'through_host_below'):
        ext.copy_objects(spec, SRC, 'a', DST, 'b', [0],
                         object_size=None if below else 4096,
                         through_host_below=below or 8192)


def test_cancelling_a_copy_through_the_host_drains_ops_and_probers(
        client, spec, report_each_change):
    src, dst = _name('cancel-src'), _name('cancel-dst')
    _sparse_objects(client[SRC], src, count=60)
    recorder = Recorder(cancel_at=1)
    try:
        with pytest.raises(Cancelled):
            ext.copy_objects(spec, SRC, src, DST, dst, range(300),
                             queue_depth=1, object_size=4 * MiB,
                             through_host_below=4 * MiB, callback=recorder)

        assert _offload.live_completions() == 0
        landed = _objects(client[DST], dst)
        # Cancelled at the first object done (copied, or found missing),
        # with one op at a time: at most one more was under way.
        assert [value for value, _, _ in recorder.seen] == [1]
        assert len(landed) <= 2
        time.sleep(0.5)
        assert _objects(client[DST], dst) == landed  # nothing in flight
    finally:
        _remove_objects(client[SRC], src)
        _remove_objects(client[DST], dst)


def test_copy_objects_into_a_pool_over_quota_fails_fast_with_edquot(
        ceph_cluster, client, spec, full_image):
    pool = _name('quota')
    ceph_cluster.ceph('osd', 'pool', 'create', pool, '8')
    try:
        ceph_cluster.ceph('osd', 'pool', 'set-quota', pool, 'max_bytes',
                          str(MiB))
        conn = ceph_cluster.connect()
        try:
            with conn.open_ioctx(pool) as ioctx:
                ioctx.write_full('filler', os.urandom(2 * MiB))
        finally:
            conn.shutdown()
        deadline = time.monotonic() + 60
        while 'full_quota' not in ceph_cluster.ceph('osd', 'dump'):
            assert time.monotonic() < deadline, 'the quota never applied'
            time.sleep(0.2)

        began = time.monotonic()
        with pytest.raises(OSError) as raised:
            ext.copy_objects(spec, SRC, full_image['prefix'], pool,
                             'rbd_data.x', range(64))

        # Not left waiting for the op timeout (10 s).
        assert time.monotonic() - began < 5
        assert raised.value.errno == errno.EDQUOT
        assert "of pool '%s'" % pool in str(raised.value)
        assert full_image['prefix'] + '.00000000000000' in str(raised.value)
        assert _offload.live_completions() == 0
    finally:
        ceph_cluster.ceph('osd', 'pool', 'rm', pool, pool,
                          '--yes-i-really-really-mean-it')


def test_missing_pools_and_images_raise_enoent(spec, full_image):
    with pytest.raises(FileNotFoundError,
                       match="opening pool 'no-such-pool'") as raised:
        ext.copy_objects(spec, SRC, full_image['prefix'], 'no-such-pool',
                         'x', [0])
    assert raised.value.errno == errno.ENOENT
    with pytest.raises(FileNotFoundError,
                       match=f"opening image '{SRC}/no-such-image'"):
        ext.copy_image(spec, SRC, 'no-such-image', DST, 'x')


def test_unreachable_cluster_fails_within_the_mount_timeout(
        ceph_cluster, tmp_path):
    conf = tmp_path / 'unreachable.conf'
    conf.write_text('[global]\nmon host = v1:127.0.0.1:%d\n'
                    % processes.free_port())
    spec = ext.ClusterSpec(str(conf),
                           keyring_path=ceph_cluster.admin_keyring_path,
                           client_mount_timeout=2)

    began = time.monotonic()
    with pytest.raises(TimeoutError, match='connecting to Ceph cluster'):
        ext.copy_objects(spec, SRC, 'x', DST, 'y', [0])
    took = time.monotonic() - began

    assert 1.5 < took < 5


COPIES = {'copy': ext.copy_image, 'deep_copy': ext.deep_copy_image}


@pytest.mark.parametrize('method', COPIES)
def test_image_copies_are_identical_with_progress(client, spec, full_image,
                                                  method):
    dst = _name(method)
    recorder = Recorder()
    try:
        with Ticker() as ticker:
            COPIES[method](spec, SRC, full_image['name'], DST, dst,
                           callback=recorder)

        assert _sha(client[DST], dst) == full_image['sha']
        with rbd.Image(client[DST], dst, read_only=True) as image:
            snaps = [snap['name'] for snap in image.list_snaps()]
        if method == 'deep_copy':
            assert snaps == ['before']
            assert _sha(client[DST], dst, 'before') == full_image[
                'sha_before']
        else:
            assert snaps == []
        values = [value for value, _, _ in recorder.seen]
        value, size, _ = recorder.seen[-1]
        assert len(values) >= 2 and values == sorted(values)
        assert value == size == (256 * MiB if method == 'copy' else 64)
        ticker.assert_never_starved()
    finally:
        _remove_image(client[DST], dst)


@pytest.mark.parametrize('method', COPIES)
def test_cancelling_an_image_copy_stops_it_and_leaves_it_removable(
        ceph_cluster, client, spec, full_image, method, report_each_change):
    dst = _name(method + '-cancel')
    blocklist = _blocklist(ceph_cluster)
    try:
        began = time.monotonic()
        with pytest.raises(Cancelled):
            COPIES[method](spec, SRC, full_image['name'], DST, dst,
                           callback=Recorder(cancel_at=1))
        took = time.monotonic() - began

        # Cancelled at librbd's first progress: what it had under way
        # (rbd_concurrent_management_ops, 10, of 4 MiB) landed, not the
        # rest of the 256 MiB (40 to 60 MiB here).
        assert sum(n for _, n in _extents(client[DST], dst)) < 128 * MiB
        assert took < 8
        assert _blocklist(ceph_cluster) == blocklist  # the fence is lifted
    finally:
        _remove_image(client[DST], dst)
    assert dst not in rbd.RBD().list(client[DST])
