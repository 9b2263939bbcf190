"""The decoder's layers in numpy: transposed convolution (GEMM + overlap-add, or sub-pixel phases), IGDN, IGDN1.

The torch-free decoder (decoder.py) and the exact h_s (entropy_parameters.py) are built from
these. Arrays are (C, H, W), one image. A transposed convolution with stride s and kernel k is
the JPEG-like synthesis as the paper describes it (Sec. 3.1: M basis images per latent,
overlap-added); :class:`ConvTranspose2d` computes it as matrix products that do exactly the
layer's multiply-adds.

Output sizes follow transforms.conv_transpose_exact: the output is exactly s times the input,
with padding p = ⌈(k−s)/2⌉ cropped from the top/left (and the rest from the bottom/right).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: CompressAI's NonNegativeParametrizer offset (β and γ of GDN are stored as √(value + offset²)).
_REPARAM_OFFSET = 2.0**-18
#: GDN's β minimum (CompressAI's default beta_min).
_BETA_MIN = 1e-6


class ConvTranspose2d:
    """Transposed convolution whose output is exactly ``stride`` times its input, in numpy.

    Two ways to compute it, chosen per layer (both measured on this project's layers,
    benchmarks/README.md "Speed"):

    * *phases* (sub-pixel convolution): output pixel (Q·s + r, Q'·s + t) sums the taps
      (a·s + r, b·s + t) of the latents (Q − a, Q' − b). Along an axis the phases
      r < k − (n−1)·s have n = ⌈k/s⌉ taps and the others n − 1, so the s² phases fall into at
      most four groups by their tap counts. Each group is one GEMM over the shifted copies of
      the input that it needs, and the groups' outputs are interleaved into the image: exactly
      the layer's multiply-adds (no zero taps) and no scatter. (Where the groups' GEMMs would
      be small, one GEMM over the kernel zero-padded to n·s serves all phases.) The shifted
      copies are made in bands of rows that stay in the cache.
    * *scatter*: one GEMM gives every latent's k×k patch, then col2im adds the k² patch planes
      at stride s. Used where the patches (C_out·k² per latent) are less than SCATTER_BELOW = 2
      times the phases' shifted input copies (C_in·n²) and C_in > PHASES_MAX_INPUTS: the JPEG-like
      g_s and the mbt2018-mean's output layer. With a channels-last output and
      s·C_out ≥ BLOCK_SCATTER_MIN (the JPEG-like g_s: 16 × 3), the patches come out as
      (latent, ky, kx, c_out) and are added in n² blocks of s × s taps, each one vectorized pass
      over the image, instead of k² strided passes; block (0, 0) is assigned, not added to zeros.

    A call with ``fold_constant`` (the exact h_s, whose ẑ has many channels that are constant:
    no z symbol but 0) multiplies only the other channels' weights, and one all-ones channel
    carries the constant channels' summed contribution.

    Args:
        weight: (C_in, C_out, k, k) in PyTorch's ConvTranspose2d layout, k ≥ stride; its dtype
            (float32 or float64) is the layer's.
        bias: (C_out,).
        stride: s.

    Raises:
        ValueError: k < stride.
    """

    #: Scatter when C_out·k² < SCATTER_BELOW · C_in·n² (see the class docstring).
    SCATTER_BELOW = 2.0
    #: Phase groups whose GEMMs would have fewer output rows than this (e.g. one phase of a
    #: 64-channel layer) are merged into one GEMM over the zero-padded kernel: BLAS streams the
    #: shifted inputs once instead of once per group.
    PHASES_MIN_ROWS = 128
    #: Block col2im (channels-last scatter) from this many contiguous values per block row (s·C_out).
    BLOCK_SCATTER_MIN = 32
    #: Patch values per band of the channels-first scatter (2^19 float32, 2 MiB: fastest of 2^16..2^21 here).
    SCATTER_BAND = 2**19
    #: Phases also for layers of at most this many input channels (the two-layer's 12 → 3 output
    #: layer: 11–12 ms against the scatter's 14.5; for 64 → 3 the scatter is faster, 24 against 67 ms).
    PHASES_MAX_INPUTS = 16
    #: Shifted-input values per band of the phases (2^20: 1–3 ms faster than whole images here).
    PHASES_BAND = 2**20

    def __init__(self, weight: np.ndarray, bias: np.ndarray, stride: int):
        self.c_in, self.c_out, self.k = weight.shape[0], weight.shape[1], weight.shape[-1]
        if self.k < stride:
            raise ValueError(f"kernel {self.k} < stride {stride}")
        self.stride, self.taps = stride, -(-self.k // stride)
        self.bias = np.asarray(bias, dtype=weight.dtype)[:, None, None]
        self.phases = (self.c_out * self.k**2 >= self.SCATTER_BELOW * self.c_in * self.taps**2
                       or self.c_in <= self.PHASES_MAX_INPUTS)
        self.blocks = False
        if self.phases:
            self.shifts = _shift_order(self.taps)
            ranges = _phase_ranges(self.k, stride)
            self.groups = [_PhaseGroup.of(weight, stride, self.shifts, r, t) for r in ranges for t in ranges]
            if min(g.matrix.shape[-1] for g in self.groups) < self.PHASES_MIN_ROWS:
                n = self.taps * stride  # few outputs per GEMM: one GEMM over the kernel zero-padded to ⌈k/s⌉·s
                padded = np.zeros((self.c_in, self.c_out, n, n), weight.dtype)
                padded[:, :, : self.k, : self.k] = weight
                whole = (0, stride, self.taps)
                self.groups = [_PhaseGroup.of(padded, stride, self.shifts, whole, whole)]
        else:  # (1, C_in, C_out·k·k): one "shift", columns (c_out, ky, kx); for blocks (ky, kx, c_out)
            self.matrix = np.ascontiguousarray(weight.reshape(1, self.c_in, -1))
            self.blocks = stride * self.c_out >= self.BLOCK_SCATTER_MIN
            if self.blocks:
                self.block_matrix = np.ascontiguousarray(weight.transpose(0, 2, 3, 1).reshape(1, self.c_in, -1))

    def __call__(self, x: np.ndarray, fold_constant: bool = False, channels_last: bool = False) -> np.ndarray:
        """x (C_in, H, W) → (C_out, s·H, s·W), the layer's dtype; PyTorch's ConvTranspose2d with
        transforms.conv_transpose_exact's padding, up to the order of the float sums.

        With ``fold_constant``, channels of x that are constant are folded into one all-ones
        channel (the same terms summed in another order: exact for the fixed-point h_s). With
        ``channels_last``, the output is (s·H, s·W, C_out) (phases and block scatter write it in
        that layout: the pixels of the JPEG-like g_s; otherwise a transposed view).

        Raises:
            ValueError: x has another number of channels.
        """
        h, w = x.shape[1:]
        if channels_last and (self.phases or self.blocks):
            full = self._uncropped(x, fold_constant, channels_last=True)
            return full[self._span(h), self._span(w)]
        out = self.crop(self.uncropped(x, fold_constant), h, w)
        return out.transpose(1, 2, 0) if channels_last else out

    def uncropped(self, x: np.ndarray, fold_constant: bool = False, pointwise=None) -> np.ndarray:
        """The output before its crop, bias added, contiguous: (C_out, H', W') with H' ≥ s·H, W' ≥ s·W.

        ``pointwise``, a per-pixel layer after this one (the two-layer's IGDN1 and residual sum),
        maps (..., C_out, P) arrays to (..., C', P): with phases it runs on each group's
        products before they are interleaved (fewer channels to interleave), and the result
        is (C', H', W'). Then :meth:`crop`.

        Raises:
            ValueError: x has another number of channels.
        """
        return self._uncropped(x, fold_constant, channels_last=False, pointwise=pointwise)

    def crop(self, full: np.ndarray, h: int, w: int) -> np.ndarray:
        """The (C, s·h, s·w) view of :meth:`uncropped`'s output of an (h, w) input."""
        return full[:, self._span(h), self._span(w)]

    def _span(self, n: int) -> slice:
        """Output rows (or columns) of an input of n: p = ⌈(k−s)/2⌉ cropped at the start."""
        pad = (self.k - self.stride + 1) // 2
        return slice(pad, pad + n * self.stride)

    def _uncropped(self, x: np.ndarray, fold_constant: bool, channels_last: bool, pointwise=None) -> np.ndarray:
        """The uncropped output with the bias added (then ``pointwise``), channels first or (phases, block
        scatter) last."""
        c_in, h, w = x.shape
        if c_in != self.c_in:
            raise ValueError(f"input has {c_in} channels, the layer expects {self.c_in}")
        x = x.astype(self.bias.dtype, copy=False)
        fold = _constant_channels(x) if fold_constant else None
        if fold is not None:
            x = np.concatenate([x[fold[0]], np.ones((1, h, w), x.dtype)])
        if channels_last:
            full = self._phases(x, fold, channels_last=True) if self.phases else self._scatter_blocks(x, fold)
            full.reshape(len(full), -1)[...] += np.tile(self.bias[:, 0, 0], full.shape[1])  # rows of W·C_out values
            return full
        if self.phases and pointwise is not None:
            return self._phases(x, fold, pointwise=pointwise)
        full = self._phases(x, fold) if self.phases else self._scatter(x, fold)
        full += self.bias
        return full if pointwise is None else pointwise(full.reshape(len(full), -1)).reshape(-1, *full.shape[1:])

    def _scatter(self, x: np.ndarray, fold) -> np.ndarray:
        """Uncropped output (C_out, (H−1)·s + k, (W−1)·s + k): GEMM, then col2im, in bands of input rows
        whose patches (SCATTER_BAND values) stay in the cache between the GEMM and the col2im."""
        _, h, w = x.shape
        k, s = self.k, self.stride
        matrix = _flat(self.matrix if fold is None else _folded(self.matrix, *fold)).T
        full = np.zeros((self.c_out, (h - 1) * s + k, (w - 1) * s + k), dtype=x.dtype)
        band = max(1, self.SCATTER_BAND // (len(matrix) * w))
        for top in range(0, h, band):
            rows = min(band, h - top)
            patches = (matrix @ x[:, top : top + rows].reshape(len(x), -1)).reshape(self.c_out, k, k, rows, w)
            out = full[:, top * s :]
            for ky in range(k):
                for kx in range(k):
                    out[:, ky : ky + (rows - 1) * s + 1 : s, kx : kx + (w - 1) * s + 1 : s] += patches[:, ky, kx]
        return full

    def _scatter_blocks(self, x: np.ndarray, fold) -> np.ndarray:
        """Uncropped channels-last output ((H+n−1)·s, (W+n−1)·s, C_out): GEMM, then col2im by s × s blocks."""
        _, h, w = x.shape
        k, s, n = self.k, self.stride, self.taps
        matrix = self.block_matrix if fold is None else _folded(self.block_matrix, *fold)
        patches = (x.reshape(len(x), h * w).T @ _flat(matrix)).reshape(h, w, k, k, self.c_out)
        full = np.empty((h + n - 1, s, w + n - 1, s, self.c_out), dtype=patches.dtype)
        full[:h, :, :w] = patches[:, :, :s, :s].transpose(0, 2, 1, 3, 4)  # block (0, 0) covers these: no zeros
        full[h:], full[:h, :, w:] = 0, 0
        for a in range(n):
            for b in range(n):  # taps (a·s + r, b·s + t) of latent (Q, Q') land in block (Q + a, Q' + b)
                if a or b:
                    rows, cols = min(s, k - a * s), min(s, k - b * s)
                    full[a : a + h, :rows, b : b + w, :cols] += patches[:, :, a * s : a * s + rows,
                                                                        b * s : b * s + cols].transpose(0, 2, 1, 3, 4)
        return full.reshape((h + n - 1) * s, (w + n - 1) * s, self.c_out)

    def _phases(self, x: np.ndarray, fold, channels_last: bool = False, pointwise=None) -> np.ndarray:
        """Uncropped output (C_out, (H+n−1)·s, (W+n−1)·s), or ((H+n−1)·s, (W+n−1)·s, C_out) with
        ``channels_last``: a GEMM per phase group over shifted inputs, whose outputs are interleaved;
        with ``pointwise`` (channels first), the bias is added and ``pointwise`` applied per group first.
        Computed in bands of output-phase rows whose shifted inputs (PHASES_BAND values) stay in the cache."""
        c, h, w = x.shape
        s, n = self.stride, self.taps
        rows, cols = h + n - 1, w + n - 1
        padded = np.pad(x, ((0, 0), (n - 1, n - 1), (n - 1, n - 1)))
        band = min(rows, max(1, self.PHASES_BAND // (len(self.shifts) * c * cols)))
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


class _PhaseGroup(NamedTuple):
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
    def of(weight: np.ndarray, s: int, order: list[tuple[int, int]], rows: tuple[int, int, int],
           cols: tuple[int, int, int]) -> _PhaseGroup:
        """The group of phase rows (r0, r1, taps) × phase columns (t0, t1, taps) of a (C_in, C_out, k, k) weight."""
        (r0, r1, n_r), (t0, t1, n_t) = rows, cols
        used = [j for j, (a, b) in enumerate(order) if a < n_r and b < n_t]
        if used != list(range(used[0], used[0] + len(used))):
            raise AssertionError("a phase group's input shifts must be contiguous in the shift order")
        taps = [weight[:, :, a * s + r0 : a * s + r1, b * s + t0 : b * s + t1].transpose(0, 2, 3, 1)
                for a, b in (order[j] for j in used)]  # each (C_in, r, t, C_out)
        matrix = np.stack(taps).reshape(len(used), weight.shape[0], -1)
        return _PhaseGroup(r0, r1, t0, t1, used[0], np.ascontiguousarray(matrix))


def _phase_ranges(k: int, s: int) -> list[tuple[int, int, int]]:
    """Phases along an axis with the same number of taps: [(r0, r1, taps)], taps ⌈k/s⌉ then ⌈k/s⌉ − 1."""
    n = -(-k // s)
    split = k - (n - 1) * s
    return [(0, split, n)] + ([(split, s, n - 1)] if split < s else [])


def _shift_order(n: int) -> list[tuple[int, int]]:
    """Input shifts (a, b), a, b < n, ordered so that each phase group's shifts {a < n_r, b < n_t},
    n_r, n_t ∈ {n − 1, n}, are contiguous: row a = n−1 (b < n−1), the (n−1)² block, column
    b = n−1 (a < n−1), then (n−1, n−1)."""
    m = n - 1
    return ([(m, b) for b in range(m)] + [(a, b) for a in range(m) for b in range(m)]
            + [(a, m) for a in range(m)] + [(m, m)])


def _constant_channels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(indexes of the non-constant channels, (C,) each constant channel's value and 0 elsewhere) of
    x (C, H, W), or None when no channel is constant."""
    flat = x.reshape(len(x), -1)
    constant = (flat == flat[:, :1]).all(axis=1)
    if not constant.any():
        return None
    return np.flatnonzero(~constant), np.where(constant, flat[:, 0], 0)


def _folded(matrix: np.ndarray, live: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Weights (shifts, C_live + 1, N) for the live channels and one all-ones channel whose weight
    is Σ_c values_c · matrix[:, c] (the constant channels' contribution)."""
    folded = np.take(matrix, np.append(live, 0), axis=1)  # one gather into a fresh array (3× faster than into a view)
    folded[:, -1] = values @ matrix
    return folded


def _flat(matrix: np.ndarray) -> np.ndarray:
    """(shifts, C_in, N) → (shifts·C_in, N), the GEMM's K × N (K in the stack's order)."""
    return matrix.reshape(-1, matrix.shape[-1])


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
        return self.pixels(x.reshape(x.shape[0], -1)).reshape(x.shape)

    def pixels(self, x: np.ndarray) -> np.ndarray:
        """x (..., C, P), P pixels of C channels → the same shape, x's dtype."""
        norm = self.gamma @ (np.abs(x) if self.l1 else np.square(x))
        norm += self.beta
        if not self.l1:
            np.sqrt(norm, out=norm)
        norm *= x
        return norm
