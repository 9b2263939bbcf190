"""Rate–distortion plots (PNG): PSNR and MS-SSIM (dB) against bpp, with published Kodak curves.

Our result files (:mod:`shallowcodec.evaluation` schema) are drawn as solid lines; published
curves ("anchors") as dashed lines labelled "published, Kodak". Anchors are read from a folder
(the CLI's default: the project's ``shared/anchors`` beside the repository) that holds:

- ``paper-results/kodak_aggregate.json``: Yang & Mandt (ICCV 2023) results,
  ``{model: {"bpp": [...], "psnr": [...], "msssim": [...], "lpips": [...]}}`` (one entry per λ);
- ``compressai-kodak/NAME.json``: CompressAI's published results,
  ``{"name": ..., "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...]}}``
  (``ms-ssim-rgb`` is absent from a few).

Anchor names are the paper's model keys (``JPEG-like_syn``, ``2-layer_syn``, ``2-layer_syn+SGA``)
and the CompressAI file stems (``jpeg``, ``webp``, ``bpg_444_x265_ycbcr``, ``vtm``, ...).
MS-SSIM is plotted in dB, −10·log10(1 − MS-SSIM).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from shallowcodec.evaluation import curve, msssim_db

#: Anchors drawn by ``--anchors`` without names: the paper's models, CompressAI's mbt2018-mean, BPG, JPEG, WebP.
DEFAULT_ANCHORS = ("JPEG-like_syn", "2-layer_syn", "2-layer_syn+SGA", "compressai-mbt2018-mean_mse_cpu",
                   "bpg_444_x265_ycbcr", "jpeg", "webp")


@dataclass
class Curve:
    """One R-D curve: bpp and PSNR (dB) per point, MS-SSIM (dB) per point or None, and a label."""

    label: str
    bpp: np.ndarray
    psnr: np.ndarray
    ms_ssim_db: np.ndarray | None
    published: bool = False


def result_curve(result: dict) -> Curve:
    """The :class:`Curve` of a result file (MS-SSIM left out if some point lacks it)."""
    bpp, psnr = curve(result, "psnr")
    try:
        ms_ssim = curve(result, "ms_ssim_db")[1]
    except ValueError:
        ms_ssim = None
    return Curve(result["label"], bpp, psnr, ms_ssim)


def published_curves(anchors_dir: Path, names: list[str] | None = None) -> list[Curve]:
    """Published Kodak curves by anchor name (default :data:`DEFAULT_ANCHORS`), in the order given.

    Raises:
        ValueError: the anchors folder is missing, or an unknown anchor name (lists the known ones).
    """
    available = _available_anchors(anchors_dir)
    names = list(DEFAULT_ANCHORS) if names is None else names
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"unknown anchor {unknown[0]!r}; available: {', '.join(sorted(available))}")
    return [available[n] for n in names]


def _available_anchors(anchors_dir: Path) -> dict[str, Curve]:
    paper = Path(anchors_dir) / "paper-results" / "kodak_aggregate.json"
    compressai_dir = Path(anchors_dir) / "compressai-kodak"
    if not paper.is_file() or not compressai_dir.is_dir():
        raise ValueError(f"published anchors not found in {anchors_dir} (expected paper-results/ and "
                         "compressai-kodak/; pass --anchors-dir)")
    curves = {name: Curve(f"{name} (paper; published, Kodak)", np.array(d["bpp"]), np.array(d["psnr"]),
                          np.array([msssim_db(v) for v in d["msssim"]]), published=True)
              for name, d in json.loads(paper.read_text()).items()}
    for path in sorted(compressai_dir.glob("*.json")):
        data = json.loads(path.read_text())
        results = data["results"]
        ms_ssim = results.get("ms-ssim-rgb")
        curves[path.stem] = Curve(f"{data['name']} (published, Kodak)", np.array(results["bpp"]),
                                  np.array(results["psnr-rgb"]),
                                  None if ms_ssim is None else np.array([msssim_db(v) for v in ms_ssim]),
                                  published=True)
    return curves


def render(curves: list[Curve], title: str = "") -> bytes:
    """PNG bytes of two panels, PSNR and MS-SSIM (dB) against bpp, one line per curve.

    The bpp axis spans our (unpublished) curves when there are any, so that published curves
    with a wider range do not squeeze them; the quality axes span what is visible.

    Raises:
        ValueError: no curves.
    """
    if not curves:
        raise ValueError("nothing to plot")
    fig = Figure(figsize=(13, 5.5))
    axes = fig.subplots(1, 2)
    ours = [c for c in curves if not c.published] or curves
    x_range = _span([c.bpp for c in ours], floor=0.0)
    panels = (("psnr", "PSNR (RGB) [dB]"), ("ms_ssim_db", "MS-SSIM (RGB) [dB]  −10·log10(1 − MS-SSIM)"))
    for ax, (field, ylabel) in zip(axes, panels):
        drawn = [c for c in curves if getattr(c, field) is not None]
        for c in drawn:
            style = {"linestyle": "--", "marker": "x", "alpha": 0.8} if c.published else {"linestyle": "-", "marker": "o"}
            ax.plot(c.bpp, getattr(c, field), label=c.label, markersize=4, **style)
        visible = [getattr(c, field)[(c.bpp >= x_range[0]) & (c.bpp <= x_range[1])] for c in drawn]
        if any(len(v) for v in visible):
            ax.set_ylim(*_span([v for v in visible if len(v)]))
        ax.set_xlim(*x_range)
        ax.set_xlabel("bits per pixel (file bytes × 8 / pixels)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return png_bytes(fig)


def png_bytes(fig: Figure, dpi: int = 120) -> bytes:
    """A figure as PNG bytes, rendered in memory (Agg; a :class:`Figure` made without pyplot needs no
    backend and holds no global state)."""
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi)
    return out.getvalue()


def _span(arrays: list[np.ndarray], floor: float | None = None) -> tuple[float, float]:
    """(min, max) of the values with a 5 % margin each side, not below ``floor``."""
    lo = min(float(a.min()) for a in arrays)
    hi = max(float(a.max()) for a in arrays)
    margin = 0.05 * (hi - lo) or 0.5
    return (lo - margin if floor is None else max(floor, lo - margin)), hi + margin
