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


def test_a_copy_cut_short_holds_nothing_foreign(tmp_path):
    # Written sectors read as the source's, the rest as zeros: also where
    # a chunk was cut mid-way, and where zeros were written (no extents
    # to skip them by), as a BytesIO-like handle reads.
    data = os.urandom(2 * MiB)
    cut = bytearray(data)
    cut[MiB + 4096:] = bytes(len(cut) - MiB - 4096)
    cut[512:1024] = bytes(512)
    a = _sparse(tmp_path / 'a', 4 * MiB, [(0, data)])
    b = _sparse(tmp_path / 'b', 4 * MiB, [(0, bytes(cut))])
    with a, b:
        assert compare.first_foreign_byte(a, b, 4 * MiB) is None
        # first_difference sees the copy is not complete.
        assert compare.first_difference(a, b, 4 * MiB) == 0


def test_a_foreign_sector_is_found_where_it_is(tmp_path):
    data = os.urandom(2 * MiB)
    other = bytearray(data)
    other[MiB + 700] ^= 1  # in the sector at MiB + 512
    a = _sparse(tmp_path / 'a', 4 * MiB, [(0, data)])
    b = _sparse(tmp_path / 'b', 4 * MiB, [(0, bytes(other)),
                                          (3 * MiB, b'stale')])
    with a, b:
        assert compare.first_foreign_byte(a, b, 4 * MiB) == MiB + 512
    a = open(tmp_path / 'a', 'rb')
    c = _sparse(tmp_path / 'c', 4 * MiB, [(0, data), (3 * MiB, b'stale')])
    with a, c:
        # Data where the source has a hole is foreign too.
        assert compare.first_foreign_byte(a, c, 4 * MiB) == 3 * MiB


def test_data_past_a_point_is_found_where_it_is(tmp_path):
    a = _sparse(tmp_path / 'a', 8 * MiB, [(0, b'x' * MiB),
                                          (5 * MiB + 1000, b'late')])
    with a:
        assert compare.first_data_past(a, MiB, 8 * MiB) == 5 * MiB + 512
        assert compare.first_data_past(a, 6 * MiB, 8 * MiB) is None
        assert compare.first_data_past(a, 0, MiB) == 0
