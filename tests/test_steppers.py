"""Every registered Runge–Kutta scheme: order on a linear test problem, Lawson factor, stability function."""

import numpy as np
import pytest

from spde_tokens.steppers import SCHEMES, get_scheme

LAM = -1.0 + 2.0j


def _solve(scheme, h, t_end=1.0, linear=None):
    y = np.array([1.0 + 0.0j])
    f = (lambda v: LAM * v) if linear is None else (lambda v: (LAM - linear) * v)
    for _ in range(round(t_end / h)):
        y = scheme.step(f, y, h, linear=None if linear is None else np.array([linear]))
    return y[0]


@pytest.mark.parametrize("name", sorted(SCHEMES))
@pytest.mark.parametrize("linear", [None, -3.0 + 0.5j])
def test_order_on_linear_problem(name, linear):
    scheme = SCHEMES[name]
    errors = [abs(_solve(scheme, h, linear=linear) - np.exp(LAM)) for h in (0.02, 0.01, 0.005)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    # the leading error term dominates at these steps: observed order within 0.1 of the nominal order
    assert np.all(np.abs(orders - scheme.order) < 0.1), orders


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_lawson_factor_is_exact_for_the_linear_part(name):
    lin = np.array([-2.0, -50.0 + 3j])
    y0 = np.array([1.0, 2.0 + 1j])
    y = SCHEMES[name].step(lambda v: 0.0 * v, y0, 0.3, linear=lin)
    np.testing.assert_allclose(y, np.exp(0.3 * lin) * y0, rtol=1e-14)  # only rounding of exp


def test_stability_functions():
    lam = np.linspace(0.1, 3.0, 30)
    heun = SCHEMES["heun"]
    # Heun: |1 + iλ − λ²/2| = (1 + λ⁴/4)^{1/2}, above 1 for every λ ≠ 0 (DESIGN 1.3)
    np.testing.assert_allclose([heun.amplification(1j * x) for x in lam], np.sqrt(1 + lam**4 / 4), rtol=1e-14)
    rk4 = SCHEMES["rk4"]
    # classical RK4 is stable on the imaginary axis exactly up to 2√2
    assert rk4.amplification(1j * 2.0 * np.sqrt(2.0)) == pytest.approx(1.0, abs=1e-12)
    assert rk4.amplification(1j * 2.7) < 1.0 < rk4.amplification(1j * 2.9)
    rk3 = SCHEMES["rk3"]
    assert rk3.amplification(1j * 1.7) <= 1.0 < rk3.amplification(1j * 1.75)


def test_unknown_scheme():
    with pytest.raises(ValueError, match="scheme"):
        get_scheme("euler-maruyama-typo")
