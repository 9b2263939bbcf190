"""The ``shallowcodec`` command: its table of sub-commands, the parser, and :func:`main` (exit codes, one-line
errors).

Start-up is part of the product (a decode should not wait for PyTorch): only the command being run
defines its arguments in full (:func:`build_parser`), and the commands that need PyTorch import it
when they are defined or run, so ``decompress``, ``info``, ``models`` and ``--help`` import neither
PyTorch nor CompressAI. The commands live by group: coding.py (compress, decompress, info, models),
evaluation.py (eval, gap, compare, plot), tools.py (flops, bench, export), training.py (train,
distill) and analyze.py (the paper's analyses).

Exit codes: 0 success, 1 bad input (unreadable image, damaged file, unknown model or quality,
existing output, a missing optional dependency), 2 bad usage (argparse, :class:`UsageError`).
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from shallowcodec.cli.files import CLIError, UsageError
from shallowcodec.container import ContainerError
from shallowcodec.images import ImageError
from shallowcodec.model_files import ModelNotFoundError

#: Sub-commands: name → (one-line help, the module of this package that defines it). A command's module
#: is imported only when the command runs (start-up), and defines its arguments in ``define_<name>``.
COMMANDS = {
    "compress": ("compress an image to a .sdc file", "coding"),
    "decompress": ("decode a .sdc file to an image (no PyTorch)", "coding"),
    "info": ("print the header of a .sdc file", "coding"),
    "models": ("list the embedded models and qualities", "coding"),
    "eval": ("compress and decode images; report bpp (file bytes), PSNR, MS-SSIM", "evaluation"),
    "gap": ("inference gap: R-D cost of the amortized encoder minus that after SGA", "evaluation"),
    "compare": ("BD-rate and BD-PSNR of result B against result A (Bjøntegaard, PCHIP)", "evaluation"),
    "plot": ("rate-distortion plot (PSNR and MS-SSIM dB against bpp) as PNG", "evaluation"),
    "flops": ("FLOPs per pixel of g_a, h_a, g_s, h_s (paper convention)", "tools"),
    "bench": ("encode/decode wall time against mbt2018-mean and Pillow codecs", "tools"),
    "analyze": ("the paper's analyses: flatness, filters, sga-curve, tradeoff, kernels (PNG + JSON)", "analyze"),
    "train": ("train a fixed-λ (the paper's recipe) or variable-rate model; see README", "training"),
    "distill": ("train a cheap h_s (one ConvT, stride 4) for frozen weights on cached latents", "training"),
    "export": ("export the embedded decoders as ONNX graphs (g_s, exact h_s) with their tables", "tools"),
}

#: The optional dependencies, by the module a command failed to import → the extra of pyproject.toml that
#: installs it (the base package is the decoder: numpy, Pillow, constriction, safetensors).
EXTRAS = {
    "torch": "torch", "torchvision": "torch", "compressai": "torch", "pytorch_msssim": "torch", "tqdm": "torch",
    "threadpoolctl": "torch", "pillow_jxl": "torch",
    "matplotlib": "analysis", "scipy": "analysis",
    "onnx": "onnx", "onnxruntime": "onnx",
}
#: Fragments of the messages of failed allocations (torch's CPU allocator raises RuntimeError).
OUT_OF_MEMORY = ("can't allocate memory", "not enough memory", "out of memory", "failed to allocate")


class OneLineParser(argparse.ArgumentParser):
    """argparse with usage errors as one line on stderr (exit 2) instead of the usage block."""

    def error(self, message: str):
        """Exit 2 with ``message`` as one line."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``shallowcodec`` argument parser.

    Args:
        command: define only this sub-command's arguments (the others are listed by name and
            help line; defining some of them imports PyTorch); "" defines none, None all.

    Raises:
        ModuleNotFoundError: a command's optional dependency is not installed (see :data:`EXTRAS`).
    """
    parser = OneLineParser(prog="shallowcodec", description="Learned image codec with shallow decoders.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, group) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if command is None or command == name:
            getattr(import_module(f"shallowcodec.cli.{group}"), f"define_{name}")(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``shallowcodec`` command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else ""
    try:
        args = build_parser(command).parse_args(argv)
        args.func(args)
    except ModuleNotFoundError as e:
        missing = (e.name or "").partition(".")[0]
        if missing not in EXTRAS:
            raise
        return fail(command, f"this command needs the {EXTRAS[missing]!r} extra: pip install "
                             f"'shallowcodec[{EXTRAS[missing]}]' ({missing} is not installed)", 1)
    except UsageError as e:
        return fail(command, str(e), 2)
    except (CLIError, ImageError, ContainerError, ModelNotFoundError, ValueError) as e:
        return fail(command, str(e), 1)
    except OSError as e:
        return fail(command, f"{e.strerror or e}: {e.filename or ''}", 1)
    except (MemoryError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not any(m in str(e).lower() for m in OUT_OF_MEMORY):
            raise
        return fail(command, "out of memory", 1)
    except KeyboardInterrupt:
        print(f"shallowcodec {command}: interrupted", file=sys.stderr)
        return 130
    return 0


def fail(command: str, message: str, code: int) -> int:
    """Print ``shallowcodec COMMAND: error: MESSAGE`` on stderr; return the exit code ``code``."""
    print(f"shallowcodec {command}: error: {message}", file=sys.stderr)
    return code
