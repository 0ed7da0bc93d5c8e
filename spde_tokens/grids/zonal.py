"""Zonal densities on S^{d−1} in any dimension d ≥ 2: Gauss nodes in s = x·e_d and Gegenbauer polynomials.

The formulas are those of docs/mathematics.md, 'The zonal grid (any dimension)'.
"""

from __future__ import annotations

import numpy as np

from spde_tokens import checks
from spde_tokens.grids.base import GRID_BYTES_PER_NODE, Grid, check_memory
from spde_tokens.grids.funk_hecke import ZonalWeights, normalized_zonal_weights

#: values of the unscaled recurrence above which a node's running values are rescaled (their log is kept)
_RESCALE = 1e100
#: smallest log Gauss weight kept: √w and 1/√w stay within e^{∓700}, normal floating-point numbers
_LOG_WEIGHT_MIN = -1400.0


def recurrence_coefficients(dim: int, count: int) -> np.ndarray:
    """a_0 … a_count of the orthonormal three-term recurrence s Y_k = a_{k+1} Y_{k+1} + a_k Y_{k−1}.

    Y_k are the Gegenbauer polynomials C_k^{(λ)}, λ = (d − 2)/2, orthonormal for the law of s = x·e_d under the
    normalized surface measure, c_d (1 − s²)^{(d−3)/2} ds: ``a_0 = 0``, ``a_1² = 1/d`` and
    ``a_k² = k (k + 2λ − 1) / (4 (k + λ)(k + λ − 1))`` for k ≥ 2 (1/4 for every k ≥ 2 at d = 2, Chebyshev).
    """
    lam = 0.5 * (dim - 2)
    k = np.arange(count + 1, dtype=float)
    a = np.zeros(count + 1)
    a[1:2] = np.sqrt(1.0 / dim)
    big = k[2:]
    a[2:] = np.sqrt(big * (big + 2 * lam - 1) / (4 * (big + lam) * (big + lam - 1)))
    return a


def _node_sums(a: np.ndarray, s: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Newton step Y_n/Y_n', log Σ_{k<n} Y_k² and (Σ_{k<n} Y_k²)'/Σ_{k<n} Y_k² at s, by the orthonormal recurrence.

    The running values of a node are divided by |Y_k| whenever it exceeds 1e100 and the logarithm of the factor is
    kept, so nothing overflows at any dimension (the Christoffel sum reaches e^{2500} at the outer nodes of d = 4096).
    """
    y_old, y = np.zeros_like(s), np.ones_like(s)
    dy_old, dy = np.zeros_like(s), np.zeros_like(s)
    total, dtotal, log_scale = np.ones_like(s), np.zeros_like(s), np.zeros_like(s)
    for k in range(1, n + 1):
        y_new = (s * y - a[k - 1] * y_old) / a[k]
        dy_new = (y + s * dy - a[k - 1] * dy_old) / a[k]
        y_old, y, dy_old, dy = y, y_new, dy, dy_new
        if k < n:
            total += y * y
            dtotal += 2.0 * y * dy
        big = np.abs(y) > _RESCALE
        if big.any():
            f = 1.0 / np.abs(y[big])
            for arr in (y_old, y, dy_old, dy):
                arr[big] *= f
            total[big] *= f * f
            dtotal[big] *= f * f
            log_scale[big] -= np.log(f)
    return y / dy, np.log(total) + 2.0 * log_scale, dtotal / total


def gauss_nodes(dim: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n-point Gauss rule of the law of s = x·e_d: nodes s_i (ascending) and log w_i, Σ w_i = 1.

    Golub–Welsch (the eigenvalues of the Jacobi matrix of :func:`recurrence_coefficients`), one Newton step on
    Y_n, the nodes symmetrized (s_{n−1−i} = −s_i), and the Christoffel weights w_i = 1 / K(s_i),
    K = Σ_{k<n} Y_k², in log space. K is taken at the exact zero s_i − δ_i (δ_i = Y_n/Y_n' at the rounded node,
    K(s_i − δ_i) = K(s_i)(1 − δ_i K'/K)): near ±1, K changes by n² ulp over one ulp of s, which would otherwise
    cost up to 1e-11 of relative accuracy at n = 768. Exact for polynomials of degree ≤ 2n − 1.
    """
    from scipy.linalg import eigh_tridiagonal

    a = recurrence_coefficients(dim, n)
    s = np.sort(eigh_tridiagonal(np.zeros(n), a[1:n], eigvals_only=True))
    step, _, _ = _node_sums(a, s, n)
    s = s - step
    s = 0.5 * (s - s[::-1])
    step, log_sum, slope = _node_sums(a, s, n)
    return s, -log_sum - np.log1p(-slope * step)


class ZonalGrid(Grid):
    """Zonal fields f(x) = f(s), s = x·e_d, on S^{d−1} for any d ≥ 2: Gauss nodes in s, Gegenbauer harmonics.

    Parameters
    ----------
    dim : the ambient dimension d ≥ 2 (the sphere S^{d−1} ⊂ R^d; e_d is its last axis).
    lmax : largest degree (≥ 4).
    dealias : if True (default) the grid has ⌈3(lmax+1)/2⌉ nodes, so products of two fields of degree ≤ lmax are
        analysed without aliasing; otherwise lmax + 1 (the Gauss rule is exact to degree 2n − 1).
    threads : recorded as ``grid_threads``; the transforms are dense matrix products, whose BLAS threads are the
        caller's (the run driver limits them to this count while stepping).

    Measure and coefficients (docs/mathematics.md, 'The zonal grid (any dimension)'): integrals are taken with the
    **normalized** surface measure σ (σ(S^{d−1}) = 1, so ``area`` is 1 and the uniform density is 1), and

        f_l = ∫ f Y_l dσ,     f = Σ_l f_l Y_l(s),     Y_l = C_l^{(λ)} / ‖C_l^{(λ)}‖,  λ = (d − 2)/2,

    real coefficients of degrees 0 … lmax (every order is 0, ``order_weight`` is 1). Y_0 = 1 and Y_1 = √d s. The
    transforms are ``f_l = Σ_i w_i Y_l(s_i) f(s_i)`` and ``f(s_i) = Σ_l f_l Y_l(s_i)``, evaluated as products with
    the orthogonal matrix √w_i Y_l(s_i) (no overflow at any dimension). Tangent fields have one component, on the
    unit tangent u = (e_d − s x)/√(1 − s²) (pointing to e_d): ∇_S g(s) = g'(s)(e_d − s x) has the component
    g'(s)√(1 − s²), and the divergence of h u is the Galerkin projection −Σ_i w_i h_i ∂_u Y_l(s_i), so that
    ``divergence(gradient(c)) = laplacian(c)`` for every band-limited c.
    """

    n_tangent = 1
    dims = ("s",)
    area = 1.0
    measure = "normalized surface measure"

    def __init__(self, dim: int, lmax: int, dealias: bool = True, threads: int = 1):
        self.dim = checks.integer("dim", dim, 2)
        self.degree_max = self.lmax = checks.integer("lmax", lmax, 4)
        self.dealias = checks.boolean("dealias", dealias)
        self.threads = checks.integer("threads", threads, 1)
        self.nodes = -(-3 * (self.lmax + 1) // 2) if self.dealias else self.lmax + 1
        # the basis and gradient matrices, (lmax + 1) × nodes each, and the recurrence's work arrays
        check_memory(f"lmax = {self.lmax}", self.nodes, GRID_BYTES_PER_NODE + 32 * (self.lmax + 1),
                     "the zonal grid's matrices")
        self.shape = (self.nodes,)
        self.degrees = np.arange(self.lmax + 1)
        self.order_weight = np.ones(self.lmax + 1)
        self._a = recurrence_coefficients(self.dim, self.lmax)
        self.s, self._log_weights = gauss_nodes(self.dim, self.nodes)
        if self._log_weights.min() < _LOG_WEIGHT_MIN:
            # a field of degree lmax with O(1) coefficients reaches 1/√w there: grid values would overflow
            raise ValueError(f"lmax = {self.lmax} is too large for dim = {self.dim}: the Gauss weight of the outermost "
                             f"node is e^{self._log_weights.min():.0f}, below the e^{_LOG_WEIGHT_MIN:.0f} that keeps "
                             "√w and the grid values (up to 1/√w) in floating-point range; lower lmax, or use "
                             "dealias=False (fewer nodes)")
        self._sine = np.sqrt((1.0 - self.s) * (1.0 + self.s))  # √(1 − s²), accurate near ±1
        self._sqrt_w = np.exp(0.5 * self._log_weights)
        self._inv_sqrt_w = np.exp(-0.5 * self._log_weights)
        # √w_i Y_l(s_i) and √w_i Y_l'(s_i) by the recurrence started from √w_i (bounded: Σ_l w_i Y_l(s_i)² ≤ 1)
        rows = list(self._degrees(self._sqrt_w, self.s, derivative=True))
        self._basis = np.array([y for y, _ in rows])
        self._grad_basis = np.array([dy for _, dy in rows]) * self._sine  # √w_i ∂_u Y_l(s_i)

    def __repr__(self) -> str:
        return f"ZonalGrid(dim={self.dim}, lmax={self.lmax}, nodes={self.nodes})"

    def _degrees(self, start: np.ndarray, s: np.ndarray, derivative: bool = False):
        """(start · Y_l(s), start · Y_l'(s) or None) for l = 0 … lmax in turn, by the orthonormal recurrence
        a_{l+1} Y_{l+1} = s Y_l − a_l Y_{l−1} and its derivative a_{l+1} Y_{l+1}' = Y_l + s Y_l' − a_l Y_{l−1}'."""
        a = self._a
        y_old, y = np.zeros_like(s), start * np.ones_like(s)
        dy_old, dy = np.zeros_like(s), np.zeros_like(s)
        yield y, (dy if derivative else None)
        for k in range(1, self.lmax + 1):
            if derivative:
                dy_old, dy = dy, (y + s * dy - a[k - 1] * dy_old) / a[k]
            y_old, y = y, (s * y - a[k - 1] * y_old) / a[k]
            yield y, (dy if derivative else None)

    # ---- transforms and calculus ------------------------------------------------------------------------------
    def analysis(self, field: np.ndarray) -> np.ndarray:
        """f_l = Σ_i w_i Y_l(s_i) f(s_i) = ∫ f Y_l dσ (exact for f of degree ≤ 2 nodes − 1 − l); real, shape (lmax+1,).

        Fields of shape (..., nodes) give coefficients (..., lmax + 1).
        """
        return (np.asarray(field, dtype=float) * self._sqrt_w) @ self._basis.T

    def synthesis(self, coeffs: np.ndarray) -> np.ndarray:
        """f(s_i) = Σ_l f_l Y_l(s_i) at the nodes (the real part of complex coefficients, as on the other grids)."""
        return (np.real(coeffs) @ self._basis) * self._inv_sqrt_w

    def gradient(self, coeffs: np.ndarray) -> np.ndarray:
        """The u-component g'(s)√(1 − s²) of ∇_S g, g = Σ_l g_l Y_l, at the nodes: shape (1, nodes)."""
        return ((np.real(coeffs) @ self._grad_basis) * self._inv_sqrt_w)[None]

    def divergence(self, tangent: np.ndarray) -> np.ndarray:
        """Coefficients of div_S(h u) for the tangent field h u given by h at the nodes (shape (1, nodes)).

        The Galerkin projection ∫ div_S(h u) Y_l dσ = −∫ h ∂_u Y_l dσ = −Σ_i w_i h_i Y_l'(s_i)√(1 − s_i²); for
        h = H(s)√(1 − s²) it is the projection of (1 − s²)H' − (d − 1) s H.
        """
        # the sign on the result: negating the (lmax+1) × nodes matrix first cost three products (bench_zonal)
        return -(self._grad_basis @ (self._sqrt_w * np.asarray(tangent, dtype=float)[0]))

    @property
    def laplacian_eigenvalues(self) -> np.ndarray:
        """−l(l + d − 2), the eigenvalue of Δ_S on the harmonics of degree l of S^{d−1}."""
        ell = self.degrees.astype(float)
        return -ell * (ell + self.dim - 2.0)

    def zonal_weights(self, kappa: float) -> ZonalWeights:
        """Funk–Hecke weights of exp(κ x·y) on the normalized measure (:func:`normalized_zonal_weights`)."""
        return normalized_zonal_weights(self.dim, kappa, self.lmax)

    def coordinate_coefficients(self) -> np.ndarray:
        """Coefficients of the zonal projections of x ↦ x_i: 0 for i < d (their mean on every circle s = const is 0),
        and s = Y_1/√d for i = d; shape (dim, lmax + 1)."""
        out = np.zeros((self.dim, self.lmax + 1))
        out[-1, 1] = 1.0 / np.sqrt(self.dim)
        return out

    # ---- geometry ---------------------------------------------------------------------------------------------
    @property
    def basis_peak(self) -> np.ndarray:
        """Y_l(1) = sqrt(number of degree-l harmonics of S^{d−1}), the maximum of |Y_l| (Y_0 = 1)."""
        return np.abs(self.basis_values(np.ones(1))[:, 0])

    def points(self) -> np.ndarray:
        """Unit vectors x_i = (√(1 − s_i²), 0, …, 0, s_i) of the nodes, shape (nodes, dim); cached, read-only."""
        def build():
            x = np.zeros((self.nodes, self.dim))
            x[:, 0], x[:, -1] = self._sine, self.s
            return x
        return self._cached("points", build)

    def tangent_basis(self) -> np.ndarray:
        """u_i = (e_d − s_i x_i)/√(1 − s_i²) = (−s_i, 0, …, 0, √(1 − s_i²)), shape (1, nodes, dim); cached."""
        def build():
            u = np.zeros((1, self.nodes, self.dim))
            u[0, :, 0], u[0, :, -1] = -self.s, self._sine
            return u
        return self._cached("tangent_basis", build)

    def weights(self) -> np.ndarray:
        """Gauss weights w_i of the normalized measure: ∫ f dσ ≈ Σ w_i f(s_i), Σ w_i = 1."""
        return np.exp(self._log_weights)

    def diagonal_integral(self, field: np.ndarray, multipliers: np.ndarray) -> float:
        """∫ f(s) K(s) dσ with K(s) = Σ_l m_l Y_l(s)², for f given at the nodes and m_l ≥ 0 (one per degree).

        K is the diagonal of the zonal kernel Σ_l m_l Y_l(x·e_d) Y_l(y·e_d); it is bounded by K(1) = Σ_l m_l Y_l(1)²
        (|Y_l| ≤ Y_l(1)). Computed as Σ_i f_i Σ_l m_l (√w_i Y_l(s_i))², each node's weight w_i K(s_i) a sum of
        positive terms: the rounding of f at the outer nodes (up to eps ‖f‖/√w_i in high d) enters multiplied by
        w_i K(s_i) ≤ w_i K(1). Exact for f of degree ≤ 2 nodes − 1 − 2 lmax (lmax with dealiasing).
        """
        return float(np.asarray(field, dtype=float) @ (np.asarray(multipliers, dtype=float) @ self._basis**2))

    def law_of_s(self, field: np.ndarray) -> np.ndarray:
        """The probability density of s = x·e_d at the nodes, c_d (1 − s_i²)^{(d−3)/2} f(s_i), for a density f w.r.t. σ.

        c_d = Γ(d/2)/(√π Γ((d − 1)/2)) (the law of s under σ), taken with (1 − s²)^{(d−3)/2} in log form (c_d grows
        like √(d/2π); the power underflows to 0 towards s = ±1 in high d, as the law does). ∫ law ds = ∫ f dσ.
        """
        from scipy.special import gammaln

        log_c = gammaln(0.5 * self.dim) - 0.5 * np.log(np.pi) - gammaln(0.5 * (self.dim - 1))
        return np.asarray(field, dtype=float) * np.exp(log_c + (self.dim - 3) * np.log(self._sine))

    def coords(self) -> dict:
        return {"s": ("s", self.s, {"long_name": "cosine of the polar angle, x·e_d", "units": "1"})}

    def attrs(self) -> dict:
        return {"grid": "zonal", "grid_dim": self.dim, "grid_lmax": self.lmax, "grid_nodes": self.nodes,
                "grid_dealias": int(self.dealias), "grid_threads": self.threads}

    # ---- point evaluation -------------------------------------------------------------------------------------
    def basis_values(self, s: np.ndarray) -> np.ndarray:
        """Y_l(s) for l = 0 … lmax at values s ∈ [−1, 1] of x·e_d: shape (lmax + 1, N).

        Near s = ±1 the values grow like Y_l(1) = √(dimension of the degree-l harmonics), which exceeds the floating
        point range only for d and l both in the thousands.
        """
        s = np.clip(np.asarray(s, dtype=float).ravel(), -1.0, 1.0)
        return np.array([y for y, _ in self._degrees(np.ones(1), s)])

    def evaluate_zonal(self, coeffs: np.ndarray, s: np.ndarray) -> np.ndarray:
        """The field Σ_l f_l Y_l(s) at values s ∈ [−1, 1] of x·e_d (any shape; the result has that shape).

        The sum is accumulated along the recurrence, in O(N) memory (no (lmax + 1) × N basis block).
        """
        s = np.asarray(s, dtype=float)
        c = np.real(coeffs)
        total = np.zeros(s.size)
        for k, (y, _) in enumerate(self._degrees(np.ones(1), np.clip(s.ravel(), -1.0, 1.0))):
            total += c[k] * y
        return total.reshape(s.shape)

    def _basis_block(self, points: np.ndarray) -> np.ndarray:
        """Y_l(x_i·e_d) at unit vectors (N, dim): real array (N, lmax + 1)."""
        return self.basis_values(points[:, -1]).T
