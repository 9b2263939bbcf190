"""Command-line interface: ``shallowcodec compress | decompress | info | models | eval | compare | plot |
flops | bench | gap | analyze | train | distill | export``.

Start-up is part of the product (a decode should not wait for PyTorch): this module imports no
PyTorch, only the command being run defines its arguments in full (:func:`build_parser`), and
the commands that need PyTorch import it inside their functions. ``decompress``, ``info``,
``models`` and ``--help`` therefore start in well under a second.

Exit codes: 0 success, 1 bad input (unreadable image, damaged file, unknown model or
quality, existing output), 2 bad usage (argparse). Errors are one line on stderr, never a
traceback; outputs are written to a temporary file in the target folder and renamed into place,
so a failure never leaves a partial file and an existing file is only replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

from PIL import Image

from shallowcodec.atomic import atomic_write
from shallowcodec.container import ContainerError, check_size, header_size, unpack
from shallowcodec.decoder import decompress as decode_file
from shallowcodec.images import ImageError, image_files, read_image
from shallowcodec.metrics import bpp
from shallowcodec.model_files import (
    ARCHITECTURE_NAMES,
    DEFAULT_ARCHITECTURE,
    ModelNotFoundError,
    embedded_models,
    embedded_table,
)
from shallowcodec.quality import DEFAULT_QUALITY, MAX_QUALITY, snap_quality

#: The project's shared folder beside the repository (src/shallowcodec/cli.py → repo → its parent).
SHARED = Path(__file__).resolve().parents[3] / "shared"
#: Default photo of ``bench``: photos24's Kodak kodim23, 768×512.
DEFAULT_IMAGE = SHARED / "data" / "photos24" / "eval01_kodim23.png"
#: Default folder of published curves for ``plot --anchors`` (plots.py describes its layout).
DEFAULT_ANCHORS_DIR = SHARED / "anchors"


#: ``-`` as an input or output of compress/decompress: stdin or stdout (no file named ``-`` is used;
#: ``./-`` names one).
STDIO = Path("-")
#: Output formats that would add a second lossy step to a decoded image (noticed on stderr).
LOSSY_FORMATS = {"JPEG", "WEBP"}
#: Fragments of the messages of failed allocations (torch's CPU allocator raises RuntimeError).
OUT_OF_MEMORY = ("can't allocate memory", "not enough memory", "out of memory", "failed to allocate")


class CLIError(Exception):
    """A bad-input error reported as one line with exit code 1."""


class UsageError(CLIError):
    """A bad-usage error (an option's value or combination) reported as one line with exit code 2."""


def check_output(path: Path, force: bool) -> None:
    """Refuse an existing output unless ``force`` (checked before the work and again when writing).

    Raises:
        CLIError: ``path`` exists and ``force`` is false, or its folder does not exist.
    """
    if Path(path).is_dir():
        raise CLIError(f"{path} is a folder")
    if Path(path).exists() and not force:
        raise CLIError(f"{path} exists (use --force to overwrite)")
    if not Path(path).absolute().parent.is_dir():
        raise CLIError(f"cannot write {path}: no such folder")


def write_output(path: Path, data: bytes, force: bool = False) -> None:
    """Write bytes to ``path`` atomically (atomic.py): never a partial file; the file gets the usual
    permissions (0666 minus the umask).

    Raises:
        CLIError: ``path`` exists and ``force`` is false, or it cannot be written.
    """
    path = Path(path)
    check_output(path, force)
    try:
        atomic_write(path, data)
    except OSError as e:
        raise CLIError(f"cannot write {path}: {e.strerror or e}") from None


def write_json(path: Path, data: dict, force: bool) -> None:
    """Write ``data`` as indented JSON with a final newline, atomically (see :func:`write_output`)."""
    write_output(path, (json.dumps(data, indent=2) + "\n").encode(), force=force)


def expand_images(paths: list[Path]) -> list[Path]:
    """Image files named directly, plus the images of named folders (sorted per folder).

    Raises:
        ImageError: a named folder does not exist.
    """
    return [p for path in paths for p in ([path] if path.is_file() else image_files(path))]


def read_bytes(path: Path) -> bytes:
    """Read a file, turning OS errors into a one-line :class:`CLIError`."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise CLIError(f"cannot read {path}: {e.strerror}") from None


def refuse_same_file(input_path: Path, output: Path) -> None:
    """Never let an output replace its own input, even with --force.

    Raises:
        CLIError: both name the same file.
    """
    if output.exists() and input_path.exists() and output.resolve() == input_path.resolve():
        raise CLIError(f"output {output} is the input file")


def cmd_compress(args: argparse.Namespace) -> None:
    if args.weights and args.model:
        raise UsageError("give --model (an embedded model) or --weights (a weights file), not both")
    check_paths(args)
    x, notice = read_image(*image_source(args.input), check_size=lambda h, w: check_size(h, w, ImageError))
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    from shallowcodec.codec import load

    codec = (weights_codec(args.weights, args.quality) if args.weights
             else load(args.model or DEFAULT_ARCHITECTURE, args.quality))
    data = codec.compress(x, sga_steps=args.sga_steps, sga_seconds=args.sga_seconds, seed=args.seed,
                          progress=sys.stderr.isatty())
    write_result(args.output, data, force=args.force)
    h, w = x.shape[-2:]
    label = f"{codec.label} ({args.weights.name})" if args.weights else codec.label
    print(f"{output_name(args.output)}: {label}, {w}x{h}, {len(data)} bytes, {bpp(len(data), h * w):.4f} bpp",
          file=status_stream(args.output))


def cmd_decompress(args: argparse.Namespace) -> None:
    check_paths(args)
    fmt = image_format(args.output)
    if fmt in LOSSY_FORMATS:
        print(f"note: writing {fmt} adds a second lossy step to the decoded image (use .png to keep it exactly)",
              file=sys.stderr)
    data = read_input(args.input)
    image = decode_with(args.weights, data) if args.weights else decode_file(data)
    write_result(args.output, encode_image(image, fmt), force=args.force)
    print(f"{output_name(args.output)}: {image.width}x{image.height}", file=status_stream(args.output))


def weights_codec(path: Path, quality: float | None):
    """A :class:`codec.Codec` of a weights file (e.g. from ``shallowcodec train``) at ``quality``.

    Raises:
        ModelNotFoundError: the file cannot be loaded as weights, or the quality is not one it serves.
    """
    from shallowcodec.codec import Codec
    from shallowcodec.zoo import load_weights

    loaded = load_weights(path)
    try:
        return Codec(loaded, quality)
    except ValueError as e:
        raise ModelNotFoundError(f"weights {path}: {e}") from None


def decode_with(path: Path, data: bytes):
    """Decode a ``.sdc`` file with the weights file ``path`` (torch-free decoder.Decoder) to a PIL image.

    Raises:
        ModelNotFoundError: unreadable weights; ContainerError: a file these weights did not encode.
    """
    from shallowcodec.decoder import Decoder

    return Image.fromarray(Decoder(path).decode(unpack(data)), "RGB")


def check_paths(args: argparse.Namespace) -> None:
    """Before any work: the output (unless stdout) must be writable and not the input (unless stdin).

    Raises:
        CLIError: see :func:`check_output` and :func:`refuse_same_file`.
    """
    if args.output == STDIO:
        return
    if args.input != STDIO:
        refuse_same_file(args.input, args.output)
    check_output(args.output, args.force)


def image_source(path: Path) -> tuple:
    """Arguments of :func:`read_image` for ``path``: the path, or stdin's bytes for ``-``."""
    return (io.BytesIO(read_input(path)), "<stdin>") if path == STDIO else (path, None)


def read_input(path: Path) -> bytes:
    """The bytes of ``path``, or all of stdin for ``-`` (binary).

    Raises:
        CLIError: the file cannot be read.
    """
    return sys.stdin.buffer.read() if path == STDIO else read_bytes(path)


def image_format(path: Path) -> str:
    """Pillow format of an output image by its suffix (PNG for an unknown one, and for stdout)."""
    return "PNG" if path == STDIO else Image.registered_extensions().get(path.suffix.lower(), "PNG")


#: Pillow save options per output format: PNG with zlib level 1 (4× faster than Pillow's default 6 on eval01,
#: 10 % larger), so that writing the PNG does not cost more than decoding it.
SAVE_OPTIONS = {"PNG": {"compress_level": 1}}


def encode_image(image, fmt: str) -> bytes:
    """A PIL image encoded in memory in Pillow format ``fmt`` (so that nothing is written if encoding fails)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **SAVE_OPTIONS.get(fmt, {}))
    return buffer.getvalue()


def write_result(path: Path, data: bytes, force: bool) -> None:
    """Write ``data`` to stdout (binary) for ``-``, else atomically to ``path`` (see :func:`write_output`).

    Raises:
        CLIError: as :func:`write_output`.
    """
    if path != STDIO:
        write_output(path, data, force=force)
        return
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def output_name(path: Path) -> str:
    """How the summary line names an output: its path, or ``<stdout>``."""
    return "<stdout>" if path == STDIO else str(path)


def status_stream(path: Path):
    """Where the summary line goes: stdout, or stderr when stdout carries the output."""
    return sys.stderr if path == STDIO else sys.stdout


def file_info(path: Path) -> dict:
    """Header fields of a ``.sdc`` file plus its size: model, quality, lmbda, height, width, bytes, bpp."""
    data = read_bytes(path)
    stream = unpack(data)
    h = stream.header
    return {
        "model": h.architecture, "quality": h.quality, "lmbda": round(h.lmbda, 8), "height": h.height,
        "width": h.width, "bytes": len(data), "bpp": bpp(len(data), h.height * h.width),
        "header_bytes": header_size(h.architecture), "weights_id": f"{h.weights_id:08x}",
    }


def cmd_info(args: argparse.Namespace) -> None:
    info = file_info(args.input)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:13s}{value:.4f}" if isinstance(value, float) and key == "bpp" else f"{key:13s}{value}")


def cmd_models(args: argparse.Namespace) -> None:
    table = embedded_table()
    if args.json:
        print(json.dumps(table, indent=2))
        return
    for arch, card in table.items():
        default = " (default)" if arch == DEFAULT_ARCHITECTURE else ""
        widths = ", ".join(f"{k}={v}" for k, v in card["config"].items() if k != "variable_rate")
        print(f"{arch}{default}: qualities {card['qualities'][0]}–{card['qualities'][-1]} (default "
              f"{card['default_quality']}), {widths}; {card.get('total_steps', '?')} steps at crop "
              f"{card.get('crop', '?')}, {card['core_hours']:.2f} core-hours, {card['gpu_minutes']:g} GPU-minutes")
        photos24 = card.get("photos24", {})
        for q, lmbda in zip(card["qualities"], card["lmbdas"]):
            rd = photos24.get(str(q))
            print(f"  q{q}: λ={lmbda:g}" + (f", photos24 {rd['bpp']:.3f} bpp, {rd['psnr']:.2f} dB" if rd else ""))


def cmd_eval(args: argparse.Namespace) -> None:
    paths = expand_images([args.input])
    if not paths:
        raise CLIError(f"no images in {args.input}")
    from shallowcodec.evaluation import evaluate_sweep, rd_result

    if args.json:
        check_output(args.json, args.force)
    codecs = eval_codecs(args)
    sga_on = args.sga_steps > 0 or args.sga_seconds is not None
    if sga_on and args.codec:
        raise CLIError("--sga-steps/--sga-seconds apply to learned models only")
    compress = (lambda c, x: c.compress(x, sga_steps=args.sga_steps, sga_seconds=args.sga_seconds, seed=args.seed)) \
        if sga_on else (lambda c, x: c.compress(x))
    points = evaluate_sweep(codecs, paths, progress=sys.stderr.isatty() and (len(paths) > 1 or len(codecs) > 1),
                            compress=compress)
    for point in points:
        if len(points) == 1:
            for row in point["images"]:
                print(f"{row['image']}: {row['bpp']:.4f} bpp, {row['psnr']:.2f} dB PSNR"
                      + (f", MS-SSIM {row['ms_ssim']:.4f}" if row["ms_ssim"] is not None else ""))
        if len(points) > 1 or len(paths) > 1:
            print(point_summary(point))
    if args.json:
        model = None if args.codec else codecs[0].architecture
        folder = args.input.resolve().name if args.input.is_dir() else args.input.stem  # one image: its own name
        name = f"{model} ({args.weights.name})" if args.weights else model
        label = f"{name} + SGA ({args.sga_steps or f'{args.sga_seconds} s'})" if sga_on else name
        result = rd_result(args.codec or "shallowcodec", model, folder, points, label=label)
        write_json(args.json, result, args.force)


def eval_codecs(args: argparse.Namespace) -> list:
    """The codecs ``eval`` sweeps: embedded models (``--model``), a weights file (``--weights``)
    or a Pillow codec (``--codec``).

    Qualities: ``--qualities``, else ``--quality``, else the model's default quality (a fixed-λ
    weights file: its own) or the classical codec's default sweep.
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
    return (f"q{point['quality']:g}{lmbda}: mean over {n} image{'s' * (n != 1)}: {m['bpp']:.4f} bpp, "
            f"{m['psnr']:.2f} dB PSNR{ms_ssim}, encode {m['encode_s']:.3f} s, decode {m['decode_s']:.3f} s")


def cmd_train(args: argparse.Namespace) -> None:
    from shallowcodec import train as training
    from shallowcodec.config import TrainArgumentError, config_from_args

    try:
        path = training.train(config_from_args(args))
    except TrainArgumentError as e:  # also a --resume of another recipe
        raise UsageError(str(e)) from None
    if os.environ.get("RANK", "0") == "0":  # one line per run, also under torchrun
        print(path)


def cmd_distill(args: argparse.Namespace) -> None:
    from shallowcodec import distill  # local import: only this command needs the distillation trainer
    from shallowcodec.config import TrainArgumentError

    options = {k: v for k, v in vars(args).items() if k not in ("command", "func")}
    try:
        print(distill.main_line(distill.distill(distill.DistillConfig(**options))))
    except TrainArgumentError as e:
        raise UsageError(str(e)) from None


def cmd_export(args: argparse.Namespace) -> None:
    from shallowcodec import export  # local import: exporting needs PyTorch and onnx

    for path in export.export_onnx(args.onnx, args.model or embedded_names(), force=args.force):
        print(path)


def add_model_arguments(p: argparse.ArgumentParser, models: list[str]) -> None:
    """--model (embedded architectures) and --quality (0–6, fractions interpolate)."""
    p.add_argument("--model", default=DEFAULT_ARCHITECTURE, choices=models,
                   help=f"embedded model (default: {DEFAULT_ARCHITECTURE})")
    p.add_argument("--quality", type=quality_type, metavar="Q",
                   help=f"quality 0–6 (λ = λ0·r^Q of the model; `models` lists them); fractions such as 2.5 "
                        f"interpolate (default {DEFAULT_QUALITY})")


def quality_type(text: str) -> float:
    """argparse type: a model quality in [0, 6] (variable_rate.snap_quality); else a usage error."""
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


def add_sga_arguments(p: argparse.ArgumentParser, steps: int = 0) -> None:
    """--sga-steps / --sga-seconds / --seed: per-image iterative encoding (sga.py)."""
    from shallowcodec import sga
    p.add_argument("--sga-steps", type=lower_bounded(int, 0, inclusive=True), default=steps,
                   help=f"SGA iterations per image (paper: {sga.DEFAULT_STEPS}; default {steps})")
    p.add_argument("--sga-seconds", type=lower_bounded(float, 0), help="SGA time budget per image instead of a step count")
    p.add_argument("--seed", type=int, default=0, help="seed of SGA's Gumbel noise")


def cmd_gap(args: argparse.Namespace) -> None:
    paths = expand_images(args.images)
    if not paths:
        raise CLIError("no images given")
    from shallowcodec.codec import load
    from shallowcodec.evaluation import inference_gap

    if args.json:
        check_output(args.json, args.force)
    codec = load(args.model, args.quality)
    rows = []
    for path in paths:
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
    """A result file of ``shallowcodec eval --json``; unreadable or foreign files are a :class:`CLIError`."""
    from shallowcodec.evaluation import load_result

    try:
        return load_result(path)
    except OSError as e:
        raise CLIError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise CLIError(str(e)) from None


def bd_metrics(a: dict, b: dict, metric: str) -> dict | None:
    """BD-rate (%) and BD-quality (dB) of result ``b`` against ``a`` for one metric; None if a file lacks it."""
    from shallowcodec import bdrate
    from shallowcodec.evaluation import curve

    try:
        (rate_a, q_a), (rate_b, q_b) = curve(a, metric), curve(b, metric)
    except ValueError:
        return None
    return {"bd_rate_percent": bdrate.bd_rate(rate_a, q_a, rate_b, q_b),
            "bd_db": bdrate.bd_quality(rate_a, q_a, rate_b, q_b)}


def cmd_compare(args: argparse.Namespace) -> None:
    from shallowcodec.evaluation import check_same_images

    a, b = read_result(args.a), read_result(args.b)
    check_same_images(a, b)  # a ValueError: one line, exit 1 (main)
    report = {"a": a["label"], "b": b["label"], "psnr": bd_metrics(a, b, "psnr"),
              "ms_ssim_db": bd_metrics(a, b, "ms_ssim_db")}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{b['label']} ({b['images']}) relative to {a['label']} ({a['images']}); negative BD-rate = fewer bits")
    for metric, name in (("psnr", "PSNR"), ("ms_ssim_db", "MS-SSIM")):
        bd = report[metric]
        print(f"  {name:8s}" + (f"BD-rate {bd['bd_rate_percent']:+.2f} %, BD-{name} {bd['bd_db']:+.3f} dB"
                                if bd else "n/a (no MS-SSIM in a file)"))


def cmd_plot(args: argparse.Namespace) -> None:
    from shallowcodec import plots

    check_output(args.output, args.force)
    results = [read_result(path) for path in args.results]
    curves = [plots.result_curve(r) for r in results]
    if args.anchors is not None:
        curves += plots.published_curves(args.anchors_dir, args.anchors or None)
    title = args.title or ", ".join(sorted({f"{r['images']} ({r['n_images']} images)" for r in results}))
    write_output(args.output, plots.render(curves, title), force=args.force)
    print(f"{args.output}: {len(curves)} curves")


def cmd_flops(args: argparse.Namespace) -> None:
    from shallowcodec import complexity
    from shallowcodec.zoo import build

    rows = []
    for name in [args.model] if args.model else list(ARCHITECTURE_NAMES):
        config = complexity.flops_config(name, args.paper_size, json.loads(args.config))
        rows.append({"model": name, "config": config, **complexity.flops_per_pixel(build(name, **config)),
                     "paper": complexity.PAPER_FLOPS.get(name) if args.paper_size else None})
    if args.json:
        print(json.dumps({"unit": "FLOPs per image pixel", "paper_size": args.paper_size, "models": rows}, indent=2))
        return
    print(f"FLOPs per image pixel ({'paper size' if args.paper_size else 'embedded widths'}; multiply-add = 2 FLOPs)")
    print(f"{'model':16s}{'N':>5s}{'M':>5s}" + "".join(f"{c:>12s}" for c in complexity.COMPONENTS) + f"{'g_s+h_s':>12s}")
    for row in rows:
        print(f"{row['model']:16s}{row['config']['N']:5d}{row['config']['M']:5d}"
              + "".join(f"{row[c]:12,.0f}" for c in complexity.COMPONENTS) + f"{row['g_s'] + row['h_s']:12,.0f}")
        if row["paper"]:
            print(f"{'  paper':26s}" + "".join(f"{row['paper'][c]:12,.0f}" for c in complexity.COMPONENTS)
                  + f"{row['paper']['g_s'] + row['paper']['h_s']:12,.0f}")


def cmd_bench(args: argparse.Namespace) -> None:
    from shallowcodec import bench

    x, notice = read_image(args.image)
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    report = {"image": args.image.name, **bench.run(x, args.quality, args.runs, tuple(args.threads), args.paper_size)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for n, rows in report["threads"].items():
        startup = report["startup_s"].get(n)
        print(f"{report['image']} {report['width']}x{report['height']}, median of {report['runs']} runs, {n} thread(s)"
              + (f"; decoder start-up (imports + weights) {startup:.3f} s" if startup else ""))
        print(f"  {'codec':38s}{'bytes':>7s}{'bpp':>7s}{'enc s':>8s}{'dec s':>8s}{'entropy':>8s}{'h_s':>8s}"
              f"{'g_s':>8s}{'CLI s':>8s}{'÷2-layer':>9s}{'÷jpeg-like':>11s}")
        for r in rows:
            split = "".join(f"{r[k]:8.4f}" if r.get(k) is not None else f"{'':8s}"
                            for k in ("entropy_s", "h_s_s", "g_s_s", "cli_s"))
            print(f"  {r['name']:38s}{r['bytes']:7d}{r['bpp']:7.3f}{r['encode_s']:8.4f}{r['decode_s']:8.4f}{split}"
                  f"{r['decode_vs_two_layer']:9.2f}{r['decode_vs_jpeg_like']:11.2f}")


class OneLineParser(argparse.ArgumentParser):
    """argparse with usage errors as one line on stderr (exit 2) instead of the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def define_compress(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="PNG, JPEG, WebP, BMP or TIFF image; - for stdin")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .sdc file to write; - for stdout")
    add_model_arguments(p, embedded_names())
    p.add_argument("--weights", type=Path, help="encode with this weights file (shallowcodec train --out) "
                                               "instead of an embedded --model; decode with the same --weights")
    add_sga_arguments(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=cmd_compress, model=None)  # None: not given (the default model unless --weights)


def define_decompress(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path, help="a .sdc file; - for stdin")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="image to write; format from the suffix (.png, .bmp, .tif, ...), PNG if unknown; "
                        "- for PNG on stdout")
    p.add_argument("--weights", type=Path, help="the weights file the image was compressed with "
                                               "(compress --weights); default: the embedded model the file names")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=cmd_decompress)


def define_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)


def define_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)


def define_eval(p: argparse.ArgumentParser) -> None:
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
    add_sga_arguments(p)
    p.add_argument("--json", type=Path, help="write the result file (schema: evaluation.py) to this path")
    p.add_argument("--force", action="store_true", help="overwrite an existing JSON file")
    p.set_defaults(func=cmd_eval)


def define_gap(p: argparse.ArgumentParser) -> None:
    from shallowcodec import sga

    p.add_argument("images", type=Path, nargs="+", help="images or folders")
    add_model_arguments(p, embedded_names())
    add_sga_arguments(p, steps=sga.DEFAULT_STEPS)
    p.add_argument("--json", type=Path, help="write per-image rows and the mean to this JSON file")
    p.add_argument("--force", action="store_true", help="overwrite an existing JSON file")
    p.set_defaults(func=cmd_gap)


def define_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", type=Path, help="anchor result file (shallowcodec eval --json)")
    p.add_argument("b", type=Path, help="tested result file; negative BD-rate = B saves bits")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)


def define_plot(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", type=Path, nargs="*", help="result files (shallowcodec eval --json)")
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG file")
    p.add_argument("--anchors", nargs="*", metavar="NAME",
                   help="overlay published Kodak curves (default set without names; see plots.py)")
    p.add_argument("--anchors-dir", type=Path, default=DEFAULT_ANCHORS_DIR,
                   help="folder with paper-results/ and compressai-kodak/ (default: ../shared/anchors)")
    p.add_argument("--title")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=cmd_plot)


def define_flops(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=list(ARCHITECTURE_NAMES), help="one model (default: all)")
    p.add_argument("--paper-size", action="store_true", help="paper widths N=192, M=320 instead of the embedded ones")
    p.add_argument("--config", default="{}",
                   help='builder arguments to replace, e.g. \'{"hyper_synthesis": "cheap", "hyper_kernel": 4}\'')
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_flops)


def define_bench(p: argparse.ArgumentParser) -> None:
    from shallowcodec import bench

    p.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="photo (default: photos24 eval01)")
    p.add_argument("--quality", type=quality_type, help=f"quality of the embedded models (default {DEFAULT_QUALITY})")
    p.add_argument("--paper-size", action="store_true",
                   help="untrained models at the paper's widths (N=192, M=320) instead of the embedded ones")
    p.add_argument("--runs", type=lower_bounded(int, 1, inclusive=True), default=5,
                   help="timed runs per measurement; the median is reported")
    p.add_argument("--threads", type=lower_bounded(int, 1, inclusive=True), nargs="+", default=list(bench.THREADS),
                   help="thread counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)


def define_analyze(p: argparse.ArgumentParser) -> None:
    from shallowcodec import analysis

    analysis.add_arguments(p)


def define_train(p: argparse.ArgumentParser) -> None:
    from shallowcodec.config import build_parser as build_train_parser

    build_train_parser(p)
    p.set_defaults(func=cmd_train)


def define_distill(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, required=True, help="source weights (e.g. an embedded model's file)")
    p.add_argument("--out", type=Path, required=True, help="weights file to write (.safetensors)")
    p.add_argument("--data", type=Path, required=True, help="folder of training images")
    p.add_argument("--steps", type=int, default=3000, help="Adam steps (lr ×0.1 after 80 %%)")
    p.add_argument("--crops", type=int, default=2000, help="random crops whose latents are cached")
    p.add_argument("--crop", type=int, default=256, help="crop side, a multiple of 64")
    p.add_argument("--hyper-kernel", type=int, default=6,
                   help="kernel of the cheap h_s (FLOPs/pixel at M=320: 1,602 at 4, 3,602 at 6)")
    p.add_argument("--batch-size", type=int, default=32, help="cached crops per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-minutes", type=float, help="stop after this long (the lr schedule follows the time)")
    p.add_argument("--cache", type=Path, help="folder of the cached latents and images "
                   "(default: latents beside --out, images where `train` keeps them)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.set_defaults(func=cmd_distill)


def define_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("--onnx", type=Path, required=True, metavar="DIR",
                   help="folder (created if missing) for <model>.g_s.onnx, <model>.h_s.onnx, <model>.tables.npz "
                        "and README.md (the data flow)")
    p.add_argument("--model", nargs="+", choices=embedded_names(), metavar="NAME",
                   help=f"embedded models to export (default: all; {', '.join(embedded_names())})")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.set_defaults(func=cmd_export)


def embedded_names() -> list[str]:
    """Architectures with embedded weights (the --model choices)."""
    return sorted(embedded_models()) or list(ARCHITECTURE_NAMES)


#: Sub-commands: name → (one-line help, function that defines its arguments).
COMMANDS = {
    "compress": ("compress an image to a .sdc file", define_compress),
    "decompress": ("decode a .sdc file to an image (no PyTorch)", define_decompress),
    "info": ("print the header of a .sdc file", define_info),
    "models": ("list the embedded models and qualities", define_models),
    "eval": ("compress and decode images; report bpp (file bytes), PSNR, MS-SSIM", define_eval),
    "gap": ("inference gap: R-D cost of the amortized encoder minus that after SGA", define_gap),
    "compare": ("BD-rate and BD-PSNR of result B against result A (Bjøntegaard, PCHIP)", define_compare),
    "plot": ("rate-distortion plot (PSNR and MS-SSIM dB against bpp) as PNG", define_plot),
    "flops": ("FLOPs per pixel of g_a, h_a, g_s, h_s (paper convention)", define_flops),
    "bench": ("encode/decode wall time against mbt2018-mean and Pillow codecs", define_bench),
    "analyze": ("the paper's analyses: flatness, filters, sga-curve, tradeoff, kernels (PNG + JSON)", define_analyze),
    "train": ("train a fixed-λ (the paper's recipe) or variable-rate model; see README", define_train),
    "distill": ("train a cheap h_s (one ConvT, stride 4) for frozen weights on cached latents", define_distill),
    "export": ("export the embedded decoders as ONNX graphs (g_s, exact h_s) with their tables", define_export),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``shallowcodec`` argument parser.

    Args:
        command: define only this sub-command's arguments (the others are listed by name and
            help line; defining some of them imports PyTorch); "" defines none, None all.
    """
    parser = OneLineParser(prog="shallowcodec", description="Learned image codec with shallow decoders.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, define) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if command is None or command == name:
            define(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``shallowcodec`` command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv and argv[0] in COMMANDS else "").parse_args(argv)
    try:
        args.func(args)
    except UsageError as e:
        print(f"shallowcodec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (CLIError, ImageError, ContainerError, ModelNotFoundError, ValueError) as e:
        print(f"shallowcodec {args.command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"shallowcodec {args.command}: error: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not any(m in str(e).lower() for m in OUT_OF_MEMORY):
            raise
        print(f"shallowcodec {args.command}: error: out of memory", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"shallowcodec {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
