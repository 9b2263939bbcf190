"""Mean-scale hyperprior with pluggable transforms: the entropy/latent coding of shallowcodec.

Minnen, Ballé & Toderici 2018 (mean-scale hyperprior), as used by Yang & Mandt (ICCV 2023)
with a strong analysis and a shallow synthesis::

              ┌───┐  y   ┌───┐  z   ┌───┐ ẑ           ẑ  ┌───┐
        x ──►─┤g_a├──►─┬─┤h_a├──►───┤ Q ├──►── EB ──►─────┤h_s├──► μ, σ
              └───┘    │ └───┘      └───┘                 └───┘      │
                       ▼                                             ▼
                     ┌─┴─┐  ŷ = round(y − μ) + μ                     │
                     │ Q ├──►── GC(N(μ, σ)) ──►──────────────────────┘
                     └─┬─┘
                       ▼ ŷ   ┌───┐
                       └──►──┤g_s├──► x̂
                             └───┘
        EB = factorized prior of z (CompressAI EntropyBottleneck)
        GC = discretized Gaussian of y, σ snapped to 64 log-spaced scales in [0.11, 256]

Images x are (B, 3, H, W) in [0, 1] with H, W multiples of 64 (see codec.py for padding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models.base import CompressionModel, get_scale_table
from compressai.ops import quantize_ste
from torch import Tensor, nn

QUANTIZERS = ("noise", "mixed")


@dataclass
class LatentStrings:
    """Entropy-coded latents of one image: the z and y byte strings and the z grid size."""

    z_string: bytes
    y_string: bytes
    z_shape: tuple[int, int]


class MeanScaleHyperprior(CompressionModel):
    """Mean-scale hyperprior composed of any (g_a, g_s) pair with the paper's h_a and h_s.

    Args:
        g_a: analysis, (B, 3, H, W) → (B, M, H/16, W/16).
        g_s: synthesis, (B, M, h, w) → (B, 3, 16h, 16w).
        h_a: hyper-analysis, (B, M, h, w) → (B, M, h/4, w/4).
        h_s: hyper-synthesis, ẑ → (μ, σ), each (B, M, h, w).
        M: latent channels of y and z.
    """

    def __init__(self, g_a: nn.Module, g_s: nn.Module, h_a: nn.Module, h_s: nn.Module, M: int):
        super().__init__()
        self.g_a, self.g_s, self.h_a, self.h_s = g_a, g_s, h_a, h_s
        self.entropy_bottleneck = EntropyBottleneck(M)
        self.gaussian_conditional = GaussianConditional(None)

    def forward(self, x: Tensor, quantizer: str = "noise") -> dict:
        """Training / evaluation pass with differentiable quantization surrogates.

        In train mode, ``quantizer="noise"`` adds U(−½, ½) to y and z everywhere (the paper's
        default); ``"mixed"`` keeps noise for the rate but feeds g_s and h_s rounded values with
        a straight-through gradient. In eval mode y and z are rounded (around μ and the prior's
        median), so ``x_hat`` is exactly what the decoder reconstructs from the bitstream.

        Args:
            x: (B, 3, H, W) image in [0, 1], H and W multiples of 64.
            quantizer: "noise" or "mixed".

        Returns:
            dict with ``x_hat`` (B, 3, H, W), unclamped; ``likelihoods`` {"y", "z"} of y and z
            (probabilities in (0, 1], same shapes as y and z); ``y_hat`` (B, M, H/16, W/16).

        Raises:
            ValueError: for an unknown quantizer.
        """
        if quantizer not in QUANTIZERS:
            raise ValueError(f"unknown quantizer {quantizer!r}; expected one of {QUANTIZERS}")
        y = self.g_a(x)
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        mixed = quantizer == "mixed" and self.training
        if mixed:
            medians = self.entropy_bottleneck._get_medians()
            z_hat = quantize_ste(z - medians) + medians
        mu, sigma = self.h_s(z_hat)
        y_hat, y_likelihoods = self.gaussian_conditional(y, sigma, means=mu)
        if mixed:
            y_hat = quantize_ste(y - mu) + mu
        return {
            "x_hat": self.g_s(y_hat),
            "likelihoods": {"y": y_likelihoods, "z": z_likelihoods},
            "y_hat": y_hat,
        }

    def update(self, scale_table: Tensor | None = None, force: bool = False) -> bool:
        """Build the CDF tables of the entropy coders (call after training or loading weights).

        Uses the paper's 64 log-spaced scales in [0.11, 256] unless ``scale_table`` is given.
        """
        return super().update(scale_table=get_scale_table() if scale_table is None else scale_table, force=force)

    @torch.no_grad()
    def compress(self, x: Tensor) -> LatentStrings:
        """Entropy-code one image: x (1, 3, H, W) in [0, 1], H and W multiples of 64."""
        y = self.g_a(x)
        return self.compress_latents(y, self.h_a(y))

    @torch.no_grad()
    def compress_latents(self, y: Tensor, z: Tensor) -> LatentStrings:
        """Entropy-code given latents y (1, M, h, w) and z (1, M, h/4, w/4).

        z is rounded around the prior's medians, y around μ = h_s(ẑ) (ŷ = round(y − μ) + μ).
        Kept separate from :meth:`compress` so that per-image optimized latents (SGA) use the
        same path.
        """
        z_strings = self.entropy_bottleneck.compress(z)
        z_shape = tuple(z.shape[-2:])
        z_hat = self.entropy_bottleneck.decompress(z_strings, z_shape)
        mu, sigma = self.h_s(z_hat)
        indexes = self.gaussian_conditional.build_indexes(sigma)
        y_strings = self.gaussian_conditional.compress(y, indexes, means=mu)
        return LatentStrings(z_strings[0], y_strings[0], z_shape)

    @torch.no_grad()
    def decompress_latents(self, strings: LatentStrings) -> Tensor:
        """Decode ŷ (1, M, 4·zh, 4·zw) from its strings (entropy decoding and h_s only)."""
        z_hat = self.entropy_bottleneck.decompress([strings.z_string], strings.z_shape)
        mu, sigma = self.h_s(z_hat)
        indexes = self.gaussian_conditional.build_indexes(sigma)
        return self.gaussian_conditional.decompress([strings.y_string], indexes, means=mu)

    @torch.no_grad()
    def decompress(self, strings: LatentStrings) -> Tensor:
        """Decode x̂ (1, 3, 64·zh, 64·zw) in [0, 1] from its strings."""
        return self.g_s(self.decompress_latents(strings)).clamp_(0, 1)
