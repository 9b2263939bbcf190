"""Bjøntegaard deltas between two rate–distortion curves: BD-rate (%) and BD-PSNR (dB).

G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves", VCEG-M33, 2001,
with piecewise cubic Hermite (PCHIP) interpolation instead of the original cubic polynomial fit
(the common practice of CompressAI and the ``bjontegaard`` package, method "pchip"; it is
monotone between points and does not overshoot).

- BD-rate: interpolate log(rate) as a function of quality for both curves, integrate both over
  the quality interval they share, and turn the mean difference into a ratio:
  ``(exp(mean(log r_B − log r_A)) − 1) · 100``. Negative: B needs fewer bits than A.
- BD-quality (BD-PSNR for PSNR): interpolate quality as a function of log(rate), integrate over
  the shared log-rate interval; the mean difference Q_B − Q_A in the quality's unit (dB).

Rates may be in any unit (bpp here); quality is PSNR in dB or MS-SSIM in dB.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator


def bd_rate(rate_a, quality_a, rate_b, quality_b) -> float:
    """BD-rate of curve B relative to A, in percent (negative = B saves bits at equal quality).

    Args:
        rate_a, quality_a: points of the anchor curve A (rate > 0, e.g. bpp; quality in dB).
        rate_b, quality_b: points of the tested curve B.

    Raises:
        ValueError: fewer than 2 points, non-positive or non-finite values, repeated quality
            values in one curve, or curves whose quality ranges do not overlap.
    """
    log_a, q_a = _points(rate_a, quality_a)
    log_b, q_b = _points(rate_b, quality_b)
    return float(np.expm1(_mean_difference(q_a, log_a, q_b, log_b, "quality")) * 100)


def bd_quality(rate_a, quality_a, rate_b, quality_b) -> float:
    """BD-quality (BD-PSNR when quality is PSNR) of curve B relative to A: mean Q_B − Q_A in dB.

    Arguments and errors as in :func:`bd_rate` (here the log-rate ranges must overlap).
    """
    log_a, q_a = _points(rate_a, quality_a)
    log_b, q_b = _points(rate_b, quality_b)
    return _mean_difference(log_a, q_a, log_b, q_b, "rate")


def _points(rate, quality) -> tuple[np.ndarray, np.ndarray]:
    """Validated (log rate, quality) arrays of one curve."""
    rate, quality = np.asarray(rate, dtype=float), np.asarray(quality, dtype=float)
    if rate.shape != quality.shape or rate.ndim != 1 or len(rate) < 2:
        raise ValueError("a curve needs at least 2 (rate, quality) points of equal count")
    if not (np.all(np.isfinite(rate)) and np.all(np.isfinite(quality)) and np.all(rate > 0)):
        raise ValueError("rates must be positive and finite, qualities finite")
    return np.log(rate), quality


def _mean_difference(x_a, y_a, x_b, y_b, axis: str) -> float:
    """Mean of PCHIP(x_b → y_b) − PCHIP(x_a → y_a) over the shared x interval."""
    lo, hi = max(x_a.min(), x_b.min()), min(x_a.max(), x_b.max())
    if not lo < hi:
        show = np.exp if axis == "rate" else float
        raise ValueError(f"the curves' {axis} ranges do not overlap: A {show(x_a.min()):.3f}–{show(x_a.max()):.3f}, "
                         f"B {show(x_b.min()):.3f}–{show(x_b.max()):.3f}")
    return (_integral(x_b, y_b, lo, hi) - _integral(x_a, y_a, lo, hi)) / (hi - lo)


def quality_at(rate, quality, at_rate: float) -> float:
    """Quality of a curve at ``at_rate``, PCHIP over log rate as in :func:`bd_quality` (outside the
    curve's rates: extrapolated; check the range where that matters).

    Raises:
        ValueError: as :func:`bd_rate` for one curve.
    """
    log_rate, quality = _points(rate, quality)
    return float(_pchip(log_rate, quality)(np.log(at_rate)))


def truncate(rate, quality, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
    """The part of a curve between rates ``low`` and ``high`` (e.g. bpp ≤ 0.5 or ≥ 0.5): its points inside,
    plus the curve at ``low`` and ``high`` where they fall inside its rates (PCHIP over log rate, as
    :func:`quality_at`), so that BD-rates of the parts integrate the same curves up to the split.

    Returns:
        (rate, quality) arrays in rate order (fewer than 2 points when the curve barely reaches the range).

    Raises:
        ValueError: as :func:`bd_rate` for one curve, or ``low`` ≥ ``high``.
    """
    if not low < high:
        raise ValueError(f"a rate range needs low < high, got {low:g}–{high:g}")
    _points(rate, quality)  # validation
    rate, quality = np.asarray(rate, dtype=float), np.asarray(quality, dtype=float)
    inside = (rate >= low) & (rate <= high)
    ends = [r for r in (low, high) if rate.min() < r < rate.max()]
    points = sorted([*zip(rate[inside], quality[inside]), *((r, quality_at(rate, quality, r)) for r in ends)])
    return np.array([r for r, _ in points]), np.array([q for _, q in points])


def _pchip(x, y) -> PchipInterpolator:
    """PCHIP through the points in x order."""
    order = np.argsort(x)
    x, y = x[order], y[order]
    if np.any(np.diff(x) == 0):
        raise ValueError("a curve has two points with the same rate or quality")
    return PchipInterpolator(x, y)


def _integral(x, y, lo: float, hi: float) -> float:
    return float(_pchip(x, y).integrate(lo, hi))
