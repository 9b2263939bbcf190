"""Encoder effort: R-D of every ``--effort`` level against the lowest, and encode seconds per megapixel.

    python benchmarks/effort.py rd FOLDER [FOLDER ...] --images 4 --crop 256 --efforts 0 1 2 3 \\
        --qualities 1 3 5 --json results/effort-rd.json
    python benchmarks/effort.py speed PHOTO --threads 1 2 --json results/effort-speed.json

``rd``: the first ``--images`` photos of each folder (sorted names), centre-cropped to ``--crop``²
(0: whole), coded at each quality and effort by the embedded ``--model`` (real files, decoded by the
package's decoder); per folder and effort the mean bpp and PSNR per quality and the PSNR BD-rate
against effort 0 (bdrate.py). SGA's cost per iteration is proportional to the pixels, so crops
measure its R-D effect at a fraction of the time; speed is measured apart.

``speed``: wall seconds per megapixel of ``Codec.compress`` of one photo at effort 0 and 1 (the
median of ``--runs``), at each thread count; a level's SGA iterations all cost the same, so the
higher levels are effort 1's SGA time per iteration × their iterations (sga.EFFORT_STEPS), plus
effort 0. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from shallowcodec import bdrate, sga
from shallowcodec.atomic import atomic_write
from shallowcodec.codec import load
from shallowcodec.evaluation import psnr
from shallowcodec.images import image_files, read_image


def centre_crop(x: torch.Tensor, side: int) -> torch.Tensor:
    """The centre ``side``² of a (3, H, W) image (the whole image for 0 or a smaller image)."""
    h, w = x.shape[-2:]
    if side == 0 or min(h, w) < side:
        return x
    top, left = (h - side) // 2, (w - side) // 2
    return x[:, top : top + side, left : left + side].contiguous()


def rd(folders: list[Path], model: str, images: int, crop: int, efforts: list[int], qualities: list[float]) -> dict:
    """Mean bpp / PSNR per folder, effort and quality, and each effort's PSNR BD-rate (%) against the first."""
    out = {}
    for folder in folders:
        photos = [centre_crop(read_image(p)[0], crop) for p in image_files(folder)[:images]]
        curves = {}
        for effort in efforts:
            points = []
            for q in qualities:
                codec = load(model, q)
                rows = []
                for x in photos:
                    start = time.perf_counter()
                    data = codec.compress(x, effort)
                    seconds = time.perf_counter() - start
                    rows.append((8 * len(data) / (x.shape[1] * x.shape[2]), psnr(x, codec.decompress_tensor(data)),
                                 seconds / (x.shape[1] * x.shape[2] / 1e6)))
                points.append({"quality": q, "bpp": statistics.fmean(r[0] for r in rows),
                               "psnr": statistics.fmean(r[1] for r in rows),
                               "encode_s_per_mpx": statistics.fmean(r[2] for r in rows)})
                print(f"{folder.name} effort {effort} q{q:g}: {points[-1]['bpp']:.4f} bpp {points[-1]['psnr']:.2f} dB",
                      flush=True)
            curves[effort] = points
        base = curves[efforts[0]]
        out[folder.name] = {str(e): {"points": p, "bd_rate_vs_first": bdrate.bd_rate(
            [b["bpp"] for b in base], [b["psnr"] for b in base], [c["bpp"] for c in p], [c["psnr"] for c in p])}
            for e, p in curves.items()}
    return out


def speed(photo: Path, model: str, threads: list[int], runs: int) -> dict:
    """Encode seconds per megapixel at effort 0 and 1, per thread count, and the higher levels derived."""
    x, _ = read_image(photo)
    mpx = x.shape[1] * x.shape[2] / 1e6
    codec = load(model, 3)
    out = {}
    for n in threads:
        torch.set_num_threads(n)
        codec.compress(x)  # warm-up: allocator, oneDNN primitives
        seconds = {e: statistics.median(_timed(lambda: codec.compress(x, e)) for _ in range(runs)) / mpx
                   for e in (0, 1)}
        per_iteration = (seconds[1] - seconds[0]) / sga.EFFORT_STEPS[1]
        out[str(n)] = {str(e): seconds[0] + steps * per_iteration for e, steps in enumerate(sga.EFFORT_STEPS)}
        print(f"{n} thread(s): " + ", ".join(f"effort {e} {s:.2f} s/Mpx" for e, s in out[str(n)].items()), flush=True)
    return {"photo": photo.name, "megapixels": mpx, "s_per_mpx": out, "measured_efforts": [0, 1]}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="two-layer")
    parser.add_argument("--json", type=Path, help="write the figures here")
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("rd")
    p.add_argument("folders", type=Path, nargs="+")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--efforts", type=int, nargs="+", default=list(range(sga.MAX_EFFORT + 1)))
    p.add_argument("--qualities", type=float, nargs="+", default=[1, 3, 5])
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("speed")
    p.add_argument("photo", type=Path)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.verb == "rd":
        torch.set_num_threads(args.threads)
        result = rd(args.folders, args.model, args.images, args.crop, args.efforts, args.qualities)
        for folder, levels in result.items():
            print(folder + ": " + ", ".join(f"effort {e} {v['bd_rate_vs_first']:+.1f} %" for e, v in levels.items()))
    else:
        result = speed(args.photo, args.model, args.threads, args.runs)
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=1).encode())


if __name__ == "__main__":
    main()
