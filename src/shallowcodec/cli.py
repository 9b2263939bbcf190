"""Command-line interface: ``shallowcodec compress | decompress | info | models | eval | train``.

Exit codes: 0 success, 1 bad input (unreadable image, damaged file, unknown model or
quality, existing output), 2 bad usage (argparse). Errors are one line on stderr, never a
traceback; outputs are written to a temporary file in the target folder and renamed into place,
so a failure never leaves a partial file and an existing file is only replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image

from shallowcodec import sga
from shallowcodec import train as training
from shallowcodec.codec import ImageError, image_files, load, read_image
from shallowcodec.codec import decompress as decode_file
from shallowcodec.container import ContainerError, header_size, unpack
from shallowcodec.evaluation import evaluate
from shallowcodec.zoo import ARCHITECTURES, DEFAULT_ARCHITECTURE, ModelNotFoundError, embedded_table


class CLIError(Exception):
    """A bad-input error reported as one line with exit code 1."""


def check_output(path: Path, force: bool) -> None:
    """Refuse an existing output unless ``force`` (checked before the work and again when writing).

    Raises:
        CLIError: ``path`` exists and ``force`` is false, or its folder does not exist.
    """
    if Path(path).exists() and not force:
        raise CLIError(f"{path} exists (use --force to overwrite)")
    if not Path(path).absolute().parent.is_dir():
        raise CLIError(f"cannot write {path}: no such folder")


def write_atomic(path: Path, data: bytes | None = None, image=None, force: bool = False) -> None:
    """Write bytes (or save a PIL image) to ``path`` via a temp file and a rename.

    An image is saved in the format of the suffix (``.png``, ``.bmp``, ``.tif``, ...; PNG for an
    unknown suffix). The file gets the usual permissions (0666 minus the umask).

    Raises:
        CLIError: ``path`` exists and ``force`` is false, or it cannot be written.
    """
    path = Path(path)
    check_output(path, force)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.absolute().parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise CLIError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if image is not None:
                image.save(f, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
            else:
                f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        os.unlink(tmp)
        if isinstance(e, OSError):
            raise CLIError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_bytes(path: Path) -> bytes:
    """Read a file, turning OS errors into a one-line :class:`CLIError`."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise CLIError(f"cannot read {path}: {e.strerror}") from None


def cmd_compress(args: argparse.Namespace) -> None:
    check_output(args.output, args.force)
    x, notice = read_image(args.input)
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    codec = load(args.model, args.quality)
    data = codec.compress(x, sga_steps=args.sga_steps, sga_seconds=args.sga_seconds, seed=args.seed,
                          progress=sys.stderr.isatty())
    write_atomic(args.output, data, force=args.force)
    h, w = x.shape[-2:]
    print(f"{args.output}: {args.model} q{codec.quality}, {w}x{h}, {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp")


def cmd_decompress(args: argparse.Namespace) -> None:
    check_output(args.output, args.force)
    image = decode_file(read_bytes(args.input))
    write_atomic(args.output, image=image, force=args.force)
    print(f"{args.output}: {image.width}x{image.height}")


def file_info(path: Path) -> dict:
    """Header fields of a ``.sdc`` file plus its size: model, quality, lmbda, height, width, bytes, bpp."""
    data = read_bytes(path)
    stream = unpack(data)
    h = stream.header
    return {
        "model": h.architecture, "quality": h.quality, "lmbda": round(h.lmbda, 8), "height": h.height,
        "width": h.width, "bytes": len(data), "bpp": 8 * len(data) / (h.height * h.width),
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
    for arch, entry in table.items():
        default = " (default)" if arch == DEFAULT_ARCHITECTURE else ""
        print(f"{arch}{default}: qualities {', '.join(map(str, entry['qualities']))}; default quality {entry['default_quality']}")
        for q, facts in entry["qualities"].items():
            extra = f", photos24 {facts['photos24_bpp']:.3f} bpp / {facts['photos24_psnr']:.2f} dB" if "photos24_bpp" in facts else ""
            print(f"  q{q}: λ={facts['lmbda']}{extra}")


def cmd_eval(args: argparse.Namespace) -> None:
    paths = [args.input] if args.input.is_file() else image_files(args.input)
    if not paths:
        raise CLIError(f"no images in {args.input}")
    if args.json:
        check_output(args.json, args.force)
    codec = load(args.model, args.quality)
    result = evaluate(codec, paths, progress=len(paths) > 1)
    for row in result["images"]:
        print(f"{row['image']}: {row['bpp']:.4f} bpp, {row['psnr']:.2f} dB PSNR"
              + (f", MS-SSIM {row['ms_ssim']:.4f}" if row["ms_ssim"] is not None else ""))
    if len(paths) > 1:
        print(f"mean over {len(paths)} images: {result['mean']['bpp']:.4f} bpp, {result['mean']['psnr']:.2f} dB PSNR")
    if args.json:
        write_atomic(args.json, (json.dumps(result, indent=2) + "\n").encode(), force=args.force)


def cmd_train(args: argparse.Namespace) -> None:
    print(training.run(args))


def add_sga_arguments(p: argparse.ArgumentParser, steps: int = 0) -> None:
    """--sga-steps / --sga-seconds / --seed: per-image iterative encoding (sga.py)."""
    p.add_argument("--sga-steps", type=_non_negative, default=steps,
                   help=f"SGA iterations per image (paper: {sga.DEFAULT_STEPS}; default {steps})")
    p.add_argument("--sga-seconds", type=float, help="SGA time budget per image instead of a step count")
    p.add_argument("--seed", type=int, default=0, help="seed of SGA's Gumbel noise")


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def cmd_gap(args: argparse.Namespace) -> None:
    paths = [p for path in args.images for p in ([path] if path.is_file() else image_files(path))]
    if not paths:
        raise CLIError("no images given")
    if args.json:
        check_output(args.json, args.force)
    codec = load(args.model, args.quality)
    rows = []
    for path in paths:
        x, _ = read_image(path)
        row = {"image": path.name, **sga.inference_gap(codec, x, args.sga_steps, args.sga_seconds, args.seed,
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
        write_atomic(args.json, (json.dumps(result, indent=2) + "\n").encode(), force=args.force)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shallowcodec", description="Learned image codec with shallow decoders.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compress", help="compress an image to a .sdc file")
    p.add_argument("input", type=Path, help="PNG, JPEG, WebP, BMP or TIFF image")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--model", default=DEFAULT_ARCHITECTURE, choices=list(ARCHITECTURES))
    p.add_argument("--quality", type=int, help="quality index (see `shallowcodec models`)")
    add_sga_arguments(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("decompress", help="decode a .sdc file to PNG")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=cmd_decompress)

    p = sub.add_parser("info", help="print the header of a .sdc file")
    p.add_argument("input", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("models", help="list the embedded models and qualities")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("eval", help="compress and decode images; report bpp (file bytes), PSNR, MS-SSIM")
    p.add_argument("input", type=Path, help="an image or a folder of images")
    p.add_argument("--model", default=DEFAULT_ARCHITECTURE, choices=list(ARCHITECTURES))
    p.add_argument("--quality", type=int, help="quality index (see `shallowcodec models`)")
    p.add_argument("--json", type=Path, help="write per-image rows and means to this JSON file")
    p.add_argument("--force", action="store_true", help="overwrite an existing JSON file")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("gap", help="inference gap: R-D cost of the amortized encoder minus that after SGA")
    p.add_argument("images", type=Path, nargs="+", help="images or folders")
    p.add_argument("--model", default=DEFAULT_ARCHITECTURE, choices=list(ARCHITECTURES))
    p.add_argument("--quality", type=int, help="quality index (see `shallowcodec models`)")
    add_sga_arguments(p, steps=sga.DEFAULT_STEPS)
    p.add_argument("--json", type=Path, help="write per-image rows and the mean to this JSON file")
    p.add_argument("--force", action="store_true", help="overwrite an existing JSON file")
    p.set_defaults(func=cmd_gap)

    p = sub.add_parser("train", help="train a model at one λ (see PAPER.md for the recipe)")
    training.build_parser(p)
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``shallowcodec`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CLIError, ImageError, ContainerError, ModelNotFoundError, ValueError) as e:
        print(f"shallowcodec {args.command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"shallowcodec {args.command}: error: {e.strerror or e}: {e.filename or ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"shallowcodec {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
