"""Tiled transforms: coding images of any size (up to container.MAX_PIXELS) in bounded memory.

A transform f with a finite receptive field that scales the grid by a factor s (g_a: 1/16,
h_a: 1/4, h_s: 4, g_s: 16) is applied to overlapping tiles: each tile of ``tile`` input rows ×
columns is widened by ``margin`` rows/columns of context on each side (clipped at the edges, where
the untiled transform sees its zero padding too), transformed, and its core is cropped into the
output. Peak memory is then that of one widened tile plus the input and the output.

* **Decoder.** g_s is a stack of transposed convolutions: an output pixel depends on the
  latents within ±2 of its own (two-layer: k13 s8 then k5 s2; jpeg-like: k18 s16; mbt2018-mean:
  4 × k5 s2), so with SYNTHESIS_MARGIN = 4 latents every tile sees all of its pixels' inputs, and
  tiled x̂ equals untiled x̂ up to the float32 rounding of GEMMs of other sizes (the numpy g_s,
  layers/synthesis.py; the rounded pixels agree, tests/test_tiling.py).
  h_s is exact by construction (fixed point in float64, entropy_parameters.py), so tiling it with
  HYPER_SYNTHESIS_MARGIN = 4 ẑ rows/columns (±2 needed: k5 s2, k5 s2, k3 s1) gives the same μ and
  scale indexes.
* **Encoder (a choice).** g_a (ELIC: receptive field 265 pixels, ±8 latents) runs on tiles of
  ANALYSIS_TILE pixels with ANALYSIS_MARGIN = 128 pixels (8 latents) of context; h_a (receptive
  field ±7 latents of y) on tiles of y with 8 latents of margin. Any y decodes, and the decoder
  does not know the encoder tiled. Measured on photos24 eval03_sail (768×512, embedded two-layer
  q3) with 256-pixel tiles (6 tiles, 128-pixel margins): the same file, byte for byte, as untiled
  analysis (39,769 bytes, 28.046 dB; benchmarks/memory.py --seams): the seams' float differences
  are far below the rounding of y. Images up to ANALYSIS_TILE on both sides are not tiled at all.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np

#: Core size of an analysis tile, in pixels (a multiple of 64), and its context on each side.
ANALYSIS_TILE = 1024
ANALYSIS_MARGIN = 128
#: Core size of an h_a tile and its context, in latents of y (multiples of 4).
HYPER_ANALYSIS_TILE = 64
HYPER_ANALYSIS_MARGIN = 8
#: Core size of a g_s tile and its context, in latents of ŷ (the context covers the receptive field): 64 (1024
#: pixels) decodes a 768×512 photo as one tile, whose margins would otherwise cost 17 % more g_s work.
SYNTHESIS_TILE = 64
SYNTHESIS_MARGIN = 4
#: Core size of an h_s tile and its context, in ẑ rows/columns (exact for any tile size).
HYPER_SYNTHESIS_TILE = 16
HYPER_SYNTHESIS_MARGIN = 4


def spans(n: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Tiles of a length-``n`` axis: (start, stop) of each core and of the core widened by ``margin``.

    Returns [(core_start, core_stop, outer_start, outer_stop), ...], cores of ``tile`` covering
    0..n, the outer ranges clipped to 0..n.

    Raises:
        ValueError: ``tile`` < 1 or ``margin`` < 0.
    """
    if tile < 1 or margin < 0:
        raise ValueError(f"tile must be >= 1 and margin >= 0, got {tile} and {margin}")
    return [(a, min(n, a + tile), max(0, a - margin), min(n, a + tile + margin)) for a in range(0, n, tile)]


def tiled(f: Callable, x, scale: Fraction, tile: int, margin: int):
    """f(x) computed tile by tile: x (1, C, H, W) → (1, C', H·scale, W·scale) in f's dtype and array type.

    x and f's results are both numpy arrays or both torch tensors (this module does not import torch).
    ``f`` maps (1, C, h, w) to (1, C', h·scale, w·scale), or to a tuple of such arrays (then a tuple of
    outputs is returned, each allocated once: e.g. μ and the scale indexes without a stacked copy);
    ``tile`` and ``margin`` are in input units, and tile, margin, H and W times ``scale`` must be
    integers. Tiles are computed one at a time, so only one widened tile's intermediates are alive;
    an input of one tile is f(x) itself (then the result may be a view of f's arrays).

    Raises:
        ValueError: a size that ``scale`` does not map to whole output pixels.
    """
    h, w = x.shape[-2:]
    for n in (h, w, tile, margin):
        if (n * scale).denominator != 1:
            raise ValueError(f"size {n} times scale {scale} is not an integer")
    if h <= tile and w <= tile:  # one tile: f's result is the output (no copy)
        return f(x)
    outs = None
    for r0, r1, ro0, ro1 in spans(h, tile, margin):
        for c0, c1, co0, co1 in spans(w, tile, margin):
            ys = f(x[..., ro0:ro1, co0:co1])
            single = not isinstance(ys, tuple)
            ys = (ys,) if single else ys
            if outs is None:
                outs = [_empty_like(y, (1, y.shape[1], int(h * scale), int(w * scale))) for y in ys]
            for out, y in zip(outs, ys):
                out[..., int(r0 * scale) : int(r1 * scale), int(c0 * scale) : int(c1 * scale)] = y[
                    ..., int((r0 - ro0) * scale) : int((r1 - ro0) * scale),
                    int((c0 - co0) * scale) : int((c1 - co0) * scale)]
            del ys
    return outs[0] if single else tuple(outs)


def _empty_like(y, shape: tuple[int, ...]):
    """An uninitialised array of ``shape`` of y's kind (numpy array or torch tensor) and dtype; a numpy
    array has y's memory layout (e.g. the decoder's pixels, (1, 3, H, W) views of (H, W, 3) images)."""
    if hasattr(y, "new_empty"):
        return y.new_empty(shape)
    order = sorted(range(y.ndim), key=lambda d: -y.strides[d])  # axes from the slowest to the fastest
    return np.empty([shape[d] for d in order], dtype=y.dtype).transpose(np.argsort(order))
