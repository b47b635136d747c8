"""Which objects an image holds, and marking them in its object map."""

import errno
import struct

import pytest

from rbdmig.ceph import data_objects
from tests.unit import fake_ceph
from tests.unit import fake_ext

OBJECT = 4 << 20


@pytest.fixture
def ceph():
    ceph = fake_ceph.Ceph()
    ceph.add_cluster('/etc/ceph/a.conf', 'fsid-a', ['hdd'])
    return ceph


@pytest.fixture
def ioctx(ceph):
    return ceph.rados.Rados(conffile='/etc/ceph/a.conf').open_ioctx('hdd')


def _image(ceph, ioctx, size, numbers):
    ceph.rbd.RBD().create(ioctx, 'vol', size)
    with ceph.rbd.Image(ioctx, 'vol') as image:
        for number in numbers:
            image.write(b'x', number * OBJECT + OBJECT - 1)
    return ceph.image('/etc/ceph/a.conf', 'hdd', 'vol')


@pytest.mark.parametrize('numbers,expected', [
    ([], []),
    ([5], [(5, 6)]),
    ([3, 1, 2, 2, 7, 9, 8, 0], [(0, 4), (7, 10)]),
    (range(1000), [(0, 1000)]),
])
def test_runs_of_consecutive_numbers(numbers, expected):
    assert list(data_objects.runs(numbers)) == expected


def test_existing_reads_the_object_map_not_the_size(ceph, ioctx,
                                                    monkeypatch):
    """1 PiB: one diff_iterate, one extent per object, no listing."""
    osd = fake_ext.install(monkeypatch, ceph)
    _image(ceph, ioctx, 1 << 50, [0, 7, (1 << 50) // OBJECT - 1])

    with ceph.rbd.Image(ioctx, 'vol') as image:
        found = data_objects.existing(ceph.rbd, ioctx, image, None)

    assert found == ([0, 7, (1 << 50) // OBJECT - 1], 'object map')
    assert osd.calls == []


def test_existing_lists_the_pool_without_a_valid_map(ceph, ioctx,
                                                     monkeypatch):
    from rbdmig import ext
    osd = fake_ext.install(monkeypatch, ceph)
    data = _image(ceph, ioctx, 1 << 30, [2, 3])
    data.flags = ceph.rbd.RBD_FLAG_FAST_DIFF_INVALID
    ceph.clusters['/etc/ceph/a.conf'].objects['hdd'] = {
        data.prefix + '.%016x' % 9: {'data': b'raw', 'omap': {}},
        data.prefix + '.orphan': {'data': b'', 'omap': {}},
        'rbd_data.other.%016x' % 1: {'data': b'', 'omap': {}}}

    with ceph.rbd.Image(ioctx, 'vol') as image:
        found = data_objects.existing(ceph.rbd, ioctx, image,
                                      ext.ClusterSpec('/etc/ceph/a.conf'))

    assert found == ([2, 3, 9], 'listing')
    assert osd.calls == ['object_numbers']


def test_mark_existing_one_call_per_run(ceph, ioctx):
    data = _image(ceph, ioctx, 64 * OBJECT, [])

    calls = data_objects.mark_existing(ioctx, data.id, [1, 2, 3, 10, 63])

    assert calls == 3
    assert data.object_map == {1, 2, 3, 10, 63}


SCATTERED = list(range(0, 20, 2))  # ten runs: past MAP_UPDATES_MAX


def _map_calls(ceph):
    return [method for _, _, cls, method in ceph.executed]


def test_mark_existing_sets_many_runs_in_one_load_and_save(ceph, ioctx):
    """A big thin volume's scattered objects: three calls, not one per
    run, and what was marked before stays marked."""
    data = _image(ceph, ioctx, 1 << 40, [])
    data_objects.mark_existing(ioctx, data.id, [100, 101])
    ceph.executed.clear()
    numbers = [7 * n for n in range(1, 500)]

    calls = data_objects.mark_existing(ioctx, data.id, numbers)

    assert calls == 3
    assert _map_calls(ceph) == ['object_map_load', 'object_map_save']
    assert data.object_map == set(numbers) | {100, 101}


def test_the_whole_map_is_sent_as_cls_rbd_decodes_it(ceph, ioctx,
                                                     monkeypatch):
    """BitVector<2>: header (length 14; version 1, compat 1, length 8;
    the count), four states a byte with the first object in the high
    bits, and an empty footer (no CRCs: the OSD computes them)."""
    data = _image(ceph, ioctx, 40 * OBJECT, [])
    sent = []
    execute = type(ioctx).execute
    monkeypatch.setattr(type(ioctx), 'execute',
                        lambda self, oid, cls, method, data, length=8192:
                        sent.append((method, data)) or execute(
                            self, oid, cls, method, data, length))

    data_objects.mark_existing(ioctx, data.id, SCATTERED)

    assert sent[1] == ('object_map_save', bytes.fromhex(
        '0e000000' '01' '01' '08000000' '2800000000000000'
        '4444444444' '0000000000' '00000000'))


def test_the_whole_map_is_left_alone_past_its_end(ceph, ioctx):
    data = _image(ceph, ioctx, 18 * OBJECT, [])  # 18 is past its end

    with pytest.raises(OSError) as raised:
        data_objects.mark_existing(ioctx, data.id, SCATTERED)

    assert raised.value.errno == errno.ERANGE
    assert 'object_map_save' not in _map_calls(ceph)
    assert data.object_map == set()


def test_the_whole_map_needs_an_object_map(ceph, ioctx):
    ceph.rbd.RBD().create(ioctx, 'plain', 64 * OBJECT, features=1)
    image_id = ceph.image('/etc/ceph/a.conf', 'hdd', 'plain').id

    with pytest.raises(OSError) as raised:
        data_objects.mark_existing(ioctx, image_id, SCATTERED)
    assert raised.value.errno == errno.ENOENT


@pytest.mark.parametrize('answer', [
    b'',  # nothing
    bytes.fromhex('0e000000' '02' '01' '08000000' '0400000000000000'
                  '00' '00000000'),  # a version it does not know
    bytes.fromhex('0e000000' '01' '01' '08000000' '0400000000000000'
                  '00' '0c000000' + '00' * 12),  # with CRCs
])
def test_a_map_encoded_otherwise_is_never_saved(ceph, ioctx, monkeypatch,
                                                answer):
    data = _image(ceph, ioctx, 40 * OBJECT, [])
    monkeypatch.setattr(type(ioctx), 'execute',
                        lambda self, oid, cls, method, data, length=8192:
                        ceph.executed.append(method) or (len(answer),
                                                         answer))

    with pytest.raises(OSError) as raised:
        data_objects.mark_existing(ioctx, data.id, SCATTERED)

    assert raised.value.errno == errno.EINVAL
    assert ceph.executed == ['object_map_load']


@pytest.mark.parametrize('numbers,error', [
    ([64], errno.ERANGE),  # past the map's end
    ([], None),
])
def test_mark_existing_errors_after_draining(ceph, ioctx, numbers, error):
    data = _image(ceph, ioctx, 64 * OBJECT, [])
    if error is None:
        assert data_objects.mark_existing(ioctx, data.id, numbers) == 0
        return
    with pytest.raises(OSError) as raised:
        data_objects.mark_existing(ioctx, data.id, [0, 2] + numbers)
    assert raised.value.errno == error
    assert data.object_map == {0, 2}  # the calls before it were applied


def test_mark_existing_needs_an_object_map(ceph, ioctx):
    ceph.rbd.RBD().create(ioctx, 'plain', OBJECT, features=1)
    image_id = ceph.image('/etc/ceph/a.conf', 'hdd', 'plain').id

    with pytest.raises(OSError) as raised:
        data_objects.mark_existing(ioctx, image_id, [0])
    assert raised.value.errno == errno.ENOENT


def test_the_encoding_is_cls_rbds(ceph, ioctx, monkeypatch):
    """start, end (exclusive) as LE u64, the state, an absent optional."""
    sent = []
    monkeypatch.setattr(type(ioctx), 'aio_execute',
                        lambda self, oid, cls, method, data: sent.append(
                            (oid, cls, method, data)) or
                        type('C', (), {'wait_for_complete': lambda s: None,
                                       'get_return_value': lambda s: 0})())

    data_objects.mark_existing(ioctx, 'abc123', [4, 5])

    assert sent == [('rbd_object_map.abc123', 'rbd', 'object_map_update',
                     struct.pack('<QQBB', 4, 6, 1, 0))]
    assert sent[0][3] == bytes.fromhex('0400000000000000' '0600000000000000'
                                       '01' '00')


@pytest.mark.parametrize('flags,asks,counted', [
    (0, [], 2 * OBJECT),
    (1, [(0, 1 << 40, False)], 2 * 4096),
    (2, [(0, 1 << 40, False)], 2 * 4096)])
def test_allocated_bytes_reads_the_object_map_when_valid(
        ceph, ioctx, monkeypatch, flags, asks, counted):
    """The room check's count, as ``rbd du`` makes it: from a valid map,
    read whole (no diff walking the 262144 objects), each object holding
    data counted whole (what offload's copy_from writes); else exact,
    from a diff of the whole size (which lists every object)."""
    from rbdmig.ceph import images
    data = _image(ceph, ioctx, 1 << 40, [3, 9])
    data.flags = flags
    asked = []
    real = ceph.rbd.Image.diff_iterate

    def spy(self, offset, length, *args, **kwargs):
        asked.append((offset, length, kwargs.get('whole_object', False)))
        return real(self, offset, length, *args, **kwargs)

    monkeypatch.setattr(ceph.rbd.Image, 'diff_iterate', spy)

    with ceph.rbd.Image(ioctx, 'vol') as image:
        allocated = images.allocated_bytes(ceph.rbd, image, 1 << 40, ioctx)

    assert asked == asks
    assert allocated == counted  # a byte at the end of each of two objects
