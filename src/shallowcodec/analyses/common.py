"""What several analyses share: centre crops of images, and the codecs of embedded models or weights files."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from shallowcodec.codec import Codec
from shallowcodec.images import read_image
from shallowcodec.zoo import load_embedded, load_weights


def center_crop(x: Tensor, size: int) -> Tensor:
    """The central size × size crop of a (3, H, W) image.

    Raises:
        ValueError: the image is smaller than ``size`` on a side.
    """
    h, w = x.shape[-2:]
    if min(h, w) < size:
        raise ValueError(f"image of {w}x{h} is smaller than the {size}x{size} crop")
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, top : top + size, left : left + size].contiguous()


def center_crops(paths: list[Path], size: int) -> list[Tensor]:
    """The central size × size crops (3, size, size) uint8 of image files.

    Raises:
        ImageError: an unreadable image; ValueError: one smaller than ``size``.
    """
    return [center_crop(read_image(p)[0], size) for p in paths]


def named_codecs(models: list[str], weights: list[Path] | None, quality: float) -> list[tuple[str, Codec]]:
    """(name, codec) of weights files (named "architecture (file)") if given, else of embedded models, at
    ``quality`` (0–6; fixed-λ weights: their own quality).

    Raises:
        ModelNotFoundError: unknown model or unreadable weights; ValueError: a quality outside 0–6.
    """
    if weights:
        loaded = [(f"{m.architecture} ({path.name})", m) for path in weights for m in [load_weights(path)]]
    else:
        loaded = [(name, load_embedded(name)) for name in models]
    return [(name, Codec(m, quality if m.variable_rate else None)) for name, m in loaded]
