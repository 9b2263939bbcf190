"""Torch models of the architectures (architectures.py) and their weights files (safetensors).

Architectures (paper Sec. 4): ``jpeg-like`` (ELIC g_a + JPEG-like g_s, k=18), ``two-layer``
(ELIC g_a + residual two-layer g_s), ``two-layer-nores`` (CNN g_a + two-layer g_s without the
residual branch) and the ``mbt2018-mean`` baseline (CNN g_a + 4-layer g_s), each described once
in architectures.py. Widths N (analysis channels) and M (latent channels) are fields of
architectures.ModelConfig; the paper uses N=192, M=320. With
``variable_rate=True`` a model carries gain units and covers qualities 0–6 (variable_rate.py) at
λ(q) = λ₀ · r^q, ``lmbda_scale`` = [λ₀, r] (default the paper's 0.00125 · 2^q; quality.py);
otherwise it is a fixed-λ model (the paper's recipe). Each architecture embeds one
variable-rate weights file.

Weights files are safetensors (no pickle). Their string metadata holds ``architecture``,
``config`` (ModelConfig.to_json), for fixed-λ files ``quality`` and
``lmbda``, plus free-form training facts. Besides the parameters, a file stores the entropy
coders' integer CDF tables and the scale table (hyperprior.TABLE_NAMES): computing them involves float
erfc and sigmoid, which can differ in the last bit between CPUs, so every decoder uses the
stored ones (the portable-bitstream guarantee, entropy_parameters.py). Files written before
held parameters only; their tables are rebuilt on load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from shallowcodec.architectures import ARCHITECTURES, ModelConfig
from shallowcodec.atomic import atomic_write
from shallowcodec.hyperprior import TABLE_NAMES, ShallowHyperprior
from shallowcodec.model_files import (
    DEFAULT_ARCHITECTURE,
    ModelNotFoundError,
    ModelWeights,
    check_finite,
    embedded_path,
    read_metadata,
    weights_id,
)
from shallowcodec.quality import PAPER_SCALE, LmbdaScale
from shallowcodec.transforms import CNNAnalysis, ELICAnalysis, HyperAnalysis, HyperSynthesis, Synthesis
from shallowcodec.variable_rate import GainUnits

#: The torch g_a of each kind of analysis (architectures.Architecture.analysis).
ANALYSES = {"elic": ELICAnalysis, "cnn": CNNAnalysis}


def build(architecture: str, **config) -> ShallowHyperprior:
    """Build an untrained model by architecture name; ``config`` holds the fields of
    architectures.ModelConfig to set (e.g. N, M; the others take the architecture's defaults).

    Raises:
        ModelNotFoundError: an unknown architecture name.
        ValueError: a config key the architecture does not take, or a bad value.
    """
    try:
        return build_model(ModelConfig.parse(architecture, config))
    except KeyError as e:
        raise ModelNotFoundError(e.args[0]) from None


def build_model(config: ModelConfig) -> ShallowHyperprior:
    """An untrained model of a config: its architecture's g_a, the g_s of its stages (transforms.Synthesis), the
    paper's h_a, the h_s of its kind and, for a variable-rate config, gain units with its λ scale."""
    arch = ARCHITECTURES[config.architecture]
    gain = GainUnits(config.M, lmbda_scale=config.scale) if config.variable_rate else None
    return ShallowHyperprior(ANALYSES[arch.analysis](config.N, config.M), Synthesis(config.synthesis()),
                             HyperAnalysis(config.M), HyperSynthesis(config.M, config.hyper_synthesis, config.hyper_kernel),
                             config.M, gain, config)


@dataclass
class LoadedModel:
    """A trained model with the facts from its weights file.

    ``quality`` and ``lmbda`` are those a fixed-λ model was trained for; both are None for a
    variable-rate model, which serves every quality in 0–6. ``path`` is the weights file (None
    for a model built in memory); decoder.Decoder(path) decodes its files without PyTorch.
    """

    model: ShallowHyperprior = field(repr=False)
    architecture: str
    quality: int | None
    lmbda: float | None
    weights_id: int
    metadata: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def variable_rate(self) -> bool:
        """Whether the weights cover qualities 0–6 through gain units."""
        return self.model.variable_rate

    @property
    def config(self) -> ModelConfig:
        """The model's widths and kinds (architectures.ModelConfig)."""
        return self.model.config

    @property
    def scale(self) -> LmbdaScale:
        """λ(q) of a variable-rate model (its config's ``lmbda_scale``); the paper's for a fixed-λ one."""
        return self.model.gain.scale if self.model.gain is not None else PAPER_SCALE


def save_weights(path: Path, model: ShallowHyperprior, architecture: str, config: ModelConfig | dict,
                 quality: int | None = None, lmbda: float | None = None, half: bool = True, **facts) -> None:
    """Write the model's parameters (fp16 when ``half``) and metadata to a safetensors file.

    Stores the parameters and the entropy coders' tables (:data:`TABLE_NAMES`, rebuilt here from the
    parameters with ``model.update(force=True)``), no optimizer state. ``quality`` and ``lmbda``
    describe a fixed-λ model (None for a variable-rate one). ``config`` (a ModelConfig, or a dict of its fields)
    is stored as ModelConfig.to_json. ``facts`` (e.g. steps,
    train_seconds, crop) are stored as JSON strings. Written atomically (atomic.py).

    Raises:
        OSError: the file cannot be written.
    """
    model.update(force=True)
    tensors = {k: (v.detach().half() if half else v.detach()).contiguous() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    tensors.update({k: buffers[k].detach().cpu().contiguous() for k in TABLE_NAMES})
    if not isinstance(config, ModelConfig):
        config = ModelConfig.parse(architecture, config)
    meta = {"architecture": architecture, "config": config.to_json()}
    if not model.variable_rate:
        meta.update(quality=str(quality), lmbda=repr(lmbda))
    meta.update({k: json.dumps(v) for k, v in facts.items()})
    atomic_write(path, save(tensors, metadata=meta))


def load_weights(path: Path) -> LoadedModel:
    """Load a safetensors weights file written by :func:`save_weights` (no pickle involved).

    The model is in eval mode, fp32, with the stored CDF tables (rebuilt for files without them).
    ``weights_id`` is the first 4 bytes of the file's SHA-256, stored in every bitstream so that a
    decoder with other weights refuses it.

    Raises:
        ModelNotFoundError: if the file is missing, unreadable or not a shallowcodec weights file.
    """
    try:
        data = Path(path).read_bytes()
        meta = read_metadata(path)
        architecture = meta["architecture"]
        model = build_model(ModelConfig.parse(architecture, meta["config"]))
        has_tables = _copy_tensors(model, load(data))
        quality, lmbda = (None, None) if model.variable_rate else (int(meta["quality"]), float(meta["lmbda"]))
    except (OSError, SafetensorError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise ModelNotFoundError(f"cannot load weights {path}: {e}") from None
    model.eval()
    if not has_tables:
        model.update(force=True)
    return LoadedModel(model, architecture, quality, lmbda, weights_id(data), meta, Path(path))


def _copy_tensors(model: ShallowHyperprior, tensors: dict) -> bool:
    """Copy stored parameters (fp16 → fp32) and, when present, the tables into the model.

    Returns:
        whether the file held the tables.

    Raises:
        ValueError: names differ, or a parameter holds NaN or ±inf; RuntimeError: shapes differ.
    """
    params = dict(model.named_parameters())
    has_tables = all(k in tensors for k in TABLE_NAMES)
    if set(tensors) != set(params) | (set(TABLE_NAMES) if has_tables else set()):
        raise ValueError("parameter names do not match the architecture")
    check_finite(tensors)
    with torch.no_grad():
        for name, value in tensors.items():
            if name in params:
                params[name].copy_(value.float())
            else:
                module, attr = name.split(".")
                setattr(getattr(model, module), attr, value.clone())
    return has_tables


def model_weights(loaded: LoadedModel) -> ModelWeights:
    """The decoder's tensors of a loaded model, as numpy arrays sharing the model's memory (for decoder.Decoder):
    the parameters and tables but g_a's and h_a's, float32 as the model holds them (a file's fp16 values, widened)."""
    tensors = {k: v.detach().cpu().numpy() for k, v in loaded.model.state_dict().items()
               if not k.startswith(("g_a.", "h_a."))}
    return ModelWeights(loaded.architecture, loaded.config, loaded.quality, loaded.lmbda, loaded.weights_id, tensors)


def load_embedded(architecture: str = DEFAULT_ARCHITECTURE) -> LoadedModel:
    """Load the embedded (variable-rate) weights of an architecture.

    Raises:
        ModelNotFoundError: unknown architecture, or no embedded weights for it.
    """
    return load_weights(embedded_path(architecture))
