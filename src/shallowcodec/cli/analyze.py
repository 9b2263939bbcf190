"""``shallowcodec analyze VERB``: the paper's analyses (shallowcodec.analyses), each writing ``OUTPUT.png`` (the
figure) and ``OUTPUT.json`` (its numbers). This module maps options to an analysis's arguments, resolves the
default data paths (cli/paths.py) and writes the outputs; the analyses import PyTorch and matplotlib when run."""

from __future__ import annotations

import argparse
from pathlib import Path

from shallowcodec.atomic import check_output
from shallowcodec.cli import paths
from shallowcodec.cli.files import expand_images, write_json, write_output
from shallowcodec.cli.options import add_force, lower_bounded
from shallowcodec.quality import DEFAULT_QUALITY

#: Learned models of the analyses by default (the embedded architectures).
MODELS = ("jpeg-like", "two-layer", "mbt2018-mean")
#: Result files of ``tradeoff`` by default (``shallowcodec eval --json`` in benchmarks/results).
TRADEOFF_RESULTS = ("two-layer", "jpeg-like", "mbt2018-mean", "jpeg420", "jpeg444", "webp", "avif", "jxl")
SGA_STEPS = (0, 100, 300, 1000, 3000)
KERNEL_SIZES = (16, 18, 26, 32)


def define_analyze(p: argparse.ArgumentParser) -> None:
    """The verbs of ``analyze`` (flatness, filters, sga-curve, tradeoff, kernels), each with its options."""
    verbs = p.add_subparsers(dest="analysis", required=True)
    define_flatness(verbs.add_parser("flatness", help="decoded straight latent path: curve length / straight distance"))
    define_filters(verbs.add_parser(
        "filters", help="synthesis filters as an image grid, ordered by the rate of their channels"))
    define_sga_curve(verbs.add_parser("sga-curve", help="R-D cost of real files against SGA iterations, seconds per image"))
    define_tradeoff(verbs.add_parser("tradeoff", help="BD-rate vs mbt2018-mean against decode FLOPs/pixel and decode ms"))
    define_kernels(verbs.add_parser(
        "kernels", help="JPEG-like kernel size k: equal short training from one start, R-D, FLOPs"))


def define_flatness(p: argparse.ArgumentParser) -> None:
    """Options of ``analyze flatness``."""
    add_common(p, "flatness")
    add_models(p, MODELS)
    add_images(p, 8)
    p.add_argument("--crop", type=int, default=256, help="center crop side, a multiple of 64 (default 256)")
    p.add_argument("--steps", type=int, default=32, help="steps along the path (default 32)")
    p.set_defaults(func=cmd_flatness)


def define_filters(p: argparse.ArgumentParser) -> None:
    """Options of ``analyze filters``."""
    add_common(p, "filters")
    add_models(p, ("jpeg-like", "two-layer"))
    add_images(p, None)
    p.add_argument("--columns", type=int, default=16, help="filters per grid row (default 16)")
    p.set_defaults(func=cmd_filters)


def define_sga_curve(p: argparse.ArgumentParser) -> None:
    """Options of ``analyze sga-curve``."""
    add_common(p, "sga-curve")
    add_models(p, MODELS)
    add_images(p, 2)
    p.add_argument("--crop", type=int, default=256, help="center crop side (default 256)")
    p.add_argument("--steps", type=int, nargs="+", default=list(SGA_STEPS), help="SGA iteration counts")
    p.add_argument("--seed", type=int, default=0, help="seed of SGA's Gumbel noise")
    p.set_defaults(func=cmd_sga_curve)


def define_tradeoff(p: argparse.ArgumentParser) -> None:
    """Options of ``analyze tradeoff``."""
    add_common(p, "tradeoff")
    p.add_argument("results", nargs="*", metavar="RESULT[=WEIGHTS]",
                   help="result files of `shallowcodec eval --json`, each optionally with the weights file whose "
                        "FLOPs to count (default: the architecture at the embedded widths; files: benchmarks/results/"
                        f"{{{','.join(TRADEOFF_RESULTS)}}}.json)")
    p.add_argument("--anchor", type=Path, default=paths.results() / "mbt2018-mean.json", help="BD-rate anchor result file")
    p.add_argument("--bench", type=Path, default=paths.results() / "bench.json",
                   help="`shallowcodec bench --json` output for decode times (default benchmarks/results/bench.json)")
    p.add_argument("--bench-threads", default="1", help="thread count of the bench rows to use (default 1)")
    p.set_defaults(func=cmd_tradeoff)


def define_kernels(p: argparse.ArgumentParser) -> None:
    """Options of ``analyze kernels``; the training budget's defaults are analyses.kernels.Budget's."""
    from shallowcodec.analyses.kernels import Budget
    from shallowcodec.config import field_defaults

    budget = field_defaults(Budget)
    add_common(p, "kernels")
    p.add_argument("--weights", type=Path, help="jpeg-like weights to start from (default: the embedded ones)")
    add_images(p, 4)
    p.add_argument("--kernels", type=int, nargs="+", default=list(KERNEL_SIZES), help="kernel sizes k")
    p.add_argument("--qualities", type=float, nargs="+", default=[1, 3, 5], help="qualities evaluated")
    p.add_argument("--data", type=Path, default=paths.train_photos(),
                   help="training images (default ../shared/data/train-photos)")
    p.add_argument("--work", type=Path, default=Path("analysis-kernels-work"), help="folder of the weights files")
    p.add_argument("--train-steps", type=int, default=budget["steps"],
                   help="training steps per kernel size (default %(default)s)")
    p.add_argument("--train-crop", type=int, default=budget["crop"], help="training crop (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=budget["batch_size"], help="default %(default)s")
    p.add_argument("--lr", type=float, default=budget["lr"],
                   help="learning rate (default %(default)s, the paper's and the trainer's)")
    p.add_argument("--quantizer", choices=("noise", "mixed"), default=budget["quantizer"])
    p.add_argument("--seed", type=int, default=budget["seed"])
    p.add_argument("--window", type=int, default=96, help="side of the decoded crop shown (default 96)")
    p.set_defaults(func=cmd_kernels)


def add_common(p: argparse.ArgumentParser, verb: str) -> None:
    """-o/--output (the stem of OUTPUT.png and OUTPUT.json), --force, --threads (torch threads)."""
    p.add_argument("-o", "--output", type=Path, default=Path(f"analysis-{verb}"),
                   help=f"writes OUTPUT.png and OUTPUT.json (default analysis-{verb})")
    add_force(p, "existing outputs")
    p.add_argument("--threads", type=lower_bounded(int, 1, inclusive=True), default=1, help="torch threads (default 1)")


def add_models(p: argparse.ArgumentParser, models: tuple[str, ...]) -> None:
    """--models (embedded) or --weights (files), and --quality of variable-rate models."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--models", nargs="+", default=list(models), metavar="NAME",
                       help=f"embedded models (default: {' '.join(models)})")
    which.add_argument("--weights", type=Path, nargs="+", metavar="FILE", help="weights files instead of embedded models")
    p.add_argument("--quality", type=float, default=DEFAULT_QUALITY,
                   help="quality 0–6 of variable-rate models (default %(default)s)")


def add_images(p: argparse.ArgumentParser, count: int | None) -> None:
    """--images (files or folders; default photos24) and --count (the first N)."""
    p.add_argument("--images", type=Path, nargs="+", default=[paths.photos24()], metavar="PATH",
                   help="image files or folders (default: ../shared/data/photos24)")
    p.add_argument("--count", type=int, default=count, help=f"use at most the first N images (default {count or 'all'})")


def select_images(args: argparse.Namespace) -> list[Path]:
    """The images of --images (files, and the sorted images of folders), at most the first --count.

    Raises:
        ValueError: no images; ImageError: a named folder does not exist.
    """
    found = expand_images(args.images)
    if not found:
        raise ValueError(f"no images in {', '.join(map(str, args.images))}")
    return found[: args.count] if args.count else found


def prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    """Before the work: the outputs OUTPUT.png and OUTPUT.json checked (atomic.check_output), torch's threads set.

    Raises:
        ValueError: an output that exists (without --force), is a folder, or has no folder.
    """
    import torch

    outputs = Path(f"{args.output}.png"), Path(f"{args.output}.json")
    for path in outputs:
        check_output(path, args.force)
    torch.set_num_threads(args.threads)
    return outputs


def write(outputs: tuple[Path, Path], report: dict, figure, force: bool) -> None:
    """Write the figure as PNG (dpi 120) and the report as indented JSON, each atomically."""
    from shallowcodec.plots import png_bytes

    write_output(outputs[0], png_bytes(figure), force=force)
    write_json(outputs[1], report, force)
    print(f"wrote {outputs[0]} and {outputs[1]}")


def codecs_of(args: argparse.Namespace) -> list:
    """(name, codec) of --weights or --models at --quality (analyses.common.named_codecs)."""
    from shallowcodec.analyses.common import named_codecs

    return named_codecs(args.models, args.weights, args.quality)


def cmd_flatness(args: argparse.Namespace) -> None:
    """``analyze flatness`` (analyses.flatness)."""
    from shallowcodec.analyses import common, flatness

    outputs = prepare(args)
    images = select_images(args)
    crops = common.center_crops(images, args.crop)
    report, figure = flatness.analyze(codecs_of(args), crops, [p.name for p in images], args.crop, args.steps)
    write(outputs, report, figure, args.force)


def cmd_filters(args: argparse.Namespace) -> None:
    """``analyze filters`` (analyses.filters)."""
    from shallowcodec.analyses import filters

    outputs = prepare(args)
    report, figure = filters.analyze(codecs_of(args), select_images(args), args.columns)
    write(outputs, report, figure, args.force)


def cmd_sga_curve(args: argparse.Namespace) -> None:
    """``analyze sga-curve`` (analyses.sga_curve)."""
    from shallowcodec.analyses import common, sga_curve

    outputs = prepare(args)
    images = select_images(args)
    crops = common.center_crops(images, args.crop)
    report, figure = sga_curve.analyze(codecs_of(args), crops, [p.name for p in images], args.crop, args.steps,
                                       args.seed)
    write(outputs, report, figure, args.force)


def cmd_tradeoff(args: argparse.Namespace) -> None:
    """``analyze tradeoff`` (analyses.tradeoff); RESULT=WEIGHTS counts the FLOPs of that weights file."""
    from shallowcodec.analyses import tradeoff

    outputs = prepare(args)
    specs = [spec.partition("=") for spec in args.results or [str(paths.results() / f"{n}.json")
                                                              for n in TRADEOFF_RESULTS]]
    results = [(Path(result), Path(weights) if weights else None) for result, _, weights in specs]
    report, figure = tradeoff.analyze(results, args.anchor, args.bench, args.bench_threads)
    write(outputs, report, figure, args.force)


def cmd_kernels(args: argparse.Namespace) -> None:
    """``analyze kernels`` (analyses.kernels): trains each kernel size in --work."""
    from shallowcodec.analyses import kernels
    from shallowcodec.zoo import load_embedded, load_weights

    outputs = prepare(args)
    images = select_images(args)
    start = load_weights(args.weights) if args.weights else load_embedded("jpeg-like")
    budget = kernels.Budget(data=args.data, steps=args.train_steps, crop=args.train_crop, batch_size=args.batch_size,
                            lr=args.lr, quantizer=args.quantizer, threads=args.threads, seed=args.seed)
    report, figure = kernels.analyze(start, args.weights.name if args.weights else "embedded jpeg-like", images,
                                     args.kernels, args.qualities, args.work, budget, args.window)
    write(outputs, report, figure, args.force)
