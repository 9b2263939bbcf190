"""A seeded mutation fuzzer for the decoder: hostile ``.sdc`` files must decode or fail with one line.

Valid files of every embedded model (:func:`seed_files`) are mutated (:data:`MUTATIONS`: bit
flips, byte changes, truncation, extension, header fields pushed to their limits, payloads
swapped between files and models, damage inside a string with its length kept) and their CRC is
recomputed, so that the decoder itself — not the checksum — is tested. :func:`outcome` decodes a
file with :func:`shallowcodec.decompress`'s torch-free decoder (decoder.py) and classifies the
result: an image (its SHA-256) or a one-line :class:`ContainerError`; anything else is a bug
and propagates. :func:`latents_outcome` compares it with the torch model's decoder (differential
fuzzing: both refuse a file, or both decode it to the same ŷ).

The bounded run is tests/test_fuzz.py; the long run, with every decode in a watchdogged worker
process, is benchmarks/fuzz.py, whose worker side is :func:`worker`.
"""

from __future__ import annotations

import hashlib
import json
import random
import resource
import struct
import sys
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from shallowcodec.codec import Codec
from shallowcodec.container import _PREFIX, MAX_PIXELS, ContainerError, pack, unpack
from shallowcodec.decoder import decoder_for, decompress_array, embedded_decoder
from shallowcodec.images import read_image
from shallowcodec.model_files import ModelNotFoundError, embedded_models
from shallowcodec.zoo import LoadedModel, load_embedded

#: Values that header size fields are pushed to (the issue's cases, the pixel limit, the uint32 ends).
SIZE_LIMITS = (0, 1, 63, 64, 65, 2**16, 262_144, MAX_PIXELS // 64, MAX_PIXELS, 2**32 - 1)
#: λ values the header's float32 field is set to.
LMBDA_LIMITS = (-1.0, 0.0, 1e-30, 1e30, float("inf"), float("nan"))
_FIELDS = struct.Struct("<HfIIII")  # quality × 256, lmbda, weights_id, height, width, len(z) (container.py)


def seed_files(photos: Path, sizes=((64, 64), (65, 33)), qualities=(0, 3, 6)) -> list[bytes]:
    """Valid files of every embedded model: crops (top-left, ``sizes`` (h, w)) of each of the first
    photos in ``photos`` (one photo per size), each at ``qualities``.

    Raises:
        FileNotFoundError: ``photos`` has fewer PNG files than ``sizes``.
    """
    paths = sorted(Path(photos).glob("*.png"))[: len(sizes)]
    if len(paths) < len(sizes):
        raise FileNotFoundError(f"need {len(sizes)} PNG photos in {photos}")
    crops = [read_image(p)[0][:, :h, :w].contiguous() for p, (h, w) in zip(paths, sizes)]
    files = []
    for architecture in embedded_models():
        loaded = load_embedded(architecture)
        files += [Codec(loaded, q).compress(x) for q in qualities for x in crops]
    return files


def with_crc(body: bytes) -> bytes:
    """A file: ``body`` followed by its CRC32 (little-endian), as container.pack writes it."""
    return body + struct.pack("<I", zlib.crc32(body))


def _fields_at(body: bytes) -> int | None:
    """Offset of the fixed header fields (quality, λ, …, len(z)) in ``body``, or None if it is too short."""
    at = _PREFIX.size + body[_PREFIX.size - 1] if len(body) >= _PREFIX.size else None
    return at if at is not None and at + _FIELDS.size <= len(body) else None


def _set_field(body: bytes, index: int, value) -> bytes:
    """``body`` with fixed header field ``index`` (0 quality … 5 len(z)) set to ``value`` (if present)."""
    at = _fields_at(body)
    if at is None:
        return body
    fields = list(_FIELDS.unpack_from(body, at))
    fields[index] = value
    out = bytearray(body)
    _FIELDS.pack_into(out, at, *fields)
    return bytes(out)


def with_size(body: bytes, height: int, width: int) -> bytes:
    """``body`` with the header's height and width replaced."""
    return _set_field(_set_field(body, 3, height), 4, width)


def flip_bits(body: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Flip 1–8 random bits."""
    out = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(out) * 8)
        out[i // 8] ^= 1 << (i % 8)
    return bytes(out)


def set_bytes(body: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Set 1–4 random bytes to random values."""
    out = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def truncate(body: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Cut the body at a random length."""
    return body[: rng.randrange(len(body))]


def extend(body: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Append 1–64 random bytes."""
    return body + rng.randbytes(rng.randint(1, 64))


def size_field(body: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Set height, width or both to values of :data:`SIZE_LIMITS` (or random)."""
    for index in rng.choice(((3,), (4,), (3, 4))):
        body = _set_field(body, index, rng.choice(SIZE_LIMITS + (rng.randrange(2**32),)))
    return body


def length_field(body: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Set len(z) to a limit or a nearby value (the y length field then sits elsewhere)."""
    at = _fields_at(body)
    if at is None:
        return body
    z_len = _FIELDS.unpack_from(body, at)[5]
    return _set_field(body, 5, rng.choice((0, 1, 4, max(z_len - 4, 0), min(z_len + 4, 2**32 - 1), 2**32 - 1)))


def quality_field(body: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Set the quality field (units of 1/256) to a limit, a near value or a random one."""
    return _set_field(body, 0, rng.choice((0, 1, 767, 768, 769, 1536, 1537, 2**16 - 1, rng.randrange(2**16))))


def lmbda_field(body: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Set λ to one of :data:`LMBDA_LIMITS`."""
    return _set_field(body, 1, rng.choice(LMBDA_LIMITS))


def swap_payload(body: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Keep the header, take the z string, the y string or both from another file (any model)."""
    own, other = unpack(with_crc(body)), unpack(rng.choice(pool))
    z, y = rng.choice(((other.z_string, own.y_string), (own.z_string, other.y_string), (other.z_string, other.y_string)))
    return pack(own.header, z, y)[:-4]


def damage_string(body: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """Change, cut or extend the z or y string, with the length fields rewritten to match."""
    stream = unpack(with_crc(body))
    strings = [stream.z_string, stream.y_string]
    i = rng.randrange(2)
    s = strings[i]
    strings[i] = rng.choice((
        s[: rng.randrange(len(s) + 1)],
        s + rng.randbytes(rng.choice((1, 4, 8))),
        flip_bits(s, rng, pool) if s else s,
        rng.randbytes(len(s)),
    ))
    return pack(stream.header, *strings)[:-4]


#: Every mutation: (body without CRC, rng, pool of valid files) → body. The first two need a valid body.
MUTATIONS: tuple[Callable[[bytes, random.Random, list[bytes]], bytes], ...] = (
    swap_payload, damage_string, flip_bits, set_bytes, truncate, extend, size_field, length_field, quality_field,
    lmbda_field)


def mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """A valid file after 1–3 random :data:`MUTATIONS` (in sequence), its CRC recomputed.

    Args:
        data: a valid ``.sdc`` file.
        rng: the source of every random choice (seeded: the same seed gives the same files).
        pool: valid files to take payloads from.
    """
    body = data[:-4]
    first = rng.randrange(len(MUTATIONS))
    for step in [first] + [rng.randrange(2, len(MUTATIONS)) for _ in range(rng.randint(0, 2))]:
        body = MUTATIONS[step](body, rng, pool) if body else body
    return with_crc(body)


def decode(data: bytes) -> np.ndarray:
    """The decoder under test: :func:`shallowcodec.decompress`'s torch-free path (decoder.py), (H, W, 3) uint8,
    each embedded model loaded once per process (loading dominates a tiny decode).

    Raises:
        ContainerError: whatever shallowcodec.decompress refuses, with the same messages.
    """
    return decompress_array(data)


class TorchDecoder:
    """The torch model's decode (codec.Codec.decode_latents), each embedded model loaded once: the
    reference that the torch-free decoder's ŷ is compared with (:func:`latents_outcome`)."""

    def __init__(self):
        self.models: dict[str, LoadedModel] = {}

    def __call__(self, data: bytes) -> np.ndarray:
        """ŷ_g (1, M, h, w) float64 of a file.

        Raises:
            ContainerError: the file is refused.
        """
        stream = unpack(data)
        name = stream.header.architecture
        try:
            if name not in self.models:
                self.models[name] = load_embedded(name)
            codec = Codec(self.models[name], stream.header.quality)
        except (ModelNotFoundError, ValueError) as e:
            raise ContainerError(f"cannot decode: model {name!r}: {e}") from None
        return codec.decode_latents(stream).numpy()


def lean_latents(data: bytes) -> np.ndarray:
    """ŷ_g (1, M, h, w) float64 of a file by the torch-free decoder (decoder.Decoder.decode_latents).

    Raises:
        ContainerError: the file is refused.
    """
    stream = unpack(data)
    return decoder_for(stream.header).decode_latents(stream)


def outcome(decoder: Callable[[bytes], np.ndarray], data: bytes) -> str:
    """Decode ``data`` twice; "image <shape> <sha256>" or "error <message>" (the same both times).

    Raises:
        AssertionError: the two decodes differ, or an error message spans several lines.
        Exception: any exception other than ContainerError (a decoder bug).
    """
    results = []
    for _ in range(2):
        try:
            x = np.ascontiguousarray(decoder(data))
            results.append(f"image {tuple(x.shape)} {hashlib.sha256(x.tobytes()).hexdigest()}")
        except ContainerError as e:
            assert "\n" not in str(e), f"multi-line error: {e!r}"
            results.append(f"error {e}")
    assert results[0] == results[1], f"non-deterministic decode: {results}"
    return results[0]


def latents_outcome(decoder: Callable[[bytes], np.ndarray], data: bytes) -> str:
    """"latents <sha256 of ŷ>" or "refused" for one decode of ``data``: what the torch-free and the torch
    decoder must agree on (their error messages may differ in wording)."""
    try:
        return f"latents {hashlib.sha256(np.ascontiguousarray(decoder(data)).tobytes()).hexdigest()}"
    except ContainerError:
        return "refused"


def worker() -> None:
    """Worker of benchmarks/fuzz.py: reads length-prefixed (uint32 LE) files from stdin until EOF and
    writes {"ready": true} once the models are loaded, then one JSON line per file: {"outcome": …}
    or {"failure": repr of the exception}, and
    "rss_mb", the process's peak resident memory so far."""
    stdin = sys.stdin.buffer
    for name in embedded_models():
        embedded_decoder(name)
    print(json.dumps({"ready": True}), flush=True)  # start-up is not part of any decode's watchdog time
    while header := stdin.read(4):
        data = stdin.read(struct.unpack("<I", header)[0])
        try:
            result = {"outcome": outcome(decode, data)}
        except Exception as e:  # noqa: BLE001 — every failure is reported, not raised
            result = {"failure": f"{type(e).__name__}: {e}"[:500]}
        result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    worker()
