"""The ``.sdc`` container: one compressed image in one self-checking file.

Byte layout (all integers little-endian, no padding)::

    offset  size  field
    0       4     magic  b"\\x89SDC"
    4       1     format version (FORMAT_VERSION = 3)
    5       1     n = length of architecture name (1..64)
    6       n     architecture name, ASCII (e.g. "two-layer")
    .       2     quality × 256 (uint16: quality 0..255.996 in steps of 1/256)
    .       4     lmbda (float32)
    .       4     weights_id (uint32: fingerprint of the weights that encoded it)
    .       4     height (uint32, >= 1)
    .       4     width  (uint32, >= 1)
    .       4     len(z_string) (uint32)
    .       *     z string bytes
    .       4     len(y_string) (uint32)
    .       *     y string bytes
    .       4     CRC32 (zlib.crc32) of every preceding byte of the file

The fixed overhead is therefore ``36 + n`` bytes (see :func:`header_size`).

``lmbda`` is stored as float32, so it round-trips only to float32 precision:
``unpack(pack(h, z, y)).header.lmbda == float(numpy.float32(h.lmbda))``.

Version 3 (portable bitstreams) codes y around exact, fixed-point entropy parameters
(entropy_parameters.py). Its z and y strings are each one stream of constriction's ANS coder
(entropy_coding.py: 32-bit little-endian words, so their lengths are multiples of 4): the
symbols grouped by CDF table (z: one table per channel, symbols round(z_g − median); y: one
table per scale index, symbols round(y_g − μ_g)), then the escapes' overflow values, then a
32-bit end marker. Version 2 (variable rate, float h_s) and version 1 files are refused
(their weights are no longer distributed).

Decoding order: magic, then version, then the CRC over the whole file, and only
then the length fields. Every malformed input raises :class:`ContainerError`
with a one-line message. Whether the architecture name and quality are known is
not checked here; that is the model registry's job.
"""

from __future__ import annotations

import math
import operator
import struct
import zlib
from dataclasses import dataclass
from typing import NamedTuple

MAGIC = b"\x89SDC"
FORMAT_VERSION = 3
#: Quality is stored in units of 1/QUALITY_SCALE (see variable_rate.snap_quality).
QUALITY_SCALE = 256
SUFFIX = ".sdc"

_MAX_NAME = 64
_U32_MAX = 2**32 - 1
_PREFIX = struct.Struct("<4sBB")  # magic, version, n
_FIXED = struct.Struct("<HfIIII")  # quality × 256, lmbda, weights_id, height, width, len(z)
_U32 = struct.Struct("<I")  # len(y), CRC32
_F32 = struct.Struct("<f")
_OVERHEAD = _PREFIX.size + _FIXED.size + 2 * _U32.size  # everything but name and strings


class ContainerError(ValueError):
    """Raised for any file that cannot be decoded; message is one clear line."""


#: The latent grid is 1/64 of the image (g_a: 16×, h_a: 4×), so the padded size is a multiple of 64.
ALIGN = 64
#: Largest image the codec accepts, in padded pixels (8192 × 8192; a 67,108,864 × 1 image pads
#: to 64 rows and is refused), so that neither an image nor a crafted header can exhaust memory:
#: with tiled transforms (tiling.py) coding at this size stays under 3 GB (benchmarks/memory.py).
#: A header claiming more is refused before anything is allocated.
MAX_PIXELS = 1 << 26


def padded_pixels(height: int, width: int) -> int:
    """Pixels of a height × width image once mirror-padded to multiples of ALIGN (what the codec allocates)."""
    return -(-height // ALIGN) * ALIGN * (-(-width // ALIGN) * ALIGN)


def check_size(height: int, width: int, error: type[Exception]) -> None:
    """Refuse an image whose padded size exceeds MAX_PIXELS.

    Raises:
        error: (ImageError or ContainerError) with a one-line message.
    """
    if padded_pixels(height, width) > MAX_PIXELS:
        raise error(f"image of {width}×{height} pixels ({padded_pixels(height, width)} once padded to "
                    f"multiples of {ALIGN}) exceeds the limit of {MAX_PIXELS} pixels")


@dataclass(frozen=True)
class Header:
    """Everything needed to rebuild the decoder and the output image.

    ``architecture`` names the model (1..64 ASCII characters), ``quality`` is its
    quality level (a multiple of 1/256 in 0..65535/256), ``lmbda`` the rate-distortion weight (float32
    precision), ``weights_id`` a uint32 fingerprint of the weights, and
    ``height``/``width`` the image size in pixels (1..2**32-1).
    """

    architecture: str
    quality: float
    lmbda: float
    weights_id: int
    height: int
    width: int


@dataclass(frozen=True)
class Bitstream:
    """A decoded container: its header and the two entropy-coded strings (bytes)."""

    header: Header
    z_string: bytes
    y_string: bytes


class _Raw(NamedTuple):
    """Fields split out of a file by its length fields, not yet validated."""

    name: bytes
    quality: int
    lmbda: float
    weights_id: int
    height: int
    width: int
    z_string: bytes
    y_string: bytes
    end: int  # offset just past the y string, where the CRC should start


def header_size(architecture: str) -> int:
    """Bytes of a file other than its two strings, for this architecture name.

    This is the whole overhead: magic, version, name, fixed fields, both length
    fields and the CRC (``36 + len(architecture)``). Raises ValueError if the
    name is not 1..64 ASCII characters.
    """
    problem = _name_problem(architecture)
    if problem:
        raise ValueError(problem)
    return _OVERHEAD + len(architecture)


def pack(header: Header, z_string: bytes, y_string: bytes) -> bytes:
    """Serialize a header and two strings (bytes-like) into a complete ``.sdc`` file.

    Returns the file's bytes. Raises ValueError (one line) if the header is
    invalid (name not 1..64 ASCII characters, quality not a multiple of 1/256 in
    0..65535/256, lmbda not
    a positive finite float32, weights_id outside 0..2**32-1, height or width outside
    1..2**32-1) or a string is longer than 2**32-1 bytes.
    """
    problem = _header_problem(header)
    if problem:
        raise ValueError(problem)
    z, y = bytes(z_string), bytes(y_string)
    for label, string in (("z_string", z), ("y_string", y)):
        if len(string) > _U32_MAX:
            raise ValueError(f"{label} is {len(string)} bytes; at most {_U32_MAX} fit")
    name = header.architecture.encode("ascii")
    h = header
    body = b"".join(
        [
            _PREFIX.pack(MAGIC, FORMAT_VERSION, len(name)),
            name,
            _FIXED.pack(round(h.quality * QUALITY_SCALE), h.lmbda, h.weights_id, h.height, h.width, len(z)),
            z,
            _U32.pack(len(y)),
            y,
        ]
    )
    return body + _U32.pack(zlib.crc32(body))


def unpack(data: bytes) -> Bitstream:
    """Parse a complete ``.sdc`` file (bytes-like) into a :class:`Bitstream`.

    ``header.lmbda`` comes back at float32 precision. Raises ContainerError
    (one line) for a bad magic, a truncated file, an unsupported version, a
    checksum mismatch, trailing data after the checksum, length fields that
    disagree with the file size, or invalid header fields (name not 1..64 ASCII
    characters, zero height or width, lmbda not positive and finite).
    """
    data = memoryview(data).tobytes()
    _check_preamble(data)
    if len(data) < _OVERHEAD:
        raise ContainerError(f"truncated file ({len(data)} bytes)")
    body_end = len(data) - _U32.size
    if not _crc_matches(data, body_end):
        raise _diagnose(data)
    raw = _walk(data, body_end)
    if raw is None or raw.end != body_end:
        raise ContainerError("length fields disagree with file size: file is corrupted")
    header = Header(
        raw.name.decode("ascii", errors="replace"),
        raw.quality / QUALITY_SCALE,
        raw.lmbda,
        raw.weights_id,
        raw.height,
        raw.width,
    )
    problem = _header_problem(header)
    if problem:
        raise ContainerError(problem)
    return Bitstream(header, raw.z_string, raw.y_string)


def _check_preamble(data: bytes) -> None:
    """Raise ContainerError unless data starts with MAGIC and FORMAT_VERSION."""
    head = data[: len(MAGIC)]
    if head != MAGIC[: len(head)]:
        raise ContainerError("not a shallowcodec file (bad magic)")
    if len(data) <= len(MAGIC):
        raise ContainerError(f"truncated file ({len(data)} bytes)")
    version = data[len(MAGIC)]
    if version != FORMAT_VERSION:
        raise ContainerError(
            f"unsupported format version {version} (this decoder reads version {FORMAT_VERSION})"
        )


def _crc_matches(data: bytes, body_end: int) -> bool:
    """Whether the 4 bytes at body_end hold the CRC32 of data[:body_end]."""
    return zlib.crc32(data[:body_end]) == _U32.unpack_from(data, body_end)[0]


def _walk(data: bytes, limit: int) -> _Raw | None:
    """Split data[:limit] (len(data) >= _PREFIX.size) by its length fields.

    Returns None if a declared field runs past limit.
    """
    name_end = _PREFIX.size + data[_PREFIX.size - 1]
    z_start = name_end + _FIXED.size
    if z_start > limit:
        return None
    quality, lmbda, weights_id, height, width, z_len = _FIXED.unpack_from(data, name_end)
    y_len_at = z_start + z_len
    y_start = y_len_at + _U32.size
    if y_start > limit:
        return None
    end = y_start + _U32.unpack_from(data, y_len_at)[0]
    if end > limit:
        return None
    return _Raw(
        data[_PREFIX.size : name_end],
        quality,
        lmbda,
        weights_id,
        height,
        width,
        data[z_start:y_len_at],
        data[y_start:end],
        end,
    )


def _diagnose(data: bytes) -> ContainerError:
    """Explain a checksum failure as truncation, trailing data or corruption."""
    raw = _walk(data, len(data))
    if raw is None or raw.end + _U32.size > len(data):
        return ContainerError(f"truncated file ({len(data)} bytes)")
    if raw.end + _U32.size < len(data) and _crc_matches(data, raw.end):
        return ContainerError("trailing data after checksum")
    return ContainerError("checksum mismatch: file is corrupted")


def _name_problem(name: object) -> str | None:
    """One-line complaint about an architecture name, or None if it is valid."""
    if isinstance(name, str) and name.isascii() and 1 <= len(name) <= _MAX_NAME:
        return None
    return f"architecture name must be 1..{_MAX_NAME} ASCII characters, got {name!r}"


def _header_problem(header: Header) -> str | None:
    """One-line complaint about the first invalid header field, or None if all are valid."""
    problem = _name_problem(header.architecture)
    if problem:
        return problem
    q = header.quality
    scaled = q * QUALITY_SCALE if isinstance(q, (int, float)) and math.isfinite(q) else -1
    if scaled != int(scaled) or not 0 <= scaled <= 2**16 - 1:
        return f"quality must be a multiple of 1/{QUALITY_SCALE} in 0..{(2**16 - 1) / QUALITY_SCALE}, got {header.quality!r}"
    ranges = (
        ("weights_id", header.weights_id, 0, _U32_MAX),
        ("height", header.height, 1, _U32_MAX),
        ("width", header.width, 1, _U32_MAX),
    )
    for field, value, low, high in ranges:
        if not _int_in(value, low, high):
            return f"{field} must be an integer in {low}..{high}, got {value!r}"
    if not _is_positive_float32(header.lmbda):
        return f"lmbda must be a positive finite float32 value, got {header.lmbda!r}"
    return None


def _int_in(value: object, low: int, high: int) -> bool:
    """Whether value is an integer (anything with __index__) in low..high."""
    try:
        return low <= operator.index(value) <= high
    except TypeError:
        return False


def _is_positive_float32(value: object) -> bool:
    """Whether value is a real number that is finite and positive once rounded to float32 (as stored)."""
    try:
        stored = _F32.unpack(_F32.pack(value))[0]
    except (struct.error, OverflowError, TypeError):
        return False
    return math.isfinite(stored) and stored > 0
