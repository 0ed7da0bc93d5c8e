"""Initial densities (w.r.t. surface measure, ∫ ρ dA = 1) as ``xarray.DataArray`` fields that carry their grid.

Every function returns a DataArray named ``density`` on the grid's coordinates, whose attributes identify the grid
(``grid_from_attrs``), normalized to mass 1 by the grid's quadrature (so the spectral mass sqrt(area) ρ_00 is 1 to
rounding). On a ZonalGrid (S^{d−1}, any d) densities are w.r.t. its normalized measure σ (∫ ρ dσ = 1, the uniform
density is 1) and symmetric about the axis e_d: means and centres must lie on that axis
(docs/mathematics.md, 'The zonal grid (any dimension)').
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import xarray as xr

from spde_tokens import checks
from spde_tokens.grids import Grid, ZonalGrid, grid_from_attrs

#: a density is refused when min ρ < −NEGATIVE_TOLERANCE · max ρ
NEGATIVE_TOLERANCE = 1e-10
#: mixture weights whose sum, and densities whose mass, differ from 1 by more than this are flagged with a warning
#: before they are normalized: typed decimals (0.4, 0.35, 0.25) sum to 1 within 1e-16, densities built here have
#: mass 1 within 1e-13 and the solver keeps it within ~1e-12 over a run, so 1e-9 catches only real departures
UNIT_TOLERANCE = 1e-9
#: cells of the piecewise-constant envelope of the polar angle's law when sampling a zonal density (at least 8 per node)
ZONAL_CELLS = 4096


def _as_grid(grid: Grid) -> Grid:
    if not isinstance(grid, Grid):
        raise ValueError(f"grid must be a CircleGrid, SphereGrid or ZonalGrid, got {type(grid).__name__}")
    return grid


def _on_axis(grid: Grid, name: str, vectors: np.ndarray, what: str) -> None:
    """On a ZonalGrid, refuse vectors (rows) off the axis e_d: the grid holds densities symmetric about it."""
    if isinstance(grid, ZonalGrid):
        v = np.atleast_2d(vectors)
        if np.any(np.abs(v[:, :-1]) > 1e-12 * np.linalg.norm(v, axis=1, keepdims=True)):
            raise ValueError(f"{name} must be {what} on a ZonalGrid (its densities are symmetric about the axis e_d, "
                             f"the last coordinate), got {vectors.tolist()!r}")


def _unit(name: str, vector, dim: int) -> np.ndarray:
    v = checks.real_array(name, vector, 1)
    if v.shape != (dim,) or np.linalg.norm(v) == 0:
        raise ValueError(f"{name} must be a finite non-zero vector of length {dim}, got {vector!r}")
    return v / np.linalg.norm(v)


def as_density(grid: Grid, values: np.ndarray, normalize: bool = True, **attrs) -> xr.DataArray:
    """Wrap grid values as a ``density`` DataArray (normalized to mass 1 unless ``normalize`` is False)."""
    values = np.asarray(values, dtype=float)
    if values.shape != grid.shape:
        raise ValueError(f"density values must have the grid's shape {grid.shape}, got {values.shape}")
    if normalize:
        total = grid.integrate(values)
        if not np.isfinite(total) or total <= 0:
            raise ValueError(f"the density must have a positive finite integral, got {total}")
        values = values / total
    check_density(values, "density")
    all_attrs = {"long_name": f"token density w.r.t. {grid.measure}", "units": "1", **grid.attrs(), **attrs}
    # the grid's coordinates with their indexes, built once per grid (Grid.coordinates); through a Dataset, which
    # copies them shallowly (a DataArray deep-copies its index coordinates, most of its cost): the same DataArray
    variable = xr.Variable(grid.dims, values, all_attrs)
    return xr.Dataset({"density": variable}, coords=grid.coordinates())["density"]


def check_density(values: np.ndarray, name: str = "rho0") -> None:
    """Refuse non-finite values and min ρ < −1e-10 · max ρ (docs/guide.md, 'Initial densities')."""
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} has non-finite values (NaN or inf)")
    if values.min() < -NEGATIVE_TOLERANCE * values.max():
        raise ValueError(f"{name} is negative: min ρ = {values.min():.3e} < −1e-10 · max ρ = {values.max():.3e}")


def grid_of(density) -> Grid:
    """The grid a density DataArray lives on; plain arrays, and values whose shape is not the grid's, are refused."""
    if not isinstance(density, xr.DataArray):
        raise ValueError(f"rho0 must be an xarray.DataArray from spde_tokens.initial (it carries its grid), "
                         f"got {type(density).__name__}")
    grid = grid_from_attrs(density.attrs)
    if density.shape != grid.shape:
        raise ValueError(f"rho0 has shape {density.shape}, but its grid {grid!r} (from its attributes) has shape "
                         f"{grid.shape}: a density must cover its whole grid")
    return grid


def uniform(grid: Grid) -> xr.DataArray:
    """ρ = 1/area (1/(2π) on S^1, 1/(4π) on S^2, 1 on a ZonalGrid)."""
    grid = _as_grid(grid)
    return as_density(grid, np.full(grid.shape, 1.0 / grid.area), initial="uniform")


def _vmf_values(grid: Grid, mean: np.ndarray, kappa: float) -> np.ndarray:
    """exp(κ(μ·x − 1)) times the normalization of the von Mises–Fisher density (stable for large κ)."""
    t = grid.points() @ mean
    if kappa == 0.0:
        return np.full(grid.shape, 1.0 / grid.area)
    if isinstance(grid, ZonalGrid):  # 1/∫ e^{κ s} dσ = 1/μ_0(κ), μ_0 the Funk–Hecke weight of degree 0
        return np.exp(kappa * t - grid.zonal_weights(kappa).log_scale)
    if grid.dim == 3:
        norm = kappa / (2.0 * np.pi * -np.expm1(-2.0 * kappa))
    else:
        from scipy.special import ive

        norm = 1.0 / (2.0 * np.pi * ive(0, kappa))
    return norm * np.exp(kappa * (t - 1.0))


def von_mises_fisher(grid: Grid, mean: Sequence[float], kappa: float) -> xr.DataArray:
    """ρ(x) = C_κ exp(κ μ·x): C_κ = κ/(4π sinh κ) on S^2, 1/(2π I_0(κ)) on S^1 (κ ≥ 0, μ normalized); on a ZonalGrid
    (μ = ±e_d) C_κ = 1/μ_0(κ) = 1/(Γ(d/2)(2/κ)^{d/2−1} I_{d/2−1}(κ)) on the normalized measure."""
    grid = _as_grid(grid)
    mu = _unit("mean", mean, grid.dim)
    _on_axis(grid, "mean", mu, "±e_d")
    kappa = checks.real("kappa", kappa)
    return as_density(grid, _vmf_values(grid, mu, kappa), initial="von_mises_fisher", kappa=kappa,
                      mean=mu)


def mixture(grid: Grid, weights: Sequence[float], means: Sequence[Sequence[float]],
            kappas: Sequence[float]) -> xr.DataArray:
    """Σ_i w_i vMF(μ_i, κ_i) with weights w_i ≥ 0 (the masses of the components, summing to 1: other sums are
    divided out with a warning)."""
    grid = _as_grid(grid)
    w = checks.real_array("weights", weights, 1)
    if np.any(w < 0) or w.sum() == 0:
        raise ValueError(f"weights must be a non-empty list of finite numbers ≥ 0 with positive sum, got {weights!r}")
    mu = checks.real_array("means", means, 2)
    k = checks.real_array("kappas", kappas, 1)
    if mu.shape[0] != w.size or k.size != w.size:
        raise ValueError(f"weights, means and kappas must have the same length, got {w.size}, {mu.shape[0]}, "
                         f"{k.size}")
    if mu.shape[1] != grid.dim or np.any(np.linalg.norm(mu, axis=1) == 0):
        raise ValueError(f"means must be non-zero vectors of length {grid.dim}, got {means!r}")
    if np.any(k < 0):
        raise ValueError(f"kappas must be ≥ 0, got {kappas!r}")
    _on_axis(grid, "means", mu, "multiples of ±e_d")
    if abs(w.sum() - 1.0) > UNIT_TOLERANCE:
        warnings.warn(f"mixture weights sum to {w.sum():.6g}, not 1: the components get the masses "
                      f"{np.round(w / w.sum(), 6).tolist()}", UserWarning, stacklevel=2)
    w = w / w.sum()
    values = sum(wi * _vmf_values(grid, m / np.linalg.norm(m), float(ki)) for wi, m, ki in zip(w, mu, k, strict=True))
    return as_density(grid, values, initial="mixture", weights=w, kappas=k, means=mu.ravel())


def _center(grid: Grid, center: Sequence[float]) -> np.ndarray:
    """A point of the open unit ball of R^d (on the axis e_d for a ZonalGrid)."""
    z = checks.real_array("center", center, 1)
    if z.shape != (grid.dim,) or np.linalg.norm(z) >= 1:
        raise ValueError(f"center must be a finite vector of length {grid.dim} with |center| < 1, got {center!r}")
    _on_axis(grid, "center", z, "r e_d (|r| < 1)")
    return z


def poisson_kernel(grid: Grid, center: Sequence[float]) -> xr.DataArray:
    """The harmonic measure (1 − |z|²)/(area |x − z|^d) of the point z, |z| < 1: (1 − |z|²)/(2π |e^{iθ} − z|²) on
    S^1, (1 − |z|²)/(4π |x − z|³) on S^2, (1 − |z|²)/|x − z|^d on a ZonalGrid (z = r e_d)."""
    grid = _as_grid(grid)
    z = _center(grid, center)
    dist = np.linalg.norm(grid.points() - z, axis=-1)
    values = (1.0 - z @ z) / (grid.area * dist ** (grid.dim))
    return as_density(grid, values, initial="poisson_kernel", center=z)


def mobius(grid: Grid, center: Sequence[float]) -> xr.DataArray:
    """ρ_w(x) = ((1 − |w|²)/|x − w|²)^{d−1} / area for |w| < 1 (w = r e_d on a ZonalGrid).

    The push-forward of the uniform measure by the Möbius map of the ball that sends 0 to w (its Jacobian on the
    sphere), so its mass is exactly 1; the family the beta = 0 attention flow keeps (docs/mathematics.md, 'The zonal
    grid (any dimension)'). On S^1 it is the Poisson kernel; for d ≥ 3 it is not the harmonic measure of
    :func:`poisson_kernel`. Its peak, ((1 + |w|)/(1 − |w|))^{d−1}/area at x = w/|w|, must stay below e^{700}.
    """
    grid = _as_grid(grid)
    w = _center(grid, center)
    r2 = float(w @ w)
    peak = (grid.dim - 1) * (np.log1p(np.sqrt(r2)) - np.log1p(-np.sqrt(r2)))
    if peak > 700.0:
        raise ValueError(f"center: |center| = {np.sqrt(r2):.6g} in dimension {grid.dim} gives a density e^{peak:.0f} "
                         "times the uniform one at its peak, beyond floating point; lower |center|")
    # |x − w|² component by component on the nodes stored component first: the sum of np.sum(..., axis=-1) in the
    # same order, without its slow reduction over a short last axis
    dist2 = np.zeros(grid.shape)
    for x_c, w_c in zip(grid._point_components(), w, strict=True):
        dist2 += (x_c - w_c) ** 2
    values = np.exp((grid.dim - 1) * (np.log1p(-r2) - np.log(dist2))) / grid.area
    return as_density(grid, values, initial="mobius", center=w)


def from_function(grid: Grid, f: Callable[[np.ndarray], np.ndarray]) -> xr.DataArray:
    """Evaluate f on ``grid.points()`` (the nodes as unit vectors of R^d, shape (*grid.shape, dim)) and normalize to
    mass 1. f must return one value per node, an array of shape ``grid.shape``."""
    grid = _as_grid(grid)
    if not callable(f):
        raise ValueError(f"f must be callable on an array of unit vectors, got {type(f).__name__}")
    points = grid.points().copy()
    values = np.asarray(f(points), dtype=float)
    if values.shape != grid.shape:
        raise ValueError(f"f must return one value per grid node, an array of shape {grid.shape} for the points of "
                         f"shape {points.shape}, got shape {values.shape}")
    return as_density(grid, values, initial="from_function")


def sample(rho0: xr.DataArray, n: int, seed: int | None = None, batch: int | None = None) -> np.ndarray:
    """Draw n tokens i.i.d. from the band-limited density ρ⁺ = max(ρ, 0) by rejection (a probability law: a rho0
    whose mass differs from 1 is divided by it, with a warning).

    Proposals are uniform on the sphere (normalized Gaussian vectors) and are accepted with probability ρ(x)/M,
    ρ(x) evaluated exactly by :meth:`Grid.evaluate` (not interpolated). M is 1.25 × the maximum over the nodes;
    should a proposal exceed M (the band-limited maximum between nodes), M is raised and the draw restarted, so the
    sample is exact. The expected number of proposals is n · area · M.

    On a ZonalGrid the polar angle θ = arccos(x·e_d) is drawn instead, from its law q(θ) ∝ ρ⁺(cos θ) sin^{d−2} θ on
    [0, π] (the law of s = x·e_d, ρ(s) c_d (1 − s²)^{(d−3)/2} ds, in θ), by rejection from a piecewise-constant
    envelope: 1.25 × the larger end value of q on each of ``max(ZONAL_CELLS, 8 × nodes)`` equal cells, raised and
    the draw restarted should a proposal exceed it (so again exact, whatever the concentration of ρ or the
    dimension; about 1.3 n proposals). The rest of the token is uniform: x = (sin θ ω, cos θ) with ω a normalized
    Gaussian vector of R^{d−1}, drawn after the n angles.

    Parameters
    ----------
    rho0 : density DataArray (it carries its grid).
    n : number of tokens ≥ 1.
    seed : seed of ``numpy.random.default_rng``.
    batch : proposals drawn and evaluated at once; default 1.2 × the expected number n · area · M plus 256, at
        most 65536 (each proposal costs one point evaluation, O(lmax²) on S², so a batch sized for a million tokens
        would make a draw of 64 cost seconds). The tokens depend on ``batch``: keep it fixed to reproduce a draw.

    Returns
    -------
    (n, dim) array of unit vectors.
    """
    grid = grid_of(rho0)
    n, seed = checks.integer("n", n, 1), checks.seed(seed)
    values = np.asarray(rho0.values, dtype=float)
    check_density(values, "rho0")
    mass = grid.integrate(values)
    if abs(mass - 1.0) > UNIT_TOLERANCE:
        warnings.warn(f"rho0 has mass ∫ρ dA = {mass:.6g}, not 1: the tokens are drawn from ρ / {mass:.6g}",
                      UserWarning, stacklevel=2)
    coeffs = grid.analysis(values)
    if isinstance(grid, ZonalGrid):
        return _sample_zonal(grid, coeffs, n, seed, batch)
    bound = 1.25 * values.max()
    if batch is None:
        batch = min(65536, int(1.2 * n * grid.area * bound) + 256)
    batch = checks.integer("batch", batch, 1)
    while True:
        rng = np.random.default_rng(seed)
        out, count = [], 0
        restart = False
        while count < n:
            x = rng.standard_normal((batch, grid.dim))
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            rho = grid.evaluate(coeffs, x)
            if rho.max() > bound:
                bound = 1.25 * rho.max()
                restart = True
                break
            keep = x[rng.random(batch) * bound < rho]
            out.append(keep)
            count += keep.shape[0]
        if not restart:
            return np.concatenate(out)[:n]


def _sample_zonal(grid: ZonalGrid, coeffs: np.ndarray, n: int, seed: int | None, batch: int | None) -> np.ndarray:
    """n tokens of the zonal density with coefficients ``coeffs`` on a ZonalGrid (see :func:`sample`)."""
    cells = max(ZONAL_CELLS, 8 * grid.nodes)
    edges = np.linspace(0.0, np.pi, cells + 1)
    width = np.pi / cells

    def law(theta: np.ndarray) -> np.ndarray:
        """q(θ) = ρ⁺(cos θ) sin^{d−2} θ, unnormalized."""
        return np.clip(grid.evaluate_zonal(coeffs, np.cos(theta)), 0.0, None) * np.sin(theta) ** (grid.dim - 2)

    q = law(edges)
    envelope = 1.25 * np.maximum(q[:-1], q[1:])
    if batch is None:  # proposals per accepted angle: the envelope's mass over the trapezoid mass of q
        ratio = envelope.sum() / max(0.5 * (q[:-1] + q[1:]).sum(), np.finfo(float).tiny)
        batch = min(65536, int(1.2 * n * ratio) + 256)
    batch = checks.integer("batch", batch, 1)
    while True:
        rng = np.random.default_rng(seed)
        cumulative = np.cumsum(envelope)
        angles, count, restart = [], 0, False
        while count < n:
            cell = np.minimum(np.searchsorted(cumulative, rng.random(batch) * cumulative[-1], side="right"), cells - 1)
            theta = edges[cell] + width * rng.random(batch)
            value = law(theta)
            over = value > envelope[cell]
            if over.any():
                np.maximum.at(envelope, cell[over], 1.25 * value[over])
                restart = True
                break
            keep = theta[rng.random(batch) * envelope[cell] < value]
            angles.append(keep)
            count += keep.size
        if not restart:
            break
    theta = np.concatenate(angles)[:n]
    omega = rng.standard_normal((n, grid.dim - 1))
    omega /= np.linalg.norm(omega, axis=1, keepdims=True)
    x = np.empty((n, grid.dim))
    x[:, :-1] = np.sin(theta)[:, None] * omega
    x[:, -1] = np.cos(theta)
    return x
