"""The torch-free decoder (decoder.py, layers.py): no PyTorch import, the same ŷ as the torch model, pixels within ±1."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from compressai.layers import GDN, GDN1
from conftest import TINY

import shallowcodec
from shallowcodec import container, decoder, zoo
from shallowcodec.layers import ConvTranspose2d, InverseGDN
from shallowcodec.model_files import embedded_models
from shallowcodec.transforms import conv_transpose_exact


def torch_pixels(codec, data: bytes) -> np.ndarray:
    return codec.decompress_tensor(data).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("architecture", sorted(embedded_models()))
def test_embedded_models_decode_to_the_torch_latents_and_pixels(photo_crop, architecture):
    x = photo_crop(200, 328, 100, 200)
    lean = decoder.embedded_decoder(architecture)
    for quality in (0, 2.5, 6):
        codec = shallowcodec.load(architecture, quality)
        data = codec.compress(x)
        stream = container.unpack(data)
        assert np.array_equal(lean.decode_latents(stream), codec.decode_latents(stream).numpy())
        diff = np.abs(lean.decode(stream).astype(int) - torch_pixels(codec, data).astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())


def test_decompress_imports_neither_torch_nor_compressai(tmp_path, photo_crop):
    path = tmp_path / "x.sdc"
    path.write_bytes(shallowcodec.load("jpeg-like", 1).compress(photo_crop(40, 70)))
    code = ("import sys; from shallowcodec import cli; import shallowcodec; "
            f"image = shallowcodec.decompress(open({str(path)!r}, 'rb').read()); "
            f"assert cli.main(['decompress', {str(path)!r}, '-o', {str(tmp_path / 'x.png')!r}]) == 0; "
            f"assert cli.main(['info', {str(path)!r}]) == 0; "
            "print(image.size, 'torch' in sys.modules, 'compressai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "(70, 40) False False"


@pytest.mark.parametrize("c_in, c_out, k, s, h, w", [(8, 24, 13, 8, 3, 5), (24, 3, 5, 2, 7, 4), (16, 3, 18, 16, 2, 3),
                                                     (16, 16, 5, 2, 4, 6), (8, 32, 3, 1, 5, 5), (8, 16, 4, 4, 2, 3),
                                                     (8, 32, 6, 4, 3, 2), (4, 8, 16, 8, 2, 2)])
@pytest.mark.parametrize("mode", ["chosen", "phases", "padded phases", "banded phases", "scatter"])
def test_numpy_transposed_convolution_matches_pytorch(c_in, c_out, k, s, h, w, mode, monkeypatch):
    if mode != "chosen":  # every way of computing it, on every shape
        monkeypatch.setattr(ConvTranspose2d, "SCATTER_BELOW", np.inf if mode == "scatter" else 0)
        monkeypatch.setattr(ConvTranspose2d, "PHASES_MAX_INPUTS", 0)
        monkeypatch.setattr(ConvTranspose2d, "PHASES_MIN_ROWS", np.inf if mode == "padded phases" else 0)
        monkeypatch.setattr(ConvTranspose2d, "PHASES_BAND", 1 if mode == "banded phases" else 2**20)  # 1: a row a band
    torch.manual_seed(0)
    layer = conv_transpose_exact(c_in, c_out, k, s)
    x = torch.randn(1, c_in, h, w)
    with torch.no_grad():
        expected = layer(x)[0].numpy()
    for dtype in (np.float32, np.float64):
        ours = ConvTranspose2d(layer.weight.detach().numpy().astype(dtype), layer.bias.detach().numpy(), s)
        if mode == "chosen":  # scatter only where the patches are smaller than the shifted inputs
            assert ours.phases == ((c_in, c_out) != (24, 3))
        out = ours(x[0].numpy().astype(dtype))
        assert out.shape == (c_out, s * h, s * w) and out.dtype == dtype
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
        last = ours(x[0].numpy().astype(dtype), channels_last=True)
        assert last.shape == (s * h, s * w, c_out) and last.dtype == dtype
        np.testing.assert_allclose(last, expected.transpose(1, 2, 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scatter", [False, True])
def test_folding_constant_channels_is_exact_in_fixed_point(scatter, monkeypatch):
    """The exact h_s folds ẑ's constant channels into one all-ones channel: the same integer sums."""
    monkeypatch.setattr(ConvTranspose2d, "SCATTER_BELOW", np.inf if scatter else 0)
    monkeypatch.setattr(ConvTranspose2d, "PHASES_MAX_INPUTS", 0)
    monkeypatch.setattr(ConvTranspose2d, "PHASES_BAND", 2**20 if scatter else 1)  # phases in bands of one row
    rng = np.random.default_rng(3)
    weight = rng.integers(-2**14, 2**14, (12, 16, 6, 6)) * 2.0**-20
    x = rng.integers(-2**12, 2**12, (12, 5, 7)) * 2.0**-10
    x[[0, 3, 4, 9]] = rng.integers(-2**12, 2**12, (4, 1, 1)) * 2.0**-10  # constant channels
    x[5] = 0
    conv = ConvTranspose2d(weight, rng.integers(-99, 99, 16) * 2.0**-10, 4)
    folded, plain = conv(x, fold_constant=True), conv(x)
    assert np.array_equal(folded, plain) and np.abs(plain).max() > 0.1
    assert np.array_equal(conv(np.zeros_like(x), fold_constant=True), conv(np.zeros_like(x)))  # all constant


@pytest.mark.parametrize("module, l1", [(GDN, False), (GDN1, True)])
def test_numpy_inverse_gdn_matches_compressai(module, l1):
    torch.manual_seed(1)
    gdn = module(6, inverse=True)
    with torch.no_grad():
        gdn.beta.uniform_(0.5, 1.5)
        gdn.gamma.uniform_(0, 0.3)
        x = torch.randn(1, 6, 5, 7)
        expected = gdn(x)[0].numpy()
    ours = InverseGDN(gdn.beta.detach().numpy(), gdn.gamma.detach().numpy(), l1)
    np.testing.assert_allclose(ours(x[0].numpy()), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("architecture, config", [("jpeg-like", {}), ("two-layer", {}), ("two-layer-nores", {}),
                                                  ("mbt2018-mean", {}), ("two-layer", {"hyper_synthesis": "cheap"})])
def test_every_architecture_decodes_like_its_torch_model(tmp_path, photo_crop, architecture, config):
    """Tiny fixed-λ weights of each architecture (and the cheap h_s): the numpy g_s and h_s are ports of the torch ones."""
    torch.manual_seed(0)
    model = zoo.build(architecture, **TINY, **config).eval()
    path = tmp_path / "w.safetensors"
    zoo.save_weights(path, model, architecture, {**TINY, **config}, 3, 0.01)
    codec = shallowcodec.Codec(zoo.load_weights(path))
    data = codec.compress(photo_crop(70, 130))
    lean = decoder.Decoder(path)
    stream = container.unpack(data)
    assert np.array_equal(lean.decode_latents(stream), codec.decode_latents(stream).numpy())
    y = torch.randn(1, TINY["M"], 3, 5)
    with torch.no_grad():
        expected = codec.loaded.model.g_s(y)[0].numpy()
    np.testing.assert_allclose(lean.g_s(y[0].numpy()), 255 * expected.transpose(1, 2, 0), rtol=1e-4, atol=3e-3)


def test_tiled_synthesis_is_bit_identical_to_untiled(photo_crop, monkeypatch):
    lean = decoder.embedded_decoder("two-layer")
    stream = container.unpack(shallowcodec.load("two-layer", 4).compress(photo_crop(130, 200)))
    whole = lean.decode(stream)
    monkeypatch.setattr(decoder, "SYNTHESIS_TILE", 3)
    assert np.array_equal(lean.decode(stream), whole)


def test_unusable_weights_are_a_one_line_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"not safetensors")
    with pytest.raises(shallowcodec.ModelNotFoundError, match="cannot load weights"):
        decoder.Decoder(path)
