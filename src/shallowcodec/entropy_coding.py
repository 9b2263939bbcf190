"""Entropy coding of integer latents with integer CDF tables: constriction's ANS coder, memory-safe.

Replaces CompressAI's C++ rANS (which reads past the end of a short string). numpy only — no
torch import — so that a torch-free decoder can use it. The coder is the stack-based ANS coder
of constriction (Bamler, https://bamler-lab.github.io/constriction/; 32-bit words, 64-bit state,
24-bit probabilities), bounds-checked Rust: it never reads outside its input.

Tables are CompressAI's (``_quantized_cdf`` (n_tables, max_len) int32 with 16-bit precision,
``_cdf_length``, ``_offset``): table t covers the symbols offset[t] + v for v in 0..L−3
(L = cdf_length[t]); v = L−2 is the escape symbol, coded for every value outside that range.
Each table becomes a constriction ``Categorical`` model whose weights are the table's integer
pmf (cdf[v+1] − cdf[v], exact in float64). constriction requantizes them to 24 bits with
``perfect=False`` (``fast_quantized_cdf``: a float64 sum, one division and truncating products,
every operation a single IEEE-754 one in Rust, which has no fast-math): a deterministic function
of the integer table, hence identical in encoder and decoder on every CPU.

String layout (one ANS stream, little-endian 32-bit words), in decoding order:

1. the symbols grouped by table: all symbols of table 0 in raster order, then table 1, …
   (the decoder knows every symbol's table, so it knows the group sizes);
2. for each escape, in the order of step 1, k = bit length of the overflow r (0..34, uniform),
   where r = −2v−1 for v < 0 and 2(v − (L−2)) above (CompressAI's bypass mapping);
3. for each escape, r's low 16 bits and then r >> 16, uniform over 2^min(k, 16) and 2^(k−16)
   values (at least 2);
4. an end marker, two uniform 16-bit symbols (:data:`END_MARKER`).

A decoder checks the end marker and that no data is left: a string that runs out, was cut or
extended, or decodes to a symbol outside int32 raises :class:`EntropyCodingError`. Decoding
allocates in proportion to the number of symbols asked for and to the string's length.
"""

from __future__ import annotations

from collections.abc import Mapping

import constriction
import numpy as np

# constriction is one native module; its submodules are attributes, not importable packages
Categorical = constriction.stream.model.Categorical
Uniform = constriction.stream.model.Uniform
AnsCoder = constriction.stream.stack.AnsCoder

#: Two 16-bit symbols coded first (so decoded last): a string that runs out or was damaged rarely ends in them.
END_MARKER = np.array([0x5DC1, 0xA7E3], dtype=np.int32)
#: Overflow values r < 2^OVERFLOW_BITS (|v| < 2^33 for any int32 symbol and table offset).
OVERFLOW_BITS = 35
_LOW_BITS = 16
_INT32 = np.iinfo(np.int32)


class EntropyCodingError(ValueError):
    """A string that cannot be decoded (runs out, damaged, malformed); the message is one line."""


class CdfTables:
    """Integer CDF tables in CompressAI's format, as constriction models.

    Args:
        quantized_cdf: (n_tables, max_len) integers, each row a CDF from 0 to 2^16 over
            cdf_length[t] entries (``_quantized_cdf``).
        cdf_length: (n_tables,) integers ≥ 3: the used length of each row (``_cdf_length``).
        offset: (n_tables,) integers: the symbol that v = 0 stands for (``_offset``).

    Raises:
        ValueError: inconsistent shapes, or a row that is not a CDF (non-decreasing, 0 to 2^16).
    """

    def __init__(self, quantized_cdf: np.ndarray, cdf_length: np.ndarray, offset: np.ndarray):
        cdf = np.asarray(quantized_cdf, dtype=np.int64)
        lengths = np.asarray(cdf_length, dtype=np.int64).reshape(-1)
        self.offset = np.asarray(offset, dtype=np.int32).reshape(-1)
        if cdf.ndim != 2 or len(lengths) != len(cdf) or len(self.offset) != len(cdf):
            raise ValueError("CDF tables, lengths and offsets have inconsistent shapes")
        self.escape = (lengths - 2).astype(np.int32)  # the escape symbol of each table: its alphabet is 0..escape
        self.models = [_categorical(cdf[t, : lengths[t]]) for t in range(len(cdf))]

    def __len__(self) -> int:
        return len(self.models)

    @classmethod
    def of(cls, tensors: Mapping[str, np.ndarray], prefix: str) -> CdfTables:
        """The tables of entropy model ``prefix`` (``entropy_bottleneck`` or ``gaussian_conditional``) from its
        ``_quantized_cdf``, ``_cdf_length`` and ``_offset`` arrays, named as in a weights file.

        Raises:
            KeyError: a table is missing; ValueError: as the constructor.
        """
        return cls(*(np.asarray(tensors[f"{prefix}._{name}"]) for name in ("quantized_cdf", "cdf_length", "offset")))


def _categorical(cdf: np.ndarray) -> Categorical:
    """constriction model with the integer pmf of one CDF row (≥ 3 entries from 0 to 2^16)."""
    pmf = np.diff(cdf)
    if len(cdf) < 3 or cdf[0] != 0 or cdf[-1] != 1 << 16 or (pmf < 0).any():
        raise ValueError("a CDF table row is not a 16-bit CDF over at least two symbols")
    return Categorical(pmf.astype(np.float64), perfect=False)


def channel_indexes(shape: tuple[int, ...]) -> np.ndarray:
    """Table index of every symbol of a (1, C, h, w) latent coded with one table per channel (z): its channel."""
    return np.broadcast_to(np.arange(shape[1], dtype=np.int32).reshape(1, -1, 1, 1), shape)


def _groups(indexes: np.ndarray, n_tables: int) -> tuple[np.ndarray, np.ndarray]:
    """Coding order of the flat ``indexes``: a stable sort (raster order within a table).

    Returns:
        (order, counts): positions in coding order (int64, len(indexes)) and the number of
        symbols of each table (n_tables,).

    Raises:
        ValueError: an index outside 0..n_tables−1.
    """
    flat = indexes.reshape(-1)
    counts = np.bincount(flat, minlength=n_tables)  # ValueError for a negative index
    if len(counts) > n_tables:
        raise ValueError(f"table indexes must be in 0..{n_tables - 1}")
    keys = flat.astype(np.min_scalar_type(max(n_tables - 1, 0)))  # ≤ 16-bit keys: numpy's stable sort is a radix sort
    return np.argsort(keys, kind="stable"), counts


def _spans(counts: np.ndarray) -> list[tuple[int, int, int]]:
    """(table, start, end) of each non-empty group in coding order."""
    ends = np.cumsum(counts)
    return [(int(t), int(ends[t] - counts[t]), int(ends[t])) for t in np.flatnonzero(counts)]


def _overflow_sizes(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Uniform alphabet sizes (≥ 2, int32) of the low and high parts of overflows of ``bits`` bits."""
    low = 1 << np.clip(bits, 1, _LOW_BITS)
    high = 1 << np.clip(bits - _LOW_BITS, 1, None)
    return low.astype(np.int32), high.astype(np.int32)


def encode(symbols: np.ndarray, indexes: np.ndarray, tables: CdfTables) -> bytes:
    """Entropy-code integer symbols, each with the table its index names, into one string.

    Args:
        symbols: integers (any shape), within int32.
        indexes: table indexes, same shape as ``symbols``, in 0..len(tables)−1.
        tables: the CDF tables.

    Returns:
        the string (bytes, a multiple of 4); see the module docstring for its layout.

    Raises:
        ValueError: shapes differ, an index is out of range or a symbol is outside int32.
    """
    symbols, indexes = np.asarray(symbols), np.asarray(indexes)
    if symbols.shape != indexes.shape:
        raise ValueError(f"symbols {symbols.shape} and indexes {indexes.shape} differ in shape")
    if symbols.size and (symbols.min() < _INT32.min or symbols.max() > _INT32.max):
        raise ValueError("symbols must be within int32")
    order, counts = _groups(indexes, len(tables))
    value = symbols.reshape(-1)[order].astype(np.int64) - np.repeat(tables.offset, counts)  # in coding order
    escape = np.repeat(tables.escape, counts)
    outside = (value < 0) | (value >= escape)
    v, e = value[outside], escape[outside]
    coded = np.where(outside, escape, value).astype(np.int32)
    coder = AnsCoder()
    coder.encode_reverse(END_MARKER, Uniform(1 << 16))
    _encode_overflows(coder, np.where(v < 0, -2 * v - 1, 2 * (v - e)))
    for t, start, end in reversed(_spans(counts)):  # a stack: the last group coded is decoded first
        coder.encode_reverse(coded[start:end], tables.models[t])
    return coder.get_compressed().astype("<u4").tobytes()


def _encode_overflows(coder: AnsCoder, overflow: np.ndarray) -> None:
    """Push the escapes' overflow values (int64, ≥ 0) so that they decode as steps 2 and 3 of the layout."""
    if not len(overflow):
        return
    bits = np.frexp(overflow.astype(np.float64))[1].astype(np.int64)  # bit length, exact below 2^53
    low_size, high_size = _overflow_sizes(bits)
    parts = np.stack([overflow & ((1 << _LOW_BITS) - 1), overflow >> _LOW_BITS], axis=1).reshape(-1)
    sizes = np.stack([low_size, high_size], axis=1).reshape(-1)
    coder.encode_reverse(parts.astype(np.int32), Uniform(), sizes)
    coder.encode_reverse(bits.astype(np.int32), Uniform(OVERFLOW_BITS))


def decode(data: bytes, indexes: np.ndarray, tables: CdfTables) -> np.ndarray:
    """Decode the symbols that :func:`encode` coded with these ``indexes`` and ``tables``.

    A pure function of its arguments; reads only ``data`` and allocates O(len(data) + indexes.size).

    Args:
        data: the string (bytes-like).
        indexes: table indexes (any shape), in 0..len(tables)−1.
        tables: the CDF tables.

    Returns:
        int32 symbols, same shape as ``indexes``.

    Raises:
        EntropyCodingError: the string is malformed, runs out, has data left over or decodes
            to a symbol outside int32 (one-line message).
        ValueError: an index is out of range.
    """
    indexes = np.asarray(indexes)
    order, counts = _groups(indexes, len(tables))
    coder = _coder(data)
    symbols = np.empty(indexes.size, dtype=np.int32)
    for t, start, end in _spans(counts):
        symbols[start:end] = coder.decode(tables.models[t], end - start)
    escaped = np.flatnonzero(symbols == np.repeat(tables.escape, counts))  # in coding order
    symbols += np.repeat(tables.offset, counts)
    table = np.searchsorted(np.cumsum(counts), escaped, side="right")  # each escape's table
    overflow = _decode_overflows(coder, tables.escape[table]) + tables.offset[table]
    if not np.array_equal(coder.decode(Uniform(1 << 16), len(END_MARKER)), END_MARKER) or not coder.is_empty():
        raise EntropyCodingError("entropy-coded string is damaged, truncated or extended")
    if overflow.size and (overflow.min() < _INT32.min or overflow.max() > _INT32.max):
        raise EntropyCodingError("entropy-coded string decodes to a symbol outside int32")
    symbols[escaped] = overflow
    out = np.empty(indexes.size, dtype=np.int32)
    out[order] = symbols
    return out.reshape(indexes.shape)


def _coder(data: bytes) -> AnsCoder:
    """An ANS decoder over ``data`` (little-endian 32-bit words).

    Raises:
        EntropyCodingError: a length that is not a multiple of 4, or a last word of zero.
    """
    data = memoryview(data).tobytes()
    if len(data) % 4:
        raise EntropyCodingError(f"entropy-coded string of {len(data)} bytes is not a whole number of 32-bit words")
    try:
        return AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
    except ValueError as e:
        raise EntropyCodingError(f"malformed entropy-coded string: {e}") from None


def _decode_overflows(coder: AnsCoder, escape: np.ndarray) -> np.ndarray:
    """Values v (int64) of escapes in tables with these escape symbols, from steps 2 and 3 of the layout."""
    if not len(escape):
        return np.zeros(0, dtype=np.int64)
    bits = coder.decode(Uniform(OVERFLOW_BITS), len(escape)).astype(np.int64)
    low_size, high_size = _overflow_sizes(bits)
    parts = coder.decode(Uniform(), np.stack([low_size, high_size], axis=1).reshape(-1)).astype(np.int64)
    overflow = parts[0::2] | (parts[1::2] << _LOW_BITS)
    return np.where(overflow % 2 == 1, -(overflow + 1) // 2, overflow // 2 + escape)
