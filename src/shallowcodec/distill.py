"""Distillation of a cheap hyper-synthesis h_s: only h_s learns, on cached latents.

The paper's h_s (30,355 FLOPs/pixel at M=320) costs more than the shallow g_s it serves. The cheap
h_s is one ConvT(M→2M, k, s4) (transforms.HyperSynthesis, ``kind="cheap"``; FLOPs/pixel at M=320:
1,602 at k4, 3,602 at k6). Starting from trained weights, the same architecture is built with the cheap h_s; g_a, h_a,
g_s, the factorized prior of z and the gain units are copied and frozen, and the new h_s is trained
to minimise the rate of y alone::

    x ──g_a──► y ──h_a──► z                         (once per crop, cached: :func:`latent_cache`)
    z_g = γ_z·z,  ẑ_g = round(z_g − m) + m          (m: the prior's medians, the decoder's rounding)
    μ, σ = γ_y·h_s(γ⁻¹_z·ẑ_g)                       (fixed point, straight-through: hyperprior.hyper_synthesis)
    loss = bits of γ_y·y + U(−½, ½) under N(μ, σ) / pixels     (bpp of y; one quality q per crop)

Latents are 1/256 (y) and 1/4096 (z) of the pixels, so after the one-off cache a step costs a
fraction of a training step. The result is a weights file of the cheap architecture (its config
JSON has ``hyper_synthesis`` and ``hyper_kernel``), ready for a short joint fine-tune with
``shallowcodec train --variable-rate --init OUT`` (which takes the config from the file).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from shallowcodec.architectures import ModelConfig
from shallowcodec.atomic import atomic_write, check_output
from shallowcodec.checkpoint import prior_training
from shallowcodec.config import TrainArgumentError
from shallowcodec.data import RandomCrops, build_cache, crop_sources, default_cache
from shallowcodec.hyperprior import ShallowHyperprior
from shallowcodec.train import sample_qualities
from shallowcodec.zoo import LoadedModel, build_model, load_weights, save_weights

#: Crops per g_a call while the latents are cached.
CACHE_BATCH = 8
#: The learning rate drops ×0.1 after this fraction of the run (of --steps or --max-minutes), as in train.py.
DECAY_AT = 0.8


@dataclass(frozen=True)
class DistillConfig:
    """One distillation job (fields named like the options of ``shallowcodec distill``).

    ``weights``: the source weights file; ``out``: the weights to write; ``data``: a folder of training
    images; ``crops`` random ``crop``² crops are cached as latents under ``cache`` (default: the folder
    of ``out``; the decoded images, downscaled to ``max_side``, in ``cache``/images, or without
    ``cache`` in train's image cache); ``steps`` Adam steps of ``batch_size`` cached crops at ``lr``
    (×0.1 after 80 %), or fewer when ``max_minutes`` runs out; ``threads``: torch threads (0: PyTorch's
    default).
    """

    weights: Path
    out: Path
    data: Path
    steps: int = 3000
    crops: int = 2000
    crop: int = 256
    hyper_kernel: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    max_minutes: float | None = None
    cache: Path | None = None
    max_side: int = 512
    threads: int = 0
    seed: int = 0
    quiet: bool = False
    force: bool = False


def check_config(cfg: DistillConfig) -> None:
    """Refuse values no distillation can run with and an --out that would replace a file.

    Raises:
        TrainArgumentError: a value out of range (bad usage); ValueError: such an --out (one line each).
    """
    if cfg.steps < 1 or cfg.crops < 1 or cfg.batch_size < 1 or cfg.threads < 0:
        raise TrainArgumentError("--steps, --crops and --batch-size must be at least 1, --threads not negative")
    if cfg.crop <= 0 or cfg.crop % 64:
        raise TrainArgumentError(f"--crop must be a positive multiple of 64, got {cfg.crop}")
    if not cfg.lr > 0 or (cfg.max_minutes is not None and not cfg.max_minutes > 0):
        raise TrainArgumentError("--lr and --max-minutes must be positive numbers")
    if Path(cfg.out).resolve() == Path(cfg.weights).resolve():
        raise ValueError(f"--out {cfg.out} would replace the weights it starts from")
    check_output(cfg.out, cfg.force)


def cheap_model(source: LoadedModel, hyper_kernel: int) -> tuple[ShallowHyperprior, ModelConfig]:
    """The source's architecture with a fresh cheap h_s (ConvT(M→2M, k=hyper_kernel, s4)) and its config.

    Every parameter outside h_s (g_a, h_a, g_s, the factorized prior, the gains) is copied from the
    source and frozen (``requires_grad=False``); only ``h_s.layers.0.*`` train.
    """
    config = source.config.with_values(hyper_synthesis="cheap", hyper_kernel=hyper_kernel)
    model = build_model(config).eval()
    params = dict(source.model.named_parameters())
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith("h_s."):
                param.copy_(params[name])
                param.requires_grad_(False)
    return model, config


def latent_cache(model: ShallowHyperprior, cfg: DistillConfig, weights_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Ungained latents of ``cfg.crops`` random crops: y = g_a(x) (n, M, c/16, c/16) and z = h_a(y) (n, M, c/64, c/64).

    float32 ``.npy`` files in ``cfg.cache`` (default: the folder of ``cfg.out``), named by the source
    weights, the data folder, crop size, count and seed, so that a rerun (e.g. another kernel size)
    reuses them; computed once otherwise (g_a and h_a under no_grad, :data:`CACHE_BATCH` crops a call)
    and written atomically. Crops come from data.py's image cache (random positions and flips), kept in
    ``cfg.cache``/images when ``cfg.cache`` is given, else where ``shallowcodec train`` keeps it.

    Raises:
        ValueError: no image of at least crop × crop pixels in ``cfg.data``.
    """
    digest = hashlib.sha256(str(Path(cfg.data).resolve()).encode()).hexdigest()[:8]
    stem = f"latents-{weights_id:08x}-{digest}-c{cfg.crop}-n{cfg.crops}-s{cfg.seed}"
    folder = Path(cfg.cache or Path(cfg.out).resolve().parent)
    paths = folder / f"{stem}.y.npy", folder / f"{stem}.z.npy"
    if all(p.exists() for p in paths):
        return np.load(paths[0], mmap_mode="r"), np.load(paths[1], mmap_mode="r")
    images = folder / "images" if cfg.cache else default_cache(cfg.data, cfg.max_side)
    entries = build_cache(cfg.data, images, cfg.max_side, progress=not cfg.quiet)
    sources = crop_sources(entries, cfg.crop)
    if not sources:
        raise ValueError(f"no image of at least {cfg.crop}×{cfg.crop} pixels in {cfg.data}")
    crops = iter(RandomCrops(sources, cfg.crop, seed=cfg.seed))
    ys, zs = [], []
    with torch.no_grad(), tqdm(total=cfg.crops, desc="caching latents", disable=cfg.quiet) as bar:
        for done in range(0, cfg.crops, CACHE_BATCH):
            x = torch.stack(list(islice(crops, min(CACHE_BATCH, cfg.crops - done)))).float().div_(255)
            ys.append(model.g_a(x))
            zs.append(model.h_a(ys[-1]))
            bar.update(len(x))
    folder.mkdir(parents=True, exist_ok=True)
    for path, parts in zip(paths, (ys, zs)):
        atomic_write(path, lambda f, parts=parts: np.save(f, torch.cat(parts).numpy()))
    return np.load(paths[0], mmap_mode="r"), np.load(paths[1], mmap_mode="r")


def init_bias(model: ShallowHyperprior, y: np.ndarray) -> None:
    """Start the cheap h_s at μ = the per-channel mean of y and log σ = log of its standard deviation (ungained).

    The weights keep PyTorch's small random initialization, so the first steps already code y at
    roughly the rate of a per-channel Gaussian instead of N(0, 1).
    """
    y = torch.from_numpy(np.array(y[: min(len(y), 256)], dtype=np.float32))
    bias = model.h_s.layers[0].bias
    with torch.no_grad():
        bias.copy_(torch.cat([y.mean(dim=(0, 2, 3)), y.std(dim=(0, 2, 3)).clamp_min(0.11).log()]))


def y_rate(model: ShallowHyperprior, y: Tensor, z: Tensor, quality: Tensor | None,
           generator: torch.Generator | None = None) -> Tensor:
    """Mean bits per image pixel of y (the y term of bpp) under the h_s's Gaussian, differentiable in h_s.

    Args:
        y: ungained g_a outputs (B, M, h, w); z: ungained h_a outputs (B, M, h/4, w/4).
        quality: (B,) qualities (variable-rate model) or None (fixed-λ).
        generator: the uniform noise's random stream (None: torch's global one).

    Returns:
        a scalar: Σ bits of y_g + U(−½, ½) / (B · 256 · h · w), y_g = γ_y·y, with μ, σ from
        ẑ_g = round(γ_z·z − m) + m, the rounding the decoder sees.
    """
    gains = model.gains(quality, len(y))
    y_g, z_g = (y, z) if gains is None else (y * gains.y, z * gains.z)
    medians = model.z_medians()
    mu, sigma = model.hyper_synthesis(torch.round(z_g - medians) + medians, quality)
    noise = torch.rand(y_g.shape, generator=generator, dtype=y_g.dtype) - 0.5
    return model.y_bits(y_g + noise, mu, sigma).mean() / (256 * y.shape[-2] * y.shape[-1])


def lr_at(progress: float, lr: float) -> float:
    """The learning rate at ``progress`` ∈ [0, 1] of the run: ``lr``, × 0.1 from :data:`DECAY_AT` on."""
    return lr * 0.1 if progress >= DECAY_AT else lr


def fit_h_s(model: ShallowHyperprior, y: np.ndarray, z: np.ndarray, cfg: DistillConfig) -> dict:
    """Train h_s (Adam) on random batches of the cached (y, z), one random quality 0–6 per crop.

    Stops after ``cfg.steps`` steps or ``cfg.max_minutes``, whichever comes first; the schedule's
    progress is the larger of the two fractions.

    Returns:
        {"steps", "seconds", "bpp_y_first", "bpp_y_last"}: steps done, seconds, mean y rate (bpp) of the
        first and of the last 10 % of steps (at least one step each).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    budget = cfg.max_minutes * 60 if cfg.max_minutes else float("inf")
    start, rates = time.perf_counter(), []
    bar = tqdm(total=cfg.steps, desc="distilling h_s", disable=cfg.quiet, dynamic_ncols=True)
    while len(rates) < cfg.steps and time.perf_counter() - start < budget:
        index = np.sort(rng.choice(len(y), size=min(cfg.batch_size, len(y)), replace=False))
        quality = sample_qualities(len(index), generator)[0] if model.variable_rate else None
        progress = max(len(rates) / cfg.steps, (time.perf_counter() - start) / budget)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(progress, cfg.lr)
        loss = y_rate(model, torch.from_numpy(y[index]), torch.from_numpy(z[index]), quality, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        rates.append(loss.item())
        bar.update()
        bar.set_postfix(bpp_y=f"{rates[-1]:.4f}", refresh=False)
    bar.close()
    tail = max(1, len(rates) // 10)
    return {"steps": len(rates), "seconds": time.perf_counter() - start,
            "bpp_y_first": float(np.mean(rates[:tail])), "bpp_y_last": float(np.mean(rates[-tail:]))}


def distill(cfg: DistillConfig) -> dict:
    """Run one distillation job: cheap model from ``cfg.weights``, latent cache, :func:`fit_h_s`, save ``cfg.out``.

    The weights (zoo.save_weights, fp16, atomic) record ``init`` (the source file's name), ``steps``,
    ``distill_seconds`` (steps only), ``cache_seconds``, ``crops``, ``crop``, ``batch_size``, ``lr``,
    ``bpp_y_first`` / ``bpp_y_last`` and the cumulative totals of the source (total_steps,
    total_train_seconds, core_hours) plus this job's.

    Returns:
        :func:`fit_h_s`'s summary with ``cache_seconds`` and ``out``.

    Raises:
        ValueError: bad options or data (one line); zoo.ModelNotFoundError: unreadable --weights;
            OSError: an output cannot be written.
    """
    check_config(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    source = load_weights(cfg.weights)
    model, config = cheap_model(source, cfg.hyper_kernel)
    started = time.perf_counter()
    y, z = latent_cache(model, cfg, source.weights_id)
    cache_seconds = time.perf_counter() - started
    init_bias(model, y)
    summary = {**fit_h_s(model, y, z, cfg), "cache_seconds": round(cache_seconds, 1)}
    save_weights(Path(cfg.out), model, source.architecture, config, source.quality, source.lmbda,
                 **_facts(cfg, summary))
    return {**summary, "out": str(cfg.out)}


def _facts(cfg: DistillConfig, summary: dict) -> dict:
    """Training facts of the distilled weights, cumulative over the source's (checkpoint.prior_training)."""
    seconds = summary["seconds"] + summary["cache_seconds"]
    prior = prior_training(cfg.weights)
    hours = {"core_hours": prior["core_hours"] + seconds * torch.get_num_threads() / 3600, "gpu_hours": prior["gpu_hours"]}
    return {"init": Path(cfg.weights).name, "steps": summary["steps"], "distill_seconds": round(summary["seconds"], 1),
            "cache_seconds": summary["cache_seconds"], "crops": cfg.crops, "crop": cfg.crop,
            "batch_size": cfg.batch_size, "lr": cfg.lr, "bpp_y_first": round(summary["bpp_y_first"], 5),
            "bpp_y_last": round(summary["bpp_y_last"], 5), "total_steps": prior["total_steps"] + summary["steps"],
            "total_train_seconds": round(prior["total_train_seconds"] + seconds, 1),
            **{k: round(v, 6) for k, v in hours.items() if v > 0}}


def main_line(summary: dict) -> str:
    """The one line ``shallowcodec distill`` prints."""
    return (f"{summary['out']}: {summary['steps']} steps in {summary['seconds']:.0f} s (+{summary['cache_seconds']:.0f} s "
            f"caching latents), y rate {summary['bpp_y_first']:.4f} → {summary['bpp_y_last']:.4f} bpp")

