"""Measurement and export commands: ``flops`` (FLOPs per pixel), ``bench`` (wall time) and ``export`` (ONNX).
The tables they print are formatted beside the numbers (complexity.format_flops, bench.format_report)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shallowcodec.cli import paths
from shallowcodec.cli.options import add_force, embedded_names, lower_bounded, quality_type
from shallowcodec.images import read_image
from shallowcodec.model_files import ARCHITECTURE_NAMES
from shallowcodec.quality import DEFAULT_QUALITY


def define_flops(p: argparse.ArgumentParser) -> None:
    """Options of ``flops``."""
    p.add_argument("--model", choices=list(ARCHITECTURE_NAMES), help="one model (default: all)")
    p.add_argument("--paper-size", action="store_true", help="paper widths N=192, M=320 instead of the embedded ones")
    p.add_argument("--config", default="{}",
                   help='builder arguments to replace, e.g. \'{"hyper_synthesis": "cheap", "hyper_kernel": 4}\'')
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_flops)


def define_bench(p: argparse.ArgumentParser) -> None:
    """Options of ``bench``."""
    from shallowcodec import bench

    p.add_argument("--image", type=Path, default=paths.bench_image(), help="photo (default: photos24 eval01)")
    p.add_argument("--quality", type=quality_type, help=f"quality of the embedded models (default {DEFAULT_QUALITY})")
    p.add_argument("--paper-size", action="store_true",
                   help="untrained models at the paper's widths (N=192, M=320) instead of the embedded ones")
    p.add_argument("--runs", type=lower_bounded(int, 1, inclusive=True), default=bench.RUNS,
                   help="timed runs per measurement; the median is reported (default %(default)s)")
    p.add_argument("--threads", type=lower_bounded(int, 1, inclusive=True), nargs="+", default=list(bench.THREADS),
                   help="thread counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)


def define_export(p: argparse.ArgumentParser) -> None:
    """Options of ``export``."""
    p.add_argument("--onnx", type=Path, required=True, metavar="DIR",
                   help="folder (created if missing) for <model>.g_s.onnx, <model>.h_s.onnx, <model>.tables.npz "
                        "and README.md (the data flow)")
    p.add_argument("--model", nargs="+", choices=embedded_names(), metavar="NAME",
                   help=f"embedded models to export (default: all; {', '.join(embedded_names())})")
    add_force(p, "existing files")
    p.set_defaults(func=cmd_export)


def cmd_flops(args: argparse.Namespace) -> None:
    """Print FLOPs per pixel of g_a, h_a, g_s, h_s (complexity.flops_report) as a table or JSON.

    Raises:
        ModelNotFoundError, ValueError: an unknown model or builder argument.
    """
    from shallowcodec import complexity

    report = complexity.flops_report([args.model] if args.model else list(ARCHITECTURE_NAMES), args.paper_size,
                                     json.loads(args.config))
    print(json.dumps(report, indent=2) if args.json else complexity.format_flops(report))


def cmd_bench(args: argparse.Namespace) -> None:
    """Time encoding and decoding of one photo (bench.run); print the tables or JSON.

    Raises:
        ImageError, ModelNotFoundError: bad input.
    """
    from shallowcodec import bench

    x, notice = read_image(args.image)
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    report = {"image": args.image.name, **bench.run(x, args.quality, args.runs, tuple(args.threads), args.paper_size)}
    print(json.dumps(report, indent=2) if args.json else bench.format_report(report))


def cmd_export(args: argparse.Namespace) -> None:
    """Export the embedded decoders as ONNX graphs with their tables (export.export_onnx); print each file."""
    from shallowcodec import export

    for path in export.export_onnx(args.onnx, args.model or embedded_names(), force=args.force):
        print(path)
