"""Training speed (steps/s, pixels/s) per architecture and crop size, for 1 and 2 threads and 2 processes.

    python benchmarks/train_speed.py [--models two-layer jpeg-like mbt2018-mean] [--crops 128 256]
        [--steps 10] [--batch-size 8] [--config '{"N": 64, "M": 192}'] [--data DIR] [--json FILE]

Each measurement runs the trainer itself as a subprocess (CPU, variable rate, fp32, ``--workers
0``, images cached once in a temporary folder) for 3 warm-up steps plus ``--steps`` timed steps,
and reads the speed of the timed steps from its ``--summary`` file. Set-ups:

* 1 process × 1 thread, 1 process × 2 threads (``--threads``, OMP_NUM_THREADS);
* 2 processes × 1 thread: ``python -m torch.distributed.run --standalone --nproc_per_node=2``,
  DistributedDataParallel over gloo, ``--batch-size`` images per process.

pixels/s = steps/s × batch × crop² × processes. The table's ratio is pixels/s against
1 process × 1 thread of the same model and crop.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from shallowcodec import train
from shallowcodec.distributed import TORCHRUN_VARIABLES
from shallowcodec.zoo import ARCHITECTURES

PHOTOS24 = Path(__file__).resolve().parents[2] / "shared/data/photos24"
#: (label, processes, threads per process)
SETUPS = (("1 proc × 1 thread", 1, 1), ("1 proc × 2 threads", 1, 2), ("2 procs × 1 thread (DDP)", 2, 1))


def measure(model: str, crop: int, processes: int, threads: int, args: argparse.Namespace, work: Path) -> dict:
    """Run the trainer for 3 + ``args.steps`` steps; returns its summary (steps_per_s, pixels_per_s, ...)."""
    summary = work / f"{model}-{crop}-{processes}x{threads}.json"
    argv = ["--model", model, "--variable-rate", "--data", str(args.data), "--steps", str(train.WARMUP_STEPS + args.steps),
            "--out", str(work / "w.safetensors"), "--config", args.config, "--crop", str(crop),
            "--batch-size", str(args.batch_size), "--threads", str(threads), "--workers", "0",
            "--cache", str(work / "cache"), "--summary", str(summary), "--quiet", "--force"]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES} | {"OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, *launcher, "-m", "shallowcodec.train", *argv], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"train_speed: {model} crop {crop}, {processes} × {threads} failed:\n{done.stderr[-2000:]}")
    return json.loads(summary.read_text())


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
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    rows = []
    print(f"{'model':<14} {'crop':>4}  {'set-up':<25} {'steps/s':>8} {'Mpixels/s':>10} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as work:
        for model in args.models:
            for crop in args.crops:
                base = None
                for label, processes, threads in SETUPS:
                    result = measure(model, crop, processes, threads, args, Path(work))
                    base = base or result["pixels_per_s"]
                    rows.append({"model": model, "crop": crop, "processes": processes, "threads": threads,
                                 "steps_per_s": result["steps_per_s"], "pixels_per_s": result["pixels_per_s"],
                                 "ratio": result["pixels_per_s"] / base, "batch_size": args.batch_size,
                                 "config": json.loads(args.config)})
                    print(f"{model:<14} {crop:>4}  {label:<25} {result['steps_per_s']:>8.3f} "
                          f"{result['pixels_per_s'] / 1e6:>10.3f} {result['pixels_per_s'] / base:>6.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
