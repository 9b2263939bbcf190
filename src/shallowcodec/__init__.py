"""shallowcodec: learned image compression with shallow decoders (Yang & Mandt, ICCV 2023).

Python API::

    import shallowcodec
    codec = shallowcodec.load("two-layer", quality=3)
    data = codec.compress(image)            # PIL.Image or (3, H, W) uint8 tensor → .sdc bytes
    image = shallowcodec.decompress(data)   # → PIL.Image (model and quality read from the header)
"""

import warnings

# CompressAI scripts a helper at import time; newer PyTorch warns about that on every run.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

from shallowcodec.codec import Codec, decompress, load
from shallowcodec.container import ContainerError
from shallowcodec.images import ImageError
from shallowcodec.zoo import ModelNotFoundError

__all__ = ["Codec", "ContainerError", "ImageError", "ModelNotFoundError", "decompress", "load"]
__version__ = "0.1.0"
