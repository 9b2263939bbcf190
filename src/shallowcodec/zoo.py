"""Architecture registry and the embedded (safetensors) weights.

Architectures (paper Sec. 4): ``jpeg-like`` (ELIC g_a + JPEG-like g_s, k=18), ``two-layer``
(ELIC g_a + residual two-layer g_s), ``two-layer-nores`` (CNN g_a + two-layer g_s without the
residual branch) and the ``mbt2018-mean`` baseline (CNN g_a + 4-layer g_s). Widths N (analysis
channels) and M (latent channels) are arguments; the paper uses N=192, M=320. With
``variable_rate=True`` a model carries gain units and covers qualities 0–6 (variable_rate.py) at
λ(q) = λ₀ · r^q, ``lmbda_scale`` = [λ₀, r] (default the paper's 0.00125 · 2^q; quality.py);
otherwise it is a fixed-λ model (the paper's recipe). Each architecture embeds one
variable-rate weights file.

Weights files are safetensors (no pickle). Their string metadata holds ``architecture``,
``config`` (JSON of the builder's keyword arguments), for fixed-λ files ``quality`` and
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

from shallowcodec.atomic import atomic_write
from shallowcodec.hyperprior import TABLE_NAMES, ShallowHyperprior
from shallowcodec.model_files import (
    DEFAULT_ARCHITECTURE,
    ModelNotFoundError,
    check_finite,
    embedded_path,
    read_metadata,
    weights_id,
)
from shallowcodec.quality import PAPER_SCALE, LmbdaScale
from shallowcodec.transforms import (
    CNNAnalysis,
    ELICAnalysis,
    HyperAnalysis,
    HyperSynthesis,
    JPEGLikeSynthesis,
    MBT2018Synthesis,
    TwoLayerSynthesis,
)
from shallowcodec.variable_rate import GainUnits


def _gain(M: int, variable_rate: bool, lmbda_scale: tuple[float, float] | None) -> GainUnits | None:
    """Gain units of a variable-rate model with λ(q) = λ₀ · r^q, ``lmbda_scale`` = [λ₀, r] (None: the paper's)."""
    if lmbda_scale is not None and not variable_rate:
        raise ValueError("lmbda_scale applies to a variable-rate model")
    return GainUnits(M, lmbda_scale=lmbda_scale) if variable_rate else None


def _h_s(M: int, hyper_synthesis: str, hyper_kernel: int) -> HyperSynthesis:
    """h_s of every architecture: ``hyper_synthesis`` "paper" (three layers, 30,355 FLOPs/pixel at M=320) or
    "cheap" (one ConvT(M→2M, k=``hyper_kernel``, s4), distilled by distill.py; 3,602 FLOPs/pixel at k6, 1,602 at k4, M=320).
    Both are stored in a weights file's config JSON (a file without them has the paper h_s)."""
    return HyperSynthesis(M, hyper_synthesis, hyper_kernel)


def jpeg_like(N: int = 192, M: int = 320, kernel_size: int = 18, variable_rate: bool = False,
              hyper_synthesis: str = "paper", hyper_kernel: int = 6,
              lmbda_scale: tuple[float, float] | None = None) -> ShallowHyperprior:
    """ELIC g_a + JPEG-like g_s (one ConvT, kernel ``kernel_size``, stride 16); h_s as in :func:`_h_s`."""
    return ShallowHyperprior(ELICAnalysis(N, M), JPEGLikeSynthesis(M, kernel_size), HyperAnalysis(M),
                             _h_s(M, hyper_synthesis, hyper_kernel), M, _gain(M, variable_rate, lmbda_scale))


def two_layer(N: int = 192, M: int = 320, hidden: int = 12, variable_rate: bool = False,
              hyper_synthesis: str = "paper", hyper_kernel: int = 6,
              lmbda_scale: tuple[float, float] | None = None) -> ShallowHyperprior:
    """ELIC g_a + the proposed residual two-layer g_s (``hidden`` channels between the layers); h_s as in :func:`_h_s`."""
    return ShallowHyperprior(ELICAnalysis(N, M), TwoLayerSynthesis(M, hidden), HyperAnalysis(M),
                             _h_s(M, hyper_synthesis, hyper_kernel), M, _gain(M, variable_rate, lmbda_scale))


def two_layer_nores(N: int = 256, M: int = 320, hidden: int = 12, variable_rate: bool = False,
                    hyper_synthesis: str = "paper", hyper_kernel: int = 6,
                    lmbda_scale: tuple[float, float] | None = None) -> ShallowHyperprior:
    """CNN g_a (N=256 in the paper) + two-layer g_s without the residual branch (2·hidden channels); h_s as in
    :func:`_h_s`."""
    return ShallowHyperprior(CNNAnalysis(N, M), TwoLayerSynthesis(M, hidden, residual=False), HyperAnalysis(M),
                             _h_s(M, hyper_synthesis, hyper_kernel), M, _gain(M, variable_rate, lmbda_scale))


def mbt2018_mean(N: int = 192, M: int = 320, variable_rate: bool = False, hyper_synthesis: str = "paper",
                 hyper_kernel: int = 6, lmbda_scale: tuple[float, float] | None = None) -> ShallowHyperprior:
    """The mean-scale hyperprior baseline: CNN g_a + 4 × ConvT/IGDN g_s; h_s as in :func:`_h_s`."""
    return ShallowHyperprior(CNNAnalysis(N, M), MBT2018Synthesis(N, M), HyperAnalysis(M),
                             _h_s(M, hyper_synthesis, hyper_kernel), M, _gain(M, variable_rate, lmbda_scale))


ARCHITECTURES = {
    "jpeg-like": jpeg_like,
    "two-layer": two_layer,
    "two-layer-nores": two_layer_nores,
    "mbt2018-mean": mbt2018_mean,
}


def build(architecture: str, **config) -> ShallowHyperprior:
    """Build an untrained model by architecture name; ``config`` holds widths such as N, M.

    Raises:
        ModelNotFoundError: for an unknown architecture name.
    """
    if architecture not in ARCHITECTURES:
        raise ModelNotFoundError(f"unknown model {architecture!r}; choose from {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](**config)


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
    def scale(self) -> LmbdaScale:
        """λ(q) of a variable-rate model (its config's ``lmbda_scale``); the paper's for a fixed-λ one."""
        return self.model.gain.scale if self.model.gain is not None else PAPER_SCALE


def save_weights(path: Path, model: ShallowHyperprior, architecture: str, config: dict,
                 quality: int | None = None, lmbda: float | None = None, half: bool = True, **facts) -> None:
    """Write the model's parameters (fp16 when ``half``) and metadata to a safetensors file.

    Stores the parameters and the entropy coders' tables (:data:`TABLE_NAMES`, rebuilt here from the
    parameters with ``model.update(force=True)``), no optimizer state. ``quality`` and ``lmbda``
    describe a fixed-λ model (None for a variable-rate one). ``facts`` (e.g. steps,
    train_seconds, crop) are stored as JSON strings. Written atomically (atomic.py).

    Raises:
        OSError: the file cannot be written.
    """
    model.update(force=True)
    tensors = {k: (v.detach().half() if half else v.detach()).contiguous() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    tensors.update({k: buffers[k].detach().cpu().contiguous() for k in TABLE_NAMES})
    meta = {"architecture": architecture, "config": json.dumps(config)}
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
        model = build(architecture, **json.loads(meta["config"]))
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


def load_embedded(architecture: str = DEFAULT_ARCHITECTURE) -> LoadedModel:
    """Load the embedded (variable-rate) weights of an architecture.

    Raises:
        ModelNotFoundError: unknown architecture, or no embedded weights for it.
    """
    return load_weights(embedded_path(architecture))
