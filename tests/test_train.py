"""Training recipe (shallowcodec.train): schedules, loss, and a tiny end-to-end run with resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from shallowcodec import train, zoo
from shallowcodec.codec import tensor_to_image

LR = 1e-4


# --- schedules -----------------------------------------------------------------------------------


@pytest.mark.parametrize("step, expected", [
    (0, LR / 20), (9, LR / 2), (19, LR),           # warm-up: 2 % of 1000 = 20 steps, linear
    (20, LR), (500, LR), (799, LR),                # plateau
    (800, LR * 0.1), (999, LR * 0.1),              # × 0.1 from 80 %
])
def test_lr_schedule(step, expected):
    assert train.lr_at(step, 1000, LR) == pytest.approx(expected, rel=1e-12)


def test_lr_schedule_short_runs():
    # under 50 steps the warm-up is one step (never zero), and the decay still starts at 80 %
    assert [train.lr_at(s, 10, 1.0) for s in range(10)] == pytest.approx([1.0] * 8 + [0.1] * 2)
    assert train.lr_at(0, 100, 1.0) == pytest.approx(0.5)
    assert train.lr_at(1, 100, 1.0) == pytest.approx(1.0)


@pytest.mark.parametrize("lmbda", [0.00125, 0.0025, 0.005, 0.01])
def test_lmbda_boost_for_low_rates_from_scratch(lmbda):
    assert train.lmbda_at(0, 1000, lmbda) == pytest.approx(10 * lmbda)
    assert train.lmbda_at(199, 1000, lmbda) == pytest.approx(10 * lmbda)
    assert train.lmbda_at(200, 1000, lmbda) == lmbda
    assert train.lmbda_at(999, 1000, lmbda) == lmbda


@pytest.mark.parametrize("lmbda", [0.00125, 0.01])
def test_no_lmbda_boost_when_fine_tuning(lmbda):
    assert all(train.lmbda_at(s, 1000, lmbda, from_scratch=False) == lmbda for s in (0, 100, 199, 200, 999))


@pytest.mark.parametrize("lmbda", [0.02, 0.04, 0.08])
def test_no_lmbda_boost_for_high_rates(lmbda):
    assert all(train.lmbda_at(s, 1000, lmbda) == lmbda for s in (0, 100, 199, 200, 999))


# --- loss ----------------------------------------------------------------------------------------


def test_rd_loss_bpp_mse_psnr():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 32) * 0.9
    out = {
        "x_hat": x + 2 / 255,  # error of 2 levels on the 0–255 scale everywhere: MSE 4
        "likelihoods": {"y": torch.full((2, 5, 1, 2), 0.5),    # 1 bit each: 20 bits
                        "z": torch.full((2, 5, 1, 1), 0.25)},  # 2 bits each: 20 bits
    }
    terms = train.rd_loss(out, x, lmbda=0.01)
    pixels = 2 * 16 * 32
    assert terms["bpp"].item() == pytest.approx(40 / pixels, rel=1e-6)
    assert terms["mse"].item() == pytest.approx(4.0, rel=1e-4)
    assert terms["psnr"].item() == pytest.approx(10 * math.log10(255**2 / 4), rel=1e-5)
    assert terms["loss"].item() == pytest.approx(40 / pixels + 0.01 * 4.0, rel=1e-4)


def test_rd_loss_gradient_flows_to_reconstruction_and_likelihoods():
    x = torch.full((1, 3, 4, 4), 0.5)
    x_hat = (x + 0.1).requires_grad_(True)
    lk = torch.full((1, 2, 1, 1), 0.5, requires_grad=True)
    terms = train.rd_loss({"x_hat": x_hat, "likelihoods": {"y": lk}}, x, lmbda=1.0)
    terms["loss"].backward()
    assert (x_hat.grad > 0).all()  # x̂ above x: loss grows with x̂
    assert (lk.grad < 0).all()     # more likely symbols: fewer bits


# --- end to end ----------------------------------------------------------------------------------


@pytest.fixture
def train_folder(tmp_path, photo_crop):
    folder = tmp_path / "data"
    folder.mkdir()
    for i, (top, left) in enumerate([(0, 0), (200, 300), (400, 600)]):
        tensor_to_image(photo_crop(96, 112, top, left)).save(folder / f"crop{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _argv(data, out, *extra):
    return ["--model", "two-layer", "--quality", "3", "--data", str(data), "--steps", "6", "--out", str(out),
            "--config", '{"N": 8, "M": 16}', "--crop", "64", "--batch-size", "2", "--threads", "1", "--quiet",
            *extra]


def _metadata(path):
    return zoo.load_weights(path).metadata


def test_tiny_training_run_writes_loadable_weights(train_folder, tmp_path, restore_threads, capsys):
    out = tmp_path / "tiny.safetensors"
    assert train.main(_argv(train_folder, out)) == 0
    assert capsys.readouterr().out.strip() == str(out)
    loaded = zoo.load_weights(out)
    assert (loaded.architecture, loaded.quality, loaded.lmbda) == ("two-layer", 3, zoo.LMBDAS[3])
    assert json.loads(loaded.metadata["steps"]) == 6
    assert json.loads(loaded.metadata["planned_steps"]) == 6
    assert json.loads(loaded.metadata["crop"]) == 64
    assert json.loads(loaded.metadata["config"]) == {"N": 8, "M": 16}
    assert zoo.model_card(out)["steps"] == 6
    # the parameters moved away from the seed-0 initialization
    torch.manual_seed(0)
    init = zoo.build("two-layer", N=8, M=16)
    assert not torch.equal(init.g_s.out.weight.half().float(), loaded.model.g_s.out.weight)
    assert (tmp_path / "tiny.safetensors.ckpt").is_file()


def test_stopped_run_resumes_to_planned_steps(train_folder, tmp_path, restore_threads):
    out = tmp_path / "stopped.safetensors"
    ckpt = tmp_path / "run.ckpt"
    assert train.main(_argv(train_folder, out, "--checkpoint", str(ckpt), "--max-minutes", "0.0001")) == 0
    stopped = json.loads(_metadata(out)["steps"])
    assert 1 <= stopped < 6
    assert torch.load(ckpt, weights_only=True)["step"] == stopped
    assert train.main(_argv(train_folder, out, "--checkpoint", str(ckpt), "--resume", str(ckpt))) == 0
    assert json.loads(_metadata(out)["steps"]) == 6
    assert torch.load(ckpt, weights_only=True)["step"] == 6


def test_crop_must_be_multiple_of_64(train_folder, tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    argv = _argv(train_folder, out)
    argv[argv.index("--crop") + 1] = "100"
    assert train.main(argv) == 1
    assert "multiple of 64" in capsys.readouterr().err
    assert not out.exists()


def test_crop_sampler_batches(train_folder):
    sampler = train.CropSampler(train_folder, crop=64, seed=0)
    assert len(sampler.images) == 3
    batch = sampler.batch(4)
    assert batch.shape == (4, 3, 64, 64) and batch.dtype == torch.float32
    assert 0 <= batch.min() and batch.max() <= 1
    with pytest.raises(ValueError, match="no image"):
        train.CropSampler(train_folder, crop=128)
