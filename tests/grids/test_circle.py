"""CircleGrid: Fourier transforms, calculus, quadrature, frame and point evaluation on S^1 against closed forms in θ.

Convention under test (spde_tokens.grids): e_k = exp(ikθ)/sqrt(2π), f = Σ_{k=0}^{n} w_k Re(f_k e_k), w_0 = 1, w_k = 2.
The identities that hold on the sphere as well (round trip, Parseval, div ∇ = Δ, …) are in test_identities.py.
"""

import functools

import numpy as np
import pytest

from spde_tokens.grids import CircleGrid

NS = [8, 32, 128]
EPS = np.finfo(float).eps


@functools.cache
def _grid(n: int) -> CircleGrid:
    return CircleGrid(n)


def _direct_synthesis(coeffs: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Σ_k w_k Re(f_k exp(ikθ)/sqrt(2π)), summed term by term."""
    k = np.arange(coeffs.size)
    w = np.where(k == 0, 1.0, 2.0)
    basis = np.exp(1j * np.outer(theta, k)) / np.sqrt(2.0 * np.pi)
    return (basis * (w * coeffs)).real.sum(axis=1)


# ---- transforms ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", NS)
def test_synthesis_matches_the_series(n, random_coeffs):
    grid = _grid(n)
    c = random_coeffs(grid, np.random.default_rng(1 + n))
    # the direct sum has n terms of O(1/sqrt(n)): round-off ~1e-15
    np.testing.assert_allclose(grid.synthesis(c), _direct_synthesis(c, grid.theta), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", NS)
def test_analysis_of_trigonometric_closed_forms(n):
    """cos(kθ) has f_k = sqrt(π/2), sin(kθ) has f_k = -i sqrt(π/2) (the constant: test_identities.py)."""
    grid = _grid(n)
    theta = grid.theta
    for k in (1, 3, n):
        expected = np.zeros(grid.n_coeff, dtype=complex)
        expected[k] = np.sqrt(np.pi / 2)
        # FFT round-off on unit-amplitude data: ~1e-15
        np.testing.assert_allclose(grid.analysis(np.cos(k * theta)), expected, rtol=0, atol=1e-13)
        np.testing.assert_allclose(grid.analysis(np.sin(k * theta)), -1j * expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("n", NS)
def test_coordinate_coefficients(n):
    """x = cos θ: f_1 = sqrt(π/2); y = sin θ: f_1 = -i sqrt(π/2); all other coefficients vanish."""
    grid = _grid(n)
    expected = np.zeros((2, grid.n_coeff), dtype=complex)
    expected[0, 1] = np.sqrt(np.pi / 2)
    expected[1, 1] = -1j * np.sqrt(np.pi / 2)
    # FFT round-off on unit-amplitude data: ~1e-15
    np.testing.assert_allclose(grid.coordinate_coefficients(), expected, rtol=0, atol=1e-13)


# ---- calculus -----------------------------------------------------------------------------------------------------
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
    """d/dθ cos 3θ = -3 sin 3θ."""
    grid = _grid(n)
    theta = grid.theta
    grad = grid.gradient(grid.analysis(np.cos(3 * theta)))
    # analysis leaves ~eps round-off in every mode and d/dθ multiplies mode k by k ≤ n: observed ≈ 5 eps n, allow 50
    np.testing.assert_allclose(grad[0], -3 * np.sin(3 * theta), rtol=0, atol=50 * EPS * n)


@pytest.mark.parametrize("n", NS)
def test_tangent_component_of_a_constant_vector(n):
    """P_x e_2 has the component e_θ·e_2 = cos θ."""
    grid = _grid(n)
    tangent = grid.to_tangent(np.broadcast_to([0.0, 1.0], (*grid.shape, 2)))
    np.testing.assert_allclose(tangent[0], np.cos(grid.theta), rtol=0, atol=1e-15)  # one rounding


# ---- quadrature ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", NS)
def test_trapezoid_rule_is_exact_for_trigonometric_polynomials(n):
    """∫ exp(ikθ) dθ = 0 for 0 < k < N: the rule is exact up to degree 2n < N."""
    grid = _grid(n)
    # round-off only
    for k in (1, n, 2 * n):
        assert abs(grid.integrate(np.cos(k * grid.theta))) <= 1e-13
        assert abs(grid.integrate(np.sin(k * grid.theta))) <= 1e-13


# ---- points and frame ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", NS)
def test_nodes_and_frame_orientation(n):
    grid = _grid(n)
    x = grid.points()
    t = grid.tangent_basis()
    np.testing.assert_allclose(x, np.stack([np.cos(grid.theta), np.sin(grid.theta)], axis=-1), rtol=0, atol=0)
    # e_θ = dx/dθ: positive orientation, x × e_θ = +1 (a few roundings: 1e-15)
    np.testing.assert_allclose(x[:, 0] * t[0, :, 1] - x[:, 1] * t[0, :, 0], 1.0, rtol=0, atol=1e-15)


# ---- point evaluation ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", NS)
def test_evaluate_at_random_points(n, random_coeffs):
    grid = _grid(n)
    rng = np.random.default_rng(5 + n)
    c = random_coeffs(grid, rng)
    theta = rng.uniform(-np.pi, np.pi, 500)
    pts = np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    direct = _direct_synthesis(c, theta)
    # both are O(n) sums of O(1/sqrt(n)) terms; arctan2 recovers θ to 1 ulp: 1e-12 of the field's size
    np.testing.assert_allclose(grid.evaluate(c, pts), direct, rtol=0, atol=1e-12 * np.abs(direct).max())


@pytest.mark.parametrize("n", NS)
def test_empirical_coefficients_of_the_nodes_with_equal_weights(n):
    """Equal weights 1/N: Σ_j exp(-ikθ_j)/N = δ_k0 for 0 ≤ k < N, so μ_k = δ_k0 / sqrt(2π)."""
    grid = _grid(n)
    expected = np.zeros(grid.n_coeff, dtype=complex)
    expected[0] = 1 / np.sqrt(2 * np.pi)
    # O(N) sums of O(1) terms: round-off ~1e-15
    np.testing.assert_allclose(grid.empirical_coefficients(grid.points()), expected, rtol=0, atol=1e-14)


# ---- bad input ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"n": 2}, "n"), ({"n": 3.5}, "n"), ({"n": True}, "n"), ({"n": 8, "threads": 0}, "threads")],
)
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        CircleGrid(**kwargs)
