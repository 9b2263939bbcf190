"""Kernel size of the JPEG-like synthesis (Yang & Mandt, ICCV 2023): k = 16 is a block transform (blocking), larger
kernels overlap the blocks. Each k is trained for the same short budget from the same start (the trainer's Python
API, train.train), then measured: FLOPs/pixel, R-D on real files, BD-rate against k = 18, blocking."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from shallowcodec import bdrate, complexity
from shallowcodec import train as training
from shallowcodec.codec import Codec
from shallowcodec.config import TrainConfig, checked_config
from shallowcodec.evaluation import curve, evaluate_sweep, rd_result
from shallowcodec.hyperprior import ShallowHyperprior
from shallowcodec.images import read_image
from shallowcodec.model_files import model_card
from shallowcodec.transforms import JPEGLikeSynthesis
from shallowcodec.zoo import LoadedModel, build, load_weights, save_weights

#: The g_s stride: one latent pixel per 16×16 image block.
BLOCK = 16


@dataclass(frozen=True)
class Budget:
    """The equal training of every kernel size: ``steps`` steps of ``batch_size`` ``crop``² crops of the images
    in ``data`` at learning rate ``lr`` with the ``quantizer`` surrogate, on ``threads`` torch threads, seeded
    by ``seed`` (batch size and learning rate: the trainer's defaults)."""

    data: Path
    steps: int = 300
    crop: int = 128
    batch_size: int = TrainConfig.batch_size
    lr: float = TrainConfig.lr
    quantizer: str = "mixed"
    threads: int = 1
    seed: int = 0


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


def bd_rate_or_none(anchor: tuple, tested: tuple) -> float | None:
    """BD-rate (PSNR, %) of the (bpp, PSNR) curve ``tested`` against ``anchor``; None where their PSNR ranges
    do not overlap."""
    try:
        return bdrate.bd_rate(*anchor, *tested)
    except ValueError:
        return None


def train_kernel(start: LoadedModel, k: int, work: Path, budget: Budget) -> Path:
    """Write the start weights for kernel k (``work/init-kK.safetensors``) and train them for the ``budget``
    (``work/kK.safetensors``, replaced if it exists); returns the trained weights' path.

    Raises:
        TrainArgumentError: a budget no training can run with; ValueError: see :func:`kernel_start`.
    """
    model, config = kernel_start(start, k)
    init, out = work / f"init-k{k}.safetensors", work / f"k{k}.safetensors"
    save_weights(init, model, "jpeg-like", config, start.quality, start.lmbda)
    rate = {"variable_rate": True} if start.variable_rate else {"quality": int(start.quality)}
    cfg = checked_config(model="jpeg-like", data=(budget.data,), steps=budget.steps, out=out, init=init,
                         config=json.dumps({n: v for n, v in config.items() if n != "variable_rate"}),
                         crop=budget.crop, batch_size=budget.batch_size, lr=budget.lr, quantizer=budget.quantizer,
                         threads=budget.threads, workers=0, seed=budget.seed, quiet=True, force=True, **rate)
    training.train(cfg)
    return out


def analyze(start: LoadedModel, start_name: str, paths: list[Path], kernels: list[int], qualities: list[float],
            work: Path, budget: Budget, window: int, log: Callable[[str], object] = print) -> tuple[dict, Figure]:
    """Train each kernel size from ``start`` (jpeg-like weights named ``start_name``) for ``budget`` in the folder
    ``work`` (created if missing), measure it on the images ``paths`` at ``qualities``, and show its decoded
    window × window crop of the first image at the lowest quality; the report and its figure, one line per k
    to ``log``.

    Raises:
        ValueError: a fixed-λ start and other qualities, or a kernel size that does not fit (:func:`adapt_kernel`).
    """
    if not start.variable_rate and set(qualities) != {start.quality}:
        raise ValueError(f"{start_name} is a fixed-λ model of quality {start.quality}: pass --qualities {start.quality}")
    work.mkdir(parents=True, exist_ok=True)
    first = read_image(paths[0])[0]
    corner = (*flattest_window(first, window), window)
    rows, crops = [], {"original": first[:, corner[0] : corner[0] + window, corner[1] : corner[1] + window]}
    for k in kernels:
        started = time.monotonic()
        row, crops[f"k={k}"] = kernel_row(k, train_kernel(start, k, work, budget), paths, qualities, corner)
        rows.append(row)
        log(f"k={k}: {row['flops_per_pixel']['g_s']:,.0f} g_s FLOPs/pixel, " + ", ".join(
            f"q{p['quality']:g} {p['bpp']:.3f} bpp / {p['psnr']:.2f} dB" for p in row["points"])
            + f", blockiness {row['blockiness_lowest_quality']:.3f} ({time.monotonic() - started:.0f} s)")
    reference = next((r for r in rows if r["kernel_size"] == 18), rows[0])
    anchor = curve(reference["result"])
    for r in rows:
        r["bd_rate_vs_reference_percent"] = bd_rate_or_none(anchor, curve(r.pop("result")))
    report = {"analysis": "kernels", "paper": "Yang & Mandt, ICCV 2023: kernel size of the JPEG-like synthesis",
              "start": start_name, "reference_kernel": reference["kernel_size"],
              "budget": {"steps": budget.steps, "crop": budget.crop, "batch_size": budget.batch_size, "lr": budget.lr,
                         "quantizer": budget.quantizer, "threads": budget.threads, "data": str(budget.data)},
              "images": [p.name for p in paths], "qualities": qualities,
              "crop_window": {"image": paths[0].name, "top": corner[0], "left": corner[1], "size": corner[2]},
              "rows": rows}
    return report, figure(rows, crops, report)


def figure(rows: list[dict], crops: dict[str, Tensor], report: dict) -> Figure:
    """(a) R-D curves per k, (b) g_s FLOPs/pixel and BD-rate against k, (c) blockiness against k; below, the decoded
    crop of the first image at the lowest quality for each k next to the original."""
    fig = Figure(figsize=(16, 9.5))
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


