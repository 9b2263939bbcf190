"""Rate–distortion evaluation on real bytes: bpp of the actual file, PSNR and MS-SSIM of the decoded image.

Conventions (paper, Evaluation): the reconstruction is rounded to integers in 0–255 before
PSNR (RGB, peak 255) and MS-SSIM (pytorch-msssim, data range 255); bpp = file bytes × 8 / pixels.
Learned (:class:`~shallowcodec.codec.Codec`) and classical
(:class:`~shallowcodec.classical.PillowCodec`) codecs are measured by the same code; the inference
gap of SGA (:func:`inference_gap`) on real files too.

Result file (``shallowcodec eval --json``), one schema for every codec::

    {
      "schema": "shallowcodec-rd/1",
      "codec": "shallowcodec" | "jpeg420" | "jpeg444" | "webp" | "avif" | "jxl",
      "model": "two-layer" | "jpeg-like" | ... | null        (null for classical codecs),
      "label": "two-layer"                                    (legend text of plots),
      "images": "photos24", "n_images": 24,                   (folder name, or the image's for one; image count)
      "threads": 2,                                           (torch threads while timing)
      "software": {"shallowcodec": "0.1.0", "torch": ..., "pillow": ..., "libjpeg_turbo": ..., ...},
      "points": [                                             (one per quality, ascending)
        {"quality": 3,                                        (model quality 0–6, fractions allowed, or codec 0–100;
                                                               a rate-control target's value)
         "lmbda": 0.01 | null,                                (training λ; null for classical codecs and targets)
         "target": {"kind": "bytes" | "bpp" | "psnr", "value": 0.5}   (only for eval --target-…; rate_control.py)
         "mean": {"bpp": …, "psnr": …, "ms_ssim": …, "encode_s": …, "decode_s": …},
         "images": [{"image": "eval01_kodim23.png", "bytes": 11000, "bpp": 0.224, "psnr": 29.9,
                     "quality": 2.5 (only for a target: the quality this file was coded at),
                     "ms_ssim": 0.95 | null, "encode_s": 0.41, "decode_s": 0.05}, …]}
      ]
    }

Units: bpp in bits per pixel of the file bytes, psnr in dB, ms_ssim in [0, 1] (null below
161 px a side; its mean is then left out), seconds of wall time. Means are plain averages over
images (PSNR averaged in dB, as in the paper and CompressAI).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import numpy as np
import PIL
import torch
from pytorch_msssim import ms_ssim
from torch import Tensor
from tqdm import tqdm

from shallowcodec import __version__, sga
from shallowcodec.classical import library_versions
from shallowcodec.container import unpack
from shallowcodec.images import read_image
from shallowcodec.metrics import bpp, psnr_of_mse

SCHEMA = "shallowcodec-rd/1"
#: Metrics a curve can be drawn for: PSNR (dB) and MS-SSIM in dB, −10·log10(1 − MS-SSIM).
METRICS = ("psnr", "ms_ssim_db")


class ImageCodec(Protocol):
    """What :func:`evaluate` needs; the learned ``Codec`` and ``classical.PillowCodec`` both have it."""

    architecture: str  #: model or codec name
    quality: float
    lmbda: float | None

    def compress(self, x: Tensor) -> bytes: ...  # (3, H, W) uint8 → file bytes

    def decompress_tensor(self, data: bytes) -> Tensor: ...  # file bytes → (3, H, W) uint8


#: Encoder hook: (codec, (3, H, W) uint8 image) → file bytes. Lets per-image encoders (SGA) plug in.
Compressor = Callable[[ImageCodec, Tensor], bytes]


def psnr(x: Tensor, x_hat: Tensor) -> float:
    """PSNR in dB (peak 255) between two (3, H, W) uint8 images; inf if identical."""
    return psnr_of_mse(torch.mean((x.double() - x_hat.double()) ** 2).item())


def msssim(x: Tensor, x_hat: Tensor) -> float | None:
    """MS-SSIM in [0, 1] between two (3, H, W) uint8 images; None below 161 px a side (5 scales need it)."""
    if min(x.shape[-2:]) < 161:
        return None
    return ms_ssim(x[None].float(), x_hat[None].float(), data_range=255).item()


def msssim_db(value: float) -> float:
    """MS-SSIM in dB: −10·log10(1 − MS-SSIM) (inf for 1)."""
    return math.inf if value >= 1 else -10 * math.log10(1 - value)


def _default_compress(codec: ImageCodec, x: Tensor) -> bytes:
    return codec.compress(x)


def evaluate_image(codec: ImageCodec, path: Path, compress: Compressor = _default_compress) -> dict:
    """Compress and decode one image; returns name, bytes, bpp, psnr (dB), ms_ssim and seconds.

    ``compress(codec, x)`` produces the file bytes (default ``codec.compress(x)``); its wall
    time is ``encode_s``, that of ``codec.decompress_tensor`` is ``decode_s``.

    A rate-control codec (one with a ``target``: rate_control.TargetCodec) adds the ``quality`` each
    file was coded at (from its header).

    Raises:
        ImageError: the image cannot be read.
        ValueError: the codec refuses the image (e.g. a target it cannot meet), the message prefixed
            with the image's name.
    """
    x, _ = read_image(path)
    t0 = time.perf_counter()
    try:
        data = compress(codec, x)
    except ValueError as e:
        e.args = (f"{Path(path).name}: {e}",)  # the same error, naming the image
        raise
    t1 = time.perf_counter()
    x_hat = codec.decompress_tensor(data)
    t2 = time.perf_counter()
    quality = {"quality": unpack(data).header.quality} if hasattr(codec, "target") else {}
    return {
        "image": Path(path).name, "bytes": len(data), "bpp": bpp(len(data), x.shape[1] * x.shape[2]), **quality,
        "psnr": psnr(x, x_hat), "ms_ssim": msssim(x, x_hat), "encode_s": t1 - t0, "decode_s": t2 - t1,
    }


def evaluate(codec: ImageCodec, paths: list[Path], progress: bool = True,
             compress: Compressor = _default_compress) -> dict:
    """Evaluate a codec on images: per-image rows and their means (bpp, psnr, ms_ssim, seconds).

    Returns ``{"model", "quality", "lmbda", "images", "mean"}`` (``model`` is the codec's
    ``architecture``), and ``"target"`` for a rate-control codec; a tqdm progress bar runs on stderr
    when ``progress``.
    """
    rows = [evaluate_image(codec, p, compress)
            for p in tqdm(paths, desc=f"{codec.architecture} q{codec.quality:g}", disable=not progress)]
    keys = ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s")
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in keys if all(r[k] is not None for r in rows)}
    target = getattr(codec, "target", None)  # rate_control.TargetCodec: each image at its own quality
    return {"model": codec.architecture, "quality": codec.quality, "lmbda": codec.lmbda, "images": rows, "mean": mean,
            **({"target": {"kind": target.kind, "value": target.value}} if target else {})}


def evaluate_sweep(codecs: Iterable[ImageCodec], paths: list[Path], progress: bool = True,
                   compress: Compressor = _default_compress) -> list[dict]:
    """Evaluate one codec at several qualities: the ``points`` of a result file, by ascending quality."""
    results = [evaluate(c, paths, progress, compress) for c in codecs]
    points = [{k: r[k] for k in ("quality", "lmbda", "target", "mean", "images") if k in r} for r in results]
    return sorted(points, key=lambda p: p["quality"])


def rd_result(codec: str, model: str | None, folder: str, points: list[dict], label: str | None = None) -> dict:
    """Assemble a result file (see the module docstring) from :func:`evaluate_sweep` points."""
    return {
        "schema": SCHEMA, "codec": codec, "model": model, "label": label or model or codec,
        "images": folder, "n_images": len(points[0]["images"]) if points else 0,
        "threads": torch.get_num_threads(),
        "software": {"shallowcodec": __version__, "torch": torch.__version__, "pillow": PIL.__version__,
                     **library_versions()},
        "points": points,
    }


def load_result(path: Path) -> dict:
    """Read and check a result file.

    Raises:
        ValueError: not JSON, not this schema, or without points (one-line message).
        OSError: the file cannot be read.
    """
    try:
        result = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not JSON: {e}") from None
    if not isinstance(result, dict) or result.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not a shallowcodec result file (schema {SCHEMA})")
    if not result.get("points"):
        raise ValueError(f"{path} has no rate–distortion points")
    return result


def check_same_images(a: dict, b: dict) -> None:
    """Refuse to compare two result files that measured different images (a BD-rate of one photo
    against a 24-photo anchor means nothing).

    Raises:
        ValueError: the files' image names differ (one-line message naming the counts).
    """
    names_a, names_b = ({i["image"] for p in r["points"] for i in p.get("images", [])} for r in (a, b))
    if names_a != names_b:
        only = sorted(names_a ^ names_b)
        raise ValueError(f"{a.get('label')} covers {len(names_a)} images and {b.get('label')} {len(names_b)}, "
                         f"not the same ({only[0]}{' …' if len(only) > 1 else ''} is in one only): "
                         "compare results of the same images")


def curve(result: dict, metric: str = "psnr") -> tuple[np.ndarray, np.ndarray]:
    """Mean bpp and mean ``metric`` per point of a result file, in point order.

    ``metric``: ``"psnr"`` (dB) or ``"ms_ssim_db"`` (dB of the mean MS-SSIM).

    Raises:
        ValueError: unknown metric, or a point without that mean (MS-SSIM of small images).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    key = "psnr" if metric == "psnr" else "ms_ssim"
    means = [p["mean"] for p in result["points"]]
    if any(key not in m for m in means):
        raise ValueError(f"{result.get('label')}: some points have no mean {key}")
    values = [m[key] if metric == "psnr" else msssim_db(m[key]) for m in means]
    return np.array([m["bpp"] for m in means]), np.array(values)


def inference_gap(codec, x: Tensor, steps: int = sga.DEFAULT_STEPS, seconds: float | None = None,
                  seed: int = 0, progress: bool = False) -> dict:
    """The inference gap of one image: R-D cost of the amortized encoder minus the cost after SGA.

    Both costs are measured on real files: bpp = file bytes × 8 / pixels, MSE (0–255) of the
    decoded, rounded image; cost = bpp + λ·MSE with the codec's λ (Yang et al. 2020, Sec. 4).

    Args:
        codec: a :class:`shallowcodec.codec.Codec`.
        x: (3, H, W) uint8 image.

    Returns:
        dict with ``amortized`` and ``sga`` ({bpp, mse, psnr, cost}), ``gap`` (cost difference,
        ≥ 0 when SGA helps) and ``sga_seconds``.
    """
    rows = {}
    for name, kwargs in (("amortized", {}), ("sga", {"sga_steps": steps, "sga_seconds": seconds, "seed": seed,
                                                       "progress": progress})):
        start = time.monotonic()
        data = codec.compress(x, **kwargs)
        elapsed = time.monotonic() - start
        x_hat = codec.decompress_tensor(data)
        mse = torch.mean((x.double() - x_hat.double()) ** 2).item()
        rate = bpp(len(data), x.shape[1] * x.shape[2])
        rows[name] = {"bpp": rate, "mse": mse, "psnr": psnr_of_mse(max(mse, 1e-10)), "cost": rate + codec.lmbda * mse}
    return {**rows, "gap": rows["amortized"]["cost"] - rows["sga"]["cost"], "sga_seconds": elapsed}
