"""Default data paths of the commands, resolved where a command's options are defined.

The project keeps its data outside the package: photos and published curves in ``shared/`` beside the
repository, committed results in ``benchmarks/results``. Run from a checkout (an editable install, or
``PYTHONPATH=src``) these are found beside it, wherever the current folder is; from any other install
they are taken relative to the current folder (``../shared``, ``benchmarks/results``), as the help
texts name them. Nothing else in the package knows these places: the analyses and library functions
take their paths as arguments.
"""

from __future__ import annotations

from pathlib import Path


def checkout() -> Path | None:
    """The repository this package runs from (the folder of ``pyproject.toml`` above ``src/shallowcodec``),
    or None for an installed copy."""
    root = Path(__file__).resolve().parents[3]  # src/shallowcodec/cli/paths.py → the repository
    return root if (root / "pyproject.toml").is_file() and (root / "src" / "shallowcodec").is_dir() else None


def shared() -> Path:
    """The project's shared folder: ``shared`` beside the checkout, else ``../shared``."""
    root = checkout()
    return root.parent / "shared" if root else Path("..", "shared")


def results() -> Path:
    """The committed result files: ``benchmarks/results`` of the checkout, else of the current folder."""
    root = checkout()
    return (root or Path()) / "benchmarks" / "results"


def photos24() -> Path:
    """The evaluation photos (24 images, Kodak among them)."""
    return shared() / "data" / "photos24"


def train_photos() -> Path:
    """The training photos."""
    return shared() / "data" / "train-photos"


def anchors() -> Path:
    """Published R-D curves (plots.py describes the layout)."""
    return shared() / "anchors"


def bench_image() -> Path:
    """The photo of ``bench``: photos24's Kodak kodim23, 768×512."""
    return photos24() / "eval01_kodim23.png"
