"""Continue training the embedded variable-rate weights on a GPU for a fixed time ("GPU burst").

    python scripts/gpu_burst.py --data DIR --out RUN --minutes 30 [--models two-layer jpeg-like]
        [--crop 256] [--batch-size 16] [--workers 4] [--lr LR] [--force]
    python scripts/embed_weights.py RUN/*.safetensors

For each architecture (default: every embedded one), in turn, runs the trainer in this process
with ``--variable-rate --init <embedded file> --device cuda --bf16 --steps 0 --max-minutes T``
and the widths and quantizer recorded in the embedded file, writing RUN/<architecture>.safetensors
(its checkpoint beside it, and RUN/<architecture>.json with the run's speed and last loss).
``--minutes`` is the wall-clock budget of the whole burst: each run gets an equal share of the
time left, less a start-up allowance (model set-up, the one-time image cache, saving), and its
``--steps 0`` schedule (warm-up, lr decay) is fitted to that share. Training is cumulative: the
written weights record total steps, seconds and gpu_hours on top of the embedded ones.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from shallowcodec import train
from shallowcodec.config import build_parser, config_from_args
from shallowcodec.model_files import embedded_models, model_card

#: Minutes kept from each run's share for start-up and saving (the trainer's --max-minutes
#: counts training steps only).
STARTUP_MINUTES = 0.75


def trainer_argv(architecture: str, weights: Path, args: argparse.Namespace, minutes: float) -> list[str]:
    """Trainer arguments continuing ``weights`` (an embedded file) for ``minutes`` on the GPU."""
    card = model_card(weights)
    config = {k: v for k, v in card["config"].items() if k != "variable_rate"}  # --variable-rate sets it
    out = args.out / f"{architecture}.safetensors"
    return ["--model", architecture, "--variable-rate", "--init", str(weights), "--data", str(args.data),
            "--out", str(out), "--summary", str(out.with_suffix(".json")), "--config", json.dumps(config),
            "--device", "cuda", "--bf16", "--steps", "0", "--max-minutes", f"{minutes:.3f}",
            "--crop", str(args.crop), "--batch-size", str(args.batch_size), "--workers", str(args.workers),
            "--quantizer", card.get("quantizer", "noise"), "--lr", str(args.lr or card.get("lr", 1e-4)),
            "--quiet", *(["--force"] if args.force else [])]


def main() -> None:
    embedded = embedded_models()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock budget of the whole burst")
    parser.add_argument("--data", type=Path, required=True, help="folder of training images")
    parser.add_argument("--out", type=Path, required=True, help="folder for <architecture>.safetensors")
    parser.add_argument("--models", nargs="+", choices=sorted(embedded), default=sorted(embedded))
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4, help="data-loading processes")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: the embedded run's)")
    parser.add_argument("--force", action="store_true", help="replace weights already in --out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + 60 * args.minutes
    for i, architecture in enumerate(args.models):
        share = (deadline - time.monotonic()) / 60 / (len(args.models) - i) - STARTUP_MINUTES
        if share <= 0:
            sys.exit(f"gpu_burst: no time left for {architecture} (--minutes {args.minutes:g})")
        argv = trainer_argv(architecture, embedded[architecture], args, share)
        try:
            out = train.train(config_from_args(build_parser().parse_args(argv)))
        except (ValueError, OSError) as e:
            sys.exit(f"gpu_burst: {architecture}: {e}")
        summary = json.loads(out.with_suffix(".json").read_text())
        print(f"{architecture}: {summary['steps']} steps in {summary['seconds'] / 60:.1f} min "
              f"({summary['steps_per_s'] or 0:.2f} steps/s, last bpp {summary['bpp']:.3f}, "
              f"PSNR {summary['psnr']:.2f} dB) -> {out}", flush=True)


if __name__ == "__main__":
    main()
