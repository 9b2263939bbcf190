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
A variable-rate model wraps the quantization of y and z in gains γ(q) (variable_rate.py); y, z,
μ and σ are then those of the gained, coded latents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models.base import CompressionModel
from compressai.ops import quantize_ste
from torch import Tensor, nn

from shallowcodec import entropy_coding
from shallowcodec.architectures import ModelConfig
from shallowcodec.entropy_parameters import EntropyParameters, entropy_parameters, log_scale_thresholds
from shallowcodec.variable_rate import Gains, GainUnits

QUANTIZERS = ("noise", "mixed")
#: Buffers stored with the parameters (zoo.py): both entropy models' integer CDF tables and the scale table.
TABLE_NAMES = tuple(f"{model}.{name}" for model in ("entropy_bottleneck", "gaussian_conditional")
                    for name in ("_quantized_cdf", "_offset", "_cdf_length")) + ("gaussian_conditional.scale_table",)


@dataclass
class LatentStrings:
    """Entropy-coded latents of one image: the z and y byte strings and the z grid size."""

    z_string: bytes
    y_string: bytes
    z_shape: tuple[int, int]


class ShallowHyperprior(CompressionModel):
    """Mean-scale hyperprior composed of any (g_a, g_s) pair with the paper's h_a and h_s.

    Not :class:`compressai.models.MeanScaleHyperprior`: this class takes its transforms as
    arguments, applies variable-rate gains, and is the one place that touches CompressAI's
    private entropy-model API (:meth:`z_medians`, :meth:`z_bits`, :meth:`y_bits`). Call
    ``update(force=True)`` after training or loading weights to build the CDF tables (CompressAI's
    default scale table: the paper's 64 log-spaced scales in [0.11, 256]).

    With ``gain`` (variable_rate.GainUnits) one model covers qualities 0–6: every method takes
    ``quality`` (a float, or a (B,) tensor in training) and y, z are coded in the gained domain
    y_g = γ_y·y, z_g = γ_z·z. Without it (a fixed-λ model, the paper's recipe) ``quality`` is
    ignored and the gains are 1.

    Args:
        g_a: analysis, (B, 3, H, W) → (B, M, H/16, W/16).
        g_s: synthesis, (B, M, h, w) → (B, 3, 16h, 16w).
        h_a: hyper-analysis, (B, M, h, w) → (B, M, h/4, w/4).
        h_s: hyper-synthesis, ẑ → (μ, σ), each (B, M, h, w).
        M: latent channels of y and z.
        gain: gain units for variable rate, or None.
        config: the architecture and widths it was built from (zoo.build_model), or None.
    """

    def __init__(self, g_a: nn.Module, g_s: nn.Module, h_a: nn.Module, h_s: nn.Module, M: int,
                 gain: GainUnits | None = None, config: ModelConfig | None = None):
        super().__init__()
        self.config = config
        self.g_a, self.g_s, self.h_a, self.h_s = g_a, g_s, h_a, h_s
        self.gain = gain
        self.entropy_bottleneck = EntropyBottleneck(M)
        self.gaussian_conditional = GaussianConditional(None)

    @property
    def variable_rate(self) -> bool:
        """Whether the model has gain units (covers qualities 0–6)."""
        return self.gain is not None

    def gains(self, quality: float | Tensor | None, batch: int) -> Gains | None:
        """Gains (each (B, M, 1, 1)) for ``quality`` (float or (B,)), or None for a fixed-λ model.

        Raises:
            ValueError: a variable-rate model called without a quality.
        """
        if self.gain is None:
            return None
        if quality is None:
            raise ValueError("a variable-rate model needs a quality")
        return self.gain(torch.as_tensor(quality, dtype=torch.float32).expand(batch))

    def analysis(self, x: Tensor, quality: float | Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Latents to code: y_g = γ_y·g_a(x) (B, M, H/16, W/16) and z_g = γ_z·h_a(g_a(x)) (B, M, H/64, W/64)."""
        y = self.g_a(x)
        z = self.h_a(y)
        g = self.gains(quality, x.shape[0])
        return (y, z) if g is None else (y * g.y, z * g.z)

    def hyper_synthesis(self, z_hat: Tensor, quality: float | Tensor | None = None) -> tuple[Tensor, Tensor]:
        """μ, σ (B, M, h, w) of y_g from the coded ẑ_g (B, M, h/4, w/4): γ_y·h_s(γ⁻¹_z·ẑ_g), differentiable.

        The training and SGA path: float32, h_s's fixed-point rounding with straight-through
        gradients (always fp32, also under autocast). The decoder's bit-exact path is
        :meth:`entropy_parameters`.
        """
        g = self.gains(quality, z_hat.shape[0])
        with torch.autocast(z_hat.device.type, enabled=False):
            mu, log_sigma = self.h_s(z_hat.float() if g is None else z_hat.float() * g.z_inv)
        sigma = torch.exp(log_sigma)
        return (mu, sigma) if g is None else (mu * g.y, sigma * g.y)

    @torch.no_grad()
    def entropy_parameters(self, z_hat: Tensor, quality: float | None = None, log_sigma: bool = False
                           ) -> EntropyParameters:
        """Exact μ_g and scale indexes (and with ``log_sigma`` log σ_g) of y_g (numpy, (1, M, h, w)) from the
        coded ẑ_g (1, M, h/4, w/4), identical on every CPU: entropy_parameters.entropy_parameters, the
        one implementation that the torch-free decoder (decoder.py) calls too."""
        gains = None if self.gain is None else self.gain.exact(quality)
        thresholds = log_scale_thresholds(self.gaussian_conditional.scale_table.numpy())
        return entropy_parameters(self.h_s.exact_layers(), z_hat.detach().cpu().numpy(), gains, thresholds, log_sigma)

    def synthesis(self, y_hat: Tensor, quality: float | Tensor | None = None) -> Tensor:
        """x̂ (B, 3, 16h, 16w), unclamped, from the coded ŷ_g (B, M, h, w): g_s(γ⁻¹_y·ŷ_g), differentiable."""
        g = self.gains(quality, y_hat.shape[0])
        return self.g_s(y_hat if g is None else y_hat * g.y_inv)

    def ungain(self, y_hat: Tensor, quality: float | None = None) -> Tensor:
        """The decoder's g_s input (1, M, h, w), float32, from the coded ŷ_g (float64): γ⁻¹_y·ŷ_g with the
        exact inverse gain (one IEEE product per element), computed once per image, not per tile."""
        if self.gain is not None:
            y_hat = y_hat.double() * torch.from_numpy(self.gain.exact(quality).y_inv)
        return y_hat.float()

    def reconstruct(self, y_hat: Tensor, quality: float | None = None) -> Tensor:
        """x̂ (1, 3, 16h, 16w), unclamped, of the coded ŷ_g (1, M, h, w), float64, with the exact inverse gain
        (:meth:`ungain`): the eval-mode forward's reconstruction (decoder.Decoder renders files in numpy)."""
        return self.g_s(self.ungain(y_hat, quality))

    def forward(self, x: Tensor, quantizer: str = "noise", quality: float | Tensor | None = None) -> dict:
        """Training / evaluation pass with differentiable quantization surrogates.

        In train mode, ``quantizer="noise"`` adds U(−½, ½) to y and z everywhere (the paper's
        default); ``"mixed"`` keeps noise for the rate but feeds g_s and h_s rounded values with
        a straight-through gradient. In eval mode y and z are rounded (around μ and the prior's
        median), so ``y_hat`` is what the decoder reconstructs from the bitstream and ``x_hat`` its torch g_s image.

        Under ``torch.autocast`` (bf16 training) only the transforms run in low precision: y, z,
        μ and σ are cast to fp32 and the entropy models run with autocast disabled, so the
        likelihoods (and the rate) are fp32.

        Args:
            x: (B, 3, H, W) image in [0, 1], H and W multiples of 64.
            quantizer: "noise" or "mixed".
            quality: quality in [0, 6], a float or one per image (B,); variable-rate models only.

        Returns:
            dict with ``x_hat`` (B, 3, H, W), unclamped; ``likelihoods`` {"y", "z"} of y_g and z_g
            (probabilities in (0, 1], same shapes as y and z); ``y_hat`` (B, M, H/16, W/16), coded domain.

        Raises:
            ValueError: for an unknown quantizer, or a variable-rate model without a quality.
        """
        if quantizer not in QUANTIZERS:
            raise ValueError(f"unknown quantizer {quantizer!r}; expected one of {QUANTIZERS}")
        y, z = (t.float() for t in self.analysis(x, quality))
        with torch.autocast(x.device.type, enabled=False):  # fp32 island: factorized prior of z
            z_hat, z_likelihoods = self.entropy_bottleneck(z)
        if not self.training:
            return self._forward_exact(y, z_hat, z_likelihoods, quality)
        if quantizer == "mixed":
            medians = self.z_medians()
            z_hat = quantize_ste(z - medians) + medians
        mu, sigma = (t.float() for t in self.hyper_synthesis(z_hat, quality))
        with torch.autocast(x.device.type, enabled=False):  # fp32 island: Gaussian conditional of y
            y_hat, y_likelihoods = self.gaussian_conditional(y, sigma, means=mu)
        if quantizer == "mixed":
            y_hat = quantize_ste(y - mu) + mu
        return {
            "x_hat": self.synthesis(y_hat, quality),
            "likelihoods": {"y": y_likelihoods, "z": z_likelihoods},
            "y_hat": y_hat,
        }

    def z_medians(self) -> Tensor:
        """The factorized prior's medians m (1, M, 1, 1): the offsets z is rounded around (ẑ = round(z − m) + m)."""
        return self.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)

    def _forward_exact(self, y: Tensor, z_hat: Tensor, z_likelihoods: Tensor, quality: float | Tensor | None) -> dict:
        """Eval-mode forward: ŷ_g = round(y_g − μ_g) + μ_g with the decoder's exact μ_g, per image."""
        qualities = torch.as_tensor(0.0 if quality is None else quality, dtype=torch.float64).expand(len(y)).tolist()
        x_hat, y_hat, y_likelihoods = [], [], []
        for i, q in enumerate(qualities):
            params = self.entropy_parameters(z_hat[i : i + 1], q, log_sigma=True)
            mu = torch.from_numpy(params.mu)
            y_hat.append(torch.round(y[i : i + 1].double() - mu) + mu)
            sigma = torch.from_numpy(np.exp(params.log_sigma)).float()
            y_likelihoods.append(self.gaussian_conditional(y[i : i + 1], sigma, means=mu.float())[1])
            x_hat.append(self.reconstruct(y_hat[-1], q))
        return {"x_hat": torch.cat(x_hat), "likelihoods": {"y": torch.cat(y_likelihoods), "z": z_likelihoods},
                "y_hat": torch.cat(y_hat)}

    def z_bits(self, z: Tensor) -> Tensor:
        """Bits of coded-domain z (B, M, h, w) as given (no rounding or noise) under the factorized prior: (B,).

        Differentiable in z (SGA); the likelihoods are lower-bounded as in training.
        """
        eb = self.entropy_bottleneck
        values = z.transpose(0, 1).reshape(z.shape[1], 1, -1)
        likelihood = eb.likelihood_lower_bound(eb._likelihood(values)[0])
        return -torch.log2(likelihood).reshape(z.shape[1], z.shape[0], -1).sum(dim=(0, 2))

    def y_bits(self, y: Tensor, mu: Tensor, sigma: Tensor) -> Tensor:
        """Bits of coded-domain y (B, M, h, w) as given under the discretized N(μ, σ) (each (B, M, h, w)): (B,).

        Differentiable in y, μ and σ (SGA); σ is lower-bounded and the likelihoods too, as in training.
        """
        gc = self.gaussian_conditional
        likelihood = gc.likelihood_lower_bound(gc._likelihood(y, sigma, means=mu))
        return -torch.log2(likelihood).sum(dim=(1, 2, 3))

    @torch.no_grad()
    def compress(self, x: Tensor, quality: float | None = None) -> LatentStrings:
        """Entropy-code one image: x (1, 3, H, W) in [0, 1], H and W multiples of 64."""
        return self.compress_latents(*self.analysis(x, quality), quality)

    @torch.no_grad()
    def compress_latents(self, y: Tensor, z: Tensor, quality: float | None = None) -> LatentStrings:
        """Entropy-code given coded-domain latents y (1, M, h, w) and z (1, M, h/4, w/4) (entropy_coding.py).

        z is rounded around the prior's medians (symbols round(z_g − m), per-channel tables), y
        around the exact μ_g (symbols round(y_g − μ_g), scale-index tables; ŷ_g = symbols + μ_g,
        float64). Kept separate from :meth:`compress` so that per-image optimized latents (SGA)
        use the same path.

        Raises:
            ValueError: a rounded latent outside int32.
        """
        medians = self.z_medians()
        z_symbols = torch.round(z - medians).to(torch.int64).numpy()
        z_string = entropy_coding.encode(z_symbols, entropy_coding.channel_indexes(z_symbols.shape), self.tables("z"))
        z_hat = torch.from_numpy(z_symbols).float() + medians
        params = self.entropy_parameters(z_hat, quality)
        y_string = entropy_coding.encode(_rounded_residual(y.numpy(), params.mu), params.indexes, self.tables("y"))
        return LatentStrings(z_string, y_string, tuple(z.shape[-2:]))

    def tables(self, latent: str) -> entropy_coding.CdfTables:
        """The integer CDF tables of z (factorized prior, one per channel) or y (Gaussian, one per scale)."""
        prefix = "entropy_bottleneck" if latent == "z" else "gaussian_conditional"
        return entropy_coding.CdfTables.of({k: v.numpy() for k, v in self.named_buffers() if k.startswith(prefix)},
                                           prefix)


def _rounded_residual(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """The y symbols round(y_g − μ_g), int32, computed in place (8 + 4 bytes per latent at the peak).

    Raises:
        ValueError: a rounded latent outside int32.
    """
    residual = y.astype(np.float64)
    residual -= mu
    np.round(residual, out=residual)
    if residual.size and not (np.iinfo(np.int32).min <= residual.min() and residual.max() <= np.iinfo(np.int32).max):
        raise ValueError("a rounded latent is outside int32")
    return residual.astype(np.int32)
