"""Classical codecs through Pillow, with the same interface as the learned :class:`~shallowcodec.codec.Codec`.

Baselines for the rate–distortion comparison (paper Sec. 4 compares with BPG and JPEG-family
codecs; these are the ones Pillow provides here):

=========  ==========================================================================
name       encoder (Pillow), settings
=========  ==========================================================================
jpeg420    JPEG (libjpeg-turbo), 4:2:0 chroma subsampling, optimized Huffman tables
jpeg444    JPEG (libjpeg-turbo), 4:4:4 (no subsampling), optimized Huffman tables
webp       WebP (libwebp), lossy, method 6 (slowest, best)
avif       AVIF (Pillow's own plugin, libavif), 4:4:4, speed 6 (Pillow's default)
jxl        JPEG XL (pillow-jxl-plugin, libjxl), effort 7 (its default)
=========  ==========================================================================

Images are encoded to bytes in memory and decoded back; bpp is len(bytes) × 8 / pixels, exactly
as for ``.sdc`` files. ``quality`` is the codec's own 0–100 quality parameter; each codec has a
default sweep (:data:`SWEEPS`) that spans about 0.1–2 bpp on photographs at Kodak size (JPEG
cannot go below about 0.15 bpp).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)
from PIL import Image, features
from torch import Tensor

from shallowcodec.images import image_to_tensor, tensor_to_image

#: Pillow format name and save options per codec.
ENCODERS = {
    "jpeg420": ("JPEG", {"subsampling": "4:2:0", "optimize": True}),
    "jpeg444": ("JPEG", {"subsampling": "4:4:4", "optimize": True}),
    "webp": ("WEBP", {"method": 6}),
    "avif": ("AVIF", {"subsampling": "4:4:4", "speed": 6}),
    "jxl": ("JXL", {"effort": 7}),
}

#: Default quality sweep per codec (low to high rate), about 0.1–2 bpp on photos24.
SWEEPS = {
    "jpeg420": (5, 10, 20, 30, 40, 50, 60, 70, 80, 85, 90, 95),
    "jpeg444": (5, 10, 20, 30, 40, 50, 60, 70, 80, 85, 90),
    "webp": (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    "avif": (10, 20, 30, 40, 50, 60, 70, 80, 85, 90),
    "jxl": (5, 10, 20, 30, 50, 70, 80, 90, 95, 97),
}


@dataclass
class PillowCodec:
    """A classical codec at one quality, with the evaluation interface of the learned codec.

    Attributes:
        architecture: codec name, a key of :data:`ENCODERS` (named like the learned codec's
            attribute so that :func:`shallowcodec.evaluation.evaluate` takes either).
        quality: the codec's 0–100 quality parameter.
        lmbda: always None (no rate–distortion trade-off parameter).
    """

    architecture: str
    quality: int
    lmbda: None = None

    def __post_init__(self):
        if self.architecture not in ENCODERS:
            raise ValueError(f"unknown codec {self.architecture!r}; choose from {', '.join(ENCODERS)}")
        if not 0 <= self.quality <= 100:
            raise ValueError(f"{self.architecture} quality {self.quality} is outside 0–100")

    def compress(self, x: Tensor) -> bytes:
        """Encode a (3, H, W) uint8 tensor to the bytes of an image file of this format."""
        fmt, options = ENCODERS[self.architecture]
        out = io.BytesIO()
        tensor_to_image(x).save(out, format=fmt, quality=self.quality, **options)
        return out.getvalue()

    def decompress_tensor(self, data: bytes) -> Tensor:
        """Decode image file bytes to a (3, H, W) uint8 tensor (RGB)."""
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image_to_tensor(image)[0]


def codecs(name: str, qualities: list[int] | None = None) -> list[PillowCodec]:
    """One :class:`PillowCodec` per quality of the sweep (default :data:`SWEEPS`).

    Raises:
        ValueError: unknown codec name or a quality outside 0–100.
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown codec {name!r}; choose from {', '.join(ENCODERS)}")
    return [PillowCodec(name, q) for q in (SWEEPS[name] if qualities is None else qualities)]


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries behind the classical codecs (for the result files)."""
    return {
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "libwebp": features.version("webp"),
        "libavif": features.version("avif"),
        "pillow_jxl_plugin": _distribution_version("pillow-jxl-plugin"),
    }


def _distribution_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None
