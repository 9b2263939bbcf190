"""The inference gap closed by SGA (Yang & Mandt, ICCV 2023; SGA: Yang, Bamler & Mandt 2020): R-D cost of real
files against SGA iterations, and the encoding seconds they cost."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from matplotlib import ticker
from matplotlib.figure import Figure
from torch import Tensor

from shallowcodec.codec import Codec
from shallowcodec.metrics import bpp, psnr_of_mse


def file_cost(codec: Codec, x: Tensor, data: bytes) -> dict:
    """R-D cost of a real file of the (3, H, W) uint8 image ``x``: ``bpp`` (file bytes × 8 / pixels), ``mse``
    (0–255) and ``psnr`` (dB) of its decoded image, ``cost`` = bpp + λ·MSE (as evaluation.inference_gap)."""
    x_hat = codec.decompress_tensor(data)
    mse = torch.mean((x.double() - x_hat.double()) ** 2).item()
    rate = bpp(len(data), x.shape[1] * x.shape[2])
    return {"bpp": rate, "mse": mse, "psnr": psnr_of_mse(max(mse, 1e-10)), "cost": rate + codec.lmbda * mse}


def sga_curve(codec: Codec, crops: list[Tensor], steps: list[int], seed: int = 0) -> list[dict]:
    """R-D cost of real files against SGA iterations.

    For each T the images are compressed as one batch with T SGA iterations (Codec.compress_batch: a separate run
    with its own schedule; the images' costs are independent, so only the Gumbel noise differs from single runs;
    T = 0 is the amortized encoder), decoded and measured (:func:`file_cost`).

    Args:
        crops: (3, H, W) uint8 images of equal size.
        steps: SGA iteration counts T.

    Returns:
        per T: mean ``cost`` (bpp + λ·MSE, MSE on 0–255), ``bpp`` (file bytes), ``psnr`` (dB, mean of the images),
        ``gap`` (cost at the first T − cost), ``seconds_per_image`` (the batch's encode time incl. g_a ÷ images, in
        CPU seconds of this process: the wall time on an idle core at one thread, whatever else runs on the
        machine), ``wall_seconds_per_image`` and per-image rows.
    """
    rows = []
    for t in steps:
        start, cpu = time.perf_counter(), time.process_time()
        files = codec.compress_batch(crops, sga_steps=t, seed=seed)
        seconds = (time.process_time() - cpu) / len(crops), (time.perf_counter() - start) / len(crops)
        images = [file_cost(codec, x, data) for x, data in zip(crops, files)]
        mean = {k: float(np.mean([r[k] for r in images])) for k in ("cost", "bpp", "psnr")}
        rows.append({"steps": t, **mean, "gap": (rows[0]["cost"] if rows else mean["cost"]) - mean["cost"],
                     "seconds_per_image": seconds[0], "wall_seconds_per_image": seconds[1], "images": images})
    return rows


def analyze(codecs: list[tuple[str, Codec]], crops: list[Tensor], names: list[str], crop: int, steps: list[int],
            seed: int, log: Callable[[str], object] = print) -> tuple[dict, Figure]:
    """The SGA-curve report of each (name, codec) on ``crops`` (crop × crop, uint8, named ``names``) at the SGA
    iteration counts ``steps``, and its figure; one line per model to ``log``."""
    models = []
    for name, codec in codecs:
        rows = sga_curve(codec, crops, steps, seed)
        models.append({"name": name, "architecture": codec.architecture, "quality": codec.quality,
                       "lmbda": codec.lmbda, "rows": rows})
        costs = ", ".join(f"{r['steps']}: {r['cost']:.4f} ({r['seconds_per_image']:.1f} s)" for r in rows)
        log(f"{name} q{codec.quality:g}: cost by SGA steps {costs}")
    report = {"analysis": "sga-curve", "paper": "Yang & Mandt, ICCV 2023, SGA (Yang, Bamler & Mandt 2020): inference gap",
              "images": names, "crop": f"{crop}x{crop} center crops",
              "threads": torch.get_num_threads(), "seed": seed,
              "cost": "bpp of the real file + lmbda * MSE (0-255) of its decoded image",
              "batch": "each step count is one SGA run over the images as a batch (Codec.compress_batch); "
                       "seconds_per_image = its encode CPU seconds / images", "models": models}
    return report, figure(models, len(crops), crop, torch.get_num_threads())


def figure(models: list[dict], n_images: int, crop: int, threads: int) -> Figure:
    """(a) mean R-D cost against SGA iterations (symlog: 0 is the amortized encoder); (b) against seconds per image."""
    fig = Figure(figsize=(13, 5))
    ax, bx = fig.subplots(1, 2)
    for m in models:
        label = f"{m['name']} q{m['quality']:g} (gap {m['rows'][0]['cost'] - m['rows'][-1]['cost']:.3f})"
        ax.plot([r["steps"] for r in m["rows"]], [r["cost"] for r in m["rows"]], "o-", label=label)
        bx.plot([r["seconds_per_image"] for r in m["rows"]], [r["cost"] for r in m["rows"]], "o-", label=m["name"])
    ax.set_xscale("symlog", linthresh=100)
    steps = [r["steps"] for r in models[0]["rows"]]
    ax.set_xticks(steps, [str(t) for t in steps])
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set(xlabel="SGA iterations (0 = amortized encoder)", ylabel="R-D cost: bpp + λ·MSE (0–255)")
    bx.set_xscale("log")
    bx.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    bx.set(xlabel=f"encode CPU seconds per image ({threads} thread(s))", ylabel="R-D cost: bpp + λ·MSE (0–255)")
    for axis in (ax, bx):
        axis.grid(True, alpha=0.3, which="both")
        axis.legend(fontsize=8)
    fig.suptitle(f"Inference gap closed by SGA: real files, {n_images} photos24 images ({crop}×{crop} center crops)")
    fig.tight_layout()
    return fig
