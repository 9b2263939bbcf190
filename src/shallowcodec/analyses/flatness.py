"""Flatness of the learned synthesis (Yang & Mandt, ICCV 2023): how far the decoded straight latent path
g_s((1−t)·ŷ₀ + t·ŷ₁) bends, as its length over the straight distance ‖g_s(ŷ₁) − g_s(ŷ₀)‖ (1 for a linear g_s)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from shallowcodec.codec import Codec
from shallowcodec.container import unpack


def coded_latents(codec: Codec, x: Tensor) -> Tensor:
    """The decoder's g_s input ŷ (1, M, H/16, W/16), float32, of a (3, H, W) uint8 image with H, W multiples of 64:
    compressed to a real ``.sdc`` file, parsed (container.unpack), entropy-decoded (Codec.decode_latents) and
    ungained (γ⁻¹_y·ŷ_g)."""
    return codec.loaded.model.ungain(codec.decode_latents(unpack(codec.compress(x))), codec.quality)


def path_distances(g_s: torch.nn.Module, y0: Tensor, y1: Tensor, steps: int) -> tuple[np.ndarray, float]:
    """Per-step distances of the decoded straight latent path and the straight distance.

    ŷ(t) = (1−t)·ŷ₀ + t·ŷ₁ at t_i = i/steps (i = 0 … steps), decoded by a float64 copy of g_s, unclamped,
    on the 0–255 scale; distances are L2 norms over all pixels and channels.

    Args:
        g_s: synthesis, (1, M, h, w) → (1, 3, 16h, 16w).
        y0, y1: ungained latents (1, M, h, w).

    Returns:
        (‖g_s(ŷ(t_{i+1})) − g_s(ŷ(t_i))‖ for each step, (steps,); ‖g_s(ŷ₁) − g_s(ŷ₀)‖).
    """
    g = copy.deepcopy(g_s).double()
    y0, y1 = y0.double(), y1.double()
    distances = []
    with torch.no_grad():
        first = previous = g(y0) * 255
        for i in range(1, steps + 1):
            x = g((1 - i / steps) * y0 + i / steps * y1) * 255
            distances.append((x - previous).norm().item())
            previous = x
    return np.array(distances), (previous - first).norm().item()


def flatness(codec: Codec, crops: list[Tensor], names: list[str], steps: int) -> dict:
    """Length of the decoded path over the straight distance, for consecutive pairs of ``crops`` ((3, S, S) uint8).

    Returns:
        {"pairs": [{images, length, straight, ratio, step_distances}], "mean_ratio", "max_ratio"}; distances on the
        0–255 scale, ratio ≥ 1 (exactly 1 for a linear g_s, up to float error).
    """
    latents = [coded_latents(codec, x) for x in crops]
    pairs = []
    for i in range(0, len(crops) - 1, 2):
        d, straight = path_distances(codec.loaded.model.g_s, latents[i], latents[i + 1], steps)
        pairs.append({"images": names[i : i + 2], "length": float(d.sum()), "straight": straight,
                      "ratio": float(d.sum() / straight), "step_distances": d.tolist()})
    ratios = [p["ratio"] for p in pairs]
    return {"pairs": pairs, "mean_ratio": float(np.mean(ratios)), "max_ratio": float(np.max(ratios))}


def analyze(codecs: list[tuple[str, Codec]], crops: list[Tensor], names: list[str], crop: int, steps: int,
            log: Callable[[str], object] = print) -> tuple[dict, Figure]:
    """The flatness report of each (name, codec) on consecutive pairs of ``crops`` (crop × crop, uint8, named
    ``names``), and its figure; one line per model to ``log``.

    Raises:
        ValueError: fewer than two crops.
    """
    if len(crops) < 2:
        raise ValueError("flatness needs at least two images (one pair)")
    models = []
    for name, codec in codecs:
        row = {"name": name, "architecture": codec.architecture, "quality": codec.quality,
               **flatness(codec, crops, names, steps)}
        models.append(row)
        log(f"{name} q{codec.quality:g}: decoded path length / straight distance = {row['mean_ratio']:.5f} "
            f"(mean of {len(row['pairs'])} pairs, max {row['max_ratio']:.5f})")
    report = {"analysis": "flatness", "paper": "Yang & Mandt, ICCV 2023: flatness of the learned synthesis manifold",
              "crop": f"{crop}x{crop} center crops", "steps": steps,
              "distance": "L2 over all pixels of the unclamped g_s output, 0-255 scale", "models": models}
    return report, figure(models, steps, crop)


def figure(models: list[dict], steps: int, crop: int) -> Figure:
    """(a) per-step distance ÷ (straight distance / steps) along t, mean over pairs (1 everywhere for a linear g_s);
    (b) length ÷ straight distance per pair."""
    fig = Figure(figsize=(13, 5))
    ax, bx = fig.subplots(1, 2)
    t = (np.arange(steps) + 0.5) / steps
    for row in models:
        speed = np.array([np.array(p["step_distances"]) * steps / p["straight"] for p in row["pairs"]])
        line, = ax.plot(t, speed.mean(axis=0), label=f"{row['name']}: length/straight = {row['mean_ratio']:.5f}")
        ax.fill_between(t, speed.min(axis=0), speed.max(axis=0), color=line.get_color(), alpha=0.15)
        bx.plot(range(1, len(row["pairs"]) + 1), [p["ratio"] for p in row["pairs"]], "o-", label=row["name"])
    ax.axhline(1, color="gray", linestyle=":", linewidth=1)
    ax.set(xlabel="t along ŷ(t) = (1−t)·ŷ₀ + t·ŷ₁",
           ylabel="step distance ÷ (straight distance / steps)",
           title=f"decoded path speed, {steps} steps (band: min–max over pairs)")
    bx.set(xlabel="image pair", ylabel="decoded path length ÷ straight distance", title="flatness ratio per pair")
    bx.set_xticks(range(1, len(models[0]["pairs"]) + 1),
                  ["\n".join(Path(n).stem[:12] for n in p["images"]) for p in models[0]["pairs"]], fontsize=7)
    for axis in (ax, bx):
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(f"Flatness of g_s on photos24 pairs ({crop}×{crop} center crops, ŷ from real files)")
    fig.tight_layout()
    return fig
