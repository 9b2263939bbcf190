"""The GEMM + col2im (scatter) algorithms of the transposed convolution."""

from __future__ import annotations

import numpy as np

from shallowcodec.layers.conv import ConvTranspose, _flat, _folded


class ScatterConvTranspose(ConvTranspose):
    """GEMM + col2im: one GEMM gives every latent's k×k patch (C_out·k² values), then the k² patch planes
    are added at stride s; in bands of input rows whose patches (``band`` values; 2^19 float32, 2 MiB:
    fastest of 2^16..2^21 here) stay in the cache between the GEMM and the col2im."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, stride: int, channels_last: bool = False,
                 band: int = 2**19):
        super().__init__(weight, bias, stride, channels_last)
        self.band = band
        self.matrix = np.ascontiguousarray(weight.reshape(1, self.c_in, -1))  # (1, C_in, (c_out, ky, kx))

    def _uncropped_first(self, x: np.ndarray, fold, pointwise) -> np.ndarray:
        full = self._scatter(x, fold)
        full += self.bias
        return full if pointwise is None else pointwise(full.reshape(len(full), -1)).reshape(-1, *full.shape[1:])

    def _scatter(self, x: np.ndarray, fold) -> np.ndarray:
        """Uncropped output (C_out, (H−1)·s + k, (W−1)·s + k), without the bias."""
        _, h, w = x.shape
        k, s = self.k, self.stride
        matrix = _flat(self.matrix if fold is None else _folded(self.matrix, *fold)).T
        full = np.zeros((self.c_out, (h - 1) * s + k, (w - 1) * s + k), dtype=x.dtype)
        band = max(1, self.band // (len(matrix) * w))
        for top in range(0, h, band):
            rows = min(band, h - top)
            patches = (matrix @ x[:, top : top + rows].reshape(len(x), -1)).reshape(self.c_out, k, k, rows, w)
            out = full[:, top * s :]
            for ky in range(k):
                for kx in range(k):
                    out[:, ky : ky + (rows - 1) * s + 1 : s, kx : kx + (w - 1) * s + 1 : s] += patches[:, ky, kx]
        return full


class BlockScatterConvTranspose(ScatterConvTranspose):
    """GEMM + col2im into a channels-last image by s × s blocks: the patches come out as (latent, ky, kx, c_out)
    and are added in ⌈k/s⌉² blocks of s × s taps, each one vectorized pass over the image, instead of k²
    strided passes; block (0, 0) is assigned, not added to zeros. Channels-first calls scatter as its parent."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, stride: int):
        super().__init__(weight, bias, stride, channels_last=True)
        self.block_matrix = np.ascontiguousarray(weight.transpose(0, 2, 3, 1).reshape(self.c_in, -1))

    def _uncropped_last(self, x: np.ndarray) -> np.ndarray:
        """Uncropped channels-last output ((H+n−1)·s, (W+n−1)·s, C_out), bias added."""
        _, h, w = x.shape
        k, s, n = self.k, self.stride, self.taps
        patches = (x.reshape(len(x), h * w).T @ self.block_matrix).reshape(h, w, k, k, self.c_out)
        full = np.empty((h + n - 1, s, w + n - 1, s, self.c_out), dtype=patches.dtype)
        full[:h, :, :w] = patches[:, :, :s, :s].transpose(0, 2, 1, 3, 4)  # block (0, 0) covers these: no zeros
        full[h:], full[:h, :, w:] = 0, 0
        for a in range(n):
            for b in range(n):  # taps (a·s + r, b·s + t) of latent (Q, Q') land in block (Q + a, Q' + b)
                if a or b:
                    rows, cols = min(s, k - a * s), min(s, k - b * s)
                    full[a : a + h, :rows, b : b + w, :cols] += patches[:, :, a * s : a * s + rows,
                                                                        b * s : b * s + cols].transpose(0, 2, 1, 3, 4)
        full = full.reshape((h + n - 1) * s, (w + n - 1) * s, self.c_out)
        full.reshape(len(full), -1)[...] += np.tile(self.bias[:, 0, 0], full.shape[1])
        return full
