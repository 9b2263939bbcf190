"""SGA: per-image iterative encoding by Stochastic Gumbel Annealing.

Yang, Bamler & Mandt, "Improving Inference for Neural Image Compression", NeurIPS 2020 (Sec. 3.3),
as used by Yang & Mandt (ICCV 2023, Sec. 3.4) to close the inference gap of shallow decoders.

Starting from the amortized encoder's y = g_a(x) and z = h_a(y), the continuous latents are
optimized for the rate–distortion cost of *this* image with Adam::

    repeat t = 0 … T−1:
        z̃ = m + SGA(z − m)          m: the factorized prior's median (its rounding offset)
        μ, σ = h_s(z̃)
        ỹ = μ + SGA(y − μ)
        L = bits(z̃) + bits(ỹ | μ, σ) / pixels + λ · MSE(g_s(ỹ), x)     (MSE on 0–255)
        (y, z) ← Adam(lr 5e-3, ×0.1 after 90 % of T)
    then round hard (ŷ = round(y − μ) + μ) and entropy-code as usual.

SGA(v) rounds v to floor(v) or ceil(v) by a two-way Gumbel-softmax relaxation whose logits are
−atanh(distance)/τ, annealed by τ(t) = clip(0.5 · exp(−5e-4 · (t − 200)), 1e-8, 0.5) over the paper's
3,000 iterations (a run of T iterations follows it at t · 3000 / T). Only h_s,
g_s and the priors run in the loop (g_a, h_a and x are fixed), so the cost per iteration is
proportional to the decoder's; the decoder itself is unchanged. The inference gap that SGA closes is
measured on real files by :func:`shallowcodec.evaluation.inference_gap`.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor
from tqdm import tqdm

from shallowcodec.hyperprior import ShallowHyperprior
from shallowcodec.metrics import psnr_of_mse

LR = 5e-3
DEFAULT_STEPS = 3000
#: SGA iterations of each encoder effort level, as ``cjxl --effort`` or ``avifenc --speed``: 0 is the
#: amortized encoder alone, the top level the paper's 3,000 (converged: Yang & Mandt 2023, Fig. 6).
EFFORT_STEPS = (0, 100, 300, 1000, DEFAULT_STEPS)
MAX_EFFORT = len(EFFORT_STEPS) - 1
#: SGA refines images larger than this many ẑ cells a side (1,024 pixels) in tiles of that size with
#: SGA_MARGIN cells (128 pixels) of context on each side, so that its memory is bounded for any image.
SGA_TILE, SGA_MARGIN = 16, 2
#: The default effort: the amortized encoder (a 12-Mpx photo in seconds; one SGA iteration of it
#: alone costs seconds, benchmarks/README.md "Encoder effort").
DEFAULT_EFFORT = 0


def effort_steps(effort: int) -> int:
    """SGA iterations of an effort level (:data:`EFFORT_STEPS`).

    Raises:
        ValueError: not an integer in 0..:data:`MAX_EFFORT`.
    """
    if isinstance(effort, bool) or not isinstance(effort, int) or not 0 <= effort <= MAX_EFFORT:
        raise ValueError(f"effort must be an integer in 0..{MAX_EFFORT}, got {effort!r}")
    return EFFORT_STEPS[effort]


def temperature(t: int, steps: int = DEFAULT_STEPS) -> float:
    """SGA temperature at iteration t of ``steps``: the paper's τ(t') = clip(0.5 · exp(−5e-4 · (t' − 200)),
    1e-8, 0.5) (Yang et al. 2020) at t' = t · 3000 / ``steps``, so that a shorter run anneals as far as
    the paper's 3,000 iterations do (at 100 and 300 iterations this costs 1–2 % less bpp + λ·MSE than the
    unscaled schedule: benchmarks/README.md "Encoder effort")."""
    return min(max(0.5 * math.exp(-5e-4 * (t * DEFAULT_STEPS / steps - 200)), 1e-8), 0.5)


def sga_round(v: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
    """Stochastically relaxed rounding of v to floor(v) or ceil(v) (any shape, same shape out).

    Two-way Gumbel-softmax at temperature τ with logits −atanh(d)/τ, d the distance to floor
    or ceil; as τ → 0 it becomes hard rounding to the nearer integer. Differentiable in v.
    """
    v_floor = torch.floor(v)
    d_floor = v - v_floor
    eps = 1e-5
    logits = torch.stack([-torch.atanh(d_floor.clamp(0, 1 - eps)), -torch.atanh((1 - d_floor).clamp(0, 1 - eps))]) / tau
    u = torch.rand(logits.shape, generator=generator, dtype=v.dtype).clamp_(1e-10, 1 - 1e-7)
    weights = torch.softmax((logits - torch.log(-torch.log(u))) / tau, dim=0)
    return v_floor + weights[1]


def rd_cost(model: ShallowHyperprior, x: Tensor, y: Tensor, z: Tensor, lmbda: float,
            size: tuple[int, int], mu_sigma: tuple[Tensor, Tensor] | None = None,
            quality: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image rate–distortion cost of coded-domain latents y, z as given (no rounding applied here).

    Args:
        x: (B, 3, H', W') padded target in [0, 1]; only the top-left ``size`` = (H, W) counts.
        y: (B, M, H'/16, W'/16); z: (B, M, H'/64, W'/64).
        mu_sigma: the hyper-synthesis of z when the caller already has it (computed otherwise).
        quality: quality of a variable-rate model (ignored by fixed-λ models).

    Returns:
        (cost, bpp, mse), each (B,): cost = bpp + λ·MSE, bpp over the H·W real pixels, MSE on 0–255.
    """
    h, w = size
    mu, sigma = model.hyper_synthesis(z, quality) if mu_sigma is None else mu_sigma
    bpp = (model.z_bits(z) + model.y_bits(y, mu, sigma)) / (h * w)
    x_hat = model.synthesis(y, quality)[..., :h, :w]
    mse = ((x_hat - x[..., :h, :w]) ** 2).mean(dim=(1, 2, 3)) * 255**2
    return bpp + lmbda * mse, bpp, mse


def hard_round(model: ShallowHyperprior, y: Tensor, z: Tensor,
               quality: float | None = None) -> tuple[Tensor, Tensor]:
    """The latents the bitstream carries: ẑ = round(z − m) + m, ŷ = round(y − μ(ẑ)) + μ(ẑ)."""
    medians = model.z_medians()
    z_hat = torch.round(z - medians) + medians
    mu, _ = model.hyper_synthesis(z_hat, quality)
    return torch.round(y - mu) + mu, z_hat


def refine(model: ShallowHyperprior, x: Tensor, y: Tensor, z: Tensor, lmbda: float, size: tuple[int, int],
           quality: float | None = None, steps: int = DEFAULT_STEPS, seconds: float | None = None, seed: int = 0,
           progress: bool = False) -> tuple[Tensor, Tensor]:
    """Optimize y and z for one batch of equal-size images by SGA; returns the refined (y, z).

    Args:
        model: trained model (its parameters are not changed).
        x: (B, 3, H', W') padded images in [0, 1]; y, z: the amortized (coded-domain) latents for x.
        lmbda: λ of the model's quality (loss = bpp + λ·MSE on 0–255).
        size: (H, W) of the real images inside the padding.
        quality: quality of a variable-rate model (ignored by fixed-λ models).
        steps: iterations T (paper: 3000); the lr drops ×0.1 after 90 % of T.
        seconds: time budget instead of ``steps``: T is set from the speed of the first
            iterations so that the run, schedule included, fits the budget.
        seed: seed of the Gumbel noise (same seed, same result).
        progress: show a progress bar with bpp, PSNR and loss.

    Returns:
        Continuous (y, z); round them with :func:`hard_round` or entropy-code them directly. An
        image whose refined latents, rounded, cost more than its amortized ones keeps the amortized
        (:func:`keep_better`), so no SGA run gives a worse file than the encoder alone.
    """
    start_latents = y, z
    generator = torch.Generator().manual_seed(seed)
    medians = model.z_medians().detach()
    y, z = y.detach().clone().requires_grad_(True), z.detach().clone().requires_grad_(True)
    x = x.detach()
    optimizer = torch.optim.Adam([y, z], lr=LR)
    requires_grad = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    start, t = time.monotonic(), 0
    total = steps if seconds is None else 10**9  # set from the measured speed after 5 steps
    bar = tqdm(total=None if seconds else total, desc="SGA", disable=not progress, dynamic_ncols=True)
    try:
        while t < total:
            tau = temperature(t, total)
            z_tilde = medians + sga_round(z - medians, tau, generator)
            mu, sigma = model.hyper_synthesis(z_tilde, quality)
            y_tilde = mu + sga_round(y - mu, tau, generator)
            cost, bpp, mse = rd_cost(model, x, y_tilde, z_tilde, lmbda, size, (mu, sigma), quality)
            optimizer.zero_grad(set_to_none=True)
            cost.sum().backward()
            optimizer.step()
            t += 1
            if seconds is not None and t == 5:
                total = max(t, int(seconds / ((time.monotonic() - start) / t)))
                bar.total = total
            if t == int(0.9 * total):
                optimizer.param_groups[0]["lr"] = LR * 0.1
            bar.update(1)
            bar.set_postfix(refresh=False, loss=f"{cost.mean().item():.3f}", bpp=f"{bpp.mean().item():.3f}",
                            psnr=f"{psnr_of_mse(max(mse.mean().item(), 1e-10)):.2f}")
    finally:
        bar.close()
        for p, flag in zip(model.parameters(), requires_grad):
            p.requires_grad_(flag)
    return keep_better(model, x, start_latents, (y.detach(), z.detach()), lmbda, size, quality)


@torch.no_grad()
def keep_better(model: ShallowHyperprior, x: Tensor, first: tuple[Tensor, Tensor], second: tuple[Tensor, Tensor],
                lmbda: float, size: tuple[int, int], quality: float | None = None) -> tuple[Tensor, Tensor]:
    """Per image, the (y, z) of ``first`` or ``second`` whose hard-rounded latents cost less (bpp + λ·MSE,
    :func:`rd_cost`; ties keep ``second``). Shapes as in :func:`refine`."""
    costs = [rd_cost(model, x, *hard_round(model, y, z, quality), lmbda, size, quality=quality)[0]
             for y, z in (first, second)]
    take = (costs[1] <= costs[0])[:, None, None, None]
    return torch.where(take, second[0], first[0]), torch.where(take, second[1], first[1])



def refine_tiled(model: ShallowHyperprior, x: Tensor, y: Tensor, z: Tensor, lmbda: float, size: tuple[int, int],
                 quality: float | None = None, steps: int = DEFAULT_STEPS, seconds: float | None = None,
                 seed: int = 0, progress: bool = False) -> tuple[Tensor, Tensor]:
    """:func:`refine` over tiles of :data:`SGA_TILE` ẑ cells, each widened by :data:`SGA_MARGIN` cells of
    context (clipped at the edges), keeping each tile's core; images within one tile are refined whole.

    Each tile is its own problem (its pixels' cost, its seed ``seed`` + tile index, an ``seconds``
    budget shared by area), so memory is that of one tile while the time is the same as untiled.
    The decoder never knows: any latents decode. Shapes and arguments as :func:`refine`.
    """
    h_z, w_z = z.shape[-2:]
    if h_z <= SGA_TILE and w_z <= SGA_TILE:
        return refine(model, x, y, z, lmbda, size, quality, steps, seconds, seed, progress)
    y, z = y.clone(), z.clone()
    cores = [(r, c) for r in range(0, h_z, SGA_TILE) for c in range(0, w_z, SGA_TILE)]
    for i, (r, c) in enumerate(cores):
        r0, r1 = max(0, r - SGA_MARGIN), min(h_z, r + SGA_TILE + SGA_MARGIN)
        c0, c1 = max(0, c - SGA_MARGIN), min(w_z, c + SGA_TILE + SGA_MARGIN)
        real = (min(size[0], 64 * r1) - 64 * r0, min(size[1], 64 * c1) - 64 * c0)  # padding is bottom/right
        budget = None if seconds is None else seconds * (r1 - r0) * (c1 - c0) / (h_z * w_z)
        tile_x, tile_y = x[..., 64 * r0 : 64 * r1, 64 * c0 : 64 * c1], y[..., 4 * r0 : 4 * r1, 4 * c0 : 4 * c1]
        tile_y, tile_z = refine(model, tile_x, tile_y, z[..., r0:r1, c0:c1], lmbda, real, quality, steps, budget,
                                seed + i, progress)
        re, ce = min(h_z, r + SGA_TILE), min(w_z, c + SGA_TILE)
        z[..., r:re, c:ce] = tile_z[..., r - r0 : re - r0, c - c0 : ce - c0]
        y[..., 4 * r : 4 * re, 4 * c : 4 * ce] = tile_y[..., 4 * (r - r0) : 4 * (re - r0), 4 * (c - c0) : 4 * (ce - c0)]
    return y, z
