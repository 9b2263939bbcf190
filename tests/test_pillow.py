"""The Pillow plugin (pillow.py): Image.open on .sdc files by path and file object, lazy decoding, one-line errors."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import shallowcodec
from shallowcodec import container
from shallowcodec import pillow as plugin


@pytest.fixture(scope="module")
def sdc(photo_crop) -> bytes:
    """A real file: a 96×160 crop of photos24 eval03 (sizes not multiples of 64), embedded two-layer q3."""
    return shallowcodec.load("two-layer", 3).compress(photo_crop(96, 160, 20, 10))


def test_open_by_path_and_file_object_decodes_on_load_to_the_decoders_pixels(tmp_path, sdc, monkeypatch):
    path = tmp_path / "x.sdc"
    path.write_bytes(sdc)
    expected = np.asarray(shallowcodec.decompress(sdc))
    calls, decode = [], plugin.decompress_array
    monkeypatch.setattr(plugin, "decompress_array", lambda data: calls.append(len(data)) or decode(data))
    for source in (path, str(path), io.BytesIO(sdc)):
        with Image.open(source) as image:
            assert (image.format, image.size, image.mode) == ("SDC", (160, 96), "RGB")
            lmbda = pytest.approx(0.00042 * 2.65**3)  # q3 of the embedded λ scale
            assert image.info == {"model": "two-layer", "quality": 3.0, "lmbda": lmbda}
            assert calls == []  # header only so far
            image.load()
            assert calls == [len(sdc)]
            assert np.array_equal(np.asarray(image), expected)
        calls.clear()
    assert Image.registered_extensions()[".sdc"] == "SDC"


def test_damaged_files_raise_one_line_errors(sdc):
    flipped = bytearray(sdc)
    flipped[len(sdc) // 2] ^= 0x10
    for damaged, message in ((bytes(flipped), "checksum mismatch: file is corrupted"),
                             (sdc[:-7], f"truncated file ({len(sdc) - 7} bytes)")):
        with pytest.raises(plugin.SdcImageError) as error:
            Image.open(io.BytesIO(damaged))
        assert str(error.value) == message
        assert isinstance(error.value, OSError) and isinstance(error.value, shallowcodec.ContainerError)
    stream = container.unpack(sdc)
    foreign = container.pack(dataclasses.replace(stream.header, weights_id=123), stream.z_string, stream.y_string)
    image = Image.open(io.BytesIO(foreign))  # a sound container: opens, fails on load
    assert image.size == (160, 96)
    with pytest.raises(plugin.SdcImageError, match=r"^file was encoded with other two-layer weights \(0000007b;"):
        image.load()
    cut_string = container.pack(stream.header, stream.z_string, stream.y_string[:-4])
    with pytest.raises(plugin.SdcImageError, match=r"^cannot decode: ") as error:
        Image.open(io.BytesIO(cut_string)).load()
    assert "\n" not in str(error.value)
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"\x89PNG not an sdc file"))


def test_open_and_load_import_no_torch(tmp_path, sdc):
    path = tmp_path / "x.sdc"
    path.write_bytes(sdc)
    code = ("import sys; import shallowcodec.pillow; from PIL import Image; "
            f"image = Image.open({str(path)!r}); image.load(); "
            "print(image.size, image.getpixel((5, 7)), 'torch' in sys.modules, 'compressai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    pixel = tuple(int(v) for v in np.asarray(shallowcodec.decompress(sdc))[7, 5])
    assert out.splitlines()[-1] == f"(160, 96) {pixel} False False"
