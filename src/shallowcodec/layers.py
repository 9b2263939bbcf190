"""The decoder's layers in numpy: transposed convolution (GEMM + overlap-add, or sub-pixel phases), IGDN, IGDN1.

The torch-free decoder (decoder.py) and the exact h_s (entropy_parameters.py) are built from
these. Arrays are (C, H, W), one image. A transposed convolution with stride s and kernel k is
a single matrix product — every latent's C_in values times the (C_in, C_out·k·k) weight matrix
give its k×k output patch — followed by col2im: the patches overlap-added at stride s. This is
the JPEG-like synthesis exactly as the paper describes it (Sec. 3.1: M basis images per latent,
overlap-added), and it costs the layer's FLOPs plus one pass over the patches.

Output sizes follow transforms.conv_transpose_exact: the output is exactly s times the input,
with padding p = ⌈(k−s)/2⌉ cropped from the top/left (and the rest from the bottom/right).
"""

from __future__ import annotations

import numpy as np

#: CompressAI's NonNegativeParametrizer offset (β and γ of GDN are stored as √(value + offset²)).
_REPARAM_OFFSET = 2.0**-18
#: GDN's β minimum (CompressAI's default beta_min).
_BETA_MIN = 1e-6


class ConvTranspose2d:
    """Transposed convolution whose output is exactly ``stride`` times its input, in numpy.

    Two ways to compute it, chosen per layer (both measured on this project's layers,
    benchmarks/README.md): *scatter* — one GEMM gives every latent's k×k patch, then col2im
    adds the k² patch planes at stride s (cheap for few output channels, e.g. the JPEG-like
    g_s); *phases* (sub-pixel convolution) — output pixel (Q·s + r, Q'·s + t) sums the taps
    (a·s + r, b·s + t) of the latents (Q − a, Q' − b), so one GEMM over the n² = ⌈k/s⌉² shifted
    copies of the input gives all s² phases at once and a reshape interleaves them (no
    scatter; for wide outputs, e.g. the two-layer g_s's first layer and h_s).

    Args:
        weight: (C_in, C_out, k, k) in PyTorch's ConvTranspose2d layout, k ≥ stride; its dtype
            (float32 or float64) is the layer's.
        bias: (C_out,).
        stride: s.

    Raises:
        ValueError: k < stride.
    """

    #: Phases need ≥ this many output channels (fewer: the scatter is cheap) ...
    PHASES_FROM_CHANNELS = 16
    #: ... and at most this many times the layer's multiply-adds (the kernel zero-padded to ⌈k/s⌉·s).
    PHASES_MAX_OVERHEAD = 1.6

    def __init__(self, weight: np.ndarray, bias: np.ndarray, stride: int):
        self.c_in, self.c_out, self.k = weight.shape[0], weight.shape[1], weight.shape[-1]
        if self.k < stride:
            raise ValueError(f"kernel {self.k} < stride {stride}")
        self.stride = stride
        self.bias = np.asarray(bias, dtype=weight.dtype)[:, None, None]
        n, s = -(-self.k // stride), stride
        overhead = (n * s) ** 2 / self.k**2
        self.phases = self.c_out >= self.PHASES_FROM_CHANNELS and self.k > s and overhead <= self.PHASES_MAX_OVERHEAD
        if self.phases:  # (s·s·C_out, n·n·C_in): rows (r, t, c_out), columns (a, b, c_in)
            padded = np.zeros((self.c_in, self.c_out, n * s, n * s), dtype=weight.dtype)
            padded[:, :, : self.k, : self.k] = weight
            taps = padded.reshape(self.c_in, self.c_out, n, s, n, s).transpose(3, 5, 1, 2, 4, 0)
            self.matrix = np.ascontiguousarray(taps.reshape(s * s * self.c_out, -1))
        else:  # (C_out·k·k, C_in)
            self.matrix = np.ascontiguousarray(weight.reshape(self.c_in, -1).T)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (C_in, H, W) → (C_out, s·H, s·W), the layer's dtype; PyTorch's ConvTranspose2d with
        transforms.conv_transpose_exact's padding, up to the order of the float sums.

        Raises:
            ValueError: x has another number of channels.
        """
        c_in, h, w = x.shape
        if c_in != self.c_in:
            raise ValueError(f"input has {c_in} channels, the layer expects {self.c_in}")
        full = self._phases(x) if self.phases else self._scatter(x)
        pad = (self.k - self.stride + 1) // 2
        out = full[:, pad : pad + h * self.stride, pad : pad + w * self.stride]
        out += self.bias
        return out

    def _scatter(self, x: np.ndarray) -> np.ndarray:
        """Uncropped output (C_out, (H−1)·s + k, (W−1)·s + k): GEMM, then col2im."""
        _, h, w = x.shape
        k, s = self.k, self.stride
        patches = (self.matrix @ x.reshape(self.c_in, h * w)).reshape(self.c_out, k, k, h, w)
        full = np.zeros((self.c_out, (h - 1) * s + k, (w - 1) * s + k), dtype=patches.dtype)
        rows, cols = (h - 1) * s + 1, (w - 1) * s + 1
        for ky in range(k):
            for kx in range(k):
                full[:, ky : ky + rows : s, kx : kx + cols : s] += patches[:, ky, kx]
        return full

    def _phases(self, x: np.ndarray) -> np.ndarray:
        """Uncropped output (C_out, (H+n−1)·s, (W+n−1)·s): one GEMM over shifted inputs, phases interleaved."""
        _, h, w = x.shape
        s, n = self.stride, -(-self.k // self.stride)
        padded = np.pad(x.astype(self.matrix.dtype, copy=False), ((0, 0), (n - 1, n - 1), (n - 1, n - 1)))
        rows, cols = h + n - 1, w + n - 1
        shifted = np.stack([padded[:, n - 1 - a : n - 1 - a + rows, n - 1 - b : n - 1 - b + cols]
                            for a in range(n) for b in range(n)])
        blocks = (self.matrix @ shifted.reshape(-1, rows * cols)).reshape(s, s, self.c_out, rows, cols)
        return blocks.transpose(2, 3, 0, 4, 1).reshape(self.c_out, rows * s, cols * s)


def _nonnegative(x: np.ndarray, minimum: float = 0.0) -> np.ndarray:
    """CompressAI's NonNegativeParametrizer: max(x, √(minimum + offset²))² − offset²."""
    pedestal = _REPARAM_OFFSET**2
    return np.maximum(x, (minimum + pedestal) ** 0.5) ** 2 - pedestal


class InverseGDN:
    """IGDN (Ballé et al. 2016) or, with ``l1``, IGDN1 (the paper's simplified GDN, Sec. 3.2), in numpy.

    IGDN: x_i · √(β_i + Σ_j γ_ij x_j²);  IGDN1: x_i · (β_i + Σ_j γ_ij |x_j|).

    Args:
        beta: (C,) and gamma: (C, C), the stored (reparametrized) parameters of CompressAI's
            GDN/GDN1, float32.
        l1: IGDN1 instead of IGDN.
    """

    def __init__(self, beta: np.ndarray, gamma: np.ndarray, l1: bool):
        self.beta = _nonnegative(beta, _BETA_MIN)[:, None]
        self.gamma = _nonnegative(gamma)
        self.l1 = l1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (C, H, W) → (C, H, W), x's dtype."""
        flat = x.reshape(x.shape[0], -1)
        norm = self.gamma @ (np.abs(flat) if self.l1 else np.square(flat))
        norm += self.beta
        if not self.l1:
            np.sqrt(norm, out=norm)
        return (flat * norm).reshape(x.shape)
