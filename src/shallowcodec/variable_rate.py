"""Variable rate: one model for all qualities through gain units on y and z.

Cui et al., "Asymmetric Gained Deep Image Compression With Continuous Rate Adaptation"
(CVPR 2021): a gain vector γ(q) (one value per latent channel) scales y before quantization
and an inverse gain γ⁻¹(q) scales ŷ back before g_s; the same for z around the factorized
prior. A larger gain means a finer quantization step 1/γ and a higher rate::

            γ_y(q)                                             γ⁻¹_y(q)
              │                                                   │
        y ──►─×── y_g ──► Q, GC( N(γ_y·μ, γ_y·σ) ) ──► ŷ_g ──►────×──► ŷ ──► g_s
                                    ▲
              γ_z(q)                │            γ⁻¹_z(q)
              │                  ┌──┴──┐            │
        z ──►─×── z_g ──► Q, EB ─┤ h_s ├──◄── ẑ ◄───×── ẑ_g
                                 └─────┘

h_s predicts μ, σ of the *ungained* y and does not see q, so they are mapped into the gained
domain exactly (γ·y ~ N(γμ, γσ) when y ~ N(μ, σ)), rather than asking h_s to guess q as in
Cui et al.'s hyperprior; the decoder pays element-wise products only.

Quality q ∈ [0, 6] ↔ λ(q) = λ₀ · r^q, the model's λ scale (quality.py; the paper's 0.00125 · 2^q
unless the config's ``lmbda_scale`` says otherwise). Between integers, gains are interpolated
exponentially (Cui et al. Eq. 9: linear in log γ); :func:`retable` moves trained gains to another scale.

CompressAI's GainHyperpriorLatentCodec takes gains as inputs but neither holds nor
interpolates them, and it hides the quantization step that mixed quantization and SGA need,
so the gains live here and the model applies them (hyperprior.py).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from shallowcodec.entropy_parameters import ExactGains, exact_gains
from shallowcodec.quality import MAX_QUALITY, LmbdaScale


class Gains(NamedTuple):
    """Gains of one batch, each (B, M, 1, 1): γ_y, γ⁻¹_y, γ_z, γ⁻¹_z."""

    y: Tensor
    y_inv: Tensor
    z: Tensor
    z_inv: Tensor


class GainUnits(nn.Module):
    """Learned per-quality, per-channel gains on y and z, with exponential interpolation.

    Parameters are log-gains, (7, M) each. They start where a fixed-λ model trained at
    ``reference`` quality is already a fair variable-rate model: the step on y scales as
    1/√λ (for MSE the optimal uniform step grows as √(1/λ)), γ⁻¹ = 1/γ, and z keeps unit gain.

    Args:
        M: latent channels of y and z.
        reference: quality whose gains start at 1 (the λ the initial weights were trained for).
        lmbda_scale: λ(q) = λ₀ · r^q, a quality.LmbdaScale or its [λ₀, r] (default the paper's).

    Raises:
        ValueError: a malformed ``lmbda_scale``.
    """

    def __init__(self, M: int, reference: int = 3, lmbda_scale: LmbdaScale | tuple[float, float] | None = None):
        super().__init__()
        self.scale = lmbda_scale if isinstance(lmbda_scale, LmbdaScale) else LmbdaScale.parse(lmbda_scale)
        lmbdas = self.scale.lmbdas()
        log_gain = torch.tensor([0.5 * math.log(lm / lmbdas[reference]) for lm in lmbdas]).unsqueeze(1).repeat(1, M)
        self.log_y_gain = nn.Parameter(log_gain.clone())
        self.log_y_gain_inv = nn.Parameter(-log_gain)
        self.log_z_gain = nn.Parameter(torch.zeros(len(lmbdas), M))
        self.log_z_gain_inv = nn.Parameter(torch.zeros(len(lmbdas), M))

    def forward(self, quality: Tensor) -> Gains:
        """Gains for qualities ``quality`` (B,) in [0, 6] (fractional values interpolate).

        Returns:
            :class:`Gains`, each (B, M, 1, 1).
        """
        q = quality.to(self.log_y_gain.dtype).clamp(0, MAX_QUALITY)
        low = q.floor().clamp(max=MAX_QUALITY - 1).long()
        t = (q - low).unsqueeze(1)

        def gain(log_gain: Tensor) -> Tensor:
            return torch.exp((1 - t) * log_gain[low] + t * log_gain[low + 1])[..., None, None]

        return Gains(gain(self.log_y_gain), gain(self.log_y_gain_inv), gain(self.log_z_gain), gain(self.log_z_gain_inv))

    def exact(self, quality: float) -> ExactGains:
        """The decoder's gains for one quality (a multiple of 1/256), identical on every platform:
        log γ_y, γ_y, γ⁻¹_y, γ⁻¹_z, float64 (1, M, 1, 1) each (entropy_parameters.exact_gains)."""
        tables = {"y": self.log_y_gain, "y_inv": self.log_y_gain_inv, "z_inv": self.log_z_gain_inv}
        return exact_gains({k: v.detach().cpu().double().numpy() for k, v in tables.items()}, float(quality))


def retable(log_gain: Tensor, old: LmbdaScale, new: LmbdaScale) -> Tensor:
    """Trained log-gains (7, M) of a model with λ scale ``old``, moved to scale ``new``.

    Row q of the result is the old model's log-gain at the old quality whose λ is λ_new(q),
    linear in log γ as between integer qualities (Cui et al. Eq. 9), the end segments
    extrapolated beyond q0..q6: a model so moved codes each new quality at about the rate the
    old one had at that λ, and training at the new scale starts from there (train.py ``--init``).
    """
    pos = torch.tensor([old.quality_of(lm) for lm in new.lmbdas()], dtype=log_gain.dtype, device=log_gain.device)
    low = pos.floor().clamp(0, MAX_QUALITY - 1).long()
    t = (pos - low).unsqueeze(1)
    return (1 - t) * log_gain[low] + t * log_gain[low + 1]
