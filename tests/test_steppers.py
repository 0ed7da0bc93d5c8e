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
    # Heun: |1 + iλ − λ²/2| = (1 + λ⁴/4)^{1/2}, above 1 for every λ ≠ 0 (docs/mathematics.md, 'Time stepping')
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


def _rotating_token(scheme: str, dt: float, generator: np.ndarray, t_end: float = 1.0) -> np.ndarray:
    """One token under softmax attention at beta = 0 with antisymmetric V: a = m = x, so X = P_x V x = V x."""
    import spde_tokens as st

    model = st.AttentionModel(dim=3, beta=0.0, V=generator)
    x0 = np.array([[0.6, 0.0, 0.8]])
    ds = st.simulate_particles(model, None, x0, t_end=t_end, dt=dt, scheme=scheme, progress=False)
    return ds.positions.values[-1, 0]


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_every_scheme_drives_the_particle_flow_at_its_order(name):
    """Particles' flow steps through the scheme table: x(t) = expm(tV) x0 exactly for one token with V = −Vᵀ."""
    from scipy.linalg import expm

    generator = np.array([[0.0, -1.0, 0.3], [1.0, 0.0, -0.5], [-0.3, 0.5, 0.0]])
    exact = expm(generator) @ np.array([0.6, 0.0, 0.8])
    errors = [np.linalg.norm(_rotating_token(name, dt, generator) - exact) for dt in (0.1, 0.05, 0.025)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    # the stages are projected on the sphere, which keeps the order of the scheme for this flow on the sphere;
    # leading error term dominant at these steps (the errors stay ≥ 1e-9, far above rounding): order within 0.2
    assert np.all(np.abs(orders - SCHEMES[name].order) < 0.2), (errors, orders)
