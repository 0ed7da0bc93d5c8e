"""Identities every spectral grid satisfies, checked on CircleGrid (S^1) and SphereGrid (S^2) alike (and on
ZonalGrid where a test names it).

A grid lives on S^{d-1} ⊂ R^d (d = ``grid.dim``) with k = ``grid.n_tangent`` tangent components and largest degree
L = ``grid.degree_max`` (n on S^1, lmax on S^2); coefficients follow the convention of :mod:`spde_tokens.grids`.
Closed forms in θ/φ, comparisons with scipy and grid-specific input checks are in test_circle.py and test_sphere.py.
"""

import numpy as np
import pytest

from spde_tokens.grids import CircleGrid, SphereGrid, ZonalGrid

EPS = np.finfo(float).eps
NS, LMAXS = (8, 32, 128), (8, 16, 31)
CIRCLES = [CircleGrid(n) for n in NS]
SPHERES = [SphereGrid(lmax) for lmax in LMAXS]
GRIDS = CIRCLES + SPHERES
#: the same degrees on the smaller grids without dealiasing (N ≥ 2n + 2 on S^1, nl_order 1 on S^2)
UNDEALIASED = [CircleGrid(n, dealias=False) for n in NS] + [SphereGrid(lmax, dealias=False) for lmax in LMAXS]

on_every_grid = pytest.mark.parametrize("grid", GRIDS, ids=repr)


def _nodes(grid) -> np.ndarray:
    """The nodes as unit vectors, shape (number of nodes, d)."""
    return grid.points().reshape(-1, grid.dim)


def _pole_with(dim: int, index: int, value: float) -> np.ndarray:
    """The point array [e_dim] (shape (1, dim)) with component ``index`` set to ``value``."""
    pts = np.eye(dim)[-1:]
    pts[0, index] = value
    return pts


#: malformed point arrays for a grid on S^{d-1}, built from d; each must be refused
BAD_POINTS = {
    "one point without the N axis": lambda d: np.eye(d)[-1],
    "points of S^d": lambda d: np.eye(d + 1)[-1:],
    "points of S^(d-2)": lambda d: np.eye(d - 1)[-1:],
    "nan": lambda d: _pole_with(d, 0, np.nan),
    "inf": lambda d: _pole_with(d, 0, np.inf),
    "-inf": lambda d: _pole_with(d, 1, -np.inf),
    "not unit norm": lambda d: np.ones((1, d)),
    "norm 1 + 1e-6": lambda d: (1 + 1e-6) * np.eye(d)[-1:],
    "zero": lambda d: np.zeros((1, d)),
}


# ---- transforms ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grid", GRIDS + UNDEALIASED, ids=repr)
def test_round_trip(grid, random_coeffs, rounding, synthesis_scale):
    c = random_coeffs(grid, np.random.default_rng(grid.degree_max))
    f = grid.synthesis(c)
    assert f.shape == grid.shape and f.dtype == float
    # the transforms' rounding bound (conftest._rounding), for coefficients and for grid values
    tol = rounding(grid, synthesis_scale(grid, c))
    np.testing.assert_allclose(grid.analysis(f), c, rtol=0, atol=np.sqrt(grid.area) * tol)
    np.testing.assert_allclose(grid.synthesis(grid.analysis(f)), f, rtol=0, atol=tol)


@on_every_grid
def test_analysis_of_the_constant(grid, rounding):
    """1 = sqrt(area) Y_00: the uniform density 1/area has f_00 = 1/sqrt(area) and no other coefficient."""
    expected = np.where(grid.degrees == 0, np.sqrt(grid.area), 0.0)
    # the analysis' rounding bound on a field of size 1 (conftest._rounding)
    atol = np.sqrt(grid.area) * rounding(grid)
    np.testing.assert_allclose(grid.analysis(np.ones(grid.shape)), expected, rtol=0, atol=atol)


@on_every_grid
def test_inner_product_and_power_spectrum_are_parseval(grid, random_coeffs):
    rng = np.random.default_rng(1 + grid.degree_max)
    a, b = random_coeffs(grid, rng), random_coeffs(grid, rng)
    # the quadrature (trapezoid on S^1, Gauss on S^2) is exact for the product, of degree ≤ 2L; round-off of sums
    # over the nodes of O(1) terms: ~1e-14
    assert grid.inner(a, b) == pytest.approx(grid.integrate(grid.synthesis(a) * grid.synthesis(b)), abs=1e-12)
    spectrum = grid.power_spectrum(a)
    assert spectrum.shape == (grid.degree_max + 1,)
    assert spectrum.sum() == pytest.approx(grid.integrate(grid.synthesis(a) ** 2), abs=1e-12)
    terms = grid.order_weight * np.abs(a) ** 2
    expected = np.array([np.sum(terms[grid.degrees == ell]) for ell in range(grid.degree_max + 1)])
    # P_l sums the same positive terms in another order: relative round-off < (number of terms) eps, i.e. exact
    # on S^1 (one coefficient per degree) and < 32 eps on S^2 up to lmax 31
    assert np.all(np.abs(spectrum - expected) <= np.bincount(grid.degrees) * EPS * expected)


# ---- calculus -----------------------------------------------------------------------------------------------------
@on_every_grid
def test_laplacian_eigenvalues(grid, random_coeffs):
    """Δ_S Y_l = -l(l + d - 2) Y_l on S^{d-1}: -k² on S^1, -l(l+1) on S^2."""
    c = random_coeffs(grid, np.random.default_rng(2 + grid.degree_max))
    ell = grid.degrees
    # one multiplication by an integer-valued float per coefficient: exact up to one rounding
    np.testing.assert_allclose(grid.laplacian(c), -ell * (ell + grid.dim - 2) * c, rtol=EPS, atol=0)


@on_every_grid
def test_gradient_of_a_coordinate_is_the_projected_basis_vector(grid, rounding):
    """∇_S x_i = P_x e_i = e_i - x_i x in Cartesian form, for every coordinate x_i."""
    x = grid.points()
    # one derivative of a field of size 1: the transforms' rounding bound times L (conftest._rounding)
    tol = rounding(grid, 1.0, derivative=1)
    for i, coeffs in enumerate(grid.coordinate_coefficients()):
        grad = grid.gradient(coeffs)
        assert grad.shape == (grid.n_tangent, *grid.shape)
        projected = np.eye(grid.dim)[i] - x[..., i, None] * x
        np.testing.assert_allclose(grid.from_tangent(grad), projected, rtol=0, atol=tol)
        # and back: the tangent components of the Cartesian tangent vector are the gradient's
        np.testing.assert_allclose(grid.to_tangent(projected), grad, rtol=0, atol=tol)


@on_every_grid
def test_divergence_of_projected_constant_vectors(grid, rounding):
    """div_S(P_x a) = -(d - 1) a·x on S^{d-1}, for a = e_1, …, e_d."""
    x = grid.points()
    # one derivative (the divergence) of a field of size 1: rounding bound times L (conftest._rounding)
    tol = rounding(grid, 1.0, derivative=1)
    for i, a in enumerate(np.eye(grid.dim)):
        div = grid.synthesis(grid.divergence(grid.to_tangent(np.broadcast_to(a, (*grid.shape, grid.dim)))))
        np.testing.assert_allclose(div, -(grid.dim - 1) * x[..., i], rtol=0, atol=tol)


@on_every_grid
def test_divergence_of_gradient_is_laplacian(grid, random_coeffs, rounding, synthesis_scale):
    c = random_coeffs(grid, np.random.default_rng(3 + grid.degree_max))
    lap = grid.laplacian(c)
    # two derivatives of the field f: the rounding bound times L(L + d - 2), on coefficients (conftest._rounding)
    atol = np.sqrt(grid.area) * rounding(grid, synthesis_scale(grid, c), derivative=2)
    np.testing.assert_allclose(grid.divergence(grid.gradient(c)), lap, rtol=0, atol=atol)


@on_every_grid
def test_integral_of_divergence_vanishes(grid):
    rng = np.random.default_rng(4 + grid.degree_max)
    for _ in range(3):
        tangent = rng.standard_normal((grid.n_tangent, *grid.shape))  # any field, not band-limited
        div = grid.divergence(tangent)
        # the mass coefficient is multiplied by ik = 0 on S^1, by -l(l+1) = 0 on S^2: exactly
        assert np.all(div[grid.degrees == 0] == 0.0)
        # quadrature of a field without mean: round-off of sums over ≤ 4608 nodes of terms of size ≤ ~100
        # (observed ≈ 1e-14)
        assert abs(grid.integrate(grid.synthesis(div))) <= 1e-12


# ---- quadrature ---------------------------------------------------------------------------------------------------
@on_every_grid
def test_quadrature_of_low_moments(grid):
    """∫ dA = area and ∫ x_i x_j dA = δ_ij area / d: both rules are exact for these degree ≤ 2 integrands."""
    w = grid.weights()
    assert w.shape == grid.shape and np.all(w > 0)
    x = grid.points()
    # sums of positive terms over ≤ 4608 nodes: relative round-off ≤ ~1e-13
    assert grid.integrate(np.ones(grid.shape)) == pytest.approx(grid.area, rel=1e-13, abs=0)
    for i in range(grid.dim):
        assert grid.integrate(x[..., i] ** 2) == pytest.approx(grid.area / grid.dim, rel=1e-13, abs=0)
        for j in range(i):
            # terms of both signs that cancel: round-off of O(1) sums, observed ≤ 5e-16
            assert abs(grid.integrate(x[..., i] * x[..., j])) <= 1e-14


# ---- points and frame ---------------------------------------------------------------------------------------------
@on_every_grid
def test_points_and_tangent_basis(grid):
    x = grid.points()
    t = grid.tangent_basis()
    assert x.shape == (*grid.shape, grid.dim) and t.shape == (grid.n_tangent, *grid.shape, grid.dim)
    # products of sines and cosines: a few roundings, 1e-15
    np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 1.0, rtol=0, atol=1e-15)
    gram = np.einsum("a...d,b...d->...ab", t, t)
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(grid.n_tangent), gram.shape), rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.einsum("k...d,...d->k...", t, x), 0.0, rtol=0, atol=1e-15)


# ---- point evaluation ---------------------------------------------------------------------------------------------
@on_every_grid
def test_evaluate_at_nodes_is_synthesis(grid, random_coeffs, rounding, synthesis_scale):
    c = random_coeffs(grid, np.random.default_rng(6 + grid.degree_max))
    # transform vs direct sum: twice the rounding bound (conftest._rounding); shtns' polar optimization, which
    # SphereGrid turns off, would leave 1.2e-12 at lmax 31
    atol = 2 * rounding(grid, synthesis_scale(grid, c))
    np.testing.assert_allclose(grid.evaluate(c, _nodes(grid)), grid.synthesis(c).ravel(), rtol=0, atol=atol)


@on_every_grid
def test_empirical_coefficients_of_the_nodes(grid, random_coeffs):
    """Σ_i ω_i f(x_i) conj(Y_lm(x_i)) with quadrature weights ω_i is the (exact) analysis of band-limited f."""
    c = random_coeffs(grid, np.random.default_rng(7 + grid.degree_max))
    f = grid.synthesis(c)
    emp = grid.empirical_coefficients(_nodes(grid), weights=grid.weights().ravel() * f.ravel())
    # sums over ≤ 4608 nodes of O(1) terms: round-off ~1e-15
    np.testing.assert_allclose(emp, grid.analysis(f), rtol=0, atol=1e-12)
    np.testing.assert_allclose(emp, c, rtol=0, atol=1e-12)


@pytest.mark.parametrize("grid", [CIRCLES[-1], SPHERES[-1]], ids=repr)
def test_evaluate_many_points_vectorized(grid, random_coeffs):
    rng = np.random.default_rng(8)
    v = rng.standard_normal((20000, grid.dim))
    pts = v / np.linalg.norm(v, axis=1, keepdims=True)
    values = grid.evaluate(random_coeffs(grid, rng), pts)
    assert values.shape == (20000,) and np.all(np.isfinite(values))
    assert grid.empirical_coefficients(pts).shape == (grid.n_coeff,)


@pytest.mark.parametrize("make_points", BAD_POINTS.values(), ids=list(BAD_POINTS))
@pytest.mark.parametrize("grid", [CIRCLES[0], SPHERES[0]], ids=repr)
def test_bad_points(grid, make_points):
    points = make_points(grid.dim)
    c = np.zeros(grid.n_coeff, dtype=complex)
    with pytest.raises(ValueError, match="points"):
        grid.evaluate(c, points)
    with pytest.raises(ValueError, match="points"):
        grid.empirical_coefficients(points)


@pytest.mark.parametrize("grid", GRIDS + [ZonalGrid(dim, 16) for dim in (4, 8, 64)], ids=repr)
def test_basis_peak_is_the_largest_modulus_of_each_basis_function(grid):
    """basis_peak_c = max_x |Y_c(x)| / |Y_0|: no point exceeds it (to rounding), and for every degree the axis e_d
    (where every zonal Y_l peaks, and Y_l0 on S^2; all of S^1 is a peak) reaches the degree's largest value."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2000, grid.dim))
    points = np.concatenate([x / np.linalg.norm(x, axis=1, keepdims=True), np.eye(grid.dim)[-1:]])
    modulus = np.abs(grid._basis_block(points))  # (N, n_coeff)
    ratio = modulus / modulus[:, :1]  # Y_0 is constant
    peak = grid.basis_peak
    assert peak.shape == (grid.n_coeff,)
    # evaluations of orthonormal recurrences of degree ≤ L round to ~L eps relative
    tol = 100 * EPS * (grid.degree_max + 1)
    assert np.all(ratio <= peak * (1 + tol))
    for degree in range(grid.degree_max + 1):
        in_degree = grid.degrees == degree
        np.testing.assert_allclose(ratio[-1, in_degree].max(), peak[in_degree].max(), rtol=tol)
