"""Quality levels: q ∈ [0, 6] ↔ λ(q) = λ₀ · r^q, a model's λ scale (paper: λ₀ = 0.00125, r = 2).

The paper trains 7 fixed-λ models at λ = 0.00125 · 2^q, q = 0..6. A variable-rate model
(variable_rate.py) stores its own scale :class:`LmbdaScale` in its config (``lmbda_scale``:
[λ₀, r]; absent means the paper's), so a model can span a wider range of rates than the
paper's 64× in λ; the container stores q and λ(q), and the decoder checks them against the scale.

Fractional qualities interpolate the gains of a variable-rate model and are snapped to
multiples of 1/256, the precision the container stores, so that encoder and decoder compute
bit-identical gains. No PyTorch: the torch-free decoder (decoder.py) and the CLI's argument
parsing use this module too.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from shallowcodec.container import QUALITY_SCALE

#: λ per integer quality (paper's 7 values, low to high rate); loss = bpp + λ·MSE(0–255).
LMBDAS = (0.00125, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08)
MAX_QUALITY = len(LMBDAS) - 1
#: Quality used when none is given: the middle of 0–6.
DEFAULT_QUALITY = 3
#: Range a scale's λ must stay in: 1e-5 is ~0.01 bpp territory (the paper's lowest is 0.00125),
#: 10 is ~50 dB PSNR (125× the paper's top); outside it training diverges or λ underflows float32.
MIN_LMBDA, MAX_LMBDA = 1e-5, 10.0


@dataclass(frozen=True)
class LmbdaScale:
    """The λ of each quality of a variable-rate model: λ(q) = ``lmbda_min`` · ``ratio``^q.

    The default is the paper's scale (0.00125 · 2^q: 0.00125 at q0 to 0.08 at q6).

    Raises:
        ValueError: λ₀ below :data:`MIN_LMBDA`, ratio not above 1, or λ(6) above :data:`MAX_LMBDA` (checked
            on construction).
    """

    lmbda_min: float = LMBDAS[0]
    ratio: float = 2.0

    def __post_init__(self):
        ok = self.lmbda_min >= MIN_LMBDA and self.ratio > 1  # False for NaN
        if not (ok and math.log(self.lmbda_min) + MAX_QUALITY * math.log(self.ratio) <= math.log(MAX_LMBDA)):
            raise ValueError(f"lmbda_scale must be [λ0 ≥ {MIN_LMBDA:g}, ratio > 1] with λ(6) ≤ {MAX_LMBDA:g}, "
                             f"got [{self.lmbda_min:g}, {self.ratio:g}]")

    @classmethod
    def of_config(cls, config: dict) -> LmbdaScale:
        """The scale of a model config (its ``lmbda_scale`` [λ₀, r]; the paper's where absent).

        Raises:
            ValueError: a malformed ``lmbda_scale``.
        """
        return cls.parse(config.get("lmbda_scale"))

    @classmethod
    def parse(cls, value) -> LmbdaScale:
        """The scale of a ``lmbda_scale`` value [λ₀, r] (from JSON); the paper's for None.

        Raises:
            ValueError: anything else than two real numbers in range.
        """
        if value is None:
            return cls()
        if not (isinstance(value, (list, tuple)) and len(value) == 2
                and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)):
            raise ValueError(f"lmbda_scale must be [λ0, ratio], got {value!r}")
        try:
            return cls(float(value[0]), float(value[1]))
        except OverflowError:  # an integer too large for a float
            raise ValueError(f"lmbda_scale must be [λ0, ratio] of float range, got {str(value)[:40]}…") from None

    def __call__(self, quality):
        """λ(q) for a float or a tensor of qualities (same type back)."""
        return self.lmbda_min * self.ratio**quality

    def quality_of(self, lmbda: float) -> float:
        """The (fractional, possibly outside 0–6) quality whose λ is ``lmbda``: log(λ/λ₀) / log r."""
        return math.log(lmbda / self.lmbda_min) / math.log(self.ratio)

    def lmbdas(self) -> list[float]:
        """λ of the integer qualities 0..6."""
        return [self(q) for q in range(MAX_QUALITY + 1)]


#: The paper's scale, λ(q) = 0.00125 · 2^q.
PAPER_SCALE = LmbdaScale()


def lmbda_of(quality):
    """The paper's λ(q) = 0.00125 · 2^q (0 → 0.00125, 6 → 0.08), for a float or a tensor."""
    return PAPER_SCALE(quality)


def snap_quality(quality: float) -> float:
    """Quality q rounded to a multiple of 1/256 (exactly representable; what the container stores).

    Raises:
        ValueError: q is not a number in [0, 6].
    """
    if isinstance(quality, bool) or not isinstance(quality, numbers.Real) or not 0 <= quality <= MAX_QUALITY:
        shown = f"{quality:g}" if isinstance(quality, numbers.Real) and not isinstance(quality, bool) else repr(quality)
        raise ValueError(f"quality must be a number in 0..{MAX_QUALITY}, got {shown}")
    return round(float(quality) * QUALITY_SCALE) / QUALITY_SCALE
