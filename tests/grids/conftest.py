"""Shared by the grid tests: coefficients of random real band-limited fields."""

import numpy as np
import pytest


def _random_coeffs(grid, rng: np.random.Generator) -> np.ndarray:
    """Coefficients of a random real field of degree ≤ ``grid.degree_max``, of O(1) L2 norm.

    Scaled by 1/sqrt(n_coeff) so that every field is O(1) and absolute tolerances are meaningful; the order-0
    coefficients (``order_weight == 1``: f_0 on S^1, f_l0 on S^2) of a real field are real.
    """
    c = (rng.standard_normal(grid.n_coeff) + 1j * rng.standard_normal(grid.n_coeff)) / np.sqrt(grid.n_coeff)
    order_zero = grid.order_weight == 1
    c[order_zero] = c[order_zero].real
    return c


@pytest.fixture(scope="session")
def random_coeffs():
    """The function ``random_coeffs(grid, rng)`` (:func:`_random_coeffs`)."""
    return _random_coeffs
