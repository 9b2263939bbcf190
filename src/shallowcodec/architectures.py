"""The architectures, described without PyTorch: the one place that says what each model is.

Every model pairs an analysis g_a with a synthesis g_s (Yang & Mandt, ICCV 2023, Sec. 3 and 4)
and shares h_a, the factorized prior of z and an h_s of one of two kinds. This module holds
each architecture's widths (:class:`ModelConfig`, stored in every weights file) and the layers
of its decoder — g_s as :class:`Stage` s of transposed convolutions, h_s as a list of them —
with the names their tensors have in a weights file. The torch modules (transforms.py, built
by zoo.py), the numpy decoder (synthesis.py, decoder.py), the ONNX export (export.py) and the
weights files (model_files.py) all read them here::

    JPEG-like g_s      deconv: ConvT(M→3, k, s16)                                   Sec. 3.1
    two-layer g_s      up: ConvT(M→C, k13, s8) → igdn: IGDN1 (+ up_res: ConvT(M→C, k13, s8))
                       → out: ConvT(C→3, k5, s2)                                    Sec. 3.2
    mbt2018-mean g_s   0, 2, 4: ConvT(k5, s2) each followed by IGDN 1, 3, 5 → 6: ConvT(N→3, k5, s2)
    h_s "paper"        layers.0: ConvT(M→M, k5, s2) → ReLU → layers.2: ConvT(M→1.5M, k5, s2) → ReLU
                       → layers.4: ConvT(1.5M→2M, k3, s1)                           Table 1
    h_s "cheap"        layers.0: ConvT(M→2M, k, s4)

No PyTorch is imported: the torch-free decoder reads this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import NamedTuple

from shallowcodec.quality import LmbdaScale

#: Kinds of h_s: the paper's three layers, or one transposed convolution at stride 4 (distill.py).
HYPER_SYNTHESES = ("paper", "cheap")


class ConvSpec(NamedTuple):
    """One transposed convolution whose output is exactly ``stride`` times its input
    (transforms.conv_transpose_exact): tensors ``NAME.weight`` (c_in, c_out, kernel, kernel) and ``NAME.bias`` (c_out,)."""

    name: str
    c_in: int
    c_out: int
    kernel: int
    stride: int


class Stage(NamedTuple):
    """One stage of g_s: x → conv(x), then the inverse GDN ``igdn`` (IGDN1 when ``l1``) if named, plus the linear
    ``residual`` conv(x) if given (the two-layer's residual branch, added after the IGDN)."""

    conv: ConvSpec
    igdn: str | None = None
    l1: bool = False
    residual: ConvSpec | None = None


def _jpeg_like(c: ModelConfig) -> tuple[Stage, ...]:
    return (Stage(ConvSpec("deconv", c.M, 3, c.kernel_size, 16)),)


def _two_layer(c: ModelConfig) -> tuple[Stage, ...]:
    return (Stage(ConvSpec("up", c.M, c.hidden, 13, 8), "igdn", True, ConvSpec("up_res", c.M, c.hidden, 13, 8)),
            Stage(ConvSpec("out", c.hidden, 3, 5, 2)))


def _two_layer_nores(c: ModelConfig) -> tuple[Stage, ...]:
    return Stage(ConvSpec("up", c.M, 2 * c.hidden, 13, 8), "igdn", True), Stage(ConvSpec("out", 2 * c.hidden, 3, 5, 2))


def _mbt2018(c: ModelConfig) -> tuple[Stage, ...]:
    return (Stage(ConvSpec("0", c.M, c.N, 5, 2), "1"), Stage(ConvSpec("2", c.N, c.N, 5, 2), "3"),
            Stage(ConvSpec("4", c.N, c.N, 5, 2), "5"), Stage(ConvSpec("6", c.N, 3, 5, 2)))


class Architecture(NamedTuple):
    """An architecture: its analysis (``"elic"``: ELIC g_a; ``"cnn"``: 4 × conv/GDN), its default N, which of
    the g_s options (``kernel_size``: the JPEG-like kernel; ``hidden``: the two-layer's width) it takes, and
    its g_s: ``synthesis(config)``, the stages at a config's widths, (B, M, h, w) → (B, 3, 16h, 16w)."""

    name: str
    analysis: str
    default_N: int
    options: tuple[str, ...]
    synthesis: Callable[[ModelConfig], tuple[Stage, ...]]


#: Every architecture, by name (paper Sec. 4; the two-layer without residual pairs with a 256-channel CNN g_a).
ARCHITECTURES = {a.name: a for a in (
    Architecture("jpeg-like", "elic", 192, ("kernel_size",), _jpeg_like),
    Architecture("two-layer", "elic", 192, ("hidden",), _two_layer),
    Architecture("two-layer-nores", "cnn", 256, ("hidden",), _two_layer_nores),
    Architecture("mbt2018-mean", "cnn", 192, (), _mbt2018),
)}
DEFAULT_ARCHITECTURE = "two-layer"


def architecture(name: str) -> Architecture:
    """The architecture called ``name``.

    Raises:
        KeyError: an unknown name (its message lists the known ones).
    """
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown model {name!r}; choose from {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


@dataclass(frozen=True)
class ModelConfig:
    """The widths and kinds of one model, as stored (JSON) in its weights file's ``config``.

    Fields: ``N`` (g_a width), ``M`` (channels of y and z, 320 in the paper), ``kernel_size`` (JPEG-like
    g_s kernel: 16 block transform … 32), ``hidden`` (two-layer g_s width C), ``hyper_synthesis``
    (:data:`HYPER_SYNTHESES`) and ``hyper_kernel`` (the cheap h_s's kernel, ≥ 4), ``variable_rate``
    (gain units for qualities 0–6) and ``lmbda_scale`` (λ(q) of a variable-rate model; None: the paper's).
    ``kernel_size`` and ``hidden`` are None for an architecture that has no such option.

    Raises:
        ValueError: a field of the wrong type or out of range (checked on construction).
    """

    architecture: str
    N: int
    M: int = 320
    kernel_size: int | None = None
    hidden: int | None = None
    hyper_synthesis: str = "paper"
    hyper_kernel: int = 6
    variable_rate: bool = False
    lmbda_scale: LmbdaScale | None = None

    def __post_init__(self):
        for name in ("N", "M", "hyper_kernel") + ARCHITECTURES[self.architecture].options:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        hyper_synthesis_layers(self.M, self.hyper_synthesis, self.hyper_kernel)  # checks the kind and kernel
        if not isinstance(self.variable_rate, bool):
            raise ValueError(f"variable_rate must be true or false, got {self.variable_rate!r}")
        if self.lmbda_scale is not None and not self.variable_rate:
            raise ValueError("lmbda_scale applies to a variable-rate model")

    @classmethod
    def parse(cls, name: str, config: dict | str | None = None) -> ModelConfig:
        """The config of architecture ``name`` from a weights file's JSON (or its dict, e.g. a builder's keyword
        arguments): absent fields take the architecture's defaults (N = its ``default_N``, kernel_size 18, hidden 12).

        Raises:
            KeyError: an unknown architecture; ValueError: not a JSON object, a key the architecture does not
                take, or a bad value.
        """
        arch = architecture(name)
        values = json.loads(config) if isinstance(config, str) else dict(config or {})
        if not isinstance(values, dict):
            raise ValueError(f"a model config must be a JSON object, got {config!r}")
        allowed = {f.name for f in fields(cls)} - {"architecture", "kernel_size", "hidden"} | set(arch.options)
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(f"{name} takes the config keys {', '.join(sorted(allowed))}, not {', '.join(unknown)}")
        defaults = {"N": arch.default_N, **{k: {"kernel_size": 18, "hidden": 12}[k] for k in arch.options}}
        if values.get("lmbda_scale") is not None:
            values["lmbda_scale"] = LmbdaScale.parse(values["lmbda_scale"])
        return cls(name, **{**defaults, **values})

    def to_dict(self) -> dict:
        """The builder's keyword arguments in full, as JSON values: every field but ``architecture`` and the
        options the architecture has not; ``lmbda_scale`` as [λ₀, r], or None."""
        values = {k: v for k, v in asdict(self).items()
                  if k != "architecture" and not (k in ("kernel_size", "hidden") and v is None)}
        values["lmbda_scale"] = None if self.lmbda_scale is None else [self.lmbda_scale.lmbda_min, self.lmbda_scale.ratio]
        return values

    def to_json(self) -> str:
        """The JSON stored in a weights file's ``config``: the fields that differ from the architecture's defaults
        (:meth:`parse` reads it back to an equal config)."""
        defaults = ModelConfig.parse(self.architecture).to_dict()
        return json.dumps({k: v for k, v in self.to_dict().items() if defaults.get(k) != v})

    def with_values(self, **values) -> ModelConfig:
        """A copy with some fields replaced, checked as on construction (``lmbda_scale`` may be [λ₀, r])."""
        if isinstance(values.get("lmbda_scale"), (list, tuple)):
            values["lmbda_scale"] = LmbdaScale.parse(values["lmbda_scale"])
        return replace(self, **values)

    @property
    def scale(self) -> LmbdaScale:
        """λ(q) of a variable-rate model: its ``lmbda_scale``, or the paper's."""
        return self.lmbda_scale or LmbdaScale()

    def synthesis(self) -> tuple[Stage, ...]:
        """The g_s stages of this model (:meth:`Architecture.synthesis`)."""
        return ARCHITECTURES[self.architecture].synthesis(self)

    def hyper_synthesis_layers(self) -> tuple[ConvSpec, ...]:
        """The transposed convolutions of this model's h_s (:func:`hyper_synthesis_layers`)."""
        return hyper_synthesis_layers(self.M, self.hyper_synthesis, self.hyper_kernel)


def hyper_synthesis_layers(M: int, kind: str = "paper", kernel: int = 6) -> tuple[ConvSpec, ...]:
    """The transposed convolutions of an h_s of ``kind`` (:data:`HYPER_SYNTHESES`; ``kernel``: the cheap one's), in
    order, each followed by a ReLU but the last, named as in the torch nn.Sequential (``layers.0``, ``layers.2``, ...):
    ẑ (B, M, h/4, w/4) → (B, 2M, h, w), μ then log σ.

    Raises:
        ValueError: an unknown kind, or a cheap kernel < 4 (its stride).
    """
    if kind not in HYPER_SYNTHESES:
        raise ValueError(f"unknown h_s kind {kind!r}; expected one of {HYPER_SYNTHESES}")
    if kind == "cheap":
        if kernel < 4:
            raise ValueError(f"the cheap h_s needs a kernel >= 4 (its stride), got {kernel}")
        return (ConvSpec("layers.0", M, 2 * M, kernel, 4),)
    return (ConvSpec("layers.0", M, M, 5, 2), ConvSpec("layers.2", M, M * 3 // 2, 5, 2),
            ConvSpec("layers.4", M * 3 // 2, 2 * M, 3, 1))
