"""ONNX export of the decoders (``shallowcodec export --onnx DIR``): g_s and the exact h_s as graphs, the rest as tables.

For each embedded model NAME (model_files.embedded_models)::

    DIR/NAME.g_s.onnx     y_hat (1, M, h, w) float32, ungained ŷ  →  x_hat (1, 3, 16h, 16w) float32, unclamped
    DIR/NAME.h_s.onnx     z_hat (1, M, h/4, w/4) float64, ungained ẑ  →  mu, log_sigma (1, M, h, w) float64
    DIR/NAME.tables.npz   what a decoder needs besides the graphs (:func:`decoder_tables`)
    DIR/README.md         the data flow, file → pixels (:data:`README`)

h and w (multiples of 4) are dynamic. Both graphs hold batch 1, opset :data:`OPSET`, and name
their model, its weights_id and the package version in their metadata.

* **g_s** is the torch module of the architecture (transforms.py) traced by ``torch.onnx.export``
  with the TorchScript exporter (``dynamo=False``: it needs only the ``onnx`` package; the dynamo
  exporter needs onnxscript). Float32, like the package's g_s: decoded pixels may differ by one
  level between runtimes, as between the package's numpy and torch decoders.
* **h_s** is the fixed-point network of entropy_parameters.py (weights on per-channel power-of-two
  grids, activations on the 2^-10 grid, float64 sums that are exact), so that the μ and scale
  indexes — on which the ANS decoder depends bit for bit — are those of every other decoder.
  ONNX Runtime has no float64 ConvTranspose (1.32: NOT_IMPLEMENTED), so each transposed
  convolution is written in its sub-pixel form (as layers.ConvTranspose2d's *phases*): one
  float64 MatMul over the ⌈k/s⌉² shifted copies of its input, the s² output phases interleaved
  by Reshape and Transpose. Every sum is then an integer multiple of 2^-(10+e) below 2^53, the
  same in any summation order: in ONNX Runtime μ and log σ equal
  entropy_parameters.hyper_synthesis_exact bit for bit (tests/test_export.py). The weights are
  stored float32 (their ≤ 15 significant bits are exact in float32; half the size of float64)
  and cast in the graph. A float32 h_s would not be exact — its sums round, differently per
  runtime and kernel — and one changed scale index derails the ANS decoder; where a runtime has
  no float64 MatMul, the package's numpy decoder (decoder.py) is the exact one.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import Tensor, nn

from shallowcodec import __version__
from shallowcodec.atomic import atomic_write
from shallowcodec.decoder import Decoder
from shallowcodec.entropy_parameters import ACT_BITS, quantize_activation, quantize_weight, round_grid
from shallowcodec.model_files import embedded_path
from shallowcodec.quality import MAX_QUALITY
from shallowcodec.zoo import load_embedded

#: ONNX opset of the graphs (tested with ONNX Runtime 1.32).
OPSET = 17
#: File names of one model's export, by what they hold.
SUFFIXES = {"g_s": ".g_s.onnx", "h_s": ".h_s.onnx", "tables": ".tables.npz"}


class ExportError(ValueError):
    """An export that cannot be written (output is a file, exists, or the onnx package is missing); one line."""


class ExactTransposedConv(nn.Module):
    """One fixed-point transposed convolution of h_s, then Q_a (and ReLU), in float64 MatMul form.

    The function of entropy_parameters.FixedPointLayer: weight (C_in, C_out, k, k) on its
    per-output-channel grid (entropy_parameters.quantize_weight), bias on the 2^-ACT_BITS grid,
    output exactly s times the input (transforms.conv_transpose_exact's cropping).

    Args:
        conv: the trained layer (its float weights are rounded here).
        relu: apply a ReLU after Q_a (all layers but the last).

    Raises:
        ValueError: a quantized weight that float32 does not hold exactly.
    """

    def __init__(self, conv: nn.ConvTranspose2d, relu: bool):
        super().__init__()
        weight = quantize_weight(conv.weight.detach().double().numpy(), out_dim=1)
        if not np.array_equal(weight.astype(np.float32), weight):
            raise ValueError("a fixed-point h_s weight is not exact in float32")
        self.register_buffer("weight", torch.from_numpy(weight.astype(np.float32)))
        bias = round_grid(conv.bias.detach().double().numpy(), ACT_BITS)
        self.register_buffer("bias", torch.from_numpy(bias).reshape(1, -1, 1, 1))
        self.c_in, self.c_out, self.k = weight.shape[0], weight.shape[1], weight.shape[-1]
        self.stride, self.relu = conv.stride[0], relu
        self.taps = -(-self.k // self.stride)  # n: input latents per output phase and axis
        self.crop = (self.k - self.stride + 1) // 2  # rows/columns cropped at the top/left ...
        self.tail = (self.taps - 1) * self.stride - self.crop  # ... and at the bottom/right

    def matrix(self) -> Tensor:
        """(s·s·C_out, n·n·C_in) float64: rows (r, t, c_out) by output phase (r, t), columns (a, b, c_in) by input shift."""
        n, s, pad = self.taps, self.stride, self.taps * self.stride - self.k
        w = F.pad(self.weight.double(), (0, pad, 0, pad)).reshape(self.c_in, self.c_out, n, s, n, s)
        return w.permute(3, 5, 1, 2, 4, 0).reshape(s * s * self.c_out, n * n * self.c_in)

    def forward(self, x: Tensor) -> Tensor:
        """x (1, C_in, H, W) float64 on the activation grid → (1, C_out, s·H, s·W) float64 on the grid."""
        n, s = self.taps, self.stride
        padded = F.pad(x, (n - 1,) * 4)
        rows, cols = padded.shape[2] - (n - 1), padded.shape[3] - (n - 1)
        shifted = torch.cat([padded[:, :, n - 1 - a : n - 1 - a + rows, n - 1 - b : n - 1 - b + cols]
                             for a in range(n) for b in range(n)], dim=1)
        phases = torch.matmul(self.matrix(), shifted.flatten(2)).reshape(1, s, s, self.c_out, rows, cols)
        out = phases.permute(0, 3, 4, 1, 5, 2).reshape(1, self.c_out, rows * s, cols * s)
        out = out[:, :, self.crop : rows * s - self.tail, self.crop : cols * s - self.tail] + self.bias
        out = quantize_activation(out)
        return torch.relu(out) if self.relu else out


class ExactHyperSynthesis(nn.Module):
    """The exact h_s (entropy_parameters.hyper_synthesis_exact) of a trained transforms.HyperSynthesis, exportable.

    Shapes: ungained ẑ (1, M, h/4, w/4) float64 → μ, log σ (1, M, h, w) float64 on the 2^-ACT_BITS grid.
    """

    def __init__(self, h_s: nn.Module):
        super().__init__()
        convs = h_s.convolutions()
        self.layers = nn.ModuleList(ExactTransposedConv(c, relu=i < len(convs) - 1) for i, c in enumerate(convs))

    def forward(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        x = quantize_activation(z_hat)
        for layer in self.layers:
            x = layer(x)
        mu, log_sigma = x.chunk(2, dim=1)
        return mu, log_sigma


def to_onnx(module: nn.Module, example: Tensor, inputs: dict[str, tuple[str, str]], outputs: dict[str, tuple[str, str]],
            doc: str, properties: dict[str, str], fold: bool = True) -> bytes:
    """A module as a checked ONNX model (bytes) with dynamic spatial axes, a doc string and metadata.

    Args:
        module: maps ``example`` (batch 1) to its outputs.
        inputs, outputs: name → the names of its dynamic height and width axes, in order.
        doc: the model's doc_string; properties: its metadata_props.
        fold: fold constants while exporting (h_s keeps its float32 weights and casts in the graph).
    """
    import onnx

    buffer = io.BytesIO()
    axes = {name: {2: h, 3: w} for name, (h, w) in {**inputs, **outputs}.items()}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter announces the dynamo one
        warnings.filterwarnings("ignore", "Constant folding", UserWarning)  # F.pad's Slice with step −1: not folded
        torch.onnx.export(module.eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=list(inputs), output_names=list(outputs), dynamic_axes=axes,
                          do_constant_folding=fold)
    model = onnx.load_from_string(buffer.getvalue())
    model.doc_string = doc
    onnx.helper.set_model_props(model, properties)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def model_export(name: str) -> dict[str, bytes]:
    """The three files of one embedded model's export, by file name (see the module docstring).

    Raises:
        ModelNotFoundError: no embedded weights for ``name``.
    """
    lean = Decoder(embedded_path(name))
    model = load_embedded(name).model
    m = lean.channels
    properties = {"architecture": name, "weights_id": f"{lean.weights_id:08x}", "shallowcodec": __version__}
    g_s = to_onnx(model.g_s, torch.zeros(1, m, 4, 4), {"y_hat": ("h", "w")}, {"x_hat": ("16h", "16w")},
                  f"shallowcodec {name} g_s: ungained y_hat (1, {m}, h, w) float32 -> x_hat (1, 3, 16h, 16w) float32 "
                  "in [0, 1] before clipping (unclamped). See README.md.", properties)
    h_s = to_onnx(ExactHyperSynthesis(model.h_s), torch.zeros(1, m, 1, 1, dtype=torch.float64),
                  {"z_hat": ("h/4", "w/4")}, {"mu": ("h", "w"), "log_sigma": ("h", "w")},
                  f"shallowcodec {name} fixed-point h_s: ungained z_hat (1, {m}, h/4, w/4) float64 -> mu, log_sigma "
                  f"(1, {m}, h, w) float64 on the 2^-{ACT_BITS} grid. Exact in float64 (every sum an integer multiple "
                  "of a power of two below 2^53); do not convert it to float32: float sums are not bit-exact across "
                  "runtimes, and the scale indexes must be. See README.md.", properties, fold=False)
    buffer = io.BytesIO()
    np.savez(buffer, **decoder_tables(lean, embedded_path(name)))
    return {name + SUFFIXES["g_s"]: g_s, name + SUFFIXES["h_s"]: h_s, name + SUFFIXES["tables"]: buffer.getvalue()}


def decoder_tables(lean: Decoder, path: Path) -> dict[str, np.ndarray]:
    """What a decoder needs besides the two graphs, as arrays (README.md's data flow uses them).

    * ``architecture`` (str), ``weights_id`` (uint32): a file names both in its header.
    * ``z_quantized_cdf`` (M, L_z) int32, ``z_cdf_length``, ``z_offset`` (M,) int32: the factorized
      prior's integer CDF tables, one per channel; ``z_medians`` (M,) float32.
    * ``y_quantized_cdf`` (S, L_y) int32, ``y_cdf_length``, ``y_offset`` (S,) int32: the Gaussian
      conditional's tables, one per scale; ``scale_table`` (S,) float32 (σ); ``log_scale_thresholds``
      (S−1,) float64: ln of all scales but the last, correctly rounded (decimal).
    * ``log_y_gain``, ``log_y_gain_inv``, ``log_z_gain_inv`` (7, M) float32: the stored log-gains of
      qualities 0–6 (variable_rate.GainUnits); ``exact_log_y_gain``, ``exact_y_gain``,
      ``exact_y_gain_inv``, ``exact_z_gain_inv`` (7, M) float64: the exact gains of the integer
      qualities (entropy_parameters.exact_gains; a fractional quality needs that function).

    Args:
        lean: the model's numpy decoder; path: its weights file (for the raw CDF tables).
    """
    with safe_open(path, "numpy") as f:
        raw = {f"{short}_{field}": f.get_tensor(f"{model}._{field}")
               for short, model in (("z", "entropy_bottleneck"), ("y", "gaussian_conditional"))
               for field in ("quantized_cdf", "cdf_length", "offset")}
        scale_table = f.get_tensor("gaussian_conditional.scale_table").astype(np.float32)
    exact = [lean.gains(q) for q in range(MAX_QUALITY + 1)]
    return {"architecture": np.array(lean.architecture), "weights_id": np.array(lean.weights_id, np.uint32), **raw,
            "z_medians": lean.z_medians.reshape(-1), "scale_table": scale_table, "log_scale_thresholds": lean.thresholds,
            "log_y_gain": lean.log_gains["y"], "log_y_gain_inv": lean.log_gains["y_inv"],
            "log_z_gain_inv": lean.log_gains["z_inv"],
            **{f"exact_{field}": np.concatenate([getattr(g, attr).reshape(1, -1) for g in exact])
               for field, attr in (("log_y_gain", "log_y"), ("y_gain", "y"), ("y_gain_inv", "y_inv"),
                                   ("z_gain_inv", "z_inv"))}}


def export_onnx(folder: Path, names: Sequence[str], force: bool = False) -> list[Path]:
    """Export embedded models' decoders to ``folder`` (created if missing): three files per model and README.md.

    Every output is checked before any work and written atomically (atomic.py: a temporary
    file in the folder, then a rename) once all of them are built, so a failure leaves no
    partial file. README.md is written when missing or different (then replacing it needs ``force``).

    Returns:
        the written files, in order.

    Raises:
        ExportError: ``folder`` is not a folder, an output exists (without ``force``) or is a
            folder, or the onnx package is missing.
        ModelNotFoundError: a name without embedded weights.
        OSError: the folder cannot be created or written.
    """
    folder, names = Path(folder), list(dict.fromkeys(names))
    readme = folder / "README.md"
    check_outputs(folder, [folder / (name + suffix) for name in names for suffix in SUFFIXES.values()], force)
    same_readme = readme.is_file() and readme.read_text(encoding="utf-8", errors="replace") == README
    if not same_readme:
        check_outputs(folder, [readme], force)
    try:
        import onnx  # noqa: F401  (torch.onnx.export and the checker need it)
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'shallowcodec[onnx]'") from None
    files = {folder / file: data for name in names for file, data in model_export(name).items()}
    if not same_readme:
        files[readme] = README.encode()
    folder.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        atomic_write(path, data)
    return list(files)


def check_outputs(folder: Path, paths: Sequence[Path], force: bool) -> None:
    """Refuse a ``folder`` that is not a folder, and outputs that exist (unless ``force``) or are folders.

    Raises:
        ExportError: with a one-line message.
    """
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder} exists and is not a folder")
    for path in paths:
        if path.is_dir():
            raise ExportError(f"{path} is a folder")
        if path.exists() and not force:
            raise ExportError(f"{path} exists (use --force to overwrite)")


#: README.md of an export folder.
README = """\
# shallowcodec decoders in ONNX

Written by `shallowcodec export --onnx`. For each model NAME:

* `NAME.g_s.onnx`: the synthesis g_s, `y_hat` (1, M, h, w) float32, the ungained ŷ → `x_hat`
  (1, 3, 16h, 16w) float32, unclamped.
* `NAME.h_s.onnx`: the hyper-synthesis h_s in fixed point, `z_hat` (1, M, h/4, w/4) float64, the
  ungained ẑ → `mu`, `log_sigma` (1, M, h, w) float64.
* `NAME.tables.npz` (`numpy.load`): the entropy coders' CDF tables, z medians, scale table and
  thresholds, gains, `architecture`, `weights_id` (names and shapes: `shallowcodec/export.py`).

h and w are multiples of 4 and dynamic; both graphs take one image (batch 1).

h_s is exact: weights on power-of-two grids, activations on the 2^-10 grid, float64 sums of
integer multiples of a power of two below 2^53, so any runtime that computes float64 MatMul
gives the same μ and log σ to the bit (checked in ONNX Runtime against the package's numpy h_s).
The ANS decoder depends on them bit for bit: do not convert h_s to float32. g_s is float32;
pixels may differ by one level between runtimes.

## Data flow: `.sdc` file → pixels

1. **Container** (`shallowcodec/container.py`): magic `\\x89SDC`, format version 3, architecture,
   quality q (× 256, uint16), λ (float32), weights_id (uint32; must equal `weights_id`), height H,
   width W, the z string, the y string, CRC32. Latent grid: h = 4·⌈H/64⌉, w = 4·⌈W/64⌉; ẑ is h/4 × w/4.
2. **Gains** of q: for an integer q, row q of `exact_log_y_gain`, `exact_y_gain`, `exact_y_gain_inv`,
   `exact_z_gain_inv` (float64, per channel); for a fractional q, `entropy_parameters.exact_gains`.
3. **Entropy decoding of z** (`shallowcodec/entropy_coding.py`: constriction's ANS coder, string
   layout in its docstring): channel c uses table c of `z_quantized_cdf`, `z_cdf_length`, `z_offset`;
   ẑ_g = symbol + `z_medians`[c] (float32).
4. **h_s**: ẑ = float64(ẑ_g) · γ⁻¹_z → `NAME.h_s.onnx` → μ, log σ.
5. **Entropy parameters**: μ_g = μ · γ_y, log σ_g = log σ + log γ_y (float64); scale index =
   #{i : `log_scale_thresholds`[i] < log σ_g} (`numpy.searchsorted(..., side="left")`).
6. **Entropy decoding of y**: the table of each latent is its scale index (`y_quantized_cdf`, ...);
   ŷ_g = symbol + μ_g (float64). This ŷ equals the encoder's on every CPU.
7. **γ⁻¹**: ŷ = float32(ŷ_g · γ⁻¹_y).
8. **g_s**: `NAME.g_s.onnx` → x̂; crop to [:H, :W], clip to [0, 1], × 255, round half to even → RGB uint8.

The package does the same without ONNX (`shallowcodec.decoder.Decoder`; numpy and constriction).
"""
