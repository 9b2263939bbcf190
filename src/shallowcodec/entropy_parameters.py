"""Exact entropy parameters: the μ and scale index of every latent, bit-identical on every CPU.

A decoder reproduces ŷ only if it computes the same entropy-model parameters as the encoder,
to the last bit: one scale index off, and the range decoder drifts from there on. h_s in float
is not exact — convolutions sum in an order that depends on the kernel set (AVX-512, AVX2,
SSE4.1, oneDNN or not), the thread count and the library — and neither are exp and erf. This
module makes every step of (ẑ, quality) → (μ, scale index) either exact or a single IEEE-754
operation (which rounds correctly, hence identically, everywhere), after Ballé, Johnston &
Minnen, "Integer networks for data compression with latent-variable models" (ICLR 2019)::

    ẑ_g ──×γ⁻¹_z──► ẑ ──Q_a──► convT ──Q_a──► ReLU ──► convT ──Q_a──► ReLU ──► convT ──Q_a──► μ, log σ
                                  ▲ weights on a per-channel 2^-e grid, biases on the 2^-A grid
    index = #{ log s_i < log σ + log γ_y }      (s_i: the Gaussian conditional's scale table)
    μ_g   = μ · γ_y                             (one float64 product of two fixed-point numbers)

* **Fixed point.** Activations live on the grid 2^-ACT_BITS, clamped to ±ACT_LIMIT (Q_a, round
  half to even); weights are rounded to a power-of-two grid per output channel with at most
  WEIGHT_BITS significant bits; biases to the activation grid. The convolutions run in float64,
  on activations counted in units of 2^-ACT_BITS (integers: the same sums scaled by a power of
  two), so that Q_a is a clamp and a rounding, done on each output phase's products while they
  are in the cache; the gains and the 2^-ACT_BITS scaling of μ fold into one product.
* **Why float64 is exact here.** Every input is k·2^-A with |k| ≤ 2^(A+12) = 2^22, every weight
  j·2^-e with |j| ≤ 2^14 and e ≤ MAX_WEIGHT_EXP, so every product, bias and partial sum is an
  integer multiple of 2^-(A+e) whose magnitude in those units is at most
  fan_in · 2^22 · 2^14 + 2^(22+24) < 2^53 for fan_in = C_in·k² ≤ MAX_FAN_IN = 2^16; float64 holds
  all such integers exactly, so every summation order — any BLAS, any col2im order, any thread
  split, with or without FMA — gives the same sum. :func:`check_fan_in` refuses wider layers.
  The first layer folds ẑ's constant channels into one all-ones input whose weight is their
  Σ value·weight (layers.ConvTranspose): a regrouping of the same integer terms, within the
  same bound, so the same sums.
* **Gains** (variable rate) are computed once per quality in Python: log γ by exponential
  interpolation in float64 scalars (IEEE), rounded to 2^-LOG_GAIN_BITS; γ = exp(log γ) with
  :mod:`decimal` (correctly rounded, platform-independent), rounded to 2^-GAIN_BITS.
* **Scale index** in the log domain: log σ_g = log σ + log γ_y, both fixed point, compared with
  ln(s_i) computed by :mod:`decimal` — no exp, no erf on the decoder's side.
* **CDF tables** (integer) are stored with the weights (zoo.py), not recomputed in float.

This module is numpy only (no PyTorch), and it is the one implementation of the exact path:
the torch model's encoder and decoder (hyperprior.py) and the torch-free decoder (decoder.py)
all call :func:`entropy_parameters`. In training the same grids are applied in float32 with
straight-through gradients (transforms.HyperSynthesis), so the model learns the function the
decoder computes; at 2^-10 and 14 bits the difference from the float h_s is far below the noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal, localcontext
from fractions import Fraction
from functools import partial
from typing import NamedTuple

import numpy as np

from shallowcodec.architectures import ConvSpec
from shallowcodec.layers import ConvTranspose, conv_transpose
from shallowcodec.tiling import HYPER_SYNTHESIS_MARGIN, HYPER_SYNTHESIS_TILE, tiled

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


class FixedPointLayer(NamedTuple):
    """One transposed convolution of h_s in fixed point, followed by Q_a (and a ReLU when ``relu``).

    ``conv``: a float64 layers.ConvTranspose whose weight (C_in, C_out, k, k) has each output
    channel on its 2^-e grid and whose bias is on the 2^-ACT_BITS grid, stored in *activation
    units* (× 2^ACT_BITS, integers): the layer maps activations in units (the integers k of
    values k·2^-ACT_BITS) to units, so Q_a is a clamp and a rounding, no scaling.
    """

    conv: ConvTranspose
    relu: bool


class ExactGains(NamedTuple):
    """Gains of one quality, float64 (1, M, 1, 1) each: log γ_y (for the scale index), γ_y, γ⁻¹_y, γ⁻¹_z."""

    log_y: np.ndarray
    y: np.ndarray
    y_inv: np.ndarray
    z_inv: np.ndarray


class EntropyParameters(NamedTuple):
    """Parameters of the Gaussian conditional of the coded y_g, (1, M, h, w) each.

    ``mu``: μ_g, float64 (exact); ``indexes``: scale indexes into the scale table (uint8 for
    tables of up to 256 scales); ``log_sigma``: log σ_g, float64 (exact), for rate estimates, or
    None when not asked for.
    """

    mu: np.ndarray
    indexes: np.ndarray
    log_sigma: np.ndarray | None


def round_grid(x, bits: int):
    """x rounded (half to even) to multiples of 2^-bits: exact for float64 and float32, numpy or torch."""
    scale = 2.0**bits
    return (x * scale).round() / scale


def quantize_activation(x):
    """Q_a: x clamped to ±ACT_LIMIT and rounded to 2^-ACT_BITS (numpy array or torch tensor)."""
    return round_grid(x.clip(-ACT_LIMIT, ACT_LIMIT), ACT_BITS)


def weight_scales(peak: Sequence[float]) -> list[float]:
    """2^e per output channel, from each channel's largest |weight|: e = WEIGHT_BITS − ⌈log2 max|w|⌉
    (math.frexp, exact), capped at MAX_WEIGHT_EXP, so that |w|·2^e ≤ 2^WEIGHT_BITS."""
    return [2.0 ** (min(MAX_WEIGHT_EXP, WEIGHT_BITS - math.frexp(p)[1]) if p > 0 else MAX_WEIGHT_EXP) for p in peak]


def quantize_weight(weight: np.ndarray, out_dim: int) -> np.ndarray:
    """Round each output channel of ``weight`` to its power-of-two grid (:func:`weight_scales`).

    Args:
        weight: a conv weight, e.g. (C_in, C_out, k, k) for a transposed convolution (out_dim=1).
        out_dim: the dimension of output channels.

    Returns:
        float64, same shape; a pure function of the values (powers of two scale exactly).
    """
    weight = np.asarray(weight, dtype=np.float64)
    peak = np.abs(weight).max(axis=tuple(d for d in range(weight.ndim) if d != out_dim))
    shape = [1] * weight.ndim
    shape[out_dim] = -1
    scale = np.reshape(weight_scales(peak.tolist()), shape)
    return np.round(weight * scale) / scale


def check_fan_in(c_in: int, kernel_size: int) -> None:
    """Raise ValueError if a convolution of h_s would sum more than MAX_FAN_IN terms per output."""
    if c_in * kernel_size**2 > MAX_FAN_IN:
        raise ValueError(f"h_s layer with fan-in {c_in * kernel_size**2} > {MAX_FAN_IN}: "
                         "its float64 sums would not be exact")


def fixed_point_layer(weight: np.ndarray, bias: np.ndarray, stride: int, relu: bool) -> FixedPointLayer:
    """The fixed-point form of one transposed convolution of h_s from its float weight (C_in, C_out, k, k)
    and bias (C_out,).

    Raises:
        ValueError: a fan-in above MAX_FAN_IN.
    """
    check_fan_in(weight.shape[0], weight.shape[-1])
    bias = round_grid(np.asarray(bias, np.float64), ACT_BITS) * 2.0**ACT_BITS  # in units (FixedPointLayer)
    return FixedPointLayer(conv_transpose(quantize_weight(weight, out_dim=1), bias, stride), relu)


def fixed_point_layers(specs: Sequence[ConvSpec], tensors: Mapping[str, np.ndarray]) -> list[FixedPointLayer]:
    """The fixed-point h_s of a model: one :func:`fixed_point_layer` per transposed convolution of
    architectures.ModelConfig.hyper_synthesis_layers, each with a ReLU but the last.

    Args:
        specs: the layers; tensors: their float weights and biases by name (``NAME.weight``, ``NAME.bias``).

    Raises:
        KeyError: a tensor is missing; ValueError: a fan-in above MAX_FAN_IN.
    """
    return [fixed_point_layer(tensors[f"{spec.name}.weight"], tensors[f"{spec.name}.bias"], spec.stride,
                              relu=i < len(specs) - 1) for i, spec in enumerate(specs)]


def hyper_synthesis_onnx(layers: Sequence[FixedPointLayer], graph, z_hat: str) -> tuple[str, str]:
    """Write the exact h_s into a float64 ONNX graph (onnx_graph.Graph): the ungained ẑ (1, M, h/4, w/4) →
    μ, log σ (1, M, h, w), float64 on the 2^-ACT_BITS grid, the function :func:`hyper_synthesis_exact` computes.

    The same layers in the same units (each transposed convolution in its sub-pixel MatMul form,
    layers.ConvTranspose.onnx): every sum is an integer multiple of a power of two below 2^53, exact
    in any summation order, so any runtime with float64 MatMul gives these μ and log σ to the bit.
    """
    limit = graph.constant(np.array(ACT_LIMIT * 2.0**ACT_BITS))
    low = graph.node("Neg", [limit])

    def round_units(x: str) -> str:  # Q_a in units: clamp, round half to even
        return graph.node("Round", [graph.node("Min", [graph.node("Max", [x, low]), limit])])

    x = round_units(graph.node("Mul", [z_hat, graph.constant(np.array(2.0**ACT_BITS))]))
    for layer in layers:
        x = round_units(layer.conv.onnx(graph, x))
        x = graph.node("Relu", [x]) if layer.relu else x
    x = graph.node("Mul", [x, graph.constant(np.array(2.0**-ACT_BITS))])
    m = layers[-1].conv.c_out // 2
    return graph.slice(x, (0,), (m,), axes=(1,)), graph.slice(x, (m,), (0,), axes=(1,))


def hyper_synthesis_exact(layers: Sequence[FixedPointLayer], z_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """μ and log σ (1, M, h, w), float64 on the 2^-ACT_BITS grid, from the ungained ẑ (1, M, h/4, w/4).

    Bit-exact on every CPU (module docstring). The first layer folds ẑ's constant channels (most
    of them: channels whose z symbols are all 0) into one (layers.ConvTranspose).
    """
    x = _hyper_synthesis_units(layers, z_hat)
    x *= 2.0**-ACT_BITS
    mu, log_sigma = np.split(x[None], 2, axis=1)
    return mu, log_sigma


def _hyper_synthesis_units(layers: Sequence[FixedPointLayer], z_hat: np.ndarray, finish=None) -> np.ndarray:
    """h_s(ẑ) in activation units: (2M, h, w) float64 integers k of the values k·2^-ACT_BITS (μ, then log σ).

    ẑ (1, M, h/4, w/4) is the ungained ẑ. Each layer works in units (:class:`FixedPointLayer`):
    the same integer sums as in values, scaled by 2^ACT_BITS, hence exact. Q_a (and ReLU) run on
    each output-phase group's products while they are in the cache (layers.ConvTranspose.uncropped.s
    ``pointwise``); so does ``finish``, if given, on the last layer's (..., 2M, P) units after Q_a
    (in place; it must act per channel, e.g. the gains).
    """
    x = _units(np.asarray(z_hat, dtype=np.float64)[0])
    for i, layer in enumerate(layers):
        after = partial(_activation, relu=layer.relu, finish=finish if i == len(layers) - 1 else None)
        x = layer.conv.crop(layer.conv.uncropped(x, fold_constant=i == 0, pointwise=after), *x.shape[1:])
    return x


def _activation(a: np.ndarray, relu: bool, finish) -> np.ndarray:
    """A layer's output (..., C, P) in units, in place: Q_a, then ReLU if ``relu``, then ``finish`` if given."""
    _round_units(a)
    if relu:
        np.maximum(a, 0, out=a)
    if finish is not None:
        finish(a)
    return a


def _units(x: np.ndarray) -> np.ndarray:
    """Q_a of float64 values, in units: round(clamp(x, ±ACT_LIMIT) · 2^ACT_BITS) (exact: a power-of-two scaling)."""
    return _round_units(x * 2.0**ACT_BITS)


def _round_units(x: np.ndarray) -> np.ndarray:
    """Q_a in units, in place: clamp to ±ACT_LIMIT·2^ACT_BITS and round half to even (the clamp only where a
    value is out of range, as it rarely is: two reductions are cheaper than np.clip)."""
    limit = ACT_LIMIT * 2.0**ACT_BITS
    if x.min() < -limit or x.max() > limit:
        np.clip(x, -limit, limit, out=x)
    return np.round(x, out=x)


def _decimal_exp(x: float, bits: int) -> float:
    """exp(x) correctly rounded by :mod:`decimal`, then rounded to a multiple of 2^-bits."""
    with localcontext() as ctx:
        ctx.prec = 40
        return float(round(Decimal(x).exp() * 2**bits)) / 2**bits


def exact_gains(log_gains: dict[str, np.ndarray], quality: float) -> ExactGains:
    """Gains of one quality, identical on every platform (module docstring).

    Args:
        log_gains: (7, M) log-gains "y", "y_inv", "z_inv" (variable_rate.GainUnits), any float dtype.
        quality: q in [0, 6], a multiple of 1/256 (quality.snap_quality).

    Returns:
        :class:`ExactGains`, float64 (1, M, 1, 1) each.
    """
    low = min(int(math.floor(quality)), len(log_gains["y"]) - 2)
    t = quality - low

    def log_gain(name: str) -> list[float]:
        table = np.asarray(log_gains[name], dtype=np.float64)
        a, b = table[low].tolist(), table[low + 1].tolist()
        return [round(((1 - t) * ai + t * bi) * 2**LOG_GAIN_BITS) / 2**LOG_GAIN_BITS for ai, bi in zip(a, b)]

    def column(values: list[float]) -> np.ndarray:
        return np.array(values, dtype=np.float64).reshape(1, -1, 1, 1)

    log_y = log_gain("y")
    return ExactGains(column(log_y), column([_decimal_exp(v, GAIN_BITS) for v in log_y]),
                      column([_decimal_exp(v, GAIN_BITS) for v in log_gain("y_inv")]),
                      column([_decimal_exp(v, GAIN_BITS) for v in log_gain("z_inv")]))


def log_scale_thresholds(scale_table: np.ndarray) -> np.ndarray:
    """ln(s_i) of the scale table but its last entry, float64, by :mod:`decimal` (platform-independent)."""
    with localcontext() as ctx:
        ctx.prec = 40
        return np.array([float(Decimal(s).ln()) for s in np.asarray(scale_table, np.float64)[:-1].tolist()])


def scale_indexes(log_sigma: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Scale index #{i : ln s_i < log σ}, CompressAI's rule in the log domain (uint8 up to 256 scales).

    σ below s_0 (the scale bound, 0.11) gets index 0; above the last threshold, the last index.
    The result is ``np.searchsorted(thresholds, log_sigma, side="left")``, computed in a few
    vectorized passes when the thresholds are near-uniform (CompressAI's table is uniform in
    log σ): with step δ and every threshold within δ/4 of t_0 + i·δ, the bucket
    b = ⌊(log σ − t_0)/δ + ½⌋ ∈ [0, n] contains at most the one threshold t_b, so the index is
    b + [t_b < log σ] (t_n = +∞) — exact, whatever the float rounding of b near a bucket edge.
    """
    n = len(thresholds)
    dtype = np.min_scalar_type(n)
    step = (thresholds[-1] - thresholds[0]) / max(n - 1, 1)
    uniform = thresholds[0] + step * np.arange(n)
    if n < 2 or n > 255 or not np.abs(thresholds - uniform).max() < step / 4:
        return np.searchsorted(thresholds, log_sigma, side="left").astype(dtype)
    bucket = log_sigma * (1 / step)
    bucket += 0.5 - thresholds[0] / step
    np.floor(bucket, out=bucket)
    np.maximum(bucket, 0, out=bucket)  # two passes: faster than np.clip
    np.minimum(bucket, n, out=bucket)
    index = bucket.astype(np.uint8)
    edge = np.take(np.append(thresholds, np.inf), index, out=bucket, mode="clip")  # t_b, in the bucket's memory
    index += edge < log_sigma
    return index


def entropy_parameters(layers: Sequence[FixedPointLayer], z_hat: np.ndarray, gains: ExactGains | None,
                       thresholds: np.ndarray, log_sigma: bool = False) -> EntropyParameters:
    """Exact μ_g and scale indexes of y_g from the coded ẑ_g (1, M, h/4, w/4), identical on every CPU.

    h_s(γ⁻¹_z·ẑ_g) in fixed point over tiles of ẑ (tiling.py): exact arithmetic, so the result
    does not depend on the tiling, and memory beyond the result (μ float64, indexes uint8) is that
    of one tile.

    Args:
        layers: the fixed-point h_s (:func:`fixed_point_layer` of each transposed convolution).
        z_hat: the coded ẑ_g, float32 (symbols + the prior's medians) or float64.
        gains: :func:`exact_gains` of the quality, or None for a fixed-λ model.
        thresholds: :func:`log_scale_thresholds` of the scale table.
        log_sigma: also return log σ_g (rate estimates); else its field is None.
    """
    scaled_thresholds = thresholds * 2.0**ACT_BITS  # compared with log σ_g in units: the same order

    def finish(a: np.ndarray) -> None:  # (..., 2M, P) units → μ_g (values) and log σ_g (units)
        m = a.shape[-2] // 2
        a[..., :m, :] *= 2.0**-ACT_BITS if gains is None else gains.y[0, :, 0] * 2.0**-ACT_BITS
        if gains is not None:
            a[..., m:, :] += gains.log_y[0, :, 0] * 2.0**ACT_BITS

    def tile(z: np.ndarray) -> tuple[np.ndarray, ...]:
        z = np.asarray(z, dtype=np.float64)
        x = _hyper_synthesis_units(layers, z if gains is None else z * gains.z_inv, finish)[None]
        mu, log_s = np.split(x, 2, axis=1)
        out = (mu, scale_indexes(log_s, scaled_thresholds))
        return out + ((log_s * 2.0**-ACT_BITS,) if log_sigma else ())

    out = tiled(tile, z_hat, Fraction(4), HYPER_SYNTHESIS_TILE, HYPER_SYNTHESIS_MARGIN)
    return EntropyParameters(out[0], out[1], out[2] if log_sigma else None)
