"""Training: the paper's rate–distortion loss and schedules, the optimization step and the training loop.

Recipe (Yang & Mandt 2023, Sec. 4, and their released code mandt-lab/shallow-ntc):

* loss = bpp + λ · MSE, MSE on the 0–255 scale; for λ ≤ 0.01 the first 20 % of steps use 10 λ;
* Adam, linear warm-up over the first 2 % of steps, learning rate × 0.1 after 80 %;
  global gradient-norm clip 1.0;
* quantization surrogate: uniform noise ("noise", the paper's default) or "mixed";
* the factorized prior's quantiles have their own auxiliary loss and optimizer (CompressAI).

Schedules are functions of the step over the *planned* total: ``--steps``, or with ``--steps 0
--max-minutes M`` the total that fits M minutes at the speed measured over steps 6–20 (the first
20 steps run at the very start of the warm-up, lr ≈ 0). The checkpoint stores the planned total,
so a run stopped by ``--max-minutes`` (or SIGTERM / SIGINT) and continued with ``--resume``
follows the same schedule.

The job's parts live beside this module: config.py (arguments → :class:`TrainConfig`), data.py
(image cache, crops, loader), distributed.py (torchrun processes, rank 0), checkpoint.py
(checkpoints, --init, cumulative totals). Training runs in channels_last; ``--device cuda`` trains on a GPU;
``--bf16`` runs g_a, g_s, h_a and h_s under bfloat16 autocast while the entropy models stay in
fp32 (hyperprior.py); ``--summary FILE`` writes the run's speed (after 3 warm-up steps) and last
loss terms as JSON.

Run as ``shallowcodec train ...``, ``python -m shallowcodec.train ...`` or under torchrun.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from shallowcodec.architectures import ModelConfig
from shallowcodec.atomic import atomic_write
from shallowcodec.checkpoint import Progress, restore, save_checkpoint, save_trained_weights
from shallowcodec.config import (
    FIT_AFTER,
    WARMUP_STEPS,
    TrainArgumentError,
    TrainConfig,
    build_parser,
    builder_config,
    config_from_args,
)
from shallowcodec.data import data_stream
from shallowcodec.distributed import Process, end_process, mean_over_processes, rank0_decides, start_process
from shallowcodec.hyperprior import ShallowHyperprior
from shallowcodec.metrics import psnr_of_mse
from shallowcodec.model_files import ModelNotFoundError
from shallowcodec.quality import MAX_QUALITY, PAPER_SCALE, LmbdaScale
from shallowcodec.zoo import build_model

#: With ``--steps 0``, the speed that fits the planned total leaves out the first FIT_SKIP steps (start-up).
FIT_SKIP = 5
#: Schedule total until then: the lr stays at the start of its warm-up (≈ 0).
UNPLANNED = 10**9
#: The campaign's ``--train-qualities``: q0 and q1 drawn twice as often as q2–q6. With rate
#: weighting 1.0 it brings q1 within 0.3 dB of a fixed-λ model at equal steps (benchmarks/README.md
#: "Variable rate against fixed-λ models").
LOW_RATE_QUALITIES = (0, 0, 1, 1, 2, 3, 4, 5, 6)


# --- loss and schedules --------------------------------------------------------------------------


def rd_loss(out: dict, x: Tensor, lmbda: float | Tensor, weight: Tensor | None = None) -> dict[str, Tensor]:
    """Rate–distortion loss mean over images of bpp + λ·MSE (paper Eq. 1; MSE on the 0–255 scale).

    Args:
        out: model output with ``x_hat`` (B, 3, H, W) and ``likelihoods`` {"y", "z"}.
        x: (B, 3, H, W) target in [0, 1].
        lmbda: λ, one for the batch or one per image (B,) (variable-rate training).
        weight: (B,) per-image loss weights (:func:`rate_weights`), or None for 1.

    Returns:
        dict of scalars (means over the batch): ``loss``, ``bpp`` (bits per pixel, y + z),
        ``mse`` (0–255 scale), ``psnr`` (dB, peak 255, of the mean MSE).
    """
    num_pixels = x.shape[2] * x.shape[3]
    bits = sum(-torch.log2(lk).flatten(1).sum(1) for lk in out["likelihoods"].values())
    bpp = bits / num_pixels
    mse = ((out["x_hat"] - x) ** 2).mean(dim=(1, 2, 3)) * 255**2
    loss = bpp + lmbda * mse
    loss = (loss if weight is None else weight * loss).mean()
    bpp, mse = bpp.mean(), mse.mean()
    return {"loss": loss, "bpp": bpp, "mse": mse, "psnr": psnr_of_mse(mse.detach())}


def lmbda_at(step: int, steps: int, lmbda: float | Tensor, from_scratch: bool = True) -> float | Tensor:
    """λ schedule: 10 λ for the first 20 % of steps when λ ≤ 0.01, else λ (element-wise for a tensor).

    The boost keeps low-rate models from collapsing early; a run fine-tuned from trained
    weights (``from_scratch=False``) does not need it and uses λ throughout.
    """
    if not (from_scratch and step < 0.2 * steps):
        return lmbda
    if isinstance(lmbda, Tensor):
        return torch.where(lmbda <= 0.01, 10 * lmbda, lmbda)
    return 10 * lmbda if lmbda <= 0.01 else lmbda


def sample_qualities(batch: int, generator: torch.Generator | None = None,
                     scale: LmbdaScale = PAPER_SCALE, qualities: tuple[int, ...] | None = None) -> tuple[Tensor, Tensor]:
    """Variable-rate training: one integer quality per image, uniform over 0–6 (or over the
    entries of ``qualities``: a repeated quality is drawn that much more often; one quality is
    a fixed-λ fine-tune of a variable-rate model), and its λ.

    Returns:
        (quality (B,) float, λ (B,)), λ = λ₀ · r^quality of the model's λ ``scale``.
    """
    drawn = torch.tensor(qualities or range(MAX_QUALITY + 1), dtype=torch.float32)
    quality = drawn[torch.randint(0, len(drawn), (batch,), generator=generator)]
    return quality, scale(quality)


def rate_weights(lmbda: Tensor, alpha: float, scale: LmbdaScale = PAPER_SCALE) -> Tensor:
    """Per-image loss weights λ^-α, normalized to mean 1 over the qualities 0–6 of ``scale``.

    Variable-rate training sums images of every λ, and a high-λ image's loss (bpp + λ·MSE) is
    ≈ 8× a low-λ image's (embedded two-layer on photos24: 3.2 at q6, 0.38 at q0, ∝ λ^0.5), so the
    shared transforms serve the high rates; α = 0.5 gives every quality about the same weight.

    Args:
        lmbda: (B,) λ of each image.
        alpha: α ≥ 0 (0: all weights 1).
        scale: the model's λ scale (quality.LmbdaScale).
    """
    mean = sum(lm**-alpha for lm in scale.lmbdas()) / (MAX_QUALITY + 1)
    return lmbda**-alpha / mean


def lr_at(step: int, steps: int, lr: float) -> float:
    """Learning rate: linear warm-up over the first 2 % of steps, × 0.1 after 80 %."""
    warmup = max(1, int(0.02 * steps))
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.1 if step >= 0.8 * steps else lr


def fit_steps(step: int, seconds_per_step: float, seconds_left: float) -> int:
    """Planned total for a time budget: ``step`` done plus the steps that fit ``seconds_left``.

    3 % of the time left is kept for checkpoints and speed noise, so that the schedule (its
    lr decay included) ends before ``--max-minutes`` stops the run.
    """
    return step + max(0, int(0.97 * seconds_left / seconds_per_step))


# --- the optimization step -----------------------------------------------------------------------


def make_optimizers(model: ShallowHyperprior, lr: float) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for the network and a separate Adam (lr 1e-3) for the prior's quantiles.

    CompressAI's convention: parameters named ``*.quantiles`` form the aux group, all others the
    network group (in the model's parameter order, which checkpoints rely on).

    Raises:
        ValueError: a parameter would be in no group or in both (CompressAI's partition check).
    """
    named = list(model.named_parameters())
    net = [n for n, _ in named if not n.endswith(".quantiles")]
    aux = [n for n, _ in named if n.endswith(".quantiles")]
    if set(net) & set(aux) or set(net) | set(aux) != {n for n, _ in named}:
        raise ValueError("the network and aux parameter groups must partition the model's parameters")
    params = dict(named)
    return (torch.optim.Adam([params[n] for n in net], lr=lr),
            torch.optim.Adam([params[n] for n in aux], lr=1e-3))


def train_step(net: torch.nn.Module, model: ShallowHyperprior, optimizers: tuple, x: Tensor, step: int,
               planned: int, cfg: TrainConfig, world_size: int = 1) -> dict[str, Tensor]:
    """One step on a batch x (B, 3, crop, crop) in [0, 1]; returns :func:`rd_loss`'s terms.

    The R-D loss (forward under bf16 autocast with ``cfg.bf16``) is back-propagated through
    ``net`` (the model, or its DistributedDataParallel wrapper, which averages the gradients over
    processes), clipped, and Adam steps. Then the quantiles' aux loss: its gradients are averaged
    over processes too (:func:`_add_aux_grads`), so that every rank keeps the same quantiles.
    """
    optimizer, aux_optimizer = optimizers
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, planned, cfg.lr)
    quality, lmbda = None, cfg.lmbda
    if cfg.variable_rate:
        quality, lmbda = sample_qualities(len(x), scale=model.gain.scale, qualities=cfg.train_qualities)
        quality, lmbda = quality.to(x.device), lmbda.to(x.device)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        out = net(x, quantizer=cfg.quantizer, quality=quality)
    weight = rate_weights(lmbda, cfg.rate_weighting, model.gain.scale) if cfg.variable_rate and cfg.rate_weighting \
        else None
    terms = rd_loss(out, x, lmbda_at(step, planned, lmbda, from_scratch=cfg.init is None and cfg.init_shared is None),
                    weight)
    optimizer.zero_grad(set_to_none=True)
    aux_optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
    optimizer.step()
    _add_aux_grads(model, aux_optimizer, world_size)
    aux_optimizer.step()
    return terms


def _add_aux_grads(model: ShallowHyperprior, aux_optimizer: torch.optim.Optimizer, world_size: int) -> None:
    """Add the gradients of the quantiles' aux loss, averaged over the processes (all-reduce).

    The gradients come from ``torch.autograd.grad``, not ``backward()``, which would fire
    DistributedDataParallel's gradient hooks outside its forward–backward pair (DDP would then
    count the quantiles as used in the next step and fail on their cleared gradients).
    """
    params = [p for group in aux_optimizer.param_groups for p in group["params"]]
    for p, grad in zip(params, torch.autograd.grad(model.aux_loss(), params)):
        grad = mean_over_processes(grad, world_size)
        p.grad = grad if p.grad is None else p.grad + grad


def _seed(*keys: int) -> int:
    """A 64-bit seed mixed from non-negative integers (numpy SeedSequence)."""
    return int(np.random.SeedSequence(keys).generate_state(1, np.uint64)[0])


# --- the training job ----------------------------------------------------------------------------


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bfloat16 natively (the AVX512-BF16 or AMX-BF16 flag; False where
    ``cpuinfo`` is missing). Elsewhere PyTorch emulates it: ``--bf16`` then runs at 0.13× the
    steps/s of fp32 (an AVX2 EPYC; where native, 1.5×: benchmarks/README.md "Training speed")."""
    try:
        flags = cpuinfo.read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) one training job, alone or as one torchrun process; returns the weights path.

    Only rank 0 writes the weights (and checkpoints, and ``--summary``).

    Raises:
        ValueError: a bad --config, --init, --resume or data folder (one-line message);
        ModelNotFoundError: unreadable --init weights; OSError: an output cannot be written.
    """
    proc = start_process(cfg.device)
    try:
        _train(cfg, proc)
    finally:
        end_process()
    return Path(cfg.out)


def _build_model(cfg: TrainConfig, proc: Process) -> tuple[ShallowHyperprior, ModelConfig]:
    """The model (seeded: the same initial parameters on every rank) on the process's device, and its
    config; channels_last (1.13× the steps/s of NCHW on this CPU in fp32, 1.4× under bf16:
    benchmarks/train_speed.py) and, on CUDA, autotuned convolutions."""
    torch.manual_seed(cfg.seed)
    config = builder_config(cfg)  # ValueError: a --config that the model does not take
    model = build_model(config).to(proc.device, memory_format=torch.channels_last)
    if proc.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one crop size throughout
    return model, config


def _train(cfg: TrainConfig, proc: Process) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.bf16 and proc.device.type == "cpu" and proc.main and not cpu_has_native_bf16():
        print("shallowcodec train: this CPU has no native bfloat16 (AVX512-BF16 / AMX): --bf16 is emulated "
              "and several times slower than fp32", file=sys.stderr)
    model, config = _build_model(cfg, proc)
    optimizers = make_optimizers(model, cfg.lr)
    done, init = restore(cfg, model, optimizers, proc)
    cfg = replace(cfg, init=init)  # a resumed fine-tune keeps the checkpoint's --init
    if done.planned is None and not cfg.max_minutes:
        raise ValueError("--steps 0 fits the schedule to a time budget: give --max-minutes")
    torch.manual_seed(_seed(cfg.seed, proc.rank, done.step))  # qualities and quantization noise differ per rank
    batches = data_stream(cfg, proc, done.step)
    net = model if proc.world_size == 1 else DistributedDataParallel(
        model, device_ids=[proc.device.index] if proc.device.type == "cuda" else None,
        find_unused_parameters=cfg.quantizer == "noise",  # the quantiles then take no part in the R-D loss
        forward_sync_buffers=False)   # the buffers (CDF tables, scale table) do not change in training
    model.train()
    ckpt_path = Path(cfg.checkpoint or f"{cfg.out}.ckpt")
    progress, ticks, terms = _loop(cfg, proc, net, model, optimizers, batches, done, ckpt_path)
    if proc.main:
        save_checkpoint(ckpt_path, model, optimizers, progress, cfg)
        save_trained_weights(cfg, proc, model.cpu().eval(), config, progress)
        if cfg.summary:
            write_summary(cfg.summary, cfg, proc, progress, ticks, terms)


def _loop(cfg: TrainConfig, proc: Process, net: torch.nn.Module, model: ShallowHyperprior,
          optimizers: tuple, batches: Iterator[Tensor], done: Progress, ckpt_path: Path) -> tuple[Progress, list, dict]:
    """Train until the planned total, ``--max-minutes`` or SIGTERM / SIGINT (rank 0 decides for all ranks).

    Returns:
        (progress at the end, ticks, last loss terms); ``ticks[k]`` is time.monotonic() at the end
        of step k of this run, ``ticks[0]`` at its start.
    """
    step, planned = done.step, done.planned
    desc = f"{cfg.model} " + ("q0–6" if cfg.variable_rate else f"λ={cfg.lmbda}")
    bar = tqdm(total=planned, initial=step, desc=desc, dynamic_ncols=True, disable=cfg.quiet or not proc.main,
               mininterval=1 if sys.stderr.isatty() else 30)
    ticks, terms = [time.monotonic()], {}
    last_save = ticks[0]
    interrupted = _stop_on_signals()
    while planned is None or step < planned:
        terms = train_step(net, model, optimizers, next(batches), step, planned or UNPLANNED, cfg, proc.world_size)
        step += 1
        ticks.append(time.monotonic())
        elapsed = ticks[-1] - ticks[0]
        if planned is None and len(ticks) == FIT_AFTER + 1:
            speed = (ticks[FIT_AFTER] - ticks[FIT_SKIP]) / (FIT_AFTER - FIT_SKIP)
            planned = fit_steps(step, speed, 60 * cfg.max_minutes - elapsed)
        timed_out = bool(cfg.max_minutes) and elapsed > 60 * cfg.max_minutes
        stop, planned = rank0_decides(proc, timed_out or interrupted.is_set(), planned)
        if not bar.disable:
            _show(bar, terms, planned)
        if proc.main and ticks[-1] - last_save > 60 * cfg.checkpoint_minutes:
            save_checkpoint(ckpt_path, model, optimizers, done.after(step, planned, elapsed, proc), cfg)
            last_save = time.monotonic()
        if stop:
            break
    bar.close()
    return done.after(step, planned, time.monotonic() - ticks[0], proc), ticks, terms


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so that a run stopped from outside ends after its current
    step with a checkpoint and weights, as ``--max-minutes`` does (main thread only)."""
    event = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: event.set())
    return event


def _show(bar: tqdm, terms: dict[str, Tensor], planned: int | None) -> None:
    bar.total = planned
    bar.update(1)
    bar.set_postfix(refresh=False, loss=f"{terms['loss'].item():.3f}", bpp=f"{terms['bpp'].item():.3f}",
                    psnr=f"{terms['psnr'].item():.2f}")


def write_summary(path: Path, cfg: TrainConfig, proc: Process, progress: Progress, ticks: list[float],
                  terms: dict[str, Tensor]) -> None:
    """JSON facts of this run: its steps and seconds, speed after the first WARMUP_STEPS steps
    (``steps_per_s``; ``pixels_per_s`` = steps/s × batch × crop² × processes; None for runs of
    ≤ WARMUP_STEPS steps), the last step's loss terms and the setup. Written atomically.

    Raises:
        OSError: the file cannot be written.
    """
    steps = len(ticks) - 1
    speed = (steps - WARMUP_STEPS) / (ticks[-1] - ticks[WARMUP_STEPS]) if steps > WARMUP_STEPS else None
    summary = {
        "steps": steps, "total_steps": progress.step, "planned_steps": progress.planned,
        "seconds": round(ticks[-1] - ticks[0], 3), "steps_per_s": speed,
        "pixels_per_s": speed and speed * cfg.batch_size * cfg.crop**2 * proc.world_size,
        **{k: v.item() for k, v in terms.items()},
        "model": cfg.model, "world_size": proc.world_size, "device": proc.device.type,
        "threads": torch.get_num_threads(), "batch_size": cfg.batch_size, "crop": cfg.crop, "bf16": cfg.bf16,
    }
    atomic_write(path, (json.dumps(summary, indent=2) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m shallowcodec.train`` (and torchrun); prints the weights path on rank 0.

    Returns:
        0, 2 after a one-line error on stderr for bad arguments, 1 for bad data, weights or files.
    """
    try:
        path = train(config_from_args(build_parser().parse_args(argv)))
    except TrainArgumentError as e:
        print(f"shallowcodec train: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError, ModelNotFoundError) as e:
        print(f"shallowcodec train: error: {e}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
