"""Bjøntegaard deltas on synthetic curves whose answers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shallowcodec import bdrate
from shallowcodec.bdrate import bd_quality, bd_rate

# The paper's two-layer Kodak curve (kodak_aggregate.json, rounded): bpp and PSNR per λ.
BPP = np.array([0.1152, 0.1919, 0.3005, 0.4620, 0.6728, 0.9407, 1.3062])
PSNR = np.array([27.27, 28.84, 30.65, 32.57, 34.59, 36.64, 38.79])


def test_rate_scaled_by_0_9_is_minus_10_percent():
    assert bd_rate(BPP, PSNR, 0.9 * BPP, PSNR) == pytest.approx(-10.0, abs=1e-9)


def test_anchor_relative_to_cheaper_curve_is_plus_11_1_percent():
    assert bd_rate(0.9 * BPP, PSNR, BPP, PSNR) == pytest.approx(100 / 9, abs=1e-9)


def test_psnr_plus_1_db_is_bd_psnr_plus_1():
    assert bd_quality(BPP, PSNR, BPP, PSNR + 1) == pytest.approx(1.0, abs=1e-9)


def test_identical_curves_give_zero():
    assert bd_rate(BPP, PSNR, BPP, PSNR) == pytest.approx(0.0, abs=1e-12)
    assert bd_quality(BPP, PSNR, BPP, PSNR) == pytest.approx(0.0, abs=1e-12)


def test_log_linear_curves_shifted_by_1_db():
    # q = 30 + 5 ln r for A and 31 + 5 ln r for B: at equal q, ln r_B = ln r_A − 1/5.
    rate = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    assert bd_rate(rate, 30 + 5 * np.log(rate), rate, 31 + 5 * np.log(rate)) == pytest.approx(
        100 * (math.exp(-0.2) - 1), abs=1e-9)  # −18.127 %
    assert bd_quality(rate, 30 + 5 * np.log(rate), rate, 31 + 5 * np.log(rate)) == pytest.approx(1.0, abs=1e-9)


def test_only_the_overlap_counts_and_point_order_is_irrelevant():
    # B covers only the middle of A (log-linear, so PCHIP is exact on any subset), points shuffled.
    rate = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    quality = 30 + 5 * np.log(rate)
    order = [3, 1, 2]
    assert bd_rate(rate, quality, 0.8 * rate[order], quality[order]) == pytest.approx(-20.0, abs=1e-9)
    assert bd_quality(rate[::-1], quality[::-1], rate[order], quality[order] + 0.5) == pytest.approx(0.5, abs=1e-9)


@pytest.mark.parametrize("rate_b, quality_b, message", [
    (BPP * 10, PSNR + 20, "do not overlap"),
    ([0.5], [30.0], "at least 2"),
    ([0.0, 0.5], [30.0, 31.0], "positive"),
    ([0.2, 0.5], [30.0, math.nan], "finite"),
    ([0.2, 0.5, 0.6], [30.0, 31.0, 31.0], "same rate or quality"),
])
def test_bad_curves_raise_value_error(rate_b, quality_b, message):
    with pytest.raises(ValueError, match=message):
        bd_rate(BPP, PSNR, rate_b, quality_b)


def test_truncate_cuts_a_curve_at_interpolated_ends():
    rate, psnr = [0.1, 0.3, 0.7, 1.5], [26.0, 30.0, 34.0, 37.0]
    low_r, low_q = bdrate.truncate(rate, psnr, 0, 0.5)
    assert list(low_r[:2]) == [0.1, 0.3] and low_r[-1] == 0.5
    assert low_q[-1] == pytest.approx(bdrate.quality_at(rate, psnr, 0.5)) and 30 < low_q[-1] < 34
    high_r, high_q = bdrate.truncate(rate, psnr, 0.5, 100)
    assert list(high_r) == [0.5, 0.7, 1.5] and high_q[0] == low_q[-1]
    with pytest.raises(ValueError, match="low < high"):
        bdrate.truncate(rate, psnr, 0.5, 0.5)


def test_the_parts_of_a_uniformly_better_curve_save_the_same_share():
    rate, psnr = np.array([0.1, 0.3, 0.7, 1.5]), [26.0, 30.0, 34.0, 37.0]
    for part in ((0, 0.5), (0.5, 100)):
        a, b = bdrate.truncate(rate, psnr, *part), bdrate.truncate(0.8 * rate, psnr, *part)
        assert bdrate.bd_rate(*a, *b) == pytest.approx(-20.0, abs=1.0)  # cut at the same bpp, not the same PSNR
