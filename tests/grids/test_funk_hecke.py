"""Funk–Hecke weights of exp(κ x·y): quadrature, power series, limits, parity, large κ and the resolving degree.

``zonal_weights(dim, κ, lmax)`` returns λ_l e^{-|κ|}, ∂_κλ_l e^{-|κ|}, λ_l e^{-|κ|}/κ and log_scale = |κ|, with
λ_l = 2π ∫_{-1}^{1} exp(κt) P_l(t) dt = 4π i_l(κ) on S^2 and λ_n = ∫_0^{2π} exp(κ cos ψ) cos(nψ) dψ = 2π I_n(κ) on S^1.
"""

import numpy as np
import pytest
from scipy.special import eval_legendre

from spde_tokens.grids import CircleGrid, SphereGrid, resolving_degree, zonal_weights

KAPPAS = [0.5, 1.0, 5.0, 20.0, -3.0]
LMAX = 40
EPS = np.finfo(float).eps
AREA = {2: 2 * np.pi, 3: 4 * np.pi}


# ---- references -----------------------------------------------------------------------------------------------
def _legendre_quadrature(kappa: float, lmax: int, nodes: int = 200, shift: float = 0.0):
    """2π ∫ exp(κ(t - shift)) P_l(t) dt and 2π ∫ t exp(κ(t - shift)) P_l(t) dt by Gauss–Legendre quadrature."""
    t, w = np.polynomial.legendre.leggauss(nodes)
    p = np.array([eval_legendre(ell, t) for ell in range(lmax + 1)])
    kernel = w * np.exp(kappa * (t - shift))
    return 2 * np.pi * p @ kernel, 2 * np.pi * p @ (t * kernel)


def _fourier_trapezoid(kappa: float, nmax: int, nodes: int = 400, shift: float = 0.0):
    """∫ exp(κ(cos ψ - shift)) cos(nψ) dψ and ∫ cos ψ exp(κ(cos ψ - shift)) cos(nψ) dψ by the trapezoid rule."""
    psi = 2 * np.pi * np.arange(nodes) / nodes
    c = np.cos(np.outer(np.arange(nmax + 1), psi))
    kernel = np.exp(kappa * (np.cos(psi) - shift)) * 2 * np.pi / nodes
    return c @ kernel, c @ (np.cos(psi) * kernel)


def _power_series(dim: int, kappa: float, lmax: int):
    """e^{-|κ|} λ_l and e^{-|κ|} ∂_κλ_l from the power series of i_l / I_n (terms of one sign: no cancellation).

    i_l(κ) = Σ_k κ^{l+2k} / (2^k k! (2l+2k+1)!!),   I_n(κ) = Σ_k (κ/2)^{n+2k} / (k! (n+k)!).
    """
    nterms = int(2 * abs(kappa)) + 80
    value, deriv = np.zeros(lmax + 1), np.zeros(lmax + 1)
    for ell in range(lmax + 1):
        if dim == 3:
            term = np.prod(kappa / (2.0 * np.arange(1, ell + 1) + 1.0))  # κ^l / (2l+1)!!
        else:
            term = np.prod((kappa / 2.0) / np.arange(1.0, ell + 1))  # (κ/2)^n / n!
        total, dtotal = 0.0, 0.0
        for k in range(nterms):
            total += term
            dtotal += (ell + 2 * k) * term / kappa
            if dim == 3:
                term *= (kappa**2 / 2.0) / ((k + 1) * (2 * ell + 2 * k + 3))
            else:
                term *= (kappa / 2.0) ** 2 / ((k + 1) * (ell + k + 1))
        scale = AREA[dim] * np.exp(-abs(kappa))
        value[ell], deriv[ell] = scale * total, scale * dtotal
    return value, deriv


# ---- against quadrature and series ----------------------------------------------------------------------------
@pytest.mark.parametrize("kappa", KAPPAS)
def test_sphere_weights_match_legendre_quadrature(kappa):
    zw = zonal_weights(3, kappa, LMAX)
    assert zw.log_scale == abs(kappa)
    assert zw.value.shape == zw.derivative.shape == zw.over_kappa.shape == (LMAX + 1,)
    lam = zw.value * np.exp(zw.log_scale)
    dlam = zw.derivative * np.exp(zw.log_scale)
    q, dq = _legendre_quadrature(kappa, LMAX)
    # 200 Gauss nodes integrate exp(κt)P_l exactly up to a 20^360/360! tail; the sum cancels terms as large as
    # λ_0 (= max_l |λ_l|) whose nodes/weights carry ~1e-14 relative error amplified by |κ|: observed ≤ 1.4e-13 λ_0
    # at κ = 20, so the floor is 1e-12 λ_0. The strict relative check is the power-series test below.
    floor = 1e-12 * np.abs(q).max()
    np.testing.assert_allclose(lam, q, rtol=1e-12, atol=floor)
    np.testing.assert_allclose(dlam, dq, rtol=1e-12, atol=1e-12 * np.abs(dq).max())


@pytest.mark.parametrize("kappa", KAPPAS)
def test_circle_weights_match_trapezoid(kappa):
    zw = zonal_weights(2, kappa, LMAX)
    assert zw.log_scale == abs(kappa)
    lam = zw.value * np.exp(zw.log_scale)
    dlam = zw.derivative * np.exp(zw.log_scale)
    q, dq = _fourier_trapezoid(kappa, LMAX)
    # the trapezoid rule is spectrally accurate for the periodic integrand (aliasing error ~I_{400-n}(κ) ≈ 0); its
    # round-off is ~eps·e^{|κ|}·2π ≈ 1e-15 λ_0 (observed ≤ 2.3e-15 λ_0): floor 1e-13 λ_0
    np.testing.assert_allclose(lam, q, rtol=1e-12, atol=1e-13 * q[0])
    np.testing.assert_allclose(dlam, dq, rtol=1e-12, atol=1e-13 * np.abs(dq).max())
    # weights above 1e-3 λ_0 sit far above that floor: 1e-12 relative
    big = np.abs(q) > 1e-3 * q[0]
    np.testing.assert_allclose(lam[big], q[big], rtol=1e-12, atol=0)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("kappa", [*KAPPAS, 200.0, -200.0])
def test_weights_match_power_series_to_relative_accuracy(dim, kappa):
    """Every weight, however small, to relative accuracy: the series has no cancellation."""
    zw = zonal_weights(dim, kappa, LMAX)
    value, deriv = _power_series(dim, kappa, LMAX)
    assert np.all(value != 0)
    # series: ~2k eps per term (k ≲ |κ|); scipy.special.ive: ~1e-14 (observed ≤ 2.5e-14 vs mpmath at κ = 20)
    rtol = 1e-13 + 4 * abs(kappa) * EPS
    np.testing.assert_allclose(zw.value, value, rtol=rtol, atol=0)
    np.testing.assert_allclose(zw.derivative, deriv, rtol=rtol, atol=0)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("kappa", KAPPAS)
def test_derivative_matches_central_difference(dim, kappa):
    h = 1e-5
    zw = zonal_weights(dim, kappa, LMAX)
    up = zonal_weights(dim, kappa + h, LMAX).value * np.exp(abs(kappa + h))
    down = zonal_weights(dim, kappa - h, LMAX).value * np.exp(abs(kappa - h))
    fd = (up - down) / (2 * h)
    dlam = zw.derivative * np.exp(zw.log_scale)
    # truncation h² λ'''/6 ≲ 1e-10 λ_0 and round-off eps λ_0 / h ≈ 2e-11 λ_0: 1e-8 of the largest derivative
    np.testing.assert_allclose(dlam, fd, rtol=0, atol=1e-8 * np.abs(dlam).max())


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("kappa", KAPPAS)
def test_over_kappa_is_value_over_kappa(dim, kappa):
    zw = zonal_weights(dim, kappa, LMAX)
    # one division, possibly in another order than the multiplication by the area: 2 roundings
    np.testing.assert_allclose(zw.over_kappa, zw.value / kappa, rtol=4 * EPS, atol=0)


# ---- κ = 0 and its neighbourhood ------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [2, 3])
def test_zero_kappa_limits(dim):
    """λ_l(0) = area δ_l0; ∂_κλ_l(0) = lim λ_l/κ = ∫ t P_1(t) = 4π/3 δ_l1 on S^2, π δ_n1 on S^1."""
    zw = zonal_weights(dim, 0.0, LMAX)
    first = 4 * np.pi / 3 if dim == 3 else np.pi
    delta0 = np.zeros(LMAX + 1)
    delta0[0] = AREA[dim]
    delta1 = np.zeros(LMAX + 1)
    delta1[1] = first
    assert zw.log_scale == 0.0
    # exact constants up to the rounding of one multiplication
    np.testing.assert_allclose(zw.value, delta0, rtol=EPS, atol=0)
    np.testing.assert_allclose(zw.derivative, delta1, rtol=2 * EPS, atol=0)
    np.testing.assert_allclose(zw.over_kappa, delta1, rtol=2 * EPS, atol=0)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("kappa", [1e-8, -1e-8])
def test_small_kappa_is_continuous_with_the_limit(dim, kappa):
    zw, limit = zonal_weights(dim, kappa, LMAX), zonal_weights(dim, 0.0, LMAX)
    # first-order Taylor: the scaled weights and derivatives move by ≤ 2·area·|κ| (e^{-|κ|} and the κ-slope)
    tol = 2 * AREA[dim] * abs(kappa)
    np.testing.assert_allclose(zw.value, limit.value, rtol=0, atol=tol)
    np.testing.assert_allclose(zw.derivative, limit.derivative, rtol=0, atol=tol)
    # λ_l/κ has a limit for l ≥ 1 only (λ_0/κ → ±∞): compare the degrees that have one
    np.testing.assert_allclose(zw.over_kappa[1:], limit.over_kappa[1:], rtol=0, atol=tol)


# ---- parity ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("kappa", [0.5, 3.0, 20.0, 200.0])
def test_negative_kappa_parity(dim, kappa):
    """λ_l(-κ) = (-1)^l λ_l(κ), hence ∂_κλ_l(-κ) = (-1)^{l+1} ∂_κλ_l(κ) and λ_l(-κ)/(-κ) = (-1)^{l+1} λ_l(κ)/κ."""
    plus, minus = zonal_weights(dim, kappa, LMAX), zonal_weights(dim, -kappa, LMAX)
    sign = (-1.0) ** np.arange(LMAX + 1)
    assert minus.log_scale == plus.log_scale == kappa
    # the same magnitudes with flipped signs: at most a couple of roundings apart
    np.testing.assert_allclose(minus.value, sign * plus.value, rtol=4 * EPS, atol=0)
    np.testing.assert_allclose(minus.derivative, -sign * plus.derivative, rtol=4 * EPS, atol=0)
    np.testing.assert_allclose(minus.over_kappa, -sign * plus.over_kappa, rtol=4 * EPS, atol=0)


# ---- large κ --------------------------------------------------------------------------------------------------
def test_large_kappa_sphere():
    kappa, lmax = 200.0, 60
    zw = zonal_weights(3, kappa, lmax)
    assert np.all(np.isfinite(zw.value)) and np.all(np.isfinite(zw.derivative)) and np.all(np.isfinite(zw.over_kappa))
    assert zw.log_scale == kappa
    # i_0(κ) = sinh κ / κ, so λ_0 e^{-κ} = 4π (1 - e^{-2κ}) / (2κ) = 4π/(2κ) to machine precision; ive: ~1e-14
    assert zw.value[0] == pytest.approx(4 * np.pi / (2 * kappa), rel=1e-13)
    # i_0'(κ) = i_1(κ) = (cosh κ - sinh κ/κ)/κ, so ∂λ_0 e^{-κ} = 4π (1 - 1/κ) / (2κ) up to e^{-2κ}
    assert zw.derivative[0] == pytest.approx(4 * np.pi * (1 - 1 / kappa) / (2 * kappa), rel=1e-13)
    # ratios against 2000-node quadrature of exp(κ(t-1))P_l(t) (shifted: no overflow); leggauss(2000) nodes near
    # t = 1 carry ~1e-13 error that exp(κ(t-1)) amplifies by κ: observed 2.4e-11 absolute on the ratios
    q, _ = _legendre_quadrature(kappa, lmax, nodes=2000, shift=1.0)
    np.testing.assert_allclose(zw.value / zw.value[0], q / q[0], rtol=0, atol=1e-10)
    # the weights decay monotonically and stay positive
    assert np.all(np.diff(zw.value) < 0) and np.all(zw.value > 0)


def test_large_kappa_circle():
    kappa, nmax = 200.0, 60
    zw = zonal_weights(2, kappa, nmax)
    assert np.all(np.isfinite(zw.value)) and np.all(np.isfinite(zw.derivative))
    # I_0(κ) e^{-κ} = (2πκ)^{-1/2} (1 + 1/(8κ) + 9/(128κ²) + 225/(3072κ³) + ...): next term ≈ 1e-10 at κ = 200
    asymptotic = (1 + 1 / (8 * kappa) + 9 / (128 * kappa**2) + 225 / (3072 * kappa**3)) / np.sqrt(2 * np.pi * kappa)
    assert zw.value[0] == pytest.approx(2 * np.pi * asymptotic, rel=1e-9)
    # trapezoid of exp(κ(cos ψ - 1)) cos nψ: aliasing ~I_{2000-n}(200) ≈ 0, round-off ~1e-15 (observed 3.7e-15)
    q, _ = _fourier_trapezoid(kappa, nmax, nodes=2000, shift=1.0)
    np.testing.assert_allclose(zw.value / zw.value[0], q / q[0], rtol=0, atol=1e-13)


# ---- resolving degree -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kappa", [16.0, 64.0, 200.0])
def test_resolving_degree_sphere(kappa):
    degree = resolving_degree(3, kappa)
    # the documented estimate 8.7 sqrt(κ), within 15%
    assert abs(degree - 8.7 * np.sqrt(kappa)) <= 0.15 * 8.7 * np.sqrt(kappa)
    ratios = np.abs(zonal_weights(3, kappa, degree).value)
    ratios = ratios / ratios[0]
    assert ratios[degree] < 1e-16
    assert ratios[degree - 1] >= 1e-16
    assert np.all(ratios[:degree] >= 1e-16)  # the smallest such degree


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("kappa", [0.0, 2.0, -30.0, 100.0])
def test_resolving_degree_is_the_first_small_ratio(dim, kappa):
    for tol in (1e-8, 1e-16):
        degree = resolving_degree(dim, kappa, tol=tol)
        ratios = np.abs(zonal_weights(dim, kappa, degree).value)
        ratios = ratios / ratios[0]
        assert ratios[degree] < tol and np.all(ratios[:degree] >= tol)


# ---- the Funk–Hecke theorem on the grids ----------------------------------------------------------------------
@pytest.mark.parametrize("kappa", [2.0, -1.5])
@pytest.mark.parametrize("grid", [SphereGrid(16), CircleGrid(32)], ids=["sphere16", "circle32"])
def test_convolution_on_the_grid(grid, kappa):
    """∫ exp(κ x·y) f(y) dA(y) = Σ λ_l f_lm Y_lm(x) and ∫ (x·y) exp(κ x·y) f(y) dA(y) = Σ ∂_κλ_l f_lm Y_lm(x)."""
    rng = np.random.default_rng(17)
    c = (rng.standard_normal(grid.n_coeff) + 1j * rng.standard_normal(grid.n_coeff)) / np.sqrt(grid.n_coeff)
    c[grid.degrees == 0] = c[grid.degrees == 0].real
    if grid.dim == 3:
        c[grid.orders == 0] = c[grid.orders == 0].real
    f = grid.synthesis(c).ravel()
    x = grid.points().reshape(-1, grid.dim)
    dot = np.clip(x @ x.T, -1.0, 1.0)
    kernel = np.exp(kappa * dot) * grid.weights().ravel()
    zw = grid.zonal_weights(kappa)
    scale = np.exp(zw.log_scale)
    conv = grid.synthesis(grid.per_degree(zw.value * scale) * c).ravel()
    dconv = grid.synthesis(grid.per_degree(zw.derivative * scale) * c).ravel()
    # the quadrature is exact up to the kernel's tail beyond the grid's exactness (~i_33(2) ≈ 1e-37); round-off of
    # ~10^3-term sums of size ≤ e^2 |f|: 1e-12 of the result's size
    np.testing.assert_allclose(kernel @ f, conv, rtol=0, atol=1e-12 * np.abs(conv).max())
    np.testing.assert_allclose((dot * kernel) @ f, dconv, rtol=0, atol=1e-12 * np.abs(dconv).max())


# ---- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "name"), [((4, 1.0, 8), "dim"), ((1, 1.0, 8), "dim"), ((3, np.nan, 8), "kappa"),
                                            ((2, np.inf, 8), "kappa")])
def test_bad_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        zonal_weights(*args)
