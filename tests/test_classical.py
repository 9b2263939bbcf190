"""Classical codecs through Pillow: real files in memory, decoded back, measured like ours."""

from __future__ import annotations

import pytest
import torch

from shallowcodec.classical import ENCODERS, SWEEPS, PillowCodec, codecs
from shallowcodec.evaluation import evaluate, psnr
from shallowcodec.images import read_image

MAGIC = {
    "jpeg420": (0, b"\xff\xd8\xff"), "jpeg444": (0, b"\xff\xd8\xff"), "webp": (8, b"WEBP"),
    "avif": (4, b"ftypavif"), "jxl": (0, b"\xff\x0a"),
}


@pytest.fixture(scope="module")
def crop(photos24, photo_crop):
    return photo_crop(96, 128, top=200, left=300)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_round_trip_is_a_real_file_of_the_format(crop, name):
    low, high = PillowCodec(name, 20), PillowCodec(name, 90)
    data_low, data_high = low.compress(crop), high.compress(crop)
    offset, magic = MAGIC[name]
    assert data_high[offset : offset + len(magic)] == magic
    assert len(data_low) < len(data_high)
    decoded = high.decompress_tensor(data_high)
    assert decoded.dtype == torch.uint8 and decoded.shape == crop.shape
    assert psnr(crop, decoded) > 32
    assert psnr(crop, low.decompress_tensor(data_low)) < psnr(crop, decoded)


def test_444_keeps_chroma_resolution(crop):
    assert len(PillowCodec("jpeg444", 75).compress(crop)) > len(PillowCodec("jpeg420", 75).compress(crop))


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_sweep_spans_low_to_high_rate_on_a_photo(photo_crop, name):
    x = photo_crop(512, 768, name="eval01_kodim23.png")
    sweep = codecs(name)
    assert [c.quality for c in sweep] == sorted(c.quality for c in sweep)
    lowest, highest = (8 * len(c.compress(x)) / x[0].numel() for c in (sweep[0], sweep[-1]))
    assert lowest < 0.2 and highest > 1.2


def test_evaluate_measures_pillow_codecs_like_ours(photos24):
    paths = [photos24 / "eval01_kodim23.png"]
    result = evaluate(PillowCodec("webp", 50), paths, progress=False)
    row = result["images"][0]
    assert result["model"] == "webp" and result["lmbda"] is None
    assert row["bpp"] == pytest.approx(row["bytes"] * 8 / (768 * 512))
    assert 30 < row["psnr"] < 45 and 0.9 < row["ms_ssim"] < 1
    assert result["mean"]["bpp"] == row["bpp"]


def test_bad_codec_or_quality_raises():
    with pytest.raises(ValueError, match="unknown codec"):
        codecs("bpg")
    with pytest.raises(ValueError, match="outside 0–100"):
        codecs("webp", [101])


def test_decode_matches_pillow_reading_the_same_bytes(crop, tmp_path):
    codec = PillowCodec("jpeg420", 60)
    data = codec.compress(crop)
    (tmp_path / "x.jpg").write_bytes(data)
    assert torch.equal(read_image(tmp_path / "x.jpg")[0], codec.decompress_tensor(data))
