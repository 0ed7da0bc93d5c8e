"""The Lagrangian engine: the density as a weighted measure carried by the characteristic flow.

The equations are those of docs/mathematics.md, 'The Lagrangian engine'. With nu = 0 the density equation is pure
transport, so ρ_t is the push-forward of ρ_s by the flow Φ of the characteristic equation. The engine keeps

    μ_t = Σ_i w_i δ_{X_i(t)},     ρ_t(X_i(t)) = ρ_s(X_i(s)) e^{−ℓ_i(t)},     dℓ_i = div_S v(X_i) dt,

with nodes X_i(s) and weights w_i = ρ_s(x_i) A_i from a Gauss rule (A_i its weights) and v the full velocity of a
step: the attention drift X[μ_t] plus the frozen common-noise field of the step. Nodes are ODE states: no transport
CFL limits the step, which is why the engine follows the density through collapse, where a grid cannot.

The attention output of the weighted measure at the nodes is computed by the blocked direct sums of the tokens or,
for Qᵀ K = a I on S^1/S^2, by the Funk–Hecke (harmonic) sums of :class:`HarmonicSums`; its Jacobian, needed for
div_S X, comes from the second moments of the attention weights (docs/mathematics.md, 'The Lagrangian engine').
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from spde_tokens.drift import BLOCK_BYTES, RELIABLE, harmonic_degree, tangent_projection
from spde_tokens.grids import Grid, grid_from_attrs
from spde_tokens.model import AttentionModel
from spde_tokens.noise import NoiseSum
from spde_tokens.steppers import Scheme

#: the spectral engine hands over when the spectral tail of a step exceeds this level (``handover_tail``)
HANDOVER_TAIL = 1e-12
#: the recorded ``density`` is smoothed by the heat kernel until its spectral tail is at most this
SMOOTHING_TAIL = 1e-10


def node_rule(grid: Grid) -> Grid:
    """The Gauss rule whose nodes carry the measure: the grid of the same degree without dealiasing.

    On S^2, (L+1) Gauss–Legendre latitudes × (2L+2) longitudes; on S^1, 2n+2 equispaced nodes (rounded up to an FFT
    size). It integrates ρ f exactly for ρ of degree ≤ L and f of degree ≤ L + 1: mass, mean vector and the
    projection back onto degrees ≤ L are exact at the hand-over, with 2.25 times fewer nodes than the dealiased grid.
    """
    attrs = dict(grid.attrs())
    attrs["grid_dealias"] = 0
    return grid_from_attrs(attrs)


def nodes_from_coefficients(rule: Grid, coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes x_i (N, d) and weights w_i = ρ(x_i) A_i of the band-limited density ρ given by ``coeffs`` (the layout of
    the run's grid), on the Gauss rule ``rule`` = :func:`node_rule` of that grid."""
    values = rule.synthesis(coeffs)
    x = rule.points().reshape(-1, rule.dim).copy()
    return x, (values * rule.weights()).ravel()


@dataclass
class AttentionAtPoints:
    """The attention output of a weighted measure at query points, with what the divergences need.

    Attributes
    ----------
    output : a_μ(x_i), shape (N, d).
    jacobian : Da_μ(x_i), shape (N, d, d), or None when only ``trace`` was asked for.
    trace : tr(P_x Da_μ(x)) = tr(Da) − xᵀ Da x, shape (N,).
    unreliable : number of points where a was set to 0 (partition function below RELIABLE) or clipped to |a| = 1.
    hessian : D²a_μ(x_i), ``hessian[i, k, m, n] = ∂_m ∂_n a_k``, shape (N, d, d, d), when asked for (ValueNoise).
    """

    output: np.ndarray
    jacobian: np.ndarray | None
    trace: np.ndarray
    unreliable: int
    hessian: np.ndarray | None = None


class HarmonicSums:
    """Σ_j c_j(y_j) e^{κ x_i·y_j} for many channels c at once, by the Funk–Hecke expansion of the kernel to degree L.

    With R the real harmonic basis (Re Y_lm, Im Y_lm) of the grid of degree L,

        Σ_j c_j e^{κ x_i·y_j} ≈ Σ_lm w_m λ_l(κ) [ (Σ_j c_j Re Y_lm(y_j)) Re Y_lm(x_i) + (… Im …) Im Y_lm(x_i) ],

    two real matrix products; everything is scaled by e^{−|κ|}. The omitted weights sum to < 1e-15 of λ_0 at the
    default degree (:func:`spde_tokens.drift.harmonic_degree`).
    """

    def __init__(self, dim: int, kappa: float, degree: int):
        attrs = ({"grid": "sphere", "grid_lmax": max(degree, 4), "grid_dealias": 0} if dim == 3 else
                 {"grid": "circle", "grid_n": max(degree, 4), "grid_dealias": 0})
        self.grid = grid_from_attrs(attrs)
        w = self.grid.zonal_weights(kappa)
        gain = self.grid.order_weight * self.grid.per_degree(w.value)
        self.gain = np.concatenate([gain, gain])
        second = self.grid.order_weight * self.grid.per_degree(w.second_derivative)
        self.gain_second = np.concatenate([second, second])
        self.log_scale = w.log_scale

    def basis(self, points: np.ndarray) -> np.ndarray:
        """The real basis at the points, shape (2 n_coeff, N)."""
        return self.grid.real_basis(points)

    def project(self, basis: np.ndarray, channels: np.ndarray) -> np.ndarray:
        """Σ_j c_j (Re Y_lm(y_j), Im Y_lm(y_j)) for channels (C, N): shape (C, 2 n_coeff)."""
        return channels @ basis.T

    def evaluate(self, projected: np.ndarray, basis: np.ndarray, second: bool = False) -> np.ndarray:
        """The sums at the points of ``basis``: kernel e^{κ x·y} (or (x·y)² e^{κ x·y} with ``second``), (C, N)."""
        return (projected * (self.gain_second if second else self.gain)) @ basis


class WeightedAttention:
    """Attention output of μ = Σ_j w_j δ_{y_j} at points, with its Jacobian (docs/mathematics.md, 'The Lagrangian
    engine').

    For the attention weights p_ij ∝ w_j e^{beta x_iᵀ A y_j} (softmax) the output a = Σ_j p_ij y_j has the Jacobian
    Da = beta Cov_p(y) Aᵀ; unnormalized, a = Σ_j w_j e^{…} y_j and Da = beta Σ_j w_j e^{…} y_j y_jᵀ Aᵀ.

    Parameters
    ----------
    model : the attention model.
    method : ``"direct"`` (max-shifted sums in row blocks, any A and d) or ``"harmonic"`` (Qᵀ K = a I, d = 2, 3).
    degree : truncation degree of the harmonic sums (default :func:`spde_tokens.drift.harmonic_degree`).
    jacobian : compute the full Jacobian (needed for V ≠ cI and by ValueNoise); otherwise the harmonic path needs
        only tr(P_x Da) = κ (1 − |a|² − E_p[(x·y)²] + (x·a)²), one more evaluation instead of d(d + 1)/2.
    hessian : also compute D²a from the third moments (ValueNoise's drift correction needs Δ_S|a|²):
        ∂_m ∂_n a_k = beta² Σ_pq A_mp A_nq κ₃(y_k, y_p, y_q) (softmax: κ₃ the third joint cumulant of p; unnormalized:
        the third moment Σ_j w_j e^{…} y_k y_p y_q).
    block_bytes : memory of one block of logits on the direct path.
    """

    def __init__(self, model: AttentionModel, method: str, degree: int | None = None, jacobian: bool = True,
                 block_bytes: int = BLOCK_BYTES, hessian: bool = False):
        self.model, self.method, self.block_bytes = model, method, block_bytes
        self.third = hessian
        # the direct sums need the second-moment channels for the trace as well
        self.full = jacobian or hessian or method == "direct" or model.beta == 0.0
        if method == "harmonic":
            if model.zonal_factor is None or model.dim not in (2, 3):
                raise ValueError("attention='harmonic' needs Qᵀ K = a I on S^1 or S^2 (dim 2 or 3)")
            self.degree = harmonic_degree(model) if degree is None else int(degree)
            self.kappa = model.beta * model.zonal_factor
            self.sums = HarmonicSums(model.dim, self.kappa, self.degree)
        elif method != "direct":
            raise ValueError(f"attention must be 'direct' or 'harmonic' on nodes, got {method!r}")

    def channels(self, keys: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """w_j, w_j y_j, (w_j y_j y_jᵀ when the full Jacobian is needed) and |w_j|, as rows (C, N)."""
        d = keys.shape[1]
        rows = [weights[None], weights[None] * keys.T]
        if self.full:
            rows.append((weights[None, None] * keys.T[:, None] * keys.T[None, :]).reshape(d * d, -1))
        if self.third:
            rows.append((weights * keys.T[:, None, None] * keys.T[None, :, None] * keys.T[None, None, :])
                        .reshape(d**3, -1))
        rows.append(np.abs(weights)[None])
        return np.concatenate(rows)

    def __call__(self, queries: np.ndarray, keys: np.ndarray, weights: np.ndarray,
                 key_basis: np.ndarray | None = None) -> AttentionAtPoints:
        """The output at ``queries`` (N, d) of μ = Σ_j weights_j δ_{keys_j}.

        ``key_basis``: the harmonic basis at the keys when it is already known (queries is keys).
        """
        model, d = self.model, keys.shape[1]
        if model.beta == 0.0:  # uniform attention: a = the (weighted) mean, Da = 0
            mean = weights @ keys
            a = mean / weights.sum() if model.softmax else mean
            out = np.broadcast_to(a, queries.shape).copy()
            n = queries.shape[0]
            return AttentionAtPoints(out, np.zeros((n, d, d)), np.zeros(n), 0,
                                     np.zeros((n, d, d, d)) if self.third else None)
        chans = self.channels(keys, weights)
        if self.method == "harmonic":
            basis_k = self.sums.basis(keys) if key_basis is None else key_basis
            basis_q = basis_k if queries is keys else self.sums.basis(queries)
            projected = self.sums.project(basis_k, chans[:-1])
            sums = self.sums.evaluate(projected, basis_q).T  # (N, C - 1)
            z = sums[:, 0]
            reliable = z > RELIABLE * z.max()
            shift = np.full(z.shape, self.sums.log_scale)
            second = None if self.full else self.sums.evaluate(projected[:1], basis_q, second=True)[0]
        else:
            sums, shift = self._direct(queries, keys, chans)
            z, absz = sums[:, 0], sums[:, -1]
            reliable = z > RELIABLE * absz
            second = None
        return self._normalize(queries, sums, z, reliable, shift, second)

    def _direct(self, queries: np.ndarray, keys: np.ndarray, chans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Max-shifted sums Σ_j e^{beta x_iᵀ A y_j − M_i} c_j in row blocks; the shifts M_i."""
        qa = self.model.beta * (queries @ self.model.A)
        n = keys.shape[0]
        out = np.empty((queries.shape[0], chans.shape[0]))
        shift = np.empty(queries.shape[0])
        rows = max(1, self.block_bytes // (8 * max(n, 1)))
        rhs = chans.T
        for start in range(0, queries.shape[0], rows):
            sl = slice(start, start + rows)
            logits = qa[sl] @ keys.T
            shift[sl] = logits.max(axis=1)
            np.exp(logits - shift[sl, None], out=logits)
            out[sl] = logits @ rhs
        return out, shift

    def _normalize(self, x: np.ndarray, sums: np.ndarray, z: np.ndarray, reliable: np.ndarray, shift: np.ndarray,
                   second: np.ndarray | None) -> AttentionAtPoints:
        model, d = self.model, x.shape[1]
        n = x.shape[0]
        first = sums[:, 1:1 + d]
        scale = np.where(reliable, 1.0 / np.where(reliable, z, 1.0), 0.0) if model.softmax else \
            np.where(reliable, np.exp(shift), 0.0)
        a = first * scale[:, None]
        jac = hess = None
        if self.full:
            second_moment = sums[:, 1 + d:1 + d + d * d].reshape(n, d, d) * scale[:, None, None]
            moment = second_moment - a[:, :, None] * a[:, None, :] if model.softmax else second_moment
            jac = model.beta * moment @ model.A.T
            trace = np.einsum("nii->n", jac) - np.einsum("ni,nij,nj->n", x, jac, x)
            if self.third:
                m3 = sums[:, 1 + d + d * d:1 + d + d * d + d**3].reshape(n, d, d, d) * scale[:, None, None, None]
                if model.softmax:  # the third joint cumulant E[y_k y_p y_q] − 3 sym(E[y y] E[y]) + 2 a a a
                    m3 = (m3 - np.einsum("nkp,nq->nkpq", second_moment, a) - np.einsum("nkq,np->nkpq", second_moment, a)
                          - np.einsum("npq,nk->nkpq", second_moment, a)
                          + 2 * np.einsum("nk,np,nq->nkpq", a, a, a))
                hess = model.beta**2 * np.einsum("nkpq,mp,lq->nkml", m3, model.A, model.A)
        else:
            assert second is not None  # the harmonic path without the full Jacobian
            xa = np.einsum("ni,ni->n", x, a)
            if model.softmax:
                trace = self.kappa * (1.0 - np.einsum("ni,ni->n", a, a) - second * scale + xa**2)
            else:
                trace = self.kappa * (z - second) * scale
        unreliable = int(np.count_nonzero(~reliable))
        if model.softmax:  # |a| ≤ 1 for a non-negative measure: clip what rounding pushed beyond
            norm = np.linalg.norm(a, axis=1)
            over = norm > 1.0
            if over.any():
                a[over] /= norm[over, None]
                unreliable += int(np.count_nonzero(over))
        return AttentionAtPoints(a, jac, trace, unreliable, hess)


class NodeFlow:
    """The characteristic ODE of one step for the nodes and their log-Jacobians.

    Within step n (length dt) the common-noise increment is frozen, as for the density and the tokens' flow; over
    s ∈ [0, 1] the state (X, ℓ) obeys

        dX/ds = dt P_X V a_μ(X) + P_X ΔN_n(X),     dℓ/ds = dt div_S(P_x V a_μ)(X) + div_S(P_x ΔN_n)(X),

    with μ = Σ_j w_j δ_{X_j} the nodes' measure at the stage and

        div_S(P_x F) = tr(P_x DF P_x) − (d − 1) x·F(x),     DF = V Da_μ   (docs/mathematics.md, 'The Lagrangian
        engine').

    Parameters
    ----------
    model, noise : the attention model and the noise (None or a sum without idiosyncratic part).
    method, degree : the attention evaluation of :class:`WeightedAttention`.
    """

    def __init__(self, model: AttentionModel, noise: NoiseSum | None, method: str, degree: int | None = None,
                 block_bytes: int = BLOCK_BYTES):
        if noise is not None and noise.nu > 0:
            raise ValueError(f"the Lagrangian engine moves the measure by transport only; nu = {noise.nu} "
                             "(IdiosyncraticNoise) is diffusion: use engine='spectral'")
        self.model, self.noise = model, noise
        self.value_factor = model.value_factor
        self.attention = WeightedAttention(model, method, degree, jacobian=self.value_factor is None,
                                           block_bytes=block_bytes)
        # ValueNoise: a_μ of the measure at the start of the step, its Jacobian and second derivatives at the stages
        self.context = (WeightedAttention(model, method, degree, jacobian=True, block_bytes=block_bytes, hessian=True)
                        if noise is not None and noise.needs_context else None)
        self.unreliable_fraction = 0.0

    def drift(self, x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """X[μ](x_i) = P_x V a_μ(x_i) at the nodes and its surface divergence, μ = Σ w_j δ_{x_j}."""
        att = self.attention(x, x, weights)
        self.unreliable_fraction = att.unreliable / x.shape[0]
        d = x.shape[1]
        if self.value_factor is not None:
            c = self.value_factor
            radial = np.einsum("ni,ni->n", x, att.output)
            return c * tangent_projection(x, att.output), c * (att.trace - (d - 1) * radial)
        assert att.jacobian is not None  # V ≠ cI asks for the full Jacobian
        v = self.model.V
        f = att.output @ v.T
        dv = v @ att.jacobian  # D(V a) = V Da, shape (N, d, d)
        trace = np.einsum("nii->n", dv) - np.einsum("ni,nij,nj->n", x, dv, x)
        return tangent_projection(x, f), trace - (d - 1) * np.einsum("ni,ni->n", x, f)

    def step(self, state: np.ndarray, weights: np.ndarray, dt: float, increments: dict | None,
             scheme: Scheme) -> np.ndarray:
        """One step of the frozen-increment ODE; ``state`` is (N, d + 1): the nodes, then the log-Jacobians.

        Without common noise: ``scheme`` over s ∈ [0, 1] on the drift. With it, split as the density step (Strang):
        a half step of the drift, the frozen noise field (and ValueNoise's correction, with μ_n the nodes' measure at
        the start of the step, as on the grid) over the whole step, a half step of the drift.
        """
        d = state.shape[1] - 1

        def drift(h: float) -> Callable[[np.ndarray], np.ndarray]:
            def rates(y: np.ndarray) -> np.ndarray:
                # stages are evaluated at their projection on the sphere, as for the tokens' flow
                x = y[:, :d] / np.linalg.norm(y[:, :d], axis=1, keepdims=True)
                v, div = self.drift(x, weights)
                out = np.empty_like(y)
                out[:, :d] = h * v
                out[:, d] = h * div
                return out

            return rates

        def normalized(y: np.ndarray) -> np.ndarray:
            y[:, :d] /= np.linalg.norm(y[:, :d], axis=1, keepdims=True)
            return y

        if increments is None or self.noise is None or not self.noise.common_models:
            return normalized(scheme.step(drift(dt), state, 1.0))
        noise, inc = self.noise, increments
        start = state[:, :d].copy()  # μ_n: ValueNoise's field a_{μ_n} and correction are frozen at the step's start
        state = normalized(scheme.step(drift(0.5 * dt), state, 1.0))
        if self.context is None:
            def moved(y: np.ndarray) -> np.ndarray:
                x = y[:, :d] / np.linalg.norm(y[:, :d], axis=1, keepdims=True)
                field, div = noise.field_and_divergence(x, inc)
                return np.concatenate([tangent_projection(x, field), div[:, None]], axis=1)
        else:
            context = self.context
            frozen = start / np.linalg.norm(start, axis=1, keepdims=True)
            key_basis = context.sums.basis(frozen) if context.method == "harmonic" else None

            def moved(y: np.ndarray) -> np.ndarray:
                x = y[:, :d] / np.linalg.norm(y[:, :d], axis=1, keepdims=True)
                att = context(x, frozen, weights, key_basis=key_basis)
                out = np.empty_like(y)
                out[:, :d] = tangent_projection(x, noise.field(x, inc, att.output))
                out[:, d] = noise.divergence(x, inc, att.output, att.jacobian)
                correction = noise.drift_correction_points(x, att.output, att.jacobian, att.hessian)
                if correction is not None:
                    out[:, :d] += dt * correction[0]
                    out[:, d] += dt * correction[1]
                return out

        state = normalized(scheme.step(moved, state, 1.0))
        return normalized(scheme.step(drift(0.5 * dt), state, 1.0))



def smoothing_time(grid: Grid, spectrum: np.ndarray, level: float = SMOOTHING_TAIL) -> float:
    """The smallest τ ≥ 0 for which the heat-smoothed spectrum P_l e^{−2 l(l + d − 2) τ} has a spectral tail ≤ level.

    The tail is that of :func:`spde_tokens.diagnostics.spectral_tail` (power at degrees ≥ ⌈0.9 L⌉ over the power at
    degrees ≥ 1); it decreases with τ, so τ is found by bisection on log τ (to 1e-3 relative).
    """
    ell = np.arange(spectrum.size, dtype=float)
    rate = 2.0 * ell * (ell + grid.dim - 2)
    top = ell >= np.ceil(0.9 * (spectrum.size - 1))

    def tail(tau: float) -> float:
        p = spectrum * np.exp(-rate * tau)
        total = p[1:].sum()
        return float(p[top].sum() / total) if total > 0 else 0.0

    if tail(0.0) <= level:
        return 0.0
    lo, hi = 0.0, 1.0 / max(rate[-1], 1.0)
    while tail(hi) > level:
        lo, hi = hi, 2.0 * hi
    while hi - lo > 1e-3 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if tail(mid) > level else (lo, mid)
    return hi
