"""The self-attention model: parameters of the drift (docs/mathematics.md, 'Attention drift') and their validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from spde_tokens import checks

NORMALIZATIONS = ("softmax", "unnormalized")


def _matrix(name: str, value: npt.ArrayLike | None, dim: int) -> np.ndarray:
    """A finite real dim × dim matrix; strings, booleans, objects and ragged nestings are refused by name."""
    if value is None:
        return np.eye(dim)
    try:
        mat = np.array(value)
    except ValueError:  # a ragged nesting
        mat = np.array(None)
    if mat.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a real {dim}×{dim} matrix (an array, or a list of {dim} lists of {dim} "
                         f"numbers), got {checks.describe(value)}")
    if mat.shape != (dim, dim):
        raise ValueError(f"{name} must have shape ({dim}, {dim}) for dim = {dim}, got {mat.shape}")
    if not np.all(np.isfinite(mat)):
        raise ValueError(f"{name} must be finite (no NaN or inf entries)")
    return mat.astype(float)


class AttentionModel:
    """Self-attention dynamics on S^{dim-1}: ẋ = P_x V a_μ(x).

    The attention output is ``a_μ(x) = ∇_v log Z_μ(v)`` (softmax, SA) or ``∇_v Z_μ(v)`` (unnormalized, USA) at
    ``v = beta Aᵀ x``, with ``Z_μ(v) = ∫ exp(v·y) dμ(y)`` and ``A = Qᵀ K``.

    Parameters
    ----------
    dim : ambient dimension d ≥ 2 (tokens on S^{d-1}).
    beta : inverse temperature, finite and ≥ 0 (0 is uniform attention, a = mean of μ).
    Q, K, V : d×d real matrices, identity by default.
    normalization : ``"softmax"`` or ``"unnormalized"``.
    """

    def __init__(self, dim: int, beta: float = 1.0, Q: npt.ArrayLike | None = None, K: npt.ArrayLike | None = None,
                 V: npt.ArrayLike | None = None, normalization: str = "softmax") -> None:
        dim = checks.integer("dim", dim, 2)
        beta = checks.real("beta", beta)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.dim = int(dim)
        self.beta = beta
        self.Q = _matrix("Q", Q, self.dim)
        self.K = _matrix("K", K, self.dim)
        self.V = _matrix("V", V, self.dim)
        self.normalization = normalization

    @property
    def A(self) -> np.ndarray:
        """The bilinear form of the attention logits, A = Qᵀ K."""
        return self.Q.T @ self.K

    @staticmethod
    def _scalar_multiple(mat: np.ndarray) -> float | None:
        """c if mat = c I (to 1e-12 relative), else None."""
        c = np.trace(mat) / mat.shape[0]
        scale = max(np.abs(mat).max(), 1e-300)
        return float(c) if np.abs(mat - c * np.eye(mat.shape[0])).max() <= 1e-12 * scale else None

    @property
    def zonal_factor(self) -> float | None:
        """a when Qᵀ K = a I (the kernel exp(beta a x·y) is zonal), else None."""
        return self._scalar_multiple(self.A)

    @property
    def value_factor(self) -> float | None:
        """c when V = c I (the drift is then tangential to the attention output), else None."""
        return self._scalar_multiple(self.V)

    @property
    def softmax(self) -> bool:
        return self.normalization == "softmax"

    def attrs(self) -> dict[str, Any]:
        """Scalar parameters as NetCDF attributes (matrices go in :meth:`matrices`)."""
        return {"model_dim": self.dim, "beta": self.beta, "normalization": self.normalization}

    def matrices(self) -> dict[str, np.ndarray]:
        return {"Q": self.Q, "K": self.K, "V": self.V}

    def __repr__(self) -> str:
        return f"AttentionModel(dim={self.dim}, beta={self.beta}, normalization={self.normalization!r})"
