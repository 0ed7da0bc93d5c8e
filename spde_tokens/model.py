"""The self-attention model: parameters of the drift (docs/mathematics.md, 'Attention drift') and their validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from spde_tokens import checks

NORMALIZATIONS = ("softmax", "unnormalized", "hardmax")
#: |Aᵀx| below this fraction of the spectral norm of A counts as Aᵀx = 0 (no zero-temperature direction)
HARDMAX_DEGENERATE = 1e-12


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
    ``v = beta Aᵀ x``, with ``Z_μ(v) = ∫ exp(v·y) dμ(y)`` and ``A = Qᵀ K``. The zero-temperature limit beta → ∞ of
    the softmax output on a measure of full support is ``a_∞(x) = Aᵀx/|Aᵀx|`` (``"hardmax"``, the maximizer of
    ⟨Q x, K y⟩ over the sphere), independent of μ (docs/mathematics.md, 'The zero-temperature equation').

    Parameters
    ----------
    dim : ambient dimension d ≥ 2 (tokens on S^{d-1}).
    beta : inverse temperature, finite and ≥ 0 (0 is uniform attention, a = mean of μ); default 1. With
        ``normalization="hardmax"`` beta is ∞: leave it out (or pass ``math.inf``).
    Q, K, V : d×d real matrices, identity by default.
    normalization : ``"softmax"``, ``"unnormalized"`` or ``"hardmax"`` (the zero-temperature velocity
        X_∞(x) = P_x V Aᵀx/|Aᵀx|; particles only, and A = Qᵀ K must not be 0).
    """

    def __init__(self, dim: int, beta: float | None = None, Q: npt.ArrayLike | None = None,
                 K: npt.ArrayLike | None = None, V: npt.ArrayLike | None = None,
                 normalization: str = "softmax") -> None:
        dim = checks.integer("dim", dim, 2)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if normalization == "hardmax":
            if beta is not None and not (checks.is_real(beta) and float(beta) == np.inf):
                raise ValueError(f"beta must be left out (or math.inf) with normalization='hardmax', the limit "
                                 f"beta → ∞, got {checks.describe(beta)}")
            beta = np.inf
        else:
            beta = checks.real("beta", 1.0 if beta is None else beta)
        self.dim = int(dim)
        self.beta = float(beta)
        self.Q = _matrix("Q", Q, self.dim)
        self.K = _matrix("K", K, self.dim)
        self.V = _matrix("V", V, self.dim)
        self.normalization = normalization
        if self.hardmax and not np.any(self.A):
            raise ValueError("normalization='hardmax' needs A = Qᵀ K ≠ 0 (with A = 0 every token is a maximizer and "
                             "the zero-temperature direction Aᵀx/|Aᵀx| is undefined)")

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

    @property
    def hardmax(self) -> bool:
        """True for the zero-temperature model (``normalization="hardmax"``, beta = ∞)."""
        return self.normalization == "hardmax"

    def hardmax_output(self, x: npt.ArrayLike) -> np.ndarray:
        """The zero-temperature attention output a_∞(x) = Aᵀx/|Aᵀx| at points x of shape (..., d).

        It is the limit beta → ∞ of the softmax output a_μ(x) for every measure μ whose support is the whole sphere
        (Laplace's method: the softmax weights concentrate on the maximizer of y ↦ ⟨Q x, K y⟩ = (Aᵀx)·y), so the
        zero-temperature velocity X_∞(x) = P_x V a_∞(x) does not depend on μ.

        Raises
        ------
        ValueError where |Aᵀx| ≤ 1e-12 ‖A‖₂ (x in the kernel of Aᵀ: no maximizer stands out).
        """
        pts = np.asarray(x, dtype=float)
        if pts.shape[-1:] != (self.dim,):
            raise ValueError(f"x must have shape (..., {self.dim}) for dim = {self.dim}, got {pts.shape}")
        v = pts @ self.A  # row form of Aᵀx
        norm = np.linalg.norm(v, axis=-1, keepdims=True)
        bad = norm[..., 0] <= HARDMAX_DEGENERATE * np.linalg.norm(self.A, 2) * np.linalg.norm(pts, axis=-1)
        if np.any(bad):
            where = np.argwhere(bad)[0]
            raise ValueError(f"normalization='hardmax': Aᵀx = 0 at the point of index {tuple(int(i) for i in where)} "
                             f"(x = {pts[tuple(where)]}; A = Qᵀ K is singular there), so the zero-temperature "
                             "direction Aᵀx/|Aᵀx| is undefined")
        return v / norm

    def attrs(self) -> dict[str, Any]:
        """Scalar parameters as NetCDF attributes (matrices go in :meth:`matrices`)."""
        return {"model_dim": self.dim, "beta": self.beta, "normalization": self.normalization}

    def matrices(self) -> dict[str, np.ndarray]:
        return {"Q": self.Q, "K": self.K, "V": self.V}

    def __repr__(self) -> str:
        return f"AttentionModel(dim={self.dim}, beta={self.beta}, normalization={self.normalization!r})"
