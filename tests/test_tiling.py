"""Tiled coding (tiling.py): exact tiled decoding, near-free tiled encoding, tile spans."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from shallowcodec import tiling
from shallowcodec.codec import mirror_pad
from shallowcodec.container import unpack
from shallowcodec.hyperprior import LatentStrings
from shallowcodec.metrics import psnr_of_mse


def test_spans_cover_the_axis_with_clipped_margins():
    assert tiling.spans(10, 4, 1) == [(0, 4, 0, 5), (4, 8, 3, 9), (8, 10, 7, 10)]
    with pytest.raises(ValueError):
        tiling.spans(10, 0, 1)


def test_tiled_refuses_a_size_the_scale_does_not_map_to_whole_pixels():
    with pytest.raises(ValueError, match="not an integer"):
        tiling.tiled(lambda t: t, torch.zeros(1, 1, 8, 8), Fraction(1, 16), 4, 0)


def decoded_latents(c, x):
    stream = unpack(c.compress(x))
    h, w = x.shape[-2:]
    strings = LatentStrings(stream.z_string, stream.y_string, (-(-h // 64), -(-w // 64)))
    return c.loaded.model.decompress_latents(strings, c.quality)


@pytest.mark.parametrize("architecture", ["two-layer", "jpeg-like", "mbt2018-mean"])
def test_tiled_synthesis_is_bit_identical_to_untiled(codec_factory, photo_crop, architecture):
    c = codec_factory(f"{architecture}.safetensors", architecture=architecture)
    y_hat = decoded_latents(c, photo_crop(192, 320))
    whole = c._to_pixels(y_hat)
    for tile in (1, 3, 5):
        assert torch.equal(tiling.tiled(c._to_pixels, y_hat, Fraction(16), tile, tiling.SYNTHESIS_MARGIN), whole)


def test_tiled_hyper_synthesis_gives_the_same_entropy_parameters(tiny_codec, monkeypatch):
    model = tiny_codec.loaded.model
    z_hat = torch.round(torch.randn(1, 16, 5, 7) * 3)
    whole = model.entropy_parameters(z_hat, 3.0)
    monkeypatch.setattr("shallowcodec.entropy_parameters.HYPER_SYNTHESIS_TILE", 2)
    tiles = model.entropy_parameters(z_hat, 3.0)
    assert all(np.array_equal(a, b) for a, b in zip(whole, tiles))


def test_decoding_does_not_depend_on_the_tile_size(tiny_codec, photo_crop, monkeypatch):
    data = tiny_codec.compress(photo_crop(100, 200))
    whole = tiny_codec.decompress_tensor(data)
    monkeypatch.setattr("shallowcodec.codec.SYNTHESIS_TILE", 2)
    monkeypatch.setattr("shallowcodec.entropy_parameters.HYPER_SYNTHESIS_TILE", 1)
    assert torch.equal(tiny_codec.decompress_tensor(data), whole)


def test_tiled_encoding_decodes_within_a_small_rate_and_psnr_difference(tiny_codec, photo_crop, monkeypatch):
    x = photo_crop(256, 384)
    untiled = tiny_codec.compress(x)
    monkeypatch.setattr("shallowcodec.codec.ANALYSIS_TILE", 128)
    monkeypatch.setattr("shallowcodec.codec.ANALYSIS_MARGIN", 32)  # less than the default, so that seams show
    monkeypatch.setattr("shallowcodec.codec.HYPER_ANALYSIS_TILE", 4)
    tiled = tiny_codec.compress(x)
    assert tiled != untiled
    assert abs(len(tiled) / len(untiled) - 1) < 0.01
    quality = [psnr_of_mse((x.float() - tiny_codec.decompress_tensor(d).float()).pow(2).mean().item())
               for d in (untiled, tiled)]
    assert abs(quality[0] - quality[1]) < 0.05


def test_analysis_tiles_match_the_models_analysis_when_one_tile_covers_the_image(tiny_codec, photo_crop):
    x = mirror_pad(photo_crop(128, 192)[None])
    y, z = tiny_codec.analysis(x)
    with torch.no_grad():
        ref = tiny_codec.loaded.model.analysis(x.float() / 255, tiny_codec.quality)
    assert torch.equal(y, ref[0]) and torch.equal(z, ref[1])
