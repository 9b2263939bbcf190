"""Image files and tensors (shallowcodec.images): mode conversions with notices, read errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from shallowcodec.images import ImageError, image_to_tensor, read_image, tensor_to_image

# --- conversion to (3, H, W) uint8 RGB ------------------------------------------------------------------


def test_rgb_image_is_unchanged_without_notice(photo_crop):
    x = photo_crop(8, 9)
    y, notice = image_to_tensor(tensor_to_image(x))
    assert notice is None and torch.equal(x, y)


def test_rgba_becomes_rgb_with_alpha_notice(photo_crop):
    x = photo_crop(10, 12)
    rgba = np.concatenate([x.permute(1, 2, 0).numpy(), np.full((10, 12, 1), 77, np.uint8)], axis=2)
    y, notice = image_to_tensor(Image.fromarray(rgba, "RGBA"))
    assert y.shape == (3, 10, 12) and y.dtype == torch.uint8
    assert torch.equal(y, x)  # alpha dropped, colour kept
    assert "RGBA" in notice and "alpha" in notice


def test_grayscale_and_palette_are_converted_with_notice():
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    y, notice = image_to_tensor(Image.fromarray(gray, "L"))
    assert y.shape == (3, 4, 5)
    assert all(torch.equal(y[c], torch.from_numpy(gray)) for c in range(3))
    assert "L" in notice and "RGB" in notice and "alpha" not in notice

    palette = Image.fromarray(gray, "L").convert("P")
    palette.putpalette([v for i in range(256) for v in (i, 255 - i, 3)])
    y, notice = image_to_tensor(palette)
    assert notice is not None and "P" in notice
    idx = torch.from_numpy(np.array(palette)).long()
    assert torch.equal(y[0].long(), idx) and torch.equal(y[1].long(), 255 - idx) and (y[2] == 3).all()


def test_palette_with_transparency_mentions_alpha():
    image = Image.new("P", (3, 2), 1)
    image.info["transparency"] = 0
    _, notice = image_to_tensor(image)
    assert "alpha" in notice


def test_16_bit_grayscale_is_scaled_not_clipped():
    values = np.array([[0, 257, 30000, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    y, notice = image_to_tensor(image)
    assert notice is not None and image.mode in notice
    expected = [0, 1, round(30000 / 257), 255]  # 30000 would clip to 255
    assert all(y[c, 0].tolist() == expected for c in range(3))


def test_8_bit_values_in_32_bit_and_float_grayscale_keep_their_level():
    """Reported: L.convert("I") and float images in [0, 1] came out almost black."""
    gray = Image.fromarray(np.array([[0, 100, 255]], dtype=np.uint8))
    x, notice = image_to_tensor(gray.convert("I"))
    assert x[0, 0].tolist() == [0, 100, 255] and "I" in notice
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    assert image_to_tensor(floats)[0][1, 0].tolist() == [0, 128, 255]


def test_16_bit_png_file_is_scaled(tmp_path):
    path = tmp_path / "g16.png"
    Image.fromarray(np.array([[65535, 0], [12850, 65535]], dtype=np.uint16)).save(path)
    y, notice = read_image(path)
    assert notice is not None
    assert y[0].tolist() == [[255, 0], [50, 255]]


def test_read_image_errors(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path / "junk.png")
