"""Rate control (shallowcodec.rate_control): targets parsed, met on the 1/256 quality grid, unmet ones refused."""

from __future__ import annotations

import pytest

from shallowcodec import zoo
from shallowcodec.codec import Codec
from shallowcodec.container import QUALITY_SCALE
from shallowcodec.evaluation import psnr
from shallowcodec.rate_control import Target, TargetError, compress_to_target


@pytest.fixture(scope="module")
def two_layer():
    return zoo.load_embedded("two-layer")


@pytest.fixture
def crop(photo_crop):
    return photo_crop(192, 256, 128, 256)


@pytest.mark.parametrize("text, nbytes", [("1234", 1234), ("50KB", 50_000), ("50kb", 50_000), ("50 KiB", 51_200),
                                          ("1.5MB", 1_500_000), ("2MiB", 2 * 1024**2), ("100B", 100), ("20k", 20_000)])
def test_size_targets_are_bytes_with_a_unit(text, nbytes):
    assert Target.size(text) == Target("bytes", float(nbytes))


@pytest.mark.parametrize("text", ["", "KB", "-5", "0", "0.5", "5 parsecs", "1e3", "inf", "nan", "5KB5"])
def test_bad_size_targets_are_refused(text):
    with pytest.raises(ValueError, match="size"):
        Target.size(text)


@pytest.mark.parametrize("kind, value", [("bpp", 0.0), ("psnr", -3.0), ("psnr", float("inf")), ("bpp", float("nan")),
                                         ("ssim", 0.9)])
def test_bad_targets_are_refused(kind, value):
    with pytest.raises(ValueError):
        Target(kind, value)


def test_a_size_target_gives_the_largest_file_not_above_it(two_layer, crop):
    result = compress_to_target(two_layer, crop, Target("bytes", 3000))
    assert 0.97 * 3000 <= len(result.data) <= 3000
    above = Codec(two_layer, result.quality + 1 / QUALITY_SCALE).compress(crop)
    assert len(above) > 3000  # the next quality step overshoots: the search found the boundary


def test_a_bpp_target_is_met_within_three_percent(two_layer, crop):
    result = compress_to_target(two_layer, crop, Target("bpp", 0.5))
    bpp = 8 * len(result.data) / (192 * 256)
    assert result.value == bpp and 0.485 <= bpp <= 0.5


def test_a_psnr_target_gives_the_smallest_file_at_or_above_it(two_layer, crop):
    result = compress_to_target(two_layer, crop, Target("psnr", 31.0))
    codec = Codec(two_layer, result.quality)
    assert result.value == psnr(crop, codec.decompress_tensor(result.data)) >= 31.0
    below = Codec(two_layer, result.quality - 1 / QUALITY_SCALE)
    assert psnr(crop, below.decompress_tensor(below.compress(crop))) < 31.0


@pytest.mark.parametrize("target, nearest", [(Target("bytes", 40), "bytes at quality 0"),
                                             (Target("psnr", 70.0), "dB at quality 6")])
def test_an_unreachable_target_names_the_nearest_value(two_layer, crop, target, nearest):
    with pytest.raises(TargetError, match=f"cannot reach .*the nearest is .*{nearest}"):
        compress_to_target(two_layer, crop, target)


def test_a_size_above_the_top_quality_gives_the_top_quality(two_layer, crop):
    assert compress_to_target(two_layer, crop, Target("bytes", 10**7)).quality == 6


def test_fixed_lambda_weights_have_no_qualities_to_search(tiny_codec, crop):
    with pytest.raises(ValueError, match="variable-rate"):
        compress_to_target(tiny_codec.loaded, crop, Target("bytes", 3000))


def test_with_sga_the_target_holds_and_the_file_is_no_worse(two_layer, photo_crop):
    x = photo_crop(64, 128, 200, 300)
    amortized = compress_to_target(two_layer, x, Target("bytes", 700))
    refined = compress_to_target(two_layer, x, Target("bytes", 700), effort=1)
    codec = Codec(two_layer, amortized.quality)
    assert len(refined.data) <= 700
    assert refined.psnr >= psnr(x, codec.decompress_tensor(amortized.data))


def test_eval_measures_files_made_at_a_target(two_layer, photos24):
    from shallowcodec.evaluation import evaluate
    from shallowcodec.rate_control import TargetCodec

    paths = [photos24 / "eval01_kodim23.png", photos24 / "eval03_sail.png"]
    result = evaluate(TargetCodec(two_layer, Target("bpp", 0.3)), paths, progress=False)
    assert result["quality"] == 0.3 and result["lmbda"] is None
    assert all(0.97 * 0.3 <= row["bpp"] <= 0.3 and 25 < row["psnr"] < 40 for row in result["images"])
    assert all(0 < row["quality"] < 6 for row in result["images"])  # each file's own quality is recorded


def test_eval_names_the_image_that_cannot_meet_a_target(two_layer, photos24):
    from shallowcodec.evaluation import evaluate
    from shallowcodec.rate_control import TargetCodec

    with pytest.raises(TargetError, match="^eval01_kodim23.png: cannot reach 100 bytes"):
        evaluate(TargetCodec(two_layer, Target("bytes", 100)), [photos24 / "eval01_kodim23.png"], progress=False)


def test_a_target_beyond_the_models_range_is_noted(two_layer, crop):
    from shallowcodec.rate_control import limit_note

    top = compress_to_target(two_layer, crop, Target("bytes", 10**7))
    assert limit_note(Target("bytes", 10**7), top).startswith("quality 6, the highest, gives")
    bottom = compress_to_target(two_layer, crop, Target("psnr", 10.0))
    assert bottom.quality == 0 and limit_note(Target("psnr", 10.0), bottom).startswith("quality 0, the lowest")
    met = compress_to_target(two_layer, crop, Target("bytes", 3000))
    assert limit_note(Target("bytes", 3000), met) is None
