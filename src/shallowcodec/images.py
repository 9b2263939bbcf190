"""Image files and tensors: reading images of any mode as (3, H, W) uint8 RGB, and back to PIL.

Pillow reads PNG, JPEG, WebP, BMP and TIFF; EXIF orientation is applied, and grayscale, palette,
CMYK, 16-bit and RGBA images become 8-bit RGB with a one-line notice of the conversion; of an
animated GIF/PNG/WebP the first frame is coded, with a notice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:  # PyTorch is imported only where tensors are made: decoding needs none
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
    """Convert a PIL image to a (3, H, W) uint8 tensor, plus a one-line notice if it was converted.

    EXIF orientation is applied. Grayscale, palette, CMYK, 16-bit and RGBA inputs become 8-bit RGB;
    of an animated image the current (first) frame is taken. The notice says what happened (16-bit
    samples reduced, alpha dropped, frames ignored), or is None for a plain 8-bit RGB still image.
    """
    notices = source_notices(image)
    image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        notices.insert(0, f"converted {image.mode} image to RGB" + ("; alpha channel dropped" if has_alpha else ""))
        if image.mode.startswith("I") or image.mode == "F":
            image = _to_8bit_gray(image)
        image = image.convert("RGB")
    import torch

    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.view(image.height, image.width, 3).permute(2, 0, 1).contiguous(), "; ".join(notices) or None


def source_notices(image: Image.Image) -> list[str]:
    """Notices about what the file holds beyond one 8-bit frame: several frames, 16-bit samples.

    16-bit samples are seen in Pillow's raw mode (e.g. ``RGB;16B`` of a 16-bit PNG, which Pillow
    reads as 8-bit RGB without saying so), so only before the image is loaded.
    """
    notices = []
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        notices.append(f"animated image: coded the first of its {frames} frames")
    raw_modes = [tile.args for tile in getattr(image, "tile", None) or [] if isinstance(tile.args, str)]
    if image.mode.startswith("I;16") or any(";16" in mode for mode in raw_modes):
        notices.append("16-bit samples reduced to 8 bits")
    return notices


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


def read_image(path: str | Path | BinaryIO, name: str | None = None,
               check_size: Callable[[int, int], None] | None = None) -> tuple[Tensor, str | None]:
    """Read an image file or binary stream (PNG, JPEG, WebP, BMP, TIFF, … through Pillow) as (3, H, W) uint8,
    plus a notice of any conversion (see :func:`image_to_tensor`); ``name`` names a stream in errors.
    ``check_size(height, width)`` runs on the header's size before any pixel is decoded.

    Raises:
        ImageError: missing, unreadable or not an image; and whatever ``check_size`` raises.
    """
    source, path = path, path if name is None else name
    try:
        with Image.open(source) as image:
            if check_size is not None:
                check_size(image.height, image.width)
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
