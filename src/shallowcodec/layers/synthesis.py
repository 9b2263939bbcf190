"""The numpy g_s of any architecture, assembled from its stages (architectures.Stage) and the layers of this package.

Per stage: x → ConvT(x) → IGDN (or IGDN1) [+ ConvT_res(x)]; the stages' transposed convolutions
are layers.conv_transpose's choice. Where a stage has a residual branch (the two-layer g_s,
Yang & Mandt, ICCV 2023, Sec. 3.2) its two convolutions of the same input run as one GEMM of
the concatenated weights, and IGDN1 and the residual sum run on each phase group's products
before the phases interleave (layers.ConvTranspose.uncropped's ``pointwise``). The last stage's
weights are scaled by ``scale`` (255: pixels) and write (16h, 16w, 3), the image's layout.
The same objects write the ONNX g_s (:meth:`Synthesis.onnx`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from shallowcodec.architectures import Stage
from shallowcodec.layers import ConvTranspose, InverseGDN, conv_transpose


class SynthesisStage:
    """One stage in numpy: ``conv`` (the residual branch's weights concatenated after the main one's) and the
    inverse GDN after it, if any.

    Args:
        stage: the stage's description.
        tensors: g_s tensors (float32), named as in the torch module without the ``g_s.`` prefix.
        scale: factor of the weights and bias (255 for the last stage of a pixel-writing g_s).
        channels_last: the stage writes (H', W', C) (the last stage).
    """

    def __init__(self, stage: Stage, tensors: Mapping[str, np.ndarray], scale: float = 1.0,
                 channels_last: bool = False):
        names = [stage.conv.name] + ([stage.residual.name] if stage.residual else [])
        weight = np.concatenate([tensors[f"{n}.weight"] for n in names], axis=1) * np.float32(scale)
        bias = np.concatenate([tensors[f"{n}.bias"] for n in names]) * np.float32(scale)
        self.conv: ConvTranspose = conv_transpose(weight, bias, stage.conv.stride, channels_last)
        self.width = stage.conv.c_out
        self.residual = stage.residual is not None
        self.igdn = None if stage.igdn is None else InverseGDN(tensors[f"{stage.igdn}.beta"],
                                                               tensors[f"{stage.igdn}.gamma"], stage.l1)

    def pointwise(self, a: np.ndarray) -> np.ndarray:
        """IGDN of the main branch [+ the residual branch] of conv products (..., C_out(·2), P) → (..., C_out, P)."""
        h = self.igdn.pixels(a[..., : self.width, :])
        if self.residual:
            h += a[..., self.width :, :]
        return h

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (C_in, h, w) → (C_out, s·h, s·w), or (s·h, s·w, C_out) for the last stage; x's dtype."""
        if self.igdn is None:
            return self.conv(x)
        return self.conv.crop(self.conv.uncropped(x, pointwise=self.pointwise), *x.shape[1:])

    def onnx(self, graph, x: str) -> str:
        """Write this stage into an ONNX graph (onnx_graph.Graph): (1, C_in, h, w) → (1, C_out, s·h, s·w)."""
        a = self.conv.onnx(graph, x)
        if self.igdn is None:
            return a
        main = graph.slice(a, (0,), (self.width,), axes=(1,)) if self.residual else a
        h = self.igdn.onnx(graph, main)
        return graph.node("Add", [h, graph.slice(a, (self.width,), (0,), axes=(1,))]) if self.residual else h


class Synthesis:
    """The numpy g_s: ungained ŷ (M, h, w) float32 → x̂·``scale`` (16h, 16w, 3) float32, unclamped (the JPEG-like
    g_s and the phases write pixels in this layout).

    Args:
        stages: architectures.ModelConfig.synthesis() of the model.
        tensors: its g_s tensors, named as in the torch module without the ``g_s.`` prefix, float32.
        scale: folded into the last stage's weights (255: pixels; 1: x̂ in [0, 1], the ONNX g_s's).

    Raises:
        KeyError: a tensor is missing.
    """

    def __init__(self, stages: tuple[Stage, ...], tensors: Mapping[str, np.ndarray], scale: float = 255.0):
        self.stages = [SynthesisStage(stage, tensors, scale if i == len(stages) - 1 else 1.0, i == len(stages) - 1)
                       for i, stage in enumerate(stages)]

    def __call__(self, y: np.ndarray) -> np.ndarray:
        for stage in self.stages:
            y = stage(y)
        return y

    def onnx(self, graph, y: str) -> str:
        """Write g_s into an ONNX graph (onnx_graph.Graph): y (1, M, h, w) → x̂·scale (1, 3, 16h, 16w)."""
        for stage in self.stages:
            y = stage.onnx(graph, y)
        return y
