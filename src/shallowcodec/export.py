"""ONNX export of the decoders (``shallowcodec export --onnx DIR``): g_s and the exact h_s as graphs, the rest as tables.

For each embedded model NAME (model_files.embedded_models)::

    DIR/NAME.g_s.onnx     y_hat (1, M, h, w) float32, ungained ŷ  →  x_hat (1, 3, 16h, 16w) float32, unclamped
    DIR/NAME.h_s.onnx     z_hat (1, M, h/4, w/4) float64, ungained ẑ  →  mu, log_sigma (1, M, h, w) float64
    DIR/NAME.tables.npz   what a decoder needs besides the graphs (:func:`decoder_tables`)
    DIR/README.md         the data flow, file → pixels (:data:`README`)

h and w (multiples of 4) are dynamic. Both graphs hold batch 1, opset onnx_graph.OPSET, and name
their model, its weights_id and the package version in their metadata.

Both graphs are written by the numpy decoder's own layers (layers/, onnx_graph.py): the g_s of
layers/synthesis.py and the fixed-point h_s of entropy_parameters.py, node by node, from the same
weights, so there is one implementation of each. Every transposed convolution is in its
sub-pixel form (layers.ConvTranspose.onnx: the ⌈k/s⌉² shifted copies of its input, one MatMul,
DepthToSpace), which ONNX Runtime also runs in float64 (it has no float64 ConvTranspose).

* **g_s** is float32, like the package's: decoded pixels may differ by one level between
  runtimes (their float sums round in other orders).
* **h_s** is float64 fixed point (weights on per-channel power-of-two grids, activations on the
  2^-10 grid): every sum is an integer multiple of 2^-(10+e) below 2^53, the same in any summation
  order, so in ONNX Runtime μ and log σ equal entropy_parameters.hyper_synthesis_exact bit for bit
  (tests/test_export.py). The weights are stored float32 (their ≤ 15 significant bits are exact in
  float32; half the size of float64) and cast in the graph. A float32 h_s would not be exact —
  its sums round, differently per runtime and kernel — and one changed scale index derails the
  ANS decoder; where a runtime has no float64 MatMul, the package's numpy decoder (decoder.py) is
  the exact one.

Neither PyTorch nor CompressAI is needed: the onnx package writes and checks the graphs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from shallowcodec import __version__
from shallowcodec.atomic import atomic_write, check_output
from shallowcodec.decoder import Decoder
from shallowcodec.entropy_parameters import ACT_BITS, hyper_synthesis_onnx
from shallowcodec.layers.synthesis import Synthesis
from shallowcodec.model_files import ModelWeights, embedded_path, read_weights
from shallowcodec.quality import MAX_QUALITY

#: File names of one model's export, by what they hold.
SUFFIXES = {"g_s": ".g_s.onnx", "h_s": ".h_s.onnx", "tables": ".tables.npz"}


class ExportError(ValueError):
    """An export that cannot be written (output is a file, exists, or the onnx package is missing); one line."""


def model_export(name: str) -> dict[str, bytes]:
    """The three files of one embedded model's export, by file name (see the module docstring).

    Raises:
        ModelNotFoundError: no embedded weights for ``name``.
        ImportError: the onnx package is missing.
    """
    from shallowcodec.onnx_graph import Graph

    weights = read_weights(embedded_path(name))
    lean = Decoder(weights)
    m = lean.channels
    properties = {"architecture": name, "weights_id": f"{lean.weights_id:08x}", "shallowcodec": __version__}
    g_s = Graph(np.float32)
    tensors = {k[4:]: v.astype(np.float32) for k, v in weights.tensors.items() if k.startswith("g_s.")}
    x_hat = Synthesis(weights.config.synthesis(), tensors, scale=1.0).onnx(g_s, "y_hat")
    g_s_bytes = g_s.model(
        {"y_hat": (1, m, "h", "w")}, {"x_hat": (x_hat, (1, 3, "16h", "16w"))},
        f"shallowcodec {name} g_s: ungained y_hat (1, {m}, h, w) float32 -> x_hat (1, 3, 16h, 16w) float32 "
        "in [0, 1] before clipping (unclamped). See README.md.", properties)
    h_s = Graph(np.float64)
    mu, log_sigma = hyper_synthesis_onnx(lean.h_s, h_s, "z_hat")
    h_s_bytes = h_s.model(
        {"z_hat": (1, m, "h/4", "w/4")}, {"mu": (mu, (1, m, "h", "w")), "log_sigma": (log_sigma, (1, m, "h", "w"))},
        f"shallowcodec {name} fixed-point h_s: ungained z_hat (1, {m}, h/4, w/4) float64 -> mu, log_sigma "
        f"(1, {m}, h, w) float64 on the 2^-{ACT_BITS} grid. Exact in float64 (every sum an integer multiple "
        "of a power of two below 2^53); do not convert it to float32: float sums are not bit-exact across "
        "runtimes, and the scale indexes must be. See README.md.", properties)
    buffer = io.BytesIO()
    np.savez(buffer, **decoder_tables(lean, weights))
    return {name + SUFFIXES["g_s"]: g_s_bytes, name + SUFFIXES["h_s"]: h_s_bytes,
            name + SUFFIXES["tables"]: buffer.getvalue()}


def decoder_tables(lean: Decoder, weights: ModelWeights) -> dict[str, np.ndarray]:
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
        lean: the model's numpy decoder (a variable-rate model's); weights: its tensors (for the raw CDF tables).
    """
    t = weights.tensors
    raw = {f"{short}_{field}": t[f"{model}._{field}"]
           for short, model in (("z", "entropy_bottleneck"), ("y", "gaussian_conditional"))
           for field in ("quantized_cdf", "cdf_length", "offset")}
    scale_table = t["gaussian_conditional.scale_table"].astype(np.float32)
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
        import onnx  # noqa: F401  (onnx_graph.py writes and checks the graphs with it)
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
    if not folder.is_dir():
        return  # export creates it: nothing in it yet
    try:
        for path in paths:
            check_output(path, force)
    except ValueError as e:
        raise ExportError(str(e)) from None


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
