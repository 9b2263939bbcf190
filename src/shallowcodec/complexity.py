"""Computational complexity: FLOPs per pixel of g_a, h_a, g_s and h_s, counted from the modules.

Yang & Mandt, ICCV 2023, Table 1 / ``flops_per_pixel.csv`` of the paper's released results count
FLOPs with TensorFlow's profiler: a multiply and an add are two FLOPs. This module counts the
actual PyTorch modules with ``torch.utils.flop_counter.FlopCounterMode`` (a dispatch mode: every
aten op that runs is seen, whatever module issued it) and the paper's convention:

- convolutions and transposed convolutions: 2 · MAC (the counter's formula; a transposed
  convolution is counted over its whole input, including the part its padding crops away);
- bias of a convolution: one add per output element (the counter ignores biases; added here);
- elementwise add, subtract, multiply and divide of activations (4-D tensors): one FLOP per
  output element. This covers residual additions, the attention block's ``a · sigmoid(b)``, and
  in GDN / IGDN / GDN1 / IGDN1 the final multiply (their 1×1 convolution and β, its bias, are
  counted as a convolution);
- not counted: ReLU, sigmoid, exp, |x|, x², √x (GDN's pointwise nonlinearities), as in the paper;
  and operations on parameters (GDN's β and γ reparametrization), which run once per call and
  not per pixel. With these rules the paper's numbers are reproduced exactly (to the fraction the
  paper's profiler adds for the reparametrization).

FLOPs/pixel = FLOPs / (H · W) of the *image* for all four components; h_a and h_s run on the
latent grid (1/16 and 1/64 of the image) but are normalised by image pixels. The count is
independent of the image size for H and W multiples of 64.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from math import prod

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from shallowcodec.architectures import ModelConfig
from shallowcodec.model_files import DEFAULT_ARCHITECTURE, ModelNotFoundError, embedded_models, model_card
from shallowcodec.zoo import build

aten = torch.ops.aten

#: The four components, in coding order.
COMPONENTS = ("g_a", "h_a", "g_s", "h_s")

#: Paper FLOPs/pixel at N=192, M=320 (released ``flops_per_pixel.csv``; f = g_a, f_h = h_a, g = g_s, g_h = h_s).
PAPER_FLOPS = {
    "jpeg-like": {"g_a": 510845.5, "h_a": 13451.640625, "g_s": 2433.0, "h_s": 30354.6875},
    "two-layer": {"g_a": 510845.5, "h_a": 13451.640625, "g_s": 10680.001190185547, "h_s": 30354.6875},
    "mbt2018-mean": {"g_a": 187583.09814453125, "h_a": 13451.640625, "g_s": 187584.84814453125, "h_s": 30354.6875},
}


def _conv_with_bias(x_shape, w_shape, bias, _stride, _padding, _dilation, transposed, *args, out_shape=None,
                    **kwargs) -> int:
    """2 · MAC of a (transposed) convolution plus one add per output element for its bias."""
    return conv_flop_count(x_shape, w_shape, out_shape, transposed=transposed) + (prod(out_shape) if bias is not None else 0)


def _elementwise(*args, out_shape=None, **kwargs) -> int:
    """One FLOP per output element of a binary op on activations (4-D); ops on parameters are free."""
    return prod(out_shape) if len(out_shape) == 4 else 0


_ELEMENTWISE = (aten.add, aten.add_, aten.sub, aten.sub_, aten.mul, aten.mul_, aten.div, aten.div_)
#: Formulas that replace or extend FlopCounterMode's registry (see the module docstring).
PAPER_CONVENTION = {aten.convolution: _conv_with_bias, **{op: _elementwise for op in _ELEMENTWISE}}


def count_flops(module: Callable[..., object], *inputs: torch.Tensor) -> int:
    """FLOPs of one call of ``module`` (an ``nn.Module`` or any function) on ``inputs``, paper convention.

    Inputs may be on the ``meta`` device (shapes only, nothing computed) when the module is too.
    """
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=PAPER_CONVENTION) as counter:
        module(*inputs)
    return counter.get_total_flops()


def flops_per_pixel(model: nn.Module, height: int = 256, width: int = 256) -> dict[str, float]:
    """FLOPs per image pixel of g_a, h_a, g_s and h_s of a :class:`~shallowcodec.hyperprior.ShallowHyperprior`.

    A copy of the model is moved to the ``meta`` device, so nothing is computed and the weights'
    values are irrelevant; x is (1, 3, height, width), y = g_a(x) (1, M, height/16, width/16) and
    z = h_a(y) (1, M, height/64, width/64). Each count is divided by height · width.

    Raises:
        ValueError: if height or width is not a positive multiple of 64.
    """
    if height <= 0 or width <= 0 or height % 64 or width % 64:
        raise ValueError(f"image size {height}x{width} must be a positive multiple of 64")
    model = copy.deepcopy(model).to("meta")
    x = torch.empty(1, 3, height, width, device="meta")
    with torch.no_grad():
        y = model.g_a(x)
        z = model.h_a(y)
    inputs = {"g_a": x, "h_a": y, "g_s": y, "h_s": z}
    # h_s: its layers; the fixed-point rescaling (by powers of two, entropy_parameters.py) is a shift, not a FLOP
    modules = {"g_a": model.g_a, "h_a": model.h_a, "g_s": model.g_s, "h_s": model.h_s.layers}
    return {name: count_flops(modules[name], inputs[name]) / (height * width) for name in COMPONENTS}


def flops_config(architecture: str, paper_size: bool = False, overrides: dict | None = None) -> dict:
    """All builder arguments of ``architecture`` (N, M, ...) at the paper's or the embedded widths.

    ``paper_size``: the builder's defaults (N=192, M=320; N=256 for ``two-layer-nores``).
    Otherwise the config of the architecture's embedded weights; an architecture without embedded
    weights gets the N and M of the default architecture's embedded
    weights, so that it is measured at equal widths. Unset arguments keep the builder's defaults.
    ``overrides`` replace arguments last, e.g. ``{"hyper_synthesis": "cheap", "hyper_kernel": 4}``.

    Raises:
        ModelNotFoundError: unknown architecture, or no embedded weights to take widths from.
        ValueError: ``overrides`` is not a dict of the builder's argument names.
    """
    config = _base_config(architecture, paper_size)
    if overrides is None:
        return config
    if not isinstance(overrides, dict) or set(overrides) - set(config):
        raise ValueError(f"{architecture} takes the builder arguments {', '.join(config)}, not {overrides!r}")
    return {**config, **overrides}


def _base_config(architecture: str, paper_size: bool) -> dict:
    """:func:`flops_config` without overrides."""
    try:
        defaults = ModelConfig.parse(architecture).to_dict()
    except KeyError as e:
        raise ModelNotFoundError(e.args[0]) from None
    if paper_size:
        return defaults
    available = embedded_models()
    if architecture in available:
        return {**defaults, **model_card(available[architecture])["config"]}
    if DEFAULT_ARCHITECTURE not in available:
        raise ModelNotFoundError(f"no embedded weights to take widths from for {architecture!r}; use --paper-size")
    config = model_card(available[DEFAULT_ARCHITECTURE])["config"]
    return {**defaults, **{k: config[k] for k in ("N", "M") if k in config}}


def flops_report(architectures: list[str], paper_size: bool = False, overrides: dict | None = None) -> dict:
    """FLOPs per image pixel of each architecture's components (:func:`flops_per_pixel` of a model built at
    :func:`flops_config`), with the paper's counts (:data:`PAPER_FLOPS`) at the paper's widths.

    Returns:
        ``{"unit", "paper_size", "models": [{"model", "config", "g_a", "h_a", "g_s", "h_s", "paper"}]}``.

    Raises:
        ModelNotFoundError, ValueError: as :func:`flops_config`.
    """
    rows = []
    for name in architectures:
        config = flops_config(name, paper_size, overrides)
        rows.append({"model": name, "config": config, **flops_per_pixel(build(name, **config)),
                     "paper": PAPER_FLOPS.get(name) if paper_size else None})
    return {"unit": "FLOPs per image pixel", "paper_size": paper_size, "models": rows}


def format_flops(report: dict) -> str:
    """:func:`flops_report` as a table: one row per model (and one of the paper's counts under it), a column
    per component and g_s + h_s (the decoder)."""
    lines = [f"FLOPs per image pixel ({'paper size' if report['paper_size'] else 'embedded widths'}; "
             "multiply-add = 2 FLOPs)",
             f"{'model':16s}{'N':>5s}{'M':>5s}" + "".join(f"{c:>12s}" for c in COMPONENTS) + f"{'g_s+h_s':>12s}"]
    for row in report["models"]:
        lines.append(f"{row['model']:16s}{row['config']['N']:5d}{row['config']['M']:5d}"
                     + "".join(f"{row[c]:12,.0f}" for c in COMPONENTS) + f"{row['g_s'] + row['h_s']:12,.0f}")
        if row["paper"]:
            lines.append(f"{'  paper':26s}" + "".join(f"{row['paper'][c]:12,.0f}" for c in COMPONENTS)
                         + f"{row['paper']['g_s'] + row['paper']['h_s']:12,.0f}")
    return "\n".join(lines)
