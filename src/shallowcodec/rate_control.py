"""Rate control: the fractional quality whose file meets a target size, bpp or PSNR.

A variable-rate model makes every quality on the container's 1/256 grid in [0, 6] a real
operating point, so a target is met by searching that grid (as ``cwebp -size`` / ``-psnr`` search
their quality)::

    image → g_a, h_a once (ungained y, z) ─┬─ gains(q) → entropy coding → bytes, PSNR of x̂
                                           └─ bisection over q: the largest file ≤ the size or bpp
                                              target, the smallest file ≥ the PSNR target

File size and PSNR grow with q (not strictly: a bisection step that meets the target is kept
whenever it does, and the search ends on a file that was measured to meet it). Only the gains,
the entropy coder and (for PSNR) the decoder run per step, so a search costs about one encode.
With an ``effort`` above 0 the search continues with SGA-refined files, whose size at a given q
differs from the amortized encoder's: secant steps on the amortized curve, scaled by the ratio
SGA measured, at most :data:`SGA_ROUNDS` SGA runs, and the best file meeting the target wins
(the amortized one if no refined file meets it).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, replace

from torch import Tensor

from shallowcodec.codec import Codec, analysis, mirror_pad
from shallowcodec.container import QUALITY_SCALE, unpack
from shallowcodec.decoder import Decoder
from shallowcodec.evaluation import psnr
from shallowcodec.quality import MAX_QUALITY
from shallowcodec.zoo import LoadedModel, model_weights

#: SGA runs a search with effort > 0 may spend after the amortized search.
SGA_ROUNDS = 3
KINDS = ("bytes", "bpp", "psnr")
_UNITS = {"": 1, "b": 1, "kb": 1000, "k": 1000, "kib": 1024, "mb": 1000**2, "m": 1000**2, "mib": 1024**2}


class TargetError(ValueError):
    """A target that no quality of the model meets for this image (the message names the nearest reachable value)."""


@dataclass(frozen=True)
class Target:
    """What a file must meet: ``kind`` "bytes" or "bpp" (an upper bound on the file) or "psnr" (a lower
    bound on the decoded image's PSNR, dB); ``value`` in those units.

    Raises:
        ValueError: an unknown kind, or a value that is not finite and positive.
    """

    kind: str
    value: float

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"target kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not (isinstance(self.value, (int, float)) and math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"a {self.kind} target must be a finite positive number, got {self.value!r}")

    @classmethod
    def size(cls, text: str) -> Target:
        """A size target from text: bytes, or with a unit B, KB/K (1000), KiB (1024), MB/M, MiB; e.g. "50KB".

        Raises:
            ValueError: anything else (one line).
        """
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
        unit = match and _UNITS.get(match.group(2).lower())
        if not unit:
            raise ValueError(f"a size is a number of bytes with an optional unit (B, KB, KiB, MB, MiB), got {text!r}")
        nbytes = float(match.group(1)) * unit
        if nbytes < 1:
            raise ValueError(f"a size must be at least 1 byte, got {text!r}")
        return cls("bytes", float(math.floor(nbytes)))

    def measure(self, data: bytes, x: Tensor, codec: Codec) -> float:
        """This target's quantity for a file ``data`` of image ``x`` (3, H, W) uint8: bytes, bpp or PSNR (dB)."""
        if self.kind == "bytes":
            return float(len(data))
        if self.kind == "bpp":
            return 8 * len(data) / (x.shape[1] * x.shape[2])
        return psnr(x, codec.decompress_tensor(data))

    def met(self, value: float) -> bool:
        """Whether a measured value meets the target (bytes/bpp at most, PSNR at least)."""
        return value <= self.value if self.kind != "psnr" else value >= self.value

    def shown(self, value: float) -> str:
        """A value in this target's unit, for messages."""
        return {"bytes": f"{value:.0f} bytes", "bpp": f"{value:.4f} bpp", "psnr": f"{value:.2f} dB"}[self.kind]


@dataclass(frozen=True)
class Result:
    """A coded file: its bytes, the quality it was coded at, the target's measure of it and (when
    compared with SGA files) its PSNR in dB."""

    data: bytes
    quality: float
    value: float
    psnr: float | None = None


def compress_to_target(loaded: LoadedModel, x: Tensor, target: Target, effort: int = 0, seed: int = 0,
                       decoder: Decoder | None = None) -> Result:
    """Compress a (3, H, W) uint8 image with a variable-rate model at the quality that meets ``target``.

    ``decoder``: the model's numpy decoder when the caller has one (built otherwise; :class:`Codec`).

    Size and bpp targets give the largest file not above the target, PSNR targets the smallest
    file at or above it (on the 1/256 quality grid; with ``effort`` > 0 among the files measured).

    Raises:
        TargetError: no quality in [0, 6] meets the target (e.g. a size below quality 0's file),
            with the nearest reachable value.
        ValueError: fixed-λ weights (one quality only), or a bad effort.
        ImageError: a bad image (as :meth:`Codec.compress`).
    """
    if not loaded.variable_rate:
        raise ValueError(f"rate control needs variable-rate weights; these {loaded.architecture} weights are "
                         f"fixed-λ quality {loaded.quality}")
    base = Codec(loaded, 0, decoder)
    x = base._as_tensor(x)
    y, z = analysis(loaded.model, mirror_pad(x[None]))
    size = tuple(x.shape[-2:])

    @functools.cache  # the SGA rounds search the same curve again: each step is coded once
    def amortized(step: int) -> Result:
        codec = base.at(step / QUALITY_SCALE)
        data = codec.pack_latents(*codec.gained(y, z), size)
        return Result(data, codec.quality, target.measure(data, x, codec))

    best = _search(amortized, target)
    return best if effort == 0 else _refine(base, x, target, best, amortized, effort, seed)


def _search(encode, target: Target) -> Result:
    """Bisection over quality steps 0..6·256 for the target's boundary; raises TargetError when unmet."""
    low, high = encode(0), encode(MAX_QUALITY * QUALITY_SCALE)
    bound_ok = low if target.kind != "psnr" else high  # the end that meets the target if any does
    if not target.met(bound_ok.value):
        raise TargetError(f"cannot reach {target.shown(target.value)}: the nearest is {target.shown(bound_ok.value)} "
                          f"at quality {bound_ok.quality:g}")
    if target.met(high.value if target.kind != "psnr" else low.value):
        return high if target.kind != "psnr" else low
    lo, hi = 0, MAX_QUALITY * QUALITY_SCALE  # invariant: lo meets a size or bpp target, hi a PSNR target
    best = bound_ok
    while hi - lo > 1:
        mid = (lo + hi) // 2
        result = encode(mid)
        if target.met(result.value):  # the latest met step is the nearest to the boundary
            best = result
        if target.met(result.value) == (target.kind != "psnr"):
            lo = mid
        else:
            hi = mid
    return best


def _better(target: Target, a: Result, b: Result) -> Result:
    """Of two files meeting the target, the better one: for size and bpp the higher PSNR, for PSNR the
    smaller file."""
    if target.kind == "psnr":
        return b if len(b.data) < len(a.data) else a
    return b if b.psnr > a.psnr else a


def _refine(base: Codec, x: Tensor, target: Target, start: Result, amortized, effort: int, seed: int) -> Result:
    """Secant steps with SGA files from the amortized search's quality (see the module docstring)."""
    best, step = _with_psnr(start, target, base, x), round(start.quality * QUALITY_SCALE)
    for _ in range(SGA_ROUNDS):
        codec = base.at(step / QUALITY_SCALE)
        data = codec.compress(x, effort, seed=seed)
        result = _with_psnr(Result(data, codec.quality, target.measure(data, x, codec)), target, base, x)
        if target.met(result.value):
            best = _better(target, best, result)
        reference = amortized(step).value
        moved = target.value - (result.value - reference) if target.kind == "psnr" \
            else target.value * reference / result.value  # what the amortized encoder must reach instead
        try:
            step_next = round(_search(amortized, Target(target.kind, moved)).quality * QUALITY_SCALE)
        except ValueError:  # also TargetError: the moved target lies beyond quality 0 or 6
            break
        if step_next == step:
            break
        step = step_next
    return best


def _with_psnr(result: Result, target: Target, base: Codec, x: Tensor) -> Result:
    if target.kind == "psnr":  # the target's measure is the PSNR already
        return replace(result, psnr=result.value)
    return replace(result, psnr=psnr(x, base.at(result.quality).decompress_tensor(result.data)))


def limit_note(target: Target, result: Result) -> str | None:
    """A one-line note when the model's range, not the target, set the file: a size or bpp target that even
    quality 6 stays more than 3 % under, or a PSNR target that quality 0 already exceeds; else None."""
    if target.kind != "psnr" and result.quality == MAX_QUALITY and result.value < 0.97 * target.value:
        return (f"quality {MAX_QUALITY}, the highest, gives {target.shown(result.value)}, under the target of "
                f"{target.shown(target.value)}")
    if target.kind == "psnr" and result.quality == 0 and result.value > target.value + 0.5:
        return f"quality 0, the lowest, already gives {target.shown(result.value)}"
    return None


class TargetCodec:
    """A variable-rate model bound to one target, with the interface :func:`shallowcodec.evaluation.evaluate`
    takes, so that ``eval`` measures files made at target sizes (equal bytes with other codecs).

    ``quality`` is the target's value (for sorting and labels), ``lmbda`` None: each image gets its own
    quality. Decoding reads the quality from each file's header.
    """

    def __init__(self, loaded: LoadedModel, target: Target, effort: int = 0, seed: int = 0,
                 decoder: Decoder | None = None):
        self.loaded, self.target, self.effort, self.seed = loaded, target, effort, seed
        self.architecture, self.quality, self.lmbda = loaded.architecture, target.value, None
        #: the model's numpy decoder (``decoder``, shared between the targets of one sweep, or built here)
        self.decoder = decoder or Decoder(model_weights(loaded))

    def compress(self, x: Tensor) -> bytes:
        """(3, H, W) uint8 → the bytes of the file that meets the target (:func:`compress_to_target`).

        Raises:
            TargetError: the image cannot meet the target.
        """
        return compress_to_target(self.loaded, x, self.target, self.effort, self.seed, self.decoder).data

    def decompress_tensor(self, data: bytes) -> Tensor:
        """File bytes → (3, H, W) uint8, at the quality its header records."""
        return Codec(self.loaded, unpack(data).header.quality, self.decoder).decompress_tensor(data)
