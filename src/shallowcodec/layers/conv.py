"""The transposed convolution's shared part: geometry, bias, crop, input folding, and its ONNX form."""

from __future__ import annotations

import numpy as np


class ConvTranspose:
    """Transposed convolution whose output is exactly ``stride`` times its input (the part the algorithms share:
    geometry, bias, crop, the ONNX form).

    Args:
        weight: (C_in, C_out, k, k), float32 or float64; bias: (C_out,); stride: s.
        channels_last: :meth:`__call__` returns (s·H, s·W, C_out).

    Raises:
        ValueError: k < stride.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, stride: int, channels_last: bool = False):
        self.c_in, self.c_out, self.k = weight.shape[0], weight.shape[1], weight.shape[-1]
        if self.k < stride:
            raise ValueError(f"kernel {self.k} < stride {stride}")
        self.weight, self.stride, self.taps = weight, stride, -(-self.k // stride)
        self.bias = np.asarray(bias, dtype=weight.dtype)[:, None, None]
        self.channels_last = channels_last

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (C_in, H, W) → (C_out, s·H, s·W), or (s·H, s·W, C_out) for a channels-last layer, the layer's dtype:
        PyTorch's ConvTranspose2d with transforms.conv_transpose_exact's padding, up to the order of the float sums.

        Raises:
            ValueError: x has another number of channels.
        """
        h, w = x.shape[1:]
        if self.channels_last:
            return self._uncropped_last(self._input(x, False)[0])[self._span(h), self._span(w)]
        return self.crop(self.uncropped(x), h, w)

    def uncropped(self, x: np.ndarray, fold_constant: bool = False, pointwise=None) -> np.ndarray:
        """The output before its crop, bias added, contiguous, channels first: (C_out, H', W'), H' ≥ s·H, W' ≥ s·W.

        ``fold_constant``: channels of x that are constant (the exact h_s's ẑ: most channels have no
        z symbol but 0) are folded into one all-ones channel whose weight is their Σ value·weight (the
        same terms summed in another order: exact for the fixed-point h_s). ``pointwise``, a
        per-pixel layer after this one (IGDN1 and the residual sum, or Q_a and ReLU), maps
        (..., C_out, P) arrays to (..., C', P), in place where it can; the phases run it on each
        group's products before they are interleaved, and the result is (C', H', W'). Then :meth:`crop`.

        Raises:
            ValueError: x has another number of channels.
        """
        x, fold = self._input(x, fold_constant)
        return self._uncropped_first(x, fold, pointwise)

    def crop(self, full: np.ndarray, h: int, w: int) -> np.ndarray:
        """The (C, s·h, s·w) view of :meth:`uncropped`'s output of an (h, w) input."""
        return full[:, self._span(h), self._span(w)]

    def _span(self, n: int) -> slice:
        """Output rows (or columns) of an input of n: p = ⌈(k−s)/2⌉ cropped at the start."""
        pad = (self.k - self.stride + 1) // 2
        return slice(pad, pad + n * self.stride)

    def _input(self, x: np.ndarray, fold_constant: bool) -> tuple[np.ndarray, tuple | None]:
        """x in the layer's dtype, its constant channels folded when ``fold_constant`` (and the fold, or None)."""
        c_in, h, w = x.shape
        if c_in != self.c_in:
            raise ValueError(f"input has {c_in} channels, the layer expects {self.c_in}")
        x = x.astype(self.bias.dtype, copy=False)
        fold = _constant_channels(x) if fold_constant else None
        if fold is not None:
            x = np.concatenate([x[fold[0]], np.ones((1, h, w), x.dtype)])
        return x, fold

    def _uncropped_first(self, x: np.ndarray, fold, pointwise) -> np.ndarray:
        raise NotImplementedError

    def _uncropped_last(self, x: np.ndarray) -> np.ndarray:
        """Channels-last uncropped output with the bias added; this default transposes the channels-first one."""
        return self._uncropped_first(x, None, None).transpose(1, 2, 0)

    def onnx(self, graph, x: str) -> str:
        """Write this layer into an ONNX graph (onnx_graph.Graph) in its sub-pixel form and return its output.

        x (1, C_in, H, W) → (1, C_out, s·H, s·W), channels first whatever ``channels_last``: Pad by
        n − 1 = ⌈k/s⌉ − 1, the n² shifted copies concatenated over channels, one MatMul with the kernel
        zero-padded to n·s (columns (c_out, r, t)), DepthToSpace (CRD) interleaves the s² phases, a
        Slice crops p = ⌈(k−s)/2⌉ at the top/left, then the bias. Every shape is static but H and W.
        """
        n, s = self.taps, self.stride
        pad = (self.k - s + 1) // 2
        w = np.zeros((self.c_in, self.c_out, n * s, n * s), self.weight.dtype)
        w[:, :, : self.k, : self.k] = self.weight
        matrix = w.reshape(self.c_in, self.c_out, n, s, n, s).transpose(2, 4, 0, 1, 3, 5).reshape(n * n * self.c_in, -1)
        padded = graph.node("Pad", [x, graph.ints([0, 0, n - 1, n - 1, 0, 0, n - 1, n - 1])])
        shifted = [graph.slice(padded, (n - 1 - a, n - 1 - b), (-a, -b)) for a in range(n) for b in range(n)]
        stack = graph.node("Transpose", [graph.node("Concat", shifted, axis=1)], perm=[0, 2, 3, 1])
        phases = graph.node("Transpose", [graph.node("MatMul", [stack, graph.constant(matrix)])], perm=[0, 3, 1, 2])
        full = graph.node("DepthToSpace", [phases], blocksize=s, mode="CRD")
        out = graph.slice(full, (pad, pad), (pad - (n - 1) * s,) * 2)  # (n−1)·s − p ≥ 0 rows/columns left at the end
        return graph.node("Add", [out, graph.constant(self.bias[None])])


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
