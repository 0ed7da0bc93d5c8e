"""The attention output a_μ and the drift X[μ](x) = P_x V a_μ(x), on grids and at tokens.

The formulas are those of docs/mathematics.md, 'Attention drift'.

Three evaluations of the same formula:

* **zonal path** (grids, Qᵀ K = a I): Funk–Hecke multipliers, ``∇_v Z̃ = (1/κ) ∇_S(G̃_κ ρ) + x ∂_κ G̃_κ ρ`` with
  ``G̃_κ`` the convolution with ``exp(κ x·y)`` scaled by the weights' ``e^{-log_scale}`` (``e^{-|κ|}`` on S^1 and
  S^2, ``1/μ_0(|κ|)`` on a ZonalGrid, :mod:`spde_tokens.grids.funk_hecke`); on a ZonalGrid only this path, and only
  with V = c I, keeps a density symmetric about e_d;
* **quadrature path** (grids, any A): the dense kernel ``exp(beta xᵀ A y - M_x)`` on the grid nodes, max-shifted
  per row and precomputed once;
* **points** (tokens): the same max-shifted sums over a measure Σ ω_j δ_{y_j}, in row blocks of bounded memory.

Where the (scaled) partition function is too small to be trusted (below 1e-10 of its maximum on the zonal path;
below 1e-10 of the sum of absolute terms on the other two), the output is set to 0; softmax
outputs are clipped to |a| ≤ 1, which holds for every non-negative measure.  The fraction of such nodes is kept in
``unreliable_fraction``.
"""

from __future__ import annotations

import warnings

import numpy as np

from spde_tokens import checks
from spde_tokens.grids.base import Grid, ResolutionWarning, available_memory
from spde_tokens.grids.funk_hecke import ZonalWeights, resolving_degree
from spde_tokens.grids.zonal import ZonalGrid
from spde_tokens.model import AttentionModel

#: relative size below which the scaled partition function is not trusted
RELIABLE = 1e-10
#: default bytes of one block of token-token logits
BLOCK_BYTES = 64 * 2**20
#: largest shift exp(M) that the unnormalized output may carry without overflow
_MAX_LOG_SHIFT = 700.0


def _normalize_components(z: np.ndarray, comps, reliable: np.ndarray | None, log_shift, softmax: bool) -> int:
    """Turn the components of ∇Z into those of the attention output a, in place.

    ``a_c = ∂_c Z / Z`` (softmax) or ``a_c = e^{shift} ∂_c Z`` (unnormalized) at reliable nodes, ``a = 0`` at the
    others; softmax outputs with ``|a|² = Σ_c a_c² > 1`` are scaled to ``|a| = 1``.

    Parameters
    ----------
    z : the (shifted) partition function Z, shape S.
    comps : writable arrays of shape S, the components of ∇Z on an orthonormal frame (Cartesian, or tangent frame
        and radial direction), so that Σ_c a_c² = |a|²; overwritten with the components of a.
    reliable : boolean array of shape S, the nodes where Z is trusted (None: all of them).
    log_shift : the logit shift (scalar or shape S), used by the unnormalized output only.
    softmax : softmax (a = ∇Z / Z) or unnormalized (a = e^{shift} ∇Z) output.

    Returns
    -------
    The number of nodes that were zeroed (unreliable) or clipped to |a| = 1.

    The work is done component by component on contiguous arrays: ``np.linalg.norm`` over a short last axis and
    ``np.where`` on strided views cost ten times more than these elementwise operations.
    """
    if softmax:
        with np.errstate(divide="ignore", invalid="ignore"):
            for c in comps:
                np.divide(c, z, out=c)
    else:
        scale = np.exp(log_shift)
        for c in comps:
            np.multiply(c, scale, out=c)
    flagged = 0
    if reliable is not None and not reliable.all():
        unreliable = ~reliable
        for c in comps:
            np.copyto(c, 0.0, where=unreliable)
        flagged = int(np.count_nonzero(unreliable))
    if softmax:
        norm2 = np.multiply(comps[0], comps[0])
        if len(comps) > 1:
            tmp = np.empty_like(norm2)
            for c in comps[1:]:
                norm2 += np.multiply(c, c, out=tmp)
        if norm2.max() > 1.0:  # one pass; the mask only when some node is to be clipped (signed densities)
            over = norm2 > 1.0
            norm = np.sqrt(norm2[over])
            clip = norm > 1.0  # sqrt rounds 1 + 1 ulp down to 1: such a node is not clipped
            if not clip.all():
                over[over] = clip
                norm = norm[clip]
            for c in comps:
                c[over] /= norm
            flagged += norm.size
    return flagged


def _normalize(z: np.ndarray, grad_z: np.ndarray, reliable: np.ndarray, log_shift, softmax: bool):
    """a = ∇Z / Z (softmax) or a = e^{shift} ∇Z (unnormalized) along the last axis of ``grad_z``.

    See :func:`_normalize_components`. Returns the output (a new array shaped like ``grad_z``) and the number of
    nodes that were zeroed (unreliable) or clipped to |a| = 1.
    """
    comps = [np.array(grad_z[..., c], dtype=float) for c in range(grad_z.shape[-1])]
    flagged = _normalize_components(z, comps, reliable, log_shift, softmax)
    return np.stack(comps, axis=-1), flagged


def _contract(matrix: np.ndarray, comps) -> np.ndarray:
    """``out_i = Σ_j matrix[i, j] comps_j`` node by node: matrix (k, n, *S), n arrays of shape S -> (k, *S)."""
    k, n = matrix.shape[:2]
    out = np.empty((k, *np.shape(comps[0])))
    tmp = np.empty(out.shape[1:]) if n > 1 else None
    for i in range(k):
        np.multiply(matrix[i, 0], comps[0], out=out[i])
        for j in range(1, n):
            out[i] += np.multiply(matrix[i, j], comps[j], out=tmp)
    return out


def tangent_projection(points: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """P_x v = v − (x·v) x for unit vectors ``points`` and vectors of the same shape (..., d)."""
    return vectors - np.sum(points * vectors, axis=-1, keepdims=True) * points


def attention_output_points(model: AttentionModel, queries: np.ndarray, keys: np.ndarray,
                            weights: np.ndarray | None = None, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """a_μ(x_i) for μ = Σ_j ω_j δ_{y_j} (ω_j = 1/N by default), in row blocks of at most ``block_bytes``.

    ``a(x) = Σ_j ω_j e^{beta xᵀA y_j} y_j / Σ_j ω_j e^{beta xᵀA y_j}`` (softmax) or the numerator alone
    (unnormalized), with logits shifted by their row maximum. With ``normalization="hardmax"`` the output is the
    zero-temperature limit a_∞(x) = Aᵀx/|Aᵀx| of a measure of full support, which ignores the keys
    (:meth:`AttentionModel.hardmax_output`).
    """
    if model.hardmax:
        return model.hardmax_output(queries)
    keys = np.asarray(keys, dtype=float)
    n = keys.shape[0]
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=float)
    if model.beta == 0.0:  # uniform attention: every logit is 0, a = the (weighted) mean, in O(N)
        mean = w @ keys
        a = mean / w.sum() if model.softmax else mean
        return np.broadcast_to(a, np.shape(queries)).copy()
    qa = model.beta * (np.asarray(queries, dtype=float) @ model.A)
    rhs = np.concatenate([w[:, None], w[:, None] * keys, np.abs(w)[:, None]], axis=1)
    out = np.empty_like(qa)
    rows = max(1, block_bytes // (8 * max(n, 1)))
    for start in range(0, qa.shape[0], rows):
        sl = slice(start, start + rows)
        logits = qa[sl] @ keys.T
        shift = logits.max(axis=1)
        np.exp(logits - shift[:, None], out=logits)
        sums = logits @ rhs
        z, absz = sums[:, 0], sums[:, -1]
        out[sl], _ = _normalize(z, sums[:, 1:-1], z > RELIABLE * absz, shift, model.softmax)
    return out


def harmonic_degree(model: AttentionModel) -> int:
    """Default truncation degree of the harmonic attention: where λ_l(κ)/λ_0(κ) first falls below 1e-16."""
    if model.zonal_factor is None:
        raise ValueError("harmonic attention needs Qᵀ K = a I (a zonal kernel)")
    return max(2, resolving_degree(model.dim, model.beta * model.zonal_factor))


def attention_output_harmonic(model: AttentionModel, tokens: np.ndarray, degree: int | None = None) -> np.ndarray:
    """a_μ(x_i) for the empirical measure μ of the tokens by Funk–Hecke, in O(N L²) instead of O(N²).

    For Qᵀ K = a I on S^1 or S^2, with κ = beta a and λ_l the Funk–Hecke weights of exp(κ x·y) truncated at
    degree L:

        Z(x) = Σ_{l ≤ L} λ_l Σ_m μ_lm Y_lm(x),     ∇_v Z(x) = Σ_{l ≤ L} λ_l Σ_m (yμ)_lm Y_lm(x),

    with μ_lm = (1/N) Σ_j conj(Y_lm(x_j)) and (yμ)_lm the same with weights y_j (one field per component).
    Truncation error: the omitted weights satisfy Σ_{l > L} (2l+1) λ_l/(area λ_0) < 1e-15 at the default L
    (``harmonic_degree``), relative to Z; where Z̃ < 1e-10 max Z̃ the output is set to 0 as on the grid.
    """
    from spde_tokens.grids import grid_from_attrs

    a = model.zonal_factor
    if a is None or model.dim not in (2, 3) or model.hardmax:
        raise ValueError("attention='harmonic' needs Qᵀ K = a I on S^1 or S^2 (dim 2 or 3) and a finite beta "
                         "(not normalization='hardmax')")
    degree = harmonic_degree(model) if degree is None else int(degree)
    if degree < 1:
        raise ValueError(f"harmonic_degree must be a positive integer, got {degree}")
    attrs = ({"grid": "sphere", "grid_lmax": max(degree, 4), "grid_dealias": 0} if model.dim == 3 else
             {"grid": "circle", "grid_n": max(degree, 4), "grid_dealias": 0})
    grid = grid_from_attrs(attrs)
    x = np.asarray(tokens, dtype=float)
    n = x.shape[0]
    weights = np.concatenate([np.full((1, n), 1.0 / n), x.T / n])  # μ and the components of yμ
    coeffs = grid.empirical_coefficients(x, weights)
    w = grid.zonal_weights(model.beta * a)
    fields = grid.evaluate(grid.per_degree(w.value) * coeffs, x)  # (1 + d, N): Z̃ and ∇_v Z̃
    z, grad = fields[0], fields[1:].T
    out, _ = _normalize(z, grad, z > RELIABLE * z.max(), np.full(n, w.log_scale), model.softmax)
    return out


def drift_points(model: AttentionModel, tokens: np.ndarray, keys: np.ndarray | None = None,
                 weights: np.ndarray | None = None, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """X[μ](x_i) = P_{x_i} V a_μ(x_i) at tokens x_i, with μ the empirical measure of ``keys`` (default the tokens)."""
    keys = tokens if keys is None else keys
    a = attention_output_points(model, tokens, keys, weights, block_bytes)
    return tangent_projection(tokens, a @ model.V.T)


def kernel_degree(weights: ZonalWeights, tol: float = 1e-16) -> int:
    """The last degree at which a Funk–Hecke weight is at least ``tol`` × the largest of its kind.

    The largest over the three multipliers of the drift (value, over_kappa, derivative), each relative to its own
    largest magnitude: above this degree every weight is below ``tol`` of it (about 8.7 sqrt(κ) on S^2 for
    tol = 1e-16), so the drift's fields G̃ρ, ∇G̃ρ, ∂_κ G̃ρ are synthesized up to it only. Computed from the weights
    themselves, not from the asymptotic formula.
    """
    last = 0
    for values in (weights.value, weights.over_kappa, weights.derivative):
        size = np.abs(values)
        kept = np.nonzero(size >= tol * size.max())[0] if size.max() > 0 else np.zeros(1, dtype=int)
        last = max(last, int(kept[-1]))
    return last


def _check_zonal_symmetry(model: AttentionModel, method: str) -> None:
    """Refuse, on a ZonalGrid, what its densities cannot carry (docs/mathematics.md, 'The zonal grid (any dimension)').

    A ZonalGrid holds densities symmetric about e_d, and only the zonal path keeps a symmetric density symmetric:
    Qᵀ K = a I and V = c I commute with every rotation fixing e_d. The quadrature path would sum over the nodes as
    if they covered the sphere (they lie on one meridian).
    """
    if model.zonal_factor is None or model.value_factor is None:
        raise ValueError("a ZonalGrid holds densities symmetric about e_d, and this model breaks the symmetry: the "
                         "zonal grid needs Qᵀ K = a I and V = c I (other Q, K or V move the density off its axis); "
                         "simulate the tokens instead (spde_tokens.simulate_particles, any Q, K, V)")
    if method == "quadrature":
        raise ValueError("attention='quadrature' sums over the grid nodes as points of the sphere, but a ZonalGrid's "
                         "nodes lie on one meridian; use attention='zonal' or 'auto' on a ZonalGrid")


class GridAttention:
    """Attention output and drift of a density on a grid (docs/mathematics.md, 'Attention drift'): zonal or quadrature.

    Parameters
    ----------
    model, grid : the model (``model.dim`` must equal ``grid.dim``) and the grid.
    method : ``"auto"`` (zonal when Qᵀ K = a I, else quadrature), ``"zonal"`` or ``"quadrature"``.
    memory_budget : bytes the quadrature kernel may take (default: 25% of available memory).

    Notes
    -----
    The drift is computed in tangent components without a Cartesian round trip. With the orthonormal tangent
    frame e_1 … e_k at x (⟂ x) the attention output is ``a = Σ_j ã_j e_j + ã_r x`` and

        X_i = e_iᵀ V a = Σ_j M_ij ã_j + m_i ã_r,     M_ij = e_iᵀ V e_j,   m_i = e_iᵀ V x,

    with the per-node matrices M (k × k) and vectors m precomputed once (zonal path, V ≠ cI); for V = cI,
    X_i = c ã_j and the radial component is not needed. On the quadrature path a is Cartesian and
    ``X_i = Σ_c (e_iᵀ V)_c a_c``. The softmax clip uses ``|a|² = Σ_j ã_j² + ã_r²`` (or Σ_c a_c²).
    """

    def __init__(self, model: AttentionModel, grid: Grid, method: str = "auto", memory_budget: float | None = None):
        if model.dim != grid.dim:
            raise ValueError(f"model.dim = {model.dim} does not match the grid ({grid!r} is for dim {grid.dim})")
        if method not in ("auto", "zonal", "quadrature"):
            raise ValueError(f"attention must be 'auto', 'zonal' or 'quadrature', got {method!r}")
        if memory_budget is not None and not (checks.is_real(memory_budget) and float(memory_budget) > 0):
            raise ValueError("memory_budget must be a positive number of bytes (None: 25% of available memory), "
                             f"got {checks.describe(memory_budget)}")
        a = model.zonal_factor
        if isinstance(grid, ZonalGrid):
            _check_zonal_symmetry(model, method)
        if method == "zonal" and a is None:
            raise ValueError("attention='zonal' needs Qᵀ K = a I; use 'quadrature' or 'auto' for this model")
        self.model, self.grid = model, grid
        if method == "auto":
            method = "zonal" if a is not None else "quadrature"
        self.method = method
        self.unreliable_fraction = 0.0
        self._points = grid.points()
        self._value_factor = model.value_factor
        # (k, n_components, *shape): X_i = Σ_j matrix[i, j] a_j, built on first use
        self._drift_matrix: np.ndarray | None = None
        if self.method == "zonal":
            assert a is not None  # "zonal" is refused above unless Qᵀ K = a I
            self.kappa = model.beta * a
            w = grid.zonal_weights(self.kappa)
            self._log_shift = np.asarray(w.log_scale)
            #: the highest degree of G̃ρ that is synthesized (see :func:`kernel_degree`)
            self.kernel_degree = kernel_degree(w)
            self._moments: np.ndarray | None = None
            if self.kappa == 0.0:  # Z̃ and ∇_v Z̃ are the mass and the first moment (constants): no transform
                self._moments = self._moment_coefficients()
            else:  # G̃ρ, ∇G̃ρ, ∂_κ G̃ρ synthesized up to the degree the kernel resolves only
                self._band = grid.truncated(self.kernel_degree)
                self._w_value = self._band.per_degree(w.value)
                self._w_over = self._band.per_degree(w.over_kappa)
                self._w_deriv = self._band.per_degree(w.derivative)
            if not model.softmax and self.kappa > _MAX_LOG_SHIFT:
                raise ValueError(f"beta = {model.beta}: the unnormalized output exp(beta) overflows; "
                                 f"beta·|a| must be ≤ {_MAX_LOG_SHIFT}")
            need = resolving_degree(grid.dim, self.kappa)
            self.required_degree = need
            if grid.degree_max < need:
                warnings.warn(f"{grid!r} does not resolve the attention kernel exp(κ x·y), κ = {self.kappa:g}: its "
                              f"Funk–Hecke weights fall below 1e-16 only at degree {need} (≈ 8.7 sqrt(κ) on S^2); "
                              "clustered densities will be under-resolved", ResolutionWarning, stacklevel=3)
        else:
            self._build_kernel(memory_budget)

    def _build_kernel(self, memory_budget: float | None) -> None:
        pts = self._points.reshape(-1, self.grid.dim)
        n = pts.shape[0]
        need = 8.0 * n * n
        budget = 0.25 * available_memory() if memory_budget is None else float(memory_budget)
        if not budget > 0:
            raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
        if need > budget:
            raise ValueError(f"attention='quadrature' needs a dense {n}×{n} kernel on {self.grid!r}: "
                             f"{need / 2**30:.2f} GiB, more than memory_budget = {budget / 2**30:.2f} GiB; "
                             "lower the grid resolution or raise memory_budget")
        kernel = (self.model.beta * pts @ self.model.A) @ pts.T
        shift = kernel.max(axis=1)
        if not self.model.softmax and shift.max() > _MAX_LOG_SHIFT:
            raise ValueError(f"beta = {self.model.beta}: the unnormalized output exp(beta xᵀAx) overflows")
        kernel -= shift[:, None]
        np.exp(kernel, out=kernel)
        self._kernel, self._log_shift, self._flat_points = kernel, shift, pts
        self._flat_weights = self.grid.weights().ravel()
        self.required_degree = 0

    def _get_drift_matrix(self) -> np.ndarray:
        """Per-node matrix taking the components of a to the tangent components of X = P_x V a.

        Zonal path, components (ã_1 … ã_k, ã_r) on (e_1 … e_k, x): ``[M | m]``, M_ij = e_iᵀ V e_j, m_i = e_iᵀ V x,
        shape (k, k + 1, *shape). Quadrature path, Cartesian components a_c: ``(e_iᵀ V)_c``, shape (k, d, *shape).
        """
        if self._drift_matrix is None:
            frame = self.grid._tangent_frame()  # (k, d, *shape)
            ev = np.einsum("ic...,cd->id...", frame, self.model.V)  # e_iᵀ V
            if self.method == "zonal":
                basis = np.concatenate([frame, self.grid._point_components()[None]])  # e_1 … e_k, x
                matrix = np.einsum("ic...,jc...->ij...", ev, basis)
            else:
                matrix = ev
            self._drift_matrix = np.ascontiguousarray(matrix)
        return self._drift_matrix

    def output(self, coeffs: np.ndarray, field: np.ndarray) -> np.ndarray:
        """a_ρ at the grid nodes as Cartesian vectors (*shape, d), for the density ρ (coefficients and values).

        Zonal path: ``a = Σ_j ã_j e_j + ã_r x`` from the normalized tangent and radial components of ∇_v Z̃.
        """
        if self.method == "quadrature":
            return np.stack(self._quadrature_components(field), axis=-1).reshape(*self.grid.shape, self.grid.dim)
        tangential, radial = self._zonal_components(coeffs, radial=True)
        a = self.grid.from_tangent(tangential)
        a += radial[..., None] * self._points
        return a

    def drift(self, coeffs: np.ndarray, field: np.ndarray) -> np.ndarray:
        """X[ρ] = P_x V a_ρ as tangent components (k, *shape), a new array.

        V = cI (zonal): X = c ã (tangent components only); otherwise X_i = Σ_j M_ij ã_j + m_i ã_r (zonal) or
        Σ_c (e_iᵀ V)_c a_c (quadrature), see the class notes.
        """
        if self.method == "zonal":
            if self._value_factor is not None:
                tangential, _ = self._zonal_components(coeffs, radial=False)
                if self._value_factor != 1.0:
                    tangential *= self._value_factor
                return tangential
            tangential, radial = self._zonal_components(coeffs, radial=True)
            return _contract(self._get_drift_matrix(), [*tangential, radial])
        comps = [c.reshape(self.grid.shape) for c in self._quadrature_components(field)]
        return _contract(self._get_drift_matrix(), comps)

    def _zonal_sums(self, coeffs: np.ndarray, radial: bool):
        """G̃ρ, (1/κ)∇_S G̃ρ and ∂_κ G̃ρ on the grid (all scaled by e^{-|κ|}).

        Transforms only up to :attr:`kernel_degree`: the weights of the dropped degrees are below 1e-16 of the
        largest (:func:`kernel_degree`). At κ = 0 the closed forms of :meth:`_moment_sums`.
        """
        if self._moments is not None:
            return self._moment_sums(coeffs, radial)
        band = self._band
        c = band.restrict(coeffs)
        z = band.synthesis(self._w_value * c)
        tangential = band.gradient(self._w_over * c)
        r = band.synthesis(self._w_deriv * c) if radial else None
        return z, tangential, r

    def _moment_coefficients(self) -> np.ndarray:
        """Rows that give the mass and the first moment from the coefficients of degree ≤ 1, shape (1 + d, n₁).

        ``∫ ρ dA = sqrt(area) Re ρ_00`` and ``m_c = ∫ y_c ρ dA = Σ w Re(conj(x_c)_lm ρ_lm)`` over the degree-1
        coefficients of the coordinate functions (:meth:`Grid.coordinate_coefficients`, :meth:`Grid.inner`).
        """
        grid = self.grid
        self._low = np.nonzero(grid.degrees <= 1)[0]
        rows = np.zeros((1 + grid.dim, self._low.size), dtype=complex)
        rows[0, grid.degrees[self._low] == 0] = np.sqrt(grid.area)
        rows[1:] = np.conj(grid.coordinate_coefficients()[:, self._low]) * grid.order_weight[self._low]
        return rows

    def _moment_sums(self, coeffs: np.ndarray, radial: bool):
        """κ = 0: ``Z̃ = ∫ ρ dA`` (a constant), ``(1/κ)∇_S G̃ρ → ∇_S(x·m) = P_x m`` and ``∂_κ G̃ρ → x·m``, with
        ``m = ∫ y ρ(y) dA(y)``: the limits of the Funk–Hecke weights (degree 0: the area; degree 1: area/3 on S^2,
        area/2 on S^1, 1/d on the normalized measure), i.e. ∫ (x·y) ρ(y) dA(y) = x·m. No transform."""
        assert self._moments is not None
        sums = (self._moments @ coeffs[self._low]).real  # mass, m_1 … m_d
        return np.full(self.grid.shape, sums[0]), self._tangent(sums[1:]), self._radial(sums[1:]) if radial else None

    def _tangent(self, vector: np.ndarray) -> np.ndarray:
        """Tangent components e_i·v (k, *shape) of a constant vector v at the nodes: one matrix product over the
        frame (several times faster than :meth:`Grid.to_tangent`'s elementwise sums, which broadcast v)."""
        frame = self.grid._tangent_frame()  # (k, d, *shape), contiguous
        k, d = frame.shape[:2]
        return np.matmul(vector, frame.reshape(k, d, -1)).reshape(k, *self.grid.shape)

    def _radial(self, vector: np.ndarray) -> np.ndarray:
        """x·v at the nodes for a constant vector v (a new array)."""
        x = self.grid._point_components()  # (d, *shape), contiguous
        return (vector @ x.reshape(x.shape[0], -1)).reshape(self.grid.shape)

    def _moment_components(self, coeffs: np.ndarray, radial: bool):
        """κ = 0 and mass > 0: the attention output is one vector, ``a = m / ∫ρ`` (softmax) or ``m`` (unnormalized),
        trusted at every node; returns its tangent components and x·a, or None where the general path is needed
        (no positive mass, or a softmax |a| > 1 to be clipped, which only a signed density gives)."""
        assert self._moments is not None
        sums = (self._moments @ coeffs[self._low]).real
        mass, a = sums[0], sums[1:]
        if not mass > 0:
            return None
        if self.model.softmax:
            a = a / mass
            if a @ a > 1.0:
                return None
        self.unreliable_fraction = 0.0
        return self._tangent(a), self._radial(a) if radial else None

    def _zonal_components(self, coeffs: np.ndarray, radial: bool):
        """Tangent components ã (k, *shape) and, if ``radial``, the radial component ã_r of a (new arrays).

        ∇_v Z̃ = (1/κ)∇_S G̃ρ + x ∂_κ G̃ρ is normalized component by component (:func:`_normalize_components`); the
        softmax clip uses |a|² = Σ_j ã_j² + ã_r² (only Σ_j ã_j² without ``radial``: then X = c ã is what is clipped).
        """
        if self._moments is not None:
            closed = self._moment_components(coeffs, radial)
            if closed is not None:
                return closed
        z, tangential, r = self._zonal_sums(coeffs, radial)
        comps = [*tangential, r] if radial else list(tangential)
        flagged = _normalize_components(z, comps, self._zonal_reliable(z), self._log_shift, self.model.softmax)
        self.unreliable_fraction = flagged / z.size
        return tangential, r

    @staticmethod
    def _zonal_reliable(z: np.ndarray) -> np.ndarray | None:
        """The nodes where z > RELIABLE max z, or None when every node is (two passes, no mask: the usual case)."""
        threshold = RELIABLE * np.max(z)
        return None if np.min(z) > threshold else z > threshold

    def _quadrature_components(self, field: np.ndarray) -> list[np.ndarray]:
        """Cartesian components a_c (d flat arrays of length n) of the quadrature output."""
        mass = self._flat_weights * field.ravel()
        rhs = np.concatenate([mass[:, None], mass[:, None] * self._flat_points, np.abs(mass)[:, None]], axis=1)
        sums = self._kernel @ rhs
        z, absz = sums[:, 0], sums[:, -1]
        comps = [np.array(sums[:, 1 + c]) for c in range(self.grid.dim)]
        flagged = _normalize_components(z, comps, z > RELIABLE * absz, self._log_shift, self.model.softmax)
        self.unreliable_fraction = flagged / z.size
        return comps
