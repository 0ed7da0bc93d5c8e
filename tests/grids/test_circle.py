"""CircleGrid: Fourier transforms, calculus, quadrature and point evaluation on S^1 against closed forms.

Convention under test (spde_tokens.grids): e_k = exp(ikθ)/sqrt(2π), f = Σ_{k=0}^{n} w_k Re(f_k e_k), w_0 = 1, w_k = 2.
Random coefficients are scaled by 1/sqrt(n + 1) so that every field is O(1); absolute tolerances are then meaningful.
"""

import functools

import numpy as np
import pytest

from spde_tokens.grids import CircleGrid

NS = [8, 32, 128]
EPS = np.finfo(float).eps


@functools.cache
def _grid(n: int, dealias: bool = True) -> CircleGrid:
    return CircleGrid(n, dealias=dealias)


def _random_coeffs(grid: CircleGrid, rng: np.random.Generator) -> np.ndarray:
    """Random coefficients of a real band-limited field (f_0 real), of O(1) L2 norm."""
    c = (rng.standard_normal(grid.n_coeff) + 1j * rng.standard_normal(grid.n_coeff)) / np.sqrt(grid.n_coeff)
    c[0] = c[0].real
    return c


def _direct_synthesis(coeffs: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Σ_k w_k Re(f_k exp(ikθ)/sqrt(2π)), summed term by term."""
    k = np.arange(coeffs.size)
    w = np.where(k == 0, 1.0, 2.0)
    basis = np.exp(1j * np.outer(theta, k)) / np.sqrt(2.0 * np.pi)
    return (basis * (w * coeffs)).real.sum(axis=1)


# ---- transforms --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dealias", [True, False])
@pytest.mark.parametrize("n", NS)
def test_round_trip(n, dealias):
    grid = _grid(n, dealias)
    rng = np.random.default_rng(n)
    c = _random_coeffs(grid, rng)
    f = grid.synthesis(c)
    assert f.shape == grid.shape and f.dtype == float
    # round-off of O(N log N) FFTs on O(1) data: ~1e-15; 1e-12 leaves three orders of margin
    np.testing.assert_allclose(grid.analysis(f), c, rtol=0, atol=1e-12)
    np.testing.assert_allclose(grid.synthesis(grid.analysis(f)), f, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", NS)
def test_synthesis_matches_the_series(n):
    grid = _grid(n)
    c = _random_coeffs(grid, np.random.default_rng(1 + n))
    # the direct sum has n terms of O(1/sqrt(n)): round-off ~1e-15
    np.testing.assert_allclose(grid.synthesis(c), _direct_synthesis(c, grid.theta), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", NS)
def test_analysis_of_trigonometric_closed_forms(n):
    """cos(kθ) has f_k = sqrt(π/2), sin(kθ) has f_k = -i sqrt(π/2), the constant 1 has f_0 = sqrt(2π)."""
    grid = _grid(n)
    theta = grid.theta
    for k in (1, 3, n):
        expected = np.zeros(grid.n_coeff, dtype=complex)
        expected[k] = np.sqrt(np.pi / 2)
        # FFT round-off on unit-amplitude data: ~1e-15
        np.testing.assert_allclose(grid.analysis(np.cos(k * theta)), expected, rtol=0, atol=1e-13)
        np.testing.assert_allclose(grid.analysis(np.sin(k * theta)), -1j * expected, rtol=0, atol=1e-13)
    expected = np.zeros(grid.n_coeff, dtype=complex)
    expected[0] = np.sqrt(2 * np.pi)
    np.testing.assert_allclose(grid.analysis(np.ones(grid.shape)), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("n", NS)
def test_coordinate_coefficients(n):
    """x = cos θ: f_1 = sqrt(π/2); y = sin θ: f_1 = -i sqrt(π/2); all other coefficients vanish."""
    grid = _grid(n)
    expected = np.zeros((2, grid.n_coeff), dtype=complex)
    expected[0, 1] = np.sqrt(np.pi / 2)
    expected[1, 1] = -1j * np.sqrt(np.pi / 2)
    # FFT round-off on unit-amplitude data: ~1e-15
    np.testing.assert_allclose(grid.coordinate_coefficients(), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("n", NS)
def test_inner_product_and_power_spectrum_are_parseval(n):
    grid = _grid(n)
    rng = np.random.default_rng(2 + n)
    a, b = _random_coeffs(grid, rng), _random_coeffs(grid, rng)
    # ∫ f g dθ by the (exact for degree ≤ 2n < N) trapezoid rule; round-off of O(N) sums of O(1) terms: ~1e-14
    assert grid.inner(a, b) == pytest.approx(grid.integrate(grid.synthesis(a) * grid.synthesis(b)), abs=1e-12)
    assert grid.power_spectrum(a).sum() == pytest.approx(grid.integrate(grid.synthesis(a) ** 2), abs=1e-12)
    np.testing.assert_allclose(grid.power_spectrum(a), grid.order_weight * np.abs(a) ** 2, rtol=1e-15, atol=0)


# ---- calculus -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", NS)
def test_laplacian_eigenvalues(n):
    grid = _grid(n)
    for k in (0, 1, 5, n):
        c = np.zeros(grid.n_coeff, dtype=complex)
        c[k] = 0.3 - 0.8j
        # a single multiplication by an integer-valued float: exact up to one rounding
        np.testing.assert_allclose(grid.laplacian(c), -(k**2) * c, rtol=EPS, atol=0)


@pytest.mark.parametrize("n", NS)
def test_laplacian_of_closed_form_on_the_grid(n):
    """Δ(cos 3θ + sin 5θ) = -9 cos 3θ - 25 sin 5θ."""
    grid = _grid(n)
    theta = grid.theta
    f = np.cos(3 * theta) + np.sin(5 * theta)
    lap = grid.synthesis(grid.laplacian(grid.analysis(f)))
    # analysis leaves ~eps round-off in every mode and Δ multiplies mode k by k² ≤ n²: observed ≈ 5 eps n², allow 50
    np.testing.assert_allclose(lap, -9 * np.cos(3 * theta) - 25 * np.sin(5 * theta), rtol=0, atol=50 * EPS * n**2)


@pytest.mark.parametrize("n", NS)
def test_gradient_closed_form(n):
    """d/dθ cos 3θ = -3 sin 3θ; ∇x for x = cos θ is P_x e_1 = e_1 - x_1 x in Cartesian form."""
    grid = _grid(n)
    theta = grid.theta
    grad = grid.gradient(grid.analysis(np.cos(3 * theta)))
    assert grad.shape == (1, *grid.shape)
    # analysis leaves ~eps round-off in every mode and d/dθ multiplies mode k by k ≤ n: observed ≈ 5 eps n, allow 50
    np.testing.assert_allclose(grad[0], -3 * np.sin(3 * theta), rtol=0, atol=50 * EPS * n)
    x = grid.points()
    grad_x = grid.from_tangent(grid.gradient(grid.coordinate_coefficients()[0]))
    e1 = np.array([1.0, 0.0])
    np.testing.assert_allclose(grad_x, e1 - x[:, :1] * x, rtol=0, atol=50 * EPS * n)


@pytest.mark.parametrize("n", NS)
def test_divergence_of_gradient_is_laplacian(n):
    grid = _grid(n)
    c = _random_coeffs(grid, np.random.default_rng(3 + n))
    lap = grid.laplacian(c)
    # two FFTs on a field with coefficients up to k|c_k|: round-off ~1e-15 of max|Δc| (≤ n² |c|)
    np.testing.assert_allclose(grid.divergence(grid.gradient(c)), lap, rtol=0, atol=1e-13 * np.abs(lap).max())


@pytest.mark.parametrize("n", NS)
def test_divergence_of_projected_constant_vector(n):
    """div_S(P_x a) = -(dim - 1) a·x on S^{dim-1}: on S^1, div(P_x e_2) = -x_2 = -sin θ."""
    grid = _grid(n)
    tangent = grid.to_tangent(np.broadcast_to([0.0, 1.0], (*grid.shape, 2)))
    np.testing.assert_allclose(tangent[0], np.cos(grid.theta), rtol=0, atol=1e-15)  # e_θ·e_2 = cos θ
    div = grid.synthesis(grid.divergence(tangent))
    # FFT round-off on unit-amplitude data: ~1e-15
    np.testing.assert_allclose(div, -np.sin(grid.theta), rtol=0, atol=1e-13)


@pytest.mark.parametrize("n", NS)
def test_integral_of_divergence_vanishes(n):
    grid = _grid(n)
    rng = np.random.default_rng(4 + n)
    for _ in range(3):
        tangent = rng.standard_normal((1, *grid.shape))  # any field, not band-limited
        div = grid.divergence(tangent)
        assert div[0] == 0.0  # the mass coefficient is multiplied by ik = 0 exactly
        # sum of N ≤ 400 round-off terms of a field of size ≤ ~100: ~1e-14
        assert abs(grid.integrate(grid.synthesis(div))) <= 1e-12


# ---- quadrature -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", NS)
def test_quadrature(n):
    grid = _grid(n)
    w = grid.weights()
    assert w.shape == grid.shape and np.all(w > 0)
    # sums of N equal positive terms: relative round-off ≤ N eps ≈ 1e-13
    assert grid.integrate(np.ones(grid.shape)) == pytest.approx(2 * np.pi, rel=1e-13, abs=0)
    assert grid.integrate(np.cos(grid.theta) ** 2) == pytest.approx(np.pi, rel=1e-13, abs=0)
    # the trapezoid rule integrates exp(ikθ) exactly for 0 < k < N: round-off only
    for k in (1, n, 2 * n):
        assert abs(grid.integrate(np.cos(k * grid.theta))) <= 1e-13
        assert abs(grid.integrate(np.sin(k * grid.theta))) <= 1e-13


# ---- points and frame -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", NS)
def test_points_and_tangent_basis(n):
    grid = _grid(n)
    x = grid.points()
    t = grid.tangent_basis()
    assert x.shape == (*grid.shape, 2) and t.shape == (1, *grid.shape, 2)
    # cos² + sin² and the dot products carry a few roundings: 1e-15
    np.testing.assert_allclose(np.linalg.norm(x, axis=-1), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(t[0], axis=-1), 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.sum(x * t[0], axis=-1), 0.0, rtol=0, atol=1e-15)
    # e_θ = dx/dθ: positive orientation, x × e_θ = +1
    np.testing.assert_allclose(x[:, 0] * t[0, :, 1] - x[:, 1] * t[0, :, 0], 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(x, np.stack([np.cos(grid.theta), np.sin(grid.theta)], axis=-1), rtol=0, atol=0)


# ---- point evaluation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", NS)
def test_evaluate_at_random_points(n):
    grid = _grid(n)
    rng = np.random.default_rng(5 + n)
    c = _random_coeffs(grid, rng)
    theta = rng.uniform(-np.pi, np.pi, 500)
    pts = np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    direct = _direct_synthesis(c, theta)
    # both are O(n) sums of O(1/sqrt(n)) terms; arctan2 recovers θ to 1 ulp: 1e-12 of the field's size
    np.testing.assert_allclose(grid.evaluate(c, pts), direct, rtol=0, atol=1e-12 * np.abs(direct).max())


@pytest.mark.parametrize("n", NS)
def test_evaluate_at_nodes_is_synthesis(n):
    grid = _grid(n)
    c = _random_coeffs(grid, np.random.default_rng(6 + n))
    # FFT vs direct sum of O(1) data: ~1e-15
    np.testing.assert_allclose(grid.evaluate(c, grid.points()), grid.synthesis(c), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", NS)
def test_empirical_coefficients_of_the_nodes(n):
    """Σ_i ω_i f(x_i) conj(e_k(x_i)) with quadrature weights ω_i is the (exact) analysis of band-limited f."""
    grid = _grid(n)
    c = _random_coeffs(grid, np.random.default_rng(7 + n))
    f = grid.synthesis(c)
    emp = grid.empirical_coefficients(grid.points(), weights=grid.weights().ravel() * f.ravel())
    # O(N) sums of O(1) terms: round-off ~1e-15
    np.testing.assert_allclose(emp, grid.analysis(f), rtol=0, atol=1e-12)
    np.testing.assert_allclose(emp, c, rtol=0, atol=1e-12)
    # equal weights 1/N: Σ_j exp(-ikθ_j)/N = δ_k0 for 0 ≤ k < N, so μ_k = δ_k0 / sqrt(2π)
    expected = np.zeros(grid.n_coeff, dtype=complex)
    expected[0] = 1 / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(grid.empirical_coefficients(grid.points()), expected, rtol=0, atol=1e-14)


def test_evaluate_many_points_vectorized():
    grid = _grid(128)
    rng = np.random.default_rng(8)
    theta = rng.uniform(0, 2 * np.pi, 20000)
    pts = np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    c = _random_coeffs(grid, rng)
    values = grid.evaluate(c, pts)
    assert values.shape == (20000,) and np.all(np.isfinite(values))
    assert grid.empirical_coefficients(pts).shape == (grid.n_coeff,)


# ---- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"n": 2}, "n"), ({"n": 3.5}, "n"), ({"n": True}, "n"), ({"n": 8, "threads": 0}, "threads")],
)
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        CircleGrid(**kwargs)


@pytest.mark.parametrize(
    "points",
    [
        np.array([1.0, 0.0]),  # one point without the N axis
        np.array([[1.0, 0.0, 0.0]]),  # points of S^2
        np.array([[np.nan, 0.0]]),
        np.array([[np.inf, 0.0]]),
        np.array([[1.0, 1.0]]),  # not unit norm
        np.array([[1.0 + 1e-6, 0.0]]),
    ],
)
def test_bad_points(points):
    grid = _grid(8)
    c = np.zeros(grid.n_coeff, dtype=complex)
    with pytest.raises(ValueError, match="points"):
        grid.evaluate(c, points)
    with pytest.raises(ValueError, match="points"):
        grid.empirical_coefficients(points)
