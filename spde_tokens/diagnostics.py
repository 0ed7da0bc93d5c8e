"""Diagnostics, spectral where that is exact (densities) and blocked sums for tokens.

The definitions are those of docs/mathematics.md, 'Diagnostics'.

All density diagnostics take the grid and the coefficients of ρ (the convention of :mod:`spde_tokens.grids`). On a
ZonalGrid (S^{d−1}, any d) integrals are against its normalized measure σ (area 1): the mass, mean vector (d components,
zero off the axis e_d), dispersion, energy and MMD of a probability density are those of the same measure on any grid.
"""

from __future__ import annotations

import functools

import numpy as np

from spde_tokens.grids.base import Grid
from spde_tokens.grids.funk_hecke import normalized_zonal_weights, zonal_weights
from spde_tokens.grids.zonal import ZonalGrid

#: default scale s of the MMD kernel exp(s x·y)
MMD_SCALE = 2.0


def mass(grid: Grid, coeffs: np.ndarray) -> float:
    """∫ ρ dA = sqrt(area) ρ_00."""
    return float(np.sqrt(grid.area) * coeffs[0].real)


def mean_vector(grid: Grid, coeffs: np.ndarray) -> np.ndarray:
    """m = ∫ x ρ(x) dA, from the degree-1 coefficients (exact); on a ZonalGrid (0, …, 0, ρ_1/√d)."""
    coordinates = grid.coordinate_coefficients()  # computed once per grid
    return np.array([grid.inner(coordinates[i], coeffs) for i in range(grid.dim)])


def dispersion(grid: Grid, coeffs: np.ndarray) -> float:
    """½ ∫∫ |x − y|² dρ dρ = (∫ρ)² − |m|² (1 − |m|² for a probability density)."""
    m = mean_vector(grid, coeffs)
    return float(mass(grid, coeffs) ** 2 - m @ m)


@functools.lru_cache(maxsize=32)
def _cached_energy_weights(dim: int, beta: float, lmax: int, normalized: bool) -> np.ndarray:
    """:func:`energy_weights`, computed once per (dim, beta, lmax, normalized), read-only: every record of a run
    needs them (docs/numerics.md, 'Start-up and fixed costs')."""
    weights = energy_weights(dim, beta, lmax, normalized)
    weights.flags.writeable = False
    return weights


def energy_weights(dim: int, beta: float, lmax: int, normalized: bool = False) -> np.ndarray:
    """Per-degree weights e_l with E_beta = Σ_l e_l P_l: e_l = (λ_l(beta) − area δ_l0) / (2 beta).

    λ_l are the Funk–Hecke weights of exp(beta x·y); at beta = 0 the limit is e_1 = area/(2 dim) (so E = ½|m|²).
    Surface measure of S^1, S^2 (dim 2, 3) by default; ``normalized``: the normalized measure σ of S^{dim−1}, any
    dim ≥ 2 (a ZonalGrid), with λ_l = μ_l(beta) = Γ(d/2)(2/beta)^ν I_{l+ν}(beta) and area 1, so that
    E_beta = (1/(2 beta)) ∫∫ expm1(beta x·y) ρ(x) ρ(y) dσ dσ. There e_0 = (μ_0 − 1)/(2 beta) is summed as the series
    Σ_{k≥1} (beta²/4)^k / (k! (d/2)_k) / (2 beta) while beta² ≤ 2d (μ_0 − 1 ≲ e − 1: no cancellation, terms
    falling by half or more) and as expm1(log μ_0)/(2 beta) above, where μ_0 ≥ 1.6.
    """
    if normalized:
        return _normalized_energy_weights(dim, beta, lmax)
    w = zonal_weights(dim, beta, lmax)
    e = 0.5 * w.over_kappa * np.exp(w.log_scale)
    area = 4.0 * np.pi if dim == 3 else 2.0 * np.pi
    if beta < 1e-2:  # (i_0(β) − 1)/β and (I_0(β) − 1)/β by their series: no cancellation
        e[0] = 0.5 * area * (beta / 6 + beta**3 / 120 if dim == 3 else beta / 4 + beta**3 / 64)
    elif dim == 3:
        e[0] = 0.5 * area * (np.sinh(beta) - beta) / beta**2
    else:
        from scipy import special  # deferred: scipy.special costs ~0.3 s of `import spde_tokens`

        e[0] = 0.5 * area * (special.iv(0, beta) - 1.0) / beta
    return e


def _normalized_energy_weights(dim: int, beta: float, lmax: int) -> np.ndarray:
    """:func:`energy_weights` on the normalized measure of S^{dim−1} (``normalized=True``)."""
    w = normalized_zonal_weights(dim, beta, lmax)
    e = 0.5 * w.over_kappa * np.exp(w.log_scale)
    if beta * beta <= 2.0 * dim:
        q, term, total, k = 0.25 * beta * beta, 1.0, 0.0, 0
        while term > 1e-17 * total or k == 0:
            term *= q / ((k + 1) * (0.5 * dim + k))
            total += term
            k += 1
        e[0] = 0.5 * total / beta if beta > 0 else 0.0
    else:
        e[0] = 0.5 * np.expm1(w.log_scale) / beta
    return e


def energy(grid: Grid, coeffs: np.ndarray, beta: float) -> float:
    """E_beta[ρ] = (1/(2 beta)) ∫∫ expm1(beta x·y) dρ(x) dρ(y) = Σ_l e_l P_l (Funk–Hecke; ½|m|² at beta = 0)."""
    weights = _cached_energy_weights(grid.dim, float(beta), grid.degree_max, isinstance(grid, ZonalGrid))
    return float(weights @ grid.power_spectrum(coeffs))


def spectral_tail(grid: Grid, coeffs: np.ndarray) -> float:
    """Σ_{l ≥ ⌈0.9 lmax⌉} P_l / Σ_{l ≥ 1} P_l: the share of power near the truncation.

    0 when Σ_{l ≥ 1} P_l is at the rounding level of the transforms, n_coeff (n eps)² Σ_l P_l with n = Σ grid.shape
    + lmax + 1 the length of the transforms' sums (each coefficient of an analysis carries up to n eps of the
    field's size): the non-constant power of a uniform density is round-off, and a ratio of round-off to round-off
    (0.6 was seen) says nothing about resolution.
    """
    p = grid.power_spectrum(coeffs)
    total = p[1:].sum()
    n = sum(grid.shape) + grid.degree_max + 1
    if total <= grid.n_coeff * (np.finfo(float).eps * n) ** 2 * p.sum():
        return 0.0
    return float(p[int(np.ceil(0.9 * grid.degree_max)):].sum() / total)


def mmd(grid: Grid, coeffs_a: np.ndarray, coeffs_b: np.ndarray, scale: float = MMD_SCALE) -> float:
    """Maximum mean discrepancy for k(x, y) = exp(scale x·y): MMD² = Σ_l λ_l P_l(μ − ν), λ_l Funk–Hecke weights.

    Coefficients may come from densities (``grid.analysis``) or tokens (``grid.empirical_coefficients``); the sum
    is truncated at the grid's degree, which omits at most λ_{L+1}/λ_0 of the discrepancy's weight (< 1e-16 for
    scale 2 and L ≥ 14 on S^2).
    """
    w = grid.zonal_weights(scale)
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


#: above this many tokens on S^1 or S^2 the energy is computed by Funk–Hecke instead of all pairs
SPECTRAL_ENERGY_TOKENS = 4096


def energy_tokens(tokens: np.ndarray, beta: float, block_bytes: int = 64 * 2**20) -> float:
    """E_beta = (1/(2 beta N²)) Σ_ij expm1(beta x_i·x_j) (½|m|² at beta = 0).

    Summed over all pairs in row blocks, or — for more than ``SPECTRAL_ENERGY_TOKENS`` tokens on S^1 or S^2 — as
    Σ_l e_l P_l(μ) from the empirical coefficients up to the degree where the kernel's weights fall below 1e-16
    of λ_0 (O(N L²), the same value to ~1e-15 relative).
    """
    x = np.asarray(tokens, dtype=float)
    n = x.shape[0]
    if beta == 0.0:
        m = x.mean(axis=0)
        return float(0.5 * m @ m)
    if x.shape[1] in (2, 3) and n > SPECTRAL_ENERGY_TOKENS:
        from spde_tokens.grids import grid_from_attrs, resolving_degree

        lmax = max(4, resolving_degree(x.shape[1], beta))
        grid = grid_from_attrs({"grid": "sphere", "grid_lmax": lmax, "grid_dealias": 0} if x.shape[1] == 3 else
                               {"grid": "circle", "grid_n": lmax, "grid_dealias": 0})
        return energy(grid, grid.empirical_coefficients(x), beta)
    rows = max(1, block_bytes // (8 * n))
    total = 0.0
    for start in range(0, n, rows):
        total += np.expm1(beta * (x[start:start + rows] @ x.T)).sum()
    return float(total / (2.0 * beta * n * n))


# ---- Wasserstein-2 (POT) --------------------------------------------------------------------------------------
#: coarse grids of the density discretization, keyed by (dim, max_points)
_W2_GRIDS: dict = {}


def _w2_points(name: str, points, dim: int | None = None) -> np.ndarray:
    """Tokens as an (N, d) array of finite unit vectors (|x| = 1 within 1e-8), refused otherwise."""
    x = np.asarray(points, dtype=float)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 2 or (dim is not None and x.shape[1] != dim):
        want = "d ≥ 2" if dim is None else str(dim)
        raise ValueError(f"{name} must have shape (N, {want}) with N ≥ 1, got {x.shape}")
    if not np.all(np.isfinite(x)) or np.max(np.abs(np.linalg.norm(x, axis=1) - 1.0)) > 1e-8:
        raise ValueError(f"{name} must be finite unit vectors (|x| = 1 within 1e-8)")
    return x


def _w2_max_points(max_points) -> int:
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) or max_points < 1:
        raise ValueError(f"max_points must be a positive integer, got {max_points!r}")
    return int(max_points)


def _w2_subsample(x: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """x itself when it has at most max_points rows, else max_points of them drawn without replacement."""
    return x if x.shape[0] <= max_points else x[np.sort(rng.choice(x.shape[0], max_points, replace=False))]


def _w2_exact(x: np.ndarray, a: np.ndarray, y: np.ndarray, b: np.ndarray) -> float:
    """sqrt(min_π Σ π_ij d(x_i, y_j)²), d = arccos(x·y), by the network simplex of ``ot.emd2`` (exact)."""
    try:
        import ot
    except ImportError:  # pragma: no cover - POT is a declared dependency of the Wasserstein diagnostics
        raise ImportError("the Wasserstein diagnostics need POT (pip install POT)") from None
    cost = np.arccos(np.clip(x @ y.T, -1.0, 1.0)) ** 2
    value, log = ot.emd2(a / a.sum(), b / b.sum(), cost, numItermax=max(100_000, 50 * cost.size), log=True)
    if log.get("warning") is not None:
        raise RuntimeError(f"the exact transport problem did not converge: {log['warning']}")
    return float(np.sqrt(max(float(value), 0.0)))


def _w2_coarse_grid(dim: int, max_points: int) -> Grid:
    """The finest Gauss grid (S^2: SphereGrid(L, dealias=False); S^1: CircleGrid(n, dealias=False)) with at most
    ``max_points`` nodes; cached."""
    from spde_tokens.grids import grid_from_attrs

    if (dim, max_points) in _W2_GRIDS:
        return _W2_GRIDS[(dim, max_points)]
    if dim == 3:
        def build(size):
            return grid_from_attrs({"grid": "sphere", "grid_lmax": size, "grid_dealias": 0})
        size = int(np.sqrt(max_points / 2.0)) + 2  # nlat ≈ L + 1 latitudes and nlon ≈ 2L + 1 longitudes
    elif dim == 2:
        def build(size):
            return grid_from_attrs({"grid": "circle", "grid_n": size, "grid_dealias": 0})
        size = (max_points - 2) // 2 + 1  # 2n + 2 nodes, rounded up to an FFT size
    else:
        raise ValueError(f"a density lives on S^1 or S^2 (dim 2 or 3), got dim = {dim}")
    while size >= 4:
        grid = build(size)
        if int(np.prod(grid.shape)) <= max_points:
            _W2_GRIDS[(dim, max_points)] = grid
            return grid
        size -= 1
    raise ValueError(f"max_points = {max_points} is below the nodes of the coarsest grid "
                     f"({int(np.prod(build(4).shape))})")


def wasserstein2_tokens(x, y, max_points: int = 2000, seed: int | None = 0) -> float:
    """Wasserstein-2 distance between the empirical measures of two token sets on S^{d−1}.

        W2(μ, ν)² = min_π Σ_ij π_ij arccos(clip(x_i·y_j, −1, 1))²,   π ≥ 0 with marginals 1/N_x and 1/N_y,

    the squared geodesic distance as ground cost, solved exactly (``ot.emd2``, network simplex). A set with more
    than ``max_points`` tokens is replaced by ``max_points`` of them drawn without replacement with
    ``numpy.random.default_rng(seed)`` (x first, then y); the subsample's own empirical W2 to its set is of order
    sqrt(log n / n) on S^2, 1/sqrt(n) on S^1. Cost O(n²) memory and about O(n³) time (1 s at n = 2000).

    Returns W2 in radians (two point masses at angle θ are θ apart).
    """
    max_points = _w2_max_points(max_points)
    x = _w2_points("x", x)
    y = _w2_points("y", y, x.shape[1])
    rng = np.random.default_rng(seed)
    x, y = _w2_subsample(x, max_points, rng), _w2_subsample(y, max_points, rng)
    return _w2_exact(x, np.full(x.shape[0], 1.0), y, np.full(y.shape[0], 1.0))


def wasserstein2_nodes(tokens, nodes: np.ndarray, weights: np.ndarray, max_points: int = 2000,
                       seed: int | None = 0) -> float:
    """Wasserstein-2 distance between the empirical measure of tokens and a weighted measure Σ_k w_k δ_{y_k} (the
    nodes of the Lagrangian engine), on S^1 or S^2.

    Negative weights (rounding at the hand-over) are dropped. With more than ``max_points`` nodes, each node's mass
    moves to the nearest node of the coarse Gauss grid of :func:`wasserstein2` (the same discretization error, at most
    the cell radius h/√2); tokens beyond ``max_points`` are subsampled as there. Returns W2 in radians.
    """
    max_points = _w2_max_points(max_points)
    y = np.asarray(nodes, dtype=float)
    x = _w2_points("tokens", tokens, y.shape[1])
    p = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    if y.shape[0] > max_points:
        coarse = _w2_coarse_grid(y.shape[1], max_points).points().reshape(-1, y.shape[1])
        nearest = np.concatenate([np.argmax(y[s:s + 4096] @ coarse.T, axis=1) for s in range(0, y.shape[0], 4096)])
        y, p = coarse, np.bincount(nearest, weights=p, minlength=coarse.shape[0])
    keep = p > 0
    x = _w2_subsample(x, max_points, np.random.default_rng(seed))
    return _w2_exact(x, np.full(x.shape[0], 1.0), y[keep], p[keep])


def wasserstein2(tokens, grid: Grid, coeffs: np.ndarray, max_points: int = 2000, seed: int | None = 0) -> float:
    """Wasserstein-2 distance between the empirical measure of tokens and a density on S^1 or S^2.

    The density ρ (coefficients on ``grid``) is discretized on a coarse Gauss grid, the finest with at most
    ``max_points`` nodes x_k (S^2: ``SphereGrid(L, dealias=False)``, L ≈ 28 for 2000 nodes; S^1:
    ``CircleGrid(n, dealias=False)``) with quadrature weights w_k:

        ρ_h = Σ_k p_k δ_{x_k},   p_k = max(ρ(x_k), 0) w_k / Σ_j max(ρ(x_j), 0) w_j

    (ρ(x_k) by ``grid.evaluate``: exact for the band-limited density), and

        W2(μ_N, ρ_h)² = min_π Σ_ik π_ik arccos(clip(x_i·x_k, −1, 1))²,   marginals 1/N and p_k,

    solved exactly (``ot.emd2``). Tokens beyond ``max_points`` are subsampled without replacement
    (``numpy.random.default_rng(seed)``).

    Discretization error: |W2(μ_N, ρ_h) − W2(μ_N, ρ)| ≤ W2(ρ, ρ_h), the cost of moving each quadrature cell's mass
    to its node. For a smooth density it is about h/√6 for cells of side h (the mean squared distance to the centre
    of a square), bounded by the cell radius h/√2; h is the coarse node spacing, π/nlat ≈ 2π/nlon ≈ 0.1 rad on S^2
    at max_points = 2000 (so W2(ρ, ρ_h) ≈ 0.04), 2π/n_nodes on S^1 (≈ 0.0013 rad). Distances below that floor are
    not resolved on S^2.

    Returns W2 in radians.
    """
    max_points = _w2_max_points(max_points)
    x = _w2_points("tokens", tokens, grid.dim)
    coarse = _w2_coarse_grid(grid.dim, max_points)
    nodes = coarse.points().reshape(-1, grid.dim)
    p = np.clip(grid.evaluate(coeffs, nodes), 0.0, None) * coarse.weights().ravel()
    if not np.isfinite(p.sum()) or p.sum() <= 0:
        raise ValueError("coeffs: the density has no positive mass on the coarse grid")
    keep = p > 0
    x = _w2_subsample(x, max_points, np.random.default_rng(seed))
    return _w2_exact(x, np.full(x.shape[0], 1.0), nodes[keep], p[keep])


def clusters(points: np.ndarray, weights: np.ndarray, radius: float = 0.15, min_mass: float = 0.01,
             block_bytes: int = 64 * 2**20) -> list[tuple[np.ndarray, float]]:
    """Clusters of a weighted measure Σ_i w_i δ_{x_i} on S^{d−1}: (centre, mass) pairs, heaviest first.

    Greedy, by local mass: M_i = Σ_{j : ∠(x_i, x_j) ≤ radius} w_j; the node of largest M_i is a centre, nodes within
    2 radius of a centre are suppressed as candidates, and so on; every node then joins the nearest centre within
    2 radius. A centre is the mass-weighted mean direction of its members; clusters lighter than ``min_mass`` are
    dropped. O(N²) in row blocks.
    """
    x = np.asarray(points, dtype=float)
    w = np.asarray(weights, dtype=float)
    n = x.shape[0]
    cos_r, cos_2r = np.cos(radius), np.cos(min(2 * radius, np.pi))
    local = np.empty(n)
    rows = max(1, block_bytes // (8 * n))
    for start in range(0, n, rows):
        local[start:start + rows] = (x[start:start + rows] @ x.T >= cos_r) @ w
    centres: list[int] = []
    for i in np.argsort(-local):
        if local[i] < min_mass:
            break
        if all(x[i] @ x[c] < cos_2r for c in centres):
            centres.append(int(i))
    if not centres:
        return []
    cosines = x @ x[centres].T  # (N, k)
    nearest = np.argmax(cosines, axis=1)
    member = cosines[np.arange(n), nearest] >= cos_2r
    out = []
    for k in range(len(centres)):
        sel = member & (nearest == k)
        mass = float(w[sel].sum())
        if mass >= min_mass:
            centre = w[sel] @ x[sel]
            out.append((centre / np.linalg.norm(centre), mass))
    return sorted(out, key=lambda c: -c[1])
