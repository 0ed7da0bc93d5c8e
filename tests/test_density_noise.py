"""The stochastic density solver (docs/mathematics.md, 'The stochastic density step'): transport stability,
convergence, the one-point law, ValueNoise."""

import warnings

import numpy as np
import pytest

import spde_tokens as st
from spde_tokens.noise import (
    AntitheticPath,  # ΔN → −ΔN (W₂ only for MLP blocks)
    BiasNoise,
    IdiosyncraticNoise,
    MLPNoise,
    NoisePath,
    QuadraticFormNoise,
    RotationNoise,
    ValueNoise,
)


@pytest.mark.parametrize(("lmax", "noise"), [(63, BiasNoise(0.5)), (47, RotationNoise(0.5))], ids=["bias", "rotation"])
def test_transport_noise_is_stable_with_rk4_substeps(lmax, noise):
    """Acceptance: vMF(κ = 4), beta = 1, V = I, dt = 2e-3, 500 steps, no filter."""
    grid = st.SphereGrid(lmax)
    rho0 = st.initial.von_mises_fisher(grid, [0, 0, 1], 4.0)
    ds = st.solve_density(st.AttentionModel(3, 1.0), noise, rho0, t_end=1.0, dt=2e-3, seed=1, save_every=0.1)
    assert np.all(np.isfinite(ds.density.values))
    assert float(ds.spectral_tail.max()) < 1e-8
    # positivity, as docs/mathematics.md states it ('Stability and sub-steps'): the equation keeps ρ > 0, and the
    # scheme does too on these resolved runs: min ρ is 2.1e-4 at t = 0 (vMF(4) at the antipode, e^{-8} of the
    # maximum) and measured ≥ 5.8e-5 (bias) and 3.2e-5 (rotation) over the run, while the rounding of the transforms
    # is ~1e-16 × max ρ × lmax ≈ 1e-13: no tuning to this CPU's last digits
    assert float(ds.min_density.min()) > 0
    # mass: the divergence has no degree-0 part; rounding of 500 steps × ~16 stages stays below 1e-12
    np.testing.assert_allclose(ds.mass.values, 1.0, rtol=0, atol=1e-12)
    assert ds.attrs["hyperviscosity"] == 0.0 and int(ds.substeps.max()) >= 2


@pytest.mark.parametrize(("lmax", "noise"), [(63, BiasNoise(0.5)), (47, RotationNoise(0.5))], ids=["bias", "rotation"])
def test_plain_heun_blows_up_on_the_same_runs(lmax, noise):
    """Heun multiplies a degree-l mode by (1 + λ⁴/4)^{1/2} > 1 per step, λ = l × displacement (docs/mathematics.md,
    'The stochastic density step')."""
    grid = st.SphereGrid(lmax)
    rho0 = st.initial.von_mises_fisher(grid, [0, 0, 1], 4.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.ResolutionWarning)
        with pytest.raises(st.BlowUpError):
            st.solve_density(st.AttentionModel(3, 1.0), noise, rho0, t_end=1.0, dt=2e-3, seed=1, save_every=0.1,
                             scheme="heun", engine="spectral")  # "auto" would hand the blow-up over to the nodes


def test_same_seed_same_numbers_and_mass_conservation():
    grid = st.SphereGrid(16)
    rho0 = st.initial.von_mises_fisher(grid, [0, 1, 1], 3.0)
    noise = BiasNoise(0.4) + MLPNoise(0.5, "tanh", 8) + IdiosyncraticNoise(1e-3)
    model = st.AttentionModel(3, 2.0)
    a = st.solve_density(model, noise, rho0, t_end=0.2, dt=0.01, seed=3)
    b = st.solve_density(model, noise, rho0, t_end=0.2, dt=0.01, path=NoisePath(noise, 3, 0.01, 40, seed=3))
    c = st.solve_density(model, noise, rho0, t_end=0.2, dt=0.01, seed=4)
    np.testing.assert_array_equal(a.density.values, b.density.values)
    assert not np.array_equal(a.density.values, c.density.values)
    np.testing.assert_allclose(a.mass.values, 1.0, rtol=0, atol=1e-12)
    assert a.attrs["seed"] == 3 and "BiasNoise" in a.attrs["noise"] and a.attrs["noise_mlp_width"] == 8


@pytest.mark.parametrize("grid", [st.CircleGrid(16), st.SphereGrid(12)], ids=repr)
def test_idiosyncratic_noise_is_the_exact_heat_semigroup(grid):
    """V = 0 and IdiosyncraticNoise(nu) alone: ρ_lm(t) = exp(nu λ_l t) ρ_lm(0) exactly (Lawson factor)."""
    e = np.eye(grid.dim)
    rho0 = st.initial.von_mises_fisher(grid, e[-1] + e[0], 3.0)
    nu = 0.05
    ds = st.solve_density(st.AttentionModel(grid.dim, 1.0, V=np.zeros((grid.dim, grid.dim))),
                          IdiosyncraticNoise(nu), rho0, t_end=1.0, dt=0.1, save_every=1.0)
    c0 = grid.analysis(rho0.values)
    expected = grid.synthesis(c0 * np.exp(nu * grid.laplacian_eigenvalues))
    np.testing.assert_allclose(ds.density[-1].values, expected, rtol=0, atol=1e-13)  # rounding of 10 steps


@pytest.mark.parametrize("grid", [st.CircleGrid(32), st.SphereGrid(16)], ids=repr)
def test_strong_convergence_under_coarsening(grid):
    """One path refined with ``coarsen``: the RMS error over 6 seeds falls like dt^{1/2} (BiasNoise, beta = 1).

    Order ½: the frozen-increment (Wong–Zakai) step ignores the Lévy areas of the non-commuting fields P_x e_i.
    Measured slopes: 0.61 on S^1 (n = 32), 0.53 on S^2 (lmax 16).
    """
    noise = BiasNoise(0.5)
    model = st.AttentionModel(grid.dim, 1.0)
    rho0 = st.initial.von_mises_fisher(grid, np.eye(grid.dim)[-1], 2.0)
    t_end, n_fine, ks = 0.5, 512, (2, 4, 8, 16, 32)
    errors = np.zeros((6, len(ks)))
    for seed in range(6):
        path = NoisePath(noise, grid.dim, t_end / n_fine, n_fine, seed=seed)
        ref = st.solve_density(model, noise, rho0, t_end=t_end, dt=path.dt, path=path, save_every=t_end)
        for j, k in enumerate(ks):
            coarse = path.coarsen(k)
            ds = st.solve_density(model, noise, rho0, t_end=t_end, dt=coarse.dt, path=coarse, save_every=t_end)
            diff = ds.density[-1].values - ref.density[-1].values
            errors[seed, j] = np.sqrt(grid.integrate(diff**2))
    rms = np.sqrt((errors**2).mean(axis=0))
    slope = np.polyfit(np.log(ks), np.log(rms), 1)[0]
    # six paths leave the slope uncertain by about ±0.15; strong order ½ (not 1, not 0)
    assert 0.3 < slope < 0.85, (rms, slope)


def _one_point_law(grid, noise, realizations, t_end=1.0, dt=0.02):
    """Mean vector of E ρ(t) against the heat semigroup: E m(t) = exp(−(g/2) l(l+1) t) m(0), l = 1."""
    g = noise.one_point_rate(grid.dim, grid.degree_max) if isinstance(noise, MLPNoise) else noise.one_point_rate(
        grid.dim)
    e = np.eye(grid.dim)
    rho0 = st.initial.von_mises_fisher(grid, e[-1] + 0.5 * e[0], 1.0)
    model = st.AttentionModel(grid.dim, 1.0, V=np.zeros((grid.dim, grid.dim)))
    n = round(t_end / dt)
    samples, tails = [], []
    for r in range(realizations):
        pair = []
        for cls in (NoisePath, AntitheticPath):
            ds = st.solve_density(model, noise, rho0, t_end=t_end, dt=dt, path=cls(noise, grid.dim, dt, n, seed=r,
                                                                                   lmax=grid.degree_max),
                                  save_every=t_end)
            pair.append(ds.mean_vector[-1].values)
            tails.append(float(ds.spectral_tail.max()))
        samples.append(0.5 * (pair[0] + pair[1]))
    samples = np.array(samples)
    m0 = ds.mean_vector[0].values
    rate = 0.5 * g * (2.0 if grid.dim == 3 else 1.0)  # (g/2) l(l+1) on S^2, (g/2) n² on S^1, at degree 1
    mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(realizations)
    se = np.maximum(se, 1e-15)
    return (np.abs(mean - m0 * np.exp(-rate * t_end)) / se, np.abs(mean - m0 * np.exp(-2 * rate * t_end)) / se,
            max(tails))


@pytest.mark.parametrize("grid", [st.CircleGrid(16), st.SphereGrid(16)], ids=repr)
@pytest.mark.parametrize("noise", [RotationNoise(0.5), BiasNoise(0.5)], ids=repr)
def test_one_point_law_heat_equation(grid, noise):
    """V = 0: the realization mean of ρ solves ∂_t Eρ = (g/2) Δ_S Eρ (docs/mathematics.md, 'The one-point law'),
    within 4 standard errors."""
    z, z_doubled, tail = _one_point_law(grid, noise, realizations=48)
    assert tail < 1e-3  # the density stays resolved, so the solver is being tested, not its truncation
    assert np.all(z < 4.0), z
    assert np.max(z_doubled) > 4.0  # the test has the power to see a factor 2 in g


@pytest.mark.slow
@pytest.mark.parametrize("grid", [st.CircleGrid(24), st.SphereGrid(32)], ids=repr)
@pytest.mark.parametrize("noise", [QuadraticFormNoise(0.3), MLPNoise(0.6, "tanh", 32), MLPNoise(0.6, "erf", None)],
                         ids=repr)
def test_one_point_law_heat_equation_slow(grid, noise):
    """The same for QuadraticFormNoise and MLPNoise, whose fields compress the density (it sharpens sooner)."""
    z, _, tail = _one_point_law(grid, noise, realizations=48, t_end=0.5)
    assert tail < 1e-3
    assert np.all(z < 4.0), z


def _quantile_tokens(grid, rho, n, fine=1 << 14):
    """Deterministic tokens θ_i = F⁻¹((i + ½)/n) on S^1: their empirical measure is within O(1/n²) of ρ in
    its low moments (midpoint rule in the variable F), so the particle ensemble carries no initial sampling noise.

    F is the exact integral of the trigonometric polynomial through the grid values (ρ = Σ_k c_k e^{ikθ}, nodes
    θ_j = 2πj/n_nodes), tabulated on ``fine`` angles and inverted by linear interpolation (error O(fine⁻²)).
    """
    values = rho.values
    c = np.fft.rfft(values) / values.size
    k = np.arange(1, c.size)
    theta = np.linspace(0.0, 2 * np.pi, fine + 1)
    # ∫_0^θ (c_0 + 2 Re Σ_{k≥1} c_k e^{ikθ}) dθ (the Nyquist coefficient of an even count enters once)
    ck = c[1:] * np.where(2 * k == values.size, 1.0, 2.0)
    cdf = c[0].real * theta + np.real((np.exp(1j * np.outer(theta, k)) - 1.0) @ (ck / (1j * k)))
    t = np.interp((np.arange(n) + 0.5) / n * cdf[-1], cdf, theta)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_value_noise_density_matches_layer_update_ensemble(beta):
    """Mean dispersion of the density (frozen field + drift correction) against tokens moved by the layer update
    x ← normalize(x + sigma P_x ΔW a(x)) on the same paths (V = 0, S^1)."""
    grid = st.CircleGrid(32)
    noise = ValueNoise(1.0)
    model = st.AttentionModel(2, beta, V=np.zeros((2, 2)))
    rho0 = st.initial.von_mises_fisher(grid, [0, 1], 1.5)
    n_tokens, t_end, dt = 600, 0.5, 0.01
    x0 = _quantile_tokens(grid, rho0, n_tokens)
    diffs = []
    for r in range(12):
        path = NoisePath(noise, 2, dt, round(t_end / dt), seed=100 + r)
        dens = st.solve_density(model, noise, rho0, t_end=t_end, dt=dt, path=path, save_every=t_end)
        # Funk–Hecke attention (beta > 0 only) equals the direct sums to ~1e-13 (tests/test_particles.py) in O(N L)
        # time instead of O(N²): 8x faster here
        parts = st.simulate_particles(model, noise, x0, t_end=t_end, dt=dt, path=path, save_every=t_end,
                                      attention="harmonic" if beta > 0 else "direct")
        # unbiased pairwise estimator of the dispersion: N/(N−1) (1 − |m̂|²)
        diffs.append(float(dens.dispersion[-1]) - n_tokens / (n_tokens - 1) * float(parts.dispersion[-1]))
    diffs = np.array(diffs)
    se = diffs.std(ddof=1) / np.sqrt(diffs.size)
    # paired on the same paths: the difference is the O(dt) weak error of the layer update plus O(1/N) chaos
    assert abs(diffs.mean()) < 4 * se + 2e-3, (diffs.mean(), se)


class _GivenPath(NoisePath):
    """A one-step path whose every increment is the given array (e.g. h E_kl for ValueNoise's ΔW)."""

    def __init__(self, noise, dim, dt, increment):
        super().__init__(noise, dim, dt, 1, seed=0)
        self._increment = increment

    def increments(self, step):
        return {key: self._increment for key in super().increments(step)}


def _moments(grid, rho):
    """∫ x ρ dA and ∫ x xᵀ ρ dA by the grid's quadrature (exact for ρ of degree ≤ lmax)."""
    return _point_moments(grid.points().reshape(-1, grid.dim), (grid.weights() * rho).reshape(-1))


def _point_moments(x, w):
    """Σ_i w_i x_i and Σ_i w_i x_i x_iᵀ, flattened into one vector."""
    return np.concatenate([w @ x, np.einsum("ik,il,i->kl", x, x, w).ravel()])


def _expected_rate(change, dim, dt, h):
    """(E F(ΔW) over ΔW with i.i.d. N(0, dt) entries)/dt to O(dt), and F(0)/dt.

    E F = F(0) + (dt/2) Σ_kl ∂²F/∂W_kl² + O(dt²) (Gaussian moments), the second derivatives by central differences
    of step h. F(0) is the step with a zero increment: for ValueNoise with V = 0, the drift correction alone.
    """
    f0 = change(np.zeros((dim, dim)))
    second = np.zeros_like(f0)
    for e in np.eye(dim * dim):
        step = h * e.reshape(dim, dim)
        second += (change(step) + change(-step) - 2 * f0) / h**2
    return (f0 + 0.5 * dt * second) / dt, f0 / dt


def _value_noise_generator_gap(grid, sigma, beta, rho0, dt, h=1e-3):
    """Expected one-step change of the moments of ρ under ValueNoise(sigma) (V = 0) per unit time, minus the
    layer update's, and the part of the former that the zero increment (the drift correction alone) makes.

    Density: F(W) = moments(ρ₁(W)) − moments(ρ₀) for a step with increment ΔW = W; over ΔW with i.i.d. N(0, dt)
    entries E F = F(0) + (dt/2) Σ_kl ∂²F/∂W_kl² + O(dt²), the second derivatives by central differences of step h.
    Layer update x ← normalize(x + sigma P_x ΔW a(x)) with the measure frozen over the step:
    normalize(x + u) = x + u − ½|u|² x + O(|u|³) and E u uᵀ = sigma² dt |a|² P_x give
    E φ(x') − φ(x) = dt (sigma²/2) |a|² Δ_S φ + O(dt²), with Δ_S x_k = −2 x_k and Δ_S (x_k x_l − δ_kl/3) =
    −6 (x_k x_l − δ_kl/3) on S², and a(x) the softmax sums over the nodes written out here.
    """
    noise = ValueNoise(sigma)
    model = st.AttentionModel(3, beta, V=np.zeros((3, 3)))

    def change(increment):
        ds = st.solve_density(model, noise, rho0, t_end=dt, dt=dt, save_every=dt, progress=False,
                              path=_GivenPath(noise, 3, dt, increment))
        return _moments(grid, ds.density[-1].values) - start

    start = _moments(grid, rho0.values)
    density, correction = _expected_rate(change, 3, dt, h)

    x = grid.points().reshape(-1, 3)
    w = (grid.weights() * rho0.values).reshape(-1)
    kernel = np.exp(beta * x @ x.T)
    a = kernel @ (w[:, None] * x) / (kernel @ w)[:, None]
    wa = w * np.sum(a**2, axis=1)  # w_j ρ_j |a(x_j)|²
    layer1 = -sigma**2 * wa @ x
    layer2 = -3 * sigma**2 * (np.einsum("jk,jl,j->kl", x, x, wa) - np.eye(3) * wa.sum() / 3)
    layer = np.concatenate([layer1, layer2.ravel()])
    return np.abs(density - layer).max(), np.abs(layer).max(), np.abs(correction).max()


def test_value_noise_step_has_the_layer_updates_generator():
    """ValueNoise: the expected density step equals the layer update's Itô generator (sigma²/2)|a|² Δ_S to O(dt).

    This is what the drift correction c = −(sigma²/4) ∇_S|a|² of the frozen step is for (docs/mathematics.md, 'The
    stochastic density step'): without it the frozen step would follow the Stratonovich equation of the field,
    whose generator differs by (sigma²/4) ∇_S|a|² · ∇_S φ.
    """
    grid = st.SphereGrid(12)
    rho0 = st.initial.von_mises_fisher(grid, [0.3, 0.0, 1.0], 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.ResolutionWarning)  # lmax 12 < 18 for exp(2 x·y): a concentrated density
        # would be under-resolved, this vMF(2) is not (its coefficients at degree 12 are ~1e-13 of ρ_00)
        gaps = [_value_noise_generator_gap(grid, 0.8, 2.0, rho0, dt) for dt in (1e-3, 1e-4)]
    (gap_coarse, _, _), (gap, scale, correction) = gaps
    # the gap is the O(dt) weak error of one step: measured 4.5e-5, 4.5e-6, 4.6e-7 at dt = 1e-2, 1e-3, 1e-4
    # (scale 0.18); the central differences add h²/12 ∂⁴F ≈ 4e-9 at h = 1e-3 (4e-7 at h = 1e-2), rounding
    # ~1e-16/h² ≈ 1e-10. Tolerance 2e-6 at dt = 1e-4, and first order: the gap falls ~10× from dt = 1e-3
    assert gap < 2e-6, (gap, scale)
    assert 5.0 < gap_coarse / gap < 20.0, (gap_coarse, gap)
    assert correction > 1e3 * 2e-6  # power: leaving out the correction (0.0135) would miss by 7000 tolerances


def test_value_noise_correction_vanishes_at_beta_zero():
    """beta = 0: a = m does not depend on x, so a zero increment leaves ρ unchanged (no drift correction), and the
    expected step is the layer update's, as at beta > 0."""
    grid = st.SphereGrid(12)
    rho0 = st.initial.von_mises_fisher(grid, [0.3, 0.0, 1.0], 2.0)
    gap, scale, correction = _value_noise_generator_gap(grid, 0.8, 0.0, rho0, 1e-4)
    # the moments change by rounding only (~1e-16 per transform, divided by dt = 1e-4); measured 2e-11
    assert correction < 1e-10
    assert gap < 2e-6, (gap, scale)  # measured 7e-9: the h² error of the differences, no O(dt) term at beta = 0


def _value_noise_step_rates(engine, dt, n_tokens=500, h=1e-3):
    """Expected change per unit time of the first two moments under one step of ValueNoise(1) (V = 0, beta = 2,
    S¹): the density (``engine``) and ``simulate_particles``' layer update on quantile tokens of the same density,
    each from :func:`_expected_rate` with the same increments. Returns (density rate, tokens rate, F(0)/dt)."""
    grid = st.CircleGrid(32)
    noise = ValueNoise(1.0)
    model = st.AttentionModel(2, 2.0, V=np.zeros((2, 2)))
    rho0 = st.initial.von_mises_fisher(grid, [0.3, 1.0], 1.5)
    x0 = _quantile_tokens(grid, rho0, n_tokens)
    start_density, start_tokens = _moments(grid, rho0.values), _point_moments(x0, np.full(n_tokens, 1 / n_tokens))

    def density_change(increment):
        ds = st.solve_density(model, noise, rho0, t_end=dt, dt=dt, save_every=dt, progress=False, engine=engine,
                              path=_GivenPath(noise, 2, dt, increment))
        if engine == "lagrangian":
            return _point_moments(ds.nodes.values[-1], ds.weights.values) - start_density
        return _moments(grid, ds.density[-1].values) - start_density

    def token_change(increment):
        parts = st.simulate_particles(model, noise, x0, t_end=dt, dt=dt, save_every=dt, progress=False,
                                      path=_GivenPath(noise, 2, dt, increment), attention="direct")
        return _point_moments(parts.positions.values[-1], np.full(n_tokens, 1 / n_tokens)) - start_tokens

    density, correction = _expected_rate(density_change, 2, dt, h)
    tokens, _ = _expected_rate(token_change, 2, dt, h)
    return density, tokens, correction


@pytest.mark.parametrize("engine", ["spectral", "lagrangian"])
def test_value_noise_expected_step_is_the_layer_updates_in_simulate_particles(engine):
    """End to end: the expected one-step change of the moments of the density (frozen field + drift correction
    −(sigma²/4) ∇_S|a|², on the grid or on the Lagrangian nodes) equals that of ``simulate_particles``' layer
    update x ← normalize(x + sigma P_x ΔW a(x)) on quantile tokens of the same density, to first order in dt.

    Exact expectations over ΔW (central differences, no sampling noise), so the test is sharp where the ensemble
    test above is not (there the correction moves the mean dispersion by 0.0035 against a standard error of 0.0025
    over 12 paths, measured). Power, measured by monkeypatching the correction: it enters the density's rate
    linearly, so ×0 or ×2 shifts it by ∓F(0)/dt = 0.0163 and the gap becomes 0.0163 on both engines, 8000 times the
    tolerance (the last assertion keeps that margin above 1000).
    """
    (fine, tokens_fine, correction), (coarse, tokens_coarse, _) = (_value_noise_step_rates(engine, dt)
                                                                   for dt in (1e-4, 1e-3))
    gap, gap_coarse = np.abs(fine - tokens_fine).max(), np.abs(coarse - tokens_coarse).max()
    # the gap is the O(dt) weak error of one step, measured 3.9e-7 at dt = 1e-4 and 4.6e-6 at dt = 1e-3 (scale of
    # the rates 0.21), on both engines; the quantile tokens' O(1/N²) error (N = 500) and the central differences'
    # h²/12 ∂⁴F stay below 1e-7 (the tokens agree with the generator (sigma²/2)|a|²Δ_S written out to 1e-7).
    # Tolerance 2e-6 at dt = 1e-4, and first order: the gap falls about 10x from dt = 1e-3
    tolerance = 2e-6
    assert gap < tolerance, gap
    assert 5.0 < gap_coarse / gap < 20.0, (gap_coarse, gap)
    assert np.abs(correction).max() > 1000 * tolerance, correction

def _run(**kwargs):
    grid = st.CircleGrid(16)
    args = {"model": st.AttentionModel(2, 1.0), "noise": BiasNoise(0.2), "rho0": st.initial.uniform(grid),
            "t_end": 0.1, "dt": 0.01, "seed": 0}
    args.update(kwargs)
    return st.solve_density(**args)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"seed": None}, "seed"),
        ({"seed": -1}, "seed"),
        ({"path": NoisePath(BiasNoise(0.2), 2, 0.02, 10, seed=0), "seed": None}, "dt"),
        ({"path": NoisePath(BiasNoise(0.2), 2, 0.01, 5, seed=0), "seed": None}, "n_steps"),
        ({"path": NoisePath(BiasNoise(0.3), 2, 0.01, 10, seed=0), "seed": None}, "noise"),
        ({"path": NoisePath(BiasNoise(0.2), 3, 0.01, 10, seed=0), "seed": None}, "dim"),
        ({"path": NoisePath(BiasNoise(0.2), 2, 0.01, 10, seed=0), "seed": 5}, "seed"),
        ({"noise": None, "path": NoisePath(BiasNoise(0.2), 2, 0.01, 10, seed=0)}, "path"),
        ({"noise": "bias"}, "noise"),
        ({"cfl": 0.0}, "cfl"),
        ({"cfl": 1.5}, "cfl"),
        ({"hyperviscosity": -1.0}, "hyperviscosity"),
        ({"path": "path", "seed": None}, "path"),
    ],
)
def test_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        _run(**kwargs)


def test_hyperviscosity_is_recorded_and_damps_the_top_degree():
    grid = st.CircleGrid(16)
    c = np.zeros(grid.n_coeff, complex)
    c[0], c[-1] = 1 / np.sqrt(2 * np.pi), 1e-3
    rho0 = st.initial.as_density(grid, grid.synthesis(c), normalize=False)
    model = st.AttentionModel(2, 1.0, V=np.zeros((2, 2)))
    ds = st.solve_density(model, None, rho0, t_end=1.0, dt=0.1, hyperviscosity=2.0, save_every=1.0)
    assert ds.attrs["hyperviscosity"] == 2.0
    top = grid.analysis(ds.density[-1].values)[-1]
    assert abs(top) == pytest.approx(1e-3 * np.exp(-2.0), rel=1e-12)  # rate 2 at the top degree, exact factor


def test_noise_substeps_do_not_evaluate_the_attention(monkeypatch):
    """The split step (docs/mathematics.md, 'Splitting' and 'Merged half steps'): the attention drift is evaluated by
    the RK4 half steps only (8 evaluations per step with a record after each; 4 per step and 4 per record when the
    half steps between records merge), whatever the number of noise sub-steps the CFL number asks for."""
    from spde_tokens.drift import GridAttention

    calls = {"n": 0}
    original = GridAttention.drift

    def counted(self, *args):
        calls["n"] += 1
        return original(self, *args)

    monkeypatch.setattr(GridAttention, "drift", counted)
    grid = st.SphereGrid(24)
    rho0 = st.initial.von_mises_fisher(grid, [0, 0, 1], 3.0)
    ds = st.solve_density(st.AttentionModel(3, 1.0), BiasNoise(0.6), rho0, t_end=0.1, dt=0.02, seed=2,
                          save_every=0.02, engine="spectral")
    assert ds.substeps.values[1:].min() >= 2 and ds.substeps.values.max() >= 4  # the noise asks for 2–4 sub-steps
    assert calls["n"] == 8 * 5  # a record after every step: two half steps of four stages per step, five steps
    calls["n"] = 0
    st.solve_density(st.AttentionModel(3, 1.0), BiasNoise(0.6), rho0, t_end=0.1, dt=0.02, seed=2, save_every=0.1,
                     engine="spectral")
    # one record at the end: the half steps between records merge, D_{dt/2} ∘ D_{dt/2} = D_dt, so four stages per
    # step plus the closing half step before the record
    assert calls["n"] == 4 * 5 + 4


def test_merged_half_steps_differ_by_the_schemes_fourth_order_error():
    """Merging the adjacent drift half steps between records (docs/mathematics.md, 'Merged half steps') integrates
    the same map D_{dt/2} ∘ D_{dt/2} = D_dt by one RK4 step instead of two: on one path, the run with a single record
    differs from the run recorded at every step (never merged) by RK4's local error, O(dt⁵) per step, O(dt⁴) at
    t = 0.4. Measured on one path of 32 steps and its coarsenings by 4 and 2 (dt = 0.05, 0.025, 0.0125): differences
    2.2e-8, 1.5e-9, 9.9e-11, orders 3.82 and 3.96. A wrong merged length (D_{dt/2} or D_{3dt/2} in place of D_dt)
    would leave an O(dt) gap (order ≈ 1); the band 4 ± 0.5 holds the pre-asymptotic spread. The smallest gap must
    stay above 1e-12, itself well above the rounding of the transforms (≈ 1e-16 × 24² per stage, 256 stages)."""
    grid = st.SphereGrid(24)
    rho0 = st.initial.von_mises_fisher(grid, [0, 0, 1], 3.0)
    model, noise, t_end = st.AttentionModel(3, 2.0), BiasNoise(0.3), 0.4
    fine = NoisePath(noise, 3, t_end / 32, 32, seed=5)
    gaps = []
    for path in (fine.coarsen(4), fine.coarsen(2), fine):
        merged, unmerged = (st.solve_density(model, noise, rho0, t_end=t_end, dt=path.dt, path=path, save_every=every,
                                             engine="spectral").density.isel(time=-1) for every in (t_end, path.dt))
        gaps.append(float(np.abs(merged - unmerged).max()))
    orders = np.log2(np.array(gaps[:-1]) / gaps[1:])
    assert np.all(np.abs(orders - 4.0) < 0.5), (gaps, orders)
    assert gaps[-1] > 1e-12


def test_value_noise_steps_are_not_merged():
    """ValueNoise builds its field (and its drift correction) from the density at the start of each step, which a
    state owing its closing half step does not hold: the equation refuses to merge."""
    grid = st.SphereGrid(16)
    equation = st.density.DensityEquation(st.AttentionModel(3, 1.0), grid, noise=ValueNoise(0.3))
    assert not equation.merges_half_steps
    assert st.density.DensityEquation(st.AttentionModel(3, 1.0), grid, noise=BiasNoise(0.3)).merges_half_steps
    coeffs = grid.analysis(st.initial.uniform(grid).values)
    path = NoisePath(ValueNoise(0.3), 3, 0.01, 1, seed=0)
    with pytest.raises(ValueError, match="cannot be merged"):
        equation.step(coeffs, 0.01, st.steppers.get_scheme("rk4"), 0.5, path.increments(0), close=False)
