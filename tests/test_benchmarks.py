"""Benchmark scripts whose numbers close issues: benchmarks/fixed_gap.py (variable rate against fixed λ)."""

import importlib.util
import math
from pathlib import Path

import pytest

from shallowcodec.evaluation import rd_result

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result(points: list[tuple[float, float, float]], image: str = "a.png") -> dict:
    """A result file of one image with (bpp, PSNR dB, MS-SSIM) points."""
    return rd_result("shallowcodec", "two-layer", "photos", [
        {"quality": q, "mean": {"bpp": b, "psnr": p, "ms_ssim": m}, "images": [{"image": image}]}
        for q, (b, p, m) in enumerate(points)])


def test_fixed_gap_interpolates_the_variable_curve_at_the_fixed_bpp():
    fixed_gap = load_benchmark("fixed_gap")
    # PSNR linear in log bpp: 3 dB per doubling, so at 0.2 bpp (between 0.1 and 0.4) exactly 28 dB
    variable = result([(0.1, 25.0, 0.90), (0.4, 31.0, 0.96), (0.8, 34.0, 0.98)])
    row = fixed_gap.gap(result([(0.2, 28.3, 0.93)]), variable)
    assert row["bpp"] == 0.2 and row["fixed_psnr"] == 28.3
    assert row["variable_psnr"] == pytest.approx(28.0, abs=0.02) and row["gap_psnr"] == pytest.approx(-0.3, abs=0.02)
    assert row["fixed_ms_ssim_db"] == pytest.approx(-10 * math.log10(0.07))
    with pytest.raises(ValueError, match="outside its curve"):
        fixed_gap.gap(result([(0.05, 24.0, 0.88)]), variable)
    with pytest.raises(ValueError, match="not the same"):
        fixed_gap.gap(result([(0.2, 28.3, 0.93)], image="b.png"), variable)
    with pytest.raises(ValueError, match="must have one point"):  # a fresh user's sweep given as the fixed model
        fixed_gap.gap(variable, variable)
    with pytest.raises(ValueError, match="a curve needs at least 2"):
        fixed_gap.gap(result([(0.2, 28.3, 0.93)]), result([(0.2, 28.0, 0.92)]))
