"""The numpy layers (layers/): every transposed-convolution algorithm and IGDN against PyTorch, the factory's
choice, exact folding in fixed point, and each layer's ONNX form against its numpy result."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from compressai.layers import GDN, GDN1

from shallowcodec.layers import (
    BlockScatterConvTranspose,
    InverseGDN,
    PhaseConvTranspose,
    ScatterConvTranspose,
    conv_transpose,
)
from shallowcodec.onnx_graph import Graph
from shallowcodec.transforms import conv_transpose_exact

SHAPES = [(8, 24, 13, 8, 3, 5), (24, 3, 5, 2, 7, 4), (16, 3, 18, 16, 2, 3), (16, 16, 5, 2, 4, 6), (8, 32, 3, 1, 5, 5),
          (8, 16, 4, 4, 2, 3), (8, 32, 6, 4, 3, 2), (4, 8, 16, 8, 2, 2)]
#: Every algorithm, by a name: (C_in, C_out, k, s) weight, bias, stride, channels_last → layer.
ALGORITHMS = {
    "phases": lambda w, b, s, last: PhaseConvTranspose(w, b, s, last),
    "merged phases": lambda w, b, s, last: PhaseConvTranspose(w, b, s, last, merged=True),
    "banded phases": lambda w, b, s, last: PhaseConvTranspose(w, b, s, last, band=1),  # a row a band
    "scatter": lambda w, b, s, last: ScatterConvTranspose(w, b, s, last),
    "banded scatter": lambda w, b, s, last: ScatterConvTranspose(w, b, s, last, band=1),
    "block scatter": lambda w, b, s, last: BlockScatterConvTranspose(w, b, s),
    "chosen": conv_transpose,
}


def torch_layer(c_in: int, c_out: int, k: int, s: int, seed: int = 0) -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    torch.manual_seed(seed)
    layer = conv_transpose_exact(c_in, c_out, k, s)
    return layer, layer.weight.detach().numpy(), layer.bias.detach().numpy()


@pytest.mark.parametrize("c_in, c_out, k, s, h, w", SHAPES)
@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_transposed_convolution_matches_pytorch(c_in, c_out, k, s, h, w, algorithm):
    layer, weight, bias = torch_layer(c_in, c_out, k, s)
    x = torch.randn(1, c_in, h, w)
    with torch.no_grad():
        expected = layer(x)[0].numpy()
    make = ALGORITHMS[algorithm]
    for dtype in (np.float32, np.float64):
        for last in (False, True):
            ours = make(weight.astype(dtype), bias, s, last)
            out = ours(x[0].numpy().astype(dtype))
            shape = (s * h, s * w, c_out) if ours.channels_last else (c_out, s * h, s * w)
            assert out.dtype == dtype and out.shape == shape
            np.testing.assert_allclose(out, expected.transpose(1, 2, 0) if ours.channels_last else expected,
                                       rtol=1e-5, atol=1e-5)
            full = ours.uncropped(x[0].numpy().astype(dtype))
            np.testing.assert_allclose(ours.crop(full, h, w), expected, rtol=1e-5, atol=1e-5)


def test_the_factory_picks_the_measured_fastest_algorithm():
    def chosen(c_in, c_out, k, s, last=False):
        return conv_transpose(np.zeros((c_in, c_out, k, k), np.float32), np.zeros(c_out), s, last)

    jpeg_like = chosen(192, 3, 18, 16, last=True)  # patches (3·18²) < 2 × shifted inputs (192·2²), 48 values a block row
    assert type(jpeg_like) is BlockScatterConvTranspose and jpeg_like.channels_last
    assert type(chosen(192, 3, 18, 16)) is ScatterConvTranspose
    assert type(chosen(64, 3, 5, 2, last=True)) is ScatterConvTranspose  # mbt2018-mean's output: 6 values a block row
    up = chosen(192, 24, 13, 8)  # the two-layer's k13 pair: phase groups of ≥ 128 output rows
    assert type(up) is PhaseConvTranspose and len(up.groups) == 4
    out = chosen(12, 3, 5, 2, last=True)  # few input channels: phases, merged (3-row groups)
    assert type(out) is PhaseConvTranspose and len(out.groups) == 1
    with pytest.raises(ValueError, match="kernel 3 < stride 4"):
        chosen(4, 4, 3, 4)


@pytest.mark.parametrize("algorithm", ["phases", "banded phases", "scatter"])
def test_folding_constant_channels_is_exact_in_fixed_point(algorithm):
    """The exact h_s folds ẑ's constant channels into one all-ones channel: the same integer sums."""
    rng = np.random.default_rng(3)
    weight = rng.integers(-2**14, 2**14, (12, 16, 6, 6)) * 2.0**-20
    x = rng.integers(-2**12, 2**12, (12, 5, 7)) * 2.0**-10
    x[[0, 3, 4, 9]] = rng.integers(-2**12, 2**12, (4, 1, 1)) * 2.0**-10  # constant channels
    x[5] = 0
    conv = ALGORITHMS[algorithm](weight, rng.integers(-99, 99, 16) * 2.0**-10, 4, False)
    folded, plain = conv.uncropped(x, fold_constant=True), conv.uncropped(x)
    assert np.array_equal(folded, plain) and np.abs(plain).max() > 0.1
    zeros = np.zeros_like(x)  # every channel constant
    assert np.array_equal(conv.uncropped(zeros, fold_constant=True), conv.uncropped(zeros))


@pytest.mark.parametrize("module, l1", [(GDN, False), (GDN1, True)])
def test_numpy_inverse_gdn_matches_compressai(module, l1):
    torch.manual_seed(1)
    gdn = module(6, inverse=True)
    with torch.no_grad():
        gdn.beta.uniform_(0.5, 1.5)
        gdn.gamma.uniform_(0, 0.3)
        x = torch.randn(1, 6, 5, 7)
        expected = gdn(x)[0].numpy()
    ours = InverseGDN(gdn.beta.detach().numpy(), gdn.gamma.detach().numpy(), l1)
    np.testing.assert_allclose(ours(x[0].numpy()), expected, rtol=1e-5, atol=1e-6)


def run_onnx(graph: Graph, out: str, x: np.ndarray) -> np.ndarray:
    model = graph.model({"x": (1, x.shape[1], "h", "w")}, {"y": (out, (1, "c", "H", "W"))}, "test", {})
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("c_in, c_out, k, s, h, w", SHAPES)
def test_the_onnx_form_of_a_transposed_convolution_equals_its_numpy_result(c_in, c_out, k, s, h, w):
    _, weight, bias = torch_layer(c_in, c_out, k, s)
    x = np.random.default_rng(0).standard_normal((1, c_in, h, w)).astype(np.float32)
    layer = conv_transpose(weight, bias, s)
    graph = Graph(np.float32)
    np.testing.assert_allclose(run_onnx(graph, layer.onnx(graph, "x"), x)[0], layer(x[0]), rtol=1e-5, atol=1e-5)
    # float64 on fixed-point grids: exact, whatever the summation order
    rng = np.random.default_rng(1)
    fixed = conv_transpose(rng.integers(-2**14, 2**14, weight.shape) * 2.0**-14, rng.integers(-99, 99, c_out) * 1.0, s)
    units = rng.integers(-2**12, 2**12, x.shape).astype(np.float64)
    graph = Graph(np.float64)
    assert np.array_equal(run_onnx(graph, fixed.onnx(graph, "x"), units)[0], fixed(units[0]))


@pytest.mark.parametrize("l1", [False, True])
def test_the_onnx_form_of_an_inverse_gdn_equals_its_numpy_result(l1):
    rng = np.random.default_rng(2)
    igdn = InverseGDN(rng.uniform(0.5, 1.5, 6).astype(np.float32), rng.uniform(0, 0.3, (6, 6)).astype(np.float32), l1)
    x = rng.standard_normal((1, 6, 5, 7)).astype(np.float32)
    graph = Graph(np.float32)
    np.testing.assert_allclose(run_onnx(graph, igdn.onnx(graph, "x"), x)[0], igdn(x[0]), rtol=1e-5, atol=1e-6)


def test_a_float64_graph_refuses_constants_that_float32_does_not_hold():
    with pytest.raises(ValueError, match="not exact in float32"):
        Graph(np.float64).constant(np.array([0.1]))
