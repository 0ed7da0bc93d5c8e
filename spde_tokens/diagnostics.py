"""Diagnostics of DESIGN 1.4, spectral where that is exact (densities) and blocked sums for tokens.

All density diagnostics take the grid and the coefficients of ρ (the convention of :mod:`spde_tokens.grids`).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from spde_tokens.grids.base import Grid
from spde_tokens.grids.funk_hecke import zonal_weights

#: default scale s of the MMD kernel exp(s x·y)
MMD_SCALE = 2.0


def mass(grid: Grid, coeffs: np.ndarray) -> float:
    """∫ ρ dA = sqrt(area) ρ_00."""
    return float(np.sqrt(grid.area) * coeffs[0].real)


def mean_vector(grid: Grid, coeffs: np.ndarray) -> np.ndarray:
    """m = ∫ x ρ(x) dA, from the degree-1 coefficients (exact)."""
    cached = grid.__dict__.get("_coordinate_coefficients")
    if cached is None:
        cached = grid.__dict__["_coordinate_coefficients"] = grid.coordinate_coefficients()
    return np.array([grid.inner(cached[i], coeffs) for i in range(grid.dim)])


def dispersion(grid: Grid, coeffs: np.ndarray) -> float:
    """½ ∫∫ |x − y|² dρ dρ = (∫ρ)² − |m|² (1 − |m|² for a probability density)."""
    m = mean_vector(grid, coeffs)
    return float(mass(grid, coeffs) ** 2 - m @ m)


def energy_weights(dim: int, beta: float, lmax: int) -> np.ndarray:
    """Per-degree weights e_l with E_beta = Σ_l e_l P_l: e_l = (λ_l(beta) − area δ_l0) / (2 beta).

    λ_l are the Funk–Hecke weights of exp(beta x·y); at beta = 0 the limit is e_1 = area/(2 dim) (so E = ½|m|²).
    """
    w = zonal_weights(dim, beta, lmax)
    e = 0.5 * w.over_kappa * np.exp(w.log_scale)
    area = 4.0 * np.pi if dim == 3 else 2.0 * np.pi
    if beta < 1e-2:  # (i_0(β) − 1)/β and (I_0(β) − 1)/β by their series: no cancellation
        e[0] = 0.5 * area * (beta / 6 + beta**3 / 120 if dim == 3 else beta / 4 + beta**3 / 64)
    elif dim == 3:
        e[0] = 0.5 * area * (np.sinh(beta) - beta) / beta**2
    else:
        e[0] = 0.5 * area * (special.iv(0, beta) - 1.0) / beta
    return e


def energy(grid: Grid, coeffs: np.ndarray, beta: float) -> float:
    """E_beta[ρ] = (1/(2 beta)) ∫∫ expm1(beta x·y) dρ(x) dρ(y) = Σ_l e_l P_l (Funk–Hecke; ½|m|² at beta = 0)."""
    return float(energy_weights(grid.dim, beta, grid.degree_max) @ grid.power_spectrum(coeffs))


def spectral_tail(grid: Grid, coeffs: np.ndarray) -> float:
    """Σ_{l ≥ ⌈0.9 lmax⌉} P_l / Σ_{l ≥ 1} P_l: the share of power near the truncation (0 for the uniform state)."""
    p = grid.power_spectrum(coeffs)
    total = p[1:].sum()
    return float(p[int(np.ceil(0.9 * grid.degree_max)):].sum() / total) if total > 0 else 0.0


def mmd(grid: Grid, coeffs_a: np.ndarray, coeffs_b: np.ndarray, scale: float = MMD_SCALE) -> float:
    """Maximum mean discrepancy for k(x, y) = exp(scale x·y): MMD² = Σ_l λ_l P_l(μ − ν), λ_l Funk–Hecke weights.

    Coefficients may come from densities (``grid.analysis``) or tokens (``grid.empirical_coefficients``); the sum
    is truncated at the grid's degree, which omits at most λ_{L+1}/λ_0 of the discrepancy's weight (< 1e-16 for
    scale 2 and L ≥ 14 on S^2).
    """
    w = zonal_weights(grid.dim, scale, grid.degree_max)
    val = (w.value * np.exp(w.log_scale)) @ grid.power_spectrum(coeffs_a - coeffs_b)
    return float(np.sqrt(max(val, 0.0)))


# ---- tokens --------------------------------------------------------------------------------------------------
def mean_vector_tokens(tokens: np.ndarray) -> np.ndarray:
    """m = (1/N) Σ_i x_i."""
    return np.asarray(tokens).mean(axis=0)


def dispersion_tokens(tokens: np.ndarray) -> float:
    """(1/(2N²)) Σ_ij |x_i − x_j|² = 1 − |m|²."""
    m = mean_vector_tokens(tokens)
    return float(1.0 - m @ m)


def energy_tokens(tokens: np.ndarray, beta: float, block_bytes: int = 64 * 2**20) -> float:
    """E_beta = (1/(2 beta N²)) Σ_ij expm1(beta x_i·x_j) (½|m|² at beta = 0), summed in row blocks."""
    x = np.asarray(tokens, dtype=float)
    n = x.shape[0]
    if beta == 0.0:
        m = x.mean(axis=0)
        return float(0.5 * m @ m)
    rows = max(1, block_bytes // (8 * n))
    total = 0.0
    for start in range(0, n, rows):
        total += np.expm1(beta * (x[start:start + rows] @ x.T)).sum()
    return float(total / (2.0 * beta * n * n))
