"""Evaluation commands: ``eval`` (R-D on real bytes), ``gap`` (inference gap), ``compare`` (BD-rate) and
``plot`` (R-D curves). They import PyTorch (evaluation.py) when they run, not when defined."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shallowcodec.atomic import check_output
from shallowcodec.cli import paths
from shallowcodec.cli.files import CLIError, UsageError, expand_images, write_json, write_output
from shallowcodec.cli.options import (
    add_effort_argument,
    add_force,
    add_model_arguments,
    add_sga_arguments,
    add_target_arguments,
    embedded_names,
    given_targets,
)
from shallowcodec.images import read_image
from shallowcodec.model_files import DEFAULT_ARCHITECTURE
from shallowcodec.quality import DEFAULT_QUALITY, MAX_QUALITY, snap_quality


def define_eval(p: argparse.ArgumentParser) -> None:
    """Options of ``eval``."""
    from shallowcodec import classical

    p.add_argument("input", type=Path, help="an image or a folder of images")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", default=DEFAULT_ARCHITECTURE, choices=embedded_names(),
                       help=f"embedded model (default: {DEFAULT_ARCHITECTURE})")
    which.add_argument("--weights", type=Path,
                       help="a weights file (e.g. from `shallowcodec train`) instead of an embedded model")
    which.add_argument("--codec", choices=list(classical.ENCODERS),
                       help="a classical codec through Pillow instead of a model (default: its quality sweep)")
    how_good = p.add_mutually_exclusive_group()
    how_good.add_argument("--quality", type=float,
                          help=f"model quality 0–6 (default {DEFAULT_QUALITY}) or codec quality 0–100")
    how_good.add_argument("--qualities", type=float, nargs="+", metavar="Q",
                          help="several qualities (a rate-distortion curve)")
    add_target_arguments(how_good, several=True)
    add_effort_argument(p)
    add_sga_arguments(p, steps=None)
    p.add_argument("--json", type=Path, help="write the result file (schema: evaluation.py) to this path")
    add_force(p, "an existing JSON file")
    p.set_defaults(func=cmd_eval)


def define_gap(p: argparse.ArgumentParser) -> None:
    """Options of ``gap``."""
    from shallowcodec import sga

    p.add_argument("images", type=Path, nargs="+", help="images or folders")
    add_model_arguments(p)
    add_sga_arguments(p, steps=sga.DEFAULT_STEPS)
    p.add_argument("--json", type=Path, help="write per-image rows and the mean to this JSON file")
    add_force(p, "an existing JSON file")
    p.set_defaults(func=cmd_gap)


def define_compare(p: argparse.ArgumentParser) -> None:
    """Options of ``compare``."""
    p.add_argument("a", type=Path, help="anchor result file (shallowcodec eval --json)")
    p.add_argument("b", type=Path, help="tested result file; negative BD-rate = B saves bits")
    p.add_argument("--bpp-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="compare only the parts of the curves between these rates, e.g. 0 0.5 (low rates) or "
                        "0.5 100 (high rates); each curve is cut at the limits by interpolation")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)


def define_plot(p: argparse.ArgumentParser) -> None:
    """Options of ``plot``."""
    p.add_argument("results", type=Path, nargs="*", help="result files (shallowcodec eval --json)")
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG file")
    p.add_argument("--anchors", nargs="*", metavar="NAME",
                   help="overlay published Kodak curves (default set without names; see plots.py)")
    p.add_argument("--anchors-dir", type=Path, default=paths.anchors(),
                   help="folder with paper-results/ and compressai-kodak/ (default: ../shared/anchors)")
    p.add_argument("--title")
    add_force(p)
    p.set_defaults(func=cmd_plot)


def cmd_eval(args: argparse.Namespace) -> None:
    """Compress and decode images with each codec of the sweep; print per-image rows or per-point means, and
    write the result file (evaluation.py's schema) with --json.

    Raises:
        UsageError: qualities out of range; CLIError, ValueError, ...: bad input.
    """
    image_paths = expand_images([args.input])
    if not image_paths:
        raise CLIError(f"no images in {args.input}")
    from shallowcodec.evaluation import evaluate_sweep, rd_result

    if args.json:
        check_output(args.json, args.force)
    sga_on = args.effort > 0 or args.sga_steps is not None or args.sga_seconds is not None
    targets = given_targets(args)
    if (sga_on or targets) and args.codec:
        raise UsageError("--effort, --sga-steps/--sga-seconds and --target-… apply to learned models only")
    codecs = target_codecs(args, targets) if targets else eval_codecs(args)
    compress = (lambda c, x: c.compress(x, args.effort, sga_steps=args.sga_steps, sga_seconds=args.sga_seconds,
                                        seed=args.seed)) if sga_on and not targets else None
    points = evaluate_sweep(codecs, image_paths, progress=sys.stderr.isatty() and (len(image_paths) > 1 or len(codecs) > 1),
                            **({"compress": compress} if compress else {}))
    for point in points:
        if len(points) == 1:
            for row in point["images"]:
                print(f"{row['image']}: {row['bpp']:.4f} bpp, {row['psnr']:.2f} dB PSNR"
                      + (f", MS-SSIM {row['ms_ssim']:.4f}" if row["ms_ssim"] is not None else ""))
        if len(points) > 1 or len(image_paths) > 1:
            print(point_summary(point))
    if args.json:
        model = None if args.codec else codecs[0].architecture
        folder = args.input.resolve().name if args.input.is_dir() else args.input.stem  # one image: its own name
        name = f"{model} ({args.weights.name})" if args.weights else model
        label = f"{name} effort {args.effort}" if sga_on and args.sga_steps is None and args.sga_seconds is None \
            else f"{name} + SGA ({args.sga_steps or f'{args.sga_seconds} s'})" if sga_on else name
        write_json(args.json, rd_result(args.codec or "shallowcodec", model, folder, points, label=label), args.force)


def target_codecs(args: argparse.Namespace, targets: list) -> list:
    """``eval``'s codecs for rate-control ``targets``: the model (``--model`` or variable-rate ``--weights``)
    bound to each target at ``--effort`` (rate_control.TargetCodec, one numpy decoder for all), by
    ascending target.

    Raises:
        UsageError: fixed-λ weights (one quality: nothing to search).
    """
    from shallowcodec.decoder import Decoder
    from shallowcodec.rate_control import TargetCodec
    from shallowcodec.zoo import load_embedded, load_weights, model_weights

    loaded = load_weights(args.weights) if args.weights else load_embedded(args.model)
    if not loaded.variable_rate:
        raise UsageError(f"{args.weights} is a fixed-λ model: --target-… needs variable-rate weights")
    decoder = Decoder(model_weights(loaded))
    return [TargetCodec(loaded, t, args.effort, args.seed, decoder) for t in sorted(targets, key=lambda t: t.value)]


def eval_codecs(args: argparse.Namespace) -> list:
    """The codecs ``eval`` sweeps: embedded models (``--model``), a weights file (``--weights``)
    or a Pillow codec (``--codec``).

    Qualities: ``--qualities``, else ``--quality``, else the model's default quality (a fixed-λ
    weights file: its own) or the classical codec's default sweep.

    Raises:
        UsageError: a quality out of range, or one a fixed-λ weights file does not serve.
    """
    from shallowcodec import classical
    from shallowcodec.codec import Codec, load
    from shallowcodec.zoo import load_weights

    qualities = args.qualities or ([args.quality] if args.quality is not None else None)
    if args.codec:
        if qualities and any(not (0 <= q <= 100 and q == int(q)) for q in qualities):  # NaN, inf: out of range
            raise UsageError(f"{args.codec} qualities are integers 0–100, got {' '.join(f'{q:g}' for q in qualities)}")
        return classical.codecs(args.codec, qualities and [int(q) for q in qualities])
    if qualities:
        try:
            qualities = [snap_quality(q) for q in qualities]
        except ValueError:
            raise UsageError(f"model qualities are 0–{MAX_QUALITY}, got {' '.join(f'{q:g}' for q in qualities)}") from None
    if args.weights:
        loaded = load_weights(args.weights)
        if not loaded.variable_rate and any(q != loaded.quality for q in qualities or []):
            raise UsageError(f"{args.weights} is a fixed-λ model of quality {loaded.quality}: give no --quality or "
                             f"that one, not {' '.join(f'{q:g}' for q in qualities)}")
        return [Codec(loaded, q) for q in (qualities or [None])]
    return [load(args.model, q) for q in (qualities or [None])]


def point_summary(point: dict) -> str:
    """One line of means of a result point: quality, λ, bpp, PSNR, MS-SSIM, seconds."""
    m = point["mean"]
    lmbda = f" (λ={point['lmbda']:.6g})" if point["lmbda"] is not None else ""
    ms_ssim = f", MS-SSIM {m['ms_ssim']:.4f}" if "ms_ssim" in m else ""
    n = len(point["images"])
    target = point.get("target")
    unit = {"bytes": "bytes", "bpp": "bpp", "psnr": "dB"}[target["kind"]] if target else ""
    name = f"target {target['value']:g} {unit}" if target else f"q{point['quality']:g}"
    return (f"{name}{lmbda}: mean over {n} image{'s' * (n != 1)}: {m['bpp']:.4f} bpp, "
            f"{m['psnr']:.2f} dB PSNR{ms_ssim}, encode {m['encode_s']:.3f} s, decode {m['decode_s']:.3f} s")


def cmd_gap(args: argparse.Namespace) -> None:
    """Inference gap per image (evaluation.inference_gap: R-D cost before − after SGA) and its mean; the rows
    as JSON with --json.

    Raises:
        CLIError: no images; ValueError, ...: bad input.
    """
    images = expand_images(args.images)
    if not images:
        raise CLIError("no images given")
    from shallowcodec.codec import load
    from shallowcodec.evaluation import inference_gap

    if args.json:
        check_output(args.json, args.force)
    codec = load(args.model, args.quality)
    rows = []
    for path in images:
        x, _ = read_image(path)
        row = {"image": path.name, **inference_gap(codec, x, args.sga_steps, args.sga_seconds, args.seed,
                                                       progress=sys.stderr.isatty())}
        rows.append(row)
        print(f"{path.name}: cost {row['amortized']['cost']:.4f} → {row['sga']['cost']:.4f} (gap {row['gap']:.4f}); "
              f"{row['amortized']['bpp']:.4f} → {row['sga']['bpp']:.4f} bpp, "
              f"{row['amortized']['psnr']:.2f} → {row['sga']['psnr']:.2f} dB, {row['sga_seconds']:.1f} s")
    mean_gap = sum(r["gap"] for r in rows) / len(rows)
    print(f"mean inference gap over {len(rows)} images: {mean_gap:.4f} (bpp + λ·MSE, λ={codec.lmbda})")
    if args.json:
        result = {"model": codec.architecture, "quality": codec.quality, "lmbda": codec.lmbda,
                  "sga_steps": args.sga_steps, "images": rows, "mean_gap": mean_gap}
        write_json(args.json, result, args.force)


def read_result(path: Path) -> dict:
    """A result file of ``shallowcodec eval --json``.

    Raises:
        CLIError: an unreadable or foreign file (one line).
    """
    from shallowcodec.evaluation import load_result

    try:
        return load_result(path)
    except OSError as e:
        raise CLIError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise CLIError(str(e)) from None


def bd_metrics(a: dict, b: dict, metric: str, bpp_range: tuple[float, float] | None = None) -> dict | None:
    """BD-rate (%) and BD-quality (dB) of result ``b`` against ``a`` for one metric, over the parts of the
    curves in ``bpp_range`` (bdrate.truncate) when given; None if a file lacks the metric.

    Raises:
        ValueError: the curves (or their parts in the range) do not overlap.
    """
    from shallowcodec import bdrate
    from shallowcodec.evaluation import curve

    try:
        (rate_a, q_a), (rate_b, q_b) = curve(a, metric), curve(b, metric)
    except ValueError:
        return None
    if bpp_range:
        (rate_a, q_a), (rate_b, q_b) = (bdrate.truncate(r, q, *bpp_range) for r, q in ((rate_a, q_a), (rate_b, q_b)))
    return {"bd_rate_percent": bdrate.bd_rate(rate_a, q_a, rate_b, q_b),
            "bd_db": bdrate.bd_quality(rate_a, q_a, rate_b, q_b)}


def cmd_compare(args: argparse.Namespace) -> None:
    """BD-rate and BD-PSNR (PSNR and MS-SSIM dB) of result B against result A, as lines or JSON.

    Raises:
        CLIError: an unreadable result file; ValueError: results of other images.
    """
    from shallowcodec.evaluation import check_same_images

    a, b = read_result(args.a), read_result(args.b)
    check_same_images(a, b)
    if args.bpp_range and not 0 <= args.bpp_range[0] < args.bpp_range[1]:
        raise UsageError(f"--bpp-range needs 0 ≤ LOW < HIGH, got {args.bpp_range[0]:g} {args.bpp_range[1]:g}")
    report = {"a": a["label"], "b": b["label"], "bpp_range": args.bpp_range,
              **{metric: bd_metrics(a, b, metric, args.bpp_range) for metric in ("psnr", "ms_ssim_db")}}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    part = f" between {args.bpp_range[0]:g} and {args.bpp_range[1]:g} bpp" if args.bpp_range else ""
    print(f"{b['label']} ({b['images']}) relative to {a['label']} ({a['images']}){part}; negative BD-rate = fewer bits")
    for metric, name in (("psnr", "PSNR"), ("ms_ssim_db", "MS-SSIM")):
        bd = report[metric]
        print(f"  {name:8s}" + (f"BD-rate {bd['bd_rate_percent']:+.2f} %, BD-{name} {bd['bd_db']:+.3f} dB"
                                if bd else "n/a (no MS-SSIM in a file)"))


def cmd_plot(args: argparse.Namespace) -> None:
    """R-D plot (plots.render) of result files, with published curves by --anchors, as a PNG file.

    Raises:
        CLIError, ValueError: unreadable results, unknown anchors, an existing output.
    """
    from shallowcodec import plots

    check_output(args.output, args.force)
    results = [read_result(path) for path in args.results]
    curves = [plots.result_curve(r) for r in results]
    if args.anchors is not None:
        curves += plots.published_curves(args.anchors_dir, args.anchors or None)
    title = args.title or ", ".join(sorted({f"{r['images']} ({r['n_images']} images)" for r in results}))
    write_output(args.output, plots.render(curves, title), force=args.force)
    print(f"{args.output}: {len(curves)} curves")
