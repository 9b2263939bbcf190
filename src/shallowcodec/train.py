"""Training: the paper's rate–distortion loss and schedules, a cached crop pipeline, torchrun, GPUs.

Recipe (Yang & Mandt 2023, Sec. 4, and their released code mandt-lab/shallow-ntc):

* loss = bpp + λ · MSE, MSE on the 0–255 scale; for λ ≤ 0.01 the first 20 % of steps use 10 λ;
* Adam, linear warm-up over the first 2 % of steps, learning rate × 0.1 after 80 %;
  global gradient-norm clip 1.0;
* quantization surrogate: uniform noise ("noise", the paper's default) or "mixed";
* the factorized prior's quantiles have their own auxiliary loss and optimizer (CompressAI).

Schedules are functions of the step over the *planned* total: ``--steps``, or with ``--steps 0
--max-minutes M`` the total that fits M minutes at the speed measured over steps 6–20 (the first
20 steps run at the very start of the warm-up, lr ≈ 0). The checkpoint stores the planned total,
so a run stopped by ``--max-minutes`` and continued with ``--resume`` follows the same schedule.

Data pipeline:

* cache: every image of ``--data`` is decoded once, downscaled (Lanczos) to a shorter side of at
  most ``--max-side`` pixels and stored as an uncompressed (H, W, 3) uint8 ``.npy`` in ``--cache``
  (default ``~/.cache/shallowcodec/<sha256 of the data path, 12 hex>-<max side>``), keyed by file
  name, size and mtime; nothing is written into the data folder;
* :class:`RandomCrops`: an endless stream of random ``--crop`` squares with random horizontal
  flips, read from the memory-mapped cache, seeded per (seed, rank, worker, starting step);
* a DataLoader with ``--workers`` processes; the model sees float (B, 3, crop, crop) batches in
  [0, 1], B = ``--batch-size`` per process.

Processes and devices:

* ``torchrun --nproc_per_node=P -m shallowcodec.train ...`` trains with P processes under
  DistributedDataParallel (gloo on CPU, nccl with GPU LOCAL_RANK on CUDA); rank 0 writes
  checkpoints and weights and shows progress, and all ranks stop together;
* ``--device cuda`` trains on a GPU in channels_last; ``--bf16`` runs g_a, g_s, h_a and h_s under
  bfloat16 autocast while the entropy models stay in fp32 (hyperprior.py);
* the weights record world_size, device, threads and the cumulative cost, ``core_hours`` (CPU:
  seconds × threads × processes) or ``gpu_hours`` (seconds × processes), --init weights included;
  ``--summary FILE`` writes the run's speed (after 3 warm-up steps) and last loss terms as JSON.

Run as ``shallowcodec train ...``, ``python -m shallowcodec.train ...`` or under torchrun.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from shallowcodec.codec import image_files, image_to_tensor
from shallowcodec.hyperprior import QUANTIZERS, MeanScaleHyperprior
from shallowcodec.variable_rate import LMBDAS, MAX_QUALITY, lmbda_of
from shallowcodec.zoo import (ARCHITECTURES, LoadedModel, ModelNotFoundError, build, load_weights, model_card,
                              save_weights)

#: With ``--steps 0``, the planned total is fitted to ``--max-minutes`` after this many steps,
#: from the speed of those after the first FIT_SKIP (start-up).
FIT_AFTER = 20
FIT_SKIP = 5
#: Schedule total until then: the lr stays at the start of its warm-up (≈ 0).
UNPLANNED = 10**9
#: Steps left out of the speed that ``--summary`` reports (worker start-up, allocator, autotuning).
WARMUP_STEPS = 3
#: Environment variables set by torchrun for each process.
TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


# --- loss and schedules --------------------------------------------------------------------------


def rd_loss(out: dict, x: Tensor, lmbda: float | Tensor) -> dict[str, Tensor]:
    """Rate–distortion loss mean over images of bpp + λ·MSE (paper Eq. 1; MSE on the 0–255 scale).

    Args:
        out: model output with ``x_hat`` (B, 3, H, W) and ``likelihoods`` {"y", "z"}.
        x: (B, 3, H, W) target in [0, 1].
        lmbda: λ, one for the batch or one per image (B,) (variable-rate training).

    Returns:
        dict of scalars (means over the batch): ``loss``, ``bpp`` (bits per pixel, y + z),
        ``mse`` (0–255 scale), ``psnr`` (dB, peak 255, of the mean MSE).
    """
    num_pixels = x.shape[2] * x.shape[3]
    bits = sum(-torch.log2(lk).flatten(1).sum(1) for lk in out["likelihoods"].values())
    bpp = bits / num_pixels
    mse = ((out["x_hat"] - x) ** 2).mean(dim=(1, 2, 3)) * 255**2
    loss = (bpp + lmbda * mse).mean()
    bpp, mse = bpp.mean(), mse.mean()
    return {"loss": loss, "bpp": bpp, "mse": mse, "psnr": 10 * torch.log10(255**2 / mse.detach())}


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


def sample_qualities(batch: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Variable-rate training: one integer quality per image, uniform over 0–6, and its λ.

    Returns:
        (quality (B,) float, λ (B,)), λ = 0.00125 · 2^quality.
    """
    quality = torch.randint(0, MAX_QUALITY + 1, (batch,), generator=generator).float()
    return quality, lmbda_of(quality)


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


# --- data: cache, random crops, loader -----------------------------------------------------------


def default_cache(data: Path, max_side: int) -> Path:
    """``~/.cache/shallowcodec/<first 12 hex digits of sha256(resolved data path)>-<max_side>``."""
    digest = hashlib.sha256(str(Path(data).resolve()).encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "shallowcodec" / f"{digest}-{max_side}"


def build_cache(data: Path, cache: Path, max_side: int, progress: bool = False) -> list[Path]:
    """Decode every image of ``data`` once into ``cache``; returns the entries in image-name order.

    An entry is an uncompressed (H, W, 3) uint8 ``.npy`` of the image downscaled (Lanczos) to a
    shorter side of at most ``max_side`` pixels, named ``<image name>.<bytes>.<mtime ns>.npy``:
    a changed image gets a new entry, and its outdated one is deleted. Entries are written under
    a temporary name, then renamed, so runs sharing a cache never read a partial file.

    Raises:
        ValueError: the cache is the data folder or inside it; codec.ImageError (a ValueError):
            no such data folder.
    """
    data, cache = Path(data).resolve(), Path(cache).expanduser().resolve()
    if cache == data or data in cache.parents:
        raise ValueError(f"the cache {cache} must be outside the data folder {data}")
    files = image_files(data)
    cache.mkdir(parents=True, exist_ok=True)
    entries = [cache / _entry_name(f) for f in files]
    missing = [(f, e) for f, e in zip(files, entries) if not e.exists()]
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:  # Pillow decodes and resizes without the GIL
        written = pool.map(lambda job: _write_entry(*job, max_side), missing)
        for problem in tqdm(written, total=len(missing), desc=f"caching {data.name}",
                            disable=not (progress and missing)):
            if problem:
                print(f"shallowcodec train: skipping {problem}", file=sys.stderr)
    _delete_outdated(cache, entries)
    return [e for e in entries if e.exists()]


def _entry_name(image: Path) -> str:
    stat = image.stat()
    return f"{image.name}.{stat.st_size}.{stat.st_mtime_ns}.npy"


def _write_entry(image: Path, entry: Path, max_side: int) -> str | None:
    """Decode ``image``, downscale it (Lanczos) to a shorter side ≤ ``max_side``, store (H, W, 3) uint8.

    Returns None, or for an unreadable image a one-line reason naming it (the image is skipped).
    """
    try:
        with Image.open(image) as im:
            scale = max_side / min(im.size)
            if scale < 1:
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
            pixels = image_to_tensor(im)[0].permute(1, 2, 0).numpy()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return f"{image}: {e}"
    tmp = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(pixels))
        tmp.replace(entry)
    finally:
        tmp.unlink(missing_ok=True)
    return None


def _delete_outdated(cache: Path, entries: list[Path]) -> None:
    """Delete the entries of the current images' names that have another size or mtime."""
    current = {e.name for e in entries}
    names = {e.name.rsplit(".", 3)[0] for e in entries}
    for old in cache.glob("*.npy"):
        if old.name not in current and old.name.rsplit(".", 3)[0] in names:
            old.unlink(missing_ok=True)


def crop_sources(entries: list[Path], crop: int) -> list[Path]:
    """The cache entries whose both sides are at least ``crop`` pixels (read from the .npy headers)."""
    return [e for e in entries if min(np.load(e, mmap_mode="r").shape[:2]) >= crop]


class RandomCrops(IterableDataset):
    """Endless stream of random square crops, each (3, crop, crop) uint8, with random horizontal flips.

    Crops come from memory-mapped (H, W, 3) uint8 ``.npy`` files (:func:`build_cache`): an image
    uniformly, then a position uniformly, then a flip with probability ½. Each (seed, rank,
    DataLoader worker, starting step) draws its own random stream, so the processes of a torchrun
    job, the workers of a loader and a resumed run do not repeat each other's crops.
    """

    def __init__(self, files: list[Path], crop: int, seed: int = 0, rank: int = 0, start_step: int = 0):
        self.files, self.crop = list(files), crop
        self.seed, self.rank, self.start_step = seed, rank, start_step

    def __iter__(self) -> Iterator[Tensor]:
        worker = get_worker_info()
        rng = np.random.default_rng([self.seed, self.rank, worker.id if worker else 0, self.start_step])
        images = [np.load(f, mmap_mode="r") for f in self.files]
        while True:
            image = images[rng.integers(len(images))]
            top, left = (int(rng.integers(n - self.crop + 1)) for n in image.shape[:2])
            patch = image[top : top + self.crop, left : left + self.crop]
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            yield torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1)))


def data_stream(args: argparse.Namespace, proc: Process, step: int) -> Iterator[Tensor]:
    """This process's training batches: float (batch_size, 3, crop, crop) in [0, 1] on its device.

    Rank 0 builds the cache first; the other ranks then find it complete (or, on another node,
    complete their own). Crops travel as uint8 and become float on the device.

    Raises:
        ValueError: no image of at least crop × crop pixels (after downscaling) in ``args.data``.
    """
    with _rank0_first(proc):
        entries = build_cache(args.data, args.cache or default_cache(args.data, args.max_side), args.max_side,
                              progress=proc.main and not args.quiet)
    sources = crop_sources(entries, args.crop)
    if not sources:
        raise ValueError(f"no image of at least {args.crop}×{args.crop} pixels in {args.data}")
    crops = RandomCrops(sources, args.crop, seed=args.seed, rank=proc.rank, start_step=step)
    loader = DataLoader(crops, batch_size=args.batch_size, num_workers=args.workers,
                        pin_memory=proc.device.type == "cuda", persistent_workers=args.workers > 0)
    layout = torch.channels_last if proc.device.type == "cuda" else torch.contiguous_format
    return (x.to(proc.device, non_blocking=True).float().div_(255).contiguous(memory_format=layout) for x in loader)


# --- processes and devices -----------------------------------------------------------------------


@dataclass(frozen=True)
class Process:
    """This training process: its rank among ``world_size`` torchrun processes (0 of 1 without), its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Whether this process writes checkpoints and weights and shows progress (rank 0)."""
        return self.rank == 0


def start_process(device: str) -> Process:
    """Join the torchrun job if WORLD_SIZE, RANK and LOCAL_RANK are set (gloo on CPU, nccl on cuda:LOCAL_RANK).

    Raises:
        ValueError: ``device`` is "cuda" but PyTorch finds no CUDA device.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: PyTorch finds no CUDA device (train with --device cpu)")
    if not all(k in os.environ for k in TORCHRUN_VARIABLES):
        return Process(0, 1, torch.device(device))
    world_size, rank, local_rank = (int(os.environ[k]) for k in TORCHRUN_VARIABLES)
    if device == "cpu":
        dist.init_process_group("gloo")
        return Process(rank, world_size, torch.device("cpu"))
    gpu = torch.device("cuda", local_rank)
    torch.cuda.set_device(gpu)
    dist.init_process_group("nccl", device_id=gpu)
    return Process(rank, world_size, gpu)


@contextmanager
def _rank0_first(proc: Process) -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks (all at once without torchrun)."""
    if proc.world_size > 1 and not proc.main:
        dist.barrier()
    yield
    if proc.world_size > 1 and proc.main:
        dist.barrier()


def _rank0_decides(proc: Process, stop: bool, planned: int | None) -> tuple[bool, int | None]:
    """Rank 0's stop decision and planned total on every rank (a broadcast; as given without torchrun)."""
    if proc.world_size == 1:
        return stop, planned
    decision = torch.tensor([float(stop), float(planned or 0)], dtype=torch.float64, device=proc.device)
    dist.broadcast(decision, src=0)
    return bool(decision[0]), int(decision[1]) or None


def _add_aux_grads(model: MeanScaleHyperprior, aux_optimizer: torch.optim.Optimizer, world_size: int) -> None:
    """Add the gradients of the quantiles' aux loss, averaged over the processes (all-reduce).

    The gradients come from ``torch.autograd.grad``, not ``backward()``, which would fire
    DistributedDataParallel's gradient hooks outside its forward–backward pair (DDP would then
    count the quantiles as used in the next step and fail on their cleared gradients).
    """
    params = [p for group in aux_optimizer.param_groups for p in group["params"]]
    for p, grad in zip(params, torch.autograd.grad(model.aux_loss(), params)):
        if world_size > 1:
            dist.all_reduce(grad)
            grad /= world_size
        p.grad = grad if p.grad is None else p.grad + grad


def _seed(*keys: int) -> int:
    """A 64-bit seed mixed from non-negative integers (numpy SeedSequence)."""
    return int(np.random.SeedSequence(keys).generate_state(1, np.uint64)[0])


def run_hours(seconds: float, proc: Process) -> dict[str, float]:
    """Cost of ``seconds`` of training by all processes: ``core_hours`` (CPU: seconds × torch
    threads × processes / 3600) or ``gpu_hours`` (CUDA: seconds × processes / 3600)."""
    if proc.device.type == "cuda":
        return {"core_hours": 0.0, "gpu_hours": seconds * proc.world_size / 3600}
    return {"core_hours": seconds * torch.get_num_threads() * proc.world_size / 3600, "gpu_hours": 0.0}


# --- optimization, checkpoints -------------------------------------------------------------------


def make_optimizers(model: MeanScaleHyperprior, lr: float) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for the network and a separate Adam (lr 1e-3) for the prior's quantiles."""
    net = [p for n, p in model.named_parameters() if not n.endswith(".quantiles")]
    aux = [p for n, p in model.named_parameters() if n.endswith(".quantiles")]
    return torch.optim.Adam(net, lr=lr), torch.optim.Adam(aux, lr=1e-3)


def train_step(net: torch.nn.Module, model: MeanScaleHyperprior, optimizers: tuple, x: Tensor, step: int,
               planned: int, args: argparse.Namespace, world_size: int = 1) -> dict[str, Tensor]:
    """One step on a batch x (B, 3, crop, crop) in [0, 1]; returns :func:`rd_loss`'s terms.

    The R-D loss (forward under bf16 autocast with ``args.bf16``) is back-propagated through
    ``net`` (the model, or its DistributedDataParallel wrapper, which averages the gradients over
    processes), clipped, and Adam steps. Then the quantiles' aux loss: its gradients are averaged
    over processes too (:func:`_add_aux_grads`), so that every rank keeps the same quantiles.
    """
    optimizer, aux_optimizer = optimizers
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, planned, args.lr)
    quality, lmbda = sample_qualities(len(x)) if args.variable_rate else (None, args.lmbda)
    if args.variable_rate:
        quality, lmbda = quality.to(x.device), lmbda.to(x.device)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=args.bf16):
        out = net(x, quantizer=args.quantizer, quality=quality)
    terms = rd_loss(out, x, lmbda_at(step, planned, lmbda, from_scratch=args.init is None))
    optimizer.zero_grad(set_to_none=True)
    aux_optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
    optimizer.step()
    _add_aux_grads(model, aux_optimizer, world_size)
    aux_optimizer.step()
    return terms


@dataclass
class Progress:
    """How far a training job is: steps done, training seconds, the planned total (None until
    ``--steps 0`` has fitted it) and the cost so far (``core_hours``, ``gpu_hours``)."""

    step: int = 0
    seconds: float = 0.0
    planned: int | None = None
    hours: dict[str, float] = field(default_factory=lambda: {"core_hours": 0.0, "gpu_hours": 0.0})

    def after(self, step: int, planned: int | None, seconds: float, proc: Process) -> Progress:
        """This progress advanced to ``step`` by ``seconds`` of training on ``proc``'s job."""
        cost = run_hours(seconds, proc)
        return Progress(step, self.seconds + seconds, planned, {k: self.hours.get(k, 0.0) + v for k, v in cost.items()})


def save_checkpoint(path: Path, model, optimizer, aux_optimizer, progress: Progress, args: dict) -> None:
    """Model, optimizers, progress (step, seconds, planned total, cost) and run arguments;
    written to a temp file, then renamed."""
    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "aux_optimizer": aux_optimizer.state_dict(),
        "step": progress.step, "seconds": progress.seconds, "planned_steps": progress.planned, "hours": progress.hours,
        "args": json.dumps(args, default=str),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def restore(args: argparse.Namespace, model: MeanScaleHyperprior, optimizers: tuple, proc: Process) -> Progress:
    """Load ``--resume`` (model, optimizers, progress) or copy ``--init`` weights; returns the starting progress.

    A resumed job keeps the planned total of its checkpoint (older checkpoints: their ``--steps``);
    a different ``--steps`` is ignored with a notice. It also keeps the checkpoint's ``--init``
    (when not given again), so a resumed fine-tune skips the 10 λ phase and counts the init's steps.
    """
    if not args.resume:
        if args.init:
            _copy_from(model, load_weights(args.init), args.model)
        return Progress(planned=args.steps or None)
    try:
        state = torch.load(args.resume, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizers[0].load_state_dict(state["optimizer"])
        optimizers[1].load_state_dict(state["aux_optimizer"])
    except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError, ValueError, EOFError) as e:
        raise ValueError(f"cannot resume from {args.resume}: not a checkpoint of this --model, --config and "
                         f"rate mode ({str(e).strip().splitlines()[0][:120]})") from None
    stored_args = json.loads(state["args"])
    if args.init is None and stored_args.get("init") and Path(stored_args["init"]).is_file():
        args.init = Path(stored_args["init"])  # a resumed fine-tune: no 10 λ phase, cumulative totals
    stored = state.get("planned_steps", stored_args["steps"]) or None
    if stored and args.steps and args.steps != stored and proc.main:
        print(f"shallowcodec train: --resume continues the checkpoint's schedule of {stored} steps "
              f"(--steps {args.steps} ignored)", file=sys.stderr)
    hours = state.get("hours") or run_hours(state["seconds"], proc)  # older checkpoints: as run like this one
    return Progress(state["step"], state["seconds"], stored or args.steps or None, hours)


# --- the training job ----------------------------------------------------------------------------


def train(args: argparse.Namespace) -> Path:
    """Run (or resume) one training job, alone or as one torchrun process; returns the weights path.

    Only rank 0 writes the weights (and checkpoints, and ``--summary``).
    """
    proc = start_process(args.device)
    try:
        _train(args, proc)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return Path(args.out)


def model_config(args: argparse.Namespace) -> dict:
    """Builder arguments: ``--config`` (JSON object), else the ``--init`` weights' widths; plus variable_rate.

    Raises:
        ValueError: ``--config`` is not a JSON object.
    """
    try:
        config = json.loads(args.config)
    except json.JSONDecodeError as e:
        raise ValueError(f"--config is not JSON: {e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"--config must be a JSON object such as '{{\"N\": 64, \"M\": 192}}', got {args.config}")
    if not config and args.init:
        config = {k: v for k, v in model_card(args.init)["config"].items() if k != "variable_rate"}
    return {**config, "variable_rate": True} if args.variable_rate else config


def _build_model(args: argparse.Namespace, proc: Process) -> tuple[MeanScaleHyperprior, dict]:
    """The model (seeded: the same initial parameters on every rank) on the process's device, and its
    config; channels_last and autotuned convolutions on CUDA."""
    torch.manual_seed(args.seed)
    config = model_config(args)
    try:
        model = build(args.model, **config).to(proc.device)
    except (TypeError, RuntimeError, ValueError) as e:
        raise ValueError(f"--config {args.config}: {str(e).splitlines()[0]}") from None
    if proc.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True  # one crop size throughout
    return model, config


def _train(args: argparse.Namespace, proc: Process) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    model, config = _build_model(args, proc)
    optimizers = make_optimizers(model, args.lr)
    done = restore(args, model, optimizers, proc)
    if done.planned is None and not args.max_minutes:
        raise ValueError("--steps 0 fits the schedule to a time budget: give --max-minutes")
    torch.manual_seed(_seed(args.seed, proc.rank, done.step))  # qualities and quantization noise differ per rank
    batches = data_stream(args, proc, done.step)
    net = model if proc.world_size == 1 else DistributedDataParallel(
        model, device_ids=[proc.device.index] if proc.device.type == "cuda" else None,
        find_unused_parameters=args.quantizer == "noise",  # the quantiles then take no part in the R-D loss
        forward_sync_buffers=False)   # the buffers (CDF tables, scale table) do not change in training
    model.train()
    ckpt_path = Path(args.checkpoint or f"{args.out}.ckpt")
    progress, ticks, terms = _loop(args, proc, net, model, optimizers, batches, done, ckpt_path)
    if proc.main:
        save_checkpoint(ckpt_path, model, *optimizers, progress, vars(args))
        _save_weights(args, proc, model.cpu().eval(), config, progress)
        if args.summary:
            write_summary(args.summary, args, proc, progress, ticks, terms)


def _loop(args: argparse.Namespace, proc: Process, net: torch.nn.Module, model: MeanScaleHyperprior,
          optimizers: tuple, batches: Iterator[Tensor], done: Progress, ckpt_path: Path) -> tuple[Progress, list, dict]:
    """Train until the planned total or ``--max-minutes`` (rank 0 decides for all ranks).

    Returns:
        (progress at the end, ticks, last loss terms); ``ticks[k]`` is time.monotonic() at the end
        of step k of this run, ``ticks[0]`` at its start.
    """
    step, planned = done.step, done.planned
    desc = f"{args.model} " + ("q0–6" if args.variable_rate else f"λ={args.lmbda}")
    bar = tqdm(total=planned, initial=step, desc=desc, dynamic_ncols=True, disable=args.quiet or not proc.main,
               mininterval=1 if sys.stderr.isatty() else 30)
    ticks, terms = [time.monotonic()], {}
    last_save = ticks[0]
    interrupted = _stop_on_signals()
    while planned is None or step < planned:
        terms = train_step(net, model, optimizers, next(batches), step, planned or UNPLANNED, args, proc.world_size)
        step += 1
        ticks.append(time.monotonic())
        elapsed = ticks[-1] - ticks[0]
        if planned is None and len(ticks) == FIT_AFTER + 1:
            speed = (ticks[FIT_AFTER] - ticks[FIT_SKIP]) / (FIT_AFTER - FIT_SKIP)
            planned = fit_steps(step, speed, 60 * args.max_minutes - elapsed)
        timed_out = bool(args.max_minutes) and elapsed > 60 * args.max_minutes
        stop, planned = _rank0_decides(proc, timed_out or interrupted.is_set(), planned)
        if not bar.disable:
            _show(bar, terms, planned)
        if proc.main and ticks[-1] - last_save > 60 * args.checkpoint_minutes:
            save_checkpoint(ckpt_path, model, *optimizers, done.after(step, planned, elapsed, proc), vars(args))
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


def _save_weights(args: argparse.Namespace, proc: Process, model: MeanScaleHyperprior, config: dict,
                  progress: Progress) -> None:
    """Write the weights with the facts of the job, cumulative over the ``--init`` weights' training."""
    prior = _prior_training(args.init)
    hours = {k: round(prior[k] + v, 6) for k, v in progress.hours.items() if prior[k] + v > 0}
    save_weights(Path(args.out), model, args.model, config, args.quality, args.lmbda,
                 steps=progress.step, planned_steps=progress.planned, train_seconds=round(progress.seconds, 1),
                 crop=args.crop, batch_size=args.batch_size, quantizer=args.quantizer, lr=args.lr, bf16=args.bf16,
                 init=Path(args.init).name if args.init else None, world_size=proc.world_size,
                 device=proc.device.type, threads=torch.get_num_threads(),
                 total_steps=prior["total_steps"] + progress.step,
                 total_train_seconds=round(prior["total_train_seconds"] + progress.seconds, 1), **hours)


def write_summary(path: Path, args: argparse.Namespace, proc: Process, progress: Progress, ticks: list[float],
                  terms: dict[str, Tensor]) -> None:
    """JSON facts of this run: its steps and seconds, speed after the first WARMUP_STEPS steps
    (``steps_per_s``; ``pixels_per_s`` = steps/s × batch × crop² × processes; None for runs of
    ≤ WARMUP_STEPS steps), the last step's loss terms and the setup."""
    steps = len(ticks) - 1
    speed = (steps - WARMUP_STEPS) / (ticks[-1] - ticks[WARMUP_STEPS]) if steps > WARMUP_STEPS else None
    summary = {
        "steps": steps, "total_steps": progress.step, "planned_steps": progress.planned,
        "seconds": round(ticks[-1] - ticks[0], 3), "steps_per_s": speed,
        "pixels_per_s": speed and speed * args.batch_size * args.crop**2 * proc.world_size,
        **{k: v.item() for k, v in terms.items()},
        "model": args.model, "world_size": proc.world_size, "device": proc.device.type,
        "threads": torch.get_num_threads(), "batch_size": args.batch_size, "crop": args.crop, "bf16": args.bf16,
    }
    Path(path).write_text(json.dumps(summary, indent=2) + "\n")


def _copy_from(model: MeanScaleHyperprior, init: LoadedModel, architecture: str) -> None:
    """Start from the parameters of other trained weights of the same architecture and widths.

    Fixed-λ weights may start a variable-rate model: its gain units then keep their initial
    values (variable_rate.GainUnits), which centre on the reference quality 3.

    Raises:
        ValueError: the weights are of another architecture or other widths, or variable-rate
            weights for a fixed-λ model.
    """
    if init.architecture != architecture:
        raise ValueError(f"--init weights are {init.architecture}, not {architecture}")
    if init.variable_rate and not model.variable_rate:
        raise ValueError("--init weights are variable-rate; add --variable-rate")
    source = dict(init.model.named_parameters())
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name not in source:  # gain units of a variable-rate model started from fixed-λ weights
                continue
            if source[name].shape != param.shape:
                raise ValueError(f"--init weights have other widths ({name}: {tuple(source[name].shape)})")
            param.copy_(source[name])


def _prior_training(init: Path | None) -> dict[str, float]:
    """Training already in the --init weights (zeros from scratch): total_steps, total_train_seconds,
    core_hours (if not recorded and no gpu_hours either: total_train_seconds / 3600, one core), gpu_hours."""
    if init is None:
        return {"total_steps": 0, "total_train_seconds": 0.0, "core_hours": 0.0, "gpu_hours": 0.0}
    card = model_card(init)
    seconds = card.get("total_train_seconds", card.get("train_seconds", 0.0))
    return {"total_steps": card.get("total_steps", card.get("steps", 0)), "total_train_seconds": seconds,
            "core_hours": card.get("core_hours", 0.0 if "gpu_hours" in card else seconds / 3600),
            "gpu_hours": card.get("gpu_hours", 0.0)}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Arguments of ``shallowcodec train`` (also used by ``python -m shallowcodec.train``)."""
    p = parser or argparse.ArgumentParser(prog="shallowcodec train", description="Train a fixed-λ or a variable-rate model.")
    p.add_argument("--model", required=True, choices=list(ARCHITECTURES))
    rate = p.add_mutually_exclusive_group(required=True)
    rate.add_argument("--quality", type=int, choices=range(len(LMBDAS)),
                      help="fixed-λ model: quality index 0–6 stored in the weights (λ = 0.00125 · 2^q)")
    rate.add_argument("--variable-rate", action="store_true",
                      help="one model for qualities 0–6 (gain units; λ drawn per image from the 7 values)")
    p.add_argument("--lmbda", type=float, help="fixed-λ model: λ (default: the quality's λ)")
    p.add_argument("--data", type=Path, required=True, help="folder of training images")
    p.add_argument("--steps", type=int, required=True,
                   help="planned total steps (schedules use it); 0: fit it to --max-minutes after the first "
                        f"{FIT_AFTER} steps; --resume keeps the checkpoint's total")
    p.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    p.add_argument("--config", default="{}", help='JSON widths, e.g. \'{"N": 96, "M": 192}\'')
    p.add_argument("--crop", type=int, default=256, help="square crop side, a multiple of 64 (128 for cheap early phases)")
    p.add_argument("--batch-size", type=int, default=8, help="crops per step and process")
    p.add_argument("--max-side", type=int, default=512,
                   help="images are cached downscaled (Lanczos) to a shorter side of at most this many pixels")
    p.add_argument("--cache", type=Path,
                   help="folder of decoded images (default: ~/.cache/shallowcodec/<hash of the --data path>-<max side>)")
    p.add_argument("--workers", type=int, default=2, help="data-loading processes per training process (0: none)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: GPU LOCAL_RANK under torchrun, channels_last")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for g_a, g_s, h_a, h_s (the entropy models stay fp32)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--quantizer", choices=QUANTIZERS, default="noise")
    p.add_argument("--init", type=Path, help="start from these weights (fine-tuning to another λ)")
    p.add_argument("--resume", type=Path, help="checkpoint to resume")
    p.add_argument("--checkpoint", type=Path, help="checkpoint path (default: OUT.ckpt)")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--max-minutes", type=float, help="stop cleanly (with a checkpoint) after this long")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: PyTorch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--summary", type=Path,
                   help=f"write a JSON summary of the run (steps/s after the first {WARMUP_STEPS} steps, last loss)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    return p


def run(args: argparse.Namespace) -> Path:
    """Check the arguments, fill defaults that depend on other arguments, then train.

    Raises:
        ValueError: inconsistent arguments (one-line message).
    """
    if args.variable_rate and args.lmbda is not None:
        raise ValueError("--lmbda applies to fixed-λ training (--quality), not --variable-rate")
    if args.lmbda is None and not args.variable_rate:
        args.lmbda = LMBDAS[args.quality]
    if args.crop % 64 or args.crop <= 0:
        raise ValueError(f"--crop must be a positive multiple of 64, got {args.crop}")
    if args.max_side < args.crop:
        raise ValueError(f"--max-side ({args.max_side}) must be at least --crop ({args.crop})")
    if args.steps < 0 or args.workers < 0 or args.seed < 0:
        raise ValueError("--steps, --workers and --seed must not be negative")
    if args.steps == 0 and not (args.max_minutes or args.resume):
        raise ValueError("--steps 0 fits the schedule to a time budget: give --max-minutes")
    for name in ("lmbda", "lr", "max_minutes", "checkpoint_minutes"):
        value = getattr(args, name)
        if value is not None and not value > 0:  # also refuses NaN
            raise ValueError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    if args.threads < 0 or args.batch_size < 1:
        raise ValueError("--threads must not be negative and --batch-size must be at least 1")
    check_output(args)
    return train(args)


def check_output(args: argparse.Namespace) -> None:
    """Refuse, before any training, an --out whose folder is missing, that would replace --init,
    --resume or a file of the data folder, or that exists without --force.

    Raises:
        ValueError: one line naming the problem.
    """
    out = Path(args.out).resolve()
    if not out.parent.is_dir():
        raise ValueError(f"the folder of --out {args.out} does not exist")
    if any(p is not None and out == Path(p).resolve() for p in (args.init, args.resume)):
        raise ValueError(f"--out {args.out} would replace the weights or checkpoint it starts from")
    if Path(args.data).resolve() in out.parents:
        raise ValueError(f"--out {args.out} is inside the data folder {args.data}")
    if out.exists() and not (args.force or args.resume):
        raise ValueError(f"{args.out} exists (use --force to replace it)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = run(args)
    except (ValueError, OSError, ModelNotFoundError) as e:
        print(f"shallowcodec train: error: {e}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
