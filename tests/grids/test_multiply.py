"""Multiplication by the coordinates and the transport operators of linear fields in spectral space
(spde_tokens/grids/multiply.py; docs/mathematics.md, 'Spectral transport of linear noise fields'), against the
same products and divergences computed by transforms on band-limited data."""

import numpy as np
import pytest
from scipy.linalg import expm

from spde_tokens.grids import CircleGrid, SphereGrid, ZonalGrid
from spde_tokens.grids.multiply import CoordinateProducts, coordinate_matrices, linear_transport

#: S² at lmax 31 and 127, S¹ at n 31 and 127, each with the grid of one degree more (the exact product's home)
PAIRS = [(SphereGrid(31), SphereGrid(32)), (SphereGrid(127), SphereGrid(128)),
         (CircleGrid(31), CircleGrid(32)), (CircleGrid(127), CircleGrid(128))]
GRIDS = [small for small, _ in PAIRS]


def _padded(grid, big, coeffs):
    """The coefficients of ``grid`` in the order of ``big`` (one degree more), zero at the new degree."""
    out = np.zeros(big.n_coeff, dtype=complex)
    if grid.dim == 3:
        table = {(l_, m): k for k, (l_, m) in enumerate(zip(big.degrees, big.orders, strict=True))}
        rows = [table[(l_, m)] for l_, m in zip(grid.degrees, grid.orders, strict=True)]
    else:
        rows = list(range(grid.n_coeff))
    out[rows] = coeffs
    return out


def _extended_rows(products, big):
    """Rows of the products' extended space (degree L + 1) in the order of ``big``'s coefficients."""
    orders = big.orders if big.dim == 3 else big.degrees
    return products.space.index(big.degrees, orders)


@pytest.mark.parametrize(("grid", "big"), PAIRS, ids=lambda g: repr(g))
def test_coordinate_products_equal_the_grid_product(grid, big, random_coeffs, rounding, synthesis_scale):
    """x_i f for f of degree L has degree L + 1: the sparse product, kept to degree L + 1, equals the analysis of
    x_i f on the grid of degree L + 1 (exact there: its quadrature integrates degree 2L + 2)."""
    rng = np.random.default_rng(11)
    c = random_coeffs(grid, rng)
    products = CoordinateProducts(grid)
    f = big.synthesis(_padded(grid, big, c))
    rows = _extended_rows(products, big)
    # the reference is one synthesis and one analysis on the big grid: its coefficient rounding bound
    # (conftest._rounding, times sqrt(area)); the sparse product adds at most 4 terms of size ≤ |f_lm| (negligible)
    tol = 2 * np.sqrt(big.area) * rounding(big, synthesis_scale(grid, c))
    for i in range(grid.dim):
        reference = big.analysis(f * big.points()[..., i])
        got = products.multiply(i, c)[rows]
        assert np.max(np.abs(got - reference)) < tol
        # and the top degree L + 1 is really reached (the product is not truncated)
        assert np.max(np.abs(reference[big.degrees == big.degree_max])) > 1e3 * tol


def test_coordinate_matrices_refuse_other_dimensions():
    with pytest.raises(ValueError, match="dim must be 2"):
        coordinate_matrices(4, 3, 3)
    with pytest.raises(ValueError, match="grid must be a SphereGrid or a CircleGrid"):
        CoordinateProducts(ZonalGrid(4, 8))
    assert linear_transport(ZonalGrid(4, 8)) is None


def _fields(dim, rng):
    """(name, M, b) of the linear fields u = P_x(M x + b): bias, rotation, quadratic form, and a general sum."""
    a = rng.standard_normal((dim, dim))
    b = rng.standard_normal(dim)
    return [("bias", None, b), ("rotation", a - a.T, None), ("quadratic form", a + a.T, None),
            ("rotation + bias", a - a.T, b), ("general", a, b)]


@pytest.mark.parametrize("grid", GRIDS, ids=repr)
def test_spectral_transport_equals_the_grid_divergence(grid, random_coeffs, rounding, synthesis_scale):
    """P_L(−div_S(ρ u)) by sparse products equals the grid's −div_S(ρ u) (one synthesis, one vector analysis on the
    dealiased grid, which integrates the degree-(L + 2) flux exactly) to rounding, and conserves mass exactly."""
    rng = np.random.default_rng(5)
    c = random_coeffs(grid, rng)
    rho = grid.synthesis(c)
    x = grid.points()
    transport = linear_transport(grid)
    for name, m, b in _fields(grid.dim, rng):
        mm = np.zeros((grid.dim, grid.dim)) if m is None else m
        bb = np.zeros(grid.dim) if b is None else b
        u = grid.to_tangent(x @ mm.T + bb)
        reference = -grid.divergence(rho * u)
        op = transport.operator(m, b)
        got = op(c)
        # the grid computes one derivative of ρ u (|ρ u| ≤ scale · max|u|): the transforms' rounding bound of a first
        # derivative (conftest._rounding), times sqrt(area) for coefficients; the sparse side rounds far less
        scale = synthesis_scale(grid, c) * op.speed
        tol = 2 * np.sqrt(grid.area) * rounding(grid, scale, derivative=1)
        assert np.max(np.abs(got - reference)) < tol, name
        assert np.max(np.abs(reference)) > 1e6 * tol, name  # the comparison has power
        # mass: the degree-0 row is identically zero (−½Δ has no degree 0; ½Δ + (d−1)/2 vanishes on degree 1)
        assert got[0] == 0.0 and reference[0] == 0.0, name


@pytest.mark.parametrize("grid", [SphereGrid(31), CircleGrid(31)], ids=repr)
def test_speed_is_the_maximum_of_the_field(grid):
    """The operator's speed is attained at an explicit point for each model alone (x ⊥ b; x ⊥ the rotation axis;
    x = (e_max + e_min)/√2 for a symmetric M, where |P_x M x| = (λ_max − λ_min)/2) and bounds |u| on the nodes."""
    rng = np.random.default_rng(2)
    transport = linear_transport(grid)
    d = grid.dim
    nodes = grid.points().reshape(-1, d)
    for name, m, b in _fields(d, rng):
        mm = np.zeros((d, d)) if m is None else m
        bb = np.zeros(d) if b is None else b
        u = nodes @ mm.T + bb
        u -= np.sum(u * nodes, axis=1)[:, None] * nodes
        speed = transport.operator(m, b).speed
        assert np.max(np.linalg.norm(u, axis=1)) <= speed * (1 + 1e-14), name
        if name in ("bias", "rotation", "quadratic form"):
            if name == "bias":
                v = np.linalg.svd(bb[None, :])[2][-1]  # a unit vector ⊥ b
            elif name == "rotation":
                v = np.linalg.svd(mm)[2][0]  # the top right singular vector of the antisymmetric M: ⊥ its kernel
            else:
                vecs = np.linalg.eigh(mm)[1]
                v = (vecs[:, 0] + vecs[:, -1]) / np.sqrt(2.0)
            w = mm @ v + bb
            attained = np.linalg.norm(w - (w @ v) * v)
            assert speed == pytest.approx(attained, rel=1e-13), name


@pytest.mark.parametrize("lmax", [31, 127])
def test_rotation_generator_keeps_the_degree_and_is_the_exact_rotation(lmax):
    """The rotation's operator is the angular momentum: it keeps each degree (the cancelling l ± 2 couplings are
    pruned), and exp(A) rotates the coefficients of a band-limited field exactly: ρ(e^{−Ω} x)."""
    grid = SphereGrid(lmax)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 3))
    omega = 0.3 * (a - a.T)
    (rot,) = linear_transport(grid)._operators("rotation")
    coo = rot.tocoo()
    n = grid.n_coeff
    assert np.all(grid.degrees[coo.row // 2] == grid.degrees[(coo.col % (2 * n)) // 2])
    # a degree-3 field: its rotation stays of degree 3, and on the nodes it is f(e^{-Ω} x)
    def f(x):
        return x[..., 0] ** 2 * x[..., 1] - 0.5 * x[..., 2] ** 3 + x[..., 0] * x[..., 2]

    c = grid.analysis(f(grid.points()))
    c[grid.degrees > 3] = 0.0  # the analysis' rounding residue there would be amplified by e^{|A|}, |A| ≈ 0.9 lmax
    op = linear_transport(grid).operator(omega, None)
    # exp(A) on the (degree ≤ 3) coefficients by its Taylor series, summed to convergence (|A| ≤ 3 ‖Ω‖ ≈ 3 there)
    term, total = c.copy(), c.copy()
    for k in range(1, 60):
        term = op(term) / k
        total += term
    exact = grid.analysis(f(grid.points() @ expm(-omega).T))
    # rounding of 60 sparse products of O(1) coefficients and of one analysis: 1e-13 (measured 3e-15)
    np.testing.assert_allclose(total, exact, rtol=0, atol=1e-12)
