"""Wall-clock encode and decode benchmark of one photo: our shallow decoders, mbt2018-mean, Pillow codecs.

The paper's claim (Yang & Mandt, ICCV 2023, Sec. 1 and 4) is that a shallow g_s cuts decoding
cost by 80–90 % against mbt2018-mean. FLOPs are in :mod:`shallowcodec.complexity`; this module
measures time on this machine, at 1 and 2 threads (``torch.set_num_threads``; the AVIF and JPEG
XL decoders get the same thread count; JPEG and WebP decode on one thread anyway).

Entries, each timed as the median of ``runs`` runs after one warm-up run:

- ``two-layer``, ``jpeg-like`` and ``mbt2018-mean`` (embedded variable-rate weights, equal
  widths, one quality): encode, decode, and decode split into entropy decoding (rANS of z and y,
  plus container parsing, gains and rounding: decode minus the two stages below), ``h_s`` and
  ``g_s`` (timed by forward hooks on the modules);
- with ``paper_size``, instead: the three architectures at the paper's widths (N=192, M=320)
  with *untrained* weights (timing only: layer costs do not depend on the values). So that
  entropy decoding and h_s are equal work, jpeg-like and mbt2018-mean decode the two-layer's
  file with the two-layer's h_s and entropy models and their own g_s; only g_s differs. Their
  encode time is their own g_a plus the two-layer's encode time after g_a;
- Pillow ``jpeg420``, ``webp``, ``avif``, ``jxl``: the quality of the codec's sweep whose bpp is
  closest to the two-layer's file; encode to bytes and decode to a uint8 tensor in memory.

Decode ratios are reported against the two-layer and jpeg-like decode times.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch
from PIL import AvifImagePlugin
from pillow_jxl import JpegXLImagePlugin
from torch import Tensor, nn

from shallowcodec import classical, zoo
from shallowcodec.codec import Codec, load, mirror_pad
from shallowcodec.metrics import bpp
from shallowcodec.variable_rate import lmbda_of
from shallowcodec.zoo import DEFAULT_QUALITY

THREADS = (1, 2)
LEARNED = ("two-layer", "jpeg-like", "mbt2018-mean")
PILLOW = ("jpeg420", "webp", "avif", "jxl")


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    """Median wall time in seconds of ``runs`` calls of ``fn`` after one warm-up call."""
    return time_stages(fn, {}, runs)["total"]


@contextmanager
def stage_timer(modules: dict[str, nn.Module]):
    """Accumulate the forward time of each named module in the yielded dict (seconds)."""
    spent = dict.fromkeys(modules, 0.0)
    started: dict[str, float] = {}
    handles = []
    for name, module in modules.items():
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: started.__setitem__(n, time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda m, a, o, n=name: spent.__setitem__(n, spent[n] + time.perf_counter() - started[n])))
    try:
        yield spent
    finally:
        for handle in handles:
            handle.remove()


def time_stages(fn: Callable[[], object], modules: dict[str, nn.Module], runs: int) -> dict[str, float]:
    """Median total time (``total``) and median time in each module of ``runs`` calls after a warm-up."""
    fn()
    samples: dict[str, list[float]] = {name: [] for name in ("total", *modules)}
    for _ in range(runs):
        with stage_timer(modules) as spent:
            t0 = time.perf_counter()
            fn()
            samples["total"].append(time.perf_counter() - t0)
        for name, seconds in spent.items():
            samples[name].append(seconds)
    return {name: statistics.median(values) for name, values in samples.items()}


def time_learned(codec: Codec, x: Tensor, data: bytes, runs: int) -> dict:
    """Encode (split g_a / rest) and decode (split entropy / h_s / g_s) seconds of a learned codec.

    Args:
        x: (3, H, W) uint8 image; data: its ``.sdc`` file from ``codec``.
    """
    model = codec.loaded.model
    enc = time_stages(lambda: codec.compress(x), {"g_a": model.g_a}, runs)
    dec = time_stages(lambda: codec.decompress_tensor(data), {"h_s": model.h_s, "g_s": model.g_s}, runs)
    return {
        "encode_s": enc["total"], "encode_g_a_s": enc["g_a"], "decode_s": dec["total"],
        "entropy_s": dec["total"] - dec["h_s"] - dec["g_s"], "h_s_s": dec["h_s"], "g_s_s": dec["g_s"],
    }


def paper_size_codecs() -> dict[str, Codec]:
    """Untrained two-layer, jpeg-like and mbt2018-mean at the paper's widths (N=192, M=320), for timing.

    jpeg-like and mbt2018-mean share the two-layer's h_a, h_s and entropy models (and its
    header facts), so they decode the two-layer's files with equal entropy-coding work.
    """
    reference = zoo.build("two-layer").eval()
    reference.update(force=True)
    codecs = {"two-layer": reference}
    for name in ("jpeg-like", "mbt2018-mean"):
        model = zoo.build(name).eval()
        model.h_a, model.h_s = reference.h_a, reference.h_s
        model.entropy_bottleneck, model.gaussian_conditional = reference.entropy_bottleneck, reference.gaussian_conditional
        codecs[name] = model
    return {name: Codec(zoo.LoadedModel(model, "two-layer", DEFAULT_QUALITY, lmbda_of(DEFAULT_QUALITY), 0))
            for name, model in codecs.items()}


def time_standin(standin: Codec, x: Tensor, data: bytes, reference_times: dict, runs: int) -> dict:
    """Times of a paper-size stand-in: its g_a, and the reference file decoded with its g_s."""
    model = standin.loaded.model
    padded = mirror_pad(x[None].float() / 255)
    with torch.no_grad():
        g_a = median_seconds(lambda: model.g_a(padded), runs)
    dec = time_stages(lambda: standin.decompress_tensor(data), {"h_s": model.h_s, "g_s": model.g_s}, runs)
    return {
        "encode_s": g_a + reference_times["encode_s"] - reference_times["encode_g_a_s"], "encode_g_a_s": g_a,
        "decode_s": dec["total"], "entropy_s": dec["total"] - dec["h_s"] - dec["g_s"],
        "h_s_s": dec["h_s"], "g_s_s": dec["g_s"],
    }


def closest_quality(name: str, x: Tensor, target_bpp: float) -> tuple[classical.PillowCodec, bytes]:
    """The Pillow codec of ``name``'s sweep whose file of ``x`` has the bpp closest to ``target_bpp``."""
    pixels = x.shape[1] * x.shape[2]
    files = [(c, c.compress(x)) for c in classical.codecs(name)]
    return min(files, key=lambda f: abs(bpp(len(f[1]), pixels) - target_bpp))


def time_pillow(codec: classical.PillowCodec, x: Tensor, data: bytes, runs: int) -> dict:
    """Encode and decode seconds of a Pillow codec (decode: bytes → (3, H, W) uint8 tensor)."""
    return {"encode_s": median_seconds(lambda: codec.compress(x), runs),
            "decode_s": median_seconds(lambda: codec.decompress_tensor(data), runs)}


@contextmanager
def threads(n: int):
    """Run torch, and Pillow's AVIF and JPEG XL decoders, on ``n`` threads; restore afterwards."""
    saved = torch.get_num_threads(), AvifImagePlugin.DEFAULT_MAX_THREADS, JpegXLImagePlugin.DECODE_THREADS
    torch.set_num_threads(n)
    AvifImagePlugin.DEFAULT_MAX_THREADS = JpegXLImagePlugin.DECODE_THREADS = n
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        AvifImagePlugin.DEFAULT_MAX_THREADS, JpegXLImagePlugin.DECODE_THREADS = saved[1], saved[2]


def run(x: Tensor, quality: float | None = None, runs: int = 5, thread_counts: tuple[int, ...] = THREADS,
        paper_size: bool = False) -> dict:
    """Benchmark every entry (see the module docstring) on image ``x`` (3, H, W) uint8.

    Returns ``{"height", "width", "runs", "paper_size", "threads": {"1": [entry, ...], ...}}``; an
    entry has ``name``, ``bytes``, ``bpp``, seconds (``encode_s``, ``decode_s``, and for learned
    codecs ``encode_g_a_s``, ``entropy_s``, ``h_s_s``, ``g_s_s``) and ``decode_vs_two_layer`` /
    ``decode_vs_jpeg_like`` (decode time ÷ theirs).

    Raises:
        ModelNotFoundError: a learned model without embedded weights, or a quality outside 0–6.
        ValueError: ``runs`` < 1.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    pixels = x.shape[1] * x.shape[2]
    learned = paper_size_codecs() if paper_size else {name: load(name, quality) for name in LEARNED}
    files = {name: learned[name].compress(x) for name in ([LEARNED[0]] if paper_size else LEARNED)}
    pillow = {name: closest_quality(name, x, bpp(len(files["two-layer"]), pixels)) for name in PILLOW}
    suffix = " (N=192, M=320, untrained)" if paper_size else f" q{learned['two-layer'].quality:g}"
    table = {}
    for n in thread_counts:
        with threads(n):
            rows = []
            for name, c in learned.items():  # two-layer first: the paper-size stand-ins reuse its times
                times = time_standin(c, x, files["two-layer"], rows[0], runs) if name not in files \
                    else time_learned(c, x, files[name], runs)
                rows.append({"name": name + suffix, "bytes": len(files.get(name, files["two-layer"])), **times})
            rows += [{"name": f"{name} q{c.quality}", "bytes": len(data), **time_pillow(c, x, data, runs)}
                     for name, (c, data) in pillow.items()]
        table[str(n)] = [_with_ratios(row, rows[0]["decode_s"], rows[1]["decode_s"], pixels) for row in rows]
    return {"height": x.shape[1], "width": x.shape[2], "runs": runs, "paper_size": paper_size, "threads": table}


def _with_ratios(row: dict, two_layer_s: float, jpeg_like_s: float, pixels: int) -> dict:
    return {**row, "bpp": bpp(row["bytes"], pixels),
            "decode_vs_two_layer": row["decode_s"] / two_layer_s, "decode_vs_jpeg_like": row["decode_s"] / jpeg_like_s}
