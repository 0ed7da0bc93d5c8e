"""Dual activations of MLPNoise: closed forms, Gauss–Hermite path, κ'(1), Legendre and cosine series.

The definitions are those of docs/mathematics.md, 'Common noise'.

Independent oracles: 1-D ``scipy.integrate.quad`` against the Gaussian density, the closed forms (for the generic
quadrature), finite differences, the asymptotics of the relu series derived from its (1 - t)^{3/2} endpoint terms, and
a Monte Carlo estimate.
"""

import functools
import warnings

import numpy as np
import pytest
from numpy.polynomial import legendre
from scipy import integrate, special

from spde_tokens.activations import (
    ACTIVATION_NAMES,
    Activation,
    _cosine_unclipped,
    _gauss_hermite_dual,
    _legendre_unclipped,
    cosine_coefficients,
    dual_derivative_at_one,
    dual_kernel,
    get_activation,
    legendre_coefficients,
)

ODD = ("tanh", "erf", "sin", "identity")
SMOOTH = ("tanh", "gelu", "erf", "sin", "identity")
# relu(u) - u/2 = |u|/2 and gelu(u) - u/2 = u (Φ(u) - 1/2) are even: their kernels are t/4 + an even function
HALF_LINEAR = ("relu", "gelu")

# φ and φ' written out here, independently of the module
PHI = {
    "tanh": np.tanh,
    "relu": lambda u: max(u, 0.0),
    "gelu": lambda u: u * special.ndtr(u),
    "erf": special.erf,
    "sin": np.sin,
    "identity": lambda u: u,
}
PHI_PRIME = {
    "tanh": lambda u: 1.0 / np.cosh(u) ** 2,
    "relu": lambda u: float(u > 0),
    "gelu": lambda u: special.ndtr(u) + u * np.exp(-0.5 * u * u) / np.sqrt(2 * np.pi),
    "erf": lambda u: 2.0 / np.sqrt(np.pi) * np.exp(-u * u),
    "sin": np.cos,
    "identity": lambda u: 1.0,
}


def gaussian_mean(f) -> float:
    """E f(u), u ~ N(0, 1), by adaptive quadrature on [-40, 0] and [0, 40] (split at the kink of relu; the Gaussian
    mass beyond 40 is below 1e-300)."""
    density = functools.partial(lambda g, u: g(u) * np.exp(-0.5 * u * u) / np.sqrt(2 * np.pi), f)
    opts = {"epsabs": 1e-15, "epsrel": 1e-13, "limit": 200}
    return integrate.quad(density, -40.0, 0.0, **opts)[0] + integrate.quad(density, 0.0, 40.0, **opts)[0]


T_GRID = np.linspace(-1.0, 1.0, 81)


# ---------------------------------------------------------------------------------------------------------------
# names and callables


def test_names_and_builtin_functions():
    assert ACTIVATION_NAMES == ("tanh", "relu", "gelu", "erf", "sin", "identity")
    u = np.linspace(-4, 4, 33)
    for name in ACTIVATION_NAMES:
        act = get_activation(name)
        assert act == Activation(name, act.phi, True)
        assert get_activation(act) is act
        np.testing.assert_allclose(act.phi(u), [PHI[name](x) for x in u], rtol=0, atol=1e-15)  # same formula
    np.testing.assert_array_equal(get_activation("gelu").phi(u), u * special.ndtr(u))  # exact GELU
    np.testing.assert_array_equal(get_activation("erf").phi(u), special.erf(u))


def test_callables_are_recorded_by_name_with_a_warning():
    def swish(u):
        return u * special.expit(u)

    with pytest.warns(UserWarning, match="cannot be restored from a file"):
        act = get_activation(swish)
    assert (act.name, act.phi, act.builtin) == ("swish", swish, False)
    with pytest.warns(UserWarning):
        assert get_activation(lambda u: u).name == "<lambda>"
    with pytest.warns(UserWarning):
        assert get_activation(functools.partial(np.multiply, 2.0)).name == "callable"
    # a callable tanh is not the builtin: same numbers through the generic paths
    with pytest.warns(UserWarning):
        user_tanh = get_activation(np.tanh)
    assert not user_tanh.builtin
    # both go through the same Gauss–Hermite rule: identical to rounding
    np.testing.assert_allclose(dual_kernel(user_tanh, T_GRID), dual_kernel("tanh", T_GRID), rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------------------------------------------
# 1. values, symmetry, monotonicity


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_kernel_at_one_and_zero_are_gaussian_moments(name):
    second = gaussian_mean(lambda u: PHI[name](u) ** 2)
    mean = gaussian_mean(PHI[name])
    # quad is accurate to ~1e-14 here; closed forms are exact and the Gauss–Hermite rule is good to ~2e-15
    assert abs(float(dual_kernel(name, 1.0)) - second) < 1e-12
    assert abs(float(dual_kernel(name, 0.0)) - mean**2) < 1e-12
    # Cauchy–Schwarz: |κ(t)| ≤ κ(1)
    assert np.all(np.abs(dual_kernel(name, T_GRID)) <= float(dual_kernel(name, 1.0)) + 1e-15)


def test_known_values():
    # exact moments: E relu² = 1/2, (E relu)² = 1/(2π), (E gelu)² = (E φ_N(u))² = 1/(4π), E sin² = (1 - e^{-2})/2
    assert float(dual_kernel("relu", 1.0)) == pytest.approx(0.5, abs=1e-16)
    assert float(dual_kernel("relu", 0.0)) == pytest.approx(1 / (2 * np.pi), abs=1e-16)
    assert float(dual_kernel("gelu", 0.0)) == pytest.approx(1 / (4 * np.pi), abs=1e-14)
    assert float(dual_kernel("sin", 1.0)) == pytest.approx(0.5 * (1 - np.exp(-2.0)), abs=1e-15)
    # E[u²v²] = 1 + 2t² for a callable; the Gauss–Hermite rule is exact for polynomials (rounding only)
    with pytest.warns(UserWarning):
        square = get_activation(np.square)
    np.testing.assert_allclose(dual_kernel(square, T_GRID), 1 + 2 * T_GRID**2, rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", ODD)
def test_odd_activations_have_odd_kernels(name):
    # φ(-v) = -φ(v) gives κ(-t) = -κ(t) (not +κ(t)); closed forms and the symmetric rule are odd to rounding
    np.testing.assert_allclose(dual_kernel(name, -T_GRID), -dual_kernel(name, T_GRID), rtol=0, atol=1e-15)
    # κ = Σ c_k² t^k has only odd powers: nondecreasing on all of [-1, 1]
    assert np.all(np.diff(dual_kernel(name, T_GRID)) >= -1e-15)


@pytest.mark.parametrize("name", HALF_LINEAR)
def test_half_linear_activations_are_t_over_4_plus_even(name):
    np.testing.assert_allclose(dual_kernel(name, T_GRID) - dual_kernel(name, -T_GRID), T_GRID / 2, rtol=0, atol=2e-15)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_kernel_nondecreasing_and_convex_on_unit_interval(name):
    # κ(t) = Σ_k c_k² t^k (Mehler) with c_k² ≥ 0: κ and κ' are nondecreasing on [0, 1]; the slack is rounding
    k = dual_kernel(name, np.linspace(0.0, 1.0, 101))
    assert np.all(np.diff(k) >= -1e-15)
    assert np.all(np.diff(k, 2) >= -1e-14)


def test_clipping_and_shape():
    assert dual_kernel("relu", 1.0 + 5e-13).shape == ()
    assert float(dual_kernel("relu", 1.0 + 5e-13)) == 0.5  # within 1e-12: clipped to 1
    assert float(dual_kernel("tanh", -1.0 - 5e-13)) == -float(dual_kernel("tanh", 1.0))
    assert dual_kernel("gelu", np.zeros((2, 3, 4))).shape == (2, 3, 4)


# ---------------------------------------------------------------------------------------------------------------
# 2. the generic Gauss–Hermite path against the closed forms


@pytest.mark.parametrize("name", ["erf", "sin", "identity"])
def test_gauss_hermite_matches_smooth_closed_forms(name):
    # entire integrands: the 160-node rule is converged (measured ≤ 4e-16); 1e-12 is the design's target with room
    quad = _gauss_hermite_dual(get_activation(name).phi, T_GRID)
    np.testing.assert_allclose(quad, dual_kernel(name, T_GRID), rtol=0, atol=1e-12)


def test_gauss_hermite_is_first_order_for_relu():
    # φ(u)φ(v) has kinks on the lines u = 0 and v = 0, where Gauss–Hermite nodes are spaced h ~ π/sqrt(2n): the rule
    # is O(h²) = O(1/n) (measured 0.13/n), so the error halves when n doubles, and is below 1e-3 at the default 160
    relu = get_activation("relu").phi
    exact = dual_kernel("relu", T_GRID)
    err80, err160 = (np.abs(_gauss_hermite_dual(relu, T_GRID, n) - exact).max() for n in (80, 160))
    assert err160 < 1e-3
    assert 1.8 < err80 / err160 < 2.2


@pytest.mark.parametrize("name", ["tanh", "gelu"])
def test_gauss_hermite_node_count_is_converged(name):
    # the default 160 nodes against 300 (the largest rule numpy builds): measured ≤ 2e-15, rounding of the sums;
    # against 80 nodes tanh still moves by 1.6e-10 (poles of tanh at ±iπ/2 slow the rule down)
    phi = get_activation(name).phi
    fine = _gauss_hermite_dual(phi, T_GRID, 300)
    assert np.abs(dual_kernel(name, T_GRID) - fine).max() < 1e-14
    if name == "tanh":
        assert np.abs(_gauss_hermite_dual(phi, T_GRID, 80) - fine).max() > 1e-11  # the check can see a change


# ---------------------------------------------------------------------------------------------------------------
# 3. κ'(1) = E[φ'(u)²]


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_derivative_at_one_is_mean_squared_slope(name):
    # quad of φ'² with φ' written out in this file: ~1e-14; closed forms exact, Gauss–Hermite ~1e-15
    assert abs(dual_derivative_at_one(name) - gaussian_mean(lambda u: PHI_PRIME[name](u) ** 2)) < 1e-12


def test_derivative_closed_forms():
    assert dual_derivative_at_one("identity") == 1.0
    assert dual_derivative_at_one("relu") == 0.5
    assert dual_derivative_at_one("erf") == pytest.approx(4 / (np.pi * np.sqrt(5)), abs=1e-16)
    assert dual_derivative_at_one("sin") == pytest.approx((1 + np.exp(-2.0)) / 2, abs=1e-16)


@pytest.mark.parametrize("name", SMOOTH)
def test_derivative_matches_one_sided_difference_of_the_kernel(name):
    # (3κ(1) - 4κ(1-h) + κ(1-2h))/(2h) = κ'(1) - (h²/3) κ'''(ξ), and 0 ≤ κ''' ≤ κ'''(1) = E[φ'''²] ≤ sup|φ'''|² ≤ 5.1
    # (erf: 4/sqrt(π)); h = 1e-4 bounds the truncation by 1.7e-8, rounding (κ to 2e-15) adds 4e-11
    h = 1e-4
    k = dual_kernel(name, [1.0, 1.0 - h, 1.0 - 2 * h])
    slope = (3 * k[0] - 4 * k[1] + k[2]) / (2 * h)
    assert abs(slope - dual_derivative_at_one(name)) < 2e-8


def test_relu_derivative_has_a_square_root_correction():
    # κ_relu(1-h) = (1-h)/2 + (sqrt(2)/(3π)) h^{3/2} + O(h^{5/2}): the one-sided slope misses 1/2 by
    # (sqrt(2)/(3π)) sqrt(h); relative corrections are O(h) and rounding is 1e-16/h = 1e-10 at h = 1e-6
    h = 1e-6
    slope = (float(dual_kernel("relu", 1.0)) - float(dual_kernel("relu", 1.0 - h))) / h
    assert (dual_derivative_at_one("relu") - slope) / np.sqrt(h) == pytest.approx(np.sqrt(2) / (3 * np.pi), rel=1e-4)


def test_callable_derivative_by_central_differences():
    # step 1e-5: truncation h²|φ'''|/6 ≤ 3.4e-11 for tanh (|tanh'''| ≤ 2), rounding ~eps/h = 2e-11: 1e-9 is safe
    with pytest.warns(UserWarning):
        user_tanh = get_activation(np.tanh)
        user_sin = get_activation(lambda u: np.sin(u))
    assert abs(dual_derivative_at_one(user_tanh) - dual_derivative_at_one("tanh")) < 1e-9
    assert abs(dual_derivative_at_one(user_sin) - (1 + np.exp(-2.0)) / 2) < 1e-9


# ---------------------------------------------------------------------------------------------------------------
# 4. Legendre (S^2) and cosine (S^1) series


T_POINTS = np.array([-1.0, -0.7, 0.0, 0.3, 0.9, 1.0])
THETA_POINTS = np.array([0.0, 0.4, 1.3, 2.2, np.pi])


@pytest.mark.parametrize("name", ["tanh", "gelu", "erf", "sin", "identity"])
def test_series_reproduce_smooth_kernels(name):
    # truncation at degree 40: erf a_l ~ 2.618^{-l} (singularity at t = 3/2) ~1e-17, tanh and gelu measured below
    # 1e-14, sin entire; coefficients are accurate to ~(2l+1) eps. Measured ≤ 4e-14 (S^2) and 2e-16 (S^1)
    a = legendre_coefficients(name, 40)
    np.testing.assert_allclose(legendre.legval(T_POINTS, a), dual_kernel(name, T_POINTS), rtol=0, atol=1e-12)
    b = cosine_coefficients(name, 40)
    series = np.cos(np.outer(THETA_POINTS, np.arange(41))) @ b
    np.testing.assert_allclose(series, dual_kernel(name, np.cos(THETA_POINTS)), rtol=0, atol=1e-12)


def test_identity_coefficients():
    np.testing.assert_allclose(legendre_coefficients("identity", 8), np.eye(9)[1], rtol=0, atol=1e-14)
    np.testing.assert_allclose(cosine_coefficients("identity", 8), np.eye(9)[1], rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_coefficients_are_nonnegative_before_clipping(name):
    # Schoenberg: κ_φ is positive definite on every sphere, so a_l, b_n ≥ 0; what the quadrature gives below 0 is
    # rounding, bounded by (2l+1) eps ~ 4e-14 at l = 80 (measured -9e-15) and eps for the FFT (measured -3e-17)
    act = get_activation(name)
    assert _legendre_unclipped(act, 80).min() > -1e-13
    assert _cosine_unclipped(act, 80).min() > -1e-15
    assert legendre_coefficients(name, 80).min() >= 0.0
    assert cosine_coefficients(name, 80).min() >= 0.0


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_parity_of_coefficients(name):
    # odd φ: κ odd, only odd l (P_l) and odd n (cos nθ at θ → π - θ) survive; relu, gelu: t/4 + even, so only
    # l = n = 1 among odd degrees. Zero to rounding: (2l+1) eps ≤ 4e-14 for l ≤ 80, eps for the FFT
    a, b = legendre_coefficients(name, 80), cosine_coefficients(name, 80)
    if name in ODD:
        assert a[0::2].max() < 1e-13
        assert b[0::2].max() < 1e-15
    if name in HALF_LINEAR:
        assert a[1] == pytest.approx(0.25, abs=1e-14)  # the t/4 term
        assert b[1] == pytest.approx(0.25, abs=1e-15)
        assert a[3::2].max() < 1e-13
        assert b[3::2].max() < 1e-15


def test_sums_of_coefficients_are_the_one_point_rate():
    # Σ a_l = κ(1) (P_l(1) = 1) and Σ b_n = κ(1); smooth kernels converge geometrically, 1e-13 is rounding
    for name in ("tanh", "gelu", "erf", "sin"):
        assert legendre_coefficients(name, 60).sum() == pytest.approx(float(dual_kernel(name, 1.0)), abs=1e-13)
        assert cosine_coefficients(name, 60).sum() == pytest.approx(float(dual_kernel(name, 1.0)), abs=1e-13)


def test_relu_coefficients_decay_like_the_fourth_power():
    # The (1 - t)^{3/2} terms of κ_relu at t = ±1, coefficient sqrt(2)/(3π) each, give for even l
    # a_l ≈ (3/π)(l + 1/2)^{-4}, so the tail κ(1) - Σ_{l≤L} a_l ≈ 1/(2π (L + 3/2)³); on S^1 the |θ|³/(6π) terms at
    # θ = 0, π give b_n ≈ (4/π²) n^{-4} and the tail ≈ 2/(3π² (N + 1)³). Next-order corrections are O(l^{-2}):
    # measured 2.7e-3 (a_40), 1.3e-3 (b_40), 4e-3 at most for the tails at 40 and 80
    a, b = legendre_coefficients("relu", 400), cosine_coefficients("relu", 400)
    ell = np.array([40, 60, 80])
    np.testing.assert_allclose(a[ell] * (ell + 0.5) ** 4 * np.pi / 3, 1.0, rtol=5e-3)
    np.testing.assert_allclose(b[ell] * ell**4.0 * np.pi**2 / 4, 1.0, rtol=5e-3)
    for cut in (40, 80):
        tail_a = 0.5 - a[: cut + 1].sum()  # the truncated one-point rate misses this much of κ(1) = 1/2
        tail_b = 0.5 - b[: cut + 1].sum()
        assert tail_a * 2 * np.pi * (cut + 1.5) ** 3 == pytest.approx(1.0, rel=1e-2)
        assert tail_b * 1.5 * np.pi**2 * (cut + 1) ** 3 == pytest.approx(1.0, rel=1e-2)


def test_cached_coefficients_are_not_shared():
    a = legendre_coefficients("erf", 10)
    a[:] = -1.0
    assert legendre_coefficients("erf", 10).min() >= 0.0
    b = cosine_coefficients("erf", 10)
    b[:] = -1.0
    assert cosine_coefficients("erf", 10).min() >= 0.0


def test_callable_coefficients_match_builtin():
    # the callable goes through the Gauss–Hermite rule (4e-16 from the closed form for sin), then the same
    # Legendre and FFT quadratures: agreement to rounding, amplified by (2l+1)/2 ≤ 12.5 for a_l
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        user = get_activation(np.sin)
    np.testing.assert_allclose(legendre_coefficients(user, 12), legendre_coefficients("sin", 12), rtol=0, atol=1e-13)
    np.testing.assert_allclose(cosine_coefficients(user, 12), cosine_coefficients("sin", 12), rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------------------------------------------
# 5. bad input


def test_bad_input():
    with pytest.raises(ValueError, match="activation must be one of .* or a callable, got 'foo'"):
        get_activation("foo")
    with pytest.raises(ValueError, match="activation must be one of"):
        dual_kernel(3.0, 0.5)
    with pytest.raises(ValueError, match="activation"):
        get_activation(Activation("foo", np.tanh, True))
    for t in (1.0 + 1e-9, [0.0, -1.1], np.nan):
        with pytest.raises(ValueError, match="t must"):
            dual_kernel("tanh", t)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="lmax"):
            legendre_coefficients("tanh", bad)
        with pytest.raises(ValueError, match="nmax"):
            cosine_coefficients("tanh", bad)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="elementwise"):
        dual_kernel(lambda u: np.sum(u), 0.5)


# ---------------------------------------------------------------------------------------------------------------
# 6. Monte Carlo


def test_monte_carlo_tanh():
    # 200000 correlated pairs: the sample mean is within 4 standard errors of κ_tanh(0.5) except with
    # probability 6e-5 (seeded, so deterministic)
    rng = np.random.default_rng(2024)
    n, t = 200_000, 0.5
    u = rng.standard_normal(n)
    v = t * u + np.sqrt(1 - t * t) * rng.standard_normal(n)
    prod = np.tanh(u) * np.tanh(v)
    se = prod.std(ddof=1) / np.sqrt(n)
    assert abs(prod.mean() - float(dual_kernel("tanh", t))) < 4 * se
