"""Peak memory (RSS) and wall time of ``shallowcodec compress`` / ``decompress`` on big and thin images.

Each command runs as its own process (``python -m shallowcodec.cli``); its peak RSS comes from
``os.wait4``. Images: a photos24 photo resized (Lanczos) to 4000×3000 and 8192×8192, and the thin
67,108,864×1 and 1×4,194,304 images (refused: over the padded-pixel limit, one-line error).
``--seams`` instead measures what tiled analysis costs: bytes and PSNR of one photos24 image
coded with 256-pixel analysis tiles against untiled (one tile).

    PYTHONPATH=src nice -n 10 python benchmarks/memory.py [--only 4000x3000] [--seams]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO = Path(__file__).resolve().parents[2] / "shared/data/photos24/eval03_sail.png"
#: name → (width, height, made from the photo?)
IMAGES = {"4000x3000": (4000, 3000, True), "8192x8192": (8192, 8192, True),
          "67108864x1": (67_108_864, 1, False), "1x4194304": (1, 4_194_304, False)}


def make_image(width: int, height: int, photo: bool, path: Path) -> None:
    """Write a PNG of width × height: the photo resized, or a gray ramp (thin images)."""
    Image.MAX_IMAGE_PIXELS = None
    if photo:
        image = Image.open(PHOTO).convert("RGB").resize((width, height), Image.LANCZOS)
    else:
        ramp = (np.arange(width * height, dtype=np.uint32) % 251).astype(np.uint8).reshape(height, width)
        image = Image.fromarray(np.repeat(ramp[..., None], 3, axis=2))
    image.save(path, compress_level=1)


def measure(args: list[str]) -> tuple[int, float, float, str]:
    """Run ``python -m shallowcodec.cli *args``: (exit code, peak RSS in GB, seconds, last stderr line)."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "shallowcodec.cli", *args], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    last = (err.strip().splitlines() or [""])[-1]
    return proc.returncode, usage.ru_maxrss / 2**20, time.monotonic() - start, last


def run_image(name: str, folder: Path) -> None:
    """Compress and decompress one image, printing exit code, peak RSS (GB) and seconds of each."""
    width, height, photo = IMAGES[name]
    png, sdc, out = folder / f"{name}.png", folder / f"{name}.sdc", folder / f"{name}.out.png"
    make_image(width, height, photo, png)
    for command, args in (("compress", [png, "-o", sdc]), ("decompress", [sdc, "-o", out])):
        if command == "decompress" and not sdc.exists():
            break
        rc, gb, seconds, last = measure([command, *map(str, args)])
        print(f"{name:12s} {command:10s} exit {rc}  peak RSS {gb:6.2f} GB  {seconds:7.1f} s  {last[:110]}", flush=True)


def seams() -> None:
    """Bytes and PSNR of the photo with 256-pixel analysis tiles vs untiled (embedded two-layer q3)."""
    import shallowcodec
    from shallowcodec import codec as codec_module
    from shallowcodec.images import read_image
    from shallowcodec.metrics import psnr_of_mse

    c = shallowcodec.load("two-layer", 3)
    x, _ = read_image(PHOTO)
    for tile in (codec_module.ANALYSIS_TILE, 256):
        codec_module.ANALYSIS_TILE = tile
        data = c.compress(x)
        mse = (x.float() - c.decompress_tensor(data).float()).pow(2).mean().item()
        print(f"analysis tile {tile:5d} px, margin {codec_module.ANALYSIS_MARGIN} px: {len(data)} bytes, "
              f"{psnr_of_mse(mse):.3f} dB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(IMAGES), nargs="+", help="these images only")
    parser.add_argument("--seams", action="store_true", help="tiled vs untiled analysis on one photo")
    args = parser.parse_args()
    if args.seams:
        seams()
        return
    with tempfile.TemporaryDirectory() as folder:
        for name in args.only or IMAGES:
            run_image(name, Path(folder))


if __name__ == "__main__":
    main()
