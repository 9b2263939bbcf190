"""Decode the golden files (tests/data/golden) with the installed package, as a user of the decoder alone would.

    python tests/decode_golden.py [--without-torch] [--photos DIR]

For every golden file: the torch-free decoder's ŷ must have the sha256 of expected.json (bit-exact on every
machine), ``shallowcodec decompress FILE -o OUT.png`` (the installed command, in a fresh process) must write
the pixels that ``shallowcodec.decompress`` returns, and their PSNR against the photos24 crop the file was made
from must be expected.json's (±0.01 dB: pixels may differ by one level between machines). With
``--without-torch`` (CI runs this in a venv of ``pip install .``, the base package only), PyTorch must be
absent and stay unimported, and a command that needs it must fail with one line naming the extra to install.
Prints one line per file and a summary; exits 1 on the first mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

import shallowcodec
from shallowcodec import container
from shallowcodec.decoder import embedded_decoder

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
#: The photos the golden files were made from: shared/ beside the repository (as tests/conftest.py finds them).
PHOTOS24 = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos24"


def psnr(decoded: np.ndarray, original: np.ndarray) -> float:
    """PSNR (dB, peak 255) of two (H, W, 3) uint8 images; inf when equal."""
    mse = float(np.mean((decoded.astype(np.float64) - original.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def original_crop(photos: Path, name: str, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The (height, width, 3) uint8 crop of a photos24 image that a golden file encodes."""
    with Image.open(photos / name) as image:
        return np.asarray(image.convert("RGB"))[top : top + height, left : left + width]


def command_decode(path: Path, folder: Path) -> np.ndarray:
    """The pixels that ``shallowcodec decompress`` (the installed console command) writes for ``path``.

    Raises:
        AssertionError: the command fails.
    """
    out = folder / f"{path.stem}.png"
    done = subprocess.run(["shallowcodec", "decompress", str(path), "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, f"shallowcodec decompress {path.name}: {done.stderr.strip()}"
    with Image.open(out) as image:
        return np.asarray(image)


def check_file(name: str, expected: dict, photos: Path, folder: Path) -> str:
    """Check one golden file (see the module docstring); returns its report line.

    Raises:
        AssertionError: a mismatch, named.
    """
    data = (GOLDEN / name).read_bytes()
    stream = container.unpack(data)
    y_hat = embedded_decoder(stream.header.architecture).decode_latents(stream)
    digest = hashlib.sha256(y_hat.tobytes()).hexdigest()
    assert digest == expected["y_hat_sha256"], f"{name}: ŷ sha256 {digest}, expected {expected['y_hat_sha256']}"
    pixels = np.asarray(shallowcodec.decompress(data))
    assert np.array_equal(command_decode(GOLDEN / name, folder), pixels), f"{name}: the command decodes other pixels"
    quality = psnr(pixels, original_crop(photos, *expected["crop"]))
    assert abs(quality - expected["psnr"]) <= 0.01, f"{name}: PSNR {quality:.4f} dB, expected {expected['psnr']}"
    return f"{name}: ŷ sha256 ok, {pixels.shape[1]}x{pixels.shape[0]}, {quality:.4f} dB"


def check_without_torch(sample: Path, folder: Path) -> None:
    """PyTorch is not installed, decoding did not import it, and ``compress`` says which extra it needs.

    Raises:
        AssertionError: PyTorch is there, or the command's error is not the one line expected.
    """
    assert importlib.util.find_spec("torch") is None, "torch is installed in the decoder-only environment"
    assert "torch" not in sys.modules
    done = subprocess.run(["shallowcodec", "compress", str(sample), "-o", str(folder / "x.sdc")],
                          capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "pip install 'shallowcodec[torch]'" in lines[0], done.stderr
    print(f"without torch: {lines[0]}")


def main() -> int:
    """Check every golden file; with --without-torch also the absence of PyTorch. Returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--without-torch", action="store_true", help="also require that PyTorch is not installed")
    parser.add_argument("--photos", type=Path, default=PHOTOS24, help="the photos24 folder (default: ../shared)")
    args = parser.parse_args()
    files = json.loads((GOLDEN / "expected.json").read_text())["files"]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for name, expected in sorted(files.items()):
                print(check_file(name, expected, args.photos, Path(tmp)))
            if args.without_torch:
                Image.new("RGB", (16, 16)).save(Path(tmp) / "x.png")
                check_without_torch(Path(tmp) / "x.png", Path(tmp))
        except AssertionError as e:
            print(f"decode_golden: {e}", file=sys.stderr)
            return 1
    print(f"{len(files)} golden files decoded without {'PyTorch' if args.without_torch else 'errors'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
