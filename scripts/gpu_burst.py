"""Continue every embedded variable-rate model on one GPU for a fixed time, all three at once ("GPU burst").

Here (a clone with the training photos and PyPI), once:

    python scripts/gpu_burst.py prepare --data ../shared/data/train-photos ../shared/data/train-photos-2

writes the ignored folder ``.burst/``: ``photos/`` (the training photos as the trainer's cache
holds them, shorter side ≤ 512 px, stored as WebP at the highest quality that fits the device
tool's 64 MiB working tree beside the tracked files) and ``wheels/`` (CompressAI, constriction
and pytorch-msssim for the GPU machine's Python 3.12: the only packages of the trainer that it
lacks). It prints the one command to give the device tool, with ``carry: [".burst"]``:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .burst/wheels/*.whl &&
    PYTHONPATH=/tmp/site:src python3 scripts/gpu_burst.py run --data .burst/photos --out $OUT --minutes 8

``run`` starts one trainer process per architecture, concurrently on the one GPU (``--device cuda
--bf16``, 256² crops, variable rate, mixed quantization, lr 5e-4, rate weighting 1.0 and q0, q1
drawn twice as often, as the CPU campaign; scripts/campaign.py), each from its embedded weights
with ``--steps 0 --max-minutes``: the schedule (warm-up, × 0.1 after 80 %) is fitted to the burst,
so the weights it writes are lr-decayed and ready to evaluate. ``--out`` then holds
``<architecture>.safetensors`` (fp16, cumulative steps, core-hours and GPU-hours on top of the
embedded file) and ``burst.json`` (each run's steps, speed and last loss terms): 4 files, within
the 8 the device tool returns.
Checkpoints (optimizer state) stay outside ``--out``. Then, here: ``shallowcodec distill`` for the
cheap h_s and ``shallowcodec eval`` as after a CPU stretch (benchmarks/README.md), and
``scripts/embed_weights.py`` for a file that is better by ≥ 3 % BD-rate.

``run --dry-run`` is the same on the CPU for 1 step of 64² crops per model (seconds; the tests
run it).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shallowcodec.data import build_cache, default_cache
from shallowcodec.model_files import embedded_models, model_card
from shallowcodec.train import LOW_RATE_QUALITIES

#: Minutes of the burst kept for start-up (imports, CUDA context, image cache) and saving;
#: the trainer's --max-minutes counts training steps only.
STARTUP_MINUTES = 1.0
#: What the device tool carries: the working tree with its carried paths (README of the tool).
CARRY_LIMIT = 64 * 2**20
#: Kept free under CARRY_LIMIT (files changed after ``prepare``).
MARGIN = 2 * 2**20
#: The trainer's packages the GPU machine lacks, pinned to this environment's versions.
WHEELS = ("compressai", "constriction", "pytorch-msssim")
MAX_SIDE = 512
#: The architectures the R-D campaign trains (scripts/campaign.py's SHARES; mbt2018-mean is its baseline).
CAMPAIGN = ("two-layer", "jpeg-like")


def travelling_bytes(repo: Path) -> int:
    """Bytes of the files the device tool sends: tracked plus untracked files git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=repo, capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / os.fsdecode(p)).stat().st_size for p in listed if p and (repo / os.fsdecode(p)).is_file())


def download_wheels(folder: Path) -> None:
    """The pinned wheels of ``WHEELS`` for CPython 3.12 on x86-64 Linux (needs PyPI).

    Raises:
        subprocess.CalledProcessError: pip found no such wheel.
    """
    from importlib.metadata import version

    platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 28, 34)] + ["--platform=manylinux2014_x86_64"]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version=3.12", "--implementation=cp", *platforms, "-d", str(folder),
                    *(f"{name}=={version(name)}" for name in WHEELS)], check=True)


def pack_photos(data: list[Path], folder: Path, budget: int) -> tuple[int, int]:
    """Store the training photos of the ``data`` folders as the trainer caches them (shorter side ≤ 512, data.py), as WebP
    at the highest quality of 95, 90, 85, … whose files total ≤ ``budget`` bytes.

    Returns:
        (WebP quality, bytes written).

    Raises:
        ValueError: even quality 50 does not fit (one line).
    """
    import numpy as np
    from PIL import Image

    with tempfile.TemporaryDirectory() as cache:
        pixels = [np.load(e) for i, folder in enumerate(data)
                  for e in build_cache(folder, Path(cache) / str(i), MAX_SIDE, progress=True)]
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.webp"):
        old.unlink()
    for quality in range(95, 45, -5):
        size = 0
        for i, image in enumerate(pixels):
            path = folder / f"{i:04d}.webp"
            Image.fromarray(image).save(path, quality=quality, method=4)
            size += path.stat().st_size
            if size > budget:
                break
        else:
            return quality, size
    raise ValueError(f"the photos do not fit {budget / 2**20:.1f} MiB even as WebP quality 50")


def prepare(args: argparse.Namespace) -> None:
    """``prepare``: write ``--carry`` (photos and wheels) and print the device command."""
    repo = Path(__file__).resolve().parent.parent
    carry = args.carry
    download_wheels(carry / "wheels")
    wheels = sum(p.stat().st_size for p in (carry / "wheels").glob("*.whl"))
    tree = travelling_bytes(repo)
    quality, size = pack_photos(args.data, carry / "photos", CARRY_LIMIT - MARGIN - tree - wheels)
    print(f"{carry}: photos as WebP q{quality} {size / 2**20:.1f} MiB, wheels {wheels / 2**20:.1f} MiB "
          f"(working tree {tree / 2**20:.1f} MiB)")
    print(f'device run, carry ["{carry}"]:\npython3 -m pip install -q --no-index --no-deps --target /tmp/site '
          f"{carry}/wheels/*.whl && PYTHONPATH=/tmp/site:src python3 scripts/gpu_burst.py run "
          f"--data {carry}/photos --out $OUT --minutes 8")


def trainer_argv(architecture: str, weights: Path, args: argparse.Namespace, checkpoints: Path) -> list[str]:
    """Trainer arguments continuing ``weights`` (an embedded file) for the burst."""
    config = {k: v for k, v in model_card(weights)["config"].items() if k != "variable_rate"}
    out = args.out / f"{architecture}.safetensors"
    if args.dry_run:
        device, schedule = ["--device", "cpu", "--threads", "1"], ["--steps", "1", "--crop", "64", "--batch-size", "1"]
    else:
        minutes = args.minutes - STARTUP_MINUTES
        device = ["--device", "cuda"]
        schedule = ["--steps", "0", "--max-minutes", f"{minutes:.3f}", "--crop", "256", "--batch-size", str(args.batch_size)]
    return [sys.executable, "-m", "shallowcodec.train", "--model", architecture, "--variable-rate",
            "--init", str(weights), "--data", str(args.data), "--out", str(out), "--config", json.dumps(config),
            *device, *schedule, "--bf16", "--workers", str(0 if args.dry_run else args.workers),
            "--quantizer", "mixed", "--lr", "5e-4", "--rate-weighting", "1.0",
            "--train-qualities", *map(str, LOW_RATE_QUALITIES),
            "--checkpoint", str(checkpoints / f"{architecture}.ckpt"), "--checkpoint-minutes", "1000",
            "--summary", str(checkpoints / f"{architecture}.json"), "--quiet", "--force"]


def run(args: argparse.Namespace) -> int:
    """``run``: train the architectures concurrently; 0 when every run wrote its weights."""
    if not args.dry_run and args.minutes <= STARTUP_MINUTES:
        sys.exit(f"gpu_burst: --minutes must exceed the {STARTUP_MINUTES:g} minute start-up allowance")
    args.out.mkdir(parents=True, exist_ok=True)
    build_cache(args.data, default_cache(args.data, MAX_SIDE), MAX_SIDE)  # once, before the trainers share it
    embedded = embedded_models()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        start = time.monotonic()
        runs = {a: subprocess.Popen(trainer_argv(a, embedded[a], args, scratch)) for a in args.models}
        codes = {a: p.wait() for a, p in runs.items()}
        report = {"minutes": round((time.monotonic() - start) / 60, 2), "dry_run": args.dry_run, "runs": {}}
        for architecture, code in codes.items():
            summary = scratch / f"{architecture}.json"
            report["runs"][architecture] = {"exit": code, **(json.loads(summary.read_text()) if summary.exists() else {})}
    (args.out / "burst.json").write_text(json.dumps(report, indent=1) + "\n")
    for architecture, facts in report["runs"].items():
        speed = f"{facts['steps_per_s']:.2f} steps/s" if facts.get("steps_per_s") else "too few steps to time"
        print(f"{architecture}: exit {facts['exit']}, {facts.get('steps', 0)} steps ({speed}), "
              f"last bpp {facts.get('bpp', float('nan')):.3f}", flush=True)
    return 0 if not any(codes.values()) else 1


def main() -> None:
    embedded = embedded_models()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("prepare", help="write the carried folder: photos and wheels (here)")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="folders of training images")
    p.add_argument("--carry", type=Path, default=Path(".burst"), help="folder to write (git-ignored)")
    r = verbs.add_parser("run", help="train all architectures at once (on the GPU machine)")
    r.add_argument("--data", type=Path, required=True, help="folder of training images (prepare's photos/)")
    r.add_argument("--out", type=Path, required=True, help="folder for <architecture>.safetensors and burst.json")
    r.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget of the burst")
    r.add_argument("--models", nargs="+", choices=sorted(embedded), default=[a for a in CAMPAIGN if a in embedded],
                   help="architectures to train (default: the campaign's, two-layer and jpeg-like)")
    r.add_argument("--batch-size", type=int, default=16, help="crops per step and model")
    r.add_argument("--workers", type=int, default=4, help="data-loading processes per model")
    r.add_argument("--dry-run", action="store_true", help="1 CPU step per model (seconds): checks the set-up")
    args = parser.parse_args()
    if args.verb == "prepare":
        return prepare(args)
    sys.exit(run(args))


if __name__ == "__main__":
    main()
