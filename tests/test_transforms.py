"""Shapes and sizes of the transforms (shallowcodec.transforms)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from shallowcodec.entropy_parameters import hyper_synthesis_exact
from shallowcodec.transforms import (
    CNNAnalysis,
    ELICAnalysis,
    HyperAnalysis,
    HyperSynthesis,
    JPEGLikeSynthesis,
    MBT2018Synthesis,
    TwoLayerSynthesis,
    conv_transpose_exact,
)

M = 16
LATENT_SIZES = [(1, 1), (3, 5), (7, 2), (4, 4)]
PAPER_PARAMS = Path(__file__).resolve().parents[1].parent / "shared/anchors/paper-results/all_params.csv"


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


SYNTHESES = {
    "jpeg-like-k16": lambda: JPEGLikeSynthesis(M, 16),
    "jpeg-like-k18": lambda: JPEGLikeSynthesis(M, 18),
    "jpeg-like-k26": lambda: JPEGLikeSynthesis(M, 26),
    "jpeg-like-k32": lambda: JPEGLikeSynthesis(M, 32),
    "two-layer": lambda: TwoLayerSynthesis(M, hidden=4),
    "two-layer-nores": lambda: TwoLayerSynthesis(M, hidden=4, residual=False),
    "mbt2018": lambda: MBT2018Synthesis(8, M),
}


@pytest.mark.parametrize("name", SYNTHESES)
def test_synthesis_output_is_exactly_16x(name):
    torch.manual_seed(0)
    g_s = SYNTHESES[name]().eval()
    for h, w in LATENT_SIZES:
        for batch in (1, 2):
            with torch.no_grad():
                out = g_s(torch.randn(batch, M, h, w))
            assert out.shape == (batch, 3, 16 * h, 16 * w), (name, h, w)


@pytest.mark.parametrize("kernel, stride", [(16, 16), (17, 16), (18, 16), (26, 16), (32, 16), (13, 8), (5, 2), (2, 2)])
def test_conv_transpose_exact_is_stride_times_input(kernel, stride):
    layer = conv_transpose_exact(2, 3, kernel, stride)
    assert layer.kernel_size == (kernel, kernel) and layer.stride == (stride, stride)
    for h, w in [(1, 1), (3, 5), (7, 2)]:
        assert layer(torch.zeros(1, 2, h, w)).shape == (1, 3, stride * h, stride * w)


@pytest.mark.parametrize("kernel, stride", [(15, 16), (1, 16), (7, 8), (1, 2)])
def test_conv_transpose_exact_rejects_kernel_below_stride(kernel, stride):
    with pytest.raises(ValueError, match="stride"):
        conv_transpose_exact(4, 3, kernel, stride)


def test_jpeg_like_k16_is_a_block_transform():
    """k = 16 at stride 16: every 16×16 output block depends on its own latent pixel only."""
    torch.manual_seed(0)
    g_s = JPEGLikeSynthesis(M, 16)
    y = torch.zeros(1, M, 3, 3)
    y[0, :, 1, 1] = torch.randn(M)
    with torch.no_grad():
        out = g_s(y) - g_s.deconv.bias.view(1, 3, 1, 1)
    nonzero = out.abs().sum(dim=(0, 1)) > 0
    assert nonzero[16:32, 16:32].all()
    nonzero[16:32, 16:32] = False
    assert not nonzero.any()


@pytest.mark.parametrize("analysis", [ELICAnalysis, CNNAnalysis])
@pytest.mark.parametrize("a, b", [(1, 1), (1, 2), (2, 1)])
def test_analysis_downsamples_16x(analysis, a, b):
    torch.manual_seed(0)
    g_a = analysis(8, M).eval()
    with torch.no_grad():
        y = g_a(torch.rand(2, 3, 64 * a, 64 * b))
    assert y.shape == (2, M, 4 * a, 4 * b)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("h, w", [(4, 4), (8, 4), (4, 12)])
def test_hyper_transforms_shapes_and_fixed_point_log_sigma(h, w):
    torch.manual_seed(0)
    h_a, h_s = HyperAnalysis(M).eval(), HyperSynthesis(M).eval()
    with torch.no_grad():
        z = h_a(torch.randn(2, M, h, w))
        assert z.shape == (2, M, h // 4, w // 4)
        z_hat = 10 * torch.randn(2, M, h // 4, w // 4)  # large inputs: σ spans many octaves
        mu, log_sigma = h_s(z_hat)
    exact = [hyper_synthesis_exact(h_s.exact_layers(), z_hat[i : i + 1].numpy()) for i in range(2)]
    log_sigma_exact = torch.from_numpy(np.concatenate([e[1] for e in exact]))
    assert mu.shape == log_sigma.shape == (2, M, h, w)
    assert torch.isfinite(log_sigma).all()
    assert log_sigma_exact.dtype == torch.float64 and (log_sigma_exact * 1024).eq((log_sigma_exact * 1024).round()).all()
    # the float32 training path computes the same fixed-point function (up to float32 sums)
    assert (log_sigma.double() - log_sigma_exact).abs().max() <= 2 / 1024


def test_hyper_synthesis_widths():
    h_s = HyperSynthesis(M)
    convs = [m for m in h_s.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(M, M), (M, 3 * M // 2), (3 * M // 2, 2 * M)]


def _paper_param_count(row: str) -> int:
    with open(PAPER_PARAMS, newline="") as f:
        for r in csv.DictReader(f):
            if r[""].startswith(row):
                return int(float(r["g"]))
    raise KeyError(row)


def test_paper_size_two_layer_synthesis_parameter_count():
    g_s = TwoLayerSynthesis(320, hidden=12)
    assert n_params(g_s) == 1_299_003


def test_paper_size_two_layer_synthesis_matches_the_released_table():
    if not PAPER_PARAMS.exists():
        pytest.skip(f"{PAPER_PARAMS} not found")
    assert n_params(TwoLayerSynthesis(320, hidden=12)) == _paper_param_count("2-layer syn.")


def test_paper_size_jpeg_like_synthesis_parameter_count():
    g_s = JPEGLikeSynthesis(320, kernel_size=18)
    assert n_params(g_s) == 311_043 == 320 * 3 * 18 * 18 + 3


def test_paper_size_jpeg_like_synthesis_matches_the_released_table():
    if not PAPER_PARAMS.exists():
        pytest.skip(f"{PAPER_PARAMS} not found")
    assert n_params(JPEGLikeSynthesis(320, kernel_size=18)) == _paper_param_count("JPEG-like syn.")


def test_two_layer_without_residual_has_double_width_and_no_residual_branch():
    g_s = TwoLayerSynthesis(M, hidden=4, residual=False)
    assert not hasattr(g_s, "up_res") and [n for n, _ in g_s.named_children()] == ["up", "igdn", "out"]
    assert g_s.up.out_channels == 8 and g_s.out.in_channels == 8
    assert TwoLayerSynthesis(M, hidden=4).up.out_channels == 4
