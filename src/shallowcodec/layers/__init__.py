"""The decoder's layers in numpy: transposed convolution (sub-pixel phases or GEMM + overlap-add), IGDN, IGDN1.

The torch-free decoder's g_s (:mod:`.synthesis`) and the exact h_s (entropy_parameters.py) are
built from these, and so are their ONNX graphs (each layer writes its own nodes, onnx_graph.py).
Arrays are (C, H, W), one image. A transposed convolution with stride s and kernel k is the
JPEG-like synthesis as the paper describes it (Sec. 3.1: M basis images per latent,
overlap-added); the classes compute it as matrix products that do exactly the layer's
multiply-adds, by one of two algorithms that :func:`conv_transpose` picks per layer (both
measured on this project's layers, benchmarks/README.md "Speed"):

* :class:`~.phases.PhaseConvTranspose` (sub-pixel convolution): a GEMM per group of output phases
  over shifted copies of the input, the phases interleaved into the image; no zero taps, no scatter.
* :class:`~.scatter.ScatterConvTranspose`: one GEMM gives every latent's k×k patch, col2im adds
  them at stride s; :class:`~.scatter.BlockScatterConvTranspose` adds them in s × s blocks into a
  channels-last image.

Output sizes follow transforms.conv_transpose_exact: the output is exactly s times the input,
with padding p = ⌈(k−s)/2⌉ cropped from the top/left (and the rest from the bottom/right).
"""

from __future__ import annotations

import numpy as np

from shallowcodec.layers.conv import ConvTranspose
from shallowcodec.layers.gdn import InverseGDN
from shallowcodec.layers.phases import PhaseConvTranspose, phase_groups
from shallowcodec.layers.scatter import BlockScatterConvTranspose, ScatterConvTranspose

__all__ = ["BlockScatterConvTranspose", "ConvTranspose", "InverseGDN", "PhaseConvTranspose", "ScatterConvTranspose",
           "conv_transpose"]

#: Scatter when the patches (C_out·k² per latent) are fewer than SCATTER_BELOW times the phases'
#: shifted input copies (C_in·⌈k/s⌉²) ...
SCATTER_BELOW = 2.0
#: ... and the layer has more than PHASES_MAX_INPUTS input channels (the two-layer's 12 → 3 output
#: layer: phases 11–12 ms against the scatter's 14.5; for 64 → 3 the scatter is faster, 24 against 67 ms).
PHASES_MAX_INPUTS = 16
#: Phase groups whose GEMMs would have fewer output rows than this (e.g. one phase of a 64-channel
#: layer) are merged into one GEMM over the zero-padded kernel: BLAS streams the inputs once, not once per group.
PHASES_MIN_ROWS = 128
#: Block col2im (channels-last scatter) from this many contiguous values per block row (s·C_out).
BLOCK_SCATTER_MIN = 32


def conv_transpose(weight: np.ndarray, bias: np.ndarray, stride: int, channels_last: bool = False) -> ConvTranspose:
    """The transposed convolution of a weight, by the algorithm that is fastest for its shape.

    Scatter where C_out·k² < SCATTER_BELOW · C_in·⌈k/s⌉² and C_in > PHASES_MAX_INPUTS (the JPEG-like
    g_s, the mbt2018-mean's output layer), block scatter among those when ``channels_last`` and
    s·C_out ≥ BLOCK_SCATTER_MIN (the JPEG-like g_s: 16 × 3); phases elsewhere, in one merged group
    where a group's GEMM would have fewer than PHASES_MIN_ROWS output rows.

    Args:
        weight: (C_in, C_out, k, k) in PyTorch's ConvTranspose2d layout, k ≥ stride; its dtype
            (float32 or float64) is the layer's.
        bias: (C_out,).
        stride: s.
        channels_last: the layer returns (s·H, s·W, C_out) (the pixels of g_s) instead of (C_out, s·H, s·W).

    Raises:
        ValueError: k < stride.
    """
    c_in, c_out, k = weight.shape[0], weight.shape[1], weight.shape[-1]
    taps = -(-k // stride)
    if c_out * k**2 < SCATTER_BELOW * c_in * taps**2 and c_in > PHASES_MAX_INPUTS:
        if channels_last and stride * c_out >= BLOCK_SCATTER_MIN:
            return BlockScatterConvTranspose(weight, bias, stride)
        return ScatterConvTranspose(weight, bias, stride, channels_last)
    groups = phase_groups(k, stride)
    merged = min((r1 - r0) * (t1 - t0) * c_out for (r0, r1, _), (t0, t1, _) in groups) < PHASES_MIN_ROWS
    return PhaseConvTranspose(weight, bias, stride, channels_last, merged)
