"""Tiled coding (tiling.py): exact tiled decoding, near-free tiled encoding, tile spans."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from shallowcodec import tiling
from shallowcodec.codec import mirror_pad
from shallowcodec.container import unpack
from shallowcodec.metrics import psnr_of_mse


def test_spans_cover_the_axis_with_clipped_margins():
    assert tiling.spans(10, 4, 1) == [(0, 4, 0, 5), (4, 8, 3, 9), (8, 10, 7, 10)]
    with pytest.raises(ValueError):
        tiling.spans(10, 0, 1)


def test_tiled_refuses_a_size_the_scale_does_not_map_to_whole_pixels():
    with pytest.raises(ValueError, match="not an integer"):
        tiling.tiled(lambda t: t, torch.zeros(1, 1, 8, 8), Fraction(1, 16), 4, 0)


@pytest.mark.parametrize("architecture", ["two-layer", "jpeg-like", "mbt2018-mean"])
def test_tiled_synthesis_gives_the_same_pixels(codec_factory, photo_crop, monkeypatch, architecture):
    """The numpy g_s of each architecture over tiles of ŷ (tiling.tiled, as decoder.Decoder.render runs it): the same
    x̂ up to the float32 rounding of GEMMs of other sizes, and the same pixels."""
    c = codec_factory(f"{architecture}.safetensors", architecture=architecture)
    y_hat = c.decoder.decode_latents(unpack(c.compress(photo_crop(192, 320))))

    def g_s(y: np.ndarray) -> np.ndarray:  # (1, M, h, w) → (1, 3, 16h, 16w)
        return c.decoder.g_s(y[0].astype(np.float32)).transpose(2, 0, 1)[None]

    whole, pixels = g_s(y_hat), c.decoder.render(y_hat, c.quality, 192, 320)
    assert np.abs(whole).max() > 1 and pixels.shape == (192, 320, 3)
    for tile in (1, 3, 5):
        np.testing.assert_allclose(tiling.tiled(g_s, y_hat, Fraction(16), tile, tiling.SYNTHESIS_MARGIN), whole,
                                   rtol=1e-5, atol=1e-4)
        monkeypatch.setattr("shallowcodec.decoder.SYNTHESIS_TILE", tile)
        assert np.array_equal(c.decoder.render(y_hat, c.quality, 192, 320), pixels)


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
    monkeypatch.setattr("shallowcodec.decoder.SYNTHESIS_TILE", 2)
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
