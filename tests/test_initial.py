"""Initial densities: normalization, closed forms, the grid they carry, bad input."""

import numpy as np
import pytest
import xarray as xr
from scipy.integrate import quad
from scipy.special import gamma, hyp2f1, iv
from scipy.stats import chisquare

import spde_tokens as st
from spde_tokens.initial import grid_of

S2 = st.SphereGrid(24)
S1 = st.CircleGrid(64)


@pytest.mark.parametrize("grid", [S1, S2], ids=repr)
def test_every_density_has_mass_one_and_carries_its_grid(grid):
    d = grid.dim
    e = np.eye(d)
    densities = [
        st.initial.uniform(grid),
        st.initial.von_mises_fisher(grid, e[-1], 4.0),
        st.initial.mixture(grid, [1, 3], [e[0], e[-1]], [2.0, 8.0]),
        st.initial.poisson_kernel(grid, 0.3 * e[0]),
        st.initial.from_function(grid, lambda x: 1 + x[..., 0] ** 2),
    ]
    for rho in densities:
        assert isinstance(rho, xr.DataArray) and rho.name == "density" and rho.dims == grid.dims
        assert grid.integrate(rho.values) == pytest.approx(1.0, abs=1e-13)  # normalized by this quadrature
        g = grid_of(rho)
        assert type(g) is type(grid) and g.degree_max == grid.degree_max and g.shape == grid.shape


def test_closed_forms():
    # uniform: 1/(4π), 1/(2π)
    assert np.allclose(st.initial.uniform(S2).values, 1 / (4 * np.pi), rtol=1e-15)
    assert np.allclose(st.initial.uniform(S1).values, 1 / (2 * np.pi), rtol=1e-15)
    # vMF on S^2: κ/(4π sinh κ) e^{κ μ·x}; its quadrature mass is 1 to 1e-15 at lmax 24, so the renormalization
    # leaves the analytic values unchanged to that accuracy
    kappa = 6.0
    rho = st.initial.von_mises_fisher(S2, [0, 0, 2.0], kappa).values
    z = S2.points()[..., 2]
    np.testing.assert_allclose(rho, kappa / (4 * np.pi * np.sinh(kappa)) * np.exp(kappa * z), rtol=1e-12)
    rho = st.initial.von_mises_fisher(S1, [1.0, 0.0], kappa).values
    np.testing.assert_allclose(rho, np.exp(kappa * np.cos(S1.theta)) / (2 * np.pi * iv(0, kappa)), rtol=1e-12)
    # Poisson kernel on S^1: Fourier coefficients f_k = z^k / sqrt(2π) for real z
    z0 = 0.4
    c = S1.analysis(st.initial.poisson_kernel(S1, [z0, 0.0]).values)
    np.testing.assert_allclose(c.real, z0 ** np.arange(c.size) / np.sqrt(2 * np.pi), atol=1e-15)
    # Poisson kernel on S^2: mean vector of (1−|z|²)/(4π|x−z|³) is (2/3)... no closed moment needed: at the
    # node nearest to z the value matches the formula
    zc = np.array([0.0, 0.0, 0.5])
    rho = st.initial.poisson_kernel(S2, zc).values
    x = S2.points()
    np.testing.assert_allclose(rho, (1 - 0.25) / (4 * np.pi * np.linalg.norm(x - zc, axis=-1) ** 3), rtol=1e-6)


def test_large_kappa_does_not_overflow():
    rho = st.initial.von_mises_fisher(st.SphereGrid(64), [0, 0, 1], 800.0).values
    assert np.all(np.isfinite(rho)) and rho.min() >= 0.0


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: st.initial.uniform(np.zeros(3)), "grid"),
        (lambda: st.initial.von_mises_fisher(S2, [0, 0, 0], 1.0), "mean"),
        (lambda: st.initial.von_mises_fisher(S2, [0, 1], 1.0), "mean"),
        (lambda: st.initial.von_mises_fisher(S2, [0, 0, 1], -1.0), "kappa"),
        (lambda: st.initial.von_mises_fisher(S2, [0, 0, 1], float("nan")), "kappa"),
        (lambda: st.initial.mixture(S2, [1, -1], [[0, 0, 1], [1, 0, 0]], [1, 1]), "weights"),
        (lambda: st.initial.mixture(S2, [1, 1], [[0, 0, 1]], [1, 1]), "same length"),
        (lambda: st.initial.poisson_kernel(S1, [1.0, 0.0]), "center"),
        (lambda: st.initial.poisson_kernel(S2, [0.1, 0.0]), "center"),
        (lambda: st.initial.from_function(S2, lambda x: x[..., 2] + 0.5), "negative"),
        (lambda: st.initial.from_function(S2, lambda x: np.full(x.shape[:-1], np.inf)), "integral"),
        (lambda: st.initial.from_function(S2, "gaussian"), "f must be callable"),
        (lambda: grid_of(np.ones(5)), "rho0"),
    ],
)
def test_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("grid", [S1, S2], ids=repr)
def test_sample_moments_within_sampling_error(grid):
    """Tokens drawn by initial.sample have the density's first and second moments (4 standard errors)."""
    e = np.eye(grid.dim)
    rho = st.initial.von_mises_fisher(grid, e[-1] + 0.5 * e[0], 3.0)
    n = 20_000
    x = st.initial.sample(rho, n, seed=4)
    assert x.shape == (n, grid.dim) and np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-14)
    c = grid.analysis(rho.values)
    pts = grid.points()
    for f in (lambda p: p[..., 0], lambda p: p[..., -1], lambda p: p[..., 0] * p[..., -1], lambda p: p[..., -1] ** 2):
        exact = grid.integrate(f(pts) * grid.synthesis(c))  # quadrature exact for these band-limited integrands
        values = f(x)
        assert abs(values.mean() - exact) < 4 * values.std() / np.sqrt(n)
    np.testing.assert_array_equal(x, st.initial.sample(rho, n, seed=4))  # same seed, same tokens
    with pytest.raises(ValueError, match="n must"):
        st.initial.sample(rho, 0)
    with pytest.raises(ValueError, match="seed"):
        st.initial.sample(rho, 5, seed=-1)
    with pytest.raises(ValueError, match="batch must"):
        st.initial.sample(rho, 5, batch=0)


def test_sample_small_batches_give_the_same_law():
    """Batches far below the expected proposal count (many rounds) still give n tokens with the density's mean.

    A vMF(4) on S² has mean direction cos-moment coth κ − 1/κ = 0.7507; 4000 tokens estimate it to sd ≈ 0.004
    (x_3 has sd ≈ 0.26), so 4 standard errors is 0.017.
    """
    rho = st.initial.von_mises_fisher(S2, [0, 0, 1], 4.0)
    x = st.initial.sample(rho, 4000, seed=1, batch=100)
    assert x.shape == (4000, 3)
    kappa = 4.0
    assert abs(x[:, 2].mean() - (1 / np.tanh(kappa) - 1 / kappa)) < 4 * x[:, 2].std() / np.sqrt(4000)


# ---- zonal densities on S^{d−1} (docs/mathematics.md, 'The zonal grid (any dimension)') --------------------------
def _h(dim, r):
    """Mean of the Möbius density ρ_w along w/|w|: h_d(r) = (1 + r²)/(2r) − (1 − r²)²/(2r(1 + r²)) ₂F₁(1, ½; d/2; z²),
    z = 2r/(1 + r²) (docs/mathematics.md, 'The zonal grid (any dimension)')."""
    z = 2 * r / (1 + r * r)
    return (1 + r * r) / (2 * r) - (1 - r * r) ** 2 / (2 * r * (1 + r * r)) * hyp2f1(1.0, 0.5, dim / 2, z * z)


def _law_of_s(dim, f, edges):
    """P(s ∈ [edges_k, edges_{k+1}]) for the law ∝ f(s) (1 − s²)^{(d−3)/2} ds, by adaptive quadrature (scipy.quad)
    in θ = arccos s, where it reads f(cos θ) sin^{d−2} θ dθ (no endpoint singularity at d = 2)."""
    def density(theta):
        return f(np.cos(theta)) * np.sin(theta) ** (dim - 2)
    angles = np.arccos(np.clip(edges, -1.0, 1.0))
    mass = np.array([quad(density, b, a, epsabs=0, epsrel=1e-10, limit=200)[0]
                     for a, b in zip(angles[:-1], angles[1:], strict=True)])
    return mass / mass.sum()


@pytest.mark.parametrize("dim", [2, 3, 8, 64])
def test_zonal_densities_have_mass_one_and_carry_their_grid(dim):
    grid = st.ZonalGrid(dim, 48)
    e = np.eye(dim)[-1]
    densities = [st.initial.uniform(grid), st.initial.von_mises_fisher(grid, e, 4.0),
                 st.initial.von_mises_fisher(grid, -2 * e, 4.0),
                 st.initial.mixture(grid, [0.5, 0.5], [e, -e], [6.0, 6.0]),
                 st.initial.poisson_kernel(grid, 0.2 * e), st.initial.mobius(grid, -0.1 * e),
                 st.initial.from_function(grid, lambda x: 1 + x[..., -1] ** 2)]
    for rho in densities:
        assert rho.dims == ("s",) and rho.attrs["long_name"] == "token density w.r.t. normalized surface measure"
        assert grid.integrate(rho.values) == pytest.approx(1.0, abs=1e-13)  # normalized by this quadrature
        g = grid_of(rho)
        assert isinstance(g, st.ZonalGrid) and (g.dim, g.lmax, g.nodes) == (dim, 48, grid.nodes)
    # 1 divided by the quadrature's Σ w_i (1 to n eps)
    np.testing.assert_allclose(densities[0].values, 1.0, rtol=grid.nodes * np.finfo(float).eps)
    # the mixture of a cap and its antipode is even in s (the nodes are symmetric); its mean is 0
    np.testing.assert_allclose(densities[3].values, densities[3].values[::-1], rtol=1e-14)


@pytest.mark.parametrize("dim", [4, 8])
def test_zonal_von_mises_fisher_closed_form(dim):
    """ρ = e^{κ s}/μ_0(κ) on the normalized measure, μ_0 = Γ(d/2)(2/κ)^{d/2−1} I_{d/2−1}(κ) (scipy's iv)."""
    grid, kappa = st.ZonalGrid(dim, 48), 6.0
    nu = dim / 2 - 1
    mu0 = gamma(dim / 2) * (2 / kappa) ** nu * iv(nu, kappa)
    rho = st.initial.von_mises_fisher(grid, np.eye(dim)[-1], kappa).values
    # the quadrature mass of the exact density is 1 to the truncation of e^{6s} at degree 48 (< 1e-30); rounding of
    # e^{κ s}, iv and the renormalization: 1e-13
    np.testing.assert_allclose(rho, np.exp(kappa * grid.s) / mu0, rtol=1e-13)
    anti = st.initial.von_mises_fisher(grid, -np.eye(dim)[-1], kappa).values
    np.testing.assert_allclose(anti, rho[::-1], rtol=1e-14)


@pytest.mark.parametrize(("dim", "r"), [(3, 0.4), (8, 0.3), (8, -0.5), (64, 0.1)])
def test_mobius_family_mass_and_mean(dim, r):
    """ρ_w = ((1 − r²)/|x − w|²)^{d−1} has mass exactly 1 (a Jacobian) and mean h_d(|r|) sign(r) e_d."""
    grid = st.ZonalGrid(dim, 127)
    w = r * np.eye(dim)[-1]
    rho = st.initial.mobius(grid, w)
    raw = ((1 - r * r) / np.sum((grid.points() - w) ** 2, axis=-1)) ** (dim - 1)
    # Gauss quadrature of the analytic density (its pole at s = (1 + r²)/2r lies outside the Bernstein ellipse of
    # convergence, ρ_B ≥ 3.3 here, for 192 nodes): mass 1 to rounding of the n-term sum of values up to e^{13}
    assert grid.integrate(raw) == pytest.approx(1.0, abs=1e-13)
    np.testing.assert_allclose(rho.values, raw, rtol=1e-13)
    mean = st.diagnostics.mean_vector(grid, grid.analysis(rho.values))
    np.testing.assert_allclose(mean[:-1], 0.0, atol=0)
    assert mean[-1] == pytest.approx(np.sign(r) * _h(dim, abs(r)), abs=1e-13)
    if dim == 3:  # the closed form on S²
        h3 = (1 + r * r) / (2 * r) - (1 - r * r) ** 2 / (4 * r * r) * np.log((1 + r) / (1 - r))
        assert _h(3, r) == pytest.approx(h3, rel=1e-13)


def test_mobius_on_the_circle_and_the_sphere():
    """On S^1 the Möbius family is the Poisson kernel; on S² its mean is h_3(|w|) w/|w| for any w."""
    np.testing.assert_allclose(st.initial.mobius(S1, [0.3, -0.2]).values,
                               st.initial.poisson_kernel(S1, [0.3, -0.2]).values, rtol=1e-14)
    w = np.array([0.12, -0.2, 0.15])
    grid = st.SphereGrid(48)
    rho = st.initial.mobius(grid, w)
    r = np.linalg.norm(w)
    # the Gauss–Legendre grid integrates the analytic density to ~1e-15 at lmax 48 (pole at 1/r + r > 3.8)
    np.testing.assert_allclose(st.diagnostics.mean_vector(grid, grid.analysis(rho.values)), _h(3, r) * w / r,
                               atol=1e-13)


@pytest.mark.parametrize("dim", [2, 3, 8, 64])
@pytest.mark.parametrize("kind", ["vmf", "antipodal"])
def test_zonal_sample_follows_the_law_of_s(dim, kind):
    grid = st.ZonalGrid(dim, 48)
    e = np.eye(dim)[-1]
    if kind == "vmf":
        rho, f = st.initial.von_mises_fisher(grid, e, 5.0), (lambda s: np.exp(5.0 * (s - 1)))
    else:
        rho = st.initial.mixture(grid, [0.3, 0.7], [e, -e], [8.0, 3.0])
        mu8, mu3 = (np.exp(grid.zonal_weights(k).log_scale) for k in (8.0, 3.0))

        def f(s):
            return 0.3 * np.exp(8.0 * s) / mu8 + 0.7 * np.exp(-3.0 * s) / mu3
    n = 20_000
    x = st.initial.sample(rho, n, seed=5)
    assert x.shape == (n, dim)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=0, atol=4 * np.finfo(float).eps)
    s = x[:, -1]
    # chi-square of s in 20 bins of equal probability under the exact law (a fixed seed: the draw is deterministic;
    # the p-value of a correct sampler is uniform, so p > 1e-3 fails a correct sampler once in 1000 seeds)
    fine = np.linspace(-1, 1, 2001)
    cdf = np.concatenate([[0.0], np.cumsum(_law_of_s(dim, f, fine))])
    edges = np.interp(np.linspace(0, 1, 21), cdf, fine)
    expected = n * _law_of_s(dim, f, edges)
    observed = np.histogram(s, bins=edges)[0]
    assert chisquare(observed, expected).pvalue > 1e-3
    # the other coordinates are uniform on the circles s = const: mean 0 and E[x_1²] = (1 − E[s²])/(d − 1) within
    # 4 standard errors
    x1 = x[:, 0]
    assert abs(x1.mean()) < 4 * x1.std() / np.sqrt(n)
    target = (1 - np.mean(s * s)) / (dim - 1)
    assert abs(np.mean(x1 * x1) - target) < 4 * np.std(x1 * x1) / np.sqrt(n)
    np.testing.assert_array_equal(x, st.initial.sample(rho, n, seed=5))  # same seed, same tokens


def test_zonal_sample_is_exact_with_a_coarse_envelope(monkeypatch):
    """With 8 envelope cells (far too coarse: proposals exceed 1.25 × the cells' end values) the draw restarts with
    raised cells and still follows the law."""
    monkeypatch.setattr(st.initial, "ZONAL_CELLS", 8)
    grid = st.ZonalGrid(8, 4, dealias=False)  # 5 nodes: 40 cells
    rho = st.initial.von_mises_fisher(grid, np.eye(8)[-1], 2.0)
    c = grid.analysis(rho.values)
    n = 20_000
    s = st.initial.sample(rho, n, seed=2, batch=500)[:, -1]
    edges = np.linspace(-1, 1, 11)
    expected = n * _law_of_s(8, lambda t: grid.evaluate_zonal(c, t), edges)
    assert chisquare(np.histogram(s, bins=edges)[0], expected).pvalue > 1e-3


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: st.initial.von_mises_fisher(st.ZonalGrid(5, 8), [1, 0, 0, 0, 0], 1.0), "mean"),
        (lambda: st.initial.von_mises_fisher(st.ZonalGrid(5, 8), [0, 0, 0, 0.1, 1], 1.0), "mean"),
        (lambda: st.initial.mixture(st.ZonalGrid(5, 8), [1, 1], [[0, 0, 0, 0, 1], [0, 1, 0, 0, 0]], [1, 1]), "means"),
        (lambda: st.initial.poisson_kernel(st.ZonalGrid(5, 8), [0.1, 0, 0, 0, 0.1]), "center"),
        (lambda: st.initial.mobius(st.ZonalGrid(5, 8), [0, 0, 0, 0, 1.0]), "center"),
        (lambda: st.initial.mobius(st.ZonalGrid(512, 8), [0.0] * 511 + [0.9]), "center"),
        (lambda: st.initial.mobius(S2, [0.1, 0.0]), "center"),
        (lambda: st.initial.from_function(st.ZonalGrid(5, 8), lambda x: 1.0), "f must return"),
        (lambda: st.initial.from_function(S2, lambda x: np.ones(S2.shape[1])), "f must return"),
        (lambda: st.initial.from_function(S1, lambda x: np.ones((1, *S1.shape))), "f must return"),
    ],
)
def test_zonal_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("grid", [S1, S2, st.ZonalGrid(5, 12)], ids=repr)
def test_density_is_the_plain_xarray_dataarray(grid):
    """A density is built on the grid's coordinates prebuilt once (Grid.coordinates, docs/numerics.md, 'Start-up and
    fixed costs'): it must be the DataArray plain xarray builds, and share nothing mutable with the next one."""
    values = 1.0 + grid.points()[..., -1] ** 2
    rho = st.initial.as_density(grid, values, initial="test")
    measure = "normalized surface measure" if isinstance(grid, st.ZonalGrid) else "surface measure"
    reference = xr.DataArray(values / grid.integrate(values), dims=grid.dims,
                             coords={name: xr.Variable(*spec) for name, spec in grid.coords().items()},
                             name="density", attrs={"long_name": f"token density w.r.t. {measure}", "units": "1",
                                                    **grid.attrs(), "initial": "test"})
    xr.testing.assert_identical(rho, reference)
    dim = grid.dims[0]
    rho[dim].attrs["units"] = "changed"
    rho.attrs["initial"] = "changed"
    xr.testing.assert_identical(st.initial.as_density(grid, values, initial="test"), reference)
