"""The attention output and drift (docs/mathematics.md, 'Attention drift'): zonal, quadrature and token sums agree."""

import warnings

import numpy as np
import pytest

from spde_tokens.drift import GridAttention, attention_output_points, drift_points, tangent_projection
from spde_tokens.grids import CircleGrid, ResolutionWarning, SphereGrid, ZonalGrid
from spde_tokens.model import AttentionModel

RNG = np.random.default_rng(1)
V_RANDOM = {2: RNG.standard_normal((2, 2)), 3: RNG.standard_normal((3, 3))}
EPS = np.finfo(float).eps


def _density(grid, kappa=2.0):
    """A smooth, non-symmetric, band-limited probability density (coefficients, values)."""
    pts = grid.points()
    mu = np.zeros(grid.dim)
    mu[0], mu[-1] = 0.3, 1.0
    rho = np.exp(kappa * pts @ mu / np.linalg.norm(mu) + 0.5 * pts[..., 0] ** 2)
    c = grid.analysis(rho / grid.integrate(rho))
    return c, grid.synthesis(c)


GRIDS = [SphereGrid(20), CircleGrid(48)]


@pytest.mark.parametrize("grid", GRIDS, ids=repr)
@pytest.mark.parametrize("normalization", ["softmax", "unnormalized"])
@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
@pytest.mark.parametrize("value", ["identity", "scaled", "random"])
def test_zonal_and_quadrature_paths_agree(grid, normalization, beta, value):
    d = grid.dim
    V = {"identity": None, "scaled": -0.7 * np.eye(d), "random": V_RANDOM[d]}[value]
    model = AttentionModel(d, beta, V=V, normalization=normalization)
    c, rho = _density(grid)
    zonal = GridAttention(model, grid, "zonal")
    quad = GridAttention(model, grid, "quadrature")
    # both are exact for this band-limited density up to the Gauss quadrature of the kernel, whose
    # Legendre tail beyond degree ~2 nlat is far below 1e-14 for beta ≤ 4: 1e-10 leaves room for rounding
    scale = max(1.0, np.abs(quad.output(c, rho)).max())
    np.testing.assert_allclose(zonal.output(c, rho), quad.output(c, rho), rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(zonal.drift(c, rho), quad.drift(c, rho), rtol=0, atol=1e-10 * scale)


@pytest.mark.parametrize("fine", [SphereGrid(40), CircleGrid(96)], ids=repr)
@pytest.mark.parametrize("normalization", ["softmax", "unnormalized"])
def test_paths_agree_with_direct_token_sum_on_a_finer_quadrature(fine, normalization):
    coarse = SphereGrid(20) if fine.dim == 3 else CircleGrid(48)
    d = fine.dim
    model = AttentionModel(d, 3.0, V=V_RANDOM[d], normalization=normalization)
    c, rho = _density(coarse)
    # the density as N weighted tokens at the nodes of a finer grid (its own exact quadrature)
    keys = fine.points().reshape(-1, d)
    weights = fine.weights().ravel() * coarse.evaluate(c, keys)
    queries = coarse.points().reshape(-1, d)
    direct = attention_output_points(model, queries, keys, weights).reshape(*coarse.shape, d)
    for method in ("zonal", "quadrature"):
        a = GridAttention(model, coarse, method).output(c, rho)
        np.testing.assert_allclose(a, direct, rtol=0, atol=1e-10 * max(1.0, np.abs(direct).max()))
    x = drift_points(model, queries, keys, weights).reshape(*coarse.shape, d)
    np.testing.assert_allclose(coarse.from_tangent(GridAttention(model, coarse).drift(c, rho)), x, atol=1e-10)


@pytest.mark.parametrize("grid", GRIDS, ids=repr)
def test_beta_zero_is_the_mean(grid):
    c, rho = _density(grid)
    m = (grid.weights()[..., None] * rho[..., None] * grid.points()).sum(axis=tuple(range(grid.dim - 1)))
    for norm in ("softmax", "unnormalized"):
        a = GridAttention(AttentionModel(grid.dim, 0.0, normalization=norm), grid).output(c, rho)
        # uniform attention: a(x) = m for every x, up to the rounding of the quadrature sum
        np.testing.assert_allclose(a, np.broadcast_to(m, a.shape), atol=1e-13)


def test_softmax_drift_is_gradient_of_log_convolution():
    """For Q = K = V = I, X = (1/beta) ∇_S log(G_beta ρ) (docs/mathematics.md, 'Attention drift')."""
    grid = SphereGrid(24)
    beta = 2.5
    c, rho = _density(grid)
    w = grid.zonal_weights(beta)
    log_g = np.log(grid.synthesis(grid.per_degree(w.value) * c))
    # log G ρ is smooth but not band-limited: its degree-24 truncation error is ~1e-9 here
    expected = grid.gradient(grid.analysis(log_g)) / beta
    got = GridAttention(AttentionModel(3, beta), grid).drift(c, rho)
    np.testing.assert_allclose(got, expected, atol=1e-7)


def test_negative_zonal_factor_matches_quadrature():
    grid = SphereGrid(16)
    model = AttentionModel(3, 2.0, Q=-np.eye(3), V=V_RANDOM[3])
    c, rho = _density(grid)
    z, q = GridAttention(model, grid, "zonal"), GridAttention(model, grid, "quadrature")
    np.testing.assert_allclose(z.output(c, rho), q.output(c, rho), atol=1e-10)


def test_general_qk_uses_quadrature_and_matches_tokens():
    grid = SphereGrid(16)
    model = AttentionModel(3, 1.5, Q=np.diag([1.0, 2.0, 0.5]), K=RNG.standard_normal((3, 3)))
    att = GridAttention(model, grid)
    assert att.method == "quadrature"
    c, rho = _density(grid)
    pts = grid.points().reshape(-1, 3)
    direct = attention_output_points(model, pts, pts, grid.weights().ravel() * rho.ravel())
    np.testing.assert_allclose(att.output(c, rho).reshape(-1, 3), direct, atol=1e-13)
    with pytest.raises(ValueError, match="zonal"):
        GridAttention(model, grid, "zonal")


def test_large_beta_clustered_density_stays_finite_and_bounded():
    """beta = 200, tight cluster: accurate where G̃ρ ≥ 1e-10 max, zero elsewhere, |a| ≤ 1.

    The trust threshold is that of docs/mathematics.md, 'Attention drift'.
    """
    grid = CircleGrid(256)
    beta = 200.0
    pts = grid.points()
    rho = np.exp(40.0 * (pts[:, 0] - 1.0))
    c = grid.analysis(rho / grid.integrate(rho))
    rho = grid.synthesis(c)
    att = GridAttention(AttentionModel(2, beta), grid)
    a = att.output(c, rho)
    assert np.all(np.isfinite(a)) and np.all(np.linalg.norm(a, axis=-1) <= 1.0 + 1e-15)
    assert 0.0 < att.unreliable_fraction < 1.0
    # where trusted, the output matches the direct max-shifted token sum over a fine quadrature
    fine = CircleGrid(1024)
    keys = fine.points()
    weights = fine.weights() * grid.evaluate(c, keys)
    direct = attention_output_points(AttentionModel(2, beta), pts, keys, weights)
    g = grid.synthesis(grid.per_degree(grid.zonal_weights(beta).value) * c)
    trusted = g >= 1e-10 * g.max()
    assert np.all(a[~trusted] == 0.0)
    # the spectral G̃ρ carries an absolute rounding error ~1e-16 · max G̃ρ, so the ratio a = ∇Z/Z has a relative
    # error ~1e-16 · max G̃ρ / G̃ρ(x): up to 1e-6 at the edge of the trusted region, 1e-15 at the cluster
    bound = 1e-14 * g.max() / g[trusted]
    err = np.linalg.norm(a[trusted] - direct[trusted], axis=-1)
    assert np.all(err <= bound), (err / bound).max()


def test_resolution_warning_for_large_beta():
    with pytest.warns(ResolutionWarning, match="does not resolve"):
        GridAttention(AttentionModel(3, 100.0), SphereGrid(16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GridAttention(AttentionModel(3, 1.0), SphereGrid(16))


def test_memory_guard_and_bad_input():
    grid = SphereGrid(16)
    model = AttentionModel(3, 1.0, Q=np.diag([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="memory_budget"):
        GridAttention(model, grid, memory_budget=1e6)
    with pytest.raises(ValueError, match="memory_budget"):
        GridAttention(model, grid, memory_budget=-1)
    with pytest.raises(ValueError, match="model.dim"):
        GridAttention(AttentionModel(2, 1.0), grid)
    with pytest.raises(ValueError, match="attention"):
        GridAttention(AttentionModel(3, 1.0), grid, "fast")
    with pytest.raises(ValueError, match="beta"):
        GridAttention(AttentionModel(3, 800.0, normalization="unnormalized"), grid)


def test_tangent_projection():
    x = RNG.standard_normal((10, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    v = RNG.standard_normal((10, 5))
    p = tangent_projection(x, v)
    np.testing.assert_allclose(np.sum(p * x, axis=1), 0.0, atol=1e-14)
    np.testing.assert_allclose(tangent_projection(x, p), p, atol=1e-14)


# ---- the zonal grid (docs/mathematics.md, 'The zonal grid (any dimension)') ----------------------------------------
@pytest.mark.parametrize("normalization", ["softmax", "unnormalized"])
@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
@pytest.mark.parametrize("value", [1.0, -0.7])
def test_zonal_grid_drift_equals_the_sphere_drift(normalization, beta, value):
    """d = 3: ZonalGrid(3, 20) has the latitudes of SphereGrid(20); on a zonal density (4π times the sphere's: the
    zonal grid's measure is normalized) the drift is the sphere's along u = −e_θ, and the output is the same vector."""
    zonal, sphere = ZonalGrid(3, 20), SphereGrid(20)
    model = AttentionModel(3, beta, V=value * np.eye(3), normalization=normalization)
    z = sphere.points()[..., 2]
    rho = np.exp(2.0 * z + 0.5 * z**2)
    rho_s = rho / sphere.integrate(rho)
    cs = sphere.analysis(rho_s)
    cz = zonal.analysis(4 * np.pi * rho_s[::-1, 0])
    att_z, att_s = GridAttention(model, zonal), GridAttention(model, sphere)
    drift_s = att_s.drift(cs, sphere.synthesis(cs))
    # the same quadrature sums (same latitudes) in other orders and normalizations: each grid rounds its transforms'
    # sums of nlat + nlon + lmax + 1 terms (Higham's γ_n) of the drift's size (measured ≤ 0.05 of this)
    tol = 2 * EPS * (sphere.nlat + sphere.nlon + 21)
    scale = max(1.0, np.abs(drift_s).max())
    np.testing.assert_allclose(att_z.drift(cz, zonal.synthesis(cz))[0], -drift_s[0][::-1, 0], rtol=0,
                               atol=tol * scale)
    np.testing.assert_allclose(drift_s[1], 0.0, rtol=0, atol=tol * scale)
    out_s = att_s.output(cs, sphere.synthesis(cs))
    np.testing.assert_allclose(att_z.output(cz, zonal.synthesis(cz)), out_s[::-1, 0], rtol=0,
                               atol=tol * max(1.0, np.abs(out_s).max()))


@pytest.mark.parametrize("normalization", ["softmax", "unnormalized"])
@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_zonal_grid_drift_in_eight_dimensions_against_the_softmax_sum(normalization, beta):
    """d = 8: a(x) = ∫ e^{β x·y} y ρ(y) dσ(y) / ∫ e^{β x·y} ρ(y) dσ(y) (softmax; the numerator alone unnormalized),
    written out as a double quadrature over S^7: y = (√(1 − t²) ω, t) with t on the grid's Gauss nodes and ω_1 = u of
    law ∝ (1 − u²)^{(d−4)/2} = (1 − u²)² by Gauss–Legendre; by symmetry only y_1 = √(1 − t²) u and y_8 = t survive
    the ω-average. The drift along u_x = (−s, 0, …, 0, √(1 − s²)) is −s a_1 + √(1 − s²) a_8."""
    dim = 8
    grid = ZonalGrid(dim, 24)
    model = AttentionModel(dim, beta, V=2.0 * np.eye(dim), normalization=normalization)
    s = grid.s
    c = grid.analysis(np.exp(3.0 * s + s**2))
    c /= c[0]  # mass 1
    rho = grid.synthesis(c)
    u, wu = np.polynomial.legendre.leggauss(60)
    wu = wu * (1 - u * u) ** 2
    wu /= wu.sum()
    si, tj = s[:, None, None], s[None, :, None]
    kernel = np.exp(beta * (si * tj + np.sqrt(1 - si**2) * np.sqrt(1 - tj**2) * u))  # (x_i, t_j, u_k)
    mass = grid.weights() * rho
    z = kernel @ wu @ mass
    a1 = (kernel * u) @ wu @ (mass * np.sqrt(1 - s**2))
    a8 = kernel @ wu @ (mass * s)
    if normalization == "softmax":
        a1, a8 = a1 / z, a8 / z
    expected = 2.0 * (-s * a1 + np.sqrt(1 - s**2) * a8)
    att = GridAttention(model, grid)
    # Funk–Hecke is exact for the band-limited density, and both Gauss rules integrate the entire kernel to its
    # Taylor tail beyond degree ~50 (4^50/50! ≈ 1e-35); rounding: the direct sums have nodes × 60 terms of the
    # size of the result (Higham's γ_n; measured ≤ 0.01 of this)
    tol = EPS * grid.nodes * 60 * max(1.0, np.abs(expected).max())
    np.testing.assert_allclose(att.drift(c, rho)[0], expected, rtol=0, atol=tol)
    out = att.output(c, rho)
    assert out.shape == (grid.nodes, dim) and np.all(out[:, 1:-1] == 0.0)
    np.testing.assert_allclose(out[:, 0], a1, rtol=0, atol=tol)
    np.testing.assert_allclose(out[:, -1], a8, rtol=0, atol=tol)


def test_zonal_grid_refuses_models_that_break_the_symmetry():
    grid = ZonalGrid(5, 12)
    for model in (AttentionModel(5, 1.0, Q=np.diag([1.0, 2.0, 1.0, 1.0, 1.0])),
                  AttentionModel(5, 1.0, V=np.diag([1.0, 1.0, 1.0, 1.0, 0.5]))):
        with pytest.raises(ValueError, match="symmetry.*simulate_particles"):
            GridAttention(model, grid)
    with pytest.raises(ValueError, match="quadrature"):
        GridAttention(AttentionModel(5, 1.0), grid, "quadrature")
    with pytest.raises(ValueError, match="model.dim"):
        GridAttention(AttentionModel(4, 1.0), grid)


# ---- degree-truncated transforms of G̃ρ (docs/numerics.md, 'Cheaper right-hand sides') --------------------------
def _rough_coefficients(grid):
    """Coefficients of a random field on the nodes: a flat spectrum up to the grid's degree, the worst case for
    dropping degrees (a density's spectrum only decays faster)."""
    return grid.analysis(np.random.default_rng(5).standard_normal(grid.shape))


def _per_degree_bounds(grid, coeffs):
    """sup_x |f_l(x)| and sup_x |∇_S f_l(x)| for the degree-l part f_l of the field, for every degree l.

    Cauchy–Schwarz over the n_l real orthonormal harmonics of degree l with the addition theorem
    Σ Y² = n_l/area and Σ |∇Y|² = n_l e_l/area (e_l = l(l+1) on S², l² on S¹): |f_l| ≤ sqrt(P_l n_l/area),
    |∇f_l| ≤ sqrt(P_l n_l e_l/area), P_l the power spectrum.
    """
    ell = np.arange(grid.degree_max + 1)
    count = 2 * ell + 1 if grid.dim == 3 else np.where(ell == 0, 1, 2)
    eig = ell * (ell + 1.0) if grid.dim == 3 else ell**2.0
    value = np.sqrt(grid.power_spectrum(coeffs) * count / grid.area)
    return value, value * np.sqrt(eig)


@pytest.mark.parametrize("grid", [SphereGrid(64), CircleGrid(128)], ids=repr)
@pytest.mark.parametrize("kappa", [1.0, 9.0, -4.0])
@pytest.mark.parametrize("tol", [1e-16, 1e-6])
def test_truncated_transforms_agree_within_the_dropped_weights(grid, kappa, tol):
    """Z̃ = G̃ρ and (1/κ)∇G̃ρ synthesized up to the degree L where the weights fall below ``tol`` of the largest
    (the drift's cut-off is tol = 1e-16) differ from the full synthesis by at most the neglected tail
    Σ_{l > L} |λ_l| sup|ρ_l| (and Σ |λ_l/κ| sup|∇ρ_l|), plus rounding."""
    from spde_tokens.drift import kernel_degree

    w = grid.zonal_weights(kappa)
    cut = kernel_degree(w, tol)
    assert cut < grid.degree_max  # the test is about truncation
    band = grid.truncated(cut)
    assert band.degrees.max() <= max(cut, 2) and band.degrees.size < grid.n_coeff
    c = _rough_coefficients(grid)
    value_bound, grad_bound = _per_degree_bounds(grid, c)
    ell = np.arange(grid.degree_max + 1)
    dropped = ell > band.degree

    z_full = grid.synthesis(grid.per_degree(w.value) * c)
    z_band = band.synthesis(band.per_degree(w.value) * band.restrict(c))
    g_full = grid.gradient(grid.per_degree(w.over_kappa) * c)
    g_band = band.gradient(band.per_degree(w.over_kappa) * band.restrict(c))
    tail_z = np.sum(np.abs(w.value[dropped]) * value_bound[dropped])
    tail_g = np.sum(np.abs(w.over_kappa[dropped]) * grad_bound[dropped])
    # rounding of two syntheses: eps × (degree_max terms per node) × the size of the sum (bounded as the tail is)
    round_z = 10 * EPS * grid.degree_max * np.sum(np.abs(w.value) * value_bound)
    round_g = 10 * EPS * grid.degree_max * np.sum(np.abs(w.over_kappa) * grad_bound)
    assert np.abs(z_band - z_full).max() <= tail_z + round_z
    assert np.sqrt(np.sum((g_band - g_full) ** 2, axis=0)).max() <= tail_g + round_g
    if tol == 1e-16:  # the drift's cut-off: what is dropped is below rounding
        assert tail_z <= round_z and tail_g <= round_g


@pytest.mark.parametrize("kappa", [1.0, 16.0, 100.0])
def test_kernel_degree_is_where_the_weights_end(kappa):
    """The drift's cut-off sits at the degree where λ_l/λ_0 falls below 1e-16 (resolving_degree, from the Bessel
    values alone) give or take the slower tail of ∂_κλ_l, and near 8.7 sqrt(κ) on S² for κ ≳ 10."""
    from spde_tokens.drift import kernel_degree
    from spde_tokens.grids import resolving_degree

    grid = SphereGrid(160)
    cut = kernel_degree(grid.zonal_weights(kappa))
    need = resolving_degree(3, kappa)
    assert need - 1 <= cut <= need + 2
    if kappa >= 10:  # the asymptotic 8.7 sqrt(κ) of resolving_degree's docstring holds for κ ≳ 10
        assert abs(cut - 8.7 * np.sqrt(kappa)) <= 0.1 * 8.7 * np.sqrt(kappa) + 2
    attention = GridAttention(AttentionModel(3, kappa), grid)
    assert attention.kernel_degree == cut


@pytest.mark.parametrize("grid", [SphereGrid(8), CircleGrid(12)], ids=repr)
@pytest.mark.parametrize("shape", ["clipped", "no_mass"])
def test_beta_zero_closed_form_falls_back_on_signed_densities(grid, shape):
    """beta = 0 on a signed density: |m/∫ρ| > 1 (ρ ∝ 1 + 5 x_d, softmax output clipped to |a| = 1) or ∫ρ < 0
    (output 0, the partition function is not trusted) give what the quadrature path gives: the closed form is
    used only where neither happens."""
    x = grid.points()[..., -1]
    rho = (1 + 5 * x) / grid.area if shape == "clipped" else (-1 + 0.3 * x) / grid.area
    c = grid.analysis(rho)
    model = AttentionModel(grid.dim, 0.0, V=V_RANDOM[grid.dim])
    zonal, quad = GridAttention(model, grid, "zonal"), GridAttention(model, grid, "quadrature")
    a = zonal.output(c, rho)
    np.testing.assert_allclose(a, quad.output(c, rho), rtol=0, atol=1e-12)  # rounding of O(1) sums
    np.testing.assert_allclose(zonal.drift(c, rho), quad.drift(c, rho), rtol=0, atol=1e-12)
    norms = np.linalg.norm(a, axis=-1)
    np.testing.assert_allclose(norms, 1.0 if shape == "clipped" else 0.0, rtol=0, atol=1e-12)
    assert zonal.unreliable_fraction == 1.0  # every node clipped, or not trusted


def _drift_energy_tail(grid: SphereGrid, beta: float, rho: np.ndarray) -> tuple[np.ndarray, int]:
    """Share of the energy Σ l(l+1)(|S_lm|² + |T_lm|²) of the drift X[ρ] at degrees ≥ l, for every l, and the
    kernel's degree (X = ∇_S S + curl T, both potentials from one vector analysis on the dealiased grid)."""
    attention = GridAttention(AttentionModel(3, beta), grid)
    coeffs = grid.analysis(rho)
    v = attention.drift(coeffs, rho)
    s, t = grid._sh.spec_array(), grid._sh.spec_array()
    grid._sh.spat_to_SHsphtor(np.ascontiguousarray(v[0]), np.ascontiguousarray(v[1]), s, t)
    ell = grid.degrees
    energy = np.bincount(ell, grid.order_weight * ell * (ell + 1.0) * (np.abs(s) ** 2 + np.abs(t) ** 2),
                         minlength=grid.lmax + 1)
    return np.cumsum(energy[::-1])[::-1] / energy.sum(), attention.kernel_degree


def test_the_drift_of_a_clustered_density_is_not_band_limited():
    """Why the density solver keeps the 3/2 dealiased grid (docs/numerics.md, 'Performance'): the flux ρX[ρ] would
    fit a smaller grid if X had a low degree, as it has for one bump at beta = 1 (share of energy 3e-26 beyond degree
    16, the rounding floor 3.5e-30 from degree 20); but X = ∇ log G̃ρ / beta of two clusters at beta = 16 turns over
    a layer of width ~1/beta between them and keeps 3.6e-9 of its energy beyond twice the kernel's degree (76) and
    1.1e-14 at lmax 127. Thresholds are a decade or more from the measured values and far above rounding."""
    grid = SphereGrid(127)
    x = grid.points()
    one = np.exp(4.0 * (x[..., 2] - 1.0))
    tail, _ = _drift_energy_tail(grid, 1.0, one / (grid.weights() * one).sum())
    assert tail[16] < 1e-24
    two = np.exp(30.0 * (x[..., 2] - 1.0)) + np.exp(30.0 * (x[..., 0] - 1.0))
    tail, degree = _drift_energy_tail(grid, 16.0, two / (grid.weights() * two).sum())
    assert degree == 38 and tail[2 * degree] > 1e-10 and tail[-1] > 1e-16
