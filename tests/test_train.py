"""Training (shallowcodec.train): schedules, loss, the cached crop pipeline, and tiny end-to-end runs
(resume, time-boxed schedules, --init, bf16, torchrun with two processes)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from shallowcodec import cli, data, distributed, model_files, quality, train, zoo
from shallowcodec.config import build_parser, config_from_args
from shallowcodec.images import tensor_to_image

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



def test_rd_loss_weighs_each_image_by_its_own_lambda():
    x = torch.rand(2, 3, 8, 8)
    x_hat = x + torch.stack([torch.full((3, 8, 8), 0.01), torch.full((3, 8, 8), 0.02)])
    lk = torch.stack([torch.full((1, 2, 2), 0.5), torch.full((1, 2, 2), 0.25)])  # 4 and 8 bits
    terms = train.rd_loss({"x_hat": x_hat, "likelihoods": {"y": lk}}, x, torch.tensor([0.01, 0.08]))
    mse = torch.tensor([0.01, 0.02]) ** 2 * 255**2
    bpp = torch.tensor([4.0, 8.0]) / 64
    assert terms["loss"].item() == pytest.approx(((bpp + torch.tensor([0.01, 0.08]) * mse).mean()).item())
    assert terms["bpp"].item() == pytest.approx(bpp.mean().item())


def test_rate_weights_balance_the_qualities():
    lmbda = quality.lmbda_of(torch.arange(7.0))
    assert torch.equal(train.rate_weights(lmbda, 0.0), torch.ones(7))
    w = train.rate_weights(lmbda, 0.5)
    assert w.mean().item() == pytest.approx(1.0) and (w[0] / w[6]).item() == pytest.approx(8.0)  # (64 λ_0)^0.5
    x = torch.rand(2, 3, 8, 8)
    out = {"x_hat": x + 0.01, "likelihoods": {"y": torch.full((2, 1, 2, 2), 0.5)}}
    lmbdas, weights = torch.tensor([0.00125, 0.08]), torch.tensor([1.5, 0.5])
    per_image = 4 / 64 + lmbdas * (0.01 * 255) ** 2
    assert train.rd_loss(out, x, lmbdas, weights)["loss"].item() == pytest.approx((weights * per_image).mean().item())


def test_fit_steps_to_a_time_budget():
    # 20 steps done at 0.1 s/step with 60 s left: 97 % of 600 more steps
    assert train.fit_steps(20, 0.1, 60.0) == pytest.approx(20 + 582, abs=1)
    assert train.fit_steps(20, 0.1, -5.0) == 20  # budget already spent: stop now


# --- data pipeline -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A temporary HOME, so that no test writes into the real ~/.cache."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def train_folder(tmp_path, photo_crop):
    """Three 96×112 photo crops and a text file."""
    folder = tmp_path / "data"
    folder.mkdir()
    for i, (top, left) in enumerate([(0, 0), (200, 300), (400, 600)]):
        tensor_to_image(photo_crop(96, 112, top, left)).save(folder / f"crop{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _listing(folder):
    return sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())


def test_cache_holds_downscaled_uint8_arrays_outside_the_data_folder(train_folder, tmp_path):
    before = _listing(train_folder)
    cache = tmp_path / "cache"
    entries = data.build_cache(train_folder, cache, max_side=64)
    assert [e.name.split(".")[0] for e in entries] == ["crop0", "crop1", "crop2"]
    assert all(e.parent == cache.resolve() and e.suffix == ".npy" for e in entries)
    with Image.open(train_folder / "crop1.png") as im:  # 96×112: shorter side 96 → 64, Lanczos
        expected = np.asarray(im.convert("RGB").resize((75, 64), Image.LANCZOS))
    cached = np.load(entries[1])
    assert cached.dtype == np.uint8 and cached.shape == (64, 75, 3)
    np.testing.assert_array_equal(cached, expected)
    assert _listing(train_folder) == before
    # a second build reuses the entries; a changed image gets a new one and its old one goes
    stamps = _listing(cache)
    assert data.build_cache(train_folder, cache, max_side=64) == entries and _listing(cache) == stamps
    os.utime(train_folder / "crop1.png", ns=(10**18, 10**18))
    rebuilt = data.build_cache(train_folder, cache, max_side=64)
    assert rebuilt[0] == entries[0] and rebuilt[1] != entries[1] and rebuilt[1].name.endswith(f".{10**18}.npy")
    assert sorted(p.name for p in cache.iterdir()) == sorted(e.name for e in rebuilt)  # no stale or temp file
    with pytest.raises(ValueError, match="outside the data folder"):
        data.build_cache(train_folder, train_folder / "cache", max_side=64)


def test_default_cache_folder_is_keyed_by_data_path_and_max_side(tmp_path, home, monkeypatch):
    digest = hashlib.sha256(str((tmp_path / "data").resolve()).encode()).hexdigest()[:12]
    assert data.default_cache(tmp_path / "data", 512) == home / ".cache/shallowcodec" / f"{digest}-512"
    monkeypatch.chdir(tmp_path)
    assert data.default_cache("data", 256).name == f"{digest}-256"  # relative paths resolve first


def test_random_crops_are_seeded_per_rank_worker_and_start_step(train_folder, tmp_path):
    files = data.build_cache(train_folder, tmp_path / "cache", max_side=512)

    def first(n=4, **key):
        stream = iter(data.RandomCrops(files, 64, **key))
        return torch.stack([next(stream) for _ in range(n)])

    crops = first()
    assert crops.shape == (4, 3, 64, 64) and crops.dtype == torch.uint8
    assert torch.equal(crops, first())
    for key in ({"seed": 1}, {"rank": 1}, {"start_step": 100}):
        assert not torch.equal(crops, first(**key)), key


def test_random_crops_flip_horizontally(tmp_path):
    ramp = np.broadcast_to(np.arange(64, dtype=np.uint8)[None, :, None], (64, 64, 3))
    np.save(tmp_path / "ramp.npy", ramp)
    stream = iter(data.RandomCrops([tmp_path / "ramp.npy"], 64))
    rows = {tuple(next(stream)[0, 0, [0, -1]].tolist()) for _ in range(32)}
    assert rows == {(0, 63), (63, 0)}


def test_loader_yields_float_batches_from_distinct_workers(train_folder, tmp_path):
    cfg = config_from_args(build_parser().parse_args(_argv(train_folder, tmp_path / "x.safetensors", "--workers", "2")))
    batches = data.data_stream(cfg, distributed.Process(0, 1, torch.device("cpu")), step=0)
    a, b = next(batches), next(batches)  # one batch from each worker
    assert a.shape == (2, 3, 64, 64) and a.dtype == torch.float32
    assert 0 <= a.min() and a.max() <= 1 and not torch.equal(a, b)
    with pytest.raises(ValueError, match="no image of at least 128×128"):
        data.data_stream(replace(cfg, crop=128), distributed.Process(0, 1, torch.device("cpu")), step=0)


# --- end to end ----------------------------------------------------------------------------------


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _argv(data, out, *extra, steps=6):
    return ["--model", "two-layer", "--quality", "3", "--data", str(data), "--steps", str(steps), "--out", str(out),
            "--config", '{"N": 8, "M": 16}', "--crop", "64", "--batch-size", "2", "--threads", "1", "--quiet",
            "--workers", "0", "--cache", str(data.parent / "cache"), *extra]


def _facts(path):
    return {k: json.loads(v) for k, v in zoo.load_weights(path).metadata.items() if k not in ("architecture", "lmbda")}


def test_tiny_training_run_writes_loadable_weights(train_folder, tmp_path, restore_threads, capsys):
    out = tmp_path / "tiny.safetensors"
    assert train.main(_argv(train_folder, out)) == 0
    assert capsys.readouterr().out.strip() == str(out)
    loaded = zoo.load_weights(out)
    assert (loaded.architecture, loaded.quality, loaded.lmbda) == ("two-layer", 3, quality.LMBDAS[3])
    facts = _facts(out)
    assert (facts["steps"], facts["planned_steps"], facts["crop"]) == (6, 6, 64)
    assert facts["config"] == {"N": 8, "M": 16}
    assert (facts["world_size"], facts["device"], facts["threads"], facts["bf16"]) == (1, "cpu", 1, False)
    assert 0 < facts["core_hours"] == pytest.approx(facts["train_seconds"] / 3600, abs=1e-4)
    assert "gpu_hours" not in facts
    assert model_files.model_card(out)["steps"] == 6
    # the parameters moved away from the seed-0 initialization
    torch.manual_seed(0)
    init = zoo.build("two-layer", N=8, M=16)
    assert not torch.equal(init.g_s.out.weight.half().float(), loaded.model.g_s.out.weight)
    assert (tmp_path / "tiny.safetensors.ckpt").is_file()
    assert len(list((tmp_path / "cache").glob("*/*.npy"))) == 3  # one cache folder per --data folder


def test_stopped_run_resumes_its_planned_schedule(train_folder, tmp_path, restore_threads, capsys):
    out = tmp_path / "stopped.safetensors"
    ckpt = tmp_path / "run.ckpt"
    assert train.main(_argv(train_folder, out, "--checkpoint", str(ckpt), "--max-minutes", "0.0001")) == 0
    stopped = _facts(out)["steps"]
    assert 1 <= stopped < 6
    state = torch.load(ckpt, weights_only=True)
    assert (state["step"], state["planned_steps"]) == (stopped, 6)
    # another --steps does not change the schedule of the resumed job
    assert train.main(_argv(train_folder, out, "--checkpoint", str(ckpt), "--resume", str(ckpt), steps=50)) == 0
    assert "schedule of 6 steps (--steps 50 ignored)" in capsys.readouterr().err
    assert (_facts(out)["steps"], _facts(out)["planned_steps"]) == (6, 6)
    assert torch.load(ckpt, weights_only=True)["step"] == 6


def test_steps_zero_fits_the_schedule_to_max_minutes(train_folder, tmp_path, restore_threads):
    out = tmp_path / "timed.safetensors"
    assert train.main(_argv(train_folder, out, "--max-minutes", "0.04", steps=0)) == 0
    facts = _facts(out)
    assert facts["planned_steps"] >= train.FIT_AFTER and facts["steps"] <= facts["planned_steps"]
    assert facts["train_seconds"] < 0.04 * 60 + 1
    assert torch.load(f"{out}.ckpt", weights_only=True)["planned_steps"] == facts["planned_steps"]
    # the resumed job runs to the fitted total (no --max-minutes needed)
    assert train.main(_argv(train_folder, out, "--resume", f"{out}.ckpt", steps=0)) == 0
    assert _facts(out)["steps"] == facts["planned_steps"]


def test_init_accumulates_steps_and_core_hours(train_folder, tmp_path, restore_threads):
    fixed = tmp_path / "fixed.safetensors"
    assert train.main(_argv(train_folder, fixed, steps=3)) == 0
    argv = _argv(train_folder, tmp_path / "vr.safetensors", "--init", str(fixed), steps=2)
    argv = _variable_rate(argv)
    assert train.main(argv) == 0
    prior, facts = _facts(fixed), _facts(tmp_path / "vr.safetensors")
    assert facts["config"]["variable_rate"] and facts["init"] == "fixed.safetensors"
    assert facts["total_steps"] == 5
    assert facts["core_hours"] == pytest.approx(prior["core_hours"] + facts["train_seconds"] / 3600, abs=2e-4)


def test_bf16_on_cpu(train_folder, tmp_path, restore_threads):
    out, summary = tmp_path / "bf16.safetensors", tmp_path / "summary.json"
    assert train.main(_argv(train_folder, out, "--bf16", "--summary", str(summary), steps=2)) == 0
    result = json.loads(summary.read_text())
    assert result["steps"] == 2 and result["bf16"] and math.isfinite(result["loss"])
    assert _facts(out)["bf16"] is True


def test_bf16_autocast_keeps_the_entropy_models_in_fp32():
    torch.manual_seed(0)
    model = zoo.build("two-layer", N=8, M=16, variable_rate=True).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(2, 3, 64, 64), quality=torch.tensor([0.0, 6.0]))
    assert out["x_hat"].dtype == torch.bfloat16
    assert {lk.dtype for lk in out["likelihoods"].values()} == {torch.float32}
    assert out["y_hat"].dtype == torch.float32


@pytest.mark.parametrize("extra, message, code", [
    (["--crop", "100"], "multiple of 64", 2),  # bad usage
    (["--crop", "128"], "no image of at least 128×128", 1),  # bad data
    (["--max-minutes", "0"], "give --max-minutes", 2),  # with --steps 0
    (["--device", "cuda"], "no CUDA device", 1),
])
def test_bad_runs_fail_with_one_line(train_folder, tmp_path, capsys, extra, message, code):
    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    out = tmp_path / "x.safetensors"
    assert train.main(_argv(train_folder, out, *extra, steps=0 if "--max-minutes" in extra else 6)) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_torchrun_two_processes(train_folder, tmp_path):
    out, summary = tmp_path / "ddp.safetensors", tmp_path / "ddp.json"
    argv = _argv(train_folder, out, "--summary", str(summary), steps=3)
    argv = _variable_rate(argv)
    env = {k: v for k, v in os.environ.items() if k not in distributed.TORCHRUN_VARIABLES} | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "shallowcodec.train", *argv], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(out)  # printed by rank 0 only
    loaded = zoo.load_weights(out)
    assert loaded.variable_rate and json.loads(loaded.metadata["world_size"]) == 2
    assert json.loads(loaded.metadata["steps"]) == 3
    assert json.loads(summary.read_text())["world_size"] == 2


# --- bad input found by a new user: one line, exit 1 (2: bad usage), nothing trained or written -------------------


def _fails(argv, capsys, message, code=1):
    assert train.main(argv) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("extra, message", [
    (["--lmbda", "nan"], "--lmbda must be a positive number, got nan"),
    (["--lmbda", "-1"], "--lmbda must be a positive number"),
    (["--lr", "0"], "--lr must be a positive number"),
    (["--max-minutes", "-1"], "--max-minutes must be a positive number"),
    (["--threads", "-1"], "--threads must not be negative"),
    (["--config", '{"N": -8, "M": 16}'], "--config"),
    (["--config", '{"X": 8}'], "not X"),
    (["--config", "[8, 16]"], "--config must be a JSON object"),
    (["--config", "{N: 8}"], "--config is not JSON"),
])
def test_bad_arguments_are_one_line_errors(train_folder, tmp_path, capsys, extra, message):
    out = tmp_path / "w.safetensors"
    argv = _argv(train_folder, out)
    code = 2  # bad usage; a --config the model cannot be built with is found later, as bad input
    if extra[0] == "--config":
        argv[argv.index("--config") + 1] = extra[1]
        extra, code = [], 1
    _fails(argv + extra, capsys, message, code)
    assert not out.exists()


def test_output_is_checked_before_training(train_folder, tmp_path, capsys):
    _fails(_argv(train_folder, tmp_path / "missing" / "w.safetensors"), capsys, "does not exist")
    _fails(_argv(train_folder, train_folder / "w.safetensors"), capsys, "inside the data folder")
    existing = tmp_path / "w.safetensors"
    existing.write_bytes(b"precious")
    _fails(_argv(train_folder, existing), capsys, "exists (use --force to overwrite)")
    assert existing.read_bytes() == b"precious"
    _fails(_argv(train_folder, existing, "--init", str(existing), "--force"), capsys, "would replace the weights")


def test_resume_from_a_foreign_file_or_another_config(train_folder, tmp_path, capsys):
    out = tmp_path / "w.safetensors"
    not_a_ckpt = tmp_path / "photo.ckpt"
    not_a_ckpt.write_bytes((train_folder / "crop0.png").read_bytes())
    _fails(_argv(train_folder, out, "--resume", str(not_a_ckpt)), capsys, f"cannot resume from {not_a_ckpt}")
    assert train.main(_argv(train_folder, out, steps=2)) == 0
    argv = _argv(train_folder, out, "--resume", str(tmp_path / "w.safetensors.ckpt"))
    argv[argv.index("--config") + 1] = '{"N": 8, "M": 24}'
    capsys.readouterr()
    _fails(argv, capsys, "not a checkpoint of this --model, --config and rate mode")


def test_resume_with_another_lmbda_scale_is_refused_and_old_checkpoints_still_resume(train_folder, tmp_path, capsys):
    out = tmp_path / "wide.safetensors"
    wide = '{"N": 8, "M": 16, "lmbda_scale": [0.0005, 2.5]}'
    argv = _variable_rate(_argv(train_folder, out, steps=2))
    argv[argv.index("--config") + 1] = wide
    assert train.main(argv) == 0
    ckpt = tmp_path / "wide.safetensors.ckpt"
    paper = _variable_rate(_argv(train_folder, out, "--resume", str(ckpt), "--force", steps=4))
    capsys.readouterr()
    _fails(paper, capsys, "its model has the λ scale [0.0005, 2.5], this --config [0.00125, 2]")
    state = torch.load(ckpt, weights_only=True)
    del state["lmbda_scale"]  # as written before λ scales
    torch.save(state, ckpt)
    paper[paper.index("--config") + 1] = wide
    assert train.main(paper) == 0 and model_files.model_card(out)["lmbdas"][0] == 0.0005


def test_resume_keeps_its_recipe_or_refuses(train_folder, tmp_path, capsys):
    """A fresh-user report: resuming with other --train-qualities (or none) trained on and wrote the
    new options into the weights as if the whole run had used them."""
    out = tmp_path / "vr.safetensors"
    recipe = ["--rate-weighting", "1.0", "--train-qualities", "0", "0", "1", "1", "2", "3", "4", "5", "6"]
    assert train.main(_variable_rate(_argv(train_folder, out, *recipe, steps=2))) == 0
    ckpt = str(tmp_path / "vr.safetensors.ckpt")
    capsys.readouterr()
    _fails(_variable_rate(_argv(train_folder, out, "--resume", ckpt, "--force", "--train-qualities", "3", steps=4)),
           capsys, "it trained with --train-qualities 0 0 1 1 2 3 4 5 6 --rate-weighting 1.0, this command gives "
           "--train-qualities 3 --rate-weighting 0.0", code=2)
    _fails(_variable_rate(_argv(train_folder, out, "--resume", ckpt, "--force", "--rate-weighting", "1.0", steps=4)),
           capsys, "--train-qualities 0 0 1 1 2 3 4 5 6, this command gives --train-qualities (all)", code=2)
    assert cli.main(["train", *_variable_rate(_argv(train_folder, out, "--resume", ckpt, "--force", steps=4))]) == 2
    assert "a resumed run keeps its recipe" in capsys.readouterr().err
    # crop, batch, precision and threads may change (the campaign moves from 128² to 256² crops)
    resumed = _variable_rate(_argv(train_folder, out, "--resume", ckpt, "--force", *recipe, steps=4))
    resumed[resumed.index("--batch-size") + 1] = "1"
    assert train.main(resumed) == 0 and _facts(out)["train_qualities"] == [0, 0, 1, 1, 2, 3, 4, 5, 6]


def test_unreadable_training_image_is_skipped_by_name(train_folder, tmp_path, capsys):
    (train_folder / "bad.png").write_bytes((train_folder / "crop0.png").read_bytes()[:300])
    out = tmp_path / "w.safetensors"
    assert train.main(_argv(train_folder, out, steps=2)) == 0
    assert f"skipping {train_folder / 'bad.png'}" in capsys.readouterr().err
    assert out.is_file()


def test_init_without_config_takes_the_widths_of_the_init_weights(train_folder, tmp_path):
    first = tmp_path / "first.safetensors"
    assert train.main(_argv(train_folder, first, steps=2)) == 0
    argv = _argv(train_folder, tmp_path / "vr.safetensors", "--init", str(first), steps=2)
    i = argv.index("--config")
    del argv[i : i + 2]
    argv = _variable_rate(argv)
    assert train.main(argv) == 0
    assert json.loads(zoo.load_weights(tmp_path / "vr.safetensors").metadata["config"]) == \
        {"N": 8, "M": 16, "variable_rate": True}


def test_init_with_a_config_of_another_lmbda_scale_keeps_the_widths_and_moves_the_gains(train_folder, tmp_path):
    first = tmp_path / "paper.safetensors"
    assert train.main(_variable_rate(_argv(train_folder, first, steps=2))) == 0
    argv = _variable_rate(_argv(train_folder, tmp_path / "wide.safetensors", "--init", str(first), steps=2))
    argv[argv.index("--config") + 1] = '{"lmbda_scale": [0.0005, 2.5]}'
    assert train.main(argv) == 0
    card = model_files.model_card(tmp_path / "wide.safetensors")
    assert card["config"] == {"N": 8, "M": 16, "variable_rate": True, "lmbda_scale": [0.0005, 2.5]}
    assert card["lmbdas"][:2] == [0.0005, 0.00125] and card["total_steps"] == 4


def test_fixed_lambda_training_from_variable_rate_weights_asks_for_variable_rate(train_folder, tmp_path, capsys):
    wide = tmp_path / "wide.safetensors"
    argv = _variable_rate(_argv(train_folder, wide, steps=1))
    argv[argv.index("--config") + 1] = '{"N": 8, "M": 16, "lmbda_scale": [0.0005, 2.5]}'
    assert train.main(argv) == 0
    argv = _argv(train_folder, tmp_path / "fixed.safetensors", "--init", str(wide), steps=1)
    del argv[argv.index("--config"): argv.index("--config") + 2]
    _fails(argv, capsys, "--init weights are variable-rate; add --variable-rate")


@pytest.mark.parametrize("content", [b"\x89PNG random bytes", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": {}}xxxxxxx"])
def test_foreign_weights_files_are_named_as_such(tmp_path, content):
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    with pytest.raises(zoo.ModelNotFoundError, match="not a shallowcodec weights file"):
        zoo.load_weights(path)
    with pytest.raises(zoo.ModelNotFoundError, match="not a shallowcodec weights file"):
        model_files.model_card(path)


def test_resumed_fine_tune_keeps_its_init(train_folder, tmp_path):
    """A run started with --init and resumed without it still counts the init's steps."""
    base = tmp_path / "base.safetensors"
    assert train.main(_argv(train_folder, base, steps=2)) == 0
    out, ckpt = tmp_path / "ft.safetensors", tmp_path / "ft.ckpt"
    assert train.main(_argv(train_folder, out, "--init", str(base), "--checkpoint", str(ckpt),
                            "--max-minutes", "0.0001", steps=4)) == 0
    assert train.main(_argv(train_folder, out, "--resume", str(ckpt), "--checkpoint", str(ckpt), steps=4)) == 0
    facts = _facts(out)
    assert (facts["steps"], facts["total_steps"], facts["init"]) == (4, 6, "base.safetensors")


def _variable_rate(argv: list[str]) -> list[str]:
    """``argv`` with ``--quality Q`` replaced by ``--variable-rate``."""
    i = argv.index("--quality")
    return argv[:i] + ["--variable-rate"] + argv[i + 2:]


def test_variable_rate_training_writes_a_model_for_all_qualities(train_folder, tmp_path, codec_factory,
                                                                   restore_threads):
    fixed = codec_factory("fixed.safetensors")  # a fixed-λ tiny model starts the variable-rate one
    init = tmp_path / "fixed-trained.safetensors"
    zoo.save_weights(init, fixed.loaded.model, "two-layer", {"N": 8, "M": 16}, 3, 0.01, steps=5, train_seconds=1.0)
    out = tmp_path / "vr.safetensors"
    assert train.main(_variable_rate(_argv(train_folder, out, "--init", str(init), steps=3))) == 0
    loaded = zoo.load_weights(out)
    card = model_files.model_card(out)
    assert loaded.variable_rate and card["qualities"] == list(range(7))
    assert (card["steps"], card["total_steps"], card["init"]) == (3, 8, init.name)
    moved = loaded.model.g_s.out.weight - fixed.loaded.model.g_s.out.weight
    assert moved.abs().max() > 0  # trained from the fixed model's parameters


def test_variable_rate_refuses_a_fixed_lambda(train_folder, tmp_path, capsys):
    out = tmp_path / "vr.safetensors"
    assert train.main(_variable_rate(_argv(train_folder, out, "--lmbda", "0.01", steps=3))) == 2
    assert "--lmbda applies to fixed-λ training" in capsys.readouterr().err and not out.exists()


def test_rate_weighting_is_recorded_and_needs_variable_rate(train_folder, tmp_path, capsys, restore_threads):
    out = tmp_path / "vr.safetensors"
    assert train.main(_argv(train_folder, out, "--rate-weighting", "0.5", steps=2)) == 2
    assert "--rate-weighting applies to --variable-rate training" in capsys.readouterr().err
    assert train.main(_variable_rate(_argv(train_folder, out, "--rate-weighting", "3", steps=2))) == 2
    assert "--rate-weighting must be in [0, 2], got 3.0" in capsys.readouterr().err and not out.exists()
    assert train.main(_variable_rate(_argv(train_folder, out, "--rate-weighting", "0.5", steps=2))) == 0
    assert _facts(out)["rate_weighting"] == 0.5


def test_train_qualities_restrict_variable_rate_training(train_folder, tmp_path, capsys, restore_threads):
    out = tmp_path / "vr.safetensors"
    assert train.main(_argv(train_folder, out, "--train-qualities", "1", steps=2)) == 2
    assert "--train-qualities applies to --variable-rate training" in capsys.readouterr().err and not out.exists()
    assert train.main(_variable_rate(_argv(train_folder, out, "--train-qualities", "5", "1", "1", steps=2))) == 0
    assert _facts(out)["train_qualities"] == [1, 1, 5]  # a repeated quality is drawn more often
    quality, lmbda = train.sample_qualities(3000, torch.Generator().manual_seed(0), qualities=(1, 1, 5))
    assert set(quality.tolist()) == {1.0, 5.0} and torch.allclose(lmbda, 0.00125 * 2.0**quality)
    assert 0.63 < (quality == 1).float().mean().item() < 0.70  # 2/3 of the images


def test_init_shared_starts_all_but_g_s_from_another_architecture(tmp_path):
    """jpeg-like from two-layer weights: g_a, h_a, h_s, priors and gains copied, g_s untouched."""
    from shallowcodec.checkpoint import copy_shared

    torch.manual_seed(0)
    source = zoo.build("two-layer", N=8, M=16, variable_rate=True)
    zoo.save_weights(tmp_path / "two.safetensors", source, "two-layer", {"N": 8, "M": 16, "variable_rate": True})
    loaded = zoo.load_weights(tmp_path / "two.safetensors")
    target = zoo.build("jpeg-like", N=8, M=16, variable_rate=True)
    g_s_before = target.g_s.deconv.weight.clone()
    copied = copy_shared(target, loaded)
    shared = [n for n, _ in target.named_parameters() if not n.startswith("g_s.")]
    assert copied == shared
    src = dict(loaded.model.named_parameters())
    assert all(torch.equal(p, src[n]) for n, p in target.named_parameters() if n in copied)
    assert torch.equal(target.g_s.deconv.weight, g_s_before)
    with pytest.raises(ValueError, match="share no parameter"):
        copy_shared(zoo.build("jpeg-like", N=12, M=24), loaded)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    avx2 = tmp_path / "avx2"
    avx2.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    sapphire = tmp_path / "amx"
    sapphire.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert not train.cpu_has_native_bf16(avx2) and train.cpu_has_native_bf16(sapphire)
    assert not train.cpu_has_native_bf16(tmp_path / "missing")  # not Linux: fp32
