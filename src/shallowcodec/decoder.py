"""The decoder without PyTorch: a ``.sdc`` file → pixels with numpy and constriction.

The paper's point is a cheap decoder (Yang & Mandt, ICCV 2023, Sec. 3), so the product decodes
with nothing heavier than numpy: ``shallowcodec decompress``, ``shallowcodec.decompress`` and
the Pillow plugin (pillow.py) run this module, and neither PyTorch nor CompressAI is imported
(start-up is that of numpy). PyTorch stays for encoding, SGA and training (codec.py)::

    file ──container.unpack──► header, z string, y string
    z string ──ANS (per-channel tables)──► ẑ_g = symbols + medians
    ẑ_g ──exact h_s (entropy_parameters.py)──► μ_g, scale indexes
    y string ──ANS (scale-index tables)──► ŷ_g = symbols + μ_g          (the same ŷ as the encoder's)
    ŷ = γ⁻¹_y·ŷ_g ──g_s (layers.py, float32, tiles)──► x̂·255 ──clip, round──► pixels

Everything up to ŷ is the code the torch model runs too (entropy_coding.py and
entropy_parameters.py have no torch), so ŷ is bit-identical to the encoder's on every CPU. g_s
is a numpy port of each architecture's synthesis, read from the same weights file; it matches
the torch g_s up to float32 rounding (pixels within ±1, tests/test_decoder.py).
"""

from __future__ import annotations

import json
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import SafetensorError, safe_open

from shallowcodec import entropy_coding
from shallowcodec.container import ALIGN, Bitstream, ContainerError, Header, check_size, unpack
from shallowcodec.entropy_parameters import (
    EntropyParameters,
    ExactGains,
    entropy_parameters,
    exact_gains,
    fixed_point_layer,
    log_scale_thresholds,
)
from shallowcodec.layers import ConvTranspose2d, InverseGDN
from shallowcodec.model_files import ModelNotFoundError, check_finite, embedded_path, weights_id
from shallowcodec.quality import MAX_QUALITY, LmbdaScale
from shallowcodec.tiling import SYNTHESIS_MARGIN, tiled

#: Core size of a g_s tile, in latents: 64 (1024 pixels) decodes a 768×512 photo as one tile, whose
#: margins would otherwise cost 17 % more g_s work (tiling.SYNTHESIS_TILE = 32 is the torch g_s's).
SYNTHESIS_TILE = 64
#: Strides of the transposed convolutions of each kind of h_s (transforms.HyperSynthesis).
HYPER_SYNTHESIS_STRIDES = {"paper": (2, 2, 1), "cheap": (4,)}


def check_header(header: Header, architecture: str, quality: float | None, lmbda: float | None, weights: int,
                 scale: LmbdaScale) -> None:
    """Refuse a file that these weights cannot decode (shared by this decoder and codec.Codec).

    Args:
        header: the file's header.
        architecture, weights: the decoder's architecture and weights_id.
        quality, lmbda: a fixed-λ model's quality and λ; None for a variable-rate model, which
            decodes any quality in [0, 6] at λ(q) of its λ ``scale`` (quality.LmbdaScale).

    Raises:
        ContainerError: another architecture or weights, a quality the weights do not serve,
            a λ other than the quality's, or an image over the size limit (one-line messages).
    """
    if header.architecture != architecture:
        raise ContainerError(f"file is {header.architecture}; this decoder is {architecture}")
    if quality is None and not 0 <= header.quality <= MAX_QUALITY:
        raise ContainerError(f"cannot decode: quality {header.quality:g} is outside 0..{MAX_QUALITY}")
    if quality is not None and header.quality != quality:
        raise ContainerError(f"cannot decode: these {architecture} weights are fixed-λ quality {quality}, "
                             f"the file is quality {header.quality:g}")
    if header.weights_id != weights:
        raise ContainerError(f"file was encoded with other {header.architecture} weights "
                             f"({header.weights_id:08x}; these: {weights:08x}): decode it with the weights "
                             "that encoded it (decompress --weights)")
    expected = float(np.float32(scale(header.quality) if lmbda is None else lmbda))
    if header.lmbda != expected:
        raise ContainerError(f"file's λ {header.lmbda!r} is not λ of {architecture} q{header.quality:g} ({expected!r})")
    check_size(header.height, header.width, ContainerError)


def _reason(error: Exception) -> str:
    """One line of why a weights file did not load (a missing tensor or entry is named, not repr'd)."""
    if isinstance(error, KeyError):
        return f"it lacks {error.args[0]!r} (not a shallowcodec weights file, or an older one)"
    if isinstance(error, SafetensorError):  # its own text ("header too large") says nothing to a user
        return "not a shallowcodec weights file (not safetensors)"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class Decoder:
    """The decoding half of a trained model (h_s, g_s, gains, entropy tables), in numpy.

    Reads only the tensors the decoder needs from a weights file (model_files.py); any
    architecture of zoo.ARCHITECTURES and either h_s (config ``hyper_synthesis``).

    Args:
        path: a weights file (safetensors, written by zoo.save_weights, with its CDF tables).

    Raises:
        ModelNotFoundError: the file is missing, unreadable, not a shallowcodec weights file,
            or lacks the integer CDF tables (files older than format version 3).
    """

    def __init__(self, path: Path):
        try:
            self.weights_id = weights_id(Path(path).read_bytes())
            with safe_open(path, "numpy") as f:
                meta = f.metadata() or {}
                self.architecture = meta["architecture"]
                self.config = json.loads(meta["config"])
                tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(("g_a.", "h_a."))}
            self.quality = None if self.config.get("variable_rate") else int(meta["quality"])
            self.lmbda = None if self.quality is None else float(meta["lmbda"])
            self.scale = LmbdaScale.of_config(self.config)
            self._load(tensors)
        except (OSError, SafetensorError, KeyError, ValueError, TypeError) as e:
            raise ModelNotFoundError(f"cannot load weights {path}: {_reason(e)}") from None

    def _load(self, t: dict[str, np.ndarray]) -> None:
        """Decoder state from the file's tensors (names as in zoo.save_weights).

        Raises:
            ValueError: a float tensor holds NaN or ±inf (it would decode to garbage), or h_s has
                another number of layers than its config's.
        """
        check_finite(t)

        def f32(name: str) -> np.ndarray:
            return t[name].astype(np.float32)

        def tables(prefix: str) -> entropy_coding.CdfTables:
            return entropy_coding.CdfTables(t[f"{prefix}._quantized_cdf"], t[f"{prefix}._cdf_length"],
                                            t[f"{prefix}._offset"])

        self.z_tables, self.y_tables = tables("entropy_bottleneck"), tables("gaussian_conditional")
        self.z_medians = f32("entropy_bottleneck.quantiles")[:, 0, 1].reshape(1, -1, 1, 1)
        self.thresholds = log_scale_thresholds(t["gaussian_conditional.scale_table"])
        strides = HYPER_SYNTHESIS_STRIDES[self.config.get("hyper_synthesis", "paper")]
        names = sorted({k.rsplit(".", 1)[0] for k in t if k.startswith("h_s.layers.")}, key=lambda k: int(k.split(".")[-1]))
        if len(names) != len(strides):
            raise ValueError(f"h_s has {len(names)} layers, expected {len(strides)}")
        self.h_s = [fixed_point_layer(f32(f"{n}.weight"), f32(f"{n}.bias"), s, relu=i < len(names) - 1)
                    for i, (n, s) in enumerate(zip(names, strides))]
        self.log_gains = None if self.quality is not None else {
            "y": f32("gain.log_y_gain"), "y_inv": f32("gain.log_y_gain_inv"), "z_inv": f32("gain.log_z_gain_inv")}
        self.g_s = synthesis(self.architecture, {k[4:]: f32(k) for k in t if k.startswith("g_s.")})
        self._gains: dict[float, ExactGains] = {}

    @property
    def channels(self) -> int:
        """M, the latent channels of y and z."""
        return self.z_medians.shape[1]

    def gains(self, quality: float) -> ExactGains | None:
        """The exact gains of a quality (None for a fixed-λ model), as the encoder computes them."""
        if self.log_gains is None:
            return None
        if quality not in self._gains:
            self._gains[quality] = exact_gains(self.log_gains, quality)
        return self._gains[quality]

    def check(self, header: Header) -> None:
        """Refuse a header these weights cannot decode (:func:`check_header`).

        Raises:
            ContainerError: see :func:`check_header`.
        """
        check_header(header, self.architecture, self.quality, self.lmbda, self.weights_id, self.scale)

    def decode_latents(self, stream: Bitstream) -> np.ndarray:
        """The coded ŷ_g (1, M, 4·⌈H/64⌉, 4·⌈W/64⌉), float64, of a parsed bitstream: entropy decoding and
        the exact h_s, bit-identical to the torch model's (hyperprior.decompress_latents) on every CPU.

        Raises:
            ContainerError: the header does not fit these weights, or a string is damaged, runs
                out or has data left over.
        """
        self.check(stream.header)
        try:
            params = self.entropy_parameters(self.decode_z(stream), stream.header.quality)
            return self.decode_y(stream, params)
        except entropy_coding.EntropyCodingError as e:
            raise ContainerError(f"cannot decode: {e}") from None

    def decode_z(self, stream: Bitstream) -> np.ndarray:
        """Stage 1: the coded ẑ_g (1, M, ⌈H/64⌉, ⌈W/64⌉) float32 = z symbols (one CDF table per channel) + medians.

        Raises:
            entropy_coding.EntropyCodingError: a damaged z string.
        """
        h = stream.header
        shape = (1, self.channels, -(-h.height // ALIGN), -(-h.width // ALIGN))
        symbols = entropy_coding.decode(stream.z_string, entropy_coding.channel_indexes(shape), self.z_tables)
        return symbols.astype(np.float32) + self.z_medians

    def entropy_parameters(self, z_hat: np.ndarray, quality: float) -> EntropyParameters:
        """Stage 2: μ_g and scale indexes of y_g (1, M, 4h, 4w) from ẑ_g (1, M, h, w): the exact h_s."""
        return entropy_parameters(self.h_s, z_hat, self.gains(quality), self.thresholds)

    def decode_y(self, stream: Bitstream, params: EntropyParameters) -> np.ndarray:
        """Stage 3: ŷ_g = y symbols (scale-index tables) + μ_g, float64 (1, M, 4h, 4w); reuses ``params.mu``.

        Raises:
            entropy_coding.EntropyCodingError: a damaged y string.
        """
        mu = params.mu
        mu += entropy_coding.decode(stream.y_string, params.indexes, self.y_tables)
        return mu

    def render(self, y_hat: np.ndarray, quality: float, height: int, width: int) -> np.ndarray:
        """Stage 4: (height, width, 3) uint8 pixels of the coded ŷ_g (:meth:`decode_latents`): g_s over tiles
        of γ⁻¹_y·ŷ_g (tiling.py), x̂·255 clipped to [0, 255] and rounded (half to even)."""
        gains = self.gains(quality)
        y = y_hat.astype(np.float32) if gains is None else np.multiply(  # γ⁻¹·ŷ in float64, stored as float32
            y_hat, gains.y_inv, out=np.empty(y_hat.shape, np.float32), casting="same_kind")
        x = tiled(self._to_pixels, y, Fraction(16), SYNTHESIS_TILE, SYNTHESIS_MARGIN)
        return np.ascontiguousarray(x[0, :, :height, :width].transpose(1, 2, 0))

    def _to_pixels(self, y: np.ndarray) -> np.ndarray:
        """(1, M, h, w) ungained ŷ → (1, 3, 16h, 16w) uint8, a view of (16h, 16w, 3) pixels (the image's layout)."""
        x = self.g_s(y[0])
        np.maximum(x, 0, out=x)  # a clip: np.clip is slower on this strided view
        np.minimum(x, 255, out=x)
        np.rint(x, out=x)
        return x.astype(np.uint8, order="C").transpose(2, 0, 1)[None]

    def decode(self, stream: Bitstream) -> np.ndarray:
        """(H, W, 3) uint8 RGB pixels of a parsed bitstream.

        Raises:
            ContainerError: as :meth:`decode_latents`.
        """
        h = stream.header
        return self.render(self.decode_latents(stream), h.quality, h.height, h.width)


def synthesis(architecture: str, t: dict[str, np.ndarray]):
    """The numpy g_s of an architecture: a function (M, h, w) float32 → x̂·255 (16h, 16w, 3) float32, unclamped
    (the ×255 is folded into the last layer's weights; the JPEG-like g_s writes pixels in this layout).

    Args:
        architecture: a zoo.ARCHITECTURES name.
        t: the g_s tensors, float32, named as in the torch module without the ``g_s.`` prefix.

    Raises:
        ValueError: an unknown architecture.
    """
    def conv(name: str, stride: int, scale: float = 1.0) -> ConvTranspose2d:
        return _conv(t, name, stride, scale)

    if architecture == "jpeg-like":  # one ConvT(M→3, k, s16): Sec. 3.1
        deconv = conv("deconv", 16, 255)
        return lambda y: deconv(y, channels_last=True)
    if architecture in ("two-layer", "two-layer-nores"):  # Sec. 3.2
        return _two_layer(t)
    if architecture == "mbt2018-mean":  # 4 × ConvT(k5, s2) with IGDN between
        layers = [conv("0", 2), InverseGDN(t["1.beta"], t["1.gamma"], l1=False), conv("2", 2),
                  InverseGDN(t["3.beta"], t["3.gamma"], l1=False), conv("4", 2),
                  InverseGDN(t["5.beta"], t["5.gamma"], l1=False)]
        last = conv("6", 2, 255)

        def mbt(y: np.ndarray) -> np.ndarray:
            for layer in layers:
                y = layer(y)
            return last(y, channels_last=True)
        return mbt
    raise ValueError(f"no numpy synthesis for architecture {architecture!r}")


def _conv(t: dict[str, np.ndarray], name: str, stride: int, scale: float = 1.0) -> ConvTranspose2d:
    """The numpy layer of g_s's transposed convolution ``name``, its weight and bias × ``scale`` (255: pixels)."""
    return ConvTranspose2d(t[f"{name}.weight"] * np.float32(scale), t[f"{name}.bias"] * np.float32(scale), stride)


def _two_layer(t: dict[str, np.ndarray]):
    """Two-layer g_s: IGDN1(ConvT_k13s8(y)) [+ ConvT_res_k13s8(y)] → ConvT_k5s2; the two k13 layers as one GEMM."""
    width = t["up.weight"].shape[1]
    residual = "up_res.weight" in t
    up = ConvTranspose2d(np.concatenate([t["up.weight"], t["up_res.weight"]], axis=1) if residual else t["up.weight"],
                         np.concatenate([t["up.bias"], t["up_res.bias"]]) if residual else t["up.bias"], 8)
    igdn = InverseGDN(t["igdn.beta"], t["igdn.gamma"], l1=True)
    out = _conv(t, "out", 2, 255)

    def pointwise(a: np.ndarray) -> np.ndarray:  # (..., 2·width or width, P) → (..., width, P)
        h = igdn.pixels(a[..., :width, :])
        if residual:
            h += a[..., width:, :]
        return h

    def two_layer(y: np.ndarray) -> np.ndarray:
        h = up.uncropped(y, pointwise=pointwise)  # IGDN1 and the residual sum before the phases interleave
        return out(up.crop(h, *y.shape[1:]), channels_last=True)
    return two_layer


@lru_cache(maxsize=8)
def embedded_decoder(architecture: str) -> Decoder:
    """The :class:`Decoder` of an embedded model, loaded once per process.

    Raises:
        ModelNotFoundError: unknown architecture, or no embedded weights for it.
    """
    return Decoder(embedded_path(architecture))


def decoder_for(header: Header) -> Decoder:
    """The embedded :class:`Decoder` of the model a file's header names.

    Raises:
        ContainerError: an unknown model, or none embedded (one line).
    """
    try:
        return embedded_decoder(header.architecture)
    except ModelNotFoundError as e:
        raise ContainerError(f"cannot decode: {e}") from None


def decompress_array(data: bytes) -> np.ndarray:
    """Decode a ``.sdc`` file with the embedded model its header names: (H, W, 3) uint8 RGB.

    Raises:
        ContainerError: damaged, truncated or foreign file, or unknown model/quality/weights.
    """
    stream = unpack(data)
    return decoder_for(stream.header).decode(stream)


def decompress(data: bytes):
    """Decode a ``.sdc`` file with the embedded model its header names, to an RGB ``PIL.Image``.

    Raises:
        ContainerError: damaged, truncated or foreign file, or unknown model/quality/weights.
    """
    return Image.fromarray(decompress_array(data), "RGB")
