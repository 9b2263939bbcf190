"""Training commands: ``train`` (config.py defines its options, also for ``python -m shallowcodec.train``)
and ``distill`` (a cheap h_s for frozen weights, distill.py). Both import PyTorch when defined."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from shallowcodec.cli.files import UsageError


def define_train(p: argparse.ArgumentParser) -> None:
    """Options of ``train`` (config.build_parser)."""
    from shallowcodec.config import build_parser

    build_parser(p)
    p.set_defaults(func=cmd_train)


def define_distill(p: argparse.ArgumentParser) -> None:
    """Options of ``distill``; their defaults are distill.DistillConfig's."""
    from shallowcodec.config import field_defaults
    from shallowcodec.distill import DistillConfig

    p.set_defaults(**field_defaults(DistillConfig), func=cmd_distill)
    p.add_argument("--weights", type=Path, required=True, help="source weights (e.g. an embedded model's file)")
    p.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    p.add_argument("--data", type=Path, required=True, help="folder of training images")
    p.add_argument("--steps", type=int, help="Adam steps (lr ×0.1 after 80 %%; default %(default)s)")
    p.add_argument("--crops", type=int, help="random crops whose latents are cached (default %(default)s)")
    p.add_argument("--crop", type=int, help="crop side, a multiple of 64 (default %(default)s)")
    p.add_argument("--hyper-kernel", type=int,
                   help="kernel of the cheap h_s (FLOPs/pixel at M=320: 1,602 at 4, 3,602 at 6; default %(default)s)")
    p.add_argument("--batch-size", type=int, help="cached crops per step (default %(default)s)")
    p.add_argument("--lr", type=float, help="Adam's learning rate (default %(default)s)")
    p.add_argument("--max-minutes", type=float, help="stop after this long (the lr schedule follows the time)")
    p.add_argument("--cache", type=Path, help="folder of the cached latents and images "
                   "(default: latents beside --out, images where `train` keeps them)")
    p.add_argument("--threads", type=int, help="torch threads (0: PyTorch's default)")
    p.add_argument("--seed", type=int, help="seed of the crops and the initial h_s (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true", help="replace an existing --out")


def cmd_train(args: argparse.Namespace) -> None:
    """Train (train.train) and print the weights file's path, once per run (rank 0 under torchrun).

    Raises:
        UsageError: options no training can run with, or a --resume of another recipe.
    """
    from shallowcodec import train as training
    from shallowcodec.config import TrainArgumentError, config_from_args

    try:
        path = training.train(config_from_args(args))
    except TrainArgumentError as e:
        raise UsageError(str(e)) from None
    if os.environ.get("RANK", "0") == "0":
        print(path)


def cmd_distill(args: argparse.Namespace) -> None:
    """Distill a cheap h_s (distill.distill) and print its summary line.

    Raises:
        UsageError: options no distillation can run with.
    """
    from shallowcodec import distill
    from shallowcodec.config import TrainArgumentError

    options = {k: v for k, v in vars(args).items() if k not in ("command", "func")}
    try:
        print(distill.main_line(distill.distill(distill.DistillConfig(**options))))
    except TrainArgumentError as e:
        raise UsageError(str(e)) from None
