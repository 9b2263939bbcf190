"""Training speed (steps/s, pixels/s) per architecture and crop size: fp32 and bf16, 1 and 2 threads, 2 processes.

    python benchmarks/train_speed.py [--models two-layer jpeg-like mbt2018-mean] [--crops 128 256]
        [--steps 10] [--batch-size 8] [--config '{"N": 64, "M": 192}'] [--data DIR] [--json FILE]
    python benchmarks/train_speed.py --variants [--models ...] [--steps 12]

Each measurement runs the trainer itself as a subprocess (CPU, variable rate, channels_last,
``--workers 0``, images cached once in a temporary folder) for 3 warm-up steps plus ``--steps``
timed steps, and reads the speed of the timed steps from its ``--summary`` file. Set-ups:

* fp32, 1 process × 1 thread; then with ``--bf16`` (bfloat16 autocast of the transforms):
* 1 process × 1 thread, 1 process × 2 threads (``--threads``, OMP_NUM_THREADS);
* 2 processes × 1 thread: ``python -m torch.distributed.run --standalone --nproc_per_node=2``,
  DistributedDataParallel over gloo, ``--batch-size`` images per process.

pixels/s = steps/s × batch × crop² × processes. The table's ratio is pixels/s against fp32
1 process × 1 thread of the same model and crop.

``--variants`` times the optimization step itself in this process (1 thread, crop 128, random
pixels, trained from the architecture's untrained weights): NCHW against channels_last, fp32
against bf16, and channels_last + bf16 under ``torch.compile`` — the measurements behind the
trainer's choices (channels_last always, ``--bf16`` in the campaign, no compile).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from shallowcodec import train
from shallowcodec.config import build_parser, config_from_args
from shallowcodec.distributed import TORCHRUN_VARIABLES
from shallowcodec.zoo import ARCHITECTURES, build

PHOTOS24 = Path(__file__).resolve().parents[2] / "shared/data/photos24"
#: (label, processes, threads per process, bf16)
SETUPS = (("fp32, 1 proc × 1 thread", 1, 1, False), ("bf16, 1 proc × 1 thread", 1, 1, True),
          ("bf16, 1 proc × 2 threads", 1, 2, True), ("bf16, 2 procs × 1 thread", 2, 1, True))
#: In-process step variants of ``--variants``: (label, channels_last, bf16, torch.compile).
VARIANTS = (("NCHW fp32", False, False, False), ("channels_last fp32", True, False, False),
            ("NCHW bf16", False, True, False), ("channels_last bf16", True, True, False),
            ("channels_last bf16 + compile", True, True, True))


def measure(model: str, crop: int, processes: int, threads: int, bf16: bool, args: argparse.Namespace,
            work: Path) -> dict:
    """Run the trainer for 3 + ``args.steps`` steps; returns its summary (steps_per_s, pixels_per_s, ...)."""
    summary = work / f"{model}-{crop}-{processes}x{threads}-{bf16}.json"
    argv = ["--model", model, "--variable-rate", "--data", str(args.data), "--steps", str(train.WARMUP_STEPS + args.steps),
            "--out", str(work / "w.safetensors"), "--config", args.config, "--crop", str(crop),
            "--batch-size", str(args.batch_size), "--threads", str(threads), "--workers", "0",
            "--cache", str(work / "cache"), "--summary", str(summary), "--quiet", "--force", *(["--bf16"] * bf16)]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES} | {"OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, *launcher, "-m", "shallowcodec.train", *argv], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"train_speed: {model} crop {crop}, {processes} × {threads} failed:\n{done.stderr[-2000:]}")
    return json.loads(summary.read_text())


def step_variant(model: str, channels_last: bool, bf16: bool, compiled: bool, steps: int, config: dict) -> float:
    """Steps/s of train.train_step (1 thread, batch 8 of 128² random pixels) in one set-up, after 3 warm-up steps."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        cfg = config_from_args(build_parser().parse_args(
            ["--model", model, "--variable-rate", "--data", f"{out}/data", "--steps", "1000", "--out", f"{out}/w",
             "--crop", "128", "--quantizer", "mixed", "--lr", "5e-4"]))
    cfg = replace(cfg, bf16=bf16)
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model_ = build(model, **config, variable_rate=True).to(memory_format=layout).train()
    optimizers = train.make_optimizers(model_, cfg.lr)
    net = torch.compile(model_) if compiled else model_
    x = torch.rand(8, 3, 128, 128).contiguous(memory_format=layout)
    for _ in range(train.WARMUP_STEPS):
        train.train_step(net, model_, optimizers, x, 500, 1000, cfg)
    start = time.perf_counter()
    for _ in range(steps):
        train.train_step(net, model_, optimizers, x, 500, 1000, cfg)
    return steps / (time.perf_counter() - start)


def variants(args: argparse.Namespace) -> list[dict]:
    """The ``--variants`` table; each set-up in its own process (compile caches and thread pools apart)."""
    rows = []
    print(f"{'model':<14} {'set-up':<30} {'steps/s':>8} {'ratio':>6}")
    for model in args.models:
        base = None
        for label, channels_last, bf16, compiled in VARIANTS:
            code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import train_speed; "
                    f"print(train_speed.step_variant({model!r}, {channels_last}, {bf16}, {compiled}, {args.steps}, "
                    f"{json.loads(args.config)!r}))")
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"train_speed: {model} {label} failed:\n{done.stderr[-2000:]}")
            speed = float(done.stdout.split()[-1])
            base = base or speed
            rows.append({"model": model, "variant": label, "steps_per_s": speed, "ratio": speed / base})
            print(f"{model:<14} {label:<30} {speed:>8.3f} {speed / base:>6.2f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["two-layer", "jpeg-like", "mbt2018-mean"],
                        choices=list(ARCHITECTURES))
    parser.add_argument("--crops", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--steps", type=int, default=10, help=f"timed steps (after {train.WARMUP_STEPS} warm-up steps)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step and process")
    parser.add_argument("--config", default='{"N": 64, "M": 192}', help="JSON widths")
    parser.add_argument("--data", type=Path, default=PHOTOS24, help="training images (default: photos24)")
    parser.add_argument("--json", type=Path, help="write the rows as JSON")
    parser.add_argument("--variants", action="store_true",
                        help="time the step in this process: NCHW / channels_last, fp32 / bf16, torch.compile")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.variants:
        rows = variants(args)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
        return
    rows = []
    print(f"{'model':<14} {'crop':>4}  {'set-up':<26} {'steps/s':>8} {'Mpixels/s':>10} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as work:
        for model in args.models:
            for crop in args.crops:
                base = None
                for label, processes, threads, bf16 in SETUPS:
                    result = measure(model, crop, processes, threads, bf16, args, Path(work))
                    base = base or result["pixels_per_s"]
                    rows.append({"model": model, "crop": crop, "processes": processes, "threads": threads, "bf16": bf16,
                                 "steps_per_s": result["steps_per_s"], "pixels_per_s": result["pixels_per_s"],
                                 "ratio": result["pixels_per_s"] / base, "batch_size": args.batch_size,
                                 "config": json.loads(args.config)})
                    print(f"{model:<14} {crop:>4}  {label:<26} {result['steps_per_s']:>8.3f} "
                          f"{result['pixels_per_s'] / 1e6:>10.3f} {result['pixels_per_s'] / base:>6.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
