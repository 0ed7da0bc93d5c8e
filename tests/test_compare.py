"""Density ↔ particles comparison: compare(), its MMD and sampling floor, and the Wasserstein distances.

The N^{-1/2} law of the pathwise cross-validation is tested with its validation case
(tests/validation/test_cross_validation.py)."""

import numpy as np
import pytest
from scipy.special import iv

import spde_tokens as st
from spde_tokens import diagnostics as diag
from spde_tokens.compare import compare, sampling_floor

# SphereGrid(12) keeps the cases small; it does not resolve exp(x·y) to 1e-16 (degree 15), which the short
# runs here do not need: the density solver's ResolutionWarning about it is expected
pytestmark = pytest.mark.filterwarnings("ignore:.*does not resolve the attention kernel")

S2 = st.SphereGrid(12)
S1 = st.CircleGrid(16)
GRIDS = [S1, S2]


def _mean(grid):
    return np.eye(grid.dim)[-1]


def _runs(grid, n=200, noise=None, seed=3, t_end=0.1, dt=0.02, save_every=0.04, density_seed=None):
    """A short density run and a particle run of the same realization (BiasNoise by default)."""
    noise = st.BiasNoise(0.3) if noise is None else noise
    model = st.AttentionModel(grid.dim, beta=1.0)
    rho0 = st.initial.von_mises_fisher(grid, _mean(grid), 2.0)
    dens = st.solve_density(model, noise, rho0, t_end, dt, seed=seed if density_seed is None else density_seed,
                            save_every=save_every, progress=False)
    x0 = st.initial.sample(rho0, n, seed=1)
    parts = st.simulate_particles(model, noise, x0, t_end, dt, seed=seed, save_every=save_every, scheme="flow",
                                  progress=False)
    return dens, parts


@pytest.fixture(scope="module", params=GRIDS, ids=repr)
def runs(request):
    return request.param, *_runs(request.param)


# ---- compare() ------------------------------------------------------------------------------------------------
def test_compare_variables_units_and_attributes(runs):
    grid, dens, parts = runs
    cmp = compare(dens, parts, wasserstein=True)
    names = {"mmd", "mmd_sampling_floor", "energy_density", "energy_particles", "dispersion_density",
             "dispersion_particles", "dispersion_particles_unbiased", "wasserstein2"}
    assert set(cmp.data_vars) == names
    for name in [*names, "time"]:
        assert {"units", "long_name"} <= set(cmp[name].attrs), name
    assert cmp["wasserstein2"].attrs["units"] == "radian"
    # records every 0.04 to t_end = 0.1 (and at t_end) in both runs: the same four times
    np.testing.assert_array_equal(cmp["time"].values, dens["time"].values)
    assert cmp.attrs["title"] == "spde_tokens cross-validation" and cmp.attrs["Conventions"] == "CF-1.8"
    assert cmp.attrs["seed"] == 3 and cmp.attrs["noise"] == dens.attrs["noise"] == parts.attrs["noise"]
    assert cmp.attrs["grid"] == grid.attrs()["grid"] and cmp.attrs["n_tokens"] == 200
    assert cmp.attrs["mmd_scale"] == 2.0
    assert all(isinstance(v, (str, int, float, np.integer, np.floating)) for v in cmp.attrs.values())
    # the variable is the diagnostic of the last record's tokens and density (tested against exact solutions below)
    tokens = parts["positions"].isel(time=-1).values
    coeffs = grid.analysis(dens["density"].isel(time=-1).values)
    assert float(cmp["wasserstein2"][-1]) == diag.wasserstein2(tokens, grid, coeffs)


def _direct_mmd(grid, rho, tokens, scale):
    """MMD² = mean_ij k(x_i, x_j) − 2 mean_i ∫ k(x_i, y) ρ(y) dA + ∫∫ k ρ ρ by the grid's quadrature."""
    y = grid.points().reshape(-1, grid.dim)
    w = (grid.weights() * rho).ravel()
    k_xx = np.exp(scale * tokens @ tokens.T).mean()
    k_xy = (np.exp(scale * tokens @ y.T) @ w).mean()
    k_yy = w @ np.exp(scale * y @ y.T) @ w
    return np.sqrt(k_xx - 2 * k_xy + k_yy)


@pytest.mark.parametrize("scale", [2.0, 5.0])
def test_mmd_is_the_diagnostic_computed_by_hand(runs, scale):
    grid, dens, parts = runs
    cmp = compare(dens, parts, scale=scale)
    n = parts.sizes["token"]
    for it in range(cmp.sizes["time"]):
        rho = dens["density"].isel(time=it).values
        x = parts["positions"].isel(time=it).values
        coeffs = grid.analysis(rho)
        by_hand = diag.mmd(grid, grid.empirical_coefficients(x), coeffs, scale)
        # the same sums in the same order: equal to rounding
        assert float(cmp["mmd"][it]) == pytest.approx(by_hand, rel=1e-12)
        # against the kernel double sums: the spectral sum omits the degrees beyond 12, whose Funk–Hecke weights
        # are λ_13/λ_0 ≈ 4e-7 at scale 5 (≈ 1e-11 at scale 2); the quadrature is exact for the retained degrees
        rel = 1e-5 if scale > 2 else 1e-9
        assert float(cmp["mmd"][it]) == pytest.approx(_direct_mmd(grid, grid.synthesis(coeffs), x, scale), rel=rel)
        m = x.mean(axis=0)
        assert float(cmp["dispersion_particles_unbiased"][it]) == pytest.approx(n / (n - 1) * (1 - m @ m), rel=1e-13)
        assert float(cmp["dispersion_particles"][it]) == pytest.approx(1 - m @ m, rel=1e-12)
        assert float(cmp["energy_density"][it]) == pytest.approx(diag.energy(grid, coeffs, 1.0), rel=1e-12)


@pytest.mark.parametrize("grid", GRIDS, ids=repr)
def test_sampling_floor_terms_are_exact(grid):
    rho = st.initial.von_mises_fisher(grid, _mean(grid), 2.0).values
    coeffs = grid.analysis(rho)
    y = grid.points().reshape(-1, grid.dim)
    w = (grid.weights() * rho).ravel()
    k_yy = w @ np.exp(2.0 * y @ y.T) @ w
    n = 100
    # N floor² = k(x, x) − ∫∫ k ρ ρ with k(x, x) = e²: the floor uses the trace truncated at degree 12 like the
    # MMD, which misses Σ_{l>12} (2l+1) i_l(2) ≈ 27 i_13(2) ≈ 1e-9 of e² on S^2 (1e-17 on S^1): 1e-9 relative
    assert n * sampling_floor(grid, coeffs, n) ** 2 == pytest.approx(np.exp(2.0) - k_yy, rel=1e-9)
    if grid.dim == 2:  # uniform density on S^1: ∫∫ exp(2 cos θ) = I_0(2)
        u = grid.analysis(st.initial.uniform(grid).values)
        assert n * sampling_floor(grid, u, n) ** 2 == pytest.approx(np.exp(2.0) - iv(0, 2.0), rel=1e-12)


@pytest.mark.parametrize("grid", GRIDS, ids=repr)
def test_mean_mmd_squared_of_samples_is_the_sampling_floor(grid):
    """Tokens drawn from the density, no dynamics (t_end = 0): E MMD² = floor², over 16 independent draws."""
    model = st.AttentionModel(grid.dim, beta=1.0)
    rho0 = st.initial.von_mises_fisher(grid, _mean(grid), 2.0)
    dens = st.solve_density(model, None, rho0, 0.0, 0.1, progress=False)
    n, draws = 256, 16
    tokens = st.initial.sample(rho0, n * draws, seed=11).reshape(draws, n, grid.dim)  # independent draws
    m2 = []
    for x0 in tokens:
        parts = st.simulate_particles(model, None, x0, 0.0, 0.1, progress=False)
        cmp = compare(dens, parts)
        m2.append(float(cmp["mmd"][0]) ** 2)
    floor2 = float(cmp["mmd_sampling_floor"][0]) ** 2
    m2 = np.array(m2)
    # the mean of 16 i.i.d. MMD² has standard error sd/4 (relative sd of one MMD² ≈ 0.5): 4 standard errors
    assert abs(m2.mean() - floor2) < 4 * m2.std(ddof=1) / np.sqrt(draws)
    # and the measured spread is the χ²-like one of a V-statistic (relative sd 0.3–0.8), not a degenerate one
    assert 0.2 < m2.std(ddof=1) / m2.mean() < 1.0


# ---- Wasserstein-2 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [2, 3, 5])
@pytest.mark.parametrize("theta", [0.1, 1.0, 2.5, np.pi])
def test_w2_of_two_point_masses_is_their_angle(dim, theta):
    p = np.zeros(dim)
    q = np.zeros(dim)
    p[0] = 1.0
    q[0], q[1] = np.cos(theta), np.sin(theta)
    # one transport plan (all mass from p to q): W2 = arccos(cos θ), exact to arccos rounding (1e-15 / sin θ)
    assert diag.wasserstein2_tokens([p], [q]) == pytest.approx(theta, abs=1e-7 if theta == np.pi else 1e-13)


@pytest.mark.parametrize("dim", [2, 3, 5])
@pytest.mark.parametrize("fraction", [0.3, 1.0])
def test_w2_of_a_rotated_point_set_on_a_great_circle_is_the_angle(dim, fraction):
    """n points on a great circle and their copy rotated in its plane by α ≤ π/n: W2 = α exactly.

    Distances between points of a great circle are those of the circle. For any matching σ the signed displacements
    d_i along the circle from x_i to R x_σ(i) sum to n α + 2π j, j an integer, so Σ d_i² ≥ n (α + 2π j/n)² (Cauchy–
    Schwarz): n α² for j = 0, reached by the identity only, and ≥ n (2π/n − α)² ≥ n α² for j ≠ 0 when α ≤ π/n.
    Optimal plans between two uniform n-point measures include a permutation (Birkhoff), so W2 = α, whatever the
    points.
    """
    rng = np.random.default_rng(dim)
    n = 40
    alpha = fraction * np.pi / n
    basis, _ = np.linalg.qr(rng.standard_normal((dim, 2)))  # a random plane of R^dim
    theta = rng.uniform(0.0, 2 * np.pi, n)
    x = np.stack([np.cos(theta), np.sin(theta)], axis=1) @ basis.T
    y = np.stack([np.cos(theta + alpha), np.sin(theta + alpha)], axis=1) @ basis.T
    # arccos of cos α rounded to ε loses ε/sin α ≈ 2e-15 at α ≥ 0.024; the exact linear program adds rounding of the
    # sum of n costs: 1e-12 absolute is far above both and far below the next candidate, |2π/n − α| ≥ α
    assert diag.wasserstein2_tokens(x, y) == pytest.approx(alpha, abs=1e-12)


def test_w2_tokens_symmetry_identity_and_subsampling():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = rng.standard_normal((250, 3))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    # exact linear programs: symmetric and zero on identical sets, to the simplex's rounding
    assert diag.wasserstein2_tokens(x, x) == pytest.approx(0.0, abs=1e-7)
    assert diag.wasserstein2_tokens(x, y) == pytest.approx(diag.wasserstein2_tokens(y, x), rel=1e-10)
    # subsampling is reproducible with the seed and changes with it
    a = diag.wasserstein2_tokens(x, y, max_points=100, seed=1)
    assert a == diag.wasserstein2_tokens(x, y, max_points=100, seed=1)
    assert a != diag.wasserstein2_tokens(x, y, max_points=100, seed=2)


@pytest.mark.parametrize("grid", GRIDS, ids=repr)
def test_w2_density_to_sample_is_small_and_decreasing(grid):
    rho0 = st.initial.von_mises_fisher(grid, _mean(grid), 2.0)
    coeffs = grid.analysis(rho0.values)
    sizes = [16, 128, 1000]  # with max_points = 1000: no subsampling, a coarse grid of ≤ 1000 nodes
    w2 = [np.mean([diag.wasserstein2(st.initial.sample(rho0, n, seed=s), grid, coeffs, max_points=1000)
                   for s in range(3)]) for n in sizes]
    # W2(μ_N, ρ) ~ N^{-1/2} (S^1) or sqrt(log N / N) (S^2): about 0.35–0.45× per 8× N; the mean of 3 draws
    # scatters by up to ~30% (S^1, whose low-density side dominates), so each step must fall below 0.7×
    assert all(b < 0.7 * a for a, b in zip(w2, w2[1:], strict=False)), w2
    # at N = 1000 W2 is a small fraction of the density's spread (≈ 1 rad): measured ≈ 0.045 on S^1, ≈ 0.10 on
    # S^2 (including the 1000-node coarse grid's ≈ 0.055 discretization floor)
    assert w2[-1] < 0.15, w2


def test_w2_resolves_a_rotation_of_the_density():
    """A sample of ρ rotated by angle α on S^1: every point moves by α, so W2 ≈ α."""
    rho0 = st.initial.von_mises_fisher(S1, [1.0, 0.0], 4.0)
    coeffs = S1.analysis(rho0.values)
    x = st.initial.sample(rho0, 500, seed=4)
    base = diag.wasserstein2(x, S1, coeffs, max_points=500)
    for alpha in (0.3, 0.6):
        rot = np.array([[np.cos(alpha), -np.sin(alpha)], [np.sin(alpha), np.cos(alpha)]])
        # triangle inequality and rotation invariance: |W2(R μ, ρ) − W2(R ρ, ρ)| ≤ W2(μ, ρ) = base, and
        # W2(R ρ, ρ) = α up to the mass that could go round the other way (density e^{−2κ} ≈ 3e-4 of the peak
        # there): 1e-3 slack
        assert abs(diag.wasserstein2(x @ rot.T, S1, coeffs, max_points=500) - alpha) <= base + 1e-3


# ---- bad input ------------------------------------------------------------------------------------------------
def test_bad_input_names_the_parameter(runs):
    grid, dens, parts = runs
    other = S2 if grid is S1 else S1
    _, parts_other_dim = _runs(other, n=20, t_end=0.04)
    with pytest.raises(ValueError, match="dim"):
        compare(dens, parts_other_dim)
    dens_seed, _ = _runs(grid, n=20, density_seed=4)
    with pytest.raises(ValueError, match="seed"):
        compare(dens_seed, parts)
    dens_noise, _ = _runs(grid, n=20, noise=st.BiasNoise(0.4))
    with pytest.raises(ValueError, match="noise"):
        compare(dens_noise, parts)
    dens_dt, _ = _runs(grid, n=20, dt=0.01, save_every=0.04)
    with pytest.raises(ValueError, match="path_dt"):  # same seed, another step: another Brownian path
        compare(dens_dt, parts)
    with pytest.raises(ValueError, match="beta"):
        compare(dens.assign_attrs(beta=2.0), parts)
    with pytest.raises(ValueError, match="time"):
        compare(dens.isel(time=[0]), parts.isel(time=[-1]))
    with pytest.raises(ValueError, match="scale"):
        compare(dens, parts, scale=0.0)
    with pytest.raises(ValueError, match="parts"):
        compare(dens, dens)
    x = parts["positions"].isel(time=-1).values
    c = grid.analysis(dens["density"].isel(time=-1).values)
    with pytest.raises(ValueError, match="max_points"):
        diag.wasserstein2(x, grid, c, max_points=0)
    with pytest.raises(ValueError, match="tokens"):
        diag.wasserstein2(x[:, :1], grid, c)
    with pytest.raises(ValueError, match="^y must"):
        diag.wasserstein2_tokens(np.eye(3)[:1], np.eye(2)[:1])


def test_common_times_match_to_1e9_relative(runs):
    grid, dens, parts = runs
    shifted = parts.assign_coords(time=parts["time"] * (1 + 3e-10))
    assert compare(dens, shifted).sizes["time"] == dens.sizes["time"]
    shifted = parts.assign_coords(time=parts["time"] * (1 + 3e-9))
    assert compare(dens, shifted).sizes["time"] == 1  # only t = 0 still matches


def test_files_and_coarsened_paths(runs, tmp_path):
    grid, dens, parts = runs
    st.io.write_run(dens, tmp_path / "d.nc")
    st.io.write_run(parts, tmp_path / "p.nc")
    # the attributes survive NetCDF, so files compare exactly like the Datasets
    from_files = compare(st.open_run(tmp_path / "d.nc"), st.open_run(tmp_path / "p.nc"))
    np.testing.assert_array_equal(from_files["mmd"].values, compare(dens, parts)["mmd"].values)
    # a density on the path coarsened ×2 is the same realization as particles on the fine path
    model = st.AttentionModel(grid.dim, beta=1.0)
    rho0 = st.initial.von_mises_fisher(grid, _mean(grid), 2.0)
    path = st.NoisePath(st.BiasNoise(0.3), grid.dim, 0.01, 10, seed=3)
    coarse = st.solve_density(model, st.BiasNoise(0.3), rho0, 0.1, 0.02, path=path.coarsen(2), save_every=0.1,
                              progress=False)
    fine = st.simulate_particles(model, st.BiasNoise(0.3), st.initial.sample(rho0, 50, seed=2), 0.1, 0.01,
                                 path=path, save_every=0.1, progress=False)
    assert compare(coarse, fine).sizes["time"] == 2


def test_a_lagrangian_run_is_compared_through_its_nodes():
    """After the hand-over, compare's MMD is that of the nodes' measure Σ w_k δ_{y_k}, written out here by direct
    kernel sums: MMD² = ΣΣ a a k + ΣΣ w w k − 2 ΣΣ a w k with k = exp(s x·y); and W2 uses the nodes themselves."""
    grid = st.SphereGrid(10)
    rho0 = st.initial.mixture(grid, [0.6, 0.4], [[0, 0, 1], [1, 0, 0]], [5.0, 5.0])
    model, noise = st.AttentionModel(3, 3.0), st.BiasNoise(0.2)
    dens = st.solve_density(model, noise, rho0, t_end=2.0, dt=0.05, seed=3, save_every=1.0, engine="lagrangian")
    x0 = st.initial.sample(rho0, 300, seed=4)
    parts = st.simulate_particles(model, noise, x0, t_end=2.0, dt=0.05, seed=3, save_every=1.0, scheme="flow")
    cmp = compare(dens, parts, wasserstein=True)
    y, w = dens.nodes.values[-1], dens.weights.values
    x = parts.positions.values[-1]
    a = np.full(x.shape[0], 1.0 / x.shape[0])

    def k(p, q):
        return np.exp(diag.MMD_SCALE * p @ q.T)

    mmd2 = a @ k(x, x) @ a + w @ k(y, y) @ w - 2 * a @ k(x, y) @ w
    # the projection onto degrees ≤ 10 keeps the kernel's weights down to λ_10(2)/λ_0 ≈ 1e-12: agreement to 1e-6
    assert float(cmp.mmd[-1]) == pytest.approx(np.sqrt(mmd2), rel=1e-6)
    assert float(cmp.wasserstein2[-1]) == pytest.approx(diag.wasserstein2_nodes(x, y, w), rel=1e-12)
    assert float(cmp.wasserstein2[-1]) < 0.3  # tokens and nodes on one path stay close (measured 0.16)


# ---- zonal densities in d dimensions (docs/mathematics.md, 'The zonal grid (any dimension)') --------------------
@pytest.mark.parametrize(("dim", "kappa"), [(8, 6.0), (64, 20.0)])
def test_zonal_sampling_floor_is_the_mean_mmd_squared_of_samples(dim, kappa):
    """Tokens in R^d drawn from a zonal vMF: E MMD² (of their zonal projection, kernel e^{x·y}) = floor², over 400
    draws of 100 tokens (4 standard errors), where floor² = (∫ ρ Σ_l μ_l Y_l² dσ − Σ_l μ_l P_l)/N. The trace that
    counts all N(d, l) harmonics of each degree, Σ_l μ_l N(d, l) = e (truncated), is rejected: it is not the
    variance of a zonal projection."""
    grid = st.ZonalGrid(dim, 32)
    rho0 = st.initial.von_mises_fisher(grid, np.eye(dim)[-1], kappa)
    coeffs = grid.analysis(rho0.values)
    n, draws = 100, 400
    m2 = np.array([diag.mmd(grid, grid.empirical_coefficients(st.initial.sample(rho0, n, seed=k)), coeffs) ** 2
                   for k in range(draws)])
    se = m2.std(ddof=1) / np.sqrt(draws)
    floor2 = sampling_floor(grid, coeffs, n) ** 2
    assert abs(m2.mean() - floor2) < 4 * se
    w = grid.zonal_weights(1.0)
    mu = w.value * np.exp(w.log_scale)
    whole_sphere = (mu @ grid.basis_values(np.ones(1))[:, 0] ** 2 - mu @ grid.power_spectrum(coeffs)) / n
    assert abs(m2.mean() - whole_sphere) > 4 * se


def test_zonal_run_against_tokens_in_d_dimensions():
    """A zonal density run and tokens in d = 8 of one model agree up to sampling (MMD within 3 floors)."""
    dim = 8
    grid = st.ZonalGrid(dim, 32)
    model = st.AttentionModel(dim, beta=1.0)
    rho0 = st.initial.von_mises_fisher(grid, np.eye(dim)[-1], 3.0)
    dens = st.solve_density(model, None, rho0, 0.5, 0.025, save_every=0.25, progress=False)
    parts = st.simulate_particles(model, None, st.initial.sample(rho0, 400, seed=2), 0.5, 0.025, save_every=0.25,
                                  progress=False)
    cmp = compare(dens, parts)
    assert cmp.attrs["grid"] == "zonal" and cmp.attrs["model_dim"] == dim
    assert cmp.attrs["verdict"].startswith("agree"), cmp.attrs["verdict"]
