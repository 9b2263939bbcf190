"""Rate and distortion units shared by training, SGA, evaluation and the CLI.

bpp is bits per image pixel; PSNR is in dB with peak 255 of an MSE on the 0–255 scale.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


def bpp(num_bytes: int, pixels: int) -> float:
    """Bits per pixel of a file of ``num_bytes`` bytes for an image of ``pixels`` pixels: 8 · bytes / pixels."""
    return 8 * num_bytes / pixels


def psnr_of_mse(mse: float | Tensor) -> float | Tensor:
    """PSNR in dB, 10 · log10(255² / MSE), of an MSE on the 0–255 scale (a float or a tensor, element-wise).

    Returns inf for an MSE of 0.
    """
    if hasattr(mse, "log10"):  # a tensor (this module does not import PyTorch)
        return 10 * (255**2 / mse).log10()
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)
