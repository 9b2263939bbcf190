"""Portable bitstreams: files decode to the same ŷ under every kernel set (subprocesses), pixels within ±1.

The issue that made this a test: under AVX2 kernels 4 of the 24 photos24 files (eval01, eval10,
eval21, eval22) decoded to garbage, because h_s's float sums changed one scale index.
"""

from __future__ import annotations

import pytest

from shallowcodec.portability import KERNEL_SETS, check
from shallowcodec.zoo import embedded_models


@pytest.fixture(scope="module")
def result(photos24):
    images = [next(photos24.glob(f"{stem}_*.png")) for stem in ("eval01", "eval10")]
    return check(images, sorted(embedded_models()), [0.0, 3.0, 6.0], crop=128)


def test_every_kernel_set_decodes_the_same_y_hat(result):
    assert result["files"] == 2 * 2 * 3 * 3  # (native + AVX2-encoded) × images × models × qualities
    assert len(result["kernels"]) == len(KERNEL_SETS) + 1
    assert [r["y_mismatches"] for r in result["kernels"]] == [0] * (len(KERNEL_SETS) + 1)


def test_pixels_differ_by_at_most_one_level(result):
    assert max(r["max_pixel_diff"] for r in result["kernels"]) <= 1
