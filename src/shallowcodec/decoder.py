"""The decoder without PyTorch: a ``.sdc`` file → pixels with numpy and constriction.

The paper's point is a cheap decoder (Yang & Mandt, ICCV 2023, Sec. 3), so the product decodes
with nothing heavier than numpy: ``shallowcodec decompress``, ``shallowcodec.decompress``, the
Pillow plugin (pillow.py), ``codec.Codec`` and ``shallowcodec eval`` all run this module, and
neither PyTorch nor CompressAI is imported (start-up is that of numpy). PyTorch stays for
encoding, SGA and training (codec.py, hyperprior.py)::

    file ──container.unpack──► header, z string, y string
    z string ──ANS (per-channel tables)──► ẑ_g = symbols + medians
    ẑ_g ──exact h_s (entropy_parameters.py)──► μ_g, scale indexes
    y string ──ANS (scale-index tables)──► ŷ_g = symbols + μ_g          (the same ŷ as the encoder's)
    ŷ = γ⁻¹_y·ŷ_g ──g_s (layers/synthesis.py, float32, tiles)──► x̂·255 ──clip, round──► pixels

Everything up to ŷ is the code the encoder runs too (entropy_coding.py and entropy_parameters.py
have no torch), so ŷ is bit-identical to the encoder's on every CPU. g_s is assembled from the
architecture's stages (architectures.py) out of numpy layers; it matches the torch g_s that
training uses up to float32 rounding (pixels within ±1, tests/test_decoder.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import SafetensorError

from shallowcodec import entropy_coding
from shallowcodec.container import ALIGN, Bitstream, ContainerError, Header, check_size, unpack
from shallowcodec.entropy_parameters import (
    EntropyParameters,
    ExactGains,
    entropy_parameters,
    exact_gains,
    fixed_point_layers,
    log_scale_thresholds,
)
from shallowcodec.layers.synthesis import Synthesis
from shallowcodec.model_files import ModelNotFoundError, ModelWeights, check_finite, embedded_path, read_weights
from shallowcodec.quality import MAX_QUALITY, LmbdaScale
from shallowcodec.tiling import SYNTHESIS_MARGIN, SYNTHESIS_TILE, tiled


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

    Built from the tensors the decoder needs: of a weights file (model_files.read_weights), or of
    a model in memory (codec.Codec passes its torch model's); any architecture of
    architectures.ARCHITECTURES and either h_s, as its config describes them.

    Args:
        source: a weights file (safetensors, written by zoo.save_weights, with its CDF tables), or
            the model's model_files.ModelWeights.

    Raises:
        ModelNotFoundError: the file is missing, unreadable, not a shallowcodec weights file, or the
            weights lack a tensor (the integer CDF tables: files older than format version 3) or hold NaN.
    """

    def __init__(self, source: Path | ModelWeights):
        try:
            weights = source if isinstance(source, ModelWeights) else read_weights(source)
            self.architecture, self.config = weights.architecture, weights.config
            self.quality, self.lmbda, self.weights_id = weights.quality, weights.lmbda, weights.weights_id
            self._load(weights.tensors)
        except (OSError, SafetensorError, KeyError, ValueError, TypeError) as e:
            raise ModelNotFoundError(f"cannot load weights {getattr(source, 'architecture', source)}: "
                                     f"{_reason(e)}") from None
        self.scale = self.config.scale

    def _load(self, t: Mapping[str, np.ndarray]) -> None:
        """Decoder state from the tensors (names as in zoo.save_weights).

        Raises:
            ValueError: a float tensor holds NaN or ±inf (it would decode to garbage).
        """
        t = {k: v for k, v in t.items() if not k.startswith(("g_a.", "h_a."))}
        check_finite(t)

        def f32(name: str) -> np.ndarray:
            return np.asarray(t[name], dtype=np.float32)

        self.z_tables = entropy_coding.CdfTables.of(t, "entropy_bottleneck")
        self.y_tables = entropy_coding.CdfTables.of(t, "gaussian_conditional")
        self.z_medians = f32("entropy_bottleneck.quantiles")[:, 0, 1].reshape(1, -1, 1, 1)
        self.thresholds = log_scale_thresholds(t["gaussian_conditional.scale_table"])
        self.h_s = fixed_point_layers(self.config.hyper_synthesis_layers(), {k[4:]: t[k] for k in t if k.startswith("h_s.")})
        self.log_gains = None if self.quality is not None else {
            "y": f32("gain.log_y_gain"), "y_inv": f32("gain.log_y_gain_inv"), "z_inv": f32("gain.log_z_gain_inv")}
        self.g_s = Synthesis(self.config.synthesis(), {k[4:]: f32(k) for k in t if k.startswith("g_s.")})
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
        the exact h_s, bit-identical to the encoder's ŷ (hyperprior.ShallowHyperprior.compress_latents) on every CPU.

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
