"""Funk–Hecke weights of the exponential kernel exp(κ x·y): the one routine behind drift, energy and MMD.

For a zonal kernel k(x·y) the convolution ``∫ k(x·y) f(y) dA(y)`` multiplies every harmonic of degree l by a
weight λ_l (Funk–Hecke).  For ``k(t) = exp(κ t)``:

* S^2: ``exp(κ t) = Σ_l (2l+1) i_l(κ) P_l(t)`` gives ``λ_l = 4π i_l(κ)`` (modified spherical Bessel i_l);
* S^1: ``exp(κ cos ψ) = Σ_n I_n(κ) exp(i n ψ)`` gives ``λ_n = 2π I_n(κ)``.

Everything is returned **scaled** by ``exp(-|κ|)`` (``scipy.special.ive``) so that κ up to several hundred neither
overflows nor loses relative accuracy; the factor ``exp(|κ|)`` is returned separately.  Negative κ uses
``i_l(-κ) = (-1)^l i_l(κ)`` (``I_n(-κ) = (-1)^n I_n(κ)``) and κ = 0 the limits ``i_l(0) = δ_l0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special


@dataclass(frozen=True)
class ZonalWeights:
    """Scaled Funk–Hecke weights of exp(κ x·y) for degrees 0 … lmax.

    Attributes
    ----------
    value : λ_l(κ) e^{-|κ|}, the multiplier of G_κ f = ∫ exp(κ x·y) f(y) dA(y).
    derivative : ∂_κ λ_l(κ) e^{-|κ|}, the multiplier of ∂_κ G_κ f = ∫ (x·y) exp(κ x·y) f(y) dA(y).
    over_kappa : λ_l(κ) e^{-|κ|} / κ, with its limit at κ = 0 (4π/3 δ_l1 on S^2, π δ_n1 on S^1).
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
        raise ValueError(f"dim must be 2 or 3 for a spectral grid, got {dim}")
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


def resolving_degree(dim: int, kappa: float, tol: float = 1e-16) -> int:
    """Smallest degree l with λ_l(κ)/λ_0(κ) < tol: the lmax that resolves the kernel exp(κ x·y).

    On S^2 this is about 8.7 sqrt(κ) for tol = 1e-16 and κ ≳ 10.
    """
    lcap = int(30 * np.sqrt(abs(kappa)) + 40)
    b = np.abs(_scaled_bessel(dim, kappa, lcap))
    below = np.nonzero(b < tol * b[0])[0]
    return int(below[0]) if below.size else lcap
