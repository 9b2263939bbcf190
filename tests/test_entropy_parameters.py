"""The exact entropy parameters' fast paths against their plain definitions."""

from __future__ import annotations

import numpy as np
import pytest

from shallowcodec.entropy_parameters import (
    ACT_BITS,
    fixed_point_layer,
    hyper_synthesis_exact,
    log_scale_thresholds,
    quantize_activation,
    scale_indexes,
)
from shallowcodec.zoo import build


def test_scale_indexes_equal_searchsorted_around_every_threshold():
    model = build("jpeg-like", N=8, M=8)
    model.update(force=True)
    thresholds = log_scale_thresholds(model.gaussian_conditional.scale_table.numpy())
    near = np.concatenate([np.nextafter(thresholds, -np.inf), thresholds, np.nextafter(thresholds, np.inf)])
    grid = np.round(thresholds * 2**16)[:, None] + np.arange(-3, 4)  # log σ_g lies on the 2^-16 grid
    rng = np.random.default_rng(0)
    values = np.concatenate([near, grid.ravel() / 2**16, rng.uniform(-5, 8, 100_000), [-4200.0, 0.0, 4200.0],
                             (thresholds[:-1] + thresholds[1:]) / 2])
    expected = np.searchsorted(thresholds, values, side="left")
    got = scale_indexes(values, thresholds)
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
    assert got.min() == 0 and got.max() == len(thresholds)


def test_scale_indexes_of_uneven_thresholds_fall_back_to_searchsorted():
    thresholds = np.log(np.array([0.11, 0.2, 0.3, 5.0, 6.0]))
    values = np.linspace(-4, 3, 10_001)
    assert np.array_equal(scale_indexes(values, thresholds), np.searchsorted(thresholds, values, side="left"))


@pytest.mark.parametrize("strides, kernels", [((4,), (6,)), ((2, 2, 1), (5, 5, 3))])
def test_hyper_synthesis_exact_equals_the_plain_fixed_point_layers(strides, kernels):
    """Folding ẑ's constant channels and rounding in place give the plain layers' values bit for bit."""
    rng = np.random.default_rng(1)
    widths = [16, 24, 24, 32] if len(strides) == 3 else [16, 32]
    layers = [fixed_point_layer(rng.normal(0, 0.05, (a, b, k, k)), rng.normal(0, 0.1, b), s, relu=i < len(strides) - 1)
              for i, (a, b, k, s) in enumerate(zip(widths, widths[1:], kernels, strides))]
    z = rng.integers(-3, 4, (1, 16, 5, 6)).astype(np.float64)
    z[0, ::2] = rng.normal(0, 2, (8, 1, 1))  # half the channels constant (no symbol but 0)
    x = quantize_activation(z[0])
    for layer in layers:  # the definition: each layer (bias in activation units), then Q_a (and ReLU)
        x = quantize_activation(layer.conv(x * 2**ACT_BITS) * 2.0**-ACT_BITS)
        x = np.maximum(x, 0) if layer.relu else x
    mu, log_sigma = hyper_synthesis_exact(layers, z)
    assert np.array_equal(np.concatenate([mu, log_sigma], axis=1)[0], x)
    assert np.array_equal(x, np.round(x * 2**ACT_BITS) / 2**ACT_BITS) and np.abs(x).max() > 0
