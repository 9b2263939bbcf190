"""Quality levels: q ∈ [0, 6] ↔ λ(q) = 0.00125 · 2^q, the paper's 7 λ values at integer q.

Fractional qualities interpolate the gains of a variable-rate model (variable_rate.py) and are
snapped to multiples of 1/256, the precision the container stores, so that encoder and decoder
compute bit-identical gains. No PyTorch: the torch-free decoder (decoder.py) and the CLI's
argument parsing use this module too.
"""

from __future__ import annotations

import numbers

from shallowcodec.container import QUALITY_SCALE

#: λ per integer quality (paper's 7 values, low to high rate); loss = bpp + λ·MSE(0–255).
LMBDAS = (0.00125, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08)
MAX_QUALITY = len(LMBDAS) - 1
#: Quality used when none is given: the middle of 0–6.
DEFAULT_QUALITY = 3


def lmbda_of(quality: float) -> float:
    """λ(q) = 0.00125 · 2^q: the rate–distortion weight of quality q (0 → 0.00125, 6 → 0.08)."""
    return LMBDAS[0] * 2.0**quality


def snap_quality(quality: float) -> float:
    """Quality q rounded to a multiple of 1/256 (exactly representable; what the container stores).

    Raises:
        ValueError: q is not a number in [0, 6].
    """
    if isinstance(quality, bool) or not isinstance(quality, numbers.Real) or not 0 <= quality <= MAX_QUALITY:
        shown = f"{quality:g}" if isinstance(quality, numbers.Real) and not isinstance(quality, bool) else repr(quality)
        raise ValueError(f"quality must be a number in 0..{MAX_QUALITY}, got {shown}")
    return round(float(quality) * QUALITY_SCALE) / QUALITY_SCALE
