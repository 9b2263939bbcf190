"""Portable bitstreams: files decode to the same ŷ under every kernel set (subprocesses), pixels within ±1.

The issue that made this a test: under AVX2 kernels 4 of the 24 photos24 files (eval01, eval10,
eval21, eval22) decoded to garbage, because h_s's float sums changed one scale index.
"""

from __future__ import annotations

import pytest

from shallowcodec.model_files import embedded_models
from shallowcodec.portability import KERNEL_SETS, check


@pytest.fixture(scope="module")
def result(photos24):
    images = [next(photos24.glob(f"{stem}_*.png")) for stem in ("eval01", "eval10")]
    return check(images, sorted(embedded_models()), [0.0, 3.0, 6.0], crop=128)


def test_every_kernel_set_decodes_the_same_y_hat(result):
    assert result["files"] == 2 * 2 * 3 * 3  # (native + AVX2-encoded) × images × models × qualities
    assert result["variants"] == 6  # torch: oneDNN on/off × 1, 2 threads; numpy decoder: 1, 2 threads
    assert len(result["kernels"]) == len(KERNEL_SETS) + 2  # + native (both decoders) + the AVX2-encoding process
    assert [r["y_mismatches"] for r in result["kernels"]] == [0] * (len(KERNEL_SETS) + 2)


def test_pixels_differ_by_at_most_one_level(result):
    assert max(r["max_pixel_diff"] for r in result["kernels"]) <= 1
