"""The zonal grid on S^{d−1} (docs/mathematics.md, 'The zonal grid (any dimension)') and its Funk–Hecke weights.

Coefficients are taken against the normalized measure σ (σ(S^{d−1}) = 1): f_l = ∫ f Y_l dσ with Y_l the orthonormal
Gegenbauer polynomials of s = x·e_d, whose law under σ is c_d (1 − s²)^{(d−3)/2} ds. References are independent of
the grid's recurrences: closed-form moments, scipy's Gegenbauer and Jacobi routines at sizes where they are accurate,
Chebyshev and Legendre closed forms, and the SphereGrid and CircleGrid at d = 3 and d = 2.
"""

import numpy as np
import pytest
from scipy.special import eval_gegenbauer, roots_gegenbauer, roots_jacobi

from spde_tokens.grids import CircleGrid, SphereGrid, ZonalGrid, grid_from_attrs, resolving_degree
from spde_tokens.grids.funk_hecke import normalized_zonal_weights, zonal_weights
from spde_tokens.grids.zonal import gauss_nodes

EPS = np.finfo(float).eps


def _bessel_ratio(order: float, kappa: float) -> float:
    """I_order(κ)/I_{order−1}(κ) by the backward recurrence of the ratios r_v = 1/(2v/κ + r_{v+1}) from r = 0 far
    above (Gauss' continued fraction; every step contracts the error, so the start is forgotten)."""
    r = 0.0
    for v in np.arange(order + 2.0 * kappa + 400.0, order - 0.5, -1.0):
        r = 1.0 / (2.0 * v / kappa + r)
    return r


def _gegenbauer_weights(dim: int, kappa: float, lmax: int, nodes: int = 160):
    """μ_l(κ) e^{−|κ|} and its κ-derivatives (times e^{−|κ|}) by Gauss–Jacobi quadrature of the Funk–Hecke integral

        μ_l(κ) = ∫ e^{κs} C_l(s) (1 − s²)^{(d−3)/2} ds / (C_l(1) ∫ (1 − s²)^{(d−3)/2} ds),

    with scipy's Gegenbauer polynomials C_l = C_l^{((d−2)/2)}; ∂_κ and ∂²_κ put s and s² in the integrand."""
    lam = 0.5 * (dim - 2)
    s, w = roots_jacobi(nodes, lam - 0.5, lam - 0.5)
    w = w / w.sum()
    c = np.array([eval_gegenbauer(ell, lam, s) / eval_gegenbauer(ell, lam, 1.0) for ell in range(lmax + 1)])
    kernel = w * np.exp(kappa * s - abs(kappa))
    return c @ kernel, c @ (s * kernel), c @ (s * s * kernel)


# ---- Funk–Hecke weights on the normalized measure ----------------------------------------------------------------
@pytest.mark.parametrize("dim", [4, 8, 64])
@pytest.mark.parametrize("kappa", [0.5, 5.0, 20.0, -3.0])
def test_weights_match_the_funk_hecke_integral(dim, kappa):
    lmax = 40
    zw = normalized_zonal_weights(dim, kappa, lmax)
    scale = np.exp(zw.log_scale - abs(kappa))  # the quadrature below is scaled by e^{−|κ|}
    value, first, second = _gegenbauer_weights(dim, kappa, lmax)
    # 160 Jacobi nodes integrate e^{κs} C_l exactly up to a 20^280/280! tail; the sums cancel terms of size ≤ μ_0
    # whose nodes, weights and C_l carry ~1e-14 relative error (scipy, measured): 1e-13 of the largest weight
    for got, ref in ((zw.value, value), (zw.derivative, first), (zw.second_derivative, second)):
        np.testing.assert_allclose(got * scale, ref, rtol=0, atol=1e-13 * np.abs(ref).max())
    assert zw.value[0] == 1.0 and np.all(np.abs(zw.value) <= 1.0)  # scaled by the largest weight μ_0(|κ|)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("kappa", [1e-8, 0.5, 5.0, 20.0, -3.0, 200.0, 700.0])
def test_weights_are_those_of_the_circle_and_sphere_over_their_length(dim, kappa):
    """μ_l = λ_l/|S^{d−1}| with λ_l the weights of S^1 (2π I_n) and S^2 (4π i_l)."""
    norm, area = normalized_zonal_weights(dim, kappa, 60), {2: 2 * np.pi, 3: 4 * np.pi}[dim]
    ref = zonal_weights(dim, kappa, 60)
    ratio = area * np.exp(norm.log_scale - ref.log_scale)
    # both are ive values (relative accuracy ~1e-14, test_funk_hecke) recombined with the scale e^{log μ_0 − |κ|},
    # whose logarithm carries |κ| eps of rounding
    rtol = 1e-13 + 4 * abs(kappa) * EPS
    for name in ("value", "derivative", "over_kappa", "second_derivative"):
        got, want = getattr(norm, name) * ratio, getattr(ref, name)
        normal = np.abs(want) > 1e-290  # ive underflows below, where the Bessel series keeps the tiny weights
        np.testing.assert_allclose(got[normal], want[normal], rtol=rtol, atol=0, err_msg=name)
        assert np.all(np.abs(got[~normal]) <= 1e-290)


@pytest.mark.parametrize("dim", [2, 4, 8, 1024])
def test_zero_kappa_limits(dim):
    """μ_l(0) = δ_l0 and ∂_κ μ_l(0) = lim μ_l/κ = ∫ s Ĉ_l dσ = δ_l1 E[s²] = δ_l1/d; ∂²_κ μ_0(0) = E[s²] = 1/d."""
    zw = normalized_zonal_weights(dim, 0.0, 10)
    assert zw.log_scale == 0.0
    delta1 = np.where(np.arange(11) == 1, 1.0 / dim, 0.0)
    np.testing.assert_array_equal(zw.value, np.where(np.arange(11) == 0, 1.0, 0.0))
    # exact constants up to one division
    np.testing.assert_allclose(zw.derivative, delta1, rtol=EPS, atol=0)
    np.testing.assert_allclose(zw.over_kappa, delta1, rtol=EPS, atol=0)
    assert zw.second_derivative[0] == pytest.approx(1.0 / dim, rel=EPS)
    # and the weights near κ = 0 join the limit (first order in κ, slopes ≤ 1)
    near = normalized_zonal_weights(dim, 1e-9, 10)
    np.testing.assert_allclose(near.value, zw.value, rtol=0, atol=2e-9)
    np.testing.assert_allclose(near.over_kappa[1:], zw.over_kappa[1:], rtol=0, atol=2e-9)


@pytest.mark.parametrize("dim", [4, 64, 1024])
@pytest.mark.parametrize("kappa", [0.5, 30.0, 500.0])
def test_negative_kappa_parity(dim, kappa):
    plus, minus = normalized_zonal_weights(dim, kappa, 30), normalized_zonal_weights(dim, -kappa, 30)
    sign = (-1.0) ** np.arange(31)
    assert minus.log_scale == plus.log_scale
    # the same magnitudes with flipped signs: a couple of roundings apart
    np.testing.assert_allclose(minus.value, sign * plus.value, rtol=4 * EPS, atol=0)
    np.testing.assert_allclose(minus.derivative, -sign * plus.derivative, rtol=4 * EPS, atol=0)
    np.testing.assert_allclose(minus.over_kappa, -sign * plus.over_kappa, rtol=4 * EPS, atol=0)


@pytest.mark.parametrize("dim", [8, 64])
@pytest.mark.parametrize("kappa", [1.0, 10.0])
def test_derivatives_match_central_differences(dim, kappa):
    h = 1e-4

    def unscaled(k):
        zw = normalized_zonal_weights(dim, k, 20)
        return zw.value * np.exp(zw.log_scale), zw.derivative * np.exp(zw.log_scale)

    value, deriv = unscaled(kappa)
    (up, dup), (down, ddown) = unscaled(kappa + h), unscaled(kappa - h)
    second = normalized_zonal_weights(dim, kappa, 20)
    second = second.second_derivative * np.exp(second.log_scale)
    # truncation h² max|μ'''|/6 ≤ 2e-9 of the largest derivative (|μ'''| ≤ E|s|³ e^{κs} ≤ μ_0); round-off: the
    # unscaled weights carry ~100 eps of relative error through log μ_0 (gammaln(ν+1) ≈ 80 at d = 64), over h:
    # 2e-10 of μ_0. Together below 1e-8 of the largest derivative
    np.testing.assert_allclose(deriv, (up - down) / (2 * h), rtol=0, atol=1e-8 * np.abs(deriv).max())
    np.testing.assert_allclose(second, (dup - ddown) / (2 * h), rtol=0, atol=1e-8 * np.abs(second).max())


@pytest.mark.parametrize("dim", [1024, 4096])
@pytest.mark.parametrize("kappa", [1e-8, 1.0, 50.0, 500.0, -500.0, 5000.0])
def test_high_dimensions_do_not_overflow(dim, kappa):
    """Finite weights at d in the thousands; μ_1/μ_0 is the Bessel ratio I_{d/2}(κ)/I_{d/2−1}(κ), the mean
    resultant length of the von Mises–Fisher law (here from the continued fraction)."""
    zw = normalized_zonal_weights(dim, kappa, 200)
    for name in ("value", "derivative", "over_kappa", "second_derivative"):
        assert np.all(np.isfinite(getattr(zw, name))), name
    assert np.isfinite(zw.log_scale) and zw.value[0] == 1.0
    assert np.all(np.abs(zw.value) <= 1.0) and np.all(np.abs(np.diff(np.abs(zw.value))) >= 0)
    # the ratio of two ive values (or of two Bessel series where ive underflows): relative accuracy ~1e-14 each; the
    # continued fraction sums 2κ + 400 contracting steps of one rounding each
    expected = np.sign(kappa) * _bessel_ratio(dim / 2.0, abs(kappa))
    assert zw.value[1] == pytest.approx(expected, rel=1e-13 + 4 * abs(kappa) * EPS)
    # log μ_0 against the series of ₀F₁(; d/2; κ²/4) = Σ_k (κ²/4)^k / (k! (d/2)_k), where it converges fast
    if kappa**2 <= 2 * dim:
        term, total = 1.0, 1.0
        for k in range(200):
            term *= kappa**2 / 4 / ((k + 1) * (dim / 2 + k))
            total += term
        # μ_0 is then summed by the same kind of series (the implementation's, with running rescaling): sums of
        # ≤ 200 positive terms, 200 eps relative each
        assert zw.log_scale == pytest.approx(np.log(total), abs=400 * EPS)


@pytest.mark.parametrize("dim", [4, 8, 64, 1024])
@pytest.mark.parametrize("kappa", [0.0, 2.0, -30.0, 100.0])
def test_resolving_degree_in_any_dimension(dim, kappa):
    for tol in (1e-8, 1e-16):
        degree = resolving_degree(dim, kappa, tol=tol)
        ratios = np.abs(normalized_zonal_weights(dim, kappa, degree).value)
        assert ratios[degree] < tol * ratios[0] and np.all(ratios[:degree] >= tol * ratios[0])


@pytest.mark.parametrize(("args", "name"), [((1, 1.0, 8), "dim"), ((4.5, 1.0, 8), "dim"), ((4, np.nan, 8), "kappa")])
def test_weights_bad_arguments(args, name):
    with pytest.raises(ValueError, match=name):
        normalized_zonal_weights(*args)


# ---- nodes and quadrature -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [2, 3, 4, 8, 64, 2048])
@pytest.mark.parametrize("n", [96, 384, 768])
def test_quadrature_is_exact_for_the_moments(dim, n):
    """Σ w_i s_i^j = E[s^j] for j ≤ 2n − 1: E[s^{2k}] = (1/2)_k/(d/2)_k = B(k + ½, (d−1)/2)/B(½, (d−1)/2), odd
    moments 0 (the reference is the product Π_{i<k} (i + ½)/(i + d/2), k roundings; gammaln loses 1e-12 here)."""
    s, log_w = gauss_nodes(dim, n)
    w = np.exp(log_w)
    k = np.arange(n)
    exact = np.concatenate([[1.0], np.cumprod((k[:-1] + 0.5) / (k[:-1] + dim / 2.0))])
    quad = np.array([w @ s ** (2 * j) for j in k])
    odd = np.array([w @ s ** (2 * j + 1) for j in k])
    keep = exact > 1e-280  # moments of order 2k at d = 2048 reach e^{-1000}
    # the sum of n positive terms (n eps), node rounding in s^{2k} (2k eps), weights through log space
    # (max |log w| eps), the reference (k eps): measured ≤ 0.1 of this bound
    bound = EPS * (2 * n + 2 * k[keep] + np.abs(log_w).max())
    np.testing.assert_array_less(np.abs(quad[keep] / exact[keep] - 1), bound)
    # odd moments vanish by the symmetry of the nodes: only the summation order rounds, n eps of Σ|terms| ≤ E[s^{2j}]^½
    assert np.all(np.abs(odd) <= n * EPS * np.sqrt(exact))
    assert np.all(np.diff(s) > 0) and np.array_equal(s, -s[::-1])


@pytest.mark.parametrize("dim", [4, 8])
@pytest.mark.parametrize("n", [16, 48])
def test_nodes_match_scipy_where_it_is_accurate(dim, n):
    s, log_w = gauss_nodes(dim, n)
    x, w = roots_gegenbauer(n, 0.5 * (dim - 2))
    # nodes of O(1) in [−1, 1] to a few ulps; weights (normalized to sum 1) to n eps of the largest
    np.testing.assert_allclose(s, x, rtol=0, atol=4 * EPS)
    np.testing.assert_allclose(np.exp(log_w), w / w.sum(), rtol=0, atol=n * EPS * w.max() / w.sum())


def test_closed_form_rules_of_the_circle_and_the_sphere():
    """d = 2: Chebyshev nodes cos((2i+1)π/2n) with weights 1/n; d = 3: Gauss–Legendre with weights w/2."""
    n = 200
    s, log_w = gauss_nodes(2, n)
    np.testing.assert_allclose(s, np.sort(np.cos((2 * np.arange(n) + 1) * np.pi / (2 * n))), rtol=0, atol=4 * EPS)
    # the Christoffel sum over n degrees: near s = ±1 the recurrence carries each rounding into Y_k with a factor up
    # to k (U_k(1) = k + 1), so the sum may lose n² eps (measured 6e-14, 0.007 of that)
    np.testing.assert_allclose(np.exp(log_w), 1.0 / n, rtol=n * n * EPS, atol=0)
    s, log_w = gauss_nodes(3, 64)
    x, w = np.polynomial.legendre.leggauss(64)
    np.testing.assert_allclose(s, x, rtol=0, atol=4 * EPS)
    # numpy's weights err by up to ~n³ eps/50 (1.3e-12 at n = 64 against extended precision; ours 2e-14)
    np.testing.assert_allclose(np.exp(log_w), w / 2, rtol=64**3 * EPS / 10, atol=0)


# ---- transforms ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [4, 8, 64, 512, 2048])
@pytest.mark.parametrize("lmax", [127, 511])
def test_round_trip(dim, lmax):
    grid = ZonalGrid(dim, lmax)
    rng = np.random.default_rng(dim + lmax)
    c = rng.standard_normal(lmax + 1)
    c /= np.linalg.norm(c)
    f = grid.synthesis(c)
    assert f.shape == grid.shape and f.dtype == float
    # every coefficient is Σ_i √w_i Y_l(s_i) (Σ_k √w_i Y_k(s_i) c_k): sums of n + lmax + 1 terms of an orthogonal
    # matrix, error ≤ (n + lmax + 1) eps ‖c‖ (Higham's bound; measured ≤ 0.1 of it). With ‖c‖ = 1 the bound is
    # 7e-14 at lmax 127 and 2.8e-13 at lmax 511
    bound = EPS * (grid.nodes + lmax + 1)
    assert np.abs(grid.analysis(f) - c).max() <= bound
    # and the field: √w_i f_i = Σ_k √w_i Y_k(s_i) c_k, so compare √w-weighted values
    sqrt_w = np.sqrt(grid.weights())
    assert np.abs(sqrt_w * (grid.synthesis(grid.analysis(f)) - f)).max() <= 2 * bound


@pytest.mark.parametrize("dim", [2, 3, 4, 8, 64, 512])
def test_laplacian_by_gradient_and_divergence(dim):
    """div_S ∇_S Y_l = −l(l + d − 2) Y_l for every degree, through the grid's gradient/divergence pair."""
    grid = ZonalGrid(dim, 63)
    eigen = -np.arange(64) * (np.arange(64) + dim - 2.0)
    lap = np.array([grid.divergence(grid.gradient(row)) for row in np.eye(64)]).T  # column l: div grad Y_l
    # each entry is a sum over n nodes of products of √w Y_l' √(1 − s²), of size ≤ l(l + d − 2): n eps |λ_max|
    np.testing.assert_allclose(lap, np.diag(eigen), rtol=0, atol=EPS * (grid.nodes + 64) * np.abs(eigen).max())
    np.testing.assert_array_equal(grid.laplacian_eigenvalues, eigen)


@pytest.mark.parametrize("dim", [2, 3, 8, 64])
def test_gradient_and_divergence_of_closed_forms(dim):
    """∇_S s = e_d − s x has u-component √(1 − s²); ∇_S s³ has 3s²√(1 − s²); div_S(√(1 − s²) u) = div_S(e_d − s x)
    = −(d − 1) s, whose only coefficient is −(d − 1)/√d at degree 1 (s = Y_1/√d)."""
    grid = ZonalGrid(dim, 16)
    s, sine = grid.s, np.sqrt(1 - grid.s**2)
    sqrt_w = np.sqrt(grid.weights())
    # the analyses of polynomials are exact up to the rounding of n-term sums, and a rounding ε in a coefficient of
    # degree l comes back in the gradient as ε ∂_u Y_l(s_i), up to ~1/√w_i at the outer nodes of high dimensions.
    # So compare √w-weighted values (the synthesis is then an orthogonal matrix): (n + lmax) eps times the largest
    # √(l(l + d − 2)) and the √d size of the coefficients of s-polynomials
    tol = EPS * (grid.nodes + 17) * np.sqrt(16 * (14 + dim)) * np.sqrt(dim)
    np.testing.assert_allclose(sqrt_w * grid.gradient(grid.analysis(s))[0], sqrt_w * sine, rtol=0, atol=tol)
    np.testing.assert_allclose(sqrt_w * grid.gradient(grid.analysis(s**3))[0], sqrt_w * 3 * s * s * sine, rtol=0,
                               atol=tol)
    expected = np.zeros(17)
    expected[1] = -(dim - 1) / np.sqrt(dim)
    np.testing.assert_allclose(grid.divergence(sine[None]), expected, rtol=0, atol=tol)


def test_constant_power_spectrum_and_parseval():
    grid = ZonalGrid(8, 40)
    c = grid.analysis(np.ones(grid.shape))
    # 1 = Y_0 and area = 1: f_0 = 1, the others vanish to the rounding of n-term sums
    np.testing.assert_allclose(c, np.eye(41)[0], rtol=0, atol=EPS * grid.nodes)
    rng = np.random.default_rng(3)
    a = rng.standard_normal(41) / np.sqrt(41)
    p = grid.power_spectrum(a)
    np.testing.assert_array_equal(p, a**2)
    # Gauss quadrature is exact for the degree-80 square: rounding of n-term sums of O(1) values
    assert p.sum() == pytest.approx(grid.integrate(grid.synthesis(a) ** 2), abs=1e-13)


# ---- agreement with the sphere and the circle ---------------------------------------------------------------------
def test_agrees_with_the_sphere_grid_on_zonal_fields():
    """d = 3: the ZonalGrid(3, 20) has the 32 Gauss–Legendre latitudes of SphereGrid(20); a zonal field has the
    sphere coefficients f_l0 = sqrt(4π) f_l and no others (Y_l = sqrt(4π) Y_l0, dσ = dA/4π)."""
    zonal, sphere = ZonalGrid(3, 20), SphereGrid(20)
    assert sphere.nlat == zonal.nodes
    np.testing.assert_allclose(zonal.s, sphere.cos_theta[::-1], rtol=0, atol=4 * EPS)
    # the sphere's weights are numpy's leggauss ones, which err by up to ~n³ eps/50 (6e-14 at n = 32 against
    # extended precision; ours 3e-15)
    np.testing.assert_allclose(zonal.weights(), sphere.weights().sum(axis=1)[::-1] / (4 * np.pi),
                               rtol=32**3 * EPS / 10)
    f = np.exp(1.5 * sphere.points()[..., 2]) * (1 + sphere.points()[..., 2] ** 2)  # zonal, not band-limited
    cs = sphere.analysis(f)
    cz = zonal.analysis(np.exp(1.5 * zonal.s) * (1 + zonal.s**2))
    # the same quadrature sums (same latitudes) in other orders: rounding of 32-term and FFT sums of O(e^1.5) values
    tol = 1e-13
    np.testing.assert_allclose(cs[sphere.orders == 0], np.sqrt(4 * np.pi) * cz, rtol=0, atol=tol)
    np.testing.assert_allclose(cs[sphere.orders > 0], 0.0, rtol=0, atol=tol)
    np.testing.assert_allclose(zonal.synthesis(cz), sphere.synthesis(cs)[::-1, 0], rtol=0, atol=tol)
    # u = (e_3 − s x)/√(1 − s²) = −e_θ
    grad = sphere.gradient(cs)
    np.testing.assert_allclose(zonal.gradient(cz)[0], -grad[0][::-1, 0], rtol=0, atol=20 * tol)
    np.testing.assert_allclose(zonal.points(), sphere.points()[::-1, 0], rtol=0, atol=4 * EPS)
    np.testing.assert_allclose(zonal.tangent_basis()[0], -sphere.tangent_basis()[0][::-1, 0], rtol=0, atol=4 * EPS)
    # point evaluation at tokens in R^3 off the meridian, and the Funk–Hecke weights
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(zonal.evaluate(cz, x), sphere.evaluate(cs, x), rtol=0, atol=tol)
    np.testing.assert_allclose(zonal.empirical_coefficients(x).real,
                               np.sqrt(4 * np.pi) * sphere.empirical_coefficients(x)[sphere.orders == 0].real, rtol=0,
                               atol=tol)


def test_agrees_with_the_circle_grid_on_zonal_fields():
    """d = 2: x = (cos θ, sin θ), s = sin θ, Y_l(s) = √2 T_l(sin θ) = √2 cos(l(θ − π/2)); u = e_θ. The 25 Chebyshev
    nodes of ZonalGrid(2, 24, dealias=False) are nodes of the 100-point CircleGrid(32)."""
    zonal, circle = ZonalGrid(2, 24, dealias=False), CircleGrid(32)
    assert circle.nodes == 4 * zonal.nodes
    match = np.argmax(zonal.points() @ circle.points().T, axis=1)
    np.testing.assert_allclose(circle.points()[match], zonal.points(), rtol=0, atol=4 * EPS)
    rng = np.random.default_rng(1)
    cz = rng.standard_normal(25) / 5
    ell = np.arange(25)[:, None]
    basis = np.where(ell == 0, 1.0, np.sqrt(2) * np.cos(ell * (circle.theta - np.pi / 2)))
    f = cz @ basis  # on the circle's nodes
    cc = circle.analysis(f)
    # sums of ≤ 100 terms of size ≤ max|f|
    tol = 100 * EPS * np.abs(f).max()
    np.testing.assert_allclose(zonal.synthesis(cz), f[match], rtol=0, atol=tol)
    # f_l = Re(i^l c_l)/√π (l ≥ 1), f_0 = c_0/√(2π), c_l the circle's coefficients
    expected = np.real(1j ** np.arange(25) * cc[:25]) / np.sqrt(np.pi)
    expected[0] = cc[0].real / np.sqrt(2 * np.pi)
    np.testing.assert_allclose(zonal.analysis(zonal.synthesis(cz)), expected, rtol=0, atol=tol)
    np.testing.assert_allclose(cc[25:], 0.0, rtol=0, atol=tol)
    # gradients: d/dθ f on the circle is the u-component (derivatives of degree ≤ 24: 24 × the rounding)
    np.testing.assert_allclose(zonal.gradient(cz)[0], circle.gradient(cc)[0][match], rtol=0, atol=24 * tol)


# ---- geometry, evaluation, attributes -----------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [2, 5, 64])
def test_points_frame_and_coordinates(dim):
    grid = ZonalGrid(dim, 12)
    x, u = grid.points(), grid.tangent_basis()[0]
    assert x.shape == (grid.nodes, dim) and u.shape == (grid.nodes, dim)
    # unit, orthogonal vectors built from s and √(1 − s²): a few roundings
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=0, atol=4 * EPS)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=0, atol=4 * EPS)
    np.testing.assert_allclose(np.sum(x * u, axis=1), 0.0, rtol=0, atol=4 * EPS)
    np.testing.assert_array_equal(x[:, -1], grid.s)
    # u = (e_d − s x)/√(1 − s²): the tangent part of e_d is √(1 − s²) u
    e = np.eye(dim)[-1]
    np.testing.assert_allclose(grid.to_tangent(e)[0], np.sqrt(1 - grid.s**2), rtol=0, atol=4 * EPS)
    np.testing.assert_allclose(grid.from_tangent(grid.to_tangent(e)), e - grid.s[:, None] * x, rtol=0, atol=4 * EPS)
    # the zonal projections of the coordinates: 0 off the axis, s = Y_1/√d on it
    coords = grid.coordinate_coefficients()
    assert coords.shape == (dim, 13) and np.count_nonzero(coords) == 1
    assert coords[-1, 1] == pytest.approx(1 / np.sqrt(dim), rel=EPS)


@pytest.mark.parametrize("dim", [4, 8, 64])
def test_basis_at_tokens_is_the_normalized_gegenbauer_polynomial(dim):
    """Y_l(s) = C_l^{(λ)}(s) sqrt((l + λ)/(λ C_l^{(λ)}(1))) (∫ C_l² dσ = λ C_l(1)/(l + λ)), at tokens in R^d."""
    grid = ZonalGrid(dim, 30)
    lam = 0.5 * (dim - 2)
    rng = np.random.default_rng(dim)
    x = rng.standard_normal((200, dim)) + 2 * np.eye(dim)[-1]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    s = x[:, -1]
    ref = np.array([eval_gegenbauer(ell, lam, s) * np.sqrt((ell + lam) / (lam * eval_gegenbauer(ell, lam, 1.0)))
                    for ell in range(31)])
    # scipy and the recurrence both round: 30 steps of a few ulps of the largest value (measured ≤ 7e-15 of it)
    tol = 1e-13 * np.abs(ref).max()
    np.testing.assert_allclose(grid.basis_values(s), ref, rtol=0, atol=tol)
    c = rng.standard_normal(31)
    np.testing.assert_allclose(grid.evaluate(c, x), c @ ref, rtol=0, atol=31 * tol)
    np.testing.assert_allclose(grid.empirical_coefficients(x).real, ref.mean(axis=1), rtol=0, atol=tol)
    np.testing.assert_allclose(grid.evaluate_zonal(c, s.reshape(10, 20)), (c @ ref).reshape(10, 20), rtol=0,
                               atol=31 * tol)


def test_funk_hecke_convolution_on_the_grid_in_eight_dimensions():
    """∫ e^{κ x·y} f(y) dσ(y) = Σ_l μ_l f_l Y_l(x) at the nodes, against the direct double quadrature over S^7:
    y = (√(1 − t²) ω, t), x·y = s t + √(1 − s²)√(1 − t²) ω_1, ω_1 of law ∝ (1 − u²)^{(d−4)/2} = (1 − u²)² on [−1, 1]."""
    dim, kappa = 8, 3.0
    grid = ZonalGrid(dim, 24)
    rng = np.random.default_rng(2)
    c = rng.standard_normal(25) * 0.5 ** np.arange(25)
    f = grid.synthesis(c)
    u, wu = np.polynomial.legendre.leggauss(80)
    wu = wu * (1 - u * u) ** 2
    wu /= wu.sum()
    s, t = grid.s[:, None, None], grid.s[None, :, None]
    dot = s * t + np.sqrt(1 - s * s) * np.sqrt(1 - t * t) * u
    kernel = np.exp(kappa * dot) @ wu  # (nodes, nodes): the ω-average of e^{κ x_i·y}
    direct = kernel @ (grid.weights() * f)
    zw = grid.zonal_weights(kappa)
    spectral = grid.synthesis(zw.value * np.exp(zw.log_scale) * c)
    # both exact (the Gauss rules integrate the band-limited f times the kernel's entire ω- and t-dependence to
    # its Taylor tail 3^80/80!); round-off of ~3000-term sums of size ≤ e^3 |f|: 1e-12 of the result
    np.testing.assert_allclose(direct, spectral, rtol=0, atol=1e-12 * np.abs(spectral).max())


def test_attributes_coordinates_and_rebuild():
    grid = ZonalGrid(16, 20, dealias=False, threads=2)
    attrs = grid.attrs()
    assert attrs == {"grid": "zonal", "grid_dim": 16, "grid_lmax": 20, "grid_nodes": 21, "grid_dealias": 0,
                     "grid_threads": 2}
    again = grid_from_attrs(attrs)
    assert isinstance(again, ZonalGrid) and (again.dim, again.lmax, again.nodes, again.threads) == (16, 20, 21, 2)
    np.testing.assert_array_equal(again.s, grid.s)
    name, values, cf = grid.coords()["s"]
    assert name == "s" and np.array_equal(values, grid.s)
    assert cf == {"long_name": "cosine of the polar angle, x·e_d", "units": "1"}
    assert grid.dims == ("s",) and grid.shape == (21,) and grid.area == 1.0 and grid.n_tangent == 1
    assert np.array_equal(grid.order_weight, np.ones(21)) and grid.degree_max == 20
    assert ZonalGrid(16, 20).nodes == 32  # ⌈3 · 21/2⌉
    assert repr(grid) == "ZonalGrid(dim=16, lmax=20, nodes=21)"


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"dim": 1, "lmax": 8}, "dim"), ({"dim": 4.0, "lmax": 8}, "dim"), ({"dim": 4, "lmax": 3}, "lmax"),
    ({"dim": 4, "lmax": 8, "dealias": "yes"}, "dealias"), ({"dim": 4, "lmax": 8, "threads": 0}, "threads"),
    ({"dim": 2048, "lmax": 1023}, "lmax"),
])
def test_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ZonalGrid(**kwargs)


def test_points_of_another_sphere_are_refused():
    grid = ZonalGrid(5, 8)
    for pts in (np.eye(4)[-1:], np.eye(6)[-1:], np.ones((1, 5)), np.eye(5)[-1]):
        with pytest.raises(ValueError, match="points"):
            grid.evaluate(np.ones(9), pts)
