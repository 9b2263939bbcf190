"""shallowcodec: learned image compression with shallow decoders (Yang & Mandt, ICCV 2023).

Python API::

    import shallowcodec
    codec = shallowcodec.load("two-layer", quality=3)
    data = codec.compress(image)            # PIL.Image or (3, H, W) uint8 tensor → .sdc bytes
    image = shallowcodec.decompress(data)   # → PIL.Image (model and quality read from the header)

``decompress`` runs the torch-free decoder (decoder.py): importing the package and decoding
import numpy, Pillow and constriction only. ``load`` and ``Codec`` (encoding, SGA) import
PyTorch and CompressAI on first use.
"""

import warnings

# CompressAI scripts a helper at import time; newer PyTorch warns about that on every run.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

from shallowcodec.container import ContainerError
from shallowcodec.decoder import decompress
from shallowcodec.images import ImageError
from shallowcodec.model_files import ModelNotFoundError

__all__ = ["Codec", "ContainerError", "ImageError", "ModelNotFoundError", "decompress", "load"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``load`` and ``Codec`` on first use (PEP 562), so that decoding never imports PyTorch."""
    if name in ("load", "Codec"):
        from shallowcodec import codec

        return getattr(codec, name)
    raise AttributeError(f"module 'shallowcodec' has no attribute {name!r}")
