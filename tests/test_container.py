"""Tests for the .sdc container format (shallowcodec.container)."""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest

from shallowcodec.container import (
    FORMAT_VERSION,
    MAGIC,
    SUFFIX,
    Bitstream,
    ContainerError,
    Header,
    header_size,
    pack,
    unpack,
)

HEADER = Header("two-layer", quality=3, lmbda=0.0067, weights_id=0xDEADBEEF, height=512, width=768)
Z, Y = b"\x01\x02\x03", b"yyyyy"


def _with_crc(body: bytes) -> bytes:
    """body followed by its correct CRC32, as pack would write it."""
    return body + struct.pack("<I", zlib.crc32(body))


def test_constants():
    assert MAGIC == b"\x89SDC"
    assert FORMAT_VERSION == 3
    assert SUFFIX == ".sdc"
    assert issubclass(ContainerError, ValueError)


@pytest.mark.parametrize(
    "header, z, y",
    [
        (HEADER, Z, Y),
        (HEADER, b"", b""),
        (replace(HEADER, height=1, width=1), b"", b"\x00"),
        (Header("a", 0, 1.0, 0, 2**32 - 1, 2**32 - 1), b"z" * 300, b"\xff" * 1000),
        (Header("x" * 64, 255, 1e-6, 2**32 - 1, 17, 3), bytes(range(256)), b""),
    ],
)
def test_round_trip(header, z, y):
    out = unpack(pack(header, z, y))
    expected = replace(header, lmbda=float(np.float32(header.lmbda)))
    assert out == Bitstream(expected, z, y)
    assert isinstance(out.z_string, bytes) and isinstance(out.y_string, bytes)


def test_lmbda_is_rounded_to_float32():
    lmbda = unpack(pack(HEADER, Z, Y)).header.lmbda
    assert lmbda == float(np.float32(0.0067))
    assert lmbda != 0.0067
    assert unpack(pack(replace(HEADER, lmbda=0.25), Z, Y)).header.lmbda == 0.25


def test_accepts_bytes_like_and_numpy_ints():
    header = replace(HEADER, height=np.int64(64), width=np.uint32(32), lmbda=np.float32(0.5))
    data = pack(header, bytearray(Z), memoryview(Y))
    out = unpack(bytearray(data))
    assert (out.header.height, out.header.width, out.header.lmbda) == (64, 32, 0.5)
    assert (out.z_string, out.y_string) == (Z, Y)


def test_header_size():
    assert header_size("a") == 37
    assert header_size("two-layer") == 36 + 9
    with pytest.raises(ValueError):
        header_size("")


def test_exact_byte_layout():
    data = pack(HEADER, Z, Y)
    assert len(data) == header_size("two-layer") + len(Z) + len(Y) == 53
    assert data[0:4] == MAGIC
    assert data[4] == FORMAT_VERSION
    assert data[5] == 9
    assert data[6:15] == b"two-layer"
    assert data[15:17] == (3 * 256).to_bytes(2, "little")  # quality in 1/256 steps
    assert data[17:21] == struct.pack("<f", 0.0067)
    assert data[21:25] == b"\xef\xbe\xad\xde"  # 0xDEADBEEF little-endian
    assert struct.unpack_from("<III", data, 25) == (512, 768, 3)
    assert data[37:40] == Z
    assert struct.unpack_from("<I", data, 40) == (5,)
    assert data[44:49] == Y
    assert struct.unpack_from("<I", data, 49) == (zlib.crc32(data[:49]),)


def test_every_single_byte_corruption_is_rejected():
    data = pack(Header("ab", 1, 0.5, 7, 2, 3), b"zz", b"yyy")
    for i in range(len(data)):
        for flip in range(1, 256):
            bad = bytearray(data)
            bad[i] ^= flip
            with pytest.raises(ContainerError):
                unpack(bytes(bad))


def test_corruption_messages():
    data = bytearray(pack(HEADER, Z, Y))
    data[0] ^= 1
    with pytest.raises(ContainerError, match=r"^not a shallowcodec file \(bad magic\)$"):
        unpack(bytes(data))
    data[0] ^= 1
    data[30] ^= 1  # inside the width field
    with pytest.raises(ContainerError, match="^checksum mismatch: file is corrupted$"):
        unpack(bytes(data))
    data[30] ^= 1
    data[-1] ^= 0x80  # inside the CRC itself
    with pytest.raises(ContainerError, match="^checksum mismatch: file is corrupted$"):
        unpack(bytes(data))


def test_every_truncation_is_rejected():
    data = pack(HEADER, Z, Y)
    for k in range(len(data)):
        with pytest.raises(ContainerError) as info:
            unpack(data[:k])
        assert str(info.value) == f"truncated file ({k} bytes)"


def test_empty_and_non_prefix_short_data():
    with pytest.raises(ContainerError, match=r"^truncated file \(0 bytes\)$"):
        unpack(b"")
    with pytest.raises(ContainerError, match="bad magic"):
        unpack(b"\x89X")


def test_random_bytes_are_rejected():
    rng = random.Random(1234)
    for _ in range(200):
        blob = rng.randbytes(rng.randrange(0, 200))
        with pytest.raises(ContainerError):
            unpack(blob)


def test_random_bodies_after_valid_preamble_are_rejected():
    rng = random.Random(99)
    for _ in range(200):
        blob = MAGIC + bytes([FORMAT_VERSION]) + rng.randbytes(rng.randrange(0, 200))
        with pytest.raises(ContainerError):
            unpack(blob)


def test_wrong_version_message():
    data = bytearray(pack(HEADER, Z, Y))
    data[4] = 7
    with pytest.raises(ContainerError) as info:
        unpack(_with_crc(bytes(data[:-4])))
    assert str(info.value) == "unsupported format version 7 (this decoder reads version 3)"


@pytest.mark.parametrize("version", [1, 2])
def test_older_versions_refused(version):
    data = bytearray(pack(HEADER, Z, Y))
    data[4] = version
    with pytest.raises(ContainerError, match=f"^unsupported format version {version} "):
        unpack(_with_crc(bytes(data[:-4])))


@pytest.mark.parametrize("quality", [0, 2.5, 3 + 1 / 256, 6, 255 + 255 / 256])
def test_fractional_quality_round_trips(quality):
    assert unpack(pack(replace(HEADER, quality=quality), Z, Y)).header.quality == quality


@pytest.mark.parametrize("extra", [b"\x00", b"junk", b"\x00" * 100])
def test_trailing_bytes_rejected(extra):
    with pytest.raises(ContainerError) as info:
        unpack(pack(HEADER, Z, Y) + extra)
    assert str(info.value) == "trailing data after checksum"


def test_valid_crc_with_inconsistent_lengths_rejected():
    body = bytearray(pack(HEADER, Z, Y)[:-4])
    body[37 - 4] = 200  # len(z) now runs past the end of the file
    with pytest.raises(ContainerError, match="^length fields disagree with file size"):
        unpack(_with_crc(bytes(body)))
    body[37 - 4] = 0  # len(z) now ends early, leaving bytes before the CRC
    with pytest.raises(ContainerError, match="^length fields disagree with file size"):
        unpack(_with_crc(bytes(body)))


def _raw_file(name: bytes, height: int = 4, width: int = 4, lmbda: float = 0.5) -> bytes:
    """A file with a correct CRC but arbitrary (possibly invalid) header fields."""
    body = (
        MAGIC
        + struct.pack("<BB", FORMAT_VERSION, len(name))
        + name
        + struct.pack("<HfIIII", 256, lmbda, 2, height, width, 0)
        + struct.pack("<I", 0)
    )
    return _with_crc(body)


def test_raw_file_helper_matches_pack():
    assert _raw_file(b"ab") == pack(Header("ab", 1, 0.5, 2, 4, 4), b"", b"")


@pytest.mark.parametrize(
    "data, message",
    [
        (_raw_file(b""), "architecture name must be 1..64 ASCII characters, got ''"),
        (_raw_file(b"x" * 65), "architecture name must be 1..64 ASCII characters"),
        (_raw_file(b"caf\xe9"), "architecture name must be 1..64 ASCII characters"),
        (_raw_file(b"ab", height=0), "height must be an integer in 1..4294967295, got 0"),
        (_raw_file(b"ab", width=0), "width must be an integer in 1..4294967295, got 0"),
        (_raw_file(b"ab", lmbda=float("nan")), "lmbda must be a positive finite float32 value"),
    ],
)
def test_invalid_fields_with_valid_crc(data, message):
    with pytest.raises(ContainerError) as info:
        unpack(data)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"architecture": ""}, "architecture"),
        ({"architecture": "x" * 65}, "architecture"),
        ({"architecture": "café"}, "architecture"),
        ({"architecture": None}, "architecture"),
        ({"quality": -1}, "quality"),
        ({"quality": 256}, "quality"),
        ({"quality": 1 / 3}, "quality"),
        ({"quality": float("nan")}, "quality"),
        ({"quality": "3"}, "quality"),
        ({"weights_id": -1}, "weights_id"),
        ({"weights_id": 2**32}, "weights_id"),
        ({"height": 0}, "height"),
        ({"width": 0}, "width"),
        ({"width": 2**32}, "width"),
        ({"lmbda": float("inf")}, "lmbda"),
        ({"lmbda": float("nan")}, "lmbda"),
        ({"lmbda": 1e39}, "lmbda"),
        ({"lmbda": 1e-46}, "lmbda"),  # positive, but 0 as float32: a file no decoder would accept
        ({"lmbda": "0.1"}, "lmbda"),
    ],
)
def test_pack_rejects_invalid_header(changes, field):
    with pytest.raises(ValueError) as info:
        pack(replace(HEADER, **changes), Z, Y)
    assert str(info.value).startswith(field)
    assert "\n" not in str(info.value)
    assert not isinstance(info.value, ContainerError)
