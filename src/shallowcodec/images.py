"""Image files and tensors: reading images of any mode as (3, H, W) uint8 RGB, and back to PIL.

Pillow reads PNG, JPEG, WebP, BMP and TIFF; EXIF orientation is applied, and grayscale, palette,
CMYK, 16-bit and RGBA images become 8-bit RGB with a one-line notice of the conversion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

#: File suffixes read as images (through Pillow).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def image_files(folder: str | Path) -> list[Path]:
    """Image files (by suffix) of a folder, sorted by name.

    Raises:
        ImageError: the folder does not exist.
    """
    if not Path(folder).is_dir():
        raise ImageError(f"no such folder: {folder}")
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class ImageError(ValueError):
    """Raised for an input image that cannot be read; message is one line."""


def image_to_tensor(image: Image.Image) -> tuple[Tensor, str | None]:
    """Convert a PIL image to a (3, H, W) uint8 tensor, plus a notice if it was converted.

    EXIF orientation is applied. Grayscale, palette, CMYK, 16-bit and RGBA inputs become RGB;
    the notice says what happened (and that alpha was dropped, if there was any).
    """
    image = ImageOps.exif_transpose(image)
    notice = None
    if image.mode != "RGB":
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        notice = f"converted {image.mode} image to RGB" + ("; alpha channel dropped" if has_alpha else "")
        if image.mode.startswith("I") or image.mode == "F":
            image = _to_8bit_gray(image)
        image = image.convert("RGB")
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(image.height, image.width, 3).permute(2, 0, 1).contiguous(), notice


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    """Integer or float grayscale → 8 bits: 16-bit data (I;16, or values above 255) is scaled
    by 1/257, float data in [0, 1] by 255, anything else is taken as 8-bit values."""
    a = np.asarray(image, dtype=np.float64)
    peak = a.max(initial=0)
    if image.mode.startswith("I;16") or peak > 255:
        a = a / 257
    elif image.mode == "F" and peak <= 1:
        a = a * 255
    return Image.fromarray(a.round().clip(0, 255).astype(np.uint8))


def read_image(path: str | Path) -> tuple[Tensor, str | None]:
    """Read an image file (PNG, JPEG, WebP, BMP, TIFF, … through Pillow) as (3, H, W) uint8.

    Raises:
        ImageError: missing, unreadable or not an image.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return image_to_tensor(image)
    except FileNotFoundError:
        raise ImageError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ImageError(f"{path} is a folder, not an image") from None
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot read image {path}: {e}") from None
    except OSError as e:
        raise ImageError(f"cannot read image {path}: {e}") from None


def tensor_to_image(x: Tensor) -> Image.Image:
    """(3, H, W) uint8 tensor → RGB PIL image."""
    return Image.fromarray(x.permute(1, 2, 0).contiguous().numpy(), "RGB")
