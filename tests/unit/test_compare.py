"""The generic copy's check: two handles compared where either holds data."""

import os

from rbdmig.migration import compare

MiB = 1 << 20


def _sparse(path, size, writes):
    with open(path, 'wb') as f:
        f.truncate(size)
        for offset, data in writes:
            f.seek(offset)
            f.write(data)
    return open(path, 'rb')


def test_the_same_data_reads_the_same(tmp_path):
    a = _sparse(tmp_path / 'a', 16 * MiB, [(MiB, b'x' * MiB)])
    b = _sparse(tmp_path / 'b', 16 * MiB, [(MiB, b'x' * MiB)])
    with a, b:
        assert compare.first_difference(a, b, 16 * MiB) is None


def test_data_where_the_source_has_a_hole_is_caught(tmp_path):
    a = _sparse(tmp_path / 'a', 16 * MiB, [(0, b'x' * MiB)])
    b = _sparse(tmp_path / 'b', 16 * MiB, [(0, b'x' * MiB),
                                           (12 * MiB, b'stale')])
    with a, b:
        assert compare.first_difference(a, b, 16 * MiB,
                                        chunk_size=MiB) == 12 * MiB
        # and the other way round
        assert compare.first_difference(b, a, 16 * MiB,
                                        chunk_size=MiB) == 12 * MiB


def test_one_byte_off_is_caught_where_it_is(tmp_path):
    data = os.urandom(2 * MiB)
    bad = bytearray(data)
    bad[MiB + 7] ^= 1
    a = _sparse(tmp_path / 'a', 4 * MiB, [(0, data)])
    b = _sparse(tmp_path / 'b', 4 * MiB, [(0, bytes(bad))])
    with a, b:
        assert compare.first_difference(a, b, 4 * MiB,
                                        chunk_size=MiB) == MiB
