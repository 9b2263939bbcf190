"""The cheap hyper-synthesis (one ConvT, stride 4) and its distillation trainer (shallowcodec.distill)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from shallowcodec import distill, zoo
from shallowcodec.checkpoint import copy_from
from shallowcodec.codec import Codec
from shallowcodec.complexity import flops_config, flops_per_pixel
from shallowcodec.config import TrainConfig
from shallowcodec.entropy_parameters import hyper_synthesis_exact
from shallowcodec.images import tensor_to_image
from shallowcodec.model_files import embedded_models
from shallowcodec.train import builder_config
from shallowcodec.transforms import HyperSynthesis


@pytest.mark.parametrize("kernel, expected", [(4, 1602.5), (6, 3602.5)])
def test_cheap_h_s_flops_at_paper_size(kernel, expected):
    # ConvT(320→640, k, s4) on z (1/4096 of the pixels): 2·320·640·k²/4096 + one bias add per output (640/256)
    config = flops_config("two-layer", paper_size=True, overrides={"hyper_synthesis": "cheap", "hyper_kernel": kernel})
    flops = flops_per_pixel(zoo.build("two-layer", **config))
    assert flops["h_s"] == expected
    assert flops["g_s"] == pytest.approx(10680, abs=1)  # only h_s changes
    assert flops_per_pixel(zoo.build("two-layer"))["h_s"] == pytest.approx(30354.6875)


def test_flops_config_refuses_unknown_overrides():
    with pytest.raises(ValueError, match="hyper_kernel"):
        flops_config("two-layer", paper_size=True, overrides={"hyper_kernl": 4})


def test_cheap_h_s_is_one_layer_and_its_exact_path_matches_training():
    torch.manual_seed(0)
    h_s = HyperSynthesis(16, "cheap", 6)
    assert [n for n, _ in h_s.named_parameters()] == ["layers.0.weight", "layers.0.bias"]
    assert h_s.layers[0].weight.shape == (16, 32, 6, 6)
    z_hat = torch.randn(1, 16, 3, 5) * 10
    with torch.no_grad():
        out = torch.cat(h_s(z_hat), dim=1).double().numpy()
    exact = np.concatenate(hyper_synthesis_exact(h_s.exact_layers(), z_hat.double().numpy()), axis=1)
    assert out.shape == exact.shape == (1, 32, 12, 20)
    assert np.array_equal(exact * 1024, np.round(exact * 1024))  # on the 2^-10 grid
    # the float32 training path computes the same fixed-point function, up to its float32 sums (one grid step)
    assert np.abs(out - exact).max() <= 1 / 1024


@pytest.mark.parametrize("kind, kernel", [("tiny", 4), ("cheap", 3)])
def test_bad_h_s_raises(kind, kernel):
    with pytest.raises(ValueError):
        HyperSynthesis(16, kind, kernel)


# --- distillation --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def job(tmp_path_factory, photo_crop):
    """The embedded two-layer weights (a trained g_a: y worth coding), 3 photo crops as the data folder, a job."""
    root = tmp_path_factory.mktemp("distill")
    (root / "photos").mkdir()
    for i, (top, left) in enumerate([(0, 0), (128, 256), (300, 500)]):
        tensor_to_image(photo_crop(128, 128, top, left)).save(root / "photos" / f"p{i}.png")
    (root / "source.safetensors").write_bytes(embedded_models()["two-layer"].read_bytes())
    return distill.DistillConfig(weights=root / "source.safetensors", out=root / "cheap.safetensors",
                                 data=root / "photos", steps=40, crops=12, crop=64, batch_size=6, lr=3e-3,
                                 cache=root / "cache", quiet=True)


def test_rate_goes_down_and_only_h_s_changes(job):
    source = zoo.load_weights(job.weights)
    model, config = distill.cheap_model(source, 4)
    assert json.loads(config.to_json()) == {**json.loads(source.metadata["config"]), "hyper_synthesis": "cheap",
                                            "hyper_kernel": 4}
    y, z = distill.latent_cache(model, job, source.weights_id)
    M = config.M
    assert y.shape == (12, M, 4, 4) and z.shape == (12, M, 1, 1) and y.dtype == np.float32
    distill.init_bias(model, y)
    batch = torch.from_numpy(y[:6].copy()), torch.from_numpy(z[:6].copy())
    quality = torch.tensor([0.0, 1, 2, 4, 5, 6])

    def rate() -> float:
        with torch.no_grad():
            return distill.y_rate(model, *batch, quality, torch.Generator().manual_seed(1)).item()

    before = rate()
    summary = distill.fit_h_s(model, y, z, job)
    assert summary["steps"] == 40
    assert rate() < 0.9 * before
    assert summary["bpp_y_last"] < summary["bpp_y_first"]
    frozen = {n: p for n, p in source.model.named_parameters() if not n.startswith("h_s.")}
    for name, param in model.named_parameters():
        assert param.requires_grad == name.startswith("h_s.")
        if name in frozen:
            assert torch.equal(param, frozen[name]), name


def test_distilled_file_loads_codes_and_starts_a_fine_tune(job, photo_crop):
    summary = distill.distill(job)
    assert summary["steps"] == 40 and summary["bpp_y_last"] < summary["bpp_y_first"]
    loaded = zoo.load_weights(job.out)
    assert json.loads(loaded.metadata["config"])["hyper_synthesis"] == "cheap"
    assert json.loads(loaded.metadata["steps"]) == 40 and json.loads(loaded.metadata["init"]) == "source.safetensors"
    assert isinstance(loaded.model.h_s.layers[0], torch.nn.ConvTranspose2d) and len(loaded.model.h_s.layers) == 1
    source = dict(zoo.load_weights(job.weights).model.named_parameters())
    for name, param in loaded.model.named_parameters():
        if not name.startswith("h_s."):
            assert torch.equal(param, source[name]), name  # fp16 both ways: bit for bit
    codec = Codec(loaded, 3)
    x = photo_crop(64, 128, 40, 300)
    decoded = codec.decompress_tensor(codec.compress(x))
    assert decoded.shape == x.shape and decoded.dtype == torch.uint8
    # `train --init` takes the cheap config from the file and copies every parameter
    cfg = TrainConfig(model="two-layer", data=job.data, steps=1, out=job.out.with_name("ft.safetensors"),
                      variable_rate=True, init=job.out)
    model = zoo.build_model(builder_config(cfg))
    copy_from(model, loaded, "two-layer")
    assert torch.equal(model.h_s.layers[0].weight, loaded.model.h_s.layers[0].weight)


def test_latent_cache_is_reused(job):
    source = zoo.load_weights(job.weights)
    distill.latent_cache(distill.cheap_model(source, 4)[0], job, source.weights_id)
    before = {p.name: p.stat().st_mtime_ns for p in Path(job.cache).glob("latents-*.npy")}
    assert len(before) == 2  # y and z
    distill.latent_cache(distill.cheap_model(source, 6)[0], job, source.weights_id)
    assert {p.name: p.stat().st_mtime_ns for p in Path(job.cache).glob("latents-*.npy")} == before


def test_cli_distills_and_refuses_bad_options(job, capsys):
    from shallowcodec import cli

    out = job.out.with_name("cli.safetensors")
    args = ["distill", "--weights", str(job.weights), "--out", str(out), "--data", str(job.data), "--steps", "3",
            "--crops", "12", "--crop", "64", "--batch-size", "4", "--hyper-kernel", "6", "--cache", str(job.cache),
            "--threads", "1", "--quiet"]
    assert cli.main(args) == 0
    assert capsys.readouterr().out.count("\n") == 1
    assert zoo.load_weights(out).model.h_s.layers[0].kernel_size == (6, 6)
    assert cli.main(args) == 1  # exists without --force
    assert "exists" in capsys.readouterr().err
    assert cli.main([*args, "--force", "--crop", "100"]) == 2  # bad usage
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--crop" in err


def test_check_config_refuses_replacing_the_source(job):
    with pytest.raises(ValueError, match="replace the weights"):
        distill.check_config(replace(job, out=job.weights))
