"""entropy_coding: exact round trips with the embedded models' tables, escapes, and damaged strings."""

from __future__ import annotations

import numpy as np
import pytest

from shallowcodec import entropy_coding as ec
from shallowcodec.zoo import load_embedded


@pytest.fixture(scope="module")
def tables():
    gc = load_embedded("two-layer").model.gaussian_conditional
    return ec.CdfTables(gc._quantized_cdf.numpy(), gc._cdf_length.numpy(), gc._offset.numpy())


@pytest.fixture(scope="module")
def coded(tables):
    rng = np.random.default_rng(0)
    indexes = rng.integers(0, len(tables), size=(1, 8, 12, 10)).astype(np.int32)
    symbols = np.round(rng.normal(size=indexes.shape) * 3).astype(np.int32)
    symbols.flat[:6] = [2**31 - 1, -(2**31), 40_000, -40_000, 1, 0]  # escapes at the int32 ends
    return symbols, indexes, ec.encode(symbols, indexes, tables)


def test_round_trip_with_escapes(tables, coded):
    symbols, indexes, data = coded
    decoded = ec.decode(data, indexes, tables)
    assert decoded.dtype == np.int32 and np.array_equal(decoded, symbols)
    assert len(data) % 4 == 0 and ec.encode(symbols, indexes, tables) == data


def test_empty_input_codes_to_the_end_marker_only(tables):
    empty = np.zeros((1, 0, 3), dtype=np.int32)
    assert ec.decode(ec.encode(empty, empty, tables), empty, tables).shape == empty.shape


@pytest.mark.parametrize("damage", [lambda d: d[:-4], lambda d: d[4:], lambda d: d + d[:4], lambda d: b"",
                                    lambda d: d[:-1], lambda d: bytes(8), lambda d: b"\xff" * 8])
def test_cut_extended_or_junk_string_is_a_one_line_error(tables, coded, damage):
    _, indexes, data = coded
    with pytest.raises(ec.EntropyCodingError) as e:
        ec.decode(damage(data), indexes, tables)
    assert "\n" not in str(e.value)


def test_any_bit_flip_decodes_deterministically_or_fails(tables, coded):
    """A flipped bit need not be detected (the container's CRC does that), but the result is a pure function."""
    _, indexes, data = coded
    for i in range(0, len(data) * 8, 97):
        damaged = bytearray(data)
        damaged[i // 8] ^= 1 << (i % 8)
        results = []
        for _ in range(2):
            try:
                results.append(ec.decode(bytes(damaged), indexes, tables).tobytes())
            except ec.EntropyCodingError as e:
                results.append(str(e))
        assert results[0] == results[1]


def test_a_short_string_for_many_symbols_fails_fast(tables, coded):
    """A header that claims far more symbols than the string holds (issue 12's segfault)."""
    _, _, data = coded
    with pytest.raises(ec.EntropyCodingError):
        ec.decode(data, np.zeros((1, 320, 64, 256), dtype=np.int32), tables)


@pytest.mark.parametrize("bad", [-1, 64])
def test_index_outside_the_tables_is_refused(tables, bad):
    with pytest.raises(ValueError):
        ec.encode(np.zeros(3, dtype=np.int32), np.array([0, bad, 0]), tables)


def test_symbol_outside_int32_is_refused(tables):
    with pytest.raises(ValueError):
        ec.encode(np.array([2**31]), np.array([0]), tables)
