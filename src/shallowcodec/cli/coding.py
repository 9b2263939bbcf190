"""Coding commands: ``compress``, ``decompress``, ``info`` and ``models``.

``decompress``, ``info`` and ``models`` import no PyTorch (decoder.py, container.py and model_files.py
are numpy, Pillow and constriction); ``compress`` imports it when it runs. ``-`` as an input reads
stdin and ``-o -`` writes stdout, with the summary line on stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from PIL import Image

from shallowcodec.atomic import check_output
from shallowcodec.cli.files import CLIError, UsageError, read_bytes, write_output
from shallowcodec.cli.options import (
    add_effort_argument,
    add_force,
    add_model_arguments,
    add_sga_arguments,
    add_target_arguments,
    given_targets,
)
from shallowcodec.container import check_size, header_size, unpack
from shallowcodec.decoder import decompress as decode_file
from shallowcodec.images import ImageError, read_image
from shallowcodec.metrics import bpp
from shallowcodec.model_files import DEFAULT_ARCHITECTURE, ModelNotFoundError, embedded_table

#: ``-`` as an input or output of compress/decompress: stdin or stdout (no file named ``-`` is used;
#: ``./-`` names one).
STDIO = Path("-")
#: The evaluation sets whose figures a model card may hold (scripts/embed_weights.py --annotate).
EVALUATION_SETS = ("photos24", "detail24")
#: Output formats that would add a second lossy step to a decoded image (noticed on stderr).
LOSSY_FORMATS = {"JPEG", "WEBP"}
#: Pillow save options per output format: PNG with zlib level 1 (4× faster than Pillow's default 6 on eval01,
#: 10 % larger), so that writing the PNG does not cost more than decoding it.
SAVE_OPTIONS = {"PNG": {"compress_level": 1}}


def define_compress(p: argparse.ArgumentParser) -> None:
    """Options of ``compress``."""
    p.add_argument("input", type=Path, help="PNG, JPEG, WebP, BMP or TIFF image; - for stdin")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .sdc file to write; - for stdout")
    add_model_arguments(p)
    p.add_argument("--weights", type=Path, help="encode with this weights file (shallowcodec train --out) "
                                               "instead of an embedded --model; decode with the same --weights")
    add_effort_argument(p)
    add_target_arguments(p.add_mutually_exclusive_group())
    add_sga_arguments(p, steps=None)
    add_force(p)
    p.set_defaults(func=cmd_compress, model=None)  # None: not given (the default model unless --weights)


def define_decompress(p: argparse.ArgumentParser) -> None:
    """Options of ``decompress``."""
    p.add_argument("input", type=Path, help="a .sdc file; - for stdin")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="image to write; format from the suffix (.png, .bmp, .tif, ...), PNG if unknown; "
                        "- for PNG on stdout")
    p.add_argument("--weights", type=Path, help="the weights file the image was compressed with "
                                               "(compress --weights); default: the embedded model the file names")
    add_force(p)
    p.set_defaults(func=cmd_decompress)


def define_info(p: argparse.ArgumentParser) -> None:
    """Options of ``info``."""
    p.add_argument("input", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)


def define_models(p: argparse.ArgumentParser) -> None:
    """Options of ``models``."""
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)


def cmd_compress(args: argparse.Namespace) -> None:
    """Encode one image to a ``.sdc`` file; print its bytes and bpp.

    Raises:
        UsageError: both --model and --weights; CLIError, ImageError, ModelNotFoundError, ValueError: bad input.
    """
    if args.weights and args.model:
        raise UsageError("give --model (an embedded model) or --weights (a weights file), not both")
    targets = given_targets(args)
    if targets and args.quality is not None:
        raise UsageError("give --quality or a --target-…, not both (the target chooses the quality)")
    check_paths(args)
    x, notice = read_image(*image_source(args.input), check_size=lambda h, w: check_size(h, w, ImageError))
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    from shallowcodec.codec import load

    codec = (weights_codec(args.weights, args.quality) if args.weights
             else load(args.model or DEFAULT_ARCHITECTURE, args.quality))
    if targets:
        from shallowcodec.rate_control import compress_to_target, limit_note

        result = compress_to_target(codec.loaded, x, targets[0], args.effort, args.seed, codec.decoder)
        data, codec = result.data, codec.at(result.quality)
        if note := limit_note(targets[0], result):
            print(f"note: {note}", file=sys.stderr)
    else:
        data = codec.compress(x, args.effort, sga_steps=args.sga_steps, sga_seconds=args.sga_seconds, seed=args.seed,
                              progress=sys.stderr.isatty())
    write_result(args.output, data, force=args.force)
    h, w = x.shape[-2:]
    label = f"{codec.label} ({args.weights.name})" if args.weights else codec.label
    print(f"{output_name(args.output)}: {label}, {w}x{h}, {len(data)} bytes, {bpp(len(data), h * w):.4f} bpp",
          file=status_stream(args.output))


def cmd_decompress(args: argparse.Namespace) -> None:
    """Decode a ``.sdc`` file to an image with the torch-free decoder; print its size.

    Raises:
        CLIError, ContainerError, ModelNotFoundError, ValueError: bad input.
    """
    check_paths(args)
    fmt = image_format(args.output)
    if fmt in LOSSY_FORMATS:
        print(f"note: writing {fmt} adds a second lossy step to the decoded image (use .png to keep it exactly)",
              file=sys.stderr)
    data = read_input(args.input)
    image = decode_with(args.weights, data) if args.weights else decode_file(data)
    write_result(args.output, encode_image(image, fmt), force=args.force)
    print(f"{output_name(args.output)}: {image.width}x{image.height}", file=status_stream(args.output))


def cmd_info(args: argparse.Namespace) -> None:
    """Print the header fields of a ``.sdc`` file (:func:`file_info`), as lines or JSON."""
    info = file_info(args.input)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:13s}{value:.4f}" if isinstance(value, float) and key == "bpp" else f"{key:13s}{value}")


def cmd_models(args: argparse.Namespace) -> None:
    """Print the embedded models' cards (model_files.embedded_table), as lines or JSON."""
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
        for q, lmbda in zip(card["qualities"], card["lmbdas"]):
            figures = [(name, card[name][str(q)]) for name in EVALUATION_SETS if str(q) in card.get(name, {})]
            print(f"  q{q}: λ={lmbda:g}" + "".join(f", {name} {rd['bpp']:.3f} bpp, {rd['psnr']:.2f} dB"
                                                    for name, rd in figures))


def file_info(path: Path) -> dict:
    """Header fields of a ``.sdc`` file plus its size: model, quality, lmbda, height, width, bytes, bpp."""
    data = read_bytes(path)
    h = unpack(data).header
    return {
        "model": h.architecture, "quality": h.quality, "lmbda": round(h.lmbda, 8), "height": h.height,
        "width": h.width, "bytes": len(data), "bpp": bpp(len(data), h.height * h.width),
        "header_bytes": header_size(h.architecture), "weights_id": f"{h.weights_id:08x}",
    }


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


def decode_with(path: Path, data: bytes) -> Image.Image:
    """Decode a ``.sdc`` file with the weights file ``path`` (torch-free decoder.Decoder) to a PIL image.

    Raises:
        ModelNotFoundError: unreadable weights; ContainerError: a file these weights did not encode.
    """
    from shallowcodec.decoder import Decoder

    return Image.fromarray(Decoder(path).decode(unpack(data)), "RGB")


def check_paths(args: argparse.Namespace) -> None:
    """Before any work: the output (unless stdout) must be writable and not the input (unless stdin).

    Raises:
        CLIError: both name the same file, even with --force; ValueError: see atomic.check_output.
    """
    if args.output == STDIO:
        return
    if args.output.exists() and args.input != STDIO and args.input.exists() \
            and args.output.resolve() == args.input.resolve():
        raise CLIError(f"output {args.output} is the input file")
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


def encode_image(image: Image.Image, fmt: str) -> bytes:
    """A PIL image encoded in memory in Pillow format ``fmt`` (so that nothing is written if encoding fails)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **SAVE_OPTIONS.get(fmt, {}))
    return buffer.getvalue()


def write_result(path: Path, data: bytes, force: bool) -> None:
    """Write ``data`` to stdout (binary) for ``-``, else atomically to ``path`` (see files.write_output).

    Raises:
        CLIError, ValueError: as files.write_output.
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
