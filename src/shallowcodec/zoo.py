"""Architecture registry, quality ↔ λ mapping and the embedded (safetensors) weights.

Architectures (paper Sec. 4): ``jpeg-like`` (ELIC g_a + JPEG-like g_s, k=18), ``two-layer``
(ELIC g_a + residual two-layer g_s), ``two-layer-nores`` (CNN g_a + two-layer g_s without the
residual branch) and the ``mbt2018-mean`` baseline (CNN g_a + 4-layer g_s). Widths N (analysis
channels) and M (latent channels) are arguments; the paper uses N=192, M=320.

Weights files are safetensors (no pickle). Their string metadata holds ``architecture``,
``quality``, ``lmbda`` and ``config`` (JSON of the builder's keyword arguments) plus free-form
training facts; the CDF tables are rebuilt from the parameters on load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from shallowcodec.hyperprior import MeanScaleHyperprior
from shallowcodec.transforms import (
    CNNAnalysis,
    ELICAnalysis,
    HyperAnalysis,
    HyperSynthesis,
    JPEGLikeSynthesis,
    MBT2018Synthesis,
    TwoLayerSynthesis,
)

#: λ per quality index (paper's 7 values, low to high rate); loss = bpp + λ·MSE(0–255).
LMBDAS = (0.00125, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08)
DEFAULT_ARCHITECTURE = "two-layer"


def jpeg_like(N: int = 192, M: int = 320, kernel_size: int = 18) -> MeanScaleHyperprior:
    """ELIC g_a + JPEG-like g_s (one ConvT, kernel ``kernel_size``, stride 16)."""
    return MeanScaleHyperprior(ELICAnalysis(N, M), JPEGLikeSynthesis(M, kernel_size), HyperAnalysis(M), HyperSynthesis(M), M)


def two_layer(N: int = 192, M: int = 320, hidden: int = 12) -> MeanScaleHyperprior:
    """ELIC g_a + the proposed residual two-layer g_s (``hidden`` channels between the layers)."""
    return MeanScaleHyperprior(ELICAnalysis(N, M), TwoLayerSynthesis(M, hidden), HyperAnalysis(M), HyperSynthesis(M), M)


def two_layer_nores(N: int = 256, M: int = 320, hidden: int = 12) -> MeanScaleHyperprior:
    """CNN g_a (N=256 in the paper) + two-layer g_s without the residual branch (2·hidden channels)."""
    return MeanScaleHyperprior(
        CNNAnalysis(N, M), TwoLayerSynthesis(M, hidden, residual=False), HyperAnalysis(M), HyperSynthesis(M), M
    )


def mbt2018_mean(N: int = 192, M: int = 320) -> MeanScaleHyperprior:
    """The mean-scale hyperprior baseline: CNN g_a + 4 × ConvT/IGDN g_s."""
    return MeanScaleHyperprior(CNNAnalysis(N, M), MBT2018Synthesis(N, M), HyperAnalysis(M), HyperSynthesis(M), M)


ARCHITECTURES = {
    "jpeg-like": jpeg_like,
    "two-layer": two_layer,
    "two-layer-nores": two_layer_nores,
    "mbt2018-mean": mbt2018_mean,
}


class ModelNotFoundError(LookupError):
    """Raised for an unknown architecture or a quality without weights; message is one line."""


def build(architecture: str, **config) -> MeanScaleHyperprior:
    """Build an untrained model by architecture name; ``config`` holds widths such as N, M.

    Raises:
        ModelNotFoundError: for an unknown architecture name.
    """
    if architecture not in ARCHITECTURES:
        raise ModelNotFoundError(f"unknown model {architecture!r}; choose from {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](**config)


@dataclass
class LoadedModel:
    """A trained model with the facts from its weights file."""

    model: MeanScaleHyperprior = field(repr=False)
    architecture: str
    quality: int
    lmbda: float
    weights_id: int
    metadata: dict = field(default_factory=dict)


def save_weights(path: Path, model: MeanScaleHyperprior, architecture: str, config: dict,
                 quality: int, lmbda: float, half: bool = True, **facts) -> None:
    """Write the model's parameters (fp16 when ``half``) and metadata to a safetensors file.

    Only parameters are stored (no optimizer state, no CDF tables). ``facts`` (e.g. steps,
    train_seconds, crop) are stored as JSON strings. Writes to a temp file, then renames.
    """
    tensors = {k: (v.detach().half() if half else v.detach()).contiguous() for k, v in model.named_parameters()}
    meta = {"architecture": architecture, "quality": str(quality), "lmbda": repr(lmbda), "config": json.dumps(config)}
    meta.update({k: json.dumps(v) for k, v in facts.items()})
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_bytes(save(tensors, metadata=meta))
    tmp.replace(path)


def load_weights(path: Path) -> LoadedModel:
    """Load a safetensors weights file written by :func:`save_weights` (no pickle involved).

    The model is in eval mode, fp32, with CDF tables built. ``weights_id`` is the first 4 bytes
    of the file's SHA-256, stored in every bitstream so that a decoder with other weights refuses it.

    Raises:
        ModelNotFoundError: if the file is missing, unreadable or not a shallowcodec weights file.
    """
    try:
        data = Path(path).read_bytes()
        meta = _read_metadata(data)
        architecture, quality, lmbda = meta["architecture"], int(meta["quality"]), float(meta["lmbda"])
        model = build(architecture, **json.loads(meta["config"]))
        _copy_parameters(model, load(data))
    except (OSError, SafetensorError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise ModelNotFoundError(f"cannot load weights {path}: {e}") from None
    model.eval().update(force=True)
    weights_id = int.from_bytes(hashlib.sha256(data).digest()[:4], "little")
    return LoadedModel(model, architecture, quality, lmbda, weights_id, meta)


def _copy_parameters(model: MeanScaleHyperprior, tensors: dict) -> None:
    """Copy stored tensors into the model's parameters (fp16 → fp32).

    Raises:
        ValueError: names differ; RuntimeError: shapes differ.
    """
    params = dict(model.named_parameters())
    if set(tensors) != set(params):
        raise ValueError("parameter names do not match the architecture")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value.float())


def _header_bytes(path: Path) -> bytes:
    """The length prefix and JSON header of a safetensors file, without reading the tensors."""
    with open(path, "rb") as f:
        prefix = f.read(8)
        return prefix + f.read(int.from_bytes(prefix, "little"))


def _read_metadata(data: bytes) -> dict:
    header_len = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + header_len])["__metadata__"]


def model_card(path: Path) -> dict:
    """Facts of a weights file without loading it: λ, widths and the stored training facts
    (steps, train_seconds, crop, photos24 bpp and PSNR, ... as recorded when it was written)."""
    meta = _read_metadata(_header_bytes(path))
    facts = {k: json.loads(v) for k, v in meta.items() if k not in ("architecture", "quality", "lmbda", "config")}
    return {"lmbda": float(meta["lmbda"]), "config": json.loads(meta["config"]), **facts}


def embedded_table() -> dict:
    """Embedded models: per architecture its default quality and a :func:`model_card` per quality."""
    return {
        arch: {"default_quality": default_quality(arch),
               "qualities": {q: model_card(path) for q, path in sorted(files.items())}}
        for arch, files in embedded_models().items()
    }


def weights_dir() -> Path:
    """Folder of the weights embedded in the package."""
    return Path(str(resources.files("shallowcodec") / "weights"))


def embedded_models() -> dict[str, dict[int, Path]]:
    """Embedded weights files by architecture and quality, e.g. {"two-layer": {1: Path, 3: Path}}."""
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(weights_dir().glob("*.safetensors")):
        meta = _read_metadata(_header_bytes(path))
        found.setdefault(meta["architecture"], {})[int(meta["quality"])] = path
    return found


def default_quality(architecture: str) -> int:
    """The middle embedded quality of ``architecture``.

    Raises:
        ModelNotFoundError: if the architecture has no embedded weights.
    """
    qualities = sorted(embedded_models().get(architecture, {}))
    if not qualities:
        raise ModelNotFoundError(f"no embedded weights for model {architecture!r}")
    return qualities[len(qualities) // 2]


def load_embedded(architecture: str = DEFAULT_ARCHITECTURE, quality: int | None = None) -> LoadedModel:
    """Load embedded weights by name and quality (default: the middle embedded quality).

    Raises:
        ModelNotFoundError: unknown architecture, or no embedded weights for that quality.
    """
    if architecture not in ARCHITECTURES:
        raise ModelNotFoundError(f"unknown model {architecture!r}; choose from {', '.join(ARCHITECTURES)}")
    available = embedded_models().get(architecture, {})
    quality = default_quality(architecture) if quality is None else quality
    if quality not in available:
        choices = ", ".join(map(str, sorted(available))) or "none"
        raise ModelNotFoundError(f"model {architecture!r} has no quality {quality} (embedded: {choices})")
    return load_weights(available[quality])
