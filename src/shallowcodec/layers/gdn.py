"""IGDN and IGDN1 in numpy, from CompressAI's stored GDN parameters."""

from __future__ import annotations

import numpy as np

#: CompressAI's NonNegativeParametrizer offset (β and γ of GDN are stored as √(value + offset²)).
_REPARAM_OFFSET = 2.0**-18
#: GDN's β minimum (CompressAI's default beta_min).
_BETA_MIN = 1e-6


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

    def onnx(self, graph, x: str) -> str:
        """Write this layer into an ONNX graph (onnx_graph.Graph): x (1, C, H, W) → (1, C, H, W), a 1×1 Conv of
        |x| (or x²) with γ and bias β, then √ (IGDN), times x."""
        norm = graph.node("Conv", [graph.node("Abs" if self.l1 else "Mul", [x] if self.l1 else [x, x]),
                                   graph.constant(self.gamma[:, :, None, None]), graph.constant(self.beta[:, 0])])
        return graph.node("Mul", [norm if self.l1 else graph.node("Sqrt", [norm]), x])
