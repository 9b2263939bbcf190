"""The paper's analyses, reproduced on the product's own models: ``shallowcodec analyze VERB``.

Yang & Mandt, ICCV 2023 (../shared/PAPER.md, "Analyses the paper makes"), on the embedded models
(``zoo.load_embedded``) or on any weights file (``--weights``, ``zoo.load_weights``). Every verb writes
``OUTPUT.png`` (the figure) and ``OUTPUT.json`` (its numbers), atomically:

- ``flatness``: the decoded straight latent path ŷ(t) = (1−t)·ŷ₀ + t·ŷ₁ between two images; the length of
  the curve g_s(ŷ(t)) over the straight distance ‖g_s(ŷ₁) − g_s(ŷ₀)‖ (1 for a linear g_s);
- ``filters``: the synthesis filters as images (JPEG-like: its kernels; two-layer: the equivalent image
  of one latent channel through both layers), ordered by the rate their channels carry;
- ``sga-curve``: R-D cost of real files (bpp + λ·MSE on 0–255) against SGA iterations, with seconds per image;
- ``tradeoff``: BD-rate against mbt2018-mean versus decode FLOPs/pixel (g_s + h_s) and decode ms;
- ``kernels``: the JPEG-like kernel size k after equal short training from the same start: FLOPs/pixel,
  R-D, BD-rate and blocking.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402

from shallowcodec import bdrate, complexity  # noqa: E402
from shallowcodec import train as training  # noqa: E402
from shallowcodec.atomic import atomic_write  # noqa: E402
from shallowcodec.codec import Codec, mirror_pad  # noqa: E402
from shallowcodec.config import build_parser as build_train_parser  # noqa: E402
from shallowcodec.config import config_from_args  # noqa: E402
from shallowcodec.container import unpack  # noqa: E402
from shallowcodec.evaluation import curve, evaluate_sweep, load_result, rd_result  # noqa: E402
from shallowcodec.hyperprior import ShallowHyperprior  # noqa: E402
from shallowcodec.images import image_files, read_image  # noqa: E402
from shallowcodec.metrics import bpp, psnr_of_mse  # noqa: E402
from shallowcodec.model_files import model_card  # noqa: E402
from shallowcodec.transforms import JPEGLikeSynthesis  # noqa: E402
from shallowcodec.zoo import LoadedModel, build, load_embedded, load_weights, save_weights  # noqa: E402

#: The project's shared folder beside the repository, and the repository's committed results.
SHARED = Path(__file__).resolve().parents[3] / "shared"
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
PHOTOS24 = SHARED / "data" / "photos24"
TRAIN_PHOTOS = SHARED / "data" / "train-photos"
#: Learned models of the analyses by default (the embedded architectures).
MODELS = ("jpeg-like", "two-layer", "mbt2018-mean")
#: Result files of ``tradeoff`` by default (``shallowcodec eval --json`` in benchmarks/results).
TRADEOFF_RESULTS = ("two-layer", "jpeg-like", "mbt2018-mean", "jpeg420", "jpeg444", "webp", "avif", "jxl")
SGA_STEPS = (0, 100, 300, 1000, 3000)
KERNEL_SIZES = (16, 18, 26, 32)
#: The g_s stride: one latent pixel per 16×16 image block.
BLOCK = 16


# --- shared helpers ------------------------------------------------------------------------------


def center_crop(x: Tensor, size: int) -> Tensor:
    """The central size × size crop of a (3, H, W) image.

    Raises:
        ValueError: the image is smaller than ``size`` on a side.
    """
    h, w = x.shape[-2:]
    if min(h, w) < size:
        raise ValueError(f"image of {w}x{h} is smaller than the {size}x{size} crop")
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, top : top + size, left : left + size].contiguous()


def select_images(paths: list[Path], count: int | None) -> list[Path]:
    """Image files named directly plus those of named folders (sorted), at most the first ``count`` of them.

    Raises:
        ValueError: no images; ImageError: a named folder does not exist.
    """
    found = [p for path in paths for p in ([Path(path)] if Path(path).is_file() else image_files(path))]
    if not found:
        raise ValueError(f"no images in {', '.join(map(str, paths))}")
    return found[:count] if count else found


def named_codecs(args: argparse.Namespace) -> list[tuple[str, Codec]]:
    """(name, codec) of ``--weights`` files (named "architecture (file)") or embedded ``--models``, at ``--quality``
    (fixed-λ weights: their own quality).

    Raises:
        ModelNotFoundError: unknown model or unreadable weights; ValueError: a quality outside 0–6.
    """
    if args.weights:
        loaded = [(f"{m.architecture} ({path.name})", m) for path in args.weights for m in [load_weights(path)]]
    else:
        loaded = [(name, load_embedded(name)) for name in args.models]
    return [(name, Codec(m, args.quality if m.variable_rate else None)) for name, m in loaded]


def output_paths(stem: Path, force: bool) -> tuple[Path, Path]:
    """``stem``.png and ``stem``.json, checked before the work: their folder exists, and they do not unless ``force``.

    Raises:
        ValueError: a missing folder or an existing output (one line).
    """
    paths = Path(f"{stem}.png"), Path(f"{stem}.json")
    if not paths[0].absolute().parent.is_dir():
        raise ValueError(f"cannot write {paths[0]}: no such folder")
    for path in paths:
        if path.exists() and not force:
            raise ValueError(f"{path} exists (use --force to overwrite)")
    return paths


def write_outputs(paths: tuple[Path, Path], fig: plt.Figure, report: dict) -> None:
    """Write the figure as PNG (dpi 120) and the report as indented JSON, each atomically (atomic.py)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write(paths[0], buffer.getvalue())
    atomic_write(paths[1], (json.dumps(report, indent=2) + "\n").encode())
    print(f"wrote {paths[0]} and {paths[1]}")


# --- flatness ------------------------------------------------------------------------------------


def coded_latents(codec: Codec, x: Tensor) -> Tensor:
    """The decoder's g_s input ŷ (1, M, H/16, W/16), float32, of a (3, H, W) uint8 image with H, W multiples of 64:
    compressed to a real ``.sdc`` file, parsed (container.unpack), entropy-decoded (Codec.decode_latents) and
    ungained (γ⁻¹_y·ŷ_g)."""
    return codec.loaded.model.ungain(codec.decode_latents(unpack(codec.compress(x))), codec.quality)


def path_distances(g_s: torch.nn.Module, y0: Tensor, y1: Tensor, steps: int = 32) -> tuple[np.ndarray, float]:
    """Per-step distances of the decoded straight latent path and the straight distance (paper: flatness analysis).

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


def cmd_flatness(args: argparse.Namespace) -> None:
    paths = output_paths(args.output, args.force)
    images = select_images(args.images, args.count)
    if len(images) < 2:
        raise ValueError("flatness needs at least two images (one pair)")
    crops = [center_crop(read_image(p)[0], args.crop) for p in images]
    names = [p.name for p in images]
    models = []
    for name, codec in named_codecs(args):
        row = {"name": name, "architecture": codec.architecture, "quality": codec.quality,
               **flatness(codec, crops, names, args.steps)}
        models.append(row)
        print(f"{name} q{codec.quality:g}: decoded path length / straight distance = {row['mean_ratio']:.5f} "
              f"(mean of {len(row['pairs'])} pairs, max {row['max_ratio']:.5f})")
    report = {"analysis": "flatness", "paper": "Yang & Mandt, ICCV 2023: flatness of the learned synthesis manifold",
              "crop": f"{args.crop}x{args.crop} center crops", "steps": args.steps,
              "distance": "L2 over all pixels of the unclamped g_s output, 0-255 scale", "models": models}
    write_outputs(paths, flatness_figure(models, args.steps, args.crop), report)


def flatness_figure(models: list[dict], steps: int, crop: int) -> plt.Figure:
    """(a) per-step distance ÷ (straight distance / steps) along t, mean over pairs (1 everywhere for a linear g_s);
    (b) length ÷ straight distance per pair."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5))
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


# --- filters -------------------------------------------------------------------------------------


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


def filter_grid(filters: np.ndarray, columns: int = 16, gap: int = 1) -> np.ndarray:
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


def cmd_filters(args: argparse.Namespace) -> None:
    paths = output_paths(args.output, args.force)
    images = select_images(args.images, args.count)
    rows, grids = [], []
    for name, codec in named_codecs(args):
        row, grid = filters_row(name, codec, images, args.columns)
        rows.append(row)
        grids.append(grid)
        print(f"{name} q{codec.quality:g}: {len(row['order'])} filters of {row['filter_size'][0]}x"
              f"{row['filter_size'][1]} px; the top 16 channels carry {100 * row['top16_share']:.1f} % of y's bits "
              f"on {len(images)} images")
    report = {"analysis": "filters", "paper": "Yang & Mandt, ICCV 2023: the JPEG-like kernels as image patches",
              "images": [p.name for p in images],
              "filter": "g_s(one coded quantization step in channel c at one position) - g_s(0), float64",
              "rate": "bits per channel of y: -log2 likelihoods of the rounded y under the entropy model, summed "
                      "over the images (file_bits_total: the real .sdc files, header and z included)",
              "models": rows}
    write_outputs(paths, filters_figure(rows, grids, len(images)), report)


def filters_figure(rows: list[dict], grids: list[np.ndarray], n_images: int) -> plt.Figure:
    """One grid per model (most rate first, row-major), and the bit share of the channels in that order."""
    fig = plt.figure(figsize=(7 * len(rows), 8.8))
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


# --- sga-curve -----------------------------------------------------------------------------------


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


def cmd_sga_curve(args: argparse.Namespace) -> None:
    paths = output_paths(args.output, args.force)
    images = select_images(args.images, args.count)
    crops = [center_crop(read_image(p)[0], args.crop) for p in images]
    models = []
    for name, codec in named_codecs(args):
        rows = sga_curve(codec, crops, args.steps, args.seed)
        models.append({"name": name, "architecture": codec.architecture, "quality": codec.quality,
                       "lmbda": codec.lmbda, "rows": rows})
        costs = ", ".join(f"{r['steps']}: {r['cost']:.4f} ({r['seconds_per_image']:.1f} s)" for r in rows)
        print(f"{name} q{codec.quality:g}: cost by SGA steps {costs}")
    report = {"analysis": "sga-curve", "paper": "Yang & Mandt, ICCV 2023, SGA (Yang, Bamler & Mandt 2020): inference gap",
              "images": [p.name for p in images], "crop": f"{args.crop}x{args.crop} center crops",
              "threads": torch.get_num_threads(), "seed": args.seed,
              "cost": "bpp of the real file + lmbda * MSE (0-255) of its decoded image",
              "batch": "each step count is one SGA run over the images as a batch (Codec.compress_batch); "
                       "seconds_per_image = its encode CPU seconds / images", "models": models}
    write_outputs(paths, sga_figure(models, len(images), args.crop, torch.get_num_threads()), report)


def sga_figure(models: list[dict], n_images: int, crop: int, threads: int) -> plt.Figure:
    """(a) mean R-D cost against SGA iterations (symlog: 0 is the amortized encoder); (b) against seconds per image."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5))
    for m in models:
        label = f"{m['name']} q{m['quality']:g} (gap {m['rows'][0]['cost'] - m['rows'][-1]['cost']:.3f})"
        ax.plot([r["steps"] for r in m["rows"]], [r["cost"] for r in m["rows"]], "o-", label=label)
        bx.plot([r["seconds_per_image"] for r in m["rows"]], [r["cost"] for r in m["rows"]], "o-", label=m["name"])
    ax.set_xscale("symlog", linthresh=100)
    steps = [r["steps"] for r in models[0]["rows"]]
    ax.set_xticks(steps, [str(t) for t in steps])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set(xlabel="SGA iterations (0 = amortized encoder)", ylabel="R-D cost: bpp + λ·MSE (0–255)")
    bx.set_xscale("log")
    bx.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    bx.set(xlabel=f"encode CPU seconds per image ({threads} thread(s))", ylabel="R-D cost: bpp + λ·MSE (0–255)")
    for axis in (ax, bx):
        axis.grid(True, alpha=0.3, which="both")
        axis.legend(fontsize=8)
    fig.suptitle(f"Inference gap closed by SGA: real files, {n_images} photos24 images ({crop}×{crop} center crops)")
    fig.tight_layout()
    return fig


# --- tradeoff ------------------------------------------------------------------------------------


def decode_ms(result: dict, bench: dict | None, threads: str) -> tuple[float, str]:
    """Decode milliseconds of a result's codec: the ``shallowcodec bench`` row of the same (embedded) model or
    classical codec at ``threads``, else the mean ``decode_s`` of the result's points. Returns (ms, source)."""
    key = result["model"] or result["codec"]
    rows = (bench or {}).get("threads", {}).get(threads, [])
    matches = [r for r in rows if r["name"].split()[0] == key] if result["label"] == key else []
    if matches:
        return 1000 * matches[0]["decode_s"], f"bench ({bench['image']}, {threads} thread(s), {matches[0]['name']})"
    return 1000 * float(np.mean([p["mean"]["decode_s"] for p in result["points"]])), "eval (mean of the points)"


def decode_flops(architecture: str, weights: Path | None = None) -> dict[str, float]:
    """FLOPs/pixel of g_s, h_s and their sum (decode) of the model of a weights file, else of an architecture at
    its embedded widths (complexity.flops_config)."""
    model = load_weights(weights).model if weights else build(architecture, **complexity.flops_config(architecture))
    counts = complexity.flops_per_pixel(model)
    return {"g_s": counts["g_s"], "h_s": counts["h_s"], "decode": counts["g_s"] + counts["h_s"]}


def tradeoff_row(result: dict, anchor: dict, bench: dict | None, threads: str, weights: Path | None = None) -> dict:
    """BD-rate (PSNR, %) of ``result`` against ``anchor``, decode FLOPs/pixel (learned models: of ``weights`` when
    given, else of the architecture at the embedded widths) and decode ms."""
    try:
        bd = bdrate.bd_rate(*curve(anchor), *curve(result))
    except ValueError as e:  # curves that do not overlap
        bd, note = None, str(e)
    else:
        note = None
    ms, source = decode_ms(result, bench, threads)
    flops = decode_flops(result["model"], weights) if result["model"] else None
    return {"label": result["label"], "model": result["model"], "codec": result["codec"], "images": result["images"],
            "bd_rate_percent": bd, "bd_note": note, "flops_per_pixel": flops, "decode_ms": ms, "decode_ms_source": source}


def cmd_tradeoff(args: argparse.Namespace) -> None:
    paths = output_paths(args.output, args.force)
    specs = [spec.partition("=") for spec in args.results or [str(RESULTS / f"{n}.json") for n in TRADEOFF_RESULTS]]
    anchor = load_result(args.anchor)
    bench = json.loads(Path(args.bench).read_text()) if args.bench else None
    rows = [tradeoff_row(load_result(Path(result)), anchor, bench, args.bench_threads, Path(weights) if weights else None)
            for result, _, weights in specs]
    for r in rows:
        flops = f"{r['flops_per_pixel']['decode']:,.0f} FLOPs/pixel, " if r["flops_per_pixel"] else ""
        bd = f"{r['bd_rate_percent']:+.1f} %" if r["bd_rate_percent"] is not None else "n/a"
        print(f"{r['label']}: BD-rate {bd} vs {anchor['label']}; {flops}decode {r['decode_ms']:.1f} ms "
              f"({r['decode_ms_source']})")
    report = {"analysis": "tradeoff", "paper": "Yang & Mandt, ICCV 2023: R-D against decoding complexity",
              "anchor": anchor["label"], "bd_rate": "PSNR BD-rate (Bjontegaard, PCHIP), negative = fewer bits",
              "flops": "g_s + h_s FLOPs per image pixel at the embedded widths (multiply-add = 2)", "rows": rows}
    write_outputs(paths, tradeoff_figure(rows, anchor["label"]), report)


def tradeoff_figure(rows: list[dict], anchor: str) -> plt.Figure:
    """BD-rate against (a) decode FLOPs/pixel (learned models) and (b) decode ms (every codec), log x axes."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 5.5))
    drawn = [r for r in rows if r["bd_rate_percent"] is not None]
    for axis, key in ((ax, "flops"), (bx, "ms")):
        for r in drawn:
            if key == "flops" and not r["flops_per_pixel"]:
                continue
            x = r["flops_per_pixel"]["decode"] if key == "flops" else r["decode_ms"]
            marker = "o" if r["model"] else "s"
            filled = key == "flops" or r["decode_ms_source"].startswith("bench")
            axis.scatter(x, r["bd_rate_percent"], marker=marker, s=50, facecolors=None if filled else "none",
                         edgecolors="C0" if r["model"] else "C1", color="C0" if r["model"] else "C1")
            axis.annotate(r["label"], (x, r["bd_rate_percent"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
        axis.axhline(0, color="gray", linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.margins(x=0.2, y=0.1)
        plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
        axis.xaxis.set_major_formatter(plain)
        if key == "flops":  # a narrow range: label the minor ticks 2·10^k and 5·10^k too
            axis.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
                lambda v, _: f"{v:,.0f}" if f"{v:.0e}"[0] in "25" else ""))
        axis.grid(True, alpha=0.3, which="both")
        axis.set_ylabel(f"BD-rate vs {anchor} (PSNR) [%]")
    ax.set(xlabel="decode FLOPs/pixel (g_s + h_s, embedded widths)", title="learned models")
    bx.set(xlabel="decode time [ms] (filled: shallowcodec bench; hollow: eval mean)",
           title="learned (circles) and classical (squares) codecs")
    fig.suptitle(f"Decode cost against rate-distortion (photos24; BD-rate vs {anchor}, lower is better)")
    fig.tight_layout()
    return fig


# --- kernels -------------------------------------------------------------------------------------


def adapt_kernel(weight: Tensor, k: int) -> Tensor:
    """A JPEG-like g_s kernel (M, 3, k0, k0) centre-cropped or zero-padded to (M, 3, k, k).

    With k − k0 even the taps keep their pixel offsets (transforms.conv_transpose_exact pads by (k − 16)/2), so
    zero-padding leaves g_s unchanged and cropping drops the outermost taps (k = 16: no overlap, a block transform).

    Raises:
        ValueError: k − k0 is odd, or k < 16 (the stride).
    """
    d = k - weight.shape[-1]
    if d % 2 or k < BLOCK:
        raise ValueError(f"kernel size {k}: must be at least {BLOCK} and differ from {weight.shape[-1]} by an even number")
    if d >= 0:
        return F.pad(weight, (d // 2,) * 4)
    c = -d // 2
    return weight[..., c:-c, c:-c].contiguous()


def kernel_start(start: LoadedModel, k: int) -> tuple[ShallowHyperprior, dict]:
    """A JPEG-like model with g_s kernel size k holding the parameters of ``start`` (a JPEG-like model), its kernel
    adapted (:func:`adapt_kernel`); and its builder config.

    Raises:
        ValueError: ``start`` is not a JPEG-like model, or k does not fit (see :func:`adapt_kernel`).
    """
    if start.architecture != "jpeg-like":
        raise ValueError(f"kernels starts from jpeg-like weights, not {start.architecture}")
    config = {**json.loads(start.metadata["config"]), "kernel_size": k}
    model = build("jpeg-like", **config)
    source = dict(start.model.named_parameters())
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(adapt_kernel(source[name], k) if name == "g_s.deconv.weight" else source[name])
    return model, config


def train_kernel(start: LoadedModel, k: int, work: Path, args: argparse.Namespace) -> Path:
    """Write the start weights for kernel k (``work/init-kK.safetensors``) and train them with ``shallowcodec train
    --init`` for ``--train-steps`` steps (``work/kK.safetensors``); returns the trained weights' path."""
    model, config = kernel_start(start, k)
    init, out = work / f"init-k{k}.safetensors", work / f"k{k}.safetensors"
    save_weights(init, model, "jpeg-like", config, start.quality, start.lmbda)
    argv = ["--model", "jpeg-like", "--data", str(args.data), "--steps", str(args.train_steps), "--out", str(out),
            "--init", str(init), "--config", json.dumps({n: v for n, v in config.items() if n != "variable_rate"}),
            "--crop", str(args.train_crop), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
            "--quantizer", args.quantizer, "--threads", str(args.threads), "--workers", "0", "--seed", str(args.seed),
            "--quiet", "--force"]
    argv += ["--variable-rate"] if start.variable_rate else ["--quality", str(start.quality)]
    training.train(config_from_args(build_train_parser().parse_args(argv)))
    return out


def blockiness(x: Tensor) -> float:
    """Blocking of a (3, H, W) image: mean |difference| of neighbouring pixels across the 16-pixel block
    boundaries ÷ that between all other neighbours (rows and columns); about 1 without blocking, > 1 with it."""
    x = x.double()
    steps = [(x[:, :, 1:] - x[:, :, :-1]).abs(), (x[:, 1:] - x[:, :-1]).abs().transpose(1, 2)]
    on, off = [], []
    for d in steps:
        boundary = (torch.arange(1, d.shape[-1] + 1) % BLOCK) == 0
        on.append(d[..., boundary].flatten())
        off.append(d[..., ~boundary].flatten())
    return (torch.cat(on).mean() / torch.cat(off).mean()).item()


def flattest_window(x: Tensor, size: int) -> tuple[int, int]:
    """(top, left) of the size × size window of a (3, H, W) uint8 image with the lowest pixel standard deviation,
    on a 16-pixel grid, among the windows of mid-range mean brightness (64–192) if any: flat, not dark or
    saturated areas show blocking first."""
    h, w = x.shape[-2:]
    windows = [x[:, t : t + size, left : left + size].float() for t in range(0, h - size + 1, BLOCK)
               for left in range(0, w - size + 1, BLOCK)]
    corners = [(t, left) for t in range(0, h - size + 1, BLOCK) for left in range(0, w - size + 1, BLOCK)]
    mid = [i for i, v in enumerate(windows) if 64 <= v.mean() <= 192] or range(len(windows))
    return corners[min(mid, key=lambda i: windows[i].std().item())]


def kernel_flops(model: ShallowHyperprior, k: int) -> dict[str, float]:
    """FLOPs/pixel of a JPEG-like model's g_s and g_s + h_s at its widths, and of g_s at the paper's M = 320."""
    counts = complexity.flops_per_pixel(model)
    paper = complexity.count_flops(JPEGLikeSynthesis(320, k).to("meta"), torch.empty(1, 320, 16, 16, device="meta"))
    return {"g_s": counts["g_s"], "decode": counts["g_s"] + counts["h_s"], "g_s_paper_size": paper / 256**2}


def kernel_row(k: int, weights: Path, paths: list[Path], qualities: list[float], window: tuple) -> tuple[dict, Tensor]:
    """R-D points (real files), FLOPs/pixel, blockiness at the lowest quality and the training facts of one trained
    kernel size; plus the decoded crop (3, S, S) uint8 of the first image at the lowest quality."""
    loaded = load_weights(weights)
    points = evaluate_sweep([Codec(loaded, q) for q in qualities], paths, progress=False)
    low = Codec(loaded, min(qualities))
    decoded = [low.decompress_tensor(low.compress(read_image(p)[0])) for p in paths]
    top, left, size = window
    card = model_card(weights)
    means = [{"quality": p["quality"], **{m: p["mean"].get(m) for m in ("bpp", "psnr", "ms_ssim")}} for p in points]
    row = {"kernel_size": k, "flops_per_pixel": kernel_flops(loaded.model, k), "points": means,
           "blockiness_lowest_quality": float(np.mean([blockiness(x) for x in decoded])),
           "train_steps": card.get("steps"), "train_seconds": card.get("train_seconds"),
           "result": rd_result("shallowcodec", "jpeg-like", paths[0].parent.name, points, label=f"jpeg-like k={k}")}
    return row, decoded[0][:, top : top + size, left : left + size]


def cmd_kernels(args: argparse.Namespace) -> None:
    paths = output_paths(args.output, args.force)
    images = select_images(args.images, args.count)
    start = load_weights(args.weights) if args.weights else load_embedded("jpeg-like")
    if not start.variable_rate and set(args.qualities) != {start.quality}:
        raise ValueError(f"{args.weights} is a fixed-λ model of quality {start.quality}: pass --qualities {start.quality}")
    args.work.mkdir(parents=True, exist_ok=True)
    first = read_image(images[0])[0]
    window = (*flattest_window(first, args.window), args.window)
    rows, crops = [], {"original": first[:, window[0] : window[0] + args.window, window[1] : window[1] + args.window]}
    for k in args.kernels:
        started = time.monotonic()
        weights = train_kernel(start, k, args.work, args)
        row, crops[f"k={k}"] = kernel_row(k, weights, images, args.qualities, window)
        rows.append(row)
        print(f"k={k}: {row['flops_per_pixel']['g_s']:,.0f} g_s FLOPs/pixel, " + ", ".join(
            f"q{p['quality']:g} {p['bpp']:.3f} bpp / {p['psnr']:.2f} dB" for p in row["points"])
            + f", blockiness {row['blockiness_lowest_quality']:.3f} ({time.monotonic() - started:.0f} s)")
    reference = next((r for r in rows if r["kernel_size"] == 18), rows[0])
    anchor = curve(reference["result"])
    for r in rows:
        r["bd_rate_vs_reference_percent"] = bd_rate_or_none(anchor, curve(r.pop("result")))
    report = {"analysis": "kernels", "paper": "Yang & Mandt, ICCV 2023: kernel size of the JPEG-like synthesis",
              "start": args.weights.name if args.weights else "embedded jpeg-like",
              "reference_kernel": reference["kernel_size"],
              "budget": {"steps": args.train_steps, "crop": args.train_crop, "batch_size": args.batch_size, "lr": args.lr,
                         "quantizer": args.quantizer, "threads": args.threads, "data": str(args.data)},
              "images": [p.name for p in images], "qualities": args.qualities,
              "crop_window": {"image": images[0].name, "top": window[0], "left": window[1], "size": window[2]},
              "rows": rows}
    write_outputs(paths, kernels_figure(rows, crops, report), report)


def bd_rate_or_none(anchor: tuple, tested: tuple) -> float | None:
    """BD-rate (PSNR, %) of the (bpp, PSNR) curve ``tested`` against ``anchor``; None where their PSNR ranges
    do not overlap."""
    try:
        return bdrate.bd_rate(*anchor, *tested)
    except ValueError:
        return None


def kernels_figure(rows: list[dict], crops: dict[str, Tensor], report: dict) -> plt.Figure:
    """(a) R-D curves per k, (b) g_s FLOPs/pixel and BD-rate against k, (c) blockiness against k; below, the decoded
    crop of the first image at the lowest quality for each k next to the original."""
    fig = plt.figure(figsize=(16, 9.5))
    spec = fig.add_gridspec(2, 1, height_ratios=[1, 1])
    ax, bx, cx = (fig.add_subplot(cell) for cell in spec[0].subgridspec(1, 3, wspace=0.45))
    ks = [r["kernel_size"] for r in rows]
    for r in rows:
        ax.plot([p["bpp"] for p in r["points"]], [p["psnr"] for p in r["points"]], "o-", label=f"k={r['kernel_size']}")
    ax.set(xlabel="bpp (file bytes)", ylabel="PSNR [dB]", title=f"R-D on {len(report['images'])} photos24 images")
    bx.plot(ks, [r["flops_per_pixel"]["g_s"] for r in rows], "o-", label="g_s FLOPs/pixel (embedded M)")
    bx.set(xlabel="kernel size k", ylabel="g_s FLOPs/pixel", title="decode cost and BD-rate")
    twin = bx.twinx()
    bd = [np.nan if r["bd_rate_vs_reference_percent"] is None else r["bd_rate_vs_reference_percent"] for r in rows]
    twin.plot(ks, bd, "s--", color="C3", label=f"BD-rate vs k={report['reference_kernel']}")
    twin.set_ylabel(f"BD-rate vs k={report['reference_kernel']} [%]", color="C3")
    cx.plot(ks, [r["blockiness_lowest_quality"] for r in rows], "o-")
    cx.set(xlabel="kernel size k", ylabel="|step| across 16-px boundaries ÷ elsewhere",
           title=f"blocking at q{min(report['qualities']):g}")
    for axis in (ax, bx, cx):
        axis.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    bx.legend(fontsize=8, loc="upper left")
    twin.legend(fontsize=8, loc="lower right")
    for cell, (name, crop) in zip(spec[1].subgridspec(1, len(crops)), crops.items()):
        axis = fig.add_subplot(cell)
        axis.imshow(crop.permute(1, 2, 0).numpy(), interpolation="nearest")
        axis.set_title(f"{name}" + ("" if name == "original" else f", q{min(report['qualities']):g}"), fontsize=10)
        axis.set_axis_off()
    b = report["budget"]
    fig.suptitle(f"JPEG-like g_s kernel size: {b['steps']} training steps each from the same start "
                 f"(crop {b['crop']}, batch {b['batch_size']}, lr {b['lr']}, {b['threads']} thread)")
    fig.tight_layout()
    return fig


# --- command line --------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("-o", "--output", type=Path, default=Path(f"analysis-{verb}"),
                   help=f"writes OUTPUT.png and OUTPUT.json (default analysis-{verb})")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


def _models(p: argparse.ArgumentParser, models: tuple[str, ...]) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--models", nargs="+", default=list(models), metavar="NAME",
                       help=f"embedded models (default: {' '.join(models)})")
    which.add_argument("--weights", type=Path, nargs="+", metavar="FILE", help="weights files instead of embedded models")
    p.add_argument("--quality", type=float, default=3, help="quality 0–6 of variable-rate models (default 3)")


def _images(p: argparse.ArgumentParser, count: int | None) -> None:
    p.add_argument("--images", type=Path, nargs="+", default=[PHOTOS24], metavar="PATH",
                   help="image files or folders (default: ../shared/data/photos24)")
    p.add_argument("--count", type=int, default=count, help=f"use at most the first N images (default {count or 'all'})")


def add_arguments(parser) -> None:
    """Define the verbs of ``shallowcodec analyze`` (flatness, filters, sga-curve, tradeoff, kernels) on its
    parser (cli.build_parser), each with its ``func``."""
    verbs = parser.add_subparsers(dest="analysis", required=True)

    p = verbs.add_parser("flatness", help="decoded straight latent path: curve length / straight distance")
    _common(p, "flatness")
    _models(p, MODELS)
    _images(p, 8)
    p.add_argument("--crop", type=int, default=256, help="center crop side, a multiple of 64 (default 256)")
    p.add_argument("--steps", type=int, default=32, help="steps along the path (default 32)")
    p.set_defaults(func=_threaded(cmd_flatness))

    p = verbs.add_parser("filters", help="synthesis filters as an image grid, ordered by the rate of their channels")
    _common(p, "filters")
    _models(p, ("jpeg-like", "two-layer"))
    _images(p, None)
    p.add_argument("--columns", type=int, default=16, help="filters per grid row (default 16)")
    p.set_defaults(func=_threaded(cmd_filters))

    p = verbs.add_parser("sga-curve", help="R-D cost of real files against SGA iterations, seconds per image")
    _common(p, "sga-curve")
    _models(p, MODELS)
    _images(p, 2)
    p.add_argument("--crop", type=int, default=256, help="center crop side (default 256)")
    p.add_argument("--steps", type=int, nargs="+", default=list(SGA_STEPS), help="SGA iteration counts")
    p.add_argument("--seed", type=int, default=0, help="seed of SGA's Gumbel noise")
    p.set_defaults(func=_threaded(cmd_sga_curve))

    p = verbs.add_parser("tradeoff", help="BD-rate vs mbt2018-mean against decode FLOPs/pixel and decode ms")
    _common(p, "tradeoff")
    p.add_argument("results", nargs="*", metavar="RESULT[=WEIGHTS]",
                   help="result files of `shallowcodec eval --json`, each optionally with the weights file whose "
                        "FLOPs to count (default: the architecture at the embedded widths; files: benchmarks/results/"
                        f"{{{','.join(TRADEOFF_RESULTS)}}}.json)")
    p.add_argument("--anchor", type=Path, default=RESULTS / "mbt2018-mean.json", help="BD-rate anchor result file")
    p.add_argument("--bench", type=Path, default=RESULTS / "bench.json",
                   help="`shallowcodec bench --json` output for decode times (default benchmarks/results/bench.json)")
    p.add_argument("--bench-threads", default="1", help="thread count of the bench rows to use (default 1)")
    p.set_defaults(func=_threaded(cmd_tradeoff))

    p = verbs.add_parser("kernels", help="JPEG-like kernel size k: equal short training from one start, R-D, FLOPs")
    _common(p, "kernels")
    p.add_argument("--weights", type=Path, help="jpeg-like weights to start from (default: the embedded ones)")
    _images(p, 4)
    p.add_argument("--kernels", type=int, nargs="+", default=list(KERNEL_SIZES), help="kernel sizes k")
    p.add_argument("--qualities", type=float, nargs="+", default=[1, 3, 5], help="qualities evaluated")
    p.add_argument("--data", type=Path, default=TRAIN_PHOTOS, help="training images (default ../shared/data/train-photos)")
    p.add_argument("--work", type=Path, default=Path("analysis-kernels-work"), help="folder of the weights files")
    p.add_argument("--train-steps", type=int, default=300, help="training steps per kernel size (default 300)")
    p.add_argument("--train-crop", type=int, default=128, help="training crop (default 128)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4, the paper's and the trainer's)")
    p.add_argument("--quantizer", choices=("noise", "mixed"), default="mixed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--window", type=int, default=96, help="side of the decoded crop shown (default 96)")
    p.set_defaults(func=_threaded(cmd_kernels))


def _threaded(command):
    """``command`` run with ``--threads`` torch threads."""

    def run(args: argparse.Namespace) -> None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        command(args)

    return run
