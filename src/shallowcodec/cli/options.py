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


def add_sga_arguments(p: argparse.ArgumentParser, steps: int | None = 0) -> None:
    """--sga-steps / --sga-seconds / --seed: per-image iterative encoding (sga.py, which PyTorch runs);
    ``steps`` None: no default count (--effort sets it)."""
    from shallowcodec import sga

    p.add_argument("--sga-steps", type=lower_bounded(int, 0, inclusive=True), default=steps,
                   help=f"SGA iterations per image (paper: {sga.DEFAULT_STEPS}; "
                        + (f"default {steps})" if steps is not None else "overrides --effort's)"))
    p.add_argument("--sga-seconds", type=lower_bounded(float, 0), help="SGA time budget per image instead of a step count")
    p.add_argument("--seed", type=int, default=0, help="seed of SGA's Gumbel noise")


def add_force(p: argparse.ArgumentParser, what: str = "an existing output") -> None:
    """--force: replace existing outputs (checked by atomic.check_output)."""
    p.add_argument("--force", action="store_true", help=f"overwrite {what}")


#: The ``--effort`` levels as measured (benchmarks/README.md "Encoder effort"): PSNR BD-rate of each
#: level against effort 0 on photos24 / detail24 crops, and the SGA iterations it runs.
EFFORT_HELP = ("encoder effort 0–4 (default 0): 0 is the amortized encoder alone; 1–4 refine this image's latents "
               "by SGA for 100, 300, 1000 and 3000 iterations (the decoder is the same). PSNR BD-rate against "
               "effort 0 on photos24 / detail24 crops: -7 %% (1), -11 %% (2), -12 / -15 %% (3), -14 / -16 %% (4); "
               "encode seconds per megapixel on 2 threads: 0.7 (0), 30 (1), 87 (2), 290 (3), 860 (4)")


def add_effort_argument(p: argparse.ArgumentParser) -> None:
    """--effort: encoder effort levels (sga.EFFORT_STEPS; PyTorch runs them)."""
    from shallowcodec import sga

    p.add_argument("--effort", type=int, choices=range(sga.MAX_EFFORT + 1), default=sga.DEFAULT_EFFORT, metavar="E",
                   help=EFFORT_HELP)


def target_type(kind: str):
    """argparse type of a rate-control target of ``kind`` ("bytes": a size such as 50KB; "bpp"; "psnr")."""

    def parse(text: str):
        from shallowcodec.rate_control import Target

        try:
            return Target.size(text) if kind == "bytes" else Target(kind, float(text))
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def add_target_arguments(group, several: bool = False) -> None:
    """--target-size / --target-bpp / --target-psnr in a mutually exclusive ``group`` (one value each, or
    ``several`` for a curve); rate_control.py searches the quality that meets them."""
    nargs = "+" if several else None
    group.add_argument("--target-size", type=target_type("bytes"), nargs=nargs, metavar="SIZE",
                       help="the largest file not above SIZE bytes (units B, KB, KiB, MB, MiB: e.g. 50KB)")
    group.add_argument("--target-bpp", type=target_type("bpp"), nargs=nargs, metavar="BPP",
                       help="the largest file not above BPP bits per pixel")
    group.add_argument("--target-psnr", type=target_type("psnr"), nargs=nargs, metavar="DB",
                       help="the smallest file whose decoded image reaches DB dB PSNR")


def given_targets(args: argparse.Namespace) -> list:
    """The rate-control targets given (``add_target_arguments``), as a list (empty if none)."""
    for name in ("target_size", "target_bpp", "target_psnr"):
        value = getattr(args, name, None)
        if value is not None:
            return value if isinstance(value, list) else [value]
    return []
