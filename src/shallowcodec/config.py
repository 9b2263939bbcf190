"""The training job's configuration: command-line arguments, their checks, and the frozen :class:`TrainConfig`.

argparse stays here, at the edge: ``shallowcodec train`` and ``python -m shallowcodec.train``
parse with :func:`build_parser`, and :func:`config_from_args` checks the arguments and turns them
into one :class:`TrainConfig` that the rest of the training code reads (and never changes); code
that trains without a command line (``shallowcodec analyze kernels``) calls :func:`checked_config`.
Defaults are written once, on :class:`TrainConfig`'s fields; the parser takes them from there.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path

from shallowcodec.architectures import ModelConfig
from shallowcodec.atomic import check_output
from shallowcodec.hyperprior import QUANTIZERS
from shallowcodec.model_files import model_card
from shallowcodec.quality import LMBDAS
from shallowcodec.zoo import ARCHITECTURES

#: With ``--steps 0``, the planned total is fitted to ``--max-minutes`` after this many steps.
FIT_AFTER = 20
#: Steps left out of the speed that ``--summary`` reports (worker start-up, allocator, autotuning).
WARMUP_STEPS = 3


@dataclass(frozen=True)
class TrainConfig:
    """One training job, as given on the command line (see :func:`build_parser` for each field's meaning).

    Fields are named like the command-line options (``--batch-size`` → ``batch_size``); ``lmbda``
    is filled with the quality's λ for fixed-λ training, None for variable rate. ``config`` is the
    JSON text of the builder's widths. Paths are as given (not resolved); durations are in minutes.
    """

    model: str
    data: tuple[Path, ...]
    steps: int
    out: Path
    quality: int | None = None
    variable_rate: bool = False
    rate_weighting: float = 0.0
    train_qualities: tuple[int, ...] | None = None
    lmbda: float | None = None
    config: str = "{}"
    crop: int = 256
    batch_size: int = 8
    max_side: int = 512
    cache: Path | None = None
    workers: int = 2
    device: str = "cpu"
    bf16: bool = False
    lr: float = 1e-4
    quantizer: str = "noise"
    init: Path | None = None
    init_shared: Path | None = None
    resume: Path | None = None
    checkpoint: Path | None = None
    checkpoint_minutes: float = 5.0
    max_minutes: float | None = None
    threads: int = 0
    seed: int = 0
    summary: Path | None = None
    quiet: bool = False
    force: bool = False


class TrainArgumentError(ValueError):
    """Options no training can run with (a value out of range, a combination that means nothing):
    bad usage, exit code 2 of ``shallowcodec train`` and ``python -m shallowcodec.train``."""


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Arguments of ``shallowcodec train`` (also used by ``python -m shallowcodec.train``)."""
    p = parser or argparse.ArgumentParser(prog="shallowcodec train", description="Train a fixed-λ or a variable-rate model.")
    p.set_defaults(**field_defaults(TrainConfig))  # before the options, which take their defaults from here
    p.add_argument("--model", required=True, choices=list(ARCHITECTURES))
    rate = p.add_mutually_exclusive_group(required=True)
    rate.add_argument("--quality", type=int, choices=range(len(LMBDAS)),
                      help="fixed-λ model: quality index 0–6 stored in the weights (λ = 0.00125 · 2^q)")
    rate.add_argument("--variable-rate", action="store_true",
                      help="one model for qualities 0–6 (gain units; λ drawn per image from the model's 7 values, "
                           "λ0·r^q with lmbda_scale [λ0, r] in --config, default the paper's [0.00125, 2])")
    p.add_argument("--lmbda", type=float, help="fixed-λ model: λ (default: the quality's λ)")
    p.add_argument("--rate-weighting", type=float, metavar="ALPHA",
                   help="variable rate: weight each image's loss by λ^-ALPHA (normalized over q0–6; 0: uniform, "
                        "0.5: about the same loss scale at every quality)")
    p.add_argument("--train-qualities", type=int, nargs="+", choices=range(len(LMBDAS)), metavar="Q",
                   help="variable rate: draw only these qualities (default all 0–6, uniformly); a repeated quality is "
                        "drawn that much more often (0 0 1 1 2 3 4 5 6: q0 and q1 twice as often); one quality "
                        "fine-tunes the model as a fixed-λ model would be, e.g. to compare the two at equal steps")
    p.add_argument("--data", type=Path, nargs="+", required=True,
                   help="folders of training images (crops are drawn from all of them, an image uniformly)")
    p.add_argument("--steps", type=int, required=True,
                   help="planned total steps (schedules use it); 0: fit it to --max-minutes after the first "
                        f"{FIT_AFTER} steps; --resume keeps the checkpoint's total")
    p.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    p.add_argument("--config",
                   help='JSON builder arguments, e.g. \'{"N": 96, "M": 192}\' or \'{"lmbda_scale": [0.0005, 2.5]}\'; '
                        'with --init they update the init weights\' config')
    p.add_argument("--crop", type=int,
                   help="square crop side, a multiple of 64 (default %(default)s; 128 for cheap early phases)")
    p.add_argument("--batch-size", type=int, help="crops per step and process (default %(default)s)")
    p.add_argument("--max-side", type=int,
                   help="images are cached downscaled (Lanczos) to a shorter side of at most this many pixels "
                        "(default %(default)s)")
    p.add_argument("--cache", type=Path,
                   help="folder of decoded-image caches, one <hash of a --data path>-<max side> folder per --data "
                        "folder (default: ~/.cache/shallowcodec)")
    p.add_argument("--workers", type=int, help="data-loading processes per training process (0: none; default %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"),
                   help="cuda: GPU LOCAL_RANK under torchrun")
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for g_a, g_s, h_a, h_s (the entropy models stay fp32)")
    p.add_argument("--lr", type=float, help="Adam's learning rate (default %(default)s, the paper's)")
    p.add_argument("--quantizer", choices=QUANTIZERS, help="training surrogate of rounding (default %(default)s)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--init", type=Path, help="start from these weights (fine-tuning to another λ)")
    start.add_argument("--init-shared", type=Path,
                       help="start g_a, h_a, h_s, the priors and the gains from another architecture's weights "
                            "(e.g. jpeg-like from two-layer); g_s starts from scratch")
    p.add_argument("--resume", type=Path, help="checkpoint to resume")
    p.add_argument("--checkpoint", type=Path, help="checkpoint path (default: OUT.ckpt)")
    p.add_argument("--checkpoint-minutes", type=float, help="minutes between checkpoints (default %(default)s)")
    p.add_argument("--max-minutes", type=float, help="stop cleanly (with a checkpoint) after this long")
    p.add_argument("--threads", type=int, help="torch threads per process (0: PyTorch's default)")
    p.add_argument("--seed", type=int, help="seed of the crops, noise and initial weights (default %(default)s)")
    p.add_argument("--summary", type=Path,
                   help=f"write a JSON summary of the run (steps/s after the first {WARMUP_STEPS} steps, last loss)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    return p


def field_defaults(config: type) -> dict:
    """The default of every field of the dataclass ``config`` that has one (the defaults of its options)."""
    return {f.name: f.default for f in fields(config) if f.default is not MISSING}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The checked :class:`TrainConfig` of parsed arguments (see :func:`checked_config`).

    Raises:
        TrainArgumentError: inconsistent or out-of-range arguments (bad usage).
        ValueError: an --out that :func:`check_out_path` refuses (one-line message).
    """
    return checked_config(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})


def checked_config(**options) -> TrainConfig:
    """A :class:`TrainConfig` of ``options`` (named like its fields; those left out take its defaults),
    checked, with λ filled from the quality for fixed-λ training and the output path checked.

    Raises:
        TrainArgumentError: inconsistent or out-of-range options (bad usage).
        ValueError: an --out that :func:`check_out_path` refuses (one-line message).
    """
    cfg = TrainConfig(**options)
    if cfg.variable_rate == (cfg.quality is not None):
        raise TrainArgumentError("give one of --quality (a fixed-λ model) and --variable-rate")
    if cfg.variable_rate and cfg.lmbda is not None:
        raise TrainArgumentError("--lmbda applies to fixed-λ training (--quality), not --variable-rate")
    if cfg.rate_weighting and not cfg.variable_rate:
        raise TrainArgumentError("--rate-weighting applies to --variable-rate training")
    if not 0 <= cfg.rate_weighting <= 2:
        raise TrainArgumentError(f"--rate-weighting must be in [0, 2], got {cfg.rate_weighting}")
    if cfg.train_qualities and not cfg.variable_rate:
        raise TrainArgumentError("--train-qualities applies to --variable-rate training (a fixed-λ model has --quality)")
    lmbda = LMBDAS[cfg.quality] if cfg.lmbda is None and not cfg.variable_rate else cfg.lmbda
    qualities = tuple(sorted(cfg.train_qualities)) if cfg.train_qualities else None
    cfg = replace(cfg, lmbda=lmbda, train_qualities=qualities, data=tuple(cfg.data))
    _check_values(cfg)
    check_out_path(cfg)
    return cfg


def _check_values(cfg: TrainConfig) -> None:
    """Refuse values no training can run with (one-line :class:`TrainArgumentError` naming the option)."""
    if cfg.crop % 64 or cfg.crop <= 0:
        raise TrainArgumentError(f"--crop must be a positive multiple of 64, got {cfg.crop}")
    if cfg.max_side < cfg.crop:
        raise TrainArgumentError(f"--max-side ({cfg.max_side}) must be at least --crop ({cfg.crop})")
    if cfg.steps < 0 or cfg.workers < 0 or cfg.seed < 0:
        raise TrainArgumentError("--steps, --workers and --seed must not be negative")
    if cfg.steps == 0 and not (cfg.max_minutes or cfg.resume):
        raise TrainArgumentError("--steps 0 fits the schedule to a time budget: give --max-minutes")
    for name in ("lmbda", "lr", "max_minutes", "checkpoint_minutes"):
        value = getattr(cfg, name)
        if value is not None and not value > 0:  # also refuses NaN
            raise TrainArgumentError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    if cfg.threads < 0 or cfg.batch_size < 1:
        raise TrainArgumentError("--threads must not be negative and --batch-size must be at least 1")


def check_out_path(cfg: TrainConfig) -> None:
    """Refuse, before any training, an --out whose folder is missing, that would replace --init,
    --resume or a file of the data folder, or that exists without --force.

    Raises:
        ValueError: one line naming the problem.
    """
    out = Path(cfg.out).resolve()
    if any(p is not None and out == Path(p).resolve() for p in (cfg.init, cfg.resume)):
        raise ValueError(f"--out {cfg.out} would replace the weights or checkpoint it starts from")
    for folder in cfg.data:
        if Path(folder).resolve() in out.parents:
            raise ValueError(f"--out {cfg.out} is inside the data folder {folder}")
    check_output(cfg.out, cfg.force or cfg.resume is not None)  # a resumed run replaces its own --out


def builder_config(cfg: TrainConfig) -> ModelConfig:
    """The model's config: the ``--init`` weights' (widths, h_s, λ scale) updated by ``--config``
    (JSON object; e.g. ``{"lmbda_scale": [0.0005, 2.5]}`` moves a variable-rate model to another
    λ scale, checkpoint.copy_from); plus variable_rate.

    Raises:
        ValueError: ``--config`` is not a JSON object, or a key or value that ``--model`` does not take
            (one-line message).
    """
    try:
        config = json.loads(cfg.config)
    except json.JSONDecodeError as e:
        raise ValueError(f"--config is not JSON: {e}") from None
    if not isinstance(config, dict):
        raise ValueError(f"--config must be a JSON object such as '{{\"N\": 64, \"M\": 192}}', got {cfg.config}")
    if cfg.init:
        dropped = ("variable_rate",) if cfg.variable_rate else ("variable_rate", "lmbda_scale")
        config = {k: v for k, v in model_card(cfg.init)["config"].items() if k not in dropped} | config
    try:
        return ModelConfig.parse(cfg.model, {**config, "variable_rate": True} if cfg.variable_rate else config)
    except ValueError as e:
        raise ValueError(f"--config {cfg.config}: {e}") from None
