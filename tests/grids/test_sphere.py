"""SphereGrid: spherical-harmonic transforms, calculus, quadrature and point evaluation on S^2 against closed forms.

Convention under test (spde_tokens.grids): orthonormal Y_lm with Condon–Shortley phase (``scipy.special.sph_harm_y``),
f = Σ_{l, m≥0} w_m Re(f_lm Y_lm), w_0 = 1, w_m = 2. Random coefficients are scaled by 1/sqrt(n_coeff) so that every
field is O(1) and absolute tolerances are meaningful.
"""

import functools

import numpy as np
import pytest
from scipy.special import sph_harm_y

from spde_tokens.grids import SphereGrid

LMAXS = [8, 16, 31]
EPS = np.finfo(float).eps



@functools.cache
def _grid(lmax: int, dealias: bool = True) -> SphereGrid:
    return SphereGrid(lmax, dealias=dealias)


def _random_coeffs(grid: SphereGrid, rng: np.random.Generator) -> np.ndarray:
    """Random coefficients of a real band-limited field (m = 0 coefficients real), of O(1) L2 norm."""
    c = (rng.standard_normal(grid.n_coeff) + 1j * rng.standard_normal(grid.n_coeff)) / np.sqrt(grid.n_coeff)
    c[grid.orders == 0] = c[grid.orders == 0].real
    return c


def _index(grid: SphereGrid, ell: int, m: int) -> int:
    return int(np.flatnonzero((grid.degrees == ell) & (grid.orders == m))[0])


def _angles(grid: SphereGrid) -> tuple[np.ndarray, np.ndarray]:
    """Colatitude θ and longitude φ of the nodes, shape ``grid.shape``."""
    return np.meshgrid(grid.theta, grid.phi, indexing="ij")


def _random_unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _direct_synthesis(grid: SphereGrid, coeffs: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Σ w_m Re(f_lm Y_lm(x)) summed term by term with scipy's Y_lm."""
    theta = np.arccos(np.clip(pts[:, 2], -1.0, 1.0))
    phi = np.arctan2(pts[:, 1], pts[:, 0])
    y = sph_harm_y(grid.degrees[:, None], grid.orders[:, None], theta[None, :], phi[None, :])
    return ((grid.order_weight * coeffs)[:, None] * y).real.sum(axis=0)


# ---- transforms and the convention ----------------------------------------------------------------------------
@pytest.mark.parametrize("dealias", [True, False])
@pytest.mark.parametrize("lmax", LMAXS)
def test_round_trip(lmax, dealias):
    grid = _grid(lmax, dealias)
    c = _random_coeffs(grid, np.random.default_rng(lmax))
    f = grid.synthesis(c)
    assert f.shape == grid.shape and f.dtype == float
    # round-off of the O(lmax^3) Legendre + FFT transforms on O(1) data: observed ≤ 1e-14
    np.testing.assert_allclose(grid.analysis(f), c, rtol=0, atol=1e-12)
    np.testing.assert_allclose(grid.synthesis(grid.analysis(f)), f, rtol=0, atol=1e-12)


@pytest.mark.parametrize("lmax", LMAXS)
def test_single_harmonic_matches_scipy(lmax):
    """synthesis of one coefficient c_lm is w_m Re(c_lm Y_lm) with scipy's orthonormal, Condon–Shortley phased Y_lm."""
    grid = _grid(lmax)
    theta, phi = _angles(grid)
    for ell, m in [(0, 0), (1, 0), (1, 1), (3, 2), (lmax, 0), (lmax, 1), (lmax, lmax // 2), (lmax, lmax)]:
        c = np.zeros(grid.n_coeff, dtype=complex)
        c[_index(grid, ell, m)] = 0.6 - 0.8j if m > 0 else 0.6
        w = 2.0 if m > 0 else 1.0
        expected = w * (c[_index(grid, ell, m)] * sph_harm_y(ell, m, theta, phi)).real
        # |Y_lm| ≤ sqrt((2l+1)/4π) ≈ 1.6; both sides are accurate Legendre recurrences: round-off ~1e-15
        np.testing.assert_allclose(grid.synthesis(c), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("lmax", LMAXS)
def test_coordinate_coefficients(lmax):
    """z = sqrt(4π/3) Y_10; x = -sqrt(2π/3)·2Re(Y_11); y = sqrt(2π/3)·2Re(i Y_11) (Y_11 = -sqrt(3/8π) sinθ e^{iφ})."""
    grid = _grid(lmax)
    expected = np.zeros((3, grid.n_coeff), dtype=complex)
    expected[0, _index(grid, 1, 1)] = -np.sqrt(2 * np.pi / 3)
    expected[1, _index(grid, 1, 1)] = 1j * np.sqrt(2 * np.pi / 3)
    expected[2, _index(grid, 1, 0)] = np.sqrt(4 * np.pi / 3)
    # analysis round-off on unit-amplitude data: ~1e-15
    np.testing.assert_allclose(grid.coordinate_coefficients(), expected, rtol=0, atol=1e-13)
    # the uniform density 1/(4π) has f_00 = 1/sqrt(4π)
    uniform = grid.analysis(np.full(grid.shape, 1 / (4 * np.pi)))
    assert uniform[_index(grid, 0, 0)] == pytest.approx(1 / np.sqrt(4 * np.pi), rel=1e-14)


@pytest.mark.parametrize("lmax", LMAXS)
def test_inner_product_and_power_spectrum_are_parseval(lmax):
    grid = _grid(lmax)
    rng = np.random.default_rng(1 + lmax)
    a, b = _random_coeffs(grid, rng), _random_coeffs(grid, rng)
    # Gauss quadrature is exact for the degree-2 lmax product; round-off of O(nlat nlon) sums of O(1) terms: ~1e-14
    assert grid.inner(a, b) == pytest.approx(grid.integrate(grid.synthesis(a) * grid.synthesis(b)), abs=1e-12)
    spectrum = grid.power_spectrum(a)
    assert spectrum.shape == (lmax + 1,)
    assert spectrum.sum() == pytest.approx(grid.integrate(grid.synthesis(a) ** 2), abs=1e-12)
    for ell in (0, 1, lmax):
        sel = grid.degrees == ell
        expected = np.sum(grid.order_weight[sel] * np.abs(a[sel]) ** 2)
        assert spectrum[ell] == pytest.approx(expected, rel=1e-14)  # the same sum in another order


# ---- calculus -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lmax", LMAXS)
def test_laplacian_eigenvalues(lmax):
    grid = _grid(lmax)
    for ell, m in [(0, 0), (1, 0), (2, 1), (lmax, lmax), (lmax, 3)]:
        c = np.zeros(grid.n_coeff, dtype=complex)
        c[_index(grid, ell, m)] = 0.3 - 0.8j
        # one multiplication by an integer-valued float: exact up to one rounding
        np.testing.assert_allclose(grid.laplacian(c), -ell * (ell + 1) * c, rtol=EPS, atol=0)


@pytest.mark.parametrize(
    ("form", "eigenvalue"),
    [
        (lambda x, y, z: z, -2.0),
        (lambda x, y, z: x**2 - y**2, -6.0),
        (lambda x, y, z: x * y * z, -12.0),  # harmonic cubic polynomial: degree 3
        (lambda x, y, z: 5 * z**3 - 3 * z, -12.0),  # 2 P_3(z)
    ],
)
@pytest.mark.parametrize("lmax", LMAXS)
def test_laplacian_of_closed_forms_on_the_grid(lmax, form, eigenvalue):
    """Restrictions of harmonic homogeneous polynomials of degree l are eigenfunctions with eigenvalue -l(l+1)."""
    grid = _grid(lmax)
    x, y, z = np.moveaxis(grid.points(), -1, 0)
    f = form(x, y, z)
    lap = grid.synthesis(grid.laplacian(grid.analysis(f)))
    # transform round-off ~eps in every coefficient, amplified by l(l+1) ≤ lmax²: observed ≤ 1e-13 at lmax 31
    np.testing.assert_allclose(lap, eigenvalue * f, rtol=0, atol=20 * EPS * lmax**2)


@pytest.mark.parametrize("lmax", LMAXS)
def test_gradient_closed_forms(lmax):
    """∇z = (-sin θ, 0); ∇x = (cos θ cos φ, -sin φ) in (e_θ, e_φ), i.e. P_x e_1 = e_1 - x_1 x in Cartesian form."""
    grid = _grid(lmax)
    theta, phi = _angles(grid)
    coords = grid.coordinate_coefficients()
    # derivatives amplify the transforms' round-off by ~l ≤ lmax: tolerance 20 eps lmax (observed ≈ eps lmax)
    tol = 20 * EPS * lmax
    grad_z = grid.gradient(coords[2])
    assert grad_z.shape == (2, *grid.shape)
    np.testing.assert_allclose(grad_z[0], -np.sin(theta), rtol=0, atol=tol)
    np.testing.assert_allclose(grad_z[1], 0.0, rtol=0, atol=tol)
    grad_x = grid.gradient(coords[0])
    np.testing.assert_allclose(grad_x[0], np.cos(theta) * np.cos(phi), rtol=0, atol=tol)
    np.testing.assert_allclose(grad_x[1], -np.sin(phi), rtol=0, atol=tol)
    x = grid.points()
    e1 = np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(grid.from_tangent(grad_x), e1 - x[..., :1] * x, rtol=0, atol=tol)
    # the round trip Cartesian -> tangent -> Cartesian is the projection P_x
    np.testing.assert_allclose(grid.to_tangent(e1 - x[..., :1] * x), grad_x, rtol=0, atol=tol)


@pytest.mark.parametrize("lmax", LMAXS)
def test_divergence_of_projected_constant_vector(lmax):
    """div_S(P_x e_3) = -2z: P_x e_3 = ∇z, whose components are (-sin θ, 0)."""
    grid = _grid(lmax)
    theta, _ = _angles(grid)
    tangent = grid.to_tangent(np.broadcast_to([0.0, 0.0, 1.0], (*grid.shape, 3)))
    np.testing.assert_allclose(tangent[0], -np.sin(theta), rtol=0, atol=1e-15)  # e_θ·e_3 = -sin θ, one rounding
    np.testing.assert_allclose(tangent[1], 0.0, rtol=0, atol=0)
    div = grid.synthesis(grid.divergence(tangent))
    # vector analysis, Δ (factor ≤ lmax²) and synthesis on unit-amplitude data: observed ≈ 1e-14 at lmax 31
    np.testing.assert_allclose(div, -2 * grid.points()[..., 2], rtol=0, atol=20 * EPS * lmax**2)


@pytest.mark.parametrize("lmax", LMAXS)
def test_divergence_of_gradient_is_laplacian(lmax):
    grid = _grid(lmax)
    c = _random_coeffs(grid, np.random.default_rng(2 + lmax))
    lap = grid.laplacian(c)
    # gradient synthesis + vector analysis leave ~eps relative noise, and Δ scales degree l by l(l+1): 1e-13 of
    # max |Δc| (observed ≈ 3e-15)
    np.testing.assert_allclose(grid.divergence(grid.gradient(c)), lap, rtol=0, atol=1e-13 * np.abs(lap).max())


@pytest.mark.parametrize("lmax", LMAXS)
def test_divergence_is_blind_to_rotational_fields(lmax):
    """The rotated gradient e_r × ∇f = (-∂_φ f / sin θ, ∂_θ f) is divergence free."""
    grid = _grid(lmax)
    c = _random_coeffs(grid, np.random.default_rng(3 + lmax))
    grad = grid.gradient(c)
    rotated = np.stack([-grad[1], grad[0]])
    lap_scale = np.abs(grid.laplacian(c)).max()
    # same round-off budget as div ∇f = Δf
    np.testing.assert_allclose(grid.divergence(rotated), 0.0, rtol=0, atol=1e-13 * lap_scale)


@pytest.mark.parametrize("lmax", LMAXS)
def test_integral_of_divergence_vanishes(lmax):
    grid = _grid(lmax)
    rng = np.random.default_rng(4 + lmax)
    for _ in range(3):
        tangent = rng.standard_normal((2, *grid.shape))  # any field, not band-limited
        div = grid.divergence(tangent)
        assert np.all(div[grid.degrees == 0] == 0.0)  # the mass coefficient is multiplied by -l(l+1) = 0 exactly
        # Gauss quadrature of a degree ≤ lmax field without mean: round-off of nlat·nlon ≤ 4608 terms of size
        # ≤ ~50 (observed ≈ 1e-14)
        assert abs(grid.integrate(grid.synthesis(div))) <= 1e-12


# ---- quadrature -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lmax", LMAXS)
def test_quadrature(lmax):
    grid = _grid(lmax)
    w = grid.weights()
    assert w.shape == grid.shape and np.all(w > 0)
    z = grid.points()[..., 2]
    # sums of nlat·nlon positive terms: relative round-off ≤ ~1e-13
    assert grid.integrate(np.ones(grid.shape)) == pytest.approx(4 * np.pi, rel=1e-13, abs=0)
    assert grid.integrate(z**2) == pytest.approx(4 * np.pi / 3, rel=1e-13, abs=0)
    # Gauss–Legendre is exact for polynomials in z of degree ≤ 2 nlat - 1 ≥ 2 lmax: ∫ z^{2k} dA = 4π/(2k+1)
    # (z^{2k} amplifies the nodes' relative rounding by 2k: observed 1.1e-13 at k = 31, allow 1e-13 + 2k·1e-14)
    for k in (1, lmax // 2, lmax):
        expected = 4 * np.pi / (2 * k + 1)
        assert grid.integrate(z ** (2 * k)) == pytest.approx(expected, rel=1e-13 + 2 * k * 1e-14, abs=0)
    # and for exp(imφ) with 0 < m < nlon: ∫ x y dA = 0 and ∫ x² dA = 4π/3
    x, y = grid.points()[..., 0], grid.points()[..., 1]
    assert abs(grid.integrate(x * y)) <= 1e-14
    assert grid.integrate(x**2) == pytest.approx(4 * np.pi / 3, rel=1e-13, abs=0)


# ---- points and frame -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("lmax", LMAXS)
def test_points_and_tangent_basis(lmax):
    grid = _grid(lmax)
    x = grid.points()
    t = grid.tangent_basis()
    assert x.shape == (*grid.shape, 3) and t.shape == (2, *grid.shape, 3)
    # products of sines and cosines: a few roundings, 1e-15
    tol = 1e-15
    np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 1.0, rtol=0, atol=tol)
    gram = np.einsum("a...d,b...d->...ab", t, t)
    np.testing.assert_allclose(gram, np.broadcast_to(np.eye(2), gram.shape), rtol=0, atol=tol)
    np.testing.assert_allclose(np.einsum("k...d,...d->k...", t, x), 0.0, rtol=0, atol=tol)
    # right-handed frame with outward normal: e_θ × e_φ = x (e_θ points south, e_φ east)
    np.testing.assert_allclose(np.cross(t[0], t[1]), x, rtol=0, atol=tol)
    # latitudes are ordered from north to south
    assert np.all(np.diff(grid.cos_theta) < 0) and x[0, 0, 2] > 0 > x[-1, 0, 2]


# ---- point evaluation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("lmax", LMAXS)
def test_evaluate_matches_scipy(lmax):
    grid = _grid(lmax)
    rng = np.random.default_rng(5 + lmax)
    c = _random_coeffs(grid, rng)
    pts = _random_unit_vectors(rng, 300)
    direct = _direct_synthesis(grid, c, pts)
    # two independent Legendre recurrences summed over ≤ 528 terms of O(1/sqrt(n_coeff)): 1e-12 of the field's size
    np.testing.assert_allclose(grid.evaluate(c, pts), direct, rtol=0, atol=1e-12 * np.abs(direct).max())


@pytest.mark.parametrize("lmax", LMAXS)
def test_evaluate_at_nodes_is_synthesis(lmax):
    grid = _grid(lmax)
    c = _random_coeffs(grid, np.random.default_rng(6 + lmax))
    f = grid.synthesis(c)
    # transform vs direct sum on O(1) data: both round-off accurate to ~1e-14 (1.2e-12 at lmax 31 with polar_opt)
    np.testing.assert_allclose(grid.evaluate(c, grid.points().reshape(-1, 3)), f.ravel(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("lmax", LMAXS)
def test_synthesis_matches_scipy_at_every_node(lmax):
    grid = _grid(lmax)
    c = _random_coeffs(grid, np.random.default_rng(12 + lmax))
    direct = _direct_synthesis(grid, c, grid.points().reshape(-1, 3)).reshape(grid.shape)
    # round-off of both sums: observed ≤ 1e-14 of max|f| without polar optimization (6e-13 with it, at lmax 31)
    np.testing.assert_allclose(grid.synthesis(c), direct, rtol=0, atol=1e-13 * np.abs(direct).max())


@pytest.mark.parametrize("lmax", LMAXS)
def test_gradient_matches_scipy_at_every_node(lmax):
    """∂_θ Y_lm = m cot θ Y_lm + sqrt((l-m)(l+m+1)) e^{-iφ} Y_l,m+1 and ∂_φ Y_lm / sin θ = i m Y_lm / sin θ."""
    grid = _grid(lmax)
    c = _random_coeffs(grid, np.random.default_rng(13 + lmax))
    theta, phi = (a.ravel() for a in _angles(grid))
    ell, m = grid.degrees[:, None], grid.orders[:, None]
    y = sph_harm_y(ell, m, theta, phi)
    y_up = sph_harm_y(ell, np.minimum(m + 1, ell), theta, phi)  # its factor vanishes when m = l
    d_theta = m / np.tan(theta) * y + np.sqrt((ell - m) * (ell + m + 1)) * np.exp(-1j * phi) * y_up
    d_phi = 1j * m * y / np.sin(theta)
    wc = (grid.order_weight * c)[:, None]
    exact = np.stack([(wc * d_theta).real.sum(axis=0), (wc * d_phi).real.sum(axis=0)]).reshape(2, *grid.shape)
    # observed ≤ 1.1e-14 of max|∇f| without polar optimization (1.3e-12 with it, at lmax 31)
    np.testing.assert_allclose(grid.gradient(c), exact, rtol=0, atol=1e-13 * np.abs(exact).max())


@pytest.mark.parametrize("z", [1.0, -1.0])
@pytest.mark.parametrize("lmax", LMAXS)
def test_evaluate_at_the_poles(lmax, z):
    """Only m = 0 survives at the poles: f(±e_3) = Σ_l f_l0 sqrt((2l+1)/4π) (±1)^l."""
    grid = _grid(lmax)
    c = _random_coeffs(grid, np.random.default_rng(7 + lmax))
    sel = grid.orders == 0
    ell = grid.degrees[sel]
    expected = np.sum(c[sel].real * np.sqrt((2 * ell + 1) / (4 * np.pi)) * z**ell)
    # a sum of lmax + 1 O(1) terms: round-off ~1e-15
    assert grid.evaluate(c, np.array([[0.0, 0.0, z]]))[0] == pytest.approx(expected, abs=1e-13)


@pytest.mark.parametrize("z", [1.0, -1.0])
def test_evaluate_next_to_the_pole(z):
    """At θ = 1e-12 from a pole sin(θ)^m underflows in the sectoral recurrence; the value must still be the pole's."""
    grid = _grid(31)
    c = _random_coeffs(grid, np.random.default_rng(8))
    s = np.sin(1e-12)
    value = grid.evaluate(c, np.array([[s, 0.0, z * np.sqrt(1 - s**2)]]))[0]
    expected = grid.evaluate(c, np.array([[0.0, 0.0, z]]))[0]
    # |∇f| = O(lmax) for an O(1) field, so a displacement of 1e-12 changes f by ≲ 1e-10
    assert value == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("lmax", LMAXS)
def test_empirical_coefficients_of_the_nodes(lmax):
    """Σ_i ω_i f(x_i) conj(Y_lm(x_i)) with Gauss weights ω_i is the (exact) analysis of band-limited f."""
    grid = _grid(lmax)
    c = _random_coeffs(grid, np.random.default_rng(9 + lmax))
    f = grid.synthesis(c)
    emp = grid.empirical_coefficients(grid.points().reshape(-1, 3), weights=grid.weights().ravel() * f.ravel())
    # sums of nlat·nlon ≤ 4608 terms of O(1) size: round-off ~1e-15
    np.testing.assert_allclose(emp, grid.analysis(f), rtol=0, atol=1e-12)
    np.testing.assert_allclose(emp, c, rtol=0, atol=1e-12)


@pytest.mark.parametrize("lmax", LMAXS)
def test_empirical_coefficients_default_weights(lmax):
    """Equal weights 1/N: μ_lm = mean of conj(Y_lm(x_i)) (checked against scipy), μ_00 = 1/sqrt(4π) exactly."""
    grid = _grid(lmax)
    pts = _random_unit_vectors(np.random.default_rng(10 + lmax), 200)
    emp = grid.empirical_coefficients(pts)
    theta, phi = np.arccos(pts[:, 2]), np.arctan2(pts[:, 1], pts[:, 0])
    expected = np.conj(sph_harm_y(grid.degrees[:, None], grid.orders[:, None], theta, phi)).mean(axis=1)
    # means of O(1) basis values by two recurrences: ~1e-15
    np.testing.assert_allclose(emp, expected, rtol=0, atol=1e-13)
    assert emp[_index(grid, 0, 0)] == pytest.approx(1 / np.sqrt(4 * np.pi), rel=1e-14)


def test_evaluate_many_points_vectorized():
    grid = _grid(31)
    rng = np.random.default_rng(11)
    pts = _random_unit_vectors(rng, 20000)
    values = grid.evaluate(_random_coeffs(grid, rng), pts)
    assert values.shape == (20000,) and np.all(np.isfinite(values))
    assert grid.empirical_coefficients(pts).shape == (grid.n_coeff,)


# ---- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"lmax": 2}, "lmax"), ({"lmax": 3.5}, "lmax"), ({"lmax": True}, "lmax"), ({"lmax": "8"}, "lmax"),
     ({"lmax": 8, "threads": 0}, "threads"), ({"lmax": 8, "threads": 1.5}, "threads")],
)
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        SphereGrid(**kwargs)


@pytest.mark.parametrize(
    "points",
    [
        np.array([0.0, 0.0, 1.0]),  # one point without the N axis
        np.array([[1.0, 0.0]]),  # points of S^1
        np.array([[np.nan, 0.0, 1.0]]),
        np.array([[0.0, -np.inf, 0.0]]),
        np.array([[1.0, 1.0, 1.0]]),  # not unit norm
        np.array([[0.0, 0.0, 1.0 + 1e-6]]),
        np.zeros((1, 3)),
    ],
)
def test_bad_points(points):
    grid = _grid(8)
    c = np.zeros(grid.n_coeff, dtype=complex)
    with pytest.raises(ValueError, match="points"):
        grid.evaluate(c, points)
    with pytest.raises(ValueError, match="points"):
        grid.empirical_coefficients(points)
