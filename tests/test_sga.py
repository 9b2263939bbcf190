"""SGA iterative encoding: temperature schedule, relaxed rounding, R-D gain, decodability."""

import math

import pytest
import torch

from shallowcodec import sga
from shallowcodec.codec import Codec, mirror_pad
from shallowcodec.evaluation import inference_gap
from shallowcodec.images import read_image
from shallowcodec.metrics import bpp
from shallowcodec.zoo import build, load_weights, save_weights

PHOTO = "eval03_sail.png"


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    torch.manual_seed(0)
    model = build("two-layer", N=8, M=16).eval()
    model.update(force=True)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(path, model, "two-layer", {"N": 8, "M": 16}, 3, 0.01)
    return Codec(load_weights(path))


@pytest.fixture(scope="module")
def crop(photos24):
    x, _ = read_image(photos24 / PHOTO)
    return x[:, 100:164, 200:280]  # 64×80: padded to 64×128


def test_temperature_schedule():
    assert sga.temperature(0) == 0.5  # 0.5·e^{0.1} clipped to 0.5
    assert sga.temperature(200) == 0.5
    assert sga.temperature(3000) == pytest.approx(0.5 * math.exp(-5e-4 * 2800))
    assert sga.temperature(3000) == pytest.approx(0.123298, rel=1e-5)
    assert sga.temperature(10**6) == 1e-8
    # a shorter run follows the same curve in its own time: 300 iterations end where 3,000 do
    assert sga.temperature(300, 300) == sga.temperature(3000) and sga.temperature(150, 300) == sga.temperature(1500)


def test_sga_round_limits_and_gradient():
    v = torch.tensor([0.1, 0.9, -1.2, 2.5001, 3.0], requires_grad=True)
    g = torch.Generator().manual_seed(0)
    cold = sga.sga_round(v, 1e-8, g)
    assert torch.equal(cold.detach(), torch.tensor([0.0, 1.0, -1.0, 3.0, 3.0]))
    hot = sga.sga_round(v, 0.5, g)
    assert torch.all((hot >= torch.floor(v)) & (hot <= torch.floor(v) + 1))
    hot.sum().backward()
    assert v.grad is not None and torch.isfinite(v.grad).all()


def test_sga_round_is_seeded():
    v = torch.linspace(-3, 3, 101)
    a = sga.sga_round(v, 0.3, torch.Generator().manual_seed(7))
    b = sga.sga_round(v, 0.3, torch.Generator().manual_seed(7))
    c = sga.sga_round(v, 0.3, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def _latents(codec, crop):
    model = codec.loaded.model
    x = mirror_pad(crop[None].float() / 255)
    with torch.no_grad():
        y = model.g_a(x)
        return model, x, y, model.h_a(y)


def test_sga_lowers_rd_cost(codec, crop):
    model, x, y, z = _latents(codec, crop)
    size = tuple(crop.shape[-2:])
    with torch.no_grad():
        before = sga.rd_cost(model, x, *sga.hard_round(model, y, z), codec.lmbda, size)[0].item()
    y2, z2 = sga.refine(model, x, y, z, codec.lmbda, size, steps=150, seed=0)
    with torch.no_grad():
        after = sga.rd_cost(model, x, *sga.hard_round(model, y2, z2), codec.lmbda, size)[0].item()
    assert after < 0.99 * before  # untrained tiny model: distortion-dominated, so a small but sure gain
    assert all(not p.requires_grad or p.grad is None for p in model.parameters())  # weights untouched


def test_sga_file_decodes_to_optimized_latents(codec, crop):
    model, x, y, z = _latents(codec, crop)
    size = tuple(crop.shape[-2:])
    y2, z2 = sga.refine(model, x, y, z, codec.lmbda, size, steps=40, seed=3)
    data = codec.pack_latents(y2, z2, size)
    with torch.no_grad():
        y_hat, _ = sga.hard_round(model, y2, z2)
        expected = model.g_s(y_hat).clamp(0, 1)[0, :, : size[0], : size[1]].mul(255).round().to(torch.uint8)
    assert torch.equal(codec.decompress_tensor(data), expected)


def test_compress_with_sga_is_repeatable_and_decodable(codec, crop):
    a = codec.compress(crop, sga_steps=20, seed=1)
    b = codec.compress(crop, sga_steps=20, seed=1)
    assert a == b
    assert codec.decompress_tensor(a).shape == crop.shape
    assert a != codec.compress(crop)


def test_sga_time_budget_stops(codec, crop):
    model, x, y, z = _latents(codec, crop)
    import time

    start = time.monotonic()
    sga.refine(model, x, y, z, codec.lmbda, tuple(crop.shape[-2:]), seconds=1.0)
    assert time.monotonic() - start < 5.0


def _file_cost(codec, x, data):
    """bpp + λ·MSE (0–255) of a file of image x (3, H, W) uint8."""
    mse = torch.mean((codec.decompress_tensor(data).double() - x.double()) ** 2).item()
    return bpp(len(data), x.shape[1] * x.shape[2]) + codec.lmbda * mse


def test_batch_of_equal_sizes_matches_per_image_results(codec, crop):
    """A batch is optimized image by image (its loss is a sum of per-image costs): each image's file costs what
    it costs when refined alone, up to the Gumbel noise, which differs between the two runs."""
    other = crop.flip(2)
    batch = codec.compress_batch([crop, other], sga_steps=100)
    assert len(batch) == 2
    assert codec.decompress_tensor(batch[1]).shape == other.shape
    for x, data in zip([crop, other], batch):
        batched, alone = _file_cost(codec, x, data), _file_cost(codec, x, codec.compress(x, sga_steps=100))
        gain = _file_cost(codec, x, codec.compress(x)) - alone
        assert gain > 0 and abs(batched - alone) < 0.25 * gain  # the batch gains what SGA alone gains


def test_inference_gap_positive(codec, crop):
    row = inference_gap(codec, crop, steps=150)
    assert row["gap"] == pytest.approx(row["amortized"]["cost"] - row["sga"]["cost"])
    assert row["gap"] > 0


@pytest.mark.parametrize("effort, steps", [(0, 0), (1, 100), (2, 300), (3, 1000), (4, 3000)])
def test_effort_levels_are_sga_iterations(effort, steps):
    assert sga.effort_steps(effort) == steps


@pytest.mark.parametrize("bad", [-1, 5, 1.5, True, "2", None])
def test_an_effort_outside_the_levels_is_refused(codec, crop, bad):
    with pytest.raises(ValueError, match="effort must be an integer in 0..4"):
        codec.compress(crop, bad)


def test_effort_0_is_the_amortized_encoder_and_effort_1_runs_100_sga_iterations(codec, crop):
    assert codec.compress(crop, 0) == codec.compress(crop)
    assert codec.compress(crop, 1, seed=2) == codec.compress(crop, sga_steps=100, seed=2)


def test_refine_never_returns_latents_that_cost_more_than_its_start(codec, crop):
    """One iteration at the highest temperature makes the latents worse; refine then keeps the amortized ones."""
    model, x, y, z = _latents(codec, crop)
    size = tuple(crop.shape[-2:])
    with torch.no_grad():
        start = sga.rd_cost(model, x, *sga.hard_round(model, y, z), codec.lmbda, size)[0].item()
    for seed in range(3):
        y2, z2 = sga.refine(model, x, y, z, codec.lmbda, size, steps=1, seed=seed)
        with torch.no_grad():
            assert sga.rd_cost(model, x, *sga.hard_round(model, y2, z2), codec.lmbda, size)[0].item() <= start


def test_tiled_sga_refines_every_tile_and_keeps_an_untiled_image_as_refine_does(codec, photos24, monkeypatch):
    """With 1-cell tiles (64 pixels) and 1 cell of margin, a 128×192 image is refined as 6 tiles: every core
    moves, the file decodes and costs less than the amortized one; an image of one tile is refined whole."""
    x, _ = read_image(photos24 / PHOTO)
    x = x[:, 200:328, 300:492]
    model, xf, y, z = _latents(codec, x)
    size = tuple(x.shape[-2:])
    monkeypatch.setattr(sga, "SGA_TILE", 1)
    monkeypatch.setattr(sga, "SGA_MARGIN", 1)
    y2, z2 = sga.refine_tiled(model, xf, y, z, codec.lmbda, size, steps=60, seed=0)
    assert y2.shape == y.shape and z2.shape == z.shape
    assert all(not torch.equal(y2[..., 4 * r : 4 * r + 4, 4 * c : 4 * c + 4], y[..., 4 * r : 4 * r + 4, 4 * c : 4 * c + 4])
               for r in range(2) for c in range(3))
    data = codec.pack_latents(y2, z2, size)
    assert _file_cost(codec, x, data) < _file_cost(codec, x, codec.compress(x))
    monkeypatch.setattr(sga, "SGA_TILE", 16)
    whole = sga.refine_tiled(model, xf, y, z, codec.lmbda, size, steps=20, seed=5)
    alone = sga.refine(model, xf, y, z, codec.lmbda, size, steps=20, seed=5)
    assert all(torch.equal(a, b) for a, b in zip(whole, alone))
