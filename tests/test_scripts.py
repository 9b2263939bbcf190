"""The scripts: the CPU campaign's schedule (scripts/campaign.py), the GPU burst (scripts/gpu_burst.py) and
the benchmark whose numbers closed issue 9 item 5 (benchmarks/fixed_gap.py, variable rate against fixed λ)."""

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shallowcodec.evaluation import rd_result
from shallowcodec.model_files import embedded_models, model_card

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
BENCHMARKS = SCRIPTS.parent / "benchmarks"


def load_script(name: str, folder: Path = SCRIPTS):
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("first, crop", [(17_000, 128), (20_000, 256)])
def test_campaign_continued_at_a_step_plans_the_remainder(tmp_path, first, crop):
    campaign = load_script("campaign")
    shutil.copyfile(embedded_models()["two-layer"], tmp_path / "init-two-layer.safetensors")
    (tmp_path / "start.json").write_text(json.dumps({"first_step": first}))
    argv = campaign.slice_argv(tmp_path, "two-layer", [Path("photos")], 15, 1, 0.5)
    assert campaign.done_steps(tmp_path, "two-layer") == first
    assert argv[argv.index("--steps") + 1] == str(campaign.PLANNED_STEPS - first)
    assert argv[argv.index("--crop") + 1] == str(crop)
    assert "--resume" not in argv
    assert _draw(argv) == [0, 0, 1, 1, 2, 3, 4, 5, 6]  # q0, q1 twice as often (the q1 gap to a fixed-λ model)


def _draw(argv: list[str]) -> list[int]:
    """The qualities a trainer's argv draws from (its --train-qualities values)."""
    start = argv.index("--train-qualities") + 1
    end = next((i for i in range(start, len(argv)) if argv[i].startswith("--")), len(argv))
    return [int(q) for q in argv[start:end]]


def test_campaign_snapshot_branches_off_the_campaign_weights_at_a_low_lr(tmp_path):
    campaign = load_script("campaign")
    shutil.copyfile(embedded_models()["two-layer"], tmp_path / "two-layer.safetensors")
    for steps, argv in [(300, campaign.snapshot_argv(tmp_path, "two-layer", [Path("photos")], 1, 0.5)),
                        (900, campaign.snapshot_argv(tmp_path, "two-layer", [Path("photos")], 1, 0.5, 900))]:
        assert argv[argv.index("--steps") + 1] == str(steps) and argv[argv.index("--lr") + 1] == "5e-5"
        assert argv[argv.index("--init") + 1] == str(tmp_path / "two-layer.safetensors")
        assert argv[argv.index("--out") + 1] == str(tmp_path / "snapshot-two-layer.safetensors")
        assert _draw(argv) == [0, 0, 1, 1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("parallel, batches", [(1, [1, 1]), (2, [2])])
def test_campaign_snapshot_runs_parallel_branches_at_once(tmp_path, monkeypatch, parallel, batches):
    campaign = load_script("campaign")
    for architecture in campaign.ARCHITECTURES:
        (tmp_path / f"{architecture}.safetensors").touch()
    running, seen = [], []

    class Branch:
        def __init__(self, argv):
            running.append(argv)

        def wait(self):  # the first wait of a batch sees every branch of it running
            if running:
                seen.append(len(running))
                running.clear()
            return 0

    monkeypatch.setattr(campaign, "snapshot_argv", lambda run, a, *rest: [a])
    monkeypatch.setattr(campaign.subprocess, "Popen", Branch)
    monkeypatch.setattr(sys, "argv", ["campaign.py", "--run", str(tmp_path), "--data", "photos", "--snapshot",
                                      "--parallel", str(parallel)])
    campaign.main()
    assert seen == batches


def test_campaign_snapshot_fails_when_a_branch_fails(tmp_path, monkeypatch):
    campaign = load_script("campaign")
    (tmp_path / "two-layer.safetensors").touch()
    monkeypatch.setattr(campaign, "snapshot_argv", lambda run, a, *rest: [a])
    monkeypatch.setattr(campaign.subprocess, "Popen", lambda argv: Namespace(wait=lambda: 1))
    monkeypatch.setattr(sys, "argv", ["campaign.py", "--run", str(tmp_path), "--data", "photos", "--snapshot"])
    with pytest.raises(SystemExit, match="a snapshot branch failed"):
        campaign.main()


def test_campaign_refuses_first_step_in_a_used_folder(tmp_path):
    (tmp_path / "start.json").write_text(json.dumps({"first_step": 100}))
    result = subprocess.run([sys.executable, str(SCRIPTS / "campaign.py"), "--run", str(tmp_path), "--data", str(tmp_path),
                             "--first-step", "200"], capture_output=True, text=True)
    assert result.returncode == 2 and "already has one" in result.stderr


def test_campaign_moves_a_new_folder_to_another_lmbda_scale(tmp_path):
    campaign = load_script("campaign")
    shutil.copyfile(embedded_models()["two-layer"], tmp_path / "init-two-layer.safetensors")
    (tmp_path / "start.json").write_text(json.dumps({"first_step": 27_782, "lmbda_scale": [0.00042, 2.65]}))
    argv = campaign.slice_argv(tmp_path, "two-layer", [Path("photos")], 15, 1, 0.5)
    config = json.loads(argv[argv.index("--config") + 1])
    assert config["lmbda_scale"] == [0.00042, 2.65]
    assert config["N"] == model_card(tmp_path / "init-two-layer.safetensors")["config"]["N"]


@pytest.mark.parametrize("extra, message", [(["--first-step", "100", "--lmbda-scale", "0", "2"], "lmbda_scale must be"),
                                            (["--lmbda-scale", "0.001", "2"], "give --first-step too"),
                                            (["--rate-weighting", "3"], "--rate-weighting must be in [0, 2]")])
def test_campaign_refuses_a_bad_or_misplaced_lmbda_scale(tmp_path, extra, message):
    result = subprocess.run([sys.executable, str(SCRIPTS / "campaign.py"), "--run", str(tmp_path / "run"),
                             "--data", str(tmp_path), *extra], capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "run").exists()  # a refused start leaves no folder behind


def test_campaign_status_of_a_folder_without_slices(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPTS / "campaign.py"), "--run", str(tmp_path), "--status"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == f"{tmp_path}: no campaign slice has finished here yet\n"
    missing = subprocess.run([sys.executable, str(SCRIPTS / "campaign.py"), "--run", str(tmp_path / "nope"),
                              "--status"], capture_output=True, text=True)
    assert missing.returncode == 2 and "no campaign folder" in missing.stderr


def test_campaign_stops_when_a_slice_refuses_its_arguments(tmp_path, monkeypatch, capsys):
    """A slice that exits 2 (bad usage, e.g. a checkpoint of another recipe) would fail again: no retry."""
    campaign = load_script("campaign")
    monkeypatch.setattr(campaign, "embedded_models", lambda: {})
    monkeypatch.setattr(campaign, "share_used", lambda run, a: 0.0)
    monkeypatch.setattr(campaign, "slice_argv", lambda run, a, *rest: [a])
    starts = []
    monkeypatch.setattr(campaign.subprocess, "Popen", lambda argv: starts.append(argv) or Namespace(wait=lambda: 2))
    monkeypatch.setattr(campaign.time, "sleep", lambda s: pytest.fail("retried a refused slice"))
    monkeypatch.setattr(sys, "argv", ["campaign.py", "--run", str(tmp_path), "--data", "photos"])
    with pytest.raises(SystemExit, match="refused its arguments"):
        campaign.main()
    assert starts == [["two-layer"]]


def test_burst_photos_are_packed_as_the_trainer_caches_them(tmp_path):
    burst = load_script("gpu_burst")
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (600, 1200, 3), dtype=np.uint8)).save(data / "wide.png")
    Image.fromarray(np.full((300, 200, 3), 90, np.uint8)).save(data / "small.jpg")
    quality, size = burst.pack_photos([data], tmp_path / "photos", 10 * 2**20)
    packed = sorted((tmp_path / "photos").glob("*.webp"))
    assert quality == 95 and size == sum(p.stat().st_size for p in packed)
    assert [Image.open(p).size for p in packed] == [(200, 300), (1024, 512)]  # image-name order, shorter side 512
    noise_only = burst.pack_photos([data], tmp_path / "photos", size - 1)[0]
    assert noise_only < 95 and len(list((tmp_path / "photos").glob("*.webp"))) == 2
    with pytest.raises(ValueError, match="do not fit"):
        burst.pack_photos([data], tmp_path / "photos", 1000)


def test_burst_trainers_run_on_the_gpu_from_the_embedded_weights(tmp_path):
    burst = load_script("gpu_burst")
    args = Namespace(out=tmp_path / "out", data=[Path("photos")], minutes=8.0, batch_size=16, workers=4, dry_run=False)
    weights = embedded_models()["jpeg-like"]
    argv = burst.trainer_argv("jpeg-like", weights, args, tmp_path / "scratch")
    value = {k: argv[argv.index(k) + 1] for k in ("--device", "--steps", "--max-minutes", "--crop", "--init", "--out",
                                                    "--checkpoint", "--config")}
    assert value["--device"] == "cuda" and value["--steps"] == "0" and value["--crop"] == "256"
    assert float(value["--max-minutes"]) == 8.0 - burst.STARTUP_MINUTES
    assert value["--init"] == str(weights) and value["--out"] == str(tmp_path / "out" / "jpeg-like.safetensors")
    assert not value["--checkpoint"].startswith(str(tmp_path / "out"))  # optimizer state does not come back
    assert json.loads(value["--config"])["hyper_synthesis"] == model_card(weights)["config"]["hyper_synthesis"]
    assert _draw(argv) == [0, 0, 1, 1, 2, 3, 4, 5, 6] and argv[argv.index("--rate-weighting") + 1] == "1.0"


def test_burst_dry_run_trains_the_campaigns_models_at_once(photos24, tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    shutil.copy(sorted(photos24.glob("*.png"))[0], data)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(SCRIPTS / "gpu_burst.py"), "run", "--dry-run", "--data", str(data),
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "burst.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["burst.json", "jpeg-like.safetensors", "two-layer.safetensors"]
    for architecture in ("two-layer", "jpeg-like"):
        weights = embedded_models()[architecture]
        assert report["runs"][architecture]["exit"] == 0 and report["runs"][architecture]["device"] == "cpu"
        card = model_card(out / f"{architecture}.safetensors")
        assert card["steps"] == 1 and card["total_steps"] == model_card(weights)["total_steps"] + 1
        assert (out / f"{architecture}.safetensors").stat().st_size < 16 * 2**20  # the device tool's file limit


def test_campaign_uses_bf16_only_where_the_cpu_has_it(tmp_path, monkeypatch):
    campaign = load_script("campaign")
    shutil.copyfile(embedded_models()["jpeg-like"], tmp_path / "init-jpeg-like.safetensors")
    for native in (False, True):
        monkeypatch.setattr(campaign, "cpu_has_native_bf16", lambda: native)
        assert ("--bf16" in campaign.slice_argv(tmp_path, "jpeg-like", [Path("photos")], 15, 1, 0.5)) == native


def result(points: list[tuple[float, float, float]], image: str = "a.png") -> dict:
    """A result file of one image with (bpp, PSNR dB, MS-SSIM) points."""
    return rd_result("shallowcodec", "two-layer", "photos", [
        {"quality": q, "mean": {"bpp": b, "psnr": p, "ms_ssim": m}, "images": [{"image": image}]}
        for q, (b, p, m) in enumerate(points)])


def test_fixed_gap_interpolates_the_variable_curve_at_the_fixed_bpp():
    fixed_gap = load_script("fixed_gap", BENCHMARKS)
    # PSNR linear in log bpp: 3 dB per doubling, so at 0.2 bpp (between 0.1 and 0.4) exactly 28 dB
    variable = result([(0.1, 25.0, 0.90), (0.4, 31.0, 0.96), (0.8, 34.0, 0.98)])
    row = fixed_gap.gap(result([(0.2, 28.3, 0.93)]), variable)
    assert row["bpp"] == 0.2 and row["fixed_psnr"] == 28.3
    assert row["variable_psnr"] == pytest.approx(28.0, abs=0.02) and row["gap_psnr"] == pytest.approx(-0.3, abs=0.02)
    assert row["fixed_ms_ssim_db"] == pytest.approx(-10 * math.log10(0.07))
    with pytest.raises(ValueError, match="outside its curve"):
        fixed_gap.gap(result([(0.05, 24.0, 0.88)]), variable)
    with pytest.raises(ValueError, match="not the same"):
        fixed_gap.gap(result([(0.2, 28.3, 0.93)], image="b.png"), variable)
    with pytest.raises(ValueError, match="must have one point"):  # a fresh user's sweep given as the fixed model
        fixed_gap.gap(variable, variable)
    with pytest.raises(ValueError, match="a curve needs at least 2"):
        fixed_gap.gap(result([(0.2, 28.3, 0.93)]), result([(0.2, 28.0, 0.92)]))
