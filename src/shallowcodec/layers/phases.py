"""The sub-pixel (phase) algorithm of the transposed convolution."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from shallowcodec.layers.conv import ConvTranspose, _flat, _folded


class PhaseConvTranspose(ConvTranspose):
    """The sub-pixel algorithm: output pixel (Q·s + r, Q'·s + t) sums the taps (a·s + r, b·s + t) of the
    latents (Q − a, Q' − b). The phases with equal tap counts along both axes form a group (:func:`phase_groups`),
    each one GEMM over the shifted copies of the input that it needs; ``merged``: one GEMM over the
    kernel zero-padded to ⌈k/s⌉·s serves all phases. The shifted copies are made in bands of
    ``band`` values that stay in the cache (2^20: 1–3 ms faster than whole images here).
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, stride: int, channels_last: bool = False,
                 merged: bool = False, band: int = 2**20):
        super().__init__(weight, bias, stride, channels_last)
        self.band = band
        self.shifts, self.groups = PhaseGroup.of_weight(weight, stride, merged)

    def _uncropped_first(self, x: np.ndarray, fold, pointwise) -> np.ndarray:
        if pointwise is not None:
            return self._phases(x, fold, pointwise=pointwise)
        full = self._phases(x, fold)
        full += self.bias
        return full

    def _uncropped_last(self, x: np.ndarray) -> np.ndarray:
        full = self._phases(x, None, channels_last=True)
        full.reshape(len(full), -1)[...] += np.tile(self.bias[:, 0, 0], full.shape[1])  # rows of W·C_out values
        return full

    def _phases(self, x: np.ndarray, fold, channels_last: bool = False, pointwise=None) -> np.ndarray:
        """Uncropped output (C_out, (H+n−1)·s, (W+n−1)·s), or ((H+n−1)·s, (W+n−1)·s, C_out) with
        ``channels_last``: a GEMM per phase group over shifted inputs, whose outputs are interleaved;
        with ``pointwise`` (channels first), the bias is added and ``pointwise`` applied per group first."""
        c, h, w = x.shape
        s, n = self.stride, self.taps
        rows, cols = h + n - 1, w + n - 1
        padded = np.pad(x, ((0, 0), (n - 1, n - 1), (n - 1, n - 1)))
        band = min(rows, max(1, self.band // (len(self.shifts) * c * cols)))
        matrices = [_flat(g.matrix if fold is None else _folded(g.matrix, *fold)) for g in self.groups]
        stack = np.empty((len(self.shifts), c, band, cols), x.dtype)  # (shift, c_in, row, col)
        # one scratch buffer for every group's products: fewer fresh pages
        products = np.empty(max(g.matrix.shape[-1] for g in self.groups) * band * cols, x.dtype)
        full = None  # allocated with the first group's output (pointwise may change the channels)
        for top in range(0, rows, band):
            m = min(band, rows - top)
            for j, (a, b) in enumerate(self.shifts):
                stack[j, :, :m] = padded[:, n - 1 - a + top : n - 1 - a + top + m, n - 1 - b : n - 1 - b + cols]
            for g, matrix in zip(self.groups, matrices):
                inputs = stack[g.first : g.first + matrix.shape[0] // c, :, :m].reshape(-1, m * cols)
                phases, size = (g.r1 - g.r0, g.t1 - g.t0), matrix.shape[1] * m * cols
                if channels_last:  # (row, col, r, t, c_out) → (row, r, col, t, c_out)
                    out = np.matmul(inputs.T, matrix, out=products[:size].reshape(m * cols, -1))
                    out = out.reshape(m, cols, *phases, self.c_out).transpose(0, 2, 1, 3, 4)
                    full = np.empty((rows, s, cols, s, self.c_out), x.dtype) if full is None else full
                    full[top : top + m, g.r0 : g.r1, :, g.t0 : g.t1] = out
                else:  # (r, t, c_out, row, col) → (c_out, row, r, col, t)
                    out = np.matmul(matrix.T, inputs, out=products[:size].reshape(-1, m * cols))
                    out = out.reshape(-1, self.c_out, m * cols)
                    if pointwise is not None:
                        out += self.bias[:, :, 0]
                        out = pointwise(out)  # (r·t, C', row·col)
                    full = np.empty((out.shape[1], rows, s, cols, s), x.dtype) if full is None else full
                    full[:, top : top + m, g.r0 : g.r1, :, g.t0 : g.t1] = out.reshape(*phases, -1, m, cols).transpose(
                        2, 3, 0, 4, 1)
        if channels_last:
            return full.reshape(rows * s, cols * s, self.c_out)
        return full.reshape(len(full), rows * s, cols * s)


class PhaseGroup(NamedTuple):
    """Output phases r0 ≤ r < r1, t0 ≤ t < t1 (the same tap counts) and their weights.

    ``matrix`` (shifts, C_in, (r, t, c_out)) multiplies the ``shifts`` input copies from
    position ``first`` of the layer's shift order.
    """

    r0: int
    r1: int
    t0: int
    t1: int
    first: int
    matrix: np.ndarray

    @staticmethod
    def of_weight(weight: np.ndarray, s: int, merged: bool) -> tuple[list[tuple[int, int]], list[PhaseGroup]]:
        """The shift order and phase groups of a (C_in, C_out, k, k) weight at stride s (:func:`phase_groups`);
        ``merged``: one group of all phases over the kernel zero-padded to ⌈k/s⌉·s."""
        k = weight.shape[-1]
        n = -(-k // s)
        order = _shift_order(n)
        if not merged:
            return order, [PhaseGroup.of(weight, s, order, rows, cols) for rows, cols in phase_groups(k, s)]
        padded = np.zeros((*weight.shape[:2], n * s, n * s), weight.dtype)
        padded[:, :, :k, :k] = weight
        return order, [PhaseGroup.of(padded, s, order, (0, s, n), (0, s, n))]

    @staticmethod
    def of(weight: np.ndarray, s: int, order: list[tuple[int, int]], rows: tuple[int, int, int],
           cols: tuple[int, int, int]) -> PhaseGroup:
        """The group of phase rows (r0, r1, taps) × phase columns (t0, t1, taps) of a (C_in, C_out, k, k) weight."""
        (r0, r1, n_r), (t0, t1, n_t) = rows, cols
        used = [j for j, (a, b) in enumerate(order) if a < n_r and b < n_t]
        if used != list(range(used[0], used[0] + len(used))):
            raise AssertionError("a phase group's input shifts must be contiguous in the shift order")
        taps = [weight[:, :, a * s + r0 : a * s + r1, b * s + t0 : b * s + t1].transpose(0, 2, 3, 1)
                for a, b in (order[j] for j in used)]  # each (C_in, r, t, C_out)
        matrix = np.stack(taps).reshape(len(used), weight.shape[0], -1)
        return PhaseGroup(r0, r1, t0, t1, used[0], np.ascontiguousarray(matrix))


def phase_groups(k: int, s: int) -> list[tuple[tuple[int, int, int], tuple[int, int, int]]]:
    """The phase groups of a kernel k at stride s: along an axis the phases r < k − (n−1)·s have n = ⌈k/s⌉ taps
    and the others n − 1, so the s² phases fall into at most four groups (rows (r0, r1, taps), columns (t0, t1, taps))."""
    n = -(-k // s)
    split = k - (n - 1) * s
    ranges = [(0, split, n)] + ([(split, s, n - 1)] if split < s else [])
    return [(r, t) for r in ranges for t in ranges]


def _shift_order(n: int) -> list[tuple[int, int]]:
    """Input shifts (a, b), a, b < n, ordered so that each phase group's shifts {a < n_r, b < n_t},
    n_r, n_t ∈ {n − 1, n}, are contiguous: row a = n−1 (b < n−1), the (n−1)² block, column
    b = n−1 (a < n−1), then (n−1, n−1)."""
    m = n - 1
    return ([(m, b) for b in range(m)] + [(a, b) for a in range(m) for b in range(m)]
            + [(a, m) for a in range(m)] + [(m, m)])
