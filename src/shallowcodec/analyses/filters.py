"""The synthesis filters as images (Yang & Mandt, ICCV 2023: the JPEG-like kernels as image patches): per latent
channel, the image one coded symbol adds, in a grid ordered by the rate the channels carry."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from shallowcodec.codec import Codec, mirror_pad
from shallowcodec.hyperprior import ShallowHyperprior
from shallowcodec.images import read_image


def synthesis_filters(model: ShallowHyperprior, quality: float | None, grid: int = 5) -> Tensor:
    """Equivalent synthesis filters (M, 3, h, w), float64, on the 0–1 pixel scale: per latent channel c,
    g_s(δ_c at the centre of a grid × grid latent of zeros) − g_s(0), cropped to the union of the supports.

    δ_c = γ⁻¹_y,c(q) is one coded quantization step of channel c (1 for fixed-λ models), so each filter is the
    image that one coded symbol adds. For the JPEG-like g_s (linear) this is δ_c · g_s.deconv.weight[c], its
    kernel; for the two-layer g_s the image of channel c through both layers (IGDN1 included, at that amplitude).
    """
    g = copy.deepcopy(model.g_s).double()
    M = model.entropy_bottleneck.channels
    step = model.ungain(torch.ones(1, M, 1, 1, dtype=torch.float64), quality).double().flatten()
    impulses = torch.zeros(M, M, grid, grid, dtype=torch.float64)
    impulses[torch.arange(M), torch.arange(M), grid // 2, grid // 2] = step
    with torch.no_grad():
        responses = g(impulses) - g(torch.zeros(1, M, grid, grid, dtype=torch.float64))
    support = responses.abs().amax(dim=(0, 1)) > 1e-12 * responses.abs().max()
    rows, cols = support.any(dim=1).nonzero().flatten(), support.any(dim=0).nonzero().flatten()
    return responses[..., rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def channel_bits(codec: Codec, paths: list[Path]) -> np.ndarray:
    """Bits of each latent channel (M,) summed over the images: −log2 of the discretized Gaussian likelihoods of the
    rounded ŷ_g under the decoder's exact μ (the model's eval-mode forward, σ not snapped to the coder's table)."""
    model = codec.loaded.model.eval()
    total = 0.0
    with torch.no_grad():
        for path in paths:
            x = mirror_pad(read_image(path)[0][None]).float() / 255
            likelihoods = model(x, quality=codec.quality)["likelihoods"]["y"]
            total = total - torch.log2(likelihoods.double()).sum(dim=(0, 2, 3))
    return total.numpy()


def filter_grid(filters: np.ndarray, columns: int, gap: int = 1) -> np.ndarray:
    """Filters (M, 3, h, w) as one RGB image (rows·(h+gap)+gap, columns·(w+gap)+gap, 3) in [0, 1], row-major in
    the given order, like JPEG's DCT basis chart: each filter scaled by its own largest |value| around mid-grey
    (its shape, not its magnitude); gaps and empty cells white; rows = ⌈M / columns⌉."""
    M, _, h, w = filters.shape
    rows = -(-M // columns)
    grid = np.ones((rows * (h + gap) + gap, columns * (w + gap) + gap, 3))
    scale = np.abs(filters).reshape(M, -1).max(axis=1).clip(min=1e-30)
    for i, f in enumerate(filters):
        top, left = gap + (i // columns) * (h + gap), gap + (i % columns) * (w + gap)
        grid[top : top + h, left : left + w] = 0.5 + 0.5 * f.transpose(1, 2, 0) / scale[i]
    return grid


def filters_row(name: str, codec: Codec, paths: list[Path], columns: int) -> tuple[dict, np.ndarray]:
    """The filters of one model ordered by the bits their channels carry on ``paths`` (most first): the JSON row
    and the grid image."""
    bits = channel_bits(codec, paths)
    order = np.argsort(-bits, kind="stable")
    filters = synthesis_filters(codec.loaded.model, codec.quality).numpy()
    grid = filter_grid(filters[order], columns)
    file_bits = sum(8 * len(codec.compress(read_image(p)[0])) for p in paths)
    share = bits[order] / bits.sum()
    row = {"name": name, "architecture": codec.architecture, "quality": codec.quality,
           "filter_size": list(filters.shape[-2:]), "grid_shape": list(grid.shape), "columns": columns,
           "order": order.tolist(), "bits_per_channel": bits.tolist(), "bit_share_sorted": share.tolist(),
           "top16_share": float(share[:16].sum()), "estimated_y_bits": float(bits.sum()), "file_bits_total": file_bits}
    return row, grid


def analyze(codecs: list[tuple[str, Codec]], paths: list[Path], columns: int,
            log: Callable[[str], object] = print) -> tuple[dict, Figure]:
    """The filters report of each (name, codec), rates measured on the images ``paths``, and its figure; one line
    per model to ``log``."""
    rows, grids = [], []
    for name, codec in codecs:
        row, grid = filters_row(name, codec, paths, columns)
        rows.append(row)
        grids.append(grid)
        log(f"{name} q{codec.quality:g}: {len(row['order'])} filters of {row['filter_size'][0]}x"
            f"{row['filter_size'][1]} px; the top 16 channels carry {100 * row['top16_share']:.1f} % of y's bits "
            f"on {len(paths)} images")
    report = {"analysis": "filters", "paper": "Yang & Mandt, ICCV 2023: the JPEG-like kernels as image patches",
              "images": [p.name for p in paths],
              "filter": "g_s(one coded quantization step in channel c at one position) - g_s(0), float64",
              "rate": "bits per channel of y: -log2 likelihoods of the rounded y under the entropy model, summed "
                      "over the images (file_bits_total: the real .sdc files, header and z included)",
              "models": rows}
    return report, figure(rows, grids, len(paths))


def figure(rows: list[dict], grids: list[np.ndarray], n_images: int) -> Figure:
    """One grid per model (most rate first, row-major), and the bit share of the channels in that order."""
    fig = Figure(figsize=(7 * len(rows), 8.8))
    spec = fig.add_gridspec(2, len(rows), height_ratios=[3, 1])
    for i, (row, grid) in enumerate(zip(rows, grids)):
        ax = fig.add_subplot(spec[0, i])
        ax.imshow(grid, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"{row['name']} q{row['quality']:g}: {len(row['order'])} filters "
                     f"{row['filter_size'][0]}×{row['filter_size'][1]} px\n(each scaled to its own range, "
                     "grey = 0; most rate first, row-major)", fontsize=10)
    ax = fig.add_subplot(spec[1, :])
    for row in rows:
        ax.plot(np.arange(1, len(row["order"]) + 1), 100 * np.cumsum(row["bit_share_sorted"]), label=row["name"])
    ax.set(xlabel="latent channels, most rate first", ylabel="cumulative share of y's bits [%]",
           title=f"rate carried by the channels (photos24, {n_images} images)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
