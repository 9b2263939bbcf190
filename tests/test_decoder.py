"""The torch-free decoder (decoder.py): no PyTorch import, the encoder's ŷ, pixels within ±1 of the torch g_s,
and the decoder that Codec and eval run."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import PHOTO, TINY

import shallowcodec
from shallowcodec import container, decoder, evaluation, zoo
from shallowcodec.codec import mirror_pad
from shallowcodec.model_files import embedded_models


def encoder_y_hat_and_pixels(codec, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's ŷ_g (eval-mode forward, float64) of a crop and the torch g_s's pixels (H, W, 3) of it."""
    padded = mirror_pad(x[None]).float() / 255
    model = codec.loaded.model.eval()
    with torch.no_grad():
        y_hat = model(padded, quality=codec.quality if model.variable_rate else None)["y_hat"]
        x_hat = model.reconstruct(y_hat, codec.quality if model.variable_rate else None)
    pixels = x_hat.clamp(0, 1).mul(255).round().to(torch.uint8)[0, :, : x.shape[1], : x.shape[2]]
    return y_hat.numpy(), pixels.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("architecture", sorted(embedded_models()))
def test_embedded_models_decode_to_the_encoders_latents_and_the_torch_pixels(photo_crop, architecture):
    x = photo_crop(200, 328, 100, 200)
    lean = decoder.embedded_decoder(architecture)
    for quality in (0, 2.5, 6):
        codec = shallowcodec.load(architecture, quality)
        stream = container.unpack(codec.compress(x))
        y_hat, pixels = encoder_y_hat_and_pixels(codec, x)
        assert np.array_equal(lean.decode_latents(stream), y_hat)
        diff = np.abs(lean.decode(stream).astype(int) - pixels.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())


def test_codec_and_eval_decode_with_the_numpy_decoder(photos24, photo_crop):
    """Codec.decompress_tensor is shallowcodec.decompress, and eval's PSNR and MS-SSIM are those of its pixels."""
    codec = shallowcodec.load("two-layer", 2)
    files = []
    row = evaluation.evaluate_image(codec, photos24 / PHOTO, lambda c, x: files.append(c.compress(x)) or files[-1])
    pixels = np.array(shallowcodec.decompress(files[0]))
    x = photo_crop(512, 768)
    assert np.array_equal(codec.decompress_tensor(files[0]).permute(1, 2, 0).numpy(), pixels)
    assert row["psnr"] == evaluation.psnr(x, torch.from_numpy(pixels).permute(2, 0, 1)) > 25
    assert row["ms_ssim"] == evaluation.msssim(x, torch.from_numpy(pixels).permute(2, 0, 1).contiguous())
    assert row["bytes"] == len(files[0]) and 0 < row["decode_s"] < 10


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


@pytest.mark.parametrize("architecture, config", [("jpeg-like", {}), ("two-layer", {}), ("two-layer-nores", {}),
                                                  ("mbt2018-mean", {}), ("two-layer", {"hyper_synthesis": "cheap"})])
def test_every_architecture_decodes_like_its_torch_model(tmp_path, photo_crop, architecture, config):
    """Tiny fixed-λ weights of each architecture (and the cheap h_s): the numpy g_s and h_s are ports of the torch ones."""
    torch.manual_seed(0)
    model = zoo.build(architecture, **TINY, **config).eval()
    path = tmp_path / "w.safetensors"
    zoo.save_weights(path, model, architecture, {**TINY, **config}, 3, 0.01)
    codec = shallowcodec.Codec(zoo.load_weights(path))
    x = photo_crop(70, 130)
    data = codec.compress(x)
    lean = decoder.Decoder(path)
    stream = container.unpack(data)
    y_hat, pixels = encoder_y_hat_and_pixels(codec, x)
    assert np.array_equal(lean.decode_latents(stream), y_hat)
    assert np.abs(lean.decode(stream).astype(int) - pixels.astype(int)).max() <= 1
    assert np.array_equal(codec.decoder.decode(stream), lean.decode(stream))  # in memory, as from the file
    y = torch.randn(1, TINY["M"], 3, 5)
    with torch.no_grad():
        expected = codec.loaded.model.g_s(y)[0].numpy()
    np.testing.assert_allclose(lean.g_s(y[0].numpy()), 255 * expected.transpose(1, 2, 0), rtol=1e-4, atol=3e-3)


@pytest.mark.parametrize("architecture", sorted(embedded_models()))
def test_tiled_synthesis_is_bit_identical_to_untiled(photo_crop, monkeypatch, architecture):
    lean = decoder.embedded_decoder(architecture)
    stream = container.unpack(shallowcodec.load(architecture, 4).compress(photo_crop(130, 200)))
    whole = lean.decode(stream)
    for tile in (1, 3):
        monkeypatch.setattr(decoder, "SYNTHESIS_TILE", tile)
        assert np.array_equal(lean.decode(stream), whole)


def test_unusable_weights_are_a_one_line_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"not safetensors")
    with pytest.raises(shallowcodec.ModelNotFoundError, match="cannot load weights"):
        decoder.Decoder(path)
