"""The ``extents`` migration method (librbd async I/O), against the fake."""

import errno
import os
import threading

import pytest

from rbdmig import exception
from rbdmig.migration import copy as copy_engine
from rbdmig.migration import progress
from rbdmig.ceph import methods as rbd_methods
from tests.unit import fake_ceph
from tests.unit import rbd_fixtures as fx

KiB = 1 << 10
CHUNK = 64 * KiB


@pytest.fixture
def ceph():
    return fx.make_ceph()


def _pair(ceph, depth=4, chunk=CHUNK, **opts):
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='extents',
                         rbd_migration_queue_depth=depth,
                         rbd_migration_chunk_size=chunk, **opts)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    return src, dst


def _volume(ceph, pieces):
    """An 8 MiB volume holding ``{offset: data}``."""
    volume = fx.make_volume(ceph)
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    with ceph.rbd.Image(ioctx, volume.name) as image:
        for offset, data in pieces.items():
            image.write(data, offset)
    return volume


def _exists(ceph, pool, name):
    return name in ceph.clusters[fx.CONF_A].pools[pool]


PIECES = {0: os.urandom(100 * KiB),            # spans two chunks
          3 * fx.MiB + 5: os.urandom(7),        # unaligned, tiny
          8 * fx.MiB - 4096: os.urandom(4096)}  # the very end


def test_moves_only_allocated_data_and_removes_source(ceph):
    src, dst = _pair(ceph)
    volume = _volume(ceph, PIECES)
    source = ceph.image(fx.CONF_A, 'hdd', volume.name)
    blocks = dict(source.blocks)

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)

    moved = ceph.image(fx.CONF_A, 'ssd', volume.name)
    assert moved.blocks == blocks  # same data, nothing allocated besides
    assert not _exists(ceph, 'hdd', volume.name)
    reads = [c for c in ceph.aio_calls if c[0] == 'aio_read']
    assert sum(length for _, _, length in reads) < 200 * KiB
    assert all(length <= CHUNK for _, _, length in reads)
    assert ceph.aio_in_flight == 0
    assert ceph.connections == 0


def test_destination_has_the_source_layout(ceph):
    src, dst = _pair(ceph)
    volume = _volume(ceph, PIECES)
    source = ceph.image(fx.CONF_A, 'hdd', volume.name)
    source.order, source.features = 23, 13
    src.migrate_volume(None, volume, fx.host_of(dst))
    moved = ceph.image(fx.CONF_A, 'ssd', volume.name)
    assert (moved.size, moved.order, moved.features) == (8 * fx.MiB, 23, 13)


def test_zero_chunks_inside_extents_are_not_written(ceph):
    src, dst = _pair(ceph)
    # Allocated zeros (as librbd reports from an object's start), then data.
    volume = _volume(ceph, {0: bytes(2 * CHUNK), 2 * CHUNK: b'x' * CHUNK})

    src.migrate_volume(None, volume, fx.host_of(dst))

    writes = [c for c in ceph.aio_calls if c[0] == 'aio_write']
    assert writes == [('aio_write', 2 * CHUNK, CHUNK)]
    moved = ceph.image(fx.CONF_A, 'ssd', volume.name)
    assert fx.read_head(ceph, 'ssd', volume.name, 3 * CHUNK) == (
        bytes(2 * CHUNK) + b'x' * CHUNK)
    assert min(moved.blocks) * fake_ceph.BLOCK == 2 * CHUNK


def test_an_empty_volume_moves_without_io(ceph):
    src, dst = _pair(ceph)
    volume = _volume(ceph, {})
    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)
    assert ceph.aio_calls == []
    assert ceph.image(fx.CONF_A, 'ssd', volume.name).size == 8 * fx.MiB


@pytest.mark.parametrize('depth', [1, 3, 8])
def test_in_flight_requests_never_exceed_the_queue_depth(ceph, depth):
    # 256 KiB chunks of alternating data and zero 64 KiB blocks: every
    # read yields two writes, which must wait for free slots too.
    src, dst = _pair(ceph, depth=depth, chunk=4 * CHUNK)
    data = b''.join(os.urandom(CHUNK) + bytes(CHUNK) for _ in range(40))
    volume = _volume(ceph, {0: data})
    src.migrate_volume(None, volume, fx.host_of(dst))
    calls = [call for call, _, _ in ceph.aio_calls]
    assert calls.count('aio_write') == 2 * calls.count('aio_read') == 40
    assert 1 <= ceph.aio_max_in_flight <= depth
    assert fx.read_head(ceph, 'ssd', volume.name, len(data)) == data


def test_progress_counts_every_byte_once(ceph, monkeypatch):
    fx.pace(ceph, monkeypatch)
    src, dst = _pair(ceph)
    volume = _volume(ceph, PIECES)
    recorder = fx.ProgressRecorder()
    src.migrate_volume(None, volume, fx.host_of(dst), callback=recorder)
    seen = recorder.seen

    size = 8 * fx.MiB
    values = [v for v, _ in seen]
    assert values == sorted(values)
    assert len(set(values)) > 3  # reported as it goes, not only at the end
    assert all(s == size for _, s in seen)
    assert seen[-1] == (size, size)


@pytest.mark.parametrize('call', ['aio_read', 'aio_write'])
def test_a_failed_completion_removes_the_destination(ceph, call):
    src, dst = _pair(ceph, depth=3)
    data = os.urandom(20 * CHUNK)
    volume = _volume(ceph, {0: data})
    ceph.fail_aio(call, ret=-errno.ENOSPC, after=5)

    with pytest.raises(exception.MigrationError,
                       match='source is intact') as err:
        src.migrate_volume(None, volume, fx.host_of(dst))

    assert '[Errno %d]' % errno.ENOSPC in str(err.value)
    assert not _exists(ceph, 'ssd', volume.name)
    assert fx.read_head(ceph, 'hdd', volume.name, len(data)) == data
    # every request was waited for before the images were closed
    assert ceph.aio_in_flight == 0
    # and no new request was issued after the failure was seen
    assert len(ceph.aio_calls) < 40


@pytest.mark.parametrize('call', ['aio_read', 'aio_write', 'create',
                                  'flush'])
def test_a_raising_call_removes_the_destination(ceph, call):
    src, dst = _pair(ceph)
    data = os.urandom(10 * CHUNK)
    volume = _volume(ceph, {0: data})
    ceph.fail(call, ceph.rbd.NoSpace('pool full'))

    with pytest.raises(exception.MigrationError, match='source is intact'):
        src.migrate_volume(None, volume, fx.host_of(dst))

    assert not _exists(ceph, 'ssd', volume.name)
    assert fx.read_head(ceph, 'hdd', volume.name, len(data)) == data
    assert ceph.aio_in_flight == 0


def test_a_short_read_is_an_error(ceph, monkeypatch):
    src, dst = _pair(ceph)
    volume = _volume(ceph, {0: os.urandom(CHUNK)})
    real = ceph.rbd.Image.aio_read

    def short(self, offset, length, oncomplete, fadvise_flags=0):
        return real(self, offset, length,
                    lambda c, data: oncomplete(c, data[:-1]))

    monkeypatch.setattr(ceph.rbd.Image, 'aio_read', short)
    with pytest.raises(exception.MigrationError, match='offset 0'):
        src.migrate_volume(None, volume, fx.host_of(dst))
    assert not _exists(ceph, 'ssd', volume.name)


def test_callback_cancels_and_source_survives(ceph, monkeypatch):
    fx.pace(ceph, monkeypatch)
    src, dst = _pair(ceph, depth=2)
    data = os.urandom(30 * CHUNK)
    volume = _volume(ceph, {0: data})

    class Cancel(progress.Callback):
        def call(self):
            if self.value >= 3 * CHUNK:
                raise KeyboardInterrupt('operator pressed ^C')

    with pytest.raises(KeyboardInterrupt):
        src.migrate_volume(None, volume, fx.host_of(dst), callback=Cancel())

    assert not _exists(ceph, 'ssd', volume.name)
    assert fx.read_head(ceph, 'hdd', volume.name, len(data)) == data
    assert ceph.aio_in_flight == 0
    assert len(ceph.aio_calls) < 40  # stopped early: the copy makes 60


def test_a_volume_with_snapshots_goes_by_deep_copy(ceph):
    src, dst = _pair(ceph)
    volume = _volume(ceph, PIECES)
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    with ceph.rbd.Image(ioctx, volume.name) as image:
        image.create_snap('keep-me')
    blocks = dict(ceph.image(fx.CONF_A, 'hdd', volume.name).blocks)

    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)

    moved = ceph.image(fx.CONF_A, 'ssd', volume.name)
    assert list(moved.snaps) == ['keep-me'] and moved.blocks == blocks
    assert ceph.aio_calls == []  # deep_copy did it, not async I/O
    assert not _exists(ceph, 'hdd', volume.name)


def test_offload_is_the_default(ceph):
    # The bench's winner (README, "Migration methods"); without the
    # extension built it goes by extents (test_offload_method).
    drv = fx.make_driver(ceph)
    assert drv.backend().method == 'offload'


def test_options_reach_the_method(ceph):
    src, _ = _pair(ceph, depth=7, chunk=128 * KiB)
    backend = src.backend()
    method = rbd_methods.get(backend.method, backend)
    assert (method.name, method.queue_depth, method.chunk_size) == (
        'extents', 7, 128 * KiB)
    assert rbd_methods.METHODS['extents'] is not method


def test_concurrent_management_ops_is_set_on_connections(ceph):
    src, _ = _pair(ceph, rbd_concurrent_management_ops=24)
    src.get_volume_stats(refresh=True)
    assert ceph.conf['rbd_concurrent_management_ops'] == '24'


def test_concurrent_management_ops_left_alone_by_default(ceph):
    src, _ = _pair(ceph)
    src.get_volume_stats(refresh=True)
    assert 'rbd_concurrent_management_ops' not in ceph.conf


def test_zero_blocks_inside_a_chunk_are_not_written(ceph):
    # librbd reports from an object's start to its last written byte: a
    # chunk is often mostly zeros, which must not be written.
    block = copy_engine.ZERO_BLOCK
    src, dst = _pair(ceph, chunk=4 * block)
    # written zeros are allocated: one extent spanning the whole chunk
    volume = _volume(ceph, {0: bytes(block) + b'a' * 10 + bytes(2 * block
                                                              - 10) +
                            b'b' * block})

    src.migrate_volume(None, volume, fx.host_of(dst))

    writes = sorted(c for c in ceph.aio_calls if c[0] == 'aio_write')
    assert writes == [('aio_write', block, block),
                      ('aio_write', 3 * block, block)]
    assert fx.read_head(ceph, 'ssd', volume.name, 4 * block) == (
        bytes(block) + b'a' * 10 + bytes(2 * block - 10) + b'b' * block)


def test_a_cancel_while_skipping_zeros_does_not_hang(ceph):
    block = copy_engine.ZERO_BLOCK
    src, dst = _pair(ceph, depth=4, chunk=2 * block)
    # every chunk: a zero block, then data
    volume = _volume(ceph, {(2 * i + 1) * block: os.urandom(block)
                            for i in range(16)})
    outcome = []

    class Cancel(progress.Callback):
        def call(self):
            if self.value:
                raise KeyboardInterrupt('cancel')

    def migrate():
        try:
            src.migrate_volume(None, volume, fx.host_of(dst),
                               callback=Cancel())
        except KeyboardInterrupt as err:
            outcome.append(err)

    worker = threading.Thread(target=migrate, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), 'the copy hung after a cancel'
    assert len(outcome) == 1
    assert ceph.aio_in_flight == 0
    assert not _exists(ceph, 'ssd', volume.name)
