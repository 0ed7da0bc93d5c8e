"""Diagnostics (docs/mathematics.md, 'Diagnostics') against direct quadrature and closed forms."""

import numpy as np
import pytest
from scipy.special import iv

import spde_tokens as st
from spde_tokens import diagnostics as diag

S2 = st.SphereGrid(20)
S1 = st.CircleGrid(48)


def _direct_energy(grid, rho, beta):
    """(1/(2β)) ∫∫ expm1(β x·y) ρ ρ by the grid's product quadrature (½|m|² at β = 0)."""
    x = grid.points().reshape(-1, grid.dim)
    w = (grid.weights() * rho).ravel()
    if beta == 0:
        m = w @ x
        return 0.5 * m @ m
    return w @ np.expm1(beta * x @ x.T) @ w / (2 * beta)


@pytest.mark.parametrize("grid", [S1, S2], ids=repr)
@pytest.mark.parametrize("beta", [0.0, 1e-3, 0.5, 3.0, 12.0])
def test_energy_spectral_equals_double_integral(grid, beta):
    e = np.eye(grid.dim)
    rho = st.initial.mixture(grid, [0.6, 0.4], [e[0], e[-1] - 0.5 * e[0]], [3.0, 5.0]).values
    c = grid.analysis(rho)
    rho = grid.synthesis(c)
    # Funk–Hecke is exact for the band-limited density; the product quadrature is exact up to the kernel's
    # Legendre tail beyond the grid's exactness (< 1e-14 relative for beta ≤ 12): 1e-11 relative
    assert diag.energy(grid, c, beta) == pytest.approx(_direct_energy(grid, rho, beta), rel=1e-11, abs=1e-15)


def test_energy_is_continuous_in_beta():
    c = S2.analysis(st.initial.von_mises_fisher(S2, [0, 0, 1], 2.0).values)
    e0 = diag.energy(S2, c, 0.0)
    # E_beta = ½|m|² + O(beta): the series branch at beta < 1e-2 and the closed form above join smoothly
    assert diag.energy(S2, c, 1e-9) == pytest.approx(e0, rel=1e-8)
    assert diag.energy(S2, c, 0.0099999) == pytest.approx(diag.energy(S2, c, 0.0100001), rel=1e-6)


def test_mean_vector_dispersion_mass_closed_forms():
    kappa = 3.0
    c = S2.analysis(st.initial.von_mises_fisher(S2, [0, 0, 1], kappa).values)
    mean = 1 / np.tanh(kappa) - 1 / kappa  # vMF on S^2: m = (coth κ − 1/κ) μ
    np.testing.assert_allclose(diag.mean_vector(S2, c), [0, 0, mean], atol=1e-14)
    assert diag.dispersion(S2, c) == pytest.approx(1 - mean**2, rel=1e-13)
    assert diag.mass(S2, c) == pytest.approx(1.0, abs=1e-14)
    c = S1.analysis(st.initial.von_mises_fisher(S1, [0, 1], kappa).values)
    np.testing.assert_allclose(diag.mean_vector(S1, c), [0, iv(1, kappa) / iv(0, kappa)], atol=1e-14)


def test_power_spectrum_and_tail():
    c = S2.analysis(st.initial.uniform(S2).values)
    p = S2.power_spectrum(c)
    assert p[0] == pytest.approx(1 / (4 * np.pi), rel=1e-14) and np.all(p[1:] < 1e-30)
    assert diag.spectral_tail(S2, c) == 0.0
    # Parseval: Σ P_l = ∫ ρ² dA
    rho = st.initial.von_mises_fisher(S2, [1, 0, 0], 4.0).values
    c = S2.analysis(rho)
    assert S2.power_spectrum(c).sum() == pytest.approx(S2.integrate(S2.synthesis(c) ** 2), rel=1e-13)
    # a single degree-18 mode on top of the uniform state sits entirely in the tail (18 ≥ ⌈0.9 · 20⌉)
    c2 = c * 0
    c2[0] = c[0]
    c2[np.nonzero(S2.degrees == 19)[0][0]] = 1e-3
    assert diag.spectral_tail(S2, c2) == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("grid", [S1, S2], ids=repr)
def test_mmd_against_double_integral(grid):
    e = np.eye(grid.dim)
    a = st.initial.von_mises_fisher(grid, e[-1], 3.0).values
    b = st.initial.uniform(grid).values
    ca, cb = grid.analysis(a), grid.analysis(b)
    x = grid.points().reshape(-1, grid.dim)
    wd = (grid.weights() * (grid.synthesis(ca) - grid.synthesis(cb))).ravel()
    direct = np.sqrt(wd @ np.exp(2.0 * x @ x.T) @ wd)
    # exact Funk–Hecke vs product quadrature of a smooth kernel: rounding of O(N²) sums, 1e-10 relative
    assert diag.mmd(grid, ca, cb) == pytest.approx(direct, rel=1e-10)
    assert diag.mmd(grid, ca, ca) == 0.0
    # tokens at the nodes with quadrature weights have the same coefficients as the density
    emp = grid.empirical_coefficients(x, (grid.weights() * grid.synthesis(ca)).ravel())
    assert diag.mmd(grid, emp, ca) < 1e-12


def test_token_diagnostics():
    x = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    beta = 2.0
    # two orthogonal tokens: E = (1/(2β·4)) (2 expm1(β) + 2 expm1(0)) and m = (½, ½, 0)
    assert diag.energy_tokens(x, beta) == pytest.approx(np.expm1(beta) / (4 * beta), rel=1e-15)
    assert diag.energy_tokens(x, 0.0) == pytest.approx(0.25, rel=1e-15)
    assert diag.dispersion_tokens(x) == pytest.approx(0.5, rel=1e-15)
    # blocked sum equals the unblocked one
    rng = np.random.default_rng(0)
    y = rng.standard_normal((300, 3))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    assert diag.energy_tokens(y, 3.0, block_bytes=8 * 300 * 7) == pytest.approx(diag.energy_tokens(y, 3.0),
                                                                                rel=1e-13)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("beta", [0.5, 4.0, 30.0])
def test_spectral_token_energy_equals_pair_sum(dim, beta, monkeypatch):
    rng = np.random.default_rng(dim)
    x = rng.standard_normal((5000, dim)) + np.eye(dim)[0]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    spectral = diag.energy_tokens(x, beta)  # 5000 > SPECTRAL_ENERGY_TOKENS: Funk–Hecke
    monkeypatch.setattr(diag, "SPECTRAL_ENERGY_TOKENS", 10**9)
    # truncation below 1e-16 of λ_0 and rounding of 25 million pair terms: measured ≤ 1.2e-13 relative
    assert spectral == pytest.approx(diag.energy_tokens(x, beta), rel=1e-12)


@pytest.mark.parametrize("grid", [st.SphereGrid(63), st.CircleGrid(256)], ids=repr)
def test_spectral_tail_ignores_rounding_noise(grid):
    """A uniform density whose analysis left round-off (1e-17 of ρ_00) at the top degrees is resolved: tail 0; the
    same shape 1e6 times larger (far above any rounding) is reported at full weight."""
    c = grid.analysis(st.initial.uniform(grid).values)
    top = grid.degrees >= int(np.ceil(0.9 * grid.degree_max))
    noisy = c.copy()
    noisy[top] += 1e-17 * abs(c[0])
    assert st.diagnostics.spectral_tail(grid, noisy) == 0.0
    loud = c.copy()
    loud[top] += 1e-11 * abs(c[0])
    assert st.diagnostics.spectral_tail(grid, loud) == pytest.approx(1.0)  # all the non-constant power is at the top


def test_clusters_of_two_caps_and_a_scatter():
    """Two tight caps of masses 0.6 and 0.3 and 10% spread thinly: the caps are found with their masses and centres,
    the scatter (no 1% within the radius anywhere) is not a cluster."""
    rng = np.random.default_rng(5)

    def cap(centre, n, spread):
        x = np.asarray(centre, float) + spread * rng.standard_normal((n, 3))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    a, b = cap([0, 0, 1], 600, 0.02), cap([1, 0, 0], 300, 0.02)
    scatter = rng.standard_normal((1000, 3))
    scatter /= np.linalg.norm(scatter, axis=1, keepdims=True)
    x = np.concatenate([a, b, scatter])
    w = np.concatenate([np.full(600, 1e-3), np.full(300, 1e-3), np.full(1000, 1e-4)])
    found = diag.clusters(x, w, radius=0.15, min_mass=0.01)
    assert len(found) == 2
    (c1, m1), (c2, m2) = found
    # each cap also collects the scatter within 2 × 0.15 rad: a cap of area 2π(1 − cos 0.3) = 0.28, 2.2% of the
    # sphere, 0.1 × 0.022 = 0.002 of mass (± its Poisson spread)
    assert m1 == pytest.approx(0.6, abs=0.006) and m2 == pytest.approx(0.3, abs=0.006)
    assert c1 @ [0, 0, 1] > 0.999 and c2 @ [1, 0, 0] > 0.999


def test_w2_of_weighted_nodes():
    """Tokens at the north pole against nodes carrying 0.25 at the pole and 0.75 at angle 0.5: W2 = 0.5 sqrt(0.75)."""
    tokens = np.tile([0.0, 0.0, 1.0], (8, 1))
    nodes = np.array([[0.0, 0.0, 1.0], [np.sin(0.5), 0.0, np.cos(0.5)], [0.0, 1.0, 0.0]])
    w = np.array([0.25, 0.75, -1e-17])  # a rounding-negative weight is dropped
    assert diag.wasserstein2_nodes(tokens, nodes, w) == pytest.approx(0.5 * np.sqrt(0.75), rel=1e-12)


# ---- the zonal grid in d dimensions (docs/mathematics.md, 'The zonal grid (any dimension)') -----------------------
def _zonal_density(grid, kappa=3.0):
    """A band-limited, non-symmetric zonal probability density on the ZonalGrid's normalized measure."""
    s = grid.s
    c = grid.analysis(np.exp(kappa * s + 0.5 * s**2))
    return c / c[0]


def test_zonal_grid_diagnostics_equal_the_sphere_ones():
    """d = 3: a zonal density on ZonalGrid(3, 20) is 4π times the same density on SphereGrid(20) (same latitudes);
    mass, mean, dispersion, energy, MMD and spectral tail are those of the measure, the same on both."""
    zonal = st.ZonalGrid(3, 20)
    z = S2.points()[..., 2]
    rho = np.exp(2.5 * z + 0.5 * z**2)
    rho_s = rho / S2.integrate(rho)
    cs, cz = S2.analysis(rho_s), zonal.analysis(4 * np.pi * rho_s[::-1, 0])
    us, uz = S2.analysis(st.initial.uniform(S2).values), zonal.analysis(np.ones(zonal.shape))
    # the same quadrature sums in other orders and normalizations (area 4π against 1): 1e-14 relative
    assert diag.mass(zonal, cz) == pytest.approx(diag.mass(S2, cs), rel=1e-14)
    np.testing.assert_allclose(diag.mean_vector(zonal, cz), diag.mean_vector(S2, cs), rtol=0, atol=1e-14)
    assert diag.dispersion(zonal, cz) == pytest.approx(diag.dispersion(S2, cs), rel=1e-14)
    for beta in (0.0, 1e-3, 0.5, 3.0, 12.0):
        # the Funk–Hecke weights of the two measures agree to 1e-13 relative (tests/grids/test_zonal.py)
        assert diag.energy(zonal, cz, beta) == pytest.approx(diag.energy(S2, cs, beta), rel=1e-13, abs=1e-16)
    assert diag.mmd(zonal, cz, uz) == pytest.approx(diag.mmd(S2, cs, us), rel=1e-13)
    assert diag.spectral_tail(zonal, cz) == pytest.approx(diag.spectral_tail(S2, cs), rel=1e-12)
    assert diag.spectral_tail(zonal, uz) == 0.0


@pytest.mark.parametrize("dim", [4, 8, 64, 512])
@pytest.mark.parametrize("kappa", [0.5, 4.0, 20.0])
def test_zonal_mean_vector_of_von_mises_fisher_is_the_bessel_ratio(dim, kappa):
    """vMF(κ) about e_d, ρ = e^{κ s}/μ_0(κ) on the normalized measure: m = A_d(κ) e_d, A_d = I_{d/2}(κ)/I_{d/2−1}(κ);
    dispersion 1 − A_d², mass 1."""
    grid = st.ZonalGrid(dim, 48)
    c = grid.analysis(np.exp(kappa * (grid.s - 1.0)))
    c /= c[0]  # mass 1 by the quadrature, exact for the band-limited part
    # I_{d/2}/I_{d/2−1} by the backward recurrence of Bessel ratios r_v = 1/(2v/κ + r_{v+1}) (Gauss' continued
    # fraction, contracting: the start r = 0 far above is forgotten); scipy's ive underflows at d = 512, κ = 0.5
    bessel = 0.0
    for v in np.arange(dim / 2 + 2 * kappa + 400, dim / 2 - 0.5, -1.0):
        bessel = 1.0 / (2 * v / kappa + bessel)
    expected = np.zeros(dim)
    expected[-1] = bessel
    # e^{κs} truncated at degree 48 (its Gegenbauer coefficients fall like μ_48(20)/μ_0 < 1e-17 here), the
    # quadrature's rounding (n eps) and the continued fraction's (~κ + 400 steps of one rounding): 1e-13
    np.testing.assert_allclose(diag.mean_vector(grid, c), expected, rtol=0, atol=1e-13)
    assert diag.dispersion(grid, c) == pytest.approx(1 - bessel**2, abs=1e-13)
    assert diag.mass(grid, c) == 1.0


def _sphere_average(dim, s, t, kernel, nodes=60):
    """⟨kernel(x·y)⟩ over y = (√(1 − t²) ω, t), ω uniform on S^{d−2}, for x = (√(1 − s²), 0, …, 0, s): x·y = s t +
    √(1 − s²)√(1 − t²) u with u = ω_1 of law ∝ (1 − u²)^{(d−4)/2}, a polynomial weight for even d, by Gauss–Legendre
    (exact for the entire kernel to its Taylor tail beyond degree 2·nodes − dim)."""
    u, wu = np.polynomial.legendre.leggauss(nodes)
    wu = wu * (1 - u * u) ** ((dim - 4) // 2)
    wu /= wu.sum()
    s, t = s[:, None, None], t[None, :, None]
    return kernel(s * t + np.sqrt(1 - s * s) * np.sqrt(1 - t * t) * u) @ wu


@pytest.mark.parametrize("dim", [4, 6, 8])
@pytest.mark.parametrize("beta", [0.0, 1e-3, 0.5, 3.0, 12.0])
def test_zonal_energy_and_mmd_equal_the_double_integrals(dim, beta):
    """E_β = (1/2β) ∬ expm1(β x·y) ρρ dσdσ (½|m|² at β = 0) and MMD² = ∬ e^{2x·y} (ρ−1)(ρ−1) dσdσ, written out."""
    grid = st.ZonalGrid(dim, 32)
    c = _zonal_density(grid)
    mass = grid.weights() * grid.synthesis(c)
    if beta == 0.0:
        direct = 0.5 * (mass @ grid.s) ** 2
    else:
        direct = mass @ _sphere_average(dim, grid.s, grid.s, lambda t: np.expm1(beta * t)) @ mass / (2 * beta)
    # Funk–Hecke is exact for the band-limited density; the double quadrature (50 nodes in t, 60 in u) integrates the
    # kernel to its Taylor tail beyond degree 67 (12^67/67! ≈ 1e-20); rounding of the n = 50² × 60 terms of the
    # direct sum: Higham's γ_n = 3.3e-11 of Σ|terms|, at most 3 × the result here (|m| > 0.5); measured ≤ 2e-14
    assert diag.energy(grid, c, beta) == pytest.approx(direct, rel=1e-10, abs=1e-16)
    diff = mass - grid.weights()
    mmd = np.sqrt(diff @ _sphere_average(dim, grid.s, grid.s, lambda t: np.exp(2.0 * t)) @ diff)
    # the same sums for the MMD² of a positive kernel: γ_n of Σ|terms| ≤ e^4 MMD²-ish; measured ≤ 8e-16
    assert diag.mmd(grid, c, grid.analysis(np.ones(grid.shape))) == pytest.approx(mmd, rel=1e-10)


@pytest.mark.parametrize("dim", [8, 64, 512])
def test_zonal_energy_is_continuous_in_beta(dim):
    """E_β → ½|m|² as β → 0, and no step where the degree-0 weight changes formula (β² = 2d)."""
    grid = st.ZonalGrid(dim, 32)
    c = _zonal_density(grid, kappa=6.0)
    e0 = diag.energy(grid, c, 0.0)
    assert e0 == pytest.approx(0.5 * diag.mean_vector(grid, c)[-1] ** 2, rel=1e-14)
    # E_β = ½|m|² + O(β): the series branch joins the limit
    assert diag.energy(grid, c, 1e-9) == pytest.approx(e0, rel=1e-8)
    edge = np.sqrt(2.0 * dim)
    # the two formulas for e_0 at β² = 2d ± 1e-9: the slope of E (≤ 1) moves it by 2e-9, rounding 1e-12
    assert diag.energy(grid, c, edge * (1 - 1e-10)) == pytest.approx(diag.energy(grid, c, edge * (1 + 1e-10)),
                                                                       rel=1e-8)
