"""Variable rate: gain units, quality interpolation, one model for qualities 0–6."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

import shallowcodec
from shallowcodec import codec, container, images, model_files, sga
from shallowcodec.codec import mirror_pad
from shallowcodec.container import ContainerError
from shallowcodec.decoder import Decoder
from shallowcodec.quality import LMBDAS, LmbdaScale, lmbda_of, snap_quality
from shallowcodec.variable_rate import GainUnits, retable


@pytest.fixture
def vr_codec(codec_factory):
    """A tiny untrained variable-rate two-layer codec at quality 3."""
    return codec_factory("vr.safetensors", variable_rate=True)


def test_lmbda_of_matches_the_papers_seven_values():
    assert [lmbda_of(q) for q in range(7)] == list(LMBDAS)
    assert lmbda_of(2.5) == pytest.approx(math.sqrt(LMBDAS[2] * LMBDAS[3]))


@pytest.mark.parametrize("q, snapped", [(0, 0.0), (2.5, 2.5), (1 / 3, 85 / 256), (6, 6.0)])
def test_snap_quality_to_the_containers_grid(q, snapped):
    assert snap_quality(q) == snapped


def test_snap_quality_accepts_numpy_numbers():
    """Reported: load(quality=np.int64(3)) was refused with "got 3"."""
    import numpy as np

    assert snap_quality(np.int64(3)) == 3.0 and snap_quality(np.float32(2.5)) == 2.5


@pytest.mark.parametrize("bad", [-0.01, 6.01, float("nan"), "3", None, True])
def test_snap_quality_refuses_values_outside_0_to_6(bad):
    with pytest.raises(ValueError, match="quality must be a number in 0..6"):
        snap_quality(bad)


def test_gain_units_start_at_step_proportional_to_one_over_sqrt_lambda():
    gains = GainUnits(M=4)
    g = gains(torch.arange(7.0))
    expected = torch.tensor([math.sqrt(lm / LMBDAS[3]) for lm in LMBDAS])
    assert torch.allclose(g.y[:, 0, 0, 0], expected) and torch.allclose(g.y_inv[:, 0, 0, 0], 1 / expected)
    assert torch.equal(g.z, torch.ones_like(g.z)) and torch.equal(g.z_inv, torch.ones_like(g.z_inv))
    assert g.y.shape == (7, 4, 1, 1)


def test_gains_interpolate_exponentially_between_integer_qualities():
    gains = GainUnits(M=3)
    with torch.no_grad():
        gains.log_y_gain.copy_(torch.randn(7, 3))
    g2, g3, g25 = (gains(torch.tensor([q])).y for q in (2.0, 3.0, 2.5))
    assert torch.allclose(g25, torch.sqrt(g2 * g3))  # Cui et al. Eq. 9 at l = ½
    assert torch.equal(g2[0, :, 0, 0], gains.log_y_gain[2].exp())  # integers hit the stored vectors


def test_every_quality_decodes_bit_exactly_to_the_models_reconstruction(codec_factory, photo_crop):
    x = photo_crop(64, 96, 30, 40)
    for q in (0, 2.5, 6):
        c = codec_factory("vr.safetensors", variable_rate=True, quality=q)
        data = c.compress(x)
        assert container.unpack(data).header.quality == q
        with torch.no_grad():
            x_hat = c.loaded.model.eval()(mirror_pad(x[None].float() / 255), quality=q)["x_hat"]
        expected = x_hat.clamp(0, 1)[0, :, :64, :96].mul(255).round().to(torch.uint8)
        assert torch.equal(c.decompress_tensor(data), expected)


def test_higher_quality_spends_more_bits(codec_factory, photo_crop):
    x = photo_crop(128, 128, 100, 200)
    sizes = [len(codec_factory("vr.safetensors", variable_rate=True, quality=q).compress(x)) for q in (0, 3, 6)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_a_file_is_decoded_only_at_its_own_quality(codec_factory, photo_crop):
    data = codec_factory("vr.safetensors", variable_rate=True, quality=2.5).compress(photo_crop(32, 32))
    with pytest.raises(ContainerError, match="quality 2.5; this codec is two-layer q3"):
        codec_factory("vr.safetensors", variable_rate=True, quality=3).decompress_tensor(data)


def test_fixed_lambda_weights_serve_only_their_quality(tiny_codec):
    assert (tiny_codec.quality, tiny_codec.lmbda) == (3, 0.01)
    with pytest.raises(ValueError, match="fixed-λ quality 3, not quality 4"):
        codec.Codec(tiny_codec.loaded, 4)


def test_variable_rate_model_needs_a_quality(vr_codec):
    with pytest.raises(ValueError, match="needs a quality"):
        vr_codec.loaded.model(torch.zeros(1, 3, 64, 64))


def test_sga_refines_a_variable_rate_model(vr_codec, photo_crop):
    x = photo_crop(64, 64, 200, 300)
    data = vr_codec.compress(x, sga_steps=3)
    assert vr_codec.decompress_tensor(data).shape == (3, 64, 64)
    padded = mirror_pad(x[None].float() / 255)
    model = vr_codec.loaded.model
    with torch.no_grad():
        y, z = model.analysis(padded, vr_codec.quality)
    y_hat, _ = sga.hard_round(model, y, z, vr_codec.quality)
    assert torch.isfinite(y_hat).all()


def test_embedded_quality_0_and_6_rates_are_at_least_6x_apart(photo_crop):
    """Issue 9's span target, on a real photo (eval03_sail, 768×512; photos24's least: 7.45×, eval18_drop)."""
    x = photo_crop(512, 768)
    bpp = {q: 8 * len(shallowcodec.load("two-layer", q).compress(x)) / (512 * 768) for q in (0, 6)}
    assert bpp[6] >= 6 * bpp[0], bpp


def test_embedded_files_decode_at_a_fractional_quality(photo_crop):
    x = photo_crop(64, 64)
    data = shallowcodec.load("jpeg-like", 4.5).compress(x)
    assert container.unpack(data).header.quality == 4.5
    assert shallowcodec.decompress(data).size == (64, 64)


def test_weights_file_of_a_variable_rate_model(codec_factory, tmp_path):
    c = codec_factory("vr.safetensors", variable_rate=True)
    assert c.loaded.variable_rate and (c.loaded.quality, c.loaded.lmbda) == (None, None)
    card = model_files.model_card(tmp_path / "vr.safetensors")
    assert card["variable_rate"] and card["qualities"] == list(range(7)) and card["lmbdas"] == list(LMBDAS)
    assert "gain.log_y_gain" in dict(c.loaded.model.named_parameters())


# --- a model's own λ scale (config lmbda_scale) ------------------------------------------------------

WIDE = [0.0005, 2.5]  # λ 0.0005 (q0) … 0.122 (q6): 244× in λ, where the paper's scale has 64×


def test_the_default_scale_is_the_papers():
    assert LmbdaScale().lmbdas() == list(LMBDAS) == LmbdaScale.of_config({"N": 8}).lmbdas()
    wide = LmbdaScale.of_config({"lmbda_scale": WIDE})
    assert wide.lmbdas()[:2] == [0.0005, 0.00125] and wide(6) == pytest.approx(0.1220703125)
    assert wide.quality_of(0.00125) == pytest.approx(1.0) and wide.quality_of(0.0002) == pytest.approx(-1.0)


@pytest.mark.parametrize("bad", [[0.0, 2.0], [0.001, 1.0], [0.001], "wide", [0.001, True], [1e300, 1e100],
                                 [1e-46, 1e7], [9e-6, 2.0], [0.001, 10**400], [float("nan"), 2.0]])
def test_a_malformed_scale_is_refused(bad):
    with pytest.raises(ValueError, match="lmbda_scale must be"):
        LmbdaScale.of_config({"lmbda_scale": bad})


def test_the_scale_bounds_are_inclusive():
    assert LmbdaScale(1e-5, 2.0).lmbdas()[0] == 1e-5 and LmbdaScale(0.15625, 2.0)(6) == 10.0


def test_retable_to_the_same_scale_changes_nothing_and_shifts_by_whole_qualities():
    log_gain = torch.randn(7, 5)
    assert torch.allclose(retable(log_gain, LmbdaScale(), LmbdaScale()), log_gain)
    shifted = retable(log_gain, LmbdaScale(), LmbdaScale(0.0025, 2.0))  # new q = old q + 1
    assert torch.allclose(shifted[:6], log_gain[1:])
    assert torch.allclose(shifted[6], 2 * log_gain[6] - log_gain[5])  # the end segment extrapolated


def test_init_from_another_scale_moves_the_gains(codec_factory, tmp_path):
    from shallowcodec.checkpoint import copy_from, copy_shared

    source = codec_factory("paper.safetensors", variable_rate=True).loaded
    model = shallowcodec.zoo.build("two-layer", N=8, M=16, variable_rate=True, lmbda_scale=WIDE)
    copy_from(model, source, "two-layer")
    expected = retable(source.model.gain.log_y_gain.detach(), LmbdaScale(), LmbdaScale(*WIDE))
    assert torch.allclose(model.gain.log_y_gain, expected)
    assert torch.equal(model.g_s.out.weight, source.model.g_s.out.weight)
    jpeg_like = shallowcodec.zoo.build("jpeg-like", N=8, M=16, variable_rate=True, lmbda_scale=WIDE)
    copy_shared(jpeg_like, source)  # --init-shared moves them as well
    assert torch.allclose(jpeg_like.gain.log_y_gain, expected)


def test_a_wide_scale_model_codes_its_own_lambda_and_the_numpy_decoder_agrees(codec_factory, photo_crop, tmp_path):
    x = photo_crop(64, 64, 30, 40)
    c = codec_factory("wide.safetensors", variable_rate=True, quality=0.5, lmbda_scale=WIDE)
    data = c.compress(x)
    header = container.unpack(data).header
    assert c.lmbda == 0.0005 * 2.5**0.5 and header.lmbda == pytest.approx(c.lmbda, rel=1e-7)
    decoder, stream = Decoder(tmp_path / "wide.safetensors"), container.unpack(data)
    assert torch.equal(torch.from_numpy(decoder.decode(stream)).permute(2, 0, 1), c.decompress_tensor(data))
    assert model_files.model_card(tmp_path / "wide.safetensors")["lmbdas"] == LmbdaScale(*WIDE).lmbdas()
    paper = codec_factory("paper.safetensors", variable_rate=True, quality=0.5)  # λ 0.00177 at q0.5
    with pytest.raises(ContainerError, match="is not λ of two-layer q0.5"):
        decoder.check(dataclasses.replace(header, lmbda=float(np.float32(paper.lmbda))))


def test_training_samples_the_models_scale():
    from shallowcodec import train

    quality, lmbda = train.sample_qualities(64, torch.Generator().manual_seed(0), LmbdaScale(*WIDE))
    assert torch.allclose(lmbda, 0.0005 * 2.5**quality)
    weights = train.rate_weights(torch.tensor(LmbdaScale(*WIDE).lmbdas()), 0.5, LmbdaScale(*WIDE))
    assert weights.mean() == pytest.approx(1.0) and weights[0] / weights[6] == pytest.approx(2.5**3)


# --- the command line at several qualities --------------------------------------------------------


@pytest.fixture
def crops_folder(photo_crop, tmp_path):
    folder = tmp_path / "crops"
    folder.mkdir()
    for i, (top, left) in enumerate([(0, 0), (200, 300)]):
        images.tensor_to_image(photo_crop(96, 128, top, left)).save(folder / f"c{i}.png")
    return folder


def test_eval_weights_file_at_several_qualities(codec_factory, crops_folder, tmp_path, capsys):
    from shallowcodec import cli

    codec_factory("vr.safetensors", variable_rate=True)
    out = tmp_path / "r.json"
    argv = ["eval", str(crops_folder), "--weights", str(tmp_path / "vr.safetensors"), "--qualities", "0", "2.5",
            "--json", str(out)]
    assert cli.main(argv) == 0
    result = json.loads(out.read_text())
    assert [p["quality"] for p in result["points"]] == [0, 2.5]
    assert [p["lmbda"] for p in result["points"]] == [lmbda_of(0), lmbda_of(2.5)]
    assert result["label"] == "two-layer (vr.safetensors)"
    assert result["points"][0]["mean"]["bpp"] < result["points"][1]["mean"]["bpp"]
    capsys.readouterr()
    codec_factory("fixed.safetensors")
    fixed = tmp_path / "fixed.safetensors"
    assert cli.main(["eval", str(crops_folder), "--weights", str(fixed), "--qualities", "0", "3"]) == 2  # bad usage
    assert f"{fixed} is a fixed-λ model of quality 3: give no --quality or that one, not 0 3" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["7", "-1", "nan", "high"])
def test_cli_quality_outside_0_to_6_is_a_usage_error(crops_folder, tmp_path, capsys, bad):
    from shallowcodec import cli

    with pytest.raises(SystemExit) as info:
        cli.main(["compress", str(crops_folder / "c0.png"), "-o", str(tmp_path / "x.sdc"), "--quality", bad])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "must be a number in 0..6" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.sdc").exists()


def test_cli_compresses_at_a_fractional_quality(crops_folder, tmp_path, capsys):
    from shallowcodec import cli

    out = tmp_path / "x.sdc"
    assert cli.main(["compress", str(crops_folder / "c0.png"), "-o", str(out), "--quality", "2.5"]) == 0
    assert "two-layer q2.5, 128x96" in capsys.readouterr().out
    assert cli.main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["quality"] == 2.5
