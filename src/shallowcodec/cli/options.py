"""Options that several commands share and their argparse types."""

from __future__ import annotations

import argparse

from shallowcodec.model_files import ARCHITECTURE_NAMES, DEFAULT_ARCHITECTURE, embedded_models
from shallowcodec.quality import DEFAULT_QUALITY, MAX_QUALITY, snap_quality


def embedded_names() -> list[str]:
    """Architectures with embedded weights (the --model choices)."""
    return sorted(embedded_models()) or list(ARCHITECTURE_NAMES)


def quality_type(text: str) -> float:
    """argparse type: a model quality in [0, 6] (quality.snap_quality); else a usage error."""
    try:
        return snap_quality(float(text))
    except ValueError:  # not a number, NaN, or outside 0–6
        raise argparse.ArgumentTypeError(f"must be a number in 0..{MAX_QUALITY}, got {text}") from None


def lower_bounded(kind: type, low: float, inclusive: bool = False):
    """argparse type: a ``kind`` (int or float) > ``low`` (≥ when ``inclusive``); else a usage error."""

    def parse(text: str):
        value = kind(text)
        if not (value > low or (inclusive and value == low)):  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {low}, got {text}")
        return value

    return parse


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--model (embedded architectures) and --quality (0–6, fractions interpolate)."""
    p.add_argument("--model", default=DEFAULT_ARCHITECTURE, choices=embedded_names(),
                   help=f"embedded model (default: {DEFAULT_ARCHITECTURE})")
    p.add_argument("--quality", type=quality_type, metavar="Q",
                   help=f"quality 0–6 (λ = λ0·r^Q of the model; `models` lists them); fractions such as 2.5 "
                        f"interpolate (default {DEFAULT_QUALITY})")


def add_sga_arguments(p: argparse.ArgumentParser, steps: int = 0) -> None:
    """--sga-steps / --sga-seconds / --seed: per-image iterative encoding (sga.py, which PyTorch runs)."""
    from shallowcodec import sga

    p.add_argument("--sga-steps", type=lower_bounded(int, 0, inclusive=True), default=steps,
                   help=f"SGA iterations per image (paper: {sga.DEFAULT_STEPS}; default {steps})")
    p.add_argument("--sga-seconds", type=lower_bounded(float, 0), help="SGA time budget per image instead of a step count")
    p.add_argument("--seed", type=int, default=0, help="seed of SGA's Gumbel noise")


def add_force(p: argparse.ArgumentParser, what: str = "an existing output") -> None:
    """--force: replace existing outputs (checked by atomic.check_output)."""
    p.add_argument("--force", action="store_true", help=f"overwrite {what}")
