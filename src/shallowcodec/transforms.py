"""Analysis and synthesis transforms (g_a, g_s) and hyper-transforms (h_a, h_s).

Yang & Mandt, "Computationally-Efficient Neural Image Compression with Shallow Decoders",
ICCV 2023 (arXiv 2304.06244), Sec. 3 and Table 1. All transforms work on (B, C, H, W) tensors;
images are RGB in [0, 1]. The latent y has M channels at 1/16 of the image resolution, the
hyper-latent z has M channels at 1/64.

The decoder side is the paper's contribution and is kept deliberately shallow::

    JPEG-like g_s:   y ──ConvT(M→3, k, s16)──► x̂                     (one linear layer)

    two-layer g_s:   y ──ConvT(M→C, k13, s8)──► IGDN1 ──┐
                     y ──ConvT(M→C, k13, s8)──(linear)──⊕──ConvT(C→3, k5, s2)──► x̂

Layers that already exist in CompressAI (GDN1, ResidualBottleneckBlock, AttentionBlock, conv
helpers) are reused rather than rewritten.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from compressai.layers import GDN, GDN1, AttentionBlock
from compressai.models.sensetime import ResidualBottleneckBlock
from compressai.models.utils import conv
from torch import Tensor, nn

from shallowcodec.architectures import ConvSpec, ModelConfig, Stage, hyper_synthesis_layers
from shallowcodec.entropy_parameters import (
    ACT_BITS,
    FixedPointLayer,
    check_fan_in,
    fixed_point_layer,
    quantize_activation,
    round_grid,
    weight_scales,
)


def conv_transpose_exact(in_ch: int, out_ch: int, kernel_size: int, stride: int) -> nn.ConvTranspose2d:
    """Transposed conv whose output is exactly ``stride`` times its input, for any kernel size.

    With padding p and output_padding op, the output size is (H−1)·s − 2p + k + op; choosing
    p = ceil((k−s)/2) and op = 2p − (k−s) makes it H·s. For k < s the kernel tiles sparsely.

    Args:
        in_ch, out_ch: channel counts.
        kernel_size: k ≥ stride (paper: 13 at stride 8, 16–32 at stride 16, 5 at stride 2).
        stride: upsampling factor s.

    Raises:
        ValueError: if ``kernel_size < stride`` (the output would have holes).
    """
    if kernel_size < stride:
        raise ValueError(f"kernel_size {kernel_size} < stride {stride}: output would have holes")
    excess = kernel_size - stride
    padding = (excess + 1) // 2
    return nn.ConvTranspose2d(
        in_ch, out_ch, kernel_size, stride=stride, padding=padding, output_padding=2 * padding - excess
    )


class Synthesis(nn.Module):
    """A synthesis g_s made of stages (architectures.Stage): per stage, x → IGDN(ConvT(x)) [+ ConvT_res(x)].

    The modules carry the stages' names (``deconv``, ``up``, ``igdn``, ``up_res``, ``out``; ``0`` … ``6``),
    the tensor names of the weights files; IGDN is CompressAI's GDN (inverse), IGDN1 its GDN1.

    Shapes: y (B, M, h, w) → x̂ (B, 3, 16h, 16w).
    """

    def __init__(self, stages: tuple[Stage, ...]):
        super().__init__()
        self.stages = stages
        for stage in stages:
            self.add_module(stage.conv.name, _conv(stage.conv))
            if stage.igdn is not None:
                self.add_module(stage.igdn, (GDN1 if stage.l1 else GDN)(stage.conv.c_out, inverse=True))
            if stage.residual is not None:
                self.add_module(stage.residual.name, _conv(stage.residual))

    def forward(self, y: Tensor) -> Tensor:
        for stage in self.stages:
            h = getattr(self, stage.conv.name)(y)
            if stage.igdn is not None:
                h = getattr(self, stage.igdn)(h)
            if stage.residual is not None:
                h = h + getattr(self, stage.residual.name)(y)
            y = h
        return y


def _conv(spec: ConvSpec) -> nn.ConvTranspose2d:
    return conv_transpose_exact(spec.c_in, spec.c_out, spec.kernel, spec.stride)


class JPEGLikeSynthesis(Synthesis):
    """JPEG-like synthesis g_s: a single transposed convolution M → 3, stride 16 (module ``deconv``).

    Paper Sec. 3.1: each latent pixel's M channels weight M learned k×k RGB "basis images"
    that are overlap-added at stride 16, like an inverse block transform. k = 16 is a pure
    block transform (blocking artefacts); k = 18 (default) overlaps by one pixel each side;
    k = 26 or 32 remove blocking but add ringing. Decode cost 2,433 FLOPs/pixel at M=320, k=18.

    Shapes: y (B, M, h, w) → x̂ (B, 3, 16h, 16w).
    """

    def __init__(self, M: int, kernel_size: int = 18):
        super().__init__(ModelConfig.parse("jpeg-like", {"M": M, "kernel_size": kernel_size}).synthesis())


class TwoLayerSynthesis(Synthesis):
    """Two-layer synthesis g_s (the paper's proposed decoder, Sec. 3.2).

    ``residual=True`` (default)::

        a = ConvT(M→C, k13, s8)(y);  h = IGDN1(a) + ConvT_res(M→C, k13, s8)(y)
        x̂ = ConvT(C→3, k5, s2)(h)

    ``residual=False``: ConvT(M→C', k13, s8) → IGDN1 → ConvT(C'→3, k5, s2), with C' = 2C.
    C = 12 in the paper; decode cost 10,680 FLOPs/pixel at M=320.

    Shapes: y (B, M, h, w) → x̂ (B, 3, 16h, 16w).
    """

    def __init__(self, M: int, hidden: int = 12, residual: bool = True):
        name = "two-layer" if residual else "two-layer-nores"
        super().__init__(ModelConfig.parse(name, {"M": M, "hidden": hidden}).synthesis())


class MBT2018Synthesis(Synthesis):
    """Baseline synthesis of the mean-scale hyperprior (Minnen et al. 2018; CompressAI mbt2018-mean).

    4 × ConvT(k5, s2) with IGDN between (modules ``0`` … ``6``); 187,585 FLOPs/pixel at N=192, M=320.
    Shapes: y (B, M, h, w) → x̂ (B, 3, 16h, 16w).
    """

    def __init__(self, N: int, M: int):
        super().__init__(ModelConfig.parse("mbt2018-mean", {"N": N, "M": M}).synthesis())


class ELICAnalysis(nn.Sequential):
    """ELIC analysis g_a (He et al., CVPR 2022), the paper's strong encoder (Sec. 3.3).

    conv k5s2 → 3 residual bottleneck blocks → conv k5s2 → 3 RB → attention → conv k5s2 → 3 RB
    → conv k5s2 (→ M) → attention. 510,846 FLOPs/pixel at N=192, M=320.
    Shapes: x (B, 3, H, W) → y (B, M, H/16, W/16); H and W must be multiples of 16.
    """

    def __init__(self, N: int, M: int):
        super().__init__(
            conv(3, N), *[ResidualBottleneckBlock(N, N) for _ in range(3)],
            conv(N, N), *[ResidualBottleneckBlock(N, N) for _ in range(3)], AttentionBlock(N),
            conv(N, N), *[ResidualBottleneckBlock(N, N) for _ in range(3)],
            conv(N, M), AttentionBlock(M),
        )


class CNNAnalysis(nn.Sequential):
    """CNN analysis g_a of the mean-scale hyperprior: 4 × conv k5 s2 with GDN between.

    187,583 FLOPs/pixel at N=192, M=320 (Minnen et al. 2018).
    Shapes: x (B, 3, H, W) → y (B, M, H/16, W/16).
    """

    def __init__(self, N: int, M: int):
        super().__init__(
            conv(3, N), GDN(N),
            conv(N, N), GDN(N),
            conv(N, N), GDN(N),
            conv(N, M),
        )


class HyperAnalysis(nn.Sequential):
    """Hyper-analysis h_a: conv k3 s1 → ReLU → conv k5 s2 → ReLU → conv k5 s2, all M channels.

    13,452 FLOPs/pixel at M=320 (paper Table 1).
    Shapes: y (B, M, h, w) → z (B, M, h/4, w/4).
    """

    def __init__(self, M: int):
        super().__init__(
            conv(M, M, kernel_size=3, stride=1), nn.ReLU(inplace=True),
            conv(M, M), nn.ReLU(inplace=True),
            conv(M, M),
        )


class HyperSynthesis(nn.Module):
    """Hyper-synthesis h_s: ẑ → (μ, log σ) of the Gaussian conditional of y, in fixed point.

    The layers are those of architectures.ModelConfig.hyper_synthesis_layers. ``kind="paper"``:
    ConvT k5 s2 (M) → ReLU → ConvT k5 s2 (1.5 M) → ReLU → ConvT k3 s1 (2 M), 30,355 FLOPs/pixel
    at M=320 (paper Table 1). ``kind="cheap"``: one ConvT(M→2M, k, s4) (``kernel_size`` k ≥ 4;
    the authors' code has k6), 2·M·2M·k²/4096 + 2M/256 FLOPs/pixel: 1,602 at k4 and 3,602 at k6
    (M=320), trained by distillation (distill.py). k6 is the default: distilled from the embedded
    two-layer weights it cost +0.5 % BD-rate on 6 photos24 images, k4 +2.9 %
    (benchmarks/results/cheap-hs-*.json). Either output is split into μ and log σ. Weights and
    activations are rounded to fixed-point grids (entropy_parameters.py, after Ballé et al.,
    ICLR 2019) so that the decoder computes μ and the scale indexes bit-identically on every CPU;
    training sees the same rounding through straight-through gradients.

    Shapes: ẑ (B, M, h/4, w/4) → μ, log σ each (B, M, h, w).

    Raises:
        ValueError: an unknown ``kind``, a cheap ``kernel_size`` < 4, or a width whose float64
            sums could not be exact (fan-in > 2^16).
    """

    def __init__(self, M: int, kind: str = "paper", kernel_size: int = 6):
        super().__init__()
        specs = hyper_synthesis_layers(M, kind, kernel_size)
        layers = []
        for i, spec in enumerate(specs):
            check_fan_in(spec.c_in, spec.kernel)
            layers += [_conv(spec)] + ([nn.ReLU(inplace=True)] if i < len(specs) - 1 else [])
        self.layers = nn.Sequential(*layers)
        self._exact_layers: tuple[tuple, list[FixedPointLayer]] = ((), [])

    def convolutions(self) -> list[nn.ConvTranspose2d]:
        """The transposed convolutions of h_s, in order (each followed by a ReLU but the last)."""
        return [m for m in self.layers if isinstance(m, nn.ConvTranspose2d)]

    def forward(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """(μ, log σ) on the 2^-10 grid in float32, the fixed-point rounding of weights and activations
        with straight-through gradients (training, SGA): the function :meth:`exact_layers` computes."""
        x = _straight_through(z_hat.float(), quantize_activation)
        for layer in self.layers:
            if isinstance(layer, nn.ConvTranspose2d):
                weight = _straight_through(layer.weight, _quantize_weight)
                bias = _straight_through(layer.bias, lambda b: round_grid(b, ACT_BITS))
                x = F.conv_transpose2d(x, weight, bias, layer.stride, layer.padding, layer.output_padding)
                x = _straight_through(x, quantize_activation)
            elif isinstance(layer, nn.ReLU):
                x = torch.relu(x)
            else:
                raise TypeError(f"fixed-point h_s supports ConvTranspose2d and ReLU, not {type(layer).__name__}")
        mu, log_sigma = x.chunk(2, dim=1)
        return mu, log_sigma

    def exact_layers(self) -> list[FixedPointLayer]:
        """The decoder's fixed-point layers (numpy float64, entropy_parameters.entropy_parameters),
        computed once per parameter version (an optimizer step or a load recomputes them)."""
        convs = self.convolutions()
        versions = tuple((id(p), p._version) for c in convs for p in (c.weight, c.bias))
        if versions != self._exact_layers[0]:
            layers = [fixed_point_layer(c.weight.detach().cpu().double().numpy(), c.bias.detach().cpu().double().numpy(),
                                        c.stride[0], relu=i < len(convs) - 1) for i, c in enumerate(convs)]
            self._exact_layers = (versions, layers)
        return self._exact_layers[1]


def _straight_through(x: Tensor, quantize) -> Tensor:
    """``quantize(x)`` in the forward pass, identity gradient with respect to ``x``."""
    return x + (quantize(x.detach()) - x).detach()


def _quantize_weight(weight: Tensor) -> Tensor:
    """A ConvTranspose2d weight (C_in, C_out, k, k) on its per-output-channel grids (entropy_parameters.weight_scales)."""
    if weight.is_meta:  # FLOP counting on the meta device: shapes only
        return weight
    scale = torch.tensor(weight_scales(weight.abs().amax(dim=(0, 2, 3)).tolist()), dtype=weight.dtype,
                         device=weight.device).reshape(1, -1, 1, 1)
    return torch.round(weight * scale) / scale
