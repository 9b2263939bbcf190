"""Exact entropy parameters: the μ and scale index of every latent, bit-identical on every CPU.

A decoder reproduces ŷ only if it computes the same entropy-model parameters as the encoder,
to the last bit: one scale index off, and the range decoder drifts from there on. h_s in float
is not exact — convolutions sum in an order that depends on the kernel set (AVX-512, AVX2,
SSE4.1, oneDNN or not), the thread count and the library — and neither are exp and erf. This
module makes every step of (ẑ, quality) → (μ, scale index) either exact or a single IEEE-754
operation (which rounds correctly, hence identically, everywhere), after Ballé, Johnston &
Minnen, "Integer networks for data compression with latent-variable models" (ICLR 2019)::

    ẑ_g ──×γ⁻¹_z──► ẑ ──Q_a──► conv ──Q_a──► ReLU ──► conv ──Q_a──► ReLU ──► conv ──Q_a──► μ, log σ
                                  ▲ weights on a per-channel 2^-e grid, biases on the 2^-A grid
    index = #{ log s_i < log σ + log γ_y }      (s_i: the Gaussian conditional's scale table)
    μ_g   = μ · γ_y                             (one float64 product of two fixed-point numbers)

* **Fixed point.** Activations live on the grid 2^-ACT_BITS, clamped to ±ACT_LIMIT (Q_a, round
  half to even); weights are rounded to a power-of-two grid per output channel with at most
  WEIGHT_BITS significant bits; biases to the activation grid. The convolutions run in float64.
* **Why float64 is exact here.** Every input is k·2^-A with |k| ≤ 2^(A+12) = 2^22, every weight
  j·2^-e with |j| ≤ 2^14 and e ≤ MAX_WEIGHT_EXP, so every product, bias and partial sum is an
  integer multiple of 2^-(A+e) whose magnitude in those units is at most
  fan_in · 2^22 · 2^14 + 2^(22+24) < 2^53 for fan_in = C_in·k² ≤ MAX_FAN_IN = 2^16; float64 holds
  all such integers exactly, so every summation order — any GEMM, any col2im, any thread
  split — gives the same sum. :func:`check_fan_in` refuses wider layers.
* **Gains** (variable rate) are computed once per quality in Python: log γ by exponential
  interpolation in float64 scalars (IEEE), rounded to 2^-LOG_GAIN_BITS; γ = exp(log γ) with
  :mod:`decimal` (correctly rounded, platform-independent), rounded to 2^-GAIN_BITS.
* **Scale index** in the log domain: log σ_g = log σ + log γ_y, both fixed point, compared with
  ln(s_i) computed by :mod:`decimal` — no exp, no erf on the decoder's side.
* **CDF tables** (integer) are stored with the weights (zoo.py), not recomputed in float.

In training the same quantizers run in float32 with straight-through gradients
(:func:`hyper_synthesis_fixed_point` with ``exact=False``), so the model learns the function the
decoder computes; at 2^-10 and 14 bits the difference from the float h_s is far below the noise.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Activations (h_s input, hidden layers, μ and log σ) are multiples of 2^-ACT_BITS ...
ACT_BITS = 10
#: ... clamped to [-ACT_LIMIT, ACT_LIMIT].
ACT_LIMIT = 2.0**12
#: Significant bits of the largest weight of each output channel.
WEIGHT_BITS = 14
#: Finest weight grid 2^-MAX_WEIGHT_EXP (smaller weights round to 0).
MAX_WEIGHT_EXP = 24
#: Largest C_in·k·k for which float64 sums stay exact (see the module docstring).
MAX_FAN_IN = 2**16
#: log γ on the grid 2^-LOG_GAIN_BITS, γ and γ⁻¹ on 2^-GAIN_BITS.
LOG_GAIN_BITS = 16
GAIN_BITS = 20


class ExactGains(NamedTuple):
    """Gains of one quality, float64 (1, M, 1, 1) each: log γ_y (for the scale index), γ_y, γ⁻¹_y, γ⁻¹_z."""

    log_y: Tensor
    y: Tensor
    y_inv: Tensor
    z_inv: Tensor


class EntropyParameters(NamedTuple):
    """Parameters of the Gaussian conditional of the coded y_g, (B, M, h, w) each.

    ``mu``: μ_g, float64 (exact); ``indexes``: int32 scale indexes into the scale table;
    ``log_sigma``: log σ_g, float64 (exact), for rate estimates.
    """

    mu: Tensor
    indexes: Tensor
    log_sigma: Tensor


def _round_grid(x: Tensor, bits: int) -> Tensor:
    """x rounded (half to even) to multiples of 2^-bits; exact for float64 and float32 inputs."""
    scale = 2.0**bits
    return torch.round(x * scale) / scale


def _ste(x: Tensor, quantized: Tensor) -> Tensor:
    """``quantized`` in the forward pass, identity gradient with respect to ``x``."""
    return x + (quantized - x).detach()


def quantize_activation(x: Tensor, exact: bool = True) -> Tensor:
    """Q_a: x clamped to ±ACT_LIMIT and rounded to 2^-ACT_BITS (straight-through when not exact)."""
    q = _round_grid(x.clamp(-ACT_LIMIT, ACT_LIMIT), ACT_BITS)
    return q if exact else _ste(x, q)


def quantize_weight(weight: Tensor, out_dim: int) -> Tensor:
    """Round each output channel of ``weight`` to a power-of-two grid with WEIGHT_BITS significant bits.

    The grid 2^-e of a channel has e = WEIGHT_BITS − ⌈log2 max|w|⌉ (from math.frexp, exact),
    capped at MAX_WEIGHT_EXP, so |w|·2^e ≤ 2^WEIGHT_BITS. Same dtype as ``weight``; a pure
    function of its values (powers of two scale exactly).

    Args:
        weight: a conv weight, e.g. (C_in, C_out, k, k) for ConvTranspose2d (out_dim=1).
        out_dim: the dimension of output channels.
    """
    if weight.is_meta:  # FLOP counting on the meta device: shapes only
        return weight
    peak = weight.detach().abs().amax(dim=[d for d in range(weight.dim()) if d != out_dim]).tolist()
    exps = [min(MAX_WEIGHT_EXP, WEIGHT_BITS - math.frexp(p)[1]) if p > 0 else MAX_WEIGHT_EXP for p in peak]
    shape = [1] * weight.dim()
    shape[out_dim] = -1
    scale = torch.tensor([2.0**e for e in exps], dtype=weight.dtype, device=weight.device).reshape(shape)
    return torch.round(weight * scale) / scale


def check_fan_in(h_s: nn.Sequential) -> None:
    """Raise ValueError if a convolution of ``h_s`` sums more than MAX_FAN_IN terms per output."""
    for layer in h_s:
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            c_in = layer.in_channels
            fan_in = c_in * layer.kernel_size[0] * layer.kernel_size[1]
            if fan_in > MAX_FAN_IN:
                raise ValueError(f"h_s layer with fan-in {fan_in} > {MAX_FAN_IN}: its float64 sums would not be exact")


def fixed_point_layer(layer: nn.Module, exact: bool = True) -> tuple[Tensor, Tensor]:
    """The quantized (weight, bias) of one convolution of h_s: float64 when ``exact``, else float32
    with straight-through gradients."""
    transposed = isinstance(layer, nn.ConvTranspose2d)
    weight, bias = layer.weight, layer.bias
    if exact:
        weight, bias = weight.detach().double(), bias.detach().double()
    w_q = quantize_weight(weight, out_dim=1 if transposed else 0)
    b_q = _round_grid(bias, ACT_BITS)
    return (w_q, b_q) if exact else (_ste(weight, w_q), _ste(bias, b_q))


def _conv(layer: nn.Module, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    if isinstance(layer, nn.ConvTranspose2d):
        return F.conv_transpose2d(x, weight, bias, layer.stride, layer.padding, layer.output_padding)
    return F.conv2d(x, weight, bias, layer.stride, layer.padding)


def hyper_synthesis_fixed_point(h_s: nn.Sequential, z_hat: Tensor, exact: bool = True,
                                weights: list[tuple[Tensor, Tensor]] | None = None) -> tuple[Tensor, Tensor]:
    """μ and log σ (B, M, h, w) of y from ẑ (B, M, h/4, w/4) through the fixed-point h_s.

    Args:
        h_s: the hyper-synthesis layers (convolutions, transposed convolutions and ReLUs).
        z_hat: ẑ in the ungained domain.
        exact: float64, no gradient — the decoder's bit-exact computation; False: the same
            quantizers in float32 with straight-through gradients (training).
        weights: the convolutions' :func:`fixed_point_layer` results, in order, if already
            computed (the decoder caches them); computed here when None.

    Returns:
        (μ, log σ) on the 2^-ACT_BITS grid; float64 when exact.

    Raises:
        TypeError: a layer other than Conv2d, ConvTranspose2d or ReLU.
    """
    convs = [layer for layer in h_s if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d))]
    params = iter(weights if weights is not None else [fixed_point_layer(c, exact) for c in convs])
    x = quantize_activation(z_hat.double() if exact else z_hat.float(), exact)
    for layer in h_s:
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            x = quantize_activation(_conv(layer, x, *next(params)), exact)
        elif isinstance(layer, nn.ReLU):
            x = torch.relu(x)
        else:
            raise TypeError(f"fixed-point h_s supports Conv2d, ConvTranspose2d and ReLU, not {type(layer).__name__}")
    mu, log_sigma = x.chunk(2, dim=1)
    return mu, log_sigma


def _decimal_exp(x: float, bits: int) -> float:
    """exp(x) correctly rounded by :mod:`decimal`, then rounded to a multiple of 2^-bits."""
    with localcontext() as ctx:
        ctx.prec = 40
        return float(round(Decimal(x).exp() * 2**bits)) / 2**bits


def exact_gains(log_gains: dict[str, Tensor], quality: float) -> ExactGains:
    """Gains of one quality, identical on every platform (module docstring).

    Args:
        log_gains: (7, M) log-gains "y", "y_inv", "z_inv" (variable_rate.GainUnits).
        quality: q in [0, 6], a multiple of 1/256 (variable_rate.snap_quality).

    Returns:
        :class:`ExactGains`, float64 (1, M, 1, 1) each.
    """
    low = min(int(math.floor(quality)), log_gains["y"].shape[0] - 2)
    t = quality - low

    def log_gain(name: str) -> list[float]:
        table = log_gains[name].detach().double().cpu()
        a, b = table[low].tolist(), table[low + 1].tolist()
        return [round(((1 - t) * ai + t * bi) * 2**LOG_GAIN_BITS) / 2**LOG_GAIN_BITS for ai, bi in zip(a, b)]

    def column(values: list[float]) -> Tensor:
        return torch.tensor(values, dtype=torch.float64).reshape(1, -1, 1, 1)

    log_y = log_gain("y")
    return ExactGains(column(log_y), column([_decimal_exp(v, GAIN_BITS) for v in log_y]),
                      column([_decimal_exp(v, GAIN_BITS) for v in log_gain("y_inv")]),
                      column([_decimal_exp(v, GAIN_BITS) for v in log_gain("z_inv")]))


def log_scale_thresholds(scale_table: Tensor) -> Tensor:
    """ln(s_i) of the scale table but its last entry, float64, by :mod:`decimal` (platform-independent)."""
    with localcontext() as ctx:
        ctx.prec = 40
        return torch.tensor([float(Decimal(s).ln()) for s in scale_table[:-1].double().tolist()], dtype=torch.float64)


def scale_indexes(log_sigma: Tensor, thresholds: Tensor) -> Tensor:
    """Scale index #{i : ln s_i < log σ} (int32), CompressAI's rule in the log domain.

    σ below s_0 (the scale bound, 0.11) gets index 0; above the last threshold, the last index.
    """
    return torch.bucketize(log_sigma, thresholds, right=False).int()
