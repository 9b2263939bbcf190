"""Rate-distortion against decoding complexity (Yang & Mandt, ICCV 2023): BD-rate of each codec against an anchor
(mbt2018-mean) versus decode FLOPs/pixel (g_s + h_s) and decode milliseconds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from shallowcodec import bdrate, complexity
from shallowcodec.evaluation import curve, load_result
from shallowcodec.zoo import build, load_weights


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


def analyze(results: list[tuple[Path, Path | None]], anchor: Path, bench: Path | None, threads: str,
            log: Callable[[str], object] = print) -> tuple[dict, Figure]:
    """The trade-off report of result files (``shallowcodec eval --json``), each with the weights file whose
    FLOPs to count or None (the architecture at the embedded widths), against the ``anchor`` result, with decode
    times from a ``shallowcodec bench --json`` file at ``threads`` threads; and its figure; one line per result
    to ``log``.

    Raises:
        OSError, ValueError: an unreadable or foreign result or bench file.
    """
    anchor_result = load_result(anchor)
    bench_report = json.loads(Path(bench).read_text()) if bench else None
    rows = [tradeoff_row(load_result(path), anchor_result, bench_report, threads, weights) for path, weights in results]
    for r in rows:
        flops = f"{r['flops_per_pixel']['decode']:,.0f} FLOPs/pixel, " if r["flops_per_pixel"] else ""
        bd = f"{r['bd_rate_percent']:+.1f} %" if r["bd_rate_percent"] is not None else "n/a"
        log(f"{r['label']}: BD-rate {bd} vs {anchor_result['label']}; {flops}decode {r['decode_ms']:.1f} ms "
            f"({r['decode_ms_source']})")
    report = {"analysis": "tradeoff", "paper": "Yang & Mandt, ICCV 2023: R-D against decoding complexity",
              "anchor": anchor_result["label"], "bd_rate": "PSNR BD-rate (Bjontegaard, PCHIP), negative = fewer bits",
              "flops": "g_s + h_s FLOPs per image pixel at the embedded widths (multiply-add = 2)", "rows": rows}
    return report, figure(rows, anchor_result["label"])


def figure(rows: list[dict], anchor: str) -> Figure:
    """BD-rate against (a) decode FLOPs/pixel (learned models) and (b) decode ms (every codec), log x axes."""
    fig = Figure(figsize=(14, 5.5))
    ax, bx = fig.subplots(1, 2)
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
        axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        if key == "flops":  # a narrow range: label the minor ticks 2·10^k and 5·10^k too
            axis.xaxis.set_minor_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if f"{v:.0e}"[0] in "25" else ""))
        axis.grid(True, alpha=0.3, which="both")
        axis.set_ylabel(f"BD-rate vs {anchor} (PSNR) [%]")
    ax.set(xlabel="decode FLOPs/pixel (g_s + h_s, embedded widths)", title="learned models")
    bx.set(xlabel="decode time [ms] (filled: shallowcodec bench; hollow: eval mean)",
           title="learned (circles) and classical (squares) codecs")
    fig.suptitle(f"Decode cost against rate-distortion (photos24; BD-rate vs {anchor}, lower is better)")
    fig.tight_layout()
    return fig
