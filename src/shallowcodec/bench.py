"""Wall-clock encode and decode benchmark of one photo: our shallow decoders, mbt2018-mean, Pillow codecs.

The paper's claim (Yang & Mandt, ICCV 2023, Sec. 1 and 4) is that a shallow g_s cuts decoding
cost by 80–90 % against mbt2018-mean. FLOPs are in :mod:`shallowcodec.complexity`; this module
measures time on this machine, at 1 and 2 threads (PyTorch's threads for encoding, OpenBLAS's
through threadpoolctl for the numpy decoder, and the AVIF and JPEG XL decoders'; JPEG and WebP
decode on one thread anyway).

Entries, each timed as the median of ``runs`` runs after one warm-up run:

- ``two-layer``, ``jpeg-like`` and ``mbt2018-mean`` (embedded variable-rate weights, equal
  widths, one quality): encode (PyTorch, split off: g_a) and decode with the product's decoder
  (decoder.py, numpy, no PyTorch), split into its stages: ``entropy`` (z and y strings, ANS),
  ``h_s`` (the exact entropy parameters) and ``g_s`` (synthesis, pixels); ``cli_s`` is the
  whole ``shallowcodec decompress FILE -o OUT.png`` in a fresh process (start-up, weights,
  decode, PNG), and the report's ``startup_s`` a fresh process that imports the decoder and
  loads the weights (the two-layer's);
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

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from PIL import AvifImagePlugin
from pillow_jxl import JpegXLImagePlugin
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from shallowcodec import classical, zoo
from shallowcodec.codec import Codec, load, mirror_pad
from shallowcodec.container import unpack
from shallowcodec.decoder import Decoder
from shallowcodec.metrics import bpp
from shallowcodec.model_files import embedded_models, weights_id
from shallowcodec.quality import DEFAULT_QUALITY, lmbda_of

THREADS = (1, 2)
#: Timed runs per measurement (the median is reported).
RUNS = 5
LEARNED = ("two-layer", "jpeg-like", "mbt2018-mean")
PILLOW = ("jpeg420", "webp", "avif", "jxl")


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    """Median wall time in seconds of ``runs`` calls of ``fn`` after one warm-up call."""
    fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


@contextmanager
def forward_timer(module: nn.Module):
    """Accumulate the forward time of ``module`` in the yielded list's single element (seconds)."""
    spent, started = [0.0], [0.0]
    def stop(*_):
        spent[0] += time.perf_counter() - started[0]

    handles = [module.register_forward_pre_hook(lambda m, a: started.__setitem__(0, time.perf_counter())),
               module.register_forward_hook(stop)]
    try:
        yield spent
    finally:
        for handle in handles:
            handle.remove()


def time_encode(codec: Codec, x: Tensor, runs: int) -> dict:
    """Encode seconds (median) of a learned codec and the part spent in g_a."""
    codec.compress(x)
    totals, g_a = [], []
    for _ in range(runs):
        with forward_timer(codec.loaded.model.g_a) as spent:
            t0 = time.perf_counter()
            codec.compress(x)
            totals.append(time.perf_counter() - t0)
        g_a.append(spent[0])
    return {"encode_s": statistics.median(totals), "encode_g_a_s": statistics.median(g_a)}


def time_decode(decoder: Decoder, data: bytes, runs: int) -> dict:
    """Decode seconds of the numpy decoder (decoder.py): the total (parsing included) and each stage's median."""
    def stages() -> dict[str, float]:
        t = [time.perf_counter()]
        stream = unpack(data)
        z_hat = decoder.decode_z(stream)
        t.append(time.perf_counter())
        params = decoder.entropy_parameters(z_hat, stream.header.quality)
        t.append(time.perf_counter())
        y_hat = decoder.decode_y(stream, params)
        t.append(time.perf_counter())
        decoder.render(y_hat, stream.header.quality, stream.header.height, stream.header.width)
        t.append(time.perf_counter())
        return {"entropy_s": t[1] - t[0] + t[3] - t[2], "h_s_s": t[2] - t[1], "g_s_s": t[4] - t[3]}

    stages()
    samples = [stages() for _ in range(runs)]
    split = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    return {"decode_s": statistics.median(sum(s.values()) for s in samples), **split}


def process_seconds(argv: list[str], n_threads: int, runs: int) -> float:
    """Median wall time of a fresh Python process running ``argv`` (after ``python``) with ``n_threads`` threads.

    Raises:
        subprocess.CalledProcessError: the process fails.
    """
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(n_threads), "OMP_NUM_THREADS": str(n_threads)}
    return median_seconds(lambda: subprocess.run([sys.executable, *argv], env=env, check=True, capture_output=True), runs)


def time_cli(data: bytes, n_threads: int, runs: int) -> float:
    """Median wall time of ``shallowcodec decompress FILE -o OUT.png`` in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.sdc"
        path.write_bytes(data)
        return process_seconds(["-m", "shallowcodec.cli", "decompress", str(path), "-o", str(Path(tmp) / "x.png"),
                                "--force"], n_threads, runs)


def time_startup(architecture: str, n_threads: int, runs: int) -> float:
    """Median wall time of a fresh process that imports the decoder and loads an embedded model's weights."""
    code = f"from shallowcodec import decoder; decoder.embedded_decoder({architecture!r})"
    return process_seconds(["-c", code], n_threads, runs)


def paper_size_codecs(folder: Path) -> dict[str, Codec]:
    """Untrained two-layer, jpeg-like and mbt2018-mean at the paper's widths (N=192, M=320), for timing,
    each saved to a weights file in ``folder`` (the numpy decoder reads files).

    jpeg-like and mbt2018-mean share the two-layer's h_a, h_s and entropy models (and its
    header facts), so they decode the two-layer's files with equal entropy-coding work.
    """
    reference = zoo.build("two-layer").eval()
    reference.update(force=True)
    models = {"two-layer": reference}
    for name in ("jpeg-like", "mbt2018-mean"):
        model = zoo.build(name).eval()
        model.h_a, model.h_s = reference.h_a, reference.h_s
        model.entropy_bottleneck, model.gaussian_conditional = reference.entropy_bottleneck, reference.gaussian_conditional
        models[name] = model
    paths = {name: folder / f"{name}.safetensors" for name in models}
    for name, model in models.items():
        zoo.save_weights(paths[name], model, name, {}, DEFAULT_QUALITY, lmbda_of(DEFAULT_QUALITY), half=False)  # as encoded
    two_layer_id = weights_id(paths["two-layer"].read_bytes())  # the files are the two-layer's
    return {name: Codec(zoo.LoadedModel(model, "two-layer", DEFAULT_QUALITY, lmbda_of(DEFAULT_QUALITY), two_layer_id,
                                        path=paths[name])) for name, model in models.items()}


def time_learned(codec: Codec, decoder: Decoder, x: Tensor, data: bytes, n_threads: int, runs: int,
                 reference: tuple[dict, Decoder] | None) -> dict:
    """Encode and decode times of a learned codec and its numpy ``decoder``; a paper-size stand-in
    (``reference``: the two-layer's times and decoder) decodes the two-layer's file and only its g_a and
    g_s are timed, the rest is the reference's."""
    if reference is None:
        embedded = codec.loaded.path in embedded_models().values()  # what `shallowcodec decompress` can decode
        return {**time_encode(codec, x, runs), **time_decode(decoder, data, runs),
                "cli_s": time_cli(data, n_threads, runs) if embedded else None}
    padded = mirror_pad(x[None].float() / 255)
    with torch.no_grad():
        g_a = median_seconds(lambda: codec.loaded.model.g_a(padded), runs)
    reference, reference_decoder = reference
    stream = unpack(data)
    y_hat = reference_decoder.decode_latents(stream)
    g_s = median_seconds(lambda: decoder.render(y_hat, stream.header.quality, stream.header.height,
                                                stream.header.width), runs)
    return {"encode_s": g_a + reference["encode_s"] - reference["encode_g_a_s"], "encode_g_a_s": g_a,
            "decode_s": reference["entropy_s"] + reference["h_s_s"] + g_s, "entropy_s": reference["entropy_s"],
            "h_s_s": reference["h_s_s"], "g_s_s": g_s}


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
    """Run torch, OpenBLAS (numpy), and Pillow's AVIF and JPEG XL decoders, on ``n`` threads; restore afterwards."""
    saved = torch.get_num_threads(), AvifImagePlugin.DEFAULT_MAX_THREADS, JpegXLImagePlugin.DECODE_THREADS
    torch.set_num_threads(n)
    AvifImagePlugin.DEFAULT_MAX_THREADS = JpegXLImagePlugin.DECODE_THREADS = n
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(saved[0])
        AvifImagePlugin.DEFAULT_MAX_THREADS, JpegXLImagePlugin.DECODE_THREADS = saved[1], saved[2]


def run(x: Tensor, quality: float | None = None, runs: int = RUNS, thread_counts: tuple[int, ...] = THREADS,
        paper_size: bool = False) -> dict:
    """Benchmark every entry (see the module docstring) on image ``x`` (3, H, W) uint8.

    Returns ``{"height", "width", "runs", "paper_size", "startup_s": {"1": s, ...}, "threads": {"1": [entry, ...],
    ...}}``; an entry has ``name``, ``bytes``, ``bpp``, seconds (``encode_s``, ``decode_s``, and for
    learned codecs ``encode_g_a_s``, ``entropy_s``, ``h_s_s``, ``g_s_s``, and ``cli_s`` for embedded
    weights) and ``decode_vs_two_layer`` / ``decode_vs_jpeg_like`` (decode time ÷ theirs).

    Raises:
        ModelNotFoundError: a learned model without embedded weights, or a quality outside 0–6.
        ValueError: ``runs`` < 1.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        learned = paper_size_codecs(Path(tmp)) if paper_size else {name: load(name, quality) for name in LEARNED}
        return _run(x, learned, runs, thread_counts, paper_size)


def _run(x: Tensor, learned: dict[str, Codec], runs: int, thread_counts: tuple[int, ...], paper_size: bool) -> dict:
    pixels = x.shape[1] * x.shape[2]
    files = {name: learned[name].compress(x) for name in ([LEARNED[0]] if paper_size else LEARNED)}
    pillow = {name: closest_quality(name, x, bpp(len(files["two-layer"]), pixels)) for name in PILLOW}
    suffix = " (N=192, M=320, untrained)" if paper_size else f" q{learned['two-layer'].quality:g}"
    decoders = {name: Decoder(c.loaded.path) for name, c in learned.items()}
    table, startup = {}, {}
    for n in thread_counts:
        with threads(n):
            rows = []
            for name, c in learned.items():  # two-layer first: the paper-size stand-ins reuse its times
                times = time_learned(c, decoders[name], x, files.get(name, files["two-layer"]), n, runs,
                                     None if name in files else (rows[0], decoders["two-layer"]))
                rows.append({"name": name + suffix, "bytes": len(files.get(name, files["two-layer"])), **times})
            rows += [{"name": f"{name} q{c.quality}", "bytes": len(data), **time_pillow(c, x, data, runs)}
                     for name, (c, data) in pillow.items()]
        table[str(n)] = [_with_ratios(row, rows[0]["decode_s"], rows[1]["decode_s"], pixels) for row in rows]
        if not paper_size:
            startup[str(n)] = time_startup("two-layer", n, runs)
    return {"height": x.shape[1], "width": x.shape[2], "runs": runs, "paper_size": paper_size,
            "startup_s": startup, "threads": table}


def _with_ratios(row: dict, two_layer_s: float, jpeg_like_s: float, pixels: int) -> dict:
    return {**row, "bpp": bpp(row["bytes"], pixels),
            "decode_vs_two_layer": row["decode_s"] / two_layer_s, "decode_vs_jpeg_like": row["decode_s"] / jpeg_like_s}


def format_report(report: dict) -> str:
    """A :func:`run` report as one table per thread count: bytes, bpp, encode and decode seconds, the decoder's
    stages, the whole CLI decode, and the decode time ÷ the two-layer's and the jpeg-like's."""
    lines = []
    for n, rows in report["threads"].items():
        startup = report["startup_s"].get(n)
        lines.append(f"{report['image']} {report['width']}x{report['height']}, median of {report['runs']} runs, "
                     f"{n} thread(s)" + (f"; decoder start-up (imports + weights) {startup:.3f} s" if startup else ""))
        lines.append(f"  {'codec':38s}{'bytes':>7s}{'bpp':>7s}{'enc s':>8s}{'dec s':>8s}{'entropy':>8s}{'h_s':>8s}"
                     f"{'g_s':>8s}{'CLI s':>8s}{'÷2-layer':>9s}{'÷jpeg-like':>11s}")
        for r in rows:
            split = "".join(f"{r[k]:8.4f}" if r.get(k) is not None else f"{'':8s}"
                            for k in ("entropy_s", "h_s_s", "g_s_s", "cli_s"))
            lines.append(f"  {r['name']:38s}{r['bytes']:7d}{r['bpp']:7.3f}{r['encode_s']:8.4f}{r['decode_s']:8.4f}"
                         f"{split}{r['decode_vs_two_layer']:9.2f}{r['decode_vs_jpeg_like']:11.2f}")
    return "\n".join(lines)
