"""Weights files of trained models, read without PyTorch: metadata, model cards, the embedded files.

A weights file is a safetensors file (no pickle) whose string metadata holds ``architecture``,
``config`` (architectures.ModelConfig as JSON: widths N, M, ``variable_rate``, ...), for
fixed-λ files ``quality`` and ``lmbda``, and free-form training facts (steps, crop,
core-hours, photos24 figures). Its ``weights_id`` — the first 4 bytes of the file's SHA-256 —
is stored in every bitstream, so a decoder with other weights refuses the file. zoo.py builds
torch models from these files; decoder.py decodes with them in numpy (:func:`read_weights`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from shallowcodec.architectures import ARCHITECTURES, ModelConfig
from shallowcodec.architectures import DEFAULT_ARCHITECTURE as DEFAULT_ARCHITECTURE  # re-exported (cli.py, codec.py)
from shallowcodec.quality import DEFAULT_QUALITY, LMBDAS

#: Architecture names (architectures.ARCHITECTURES describes them; paper Sec. 4).
ARCHITECTURE_NAMES = tuple(ARCHITECTURES)


class ModelNotFoundError(LookupError):
    """Raised for an unknown architecture, missing or unreadable weights; message is one line."""


def weights_id(data: bytes) -> int:
    """The uint32 fingerprint of a weights file's bytes: its SHA-256's first 4 bytes, little-endian."""
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "little")


def check_finite(tensors: Mapping) -> None:
    """Refuse a weights file whose float tensors hold NaN or ±inf (they would decode to garbage).

    ``tensors``: name → numpy array or CPU torch tensor, as read from the file (integer tables pass).

    Raises:
        ValueError: names the first such tensor.
    """
    for name, value in tensors.items():
        array = np.asarray(value)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(f"{name} holds values that are not finite (NaN or ±inf)")


def read_metadata(path: Path) -> dict:
    """The string metadata of a shallowcodec weights file (tensors are not read).

    Raises:
        OSError: the file cannot be read; ValueError: it is not a safetensors file with shallowcodec
            metadata (``architecture`` and ``config``).
    """
    try:
        with safe_open(path, "numpy") as f:
            meta = f.metadata()
    except SafetensorError:
        meta = None
    if not meta or "architecture" not in meta or "config" not in meta:
        raise ValueError("not a shallowcodec weights file")
    return meta


def model_card(path: Path) -> dict:
    """Facts of a weights file without loading it: architecture, widths, qualities with λ, the
    stored training facts (steps, train_seconds, crop, photos24 bpp and PSNR per quality, ... as
    recorded when it was written) and the training budget: ``core_hours`` and ``gpu_minutes``
    (cumulative; 0 where none was recorded).

    Raises:
        ModelNotFoundError: the file is missing, unreadable or not a shallowcodec weights file.
    """
    try:
        meta = read_metadata(path)
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(f"cannot read weights {path}: {e}") from None
    try:
        config = ModelConfig.parse(meta["architecture"], meta["config"])
        variable_rate = config.variable_rate
        qualities = list(range(len(LMBDAS))) if variable_rate else [int(meta["quality"])]
        lmbdas = config.scale.lmbdas() if variable_rate else [float(meta["lmbda"])]
    except (KeyError, ValueError) as e:
        raise ModelNotFoundError(f"cannot read weights {path}: {e.args[0] if isinstance(e, KeyError) else e}") from None
    facts = {k: json.loads(v) for k, v in meta.items() if k not in ("architecture", "quality", "lmbda", "config")}
    budget = {"core_hours": facts.get("core_hours", 0.0), "gpu_minutes": round(60 * facts.get("gpu_hours", 0.0), 1)}
    return {"architecture": meta["architecture"], "config": json.loads(meta["config"]), "variable_rate": variable_rate,
            "qualities": qualities, "lmbdas": lmbdas, **facts, **budget}


def weights_dir() -> Path:
    """Folder of the weights embedded in the package."""
    return Path(str(resources.files("shallowcodec") / "weights"))


def embedded_models() -> dict[str, Path]:
    """The embedded variable-rate weights file of each architecture, e.g. {"two-layer": Path}."""
    return {read_metadata(path)["architecture"]: path for path in sorted(weights_dir().glob("*.safetensors"))}


def embedded_table() -> dict:
    """Embedded models: per architecture its default quality and :func:`model_card`."""
    return {arch: {"default_quality": DEFAULT_QUALITY, "file": path.name, **model_card(path)}
            for arch, path in embedded_models().items()}


def embedded_path(architecture: str) -> Path:
    """The embedded weights file of an architecture.

    Raises:
        ModelNotFoundError: unknown architecture, or no embedded weights for it.
    """
    if architecture not in ARCHITECTURE_NAMES:
        raise ModelNotFoundError(f"unknown model {architecture!r}; choose from {', '.join(ARCHITECTURE_NAMES)}")
    path = embedded_models().get(architecture)
    if path is None:
        raise ModelNotFoundError(f"no embedded weights for model {architecture!r}")
    return path


@dataclass(frozen=True)
class ModelWeights:
    """What a decoder needs of a trained model, as numpy arrays: its architecture and config, the fixed-λ
    ``quality`` and ``lmbda`` (None for a variable-rate model), the ``weights_id`` its files carry and the
    ``tensors`` by name (parameters, CDF tables, scale table; names as in zoo.save_weights)."""

    architecture: str
    config: ModelConfig
    quality: int | None
    lmbda: float | None
    weights_id: int
    tensors: Mapping[str, np.ndarray] = field(repr=False)


def read_weights(path: Path, skip: tuple[str, ...] = ("g_a.", "h_a.")) -> ModelWeights:
    """The :class:`ModelWeights` of a weights file, without PyTorch; tensors whose names start with ``skip``
    (default the encoder's, which a decoder does not need) are not read.

    Raises:
        OSError: the file cannot be read; SafetensorError: it is not safetensors; KeyError: metadata is
            missing; ValueError: a bad config, quality or λ.
    """
    data = Path(path).read_bytes()
    with safe_open(path, "numpy") as f:
        meta = f.metadata() or {}
        config = ModelConfig.parse(meta["architecture"], meta["config"])
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(skip)}
    quality, lmbda = (None, None) if config.variable_rate else (int(meta["quality"]), float(meta["lmbda"]))
    return ModelWeights(meta["architecture"], config, quality, lmbda, weights_id(data), tensors)
