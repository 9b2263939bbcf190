"""Rate–distortion evaluation on real bytes: bpp of the actual file, PSNR and MS-SSIM of the decoded image.

Conventions (paper, Evaluation): the reconstruction is rounded to integers in 0–255 before
PSNR (RGB, peak 255) and MS-SSIM (pytorch-msssim, data range 255); bpp = file bytes × 8 / pixels.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from pytorch_msssim import ms_ssim
from torch import Tensor
from tqdm import tqdm

from shallowcodec.codec import Codec, read_image


def psnr(x: Tensor, x_hat: Tensor) -> float:
    """PSNR in dB (peak 255) between two (3, H, W) uint8 images; inf if identical."""
    mse = torch.mean((x.double() - x_hat.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def msssim(x: Tensor, x_hat: Tensor) -> float | None:
    """MS-SSIM in [0, 1] between two (3, H, W) uint8 images; None below 161 px a side (5 scales need it)."""
    if min(x.shape[-2:]) < 161:
        return None
    return ms_ssim(x[None].float(), x_hat[None].float(), data_range=255).item()


def evaluate_image(codec: Codec, path: Path) -> dict:
    """Compress and decode one image; returns name, bytes, bpp, psnr (dB), ms_ssim and seconds."""
    x, _ = read_image(path)
    t0 = time.perf_counter()
    data = codec.compress(x)
    t1 = time.perf_counter()
    x_hat = codec.decompress_tensor(data)
    t2 = time.perf_counter()
    return {
        "image": Path(path).name, "bytes": len(data), "bpp": 8 * len(data) / (x.shape[1] * x.shape[2]),
        "psnr": psnr(x, x_hat), "ms_ssim": msssim(x, x_hat), "encode_s": t1 - t0, "decode_s": t2 - t1,
    }


def evaluate(codec: Codec, paths: list[Path], progress: bool = True) -> dict:
    """Evaluate a codec on images: per-image rows and their means (bpp, psnr, ms_ssim, seconds)."""
    rows = [evaluate_image(codec, p) for p in tqdm(paths, desc=f"{codec.architecture} q{codec.quality}", disable=not progress)]
    keys = ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s")
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in keys if all(r[k] is not None for r in rows)}
    return {"model": codec.architecture, "quality": codec.quality, "lmbda": codec.lmbda, "images": rows, "mean": mean}
