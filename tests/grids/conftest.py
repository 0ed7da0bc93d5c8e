"""Shared by the grid tests: coefficients of random real band-limited fields, and the rounding bound of transforms."""

import numpy as np
import pytest

EPS = np.finfo(float).eps


def _random_coeffs(grid, rng: np.random.Generator) -> np.ndarray:
    """Coefficients of a random real field of degree ≤ ``grid.degree_max``, of O(1) L2 norm.

    Scaled by 1/sqrt(n_coeff) so that every field is O(1) and absolute tolerances are meaningful; the order-0
    coefficients (``order_weight == 1``: f_0 on S^1, f_l0 on S^2) of a real field are real.
    """
    c = (rng.standard_normal(grid.n_coeff) + 1j * rng.standard_normal(grid.n_coeff)) / np.sqrt(grid.n_coeff)
    order_zero = grid.order_weight == 1
    c[order_zero] = c[order_zero].real
    return c


def _rounding(grid, scale: float = 1.0, derivative: int = 0) -> float:
    """Bound on the rounding error of grid values computed by transforms on ``grid``, for a field of size ``scale``.

    Every value out of an analysis followed by a synthesis is the end of a chain of sums: FFTs along the longitudes
    (S^2) or the nodes (S^1), Gauss–Legendre sums over the latitudes, Legendre syntheses over the degree_max + 1
    degrees. With n the total length of these sums, n = Σ grid.shape + degree_max + 1, the classical bound
    |fl(Σ a_k) − Σ a_k| ≤ γ_n Σ |a_k|, γ_n ≈ n eps (Higham, *Accuracy and Stability of Numerical Algorithms*, §4.2)
    holds whatever the order of the additions, the blocking or the use of FMA — so on every CPU and for every shtns
    kernel (AVX2, AVX-512, NEON) — and gives n eps max|f| up to the O(1) ratio Σ|a_k| / max|f| of orthonormal sums.
    A derivative of order k multiplies the error of degree l by (l(l + d − 2))^{k/2} ≤ (L(L + d − 2))^{k/2}.
    Coefficients are compared with ``sqrt(grid.area)`` times this bound (|f_lm| ≤ sqrt(area) max|f|). For a field
    given by its coefficients, ``scale`` is :func:`_synthesis_scale`, which bounds Σ |a_k| itself; where the result
    is compared with an independent computation (scipy's Y_lm, a direct sum), both round: twice the bound.

    Measured on an AVX2 build (lmax 8 to 63): every grid test's error is below 0.2 of its tolerance, except single
    harmonics of degree lmax and order 1 against scipy (0.29 of twice the bound, scipy's own rounding included).
    The AVX-512 build that broke the earlier, lmax-independent tolerances (20 eps lmax, 20 eps lmax²) erred by at
    most 3.7× our errors, still inside this bound; an operator error (≥ 1e-6 relative) exceeds it by orders of
    magnitude, so the tests keep their power.
    """
    n = sum(grid.shape) + grid.degree_max + 1
    return EPS * n * float(-grid.laplacian_eigenvalues.min()) ** (derivative / 2) * scale


def _synthesis_scale(grid, coeffs: np.ndarray) -> float:
    """Σ_lm |f_lm Y_lm(x)| ≤ ‖f‖_2 sqrt(M / area), M the number of real modes (Cauchy–Schwarz and the addition
    theorem Σ_m |Y_lm(x)|² = (2l + 1)/4π, Σ_l (2l + 1) = M on S^2; 1/2π per mode on S^1): the size of the terms a
    synthesis adds."""
    return float(np.sqrt(grid.power_spectrum(coeffs).sum() * grid.order_weight.sum() / grid.area))


@pytest.fixture(scope="session")
def synthesis_scale():
    """The function ``synthesis_scale(grid, coeffs)`` (:func:`_synthesis_scale`)."""
    return _synthesis_scale


@pytest.fixture(scope="session")
def random_coeffs():
    """The function ``random_coeffs(grid, rng)`` (:func:`_random_coeffs`)."""
    return _random_coeffs


@pytest.fixture(scope="session")
def rounding():
    """The function ``rounding(grid, scale=1, derivative=0)`` (:func:`_rounding`)."""
    return _rounding
