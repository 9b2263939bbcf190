"""The codec: image → padding → g_a → entropy coding → ``.sdc`` container, and back.

This is the public Python API for encoding (and decoding with the torch model)::

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
from shallowcodec.decoder import check_header
from shallowcodec.entropy_coding import EntropyCodingError
from shallowcodec.hyperprior import LatentStrings
from shallowcodec.images import ImageError, image_to_tensor, tensor_to_image
from shallowcodec.model_files import DEFAULT_ARCHITECTURE, ModelNotFoundError
from shallowcodec.quality import DEFAULT_QUALITY, snap_quality
from shallowcodec.tiling import (
    ANALYSIS_MARGIN,
    ANALYSIS_TILE,
    HYPER_ANALYSIS_MARGIN,
    HYPER_ANALYSIS_TILE,
    SYNTHESIS_MARGIN,
    SYNTHESIS_TILE,
    tiled,
)
from shallowcodec.zoo import LoadedModel, load_embedded


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

    Args:
        loaded: the model and the facts of its weights file (architecture, λ, weights_id).
        quality: for variable-rate weights, a quality in [0, 6] (fractions interpolate; snapped
            to 1/256; default 3); for fixed-λ weights, None or the quality they were trained for.

    Raises:
        ValueError: a quality outside [0, 6], or another quality than a fixed-λ model's.
    """

    def __init__(self, loaded: LoadedModel, quality: float | None = None):
        self.loaded = loaded
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
        """Decode a ``.sdc`` file to a (3, H, W) uint8 tensor.

        Raises:
            ContainerError: damaged file, or one made for another model, quality or weights.
        """
        return self.decode(unpack(data))

    def decompress(self, data: bytes) -> Image.Image:
        """Decode a ``.sdc`` file to an RGB PIL image (see :meth:`decompress_tensor`)."""
        return tensor_to_image(self.decompress_tensor(data))

    def decode(self, stream: Bitstream) -> Tensor:
        """Decode a parsed bitstream to (3, H, W) uint8 (x̂ rounded to integers).

        Raises:
            ContainerError: the stream was made for another model, quality or weights, or its
                entropy-coded strings are damaged, truncated or extended.
        """
        return self.render(self.decode_latents(stream), stream.header.height, stream.header.width)

    def decode_latents(self, stream: Bitstream) -> Tensor:
        """The coded ŷ_g (1, M, ⌈H/64⌉·4, ⌈W/64⌉·4), float64, of a parsed bitstream: entropy decoding
        and h_s only, bit-identical on every CPU.

        Raises:
            ContainerError: as :meth:`decode`.
        """
        self._check_header(stream.header)
        z_shape = (-(-stream.header.height // ALIGN), -(-stream.header.width // ALIGN))
        try:
            return self.loaded.model.decompress_latents(LatentStrings(stream.z_string, stream.y_string, z_shape),
                                                        self.quality)
        except EntropyCodingError as e:
            raise ContainerError(f"cannot decode: {e}") from None

    def render(self, y_hat: Tensor, height: int, width: int) -> Tensor:
        """(3, height, width) uint8 image of the coded ŷ_g (:meth:`decode_latents`): g_s over tiles of ŷ."""
        y = self.loaded.model.ungain(y_hat, self.quality)
        return tiled(self._to_pixels, y, Fraction(16), SYNTHESIS_TILE, SYNTHESIS_MARGIN)[0, :, :height, :width]

    def _to_pixels(self, y: Tensor) -> Tensor:
        """(1, M, h, w) ungained ŷ → (1, 3, 16h, 16w) uint8: x̂ clamped to [0, 1], ×255, rounded."""
        return self.loaded.model.synthesis_exact(y).clamp_(0, 1).mul_(255).round_().to(torch.uint8)

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
