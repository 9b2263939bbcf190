"""The codec: image → padding → g_a → entropy coding → ``.sdc`` container, and back.

This is the public Python API for encoding (decoding runs the numpy decoder, decoder.py)::

    import shallowcodec
    codec = shallowcodec.load("two-layer", quality=3)
    data = codec.compress(PIL.Image.open("photo.png"))   # bytes of a .sdc file
    image = shallowcodec.decompress(data)                 # PIL.Image, decoded without PyTorch (decoder.py)

Images of any size from 1×1 up are mirror-padded (bottom/right) to a multiple of 64 before
encoding and cropped back after decoding (paper, Evaluation).
"""

from __future__ import annotations

from fractions import Fraction

import torch
from PIL import Image
from torch import Tensor

from shallowcodec import sga
from shallowcodec.container import ALIGN, Bitstream, ContainerError, Header, check_size, pack, unpack
from shallowcodec.decoder import Decoder, check_header
from shallowcodec.images import ImageError, image_to_tensor
from shallowcodec.model_files import DEFAULT_ARCHITECTURE, ModelNotFoundError
from shallowcodec.quality import DEFAULT_QUALITY, snap_quality
from shallowcodec.tiling import ANALYSIS_MARGIN, ANALYSIS_TILE, HYPER_ANALYSIS_MARGIN, HYPER_ANALYSIS_TILE, tiled
from shallowcodec.zoo import LoadedModel, load_embedded, model_weights


def mirror_pad(x: Tensor, align: int = ALIGN) -> Tensor:
    """Mirror-pad (B, C, H, W) bottom/right to multiples of ``align`` (reflect, edge not repeated).

    Unlike ``F.pad(mode="reflect")`` this works for any size, including padding larger than
    the image (the reflection repeats) and 1-pixel images (the pixel repeats).
    """
    h, w = x.shape[-2:]
    return x[..., _mirror_index(h, -h % align), :][..., _mirror_index(w, -w % align)]


def _mirror_index(n: int, pad: int) -> Tensor:
    idx = torch.arange(n + pad)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx % period
    return torch.where(idx < n, idx, period - idx)


class Codec:
    """A loaded model at one quality, bound to the container format.

    Encodes with the torch model (g_a, h_a, SGA) and decodes with :class:`decoder.Decoder`, the numpy decoder
    built from the same weights in memory, so that its pixels and times are those of ``shallowcodec.decompress``.

    Args:
        loaded: the model and the facts of its weights file (architecture, λ, weights_id).
        quality: for variable-rate weights, a quality in [0, 6] (fractions interpolate; snapped
            to 1/256; default 3); for fixed-λ weights, None or the quality they were trained for.

    Raises:
        ValueError: a quality outside [0, 6], or another quality than a fixed-λ model's.
    """

    def __init__(self, loaded: LoadedModel, quality: float | None = None, decoder: Decoder | None = None):
        self.loaded = loaded
        self._decoder = decoder
        if not loaded.variable_rate:
            if quality is not None and quality != loaded.quality:
                raise ValueError(f"these {loaded.architecture} weights are fixed-λ quality {loaded.quality}, "
                                 f"not quality {quality:g}")
            self.quality: float = loaded.quality
            self.lmbda: float = loaded.lmbda
        else:
            self.quality = snap_quality(DEFAULT_QUALITY if quality is None else quality)
            self.lmbda = loaded.scale(self.quality)

    @property
    def decoder(self) -> Decoder:
        """The numpy decoder of the model's weights (as they are at first use): what ``shallowcodec.decompress``
        runs. Built on first use (encoding alone never needs it) and shared by :meth:`at`."""
        if self._decoder is None:
            self._decoder = Decoder(model_weights(self.loaded))
        return self._decoder

    def at(self, quality: float) -> Codec:
        """This model at another quality, sharing the loaded model and the numpy decoder (cheap).

        Raises:
            ValueError: as the constructor.
        """
        return Codec(self.loaded, quality, self.decoder)

    @property
    def architecture(self) -> str:
        """The model's architecture name, e.g. "two-layer"."""
        return self.loaded.architecture

    @property
    def label(self) -> str:
        """Short name such as "two-layer q3" or "two-layer q2.5"."""
        return f"{self.architecture} q{self.quality:g}"

    def compress(self, image: Image.Image | Tensor, effort: int = sga.DEFAULT_EFFORT, *, sga_steps: int | None = None,
                 sga_seconds: float | None = None, seed: int = 0, progress: bool = False) -> bytes:
        """Compress a PIL image or a (3, H, W) uint8 tensor to the bytes of a ``.sdc`` file.

        ``effort`` trades encode time for bits (sga.EFFORT_STEPS): 0 is the amortized encoder
        alone; higher levels refine the latents of this image by SGA (Yang & Mandt 2023, Sec. 3.4)
        for more iterations, each costing time in proportion to the image's pixels. ``sga_steps``
        (paper: 3000) or an ``sga_seconds`` budget set the iterations directly instead. The
        decoder is the same for every effort.

        Raises:
            ImageError: a tensor of the wrong shape or dtype, or an empty image.
            ValueError: an effort outside 0..:data:`sga.MAX_EFFORT`.
        """
        return self.compress_batch([image], effort, sga_steps=sga_steps, sga_seconds=sga_seconds, seed=seed,
                                   progress=progress)[0]

    def compress_batch(self, images: list, effort: int = sga.DEFAULT_EFFORT, *, sga_steps: int | None = None,
                       sga_seconds: float | None = None, seed: int = 0, progress: bool = False) -> list[bytes]:
        """Compress images of equal size as one batch (SGA optimizes them together); see :meth:`compress`.

        Raises:
            ImageError: no image, a bad image, or images of different sizes.
            ValueError: an effort outside 0..:data:`sga.MAX_EFFORT`.
        """
        steps = sga.effort_steps(effort) if sga_steps is None else sga_steps
        if not images:
            raise ImageError("no image to compress")
        xs = [self._as_tensor(image) for image in images]
        size = tuple(xs[0].shape[-2:])
        if any(tuple(x.shape[-2:]) != size for x in xs):
            raise ImageError("images of a batch must have equal sizes")
        if steps == 0 and sga_seconds is None:
            return [self.pack_latents(*self.analysis(mirror_pad(x[None])), size) for x in xs]
        padded = [mirror_pad(x[None]) for x in xs]
        y, z = (torch.cat(latents) for latents in zip(*(self.analysis(x) for x in padded)))
        y, z = sga.refine_tiled(self.loaded.model, torch.cat(padded).float() / 255, y, z, self.lmbda, size,
                                quality=self.quality, steps=steps, seconds=sga_seconds, seed=seed, progress=progress)
        return [self.pack_latents(y[i : i + 1], z[i : i + 1], size) for i in range(len(xs))]

    def analysis(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Coded-domain latents y_g (1, M, H/16, W/16) and z_g (1, M, H/64, W/64) of a padded (1, 3, H, W)
        uint8 image: :func:`analysis` times this quality's gains."""
        return self.gained(*analysis(self.loaded.model, x))

    @torch.no_grad()
    def gained(self, y: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """Coded-domain latents at this codec's quality from the ungained (y, z) of :func:`analysis`
        (new tensors: the same analysis serves every quality, e.g. in rate control)."""
        g = self.loaded.model.gains(self.quality, 1)
        return (y, z) if g is None else (y * g.y, z * g.z)

    def pack_latents(self, y: Tensor, z: Tensor, size: tuple[int, int]) -> bytes:
        """Entropy-code coded-domain latents (rounded around μ and the prior's medians) into a ``.sdc`` file."""
        strings = self.loaded.model.compress_latents(y, z, self.quality)
        header = Header(self.architecture, self.quality, self.lmbda, self.loaded.weights_id, *map(int, size))
        return pack(header, strings.z_string, strings.y_string)

    def decompress_tensor(self, data: bytes) -> Tensor:
        """Decode a ``.sdc`` file to a (3, H, W) uint8 tensor with the numpy decoder (:attr:`decoder`).

        Raises:
            ContainerError: damaged file, or one made for another model, quality or weights.
        """
        return self.decode(unpack(data))

    def decompress(self, data: bytes) -> Image.Image:
        """Decode a ``.sdc`` file to an RGB PIL image (see :meth:`decompress_tensor`)."""
        stream = unpack(data)
        self._check_header(stream.header)
        return Image.fromarray(self.decoder.decode(stream), "RGB")

    def decode(self, stream: Bitstream) -> Tensor:
        """Decode a parsed bitstream to (3, H, W) uint8 (x̂ rounded to integers) with the numpy decoder.

        Raises:
            ContainerError: the stream was made for another model, quality or weights, or its
                entropy-coded strings are damaged, truncated or extended.
        """
        self._check_header(stream.header)
        return torch.from_numpy(self.decoder.decode(stream)).permute(2, 0, 1)

    def decode_latents(self, stream: Bitstream) -> Tensor:
        """The coded ŷ_g (1, M, ⌈H/64⌉·4, ⌈W/64⌉·4), float64, of a parsed bitstream: entropy decoding
        and h_s only (decoder.Decoder.decode_latents), bit-identical on every CPU.

        Raises:
            ContainerError: as :meth:`decode`.
        """
        self._check_header(stream.header)
        return torch.from_numpy(self.decoder.decode_latents(stream))

    def _check_header(self, header: Header) -> None:
        if (header.architecture, header.quality) != (self.architecture, self.quality):
            raise ContainerError(f"file is {header.architecture} quality {header.quality:g}; "
                                 f"this codec is {self.label}")
        check_header(header, self.architecture, self.loaded.quality, self.loaded.lmbda, self.loaded.weights_id,
                     self.loaded.scale)

    @staticmethod
    def _as_tensor(image: Image.Image | Tensor) -> Tensor:
        if isinstance(image, Image.Image):
            image = image_to_tensor(image)[0]
        if not (isinstance(image, Tensor) and image.dtype == torch.uint8 and image.dim() == 3 and image.shape[0] == 3):
            raise ImageError("expected a PIL image or a (3, H, W) uint8 tensor")
        if image.shape[1] * image.shape[2] == 0:
            raise ImageError("empty image")
        check_size(image.shape[1], image.shape[2], ImageError)
        return image


@torch.no_grad()
def analysis(model, x: Tensor) -> tuple[Tensor, Tensor]:
    """Ungained latents y = g_a(x) (1, M, H/16, W/16) and z = h_a(y) (1, M, H/64, W/64) of a padded
    (1, 3, H, W) uint8 image, computed over overlapping tiles (tiling.py) so that memory stays bounded;
    the same for every quality (the gains only scale them: :meth:`Codec.gained`)."""
    y = tiled(lambda t: model.g_a(t.float() / 255), x, Fraction(1, 16), ANALYSIS_TILE, ANALYSIS_MARGIN)
    return y, tiled(model.h_a, y, Fraction(1, 4), HYPER_ANALYSIS_TILE, HYPER_ANALYSIS_MARGIN)


def load(name: str = DEFAULT_ARCHITECTURE, quality: float | None = None) -> Codec:
    """Load an embedded model as a :class:`Codec` at ``quality`` in [0, 6] (default 3).

    Fractional qualities interpolate the gains (snapped to 1/256); λ = λ₀ · r^quality, the model's λ scale.

    Raises:
        ModelNotFoundError: unknown model name, or a quality outside [0, 6].
    """
    loaded = load_embedded(name)
    try:
        return Codec(loaded, quality)
    except ValueError as e:
        raise ModelNotFoundError(f"model {name!r}: {e}") from None
