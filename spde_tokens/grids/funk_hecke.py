"""Funk–Hecke weights of the exponential kernel exp(κ x·y): the one routine behind drift, energy and MMD.

For a zonal kernel k(x·y) the convolution ``∫ k(x·y) f(y) dA(y)`` multiplies every harmonic of degree l by a
weight λ_l (Funk–Hecke).  For ``k(t) = exp(κ t)``:

* S^2: ``exp(κ t) = Σ_l (2l+1) i_l(κ) P_l(t)`` gives ``λ_l = 4π i_l(κ)`` (modified spherical Bessel i_l);
* S^1: ``exp(κ cos ψ) = Σ_n I_n(κ) exp(i n ψ)`` gives ``λ_n = 2π I_n(κ)``;
* S^{d−1}, any d ≥ 2, on the **normalized** measure σ (the zonal grid): ``μ_l = Γ(d/2) (2/κ)^ν I_{l+ν}(κ)``,
  ν = d/2 − 1 (:func:`normalized_zonal_weights`; μ_l = λ_l/|S^{d−1}|, so 4π μ_l is the S^2 weight).

Everything is returned **scaled** by ``exp(-|κ|)`` (``scipy.special.ive``) so that κ up to several hundred neither
overflows nor loses relative accuracy; the factor ``exp(|κ|)`` is returned separately.  Negative κ uses
``i_l(-κ) = (-1)^l i_l(κ)`` (``I_n(-κ) = (-1)^n I_n(κ)``) and κ = 0 the limits ``i_l(0) = δ_l0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spde_tokens import checks


@dataclass(frozen=True)
class ZonalWeights:
    """Scaled Funk–Hecke weights of exp(κ x·y) for degrees 0 … lmax.

    Attributes
    ----------
    value : λ_l(κ) e^{-|κ|}, the multiplier of G_κ f = ∫ exp(κ x·y) f(y) dA(y).
    derivative : ∂_κ λ_l(κ) e^{-|κ|}, the multiplier of ∂_κ G_κ f = ∫ (x·y) exp(κ x·y) f(y) dA(y).
    over_kappa : λ_l(κ) e^{-|κ|} / κ, with its limit at κ = 0 (4π/3 δ_l1 on S^2, π δ_n1 on S^1, δ_l1/d on the
        normalized measure of S^{d−1}).
    second_derivative : ∂²_κ λ_l(κ) e^{-|κ|}, the multiplier of ∫ (x·y)² exp(κ x·y) f(y) dA(y).
    log_scale : |κ|, so that the unscaled weight is ``value * exp(log_scale)``.
    """

    value: np.ndarray
    derivative: np.ndarray
    over_kappa: np.ndarray
    second_derivative: np.ndarray
    log_scale: float


def _scaled_bessel(dim: int, kappa: float, lmax: int) -> np.ndarray:
    """e^{-|κ|} i_l(κ) (dim 3) or e^{-|κ|} I_l(κ) (dim 2) for l = 0 … lmax, any real κ."""
    ell = np.arange(lmax + 1)
    a = abs(kappa)
    if a == 0.0:
        return (ell == 0).astype(float)
    from scipy import special  # deferred: scipy.special costs ~0.3 s of `import spde_tokens`, and κ = 0 needs none

    if dim == 3:
        val = np.sqrt(np.pi / (2.0 * a)) * special.ive(ell + 0.5, a)
    else:
        val = special.ive(ell, a)
    if kappa < 0:
        val = val * (-1.0) ** ell
    return val


def zonal_weights(dim: int, kappa: float, lmax: int) -> ZonalWeights:
    """Funk–Hecke weights of exp(κ x·y) on S^{dim-1} (dim 2 or 3), degrees 0 … lmax, scaled by e^{-|κ|}.

    Implements ``λ_l = 4π i_l(κ)``, ``λ_l' = 4π (l i_{l-1} + (l+1) i_{l+1}) / (2l+1)`` on S^2 and
    ``λ_n = 2π I_n(κ)``, ``λ_n' = π (I_{n-1} + I_{n+1})`` on S^1, and λ_l'' by applying the same recurrence twice
    (no division by κ, so it holds down to κ = 0).
    """
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3 (surface measure of S^1, S^2), got {dim}; for any dim, "
                         "normalized_zonal_weights gives the weights on the normalized measure")
    kappa = float(kappa)
    if not np.isfinite(kappa):
        raise ValueError(f"kappa must be finite, got {kappa}")
    b = _scaled_bessel(dim, kappa, lmax + 2)
    # b_{l-1}, b_{l-2} at negative indices: i_{-1}, i_{-2} enter only with the factor l = 0 (S^2); I_{-n} = I_n (S^1)
    ext = np.concatenate([b[2:0:-1], b])  # ext[l + 2] = b_l for l ≥ 0, ext[0] = b_2, ext[1] = b_1

    def deriv(ell: np.ndarray, values) -> np.ndarray:
        """λ_l' from ``values(l ± 1)``: (l λ_{l-1} + (l+1) λ_{l+1})/(2l+1) on S^2, (λ_{l-1} + λ_{l+1})/2 on S^1."""
        if dim == 3:
            return (ell * values(ell - 1) + (ell + 1) * values(ell + 1)) / (2 * ell + 1)
        return 0.5 * (values(ell - 1) + values(ell + 1))

    def scaled(ell: np.ndarray) -> np.ndarray:
        return ext[ell + 2]

    ell = np.arange(lmax + 1)
    first = deriv(ell, scaled)
    second = deriv(ell, lambda k: deriv(k, scaled))
    area = 4.0 * np.pi if dim == 3 else 2.0 * np.pi
    value = b[: lmax + 1]
    if kappa == 0.0:
        over = np.zeros(lmax + 1)
        if lmax >= 1:
            over[1] = 1.0 / 3.0 if dim == 3 else 0.5
    else:
        over = value / kappa
    return ZonalWeights(area * value, area * first, area * over, area * second, abs(kappa))


#: log of the smallest normal float plus a margin: a scaled Bessel value below e^{-700} is not trusted to full precision
_LOG_NORMAL = -700.0
#: series terms below this fraction of the running sum end the series
_SERIES_TOL = 1e-18


def _log_hypergeometric_sum(order: np.ndarray, a: float) -> np.ndarray:
    """log ₀F₁(; v + 1; a²/4) = log Σ_{k≥0} (a/2)^{2k} Γ(v+1) / (k! Γ(v+k+1)) for the orders v, a > 0.

    I_v(a) = (a/2)^v ₀F₁(; v + 1; a²/4) / Γ(v + 1). Terms of one sign (no cancellation), summed with a running
    rescaling (the sum reaches e^{a²/(4(v+1))}); used where ``ive`` underflows, i.e. v ≫ a, so the terms peak at
    k ≲ a/2.
    """
    q = 0.25 * a * a
    term, total, offset = np.ones(order.size), np.ones(order.size), np.zeros(order.size)
    k = 0
    while True:
        ratio = q / ((k + 1.0) * (order + k + 1.0))
        term *= ratio
        total += term
        k += 1
        big = total > 1e200
        if big.any():
            term[big] *= 1e-200
            total[big] *= 1e-200
            offset[big] += 200.0 * np.log(10.0)
        if np.all((ratio < 1.0) & (term < _SERIES_TOL * total)):
            return np.log(total) + offset


def normalized_zonal_weights(dim: int, kappa: float, lmax: int) -> ZonalWeights:
    """Funk–Hecke weights of exp(κ x·y) on S^{dim−1}, any dim ≥ 2, for the normalized measure σ (σ(S^{d−1}) = 1).

    For Y_l zonal of degree l, ``∫ exp(κ x·y) Y_l(y) dσ(y) = μ_l(κ) Y_l(x)`` with

        μ_l(κ) = Γ(d/2) (2/κ)^ν I_{l+ν}(κ),   ν = d/2 − 1,

    returned as a :class:`ZonalWeights` scaled by 1/μ_0(|κ|) (``log_scale = log μ_0(|κ|)``, so ``value[0]`` is 1
    for κ ≥ 0). Not by e^{−|κ|} as :func:`zonal_weights`: μ_0(κ) ≈ e^{κ²/(2d)} for κ ≪ d, so e^{−|κ|} μ_0
    underflows in high dimension (e^{−881} at d = 4096, κ = 1000). The ratios μ_l/μ_0 are ratios of ``ive`` values,
    and the prefactor enters log μ_0 through ``gammaln`` in log form; where ``ive`` underflows (ν + l ≫ κ) the
    positive series μ_l = (κ/2)^l Γ(ν+1)/Γ(ν+l+1) ₀F₁(; ν+l+1; κ²/4) is summed in log form instead (all degrees when
    μ_0 itself is in that range, so that log μ_0 ≈ κ²/(2d) keeps its relative accuracy). Nothing overflows for d
    in the thousands; relative accuracy ~1e-14, down to ~eps log Γ(ν + l) (1e-12 at d = 4096) for the degrees
    where the series meets ``ive`` values. Negative κ:
    μ_l(−κ) = (−1)^l μ_l(κ); κ = 0: μ_l = δ_l0 and μ_l/κ → δ_l1/d. The κ-derivatives use the recurrence of
    s C_l^{(ν)}(s) (no division by κ):

        ∂_κ μ_l = ((l + d − 2) μ_{l+1} + l μ_{l−1}) / (2l + d − 2)   (∂_κ μ_0 = μ_1),

    applied twice for ∂²_κ μ_l. With d = 3 the weights are those of S^2 divided by 4π, with d = 2 those of S^1
    divided by 2π (up to the scale).
    """
    dim = checks.integer("dim", dim, 2)
    kappa = float(kappa)
    if not np.isfinite(kappa):
        raise ValueError(f"kappa must be finite, got {kappa}")
    count = lmax + 2
    ell = np.arange(count + 1)
    a = abs(kappa)
    if a == 0.0:
        scaled, log_scale = (ell == 0).astype(float), 0.0
    else:
        from scipy import special  # deferred, as in _scaled_bessel

        nu = 0.5 * dim - 1.0
        ive = special.ive(nu + ell, a)
        series = ive < np.exp(_LOG_NORMAL)  # ive is decreasing in the order: a tail of the degrees
        log_sum = _log_hypergeometric_sum(nu + ell[series], a)
        if series[0]:
            # every degree by the series: μ_0 = ₀F₁(; ν+1; a²/4) itself and μ_l/μ_0 = Π_{j≤l} a/(2(ν+j)) · ₀F₁ ratios
            log_scale = float(log_sum[0])
            steps = np.log(0.5 * a) - np.log(nu + ell[1:])
            scaled = np.exp(np.concatenate([[0.0], np.cumsum(steps)]) + log_sum - log_sum[0])
        else:
            # ratios of ive values; the prefactor Γ(ν+1)(2/a)^ν (e^{2700} at d = 1024) enters the scale only
            log_scale = float(special.gammaln(nu + 1.0) + nu * np.log(2.0 / a) + np.log(ive[0]) + a)
            scaled = ive / ive[0]
            order = nu + ell[series]
            log_ive = order * np.log(0.5 * a) - special.gammaln(order + 1.0) + log_sum - a
            scaled[series] = np.exp(log_ive - np.log(ive[0]))
        if kappa < 0:
            scaled *= (-1.0) ** ell
    # ∂_κ μ_l = p_l μ_{l+1} + q_l μ_{l−1}
    p = np.ones(count + 1)
    q = np.zeros(count + 1)
    denom = 2.0 * ell[1:] + dim - 2.0
    p[1:], q[1:] = (ell[1:] + dim - 2.0) / denom, ell[1:] / denom

    def deriv(values: np.ndarray) -> np.ndarray:
        """∂_κ of weights 0 … n (given to n + 1): p_l v_{l+1} + q_l v_{l−1}, one degree shorter."""
        n = values.size - 1
        out = p[:n] * values[1:]
        out[1:] += q[1:n] * values[: n - 1]
        return out

    first = deriv(scaled)
    second = deriv(first)
    value = scaled[: lmax + 1]
    if kappa == 0.0:
        over = np.zeros(lmax + 1)
        over[1] = 1.0 / dim
    else:
        over = value / kappa
    return ZonalWeights(value, first[: lmax + 1], over, second[: lmax + 1], log_scale)


def resolving_degree(dim: int, kappa: float, tol: float = 1e-16) -> int:
    """Smallest degree l with λ_l(κ)/λ_0(κ) < tol: the lmax that resolves the kernel exp(κ x·y) on S^{dim−1}.

    On S^2 this is about 8.7 sqrt(κ) for tol = 1e-16 and κ ≳ 10; in higher dimensions the weights fall faster.
    """
    lcap = int(30 * np.sqrt(abs(kappa)) + 40)
    if dim in (2, 3):
        b = np.abs(_scaled_bessel(dim, kappa, lcap))
    else:
        b = np.abs(normalized_zonal_weights(dim, kappa, lcap).value)
    below = np.nonzero(b < tol * b[0])[0]
    return int(below[0]) if below.size else lcap
