"""The rate–distortion campaign: continue every embedded model in resumable CPU stretches.

    python scripts/campaign.py --data ../shared/data/train-photos ../shared/data/train-photos-2 --run RUN \
        [--slice-minutes 15]
    kill -TERM <pid of this script>        # stops cleanly: the running slice checkpoints, then exit
    python scripts/campaign.py --run RUN --status

One campaign per RUN folder. At its first start, each embedded variable-rate file of
:data:`ARCHITECTURES` is copied to ``RUN/init-<architecture>.safetensors``, the fixed start of that
architecture's campaign (its training totals make the written weights cumulative). Then the
architectures take turns in slices of ``--slice-minutes`` of training each, the one whose
core-hours in this folder are the fewest for its :data:`SHARES` next (two-layer, the default
model, gets two thirds of the compute and jpeg-like one third; mbt2018-mean is the baseline and
stays as embedded; every model advances even when a stretch is cut short; ``--parallel 2``
trains two at once), each slice a ``shallowcodec train --resume`` of
``RUN/<architecture>.safetensors.ckpt`` with the campaign's fixed schedule:

* ``PLANNED_STEPS`` steps in all (the lr warm-up at the start, × 0.1 only after 80 %: the
  campaign's planned end, not each slice's);
* crops of 128² until ``CROP_256_FROM`` steps, then 256² (the paper's crop), batch 8;
* variable rate, mixed quantization, lr 5e-4, ``--threads`` torch threads, one loader worker;
* bfloat16 autocast (``--bf16``: 1.5× the steps/s of fp32 on a CPU with AVX512-BF16, the same
  R-D after 1,500 steps from the same weights; benchmarks/README.md "Training speed") where the
  CPU has native bfloat16, else fp32; ``--rate-weighting`` 1.0 unless given (0: uniform over the qualities)
  and ``--train-qualities`` 0 0 1 1 2 3 4 5 6 (q0 and q1 drawn twice as often; since stretch 9).

A slice writes ``RUN/<architecture>.safetensors`` (fp16, cumulative steps and core-hours) and
appends one JSON line per slice to ``RUN/log.jsonl``.

A campaign whose RUN folder (checkpoints and Adam state) was lost continues in a new one from the
embedded weights with ``--first-step N`` (kept in ``RUN/start.json``): its trainer plans the
remaining ``PLANNED_STEPS - N`` steps, so the fresh optimizer gets the warm-up's 2 % of them and
the decay comes after 80 % of them; the crop phase and ``--status`` count from N. With
``--lmbda-scale L0 R`` too, that folder moves every model to the λ scale λ(q) = L0·R^q (its first
slice's ``--init`` re-tables the gains; quality.py), e.g. to widen the span of file sizes q0–q6.

Weights in the middle of the campaign are at the full learning rate, which costs R-D against
an lr-decayed endpoint (mbt2018-mean at 4,441 campaign steps measured +9.1 % BD-rate against
its decayed start). So a stretch ends with ``--snapshot``: each architecture's weights are
branched off (``--init``, the campaign's checkpoint untouched) for ``SNAPSHOT_STEPS`` steps
(``--snapshot-steps``: more where the RUN folder will not survive, since the next stretch then
restarts from the embedded branch) at lr 5e-5 into ``RUN/snapshot-<architecture>.safetensors``;
those are what is evaluated (``shallowcodec eval --weights``) and, when better by ≥ 3 % BD-rate, embedded
(``scripts/embed_weights.py``; benchmarks/README.md).
"""

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from shallowcodec.model_files import embedded_models, model_card
from shallowcodec.quality import LmbdaScale
from shallowcodec.train import LOW_RATE_QUALITIES, cpu_has_native_bf16

PLANNED_STEPS = 56_000  # ≈ 12 core-hours per architecture at 256² on this CPU (the fallback budget)
CROP_256_FROM = 20_000
SNAPSHOT_STEPS = 300
#: Trained architectures and their shares of the campaign's core-hours (the default model first).
SHARES = {"two-layer": 2, "jpeg-like": 1}
ARCHITECTURES = tuple(SHARES)


def start_record(run: Path) -> dict:
    """The RUN folder's ``start.json`` (``first_step``, optional ``lmbda_scale``); empty for a new campaign."""
    path = run / "start.json"
    return json.loads(path.read_text()) if path.exists() else {}


def first_step(run: Path) -> int:
    """The campaign step at which this RUN folder started (``--first-step``; 0 for a new campaign)."""
    return start_record(run).get("first_step", 0)


def done_steps(run: Path, architecture: str) -> int:
    """Campaign steps of an architecture so far (``first_step`` before its first slice)."""
    weights = run / f"{architecture}.safetensors"
    return first_step(run) + (model_card(weights)["steps"] if weights.exists() else 0)


def share_used(run: Path, architecture: str) -> float:
    """Core-hours an architecture trained in this RUN folder, divided by its share (:data:`SHARES`)."""
    weights = run / f"{architecture}.safetensors"
    if not weights.exists():
        return 0.0
    start = model_card(run / f"init-{architecture}.safetensors").get("core_hours", 0.0)
    return (model_card(weights).get("core_hours", 0.0) - start) / SHARES[architecture]


def precision() -> list[str]:
    """``--bf16`` where the CPU computes bfloat16 natively, else nothing (fp32: emulated bf16 is
    7.5× slower than fp32 on an AVX2 CPU; benchmarks/results/train-speed-avx2.txt)."""
    return ["--bf16"] if cpu_has_native_bf16() else []


def recipe(rate_weighting: float) -> list[str]:
    """The trainer's variable-rate options of every slice and snapshot: mixed quantization, bf16
    where native, λ^-``rate_weighting`` loss weights, the low qualities drawn twice as often."""
    return ["--quantizer", "mixed", *precision(), "--rate-weighting", f"{rate_weighting:g}",
            "--train-qualities", *map(str, LOW_RATE_QUALITIES)]


def slice_argv(run: Path, architecture: str, data: list[Path], minutes: float, threads: int,
               rate_weighting: float) -> list[str]:
    """Trainer arguments of one slice (resuming the architecture's checkpoint when it has one)."""
    init = run / f"init-{architecture}.safetensors"
    out = run / f"{architecture}.safetensors"
    ckpt = Path(f"{out}.ckpt")
    crop = 128 if done_steps(run, architecture) < CROP_256_FROM else 256
    config = {k: v for k, v in model_card(init)["config"].items() if k != "variable_rate"}
    if "lmbda_scale" in start_record(run):
        config["lmbda_scale"] = start_record(run)["lmbda_scale"]
    return [sys.executable, "-m", "shallowcodec.train", "--model", architecture, "--variable-rate",
            "--init", str(init), "--data", *map(str, data), "--out", str(out), "--config", json.dumps(config),
            "--steps", str(PLANNED_STEPS - first_step(run)), "--crop", str(crop), "--batch-size", "8", "--lr", "5e-4",
            *recipe(rate_weighting),
            "--threads", str(threads), "--workers", "1", "--max-minutes", f"{minutes:g}",
            "--summary", str(out.with_suffix(".json")), "--quiet", "--force",
            *(["--resume", str(ckpt)] if ckpt.exists() else [])]


def snapshot_argv(run: Path, architecture: str, data: list[Path], threads: int, rate_weighting: float,
                  steps: int = SNAPSHOT_STEPS) -> list[str]:
    """Trainer arguments of the lr-decayed evaluation branch (``steps`` at lr 5e-5) of an architecture's
    campaign weights."""
    weights = run / f"{architecture}.safetensors"
    crop = 128 if done_steps(run, architecture) < CROP_256_FROM else 256
    return [sys.executable, "-m", "shallowcodec.train", "--model", architecture, "--variable-rate",
            "--init", str(weights), "--data", *map(str, data), "--out", str(run / f"snapshot-{architecture}.safetensors"),
            "--steps", str(steps), "--crop", str(crop), "--batch-size", "8", "--lr", "5e-5",
            *recipe(rate_weighting),
            "--threads", str(threads), "--workers", "1", "--quiet", "--force"]


def status(run: Path) -> None:
    """Print each architecture's campaign steps and cumulative core-hours (or that none has trained)."""
    if not any((run / f"{a}.safetensors").exists() for a in ARCHITECTURES):
        print(f"{run}: no campaign slice has finished here yet")
    for architecture in ARCHITECTURES:
        weights = run / f"{architecture}.safetensors"
        if weights.exists():
            card = model_card(weights)
            print(f"{architecture}: {done_steps(run, architecture)}/{PLANNED_STEPS} campaign steps, "
                  f"{card['total_steps']} in all, "
                  f"{card.get('core_hours', 0):.2f} core-hours")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="campaign folder")
    parser.add_argument("--data", type=Path, nargs="+", help="folders of training images")
    parser.add_argument("--slice-minutes", type=float, default=15.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=1, choices=range(1, len(ARCHITECTURES) + 1),
                        help="slices trained at once, each its own process (2 on 2 cores: 2.6× fp32 1×1)")
    parser.add_argument("--rate-weighting", type=float, default=1.0, metavar="ALPHA",
                        help="the trainer's --rate-weighting (per-image loss weight λ^-ALPHA; default 1.0, "
                             "the campaign's since stretch 8; 0: uniform)")
    parser.add_argument("--first-step", type=int, metavar="N",
                        help="a new RUN folder continues a campaign whose folder was lost at step N of the plan")
    parser.add_argument("--lmbda-scale", type=float, nargs=2, metavar=("L0", "R"),
                        help="with --first-step: move every model to the λ scale λ(q) = L0·R^q")
    parser.add_argument("--status", action="store_true", help="print progress and exit")
    parser.add_argument("--snapshot", action="store_true",
                        help="write the lr-decayed evaluation branch of each trained architecture "
                             "(--parallel of them at once)")
    parser.add_argument("--snapshot-steps", type=int, default=SNAPSHOT_STEPS,
                        help=f"steps of that branch (default {SNAPSHOT_STEPS})")
    args = parser.parse_args()
    if args.status:
        if not args.run.is_dir():
            parser.error(f"no campaign folder {args.run}")
        return status(args.run)
    if args.data is None:
        parser.error("--data is required to train")
    if not 0 <= args.rate_weighting <= 2:
        parser.error(f"--rate-weighting must be in [0, 2], got {args.rate_weighting:g}")
    if args.snapshot:
        trained = [a for a in ARCHITECTURES if (args.run / f"{a}.safetensors").exists()]
        for i in range(0, len(trained), args.parallel):
            branches = [subprocess.Popen(snapshot_argv(args.run, a, args.data, args.threads, args.rate_weighting,
                                                       args.snapshot_steps)) for a in trained[i:i + args.parallel]]
            if any([p.wait() for p in branches]):
                sys.exit("campaign: a snapshot branch failed")
        return None
    begin = None  # a new folder's start.json, written once every argument is known to be good
    if args.first_step is not None:
        if any((args.run / f"{a}.safetensors").exists() for a in ARCHITECTURES) or (args.run / "start.json").exists():
            parser.error(f"--first-step starts a new campaign folder; {args.run} already has one")
        if not 0 <= args.first_step < PLANNED_STEPS:
            parser.error(f"--first-step must be in 0–{PLANNED_STEPS - 1}")
        begin = {"first_step": args.first_step}
        if args.lmbda_scale is not None:
            try:
                LmbdaScale.parse(args.lmbda_scale)
            except ValueError as error:
                parser.error(str(error))
            begin["lmbda_scale"] = args.lmbda_scale
    elif args.lmbda_scale is not None:
        parser.error("--lmbda-scale starts a new campaign folder: give --first-step too")
    args.run.mkdir(parents=True, exist_ok=True)
    if begin:
        (args.run / "start.json").write_text(json.dumps(begin) + "\n")
    for architecture, path in embedded_models().items():
        init = args.run / f"init-{architecture}.safetensors"
        if architecture in ARCHITECTURES and not init.exists():
            shutil.copyfile(path, init)

    trainer: list[subprocess.Popen] = []
    stopping = []

    def stop(*_):
        stopping.append(True)
        for p in trainer:
            p.send_signal(signal.SIGTERM)  # the trainer checkpoints after its current step

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping:
        pending = [a for a in ARCHITECTURES if done_steps(args.run, a) < PLANNED_STEPS]
        if not pending:
            break
        # budgets by share: the architectures furthest behind theirs, one per process
        chosen = sorted(pending, key=lambda a: share_used(args.run, a))[: args.parallel]
        start = time.time()
        trainer[:] = [subprocess.Popen(slice_argv(args.run, a, args.data, args.slice_minutes, args.threads,
                                                  args.rate_weighting)) for a in chosen]
        codes = [p.wait() for p in trainer]
        for architecture, code in zip(chosen, codes):
            line = {"architecture": architecture, "start": start, "seconds": round(time.time() - start, 1),
                    "exit": code, "steps": done_steps(args.run, architecture)}
            with open(args.run / "log.jsonl", "a") as log:
                log.write(json.dumps(line) + "\n")
            print(json.dumps(line), flush=True)
        if 2 in codes and not stopping:  # bad usage (e.g. a checkpoint of another recipe) fails every time
            sys.exit("campaign: a slice refused its arguments (its message is above): fix them or start a new --run "
                     "folder with --first-step")
        if any(codes) and not stopping:
            time.sleep(60)  # a failed slice (e.g. an interrupted edit of the code) is retried


if __name__ == "__main__":
    main()
