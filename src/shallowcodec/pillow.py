"""Pillow plugin: ``PIL.Image.open`` reads ``.sdc`` files, decoding through the torch-free decoder.

::

    import shallowcodec.pillow            # registers the format "SDC" (extension .sdc)
    from PIL import Image

    image = Image.open("photo.sdc")       # a path or a binary file object (BytesIO, ...)
    image.size, image.mode                # (W, H) from the header, "RGB"; nothing decoded yet
    image.info                            # {"model": "two-layer", "quality": 3.0, "lmbda": 0.01}
    image.load()                          # decodes: decoder.py (numpy and constriction, no PyTorch)

Built as Pillow's own formats with a Python decoder (e.g. PIL.BlpImagePlugin): an
``ImageFile.ImageFile`` subclass whose ``_open`` reads the header and describes the image as
one tile, and an ``ImageFile.PyDecoder`` registered under the same name that Pillow calls on
``load()`` to fill that tile. Files are recognised by their magic (container.MAGIC, b"\\x89SDC").

Errors: a file without the magic is left to the other plugins (Pillow then raises
``PIL.UnidentifiedImageError``). A file with the magic that is damaged (checksum, truncation,
header fields: checked on open, container.unpack) or that cannot be decoded (unknown model,
other weights, a damaged string: on load) raises :class:`SdcImageError`, an ``OSError`` as
Pillow's decoding errors are, and a :class:`~shallowcodec.container.ContainerError`, with the
container's one-line message. (Pillow turns a ``SyntaxError`` from ``_open`` into a generic
"cannot identify image file", which would hide the reason.)

Saving is not supported (encoding needs PyTorch: ``shallowcodec.load(...).compress``).
"""

from __future__ import annotations

from PIL import Image, ImageFile

from shallowcodec.container import MAGIC, SUFFIX, ContainerError, unpack
from shallowcodec.decoder import decompress_array

#: Pillow's name of the format (``Image.open(...).format``), also the name of its decoder.
FORMAT = "SDC"


class SdcImageError(ContainerError, OSError):
    """A ``.sdc`` file that is damaged or cannot be decoded; the message is one line."""


def _accept(prefix: bytes) -> bool:
    """Whether a file's first bytes are a ``.sdc`` file's magic."""
    return prefix.startswith(MAGIC)


class SdcImageFile(ImageFile.ImageFile):
    """A ``.sdc`` file opened by Pillow: size, mode and ``info`` from the header, pixels on ``load()``.

    Raises:
        SdcImageError: (on open) a damaged, truncated or malformed file.
    """

    format = FORMAT
    format_description = "shallowcodec learned image (Yang & Mandt, ICCV 2023)"

    def _open(self) -> None:
        data = self.fp.read()
        try:
            header = unpack(data).header
        except ContainerError as e:
            raise SdcImageError(str(e)) from None
        self._mode = "RGB"
        self._size = (header.width, header.height)
        self.info.update(model=header.architecture, quality=header.quality, lmbda=header.lmbda)
        self.tile = [ImageFile._Tile(FORMAT, (0, 0, *self.size), 0, (data,))]


class SdcDecoder(ImageFile.PyDecoder):
    """Decodes a whole ``.sdc`` file (the tile's argument, read on open) into the image: decoder.decompress_array.

    Raises:
        SdcImageError: the file cannot be decoded (unknown model or weights, damaged string).
    """

    _pulls_fd = True  # the data came with the tile: Pillow need not read the file again

    def decode(self, buffer: bytes) -> tuple[int, int]:
        (data,) = self.args
        try:
            pixels = decompress_array(data)
        except ContainerError as e:
            raise SdcImageError(str(e)) from None
        self.set_as_raw(pixels.tobytes(), "RGB")
        return -1, 0


Image.register_open(FORMAT, SdcImageFile, _accept)
Image.register_extension(FORMAT, SUFFIX)
Image.register_decoder(FORMAT, SdcDecoder)
