"""The entropy model (shallowcodec.hyperprior): quantization surrogates and the latent coding round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shallowcodec import zoo
from shallowcodec.container import Bitstream, Header
from shallowcodec.decoder import Decoder
from shallowcodec.hyperprior import LatentStrings


@pytest.fixture(scope="module")
def model():
    """A tiny two-layer model (N=8, M=16, seed 0) with its CDF tables built."""
    torch.manual_seed(0)
    model = zoo.build("two-layer", N=8, M=16)
    model.update(force=True)
    return model


@pytest.fixture(scope="module")
def x():
    return torch.rand(1, 3, 128, 192, generator=torch.Generator().manual_seed(1))


def test_mixed_quantizer_feeds_g_s_values_rounded_around_mu(model, x):
    """Train mode, "mixed": ŷ = round(y − μ) + μ (straight-through), with μ from the rounded ẑ; "noise" is not rounded."""
    model.train()
    torch.manual_seed(2)
    out = model(x, quantizer="mixed")
    with torch.no_grad():
        y, z = model.analysis(x)
        medians = model.z_medians()
        mu, _ = model.hyper_synthesis(torch.round(z - medians) + medians)
    offsets = out["y_hat"].detach() - mu
    assert torch.allclose(offsets, offsets.round(), atol=1e-4)
    assert torch.allclose(out["y_hat"].detach(), torch.round(y - mu) + mu, atol=1e-4)
    noisy = model(x, quantizer="noise")["y_hat"].detach() - mu
    assert not torch.allclose(noisy, noisy.round(), atol=1e-2)
    out["x_hat"].sum().backward()  # straight-through: g_a gets gradients through ŷ
    assert next(model.g_a.parameters()).grad is not None
    model.zero_grad(set_to_none=True)


def test_unknown_quantizer_raises(model, x):
    with pytest.raises(ValueError, match="unknown quantizer"):
        model(x, quantizer="round")


def test_latent_strings_decode_to_the_eval_mode_y_hat(model, x):
    """compress_latents → the numpy decoder of the model's weights in memory gives the ŷ that forward computes in
    eval mode, and pixels within ±1 of forward's x̂."""
    model.eval()
    with torch.no_grad():
        out = model(x)
        strings = model.compress_latents(*model.analysis(x))
    assert isinstance(strings, LatentStrings) and strings.z_shape == (2, 3)
    lean = Decoder(zoo.model_weights(zoo.LoadedModel(model, "two-layer", 3, 0.01, 7)))
    header = Header("two-layer", 3, float(np.float32(0.01)), 7, *x.shape[-2:])
    stream = Bitstream(header, strings.z_string, strings.y_string)
    assert torch.equal(torch.from_numpy(lean.decode_latents(stream)), out["y_hat"])
    pixels = out["x_hat"].clamp(0, 1).mul(255).round()[0].permute(1, 2, 0).numpy()
    assert np.abs(lean.decode(stream) - pixels).max() <= 1


def test_bits_of_z_and_y_are_per_image_and_match_forward(model, x):
    """z_bits and y_bits on the rounded latents equal the bits of forward's eval-mode likelihoods."""
    model.eval()
    batch = torch.cat([x, x.flip(3)])
    with torch.no_grad():
        out = model(batch)
        _, z = model.analysis(batch)
        z_hat = torch.round(z - model.z_medians()) + model.z_medians()
        mu, sigma = model.hyper_synthesis(z_hat)
        z_bits, y_bits = model.z_bits(z_hat), model.y_bits(out["y_hat"].float(), mu, sigma)
    assert z_bits.shape == y_bits.shape == (2,)
    expected = {k: -torch.log2(lk).flatten(1).sum(1) for k, lk in out["likelihoods"].items()}
    assert torch.allclose(z_bits, expected["z"], rtol=1e-4) and torch.allclose(y_bits, expected["y"], rtol=1e-4)
