"""The density solver on a ZonalGrid (S^{d−1}, any d) against exact solutions: the beta = 0 Möbius family, the linear
growth rates of the uniform state, the heat law of the mean density under common noise, and what it refuses
(docs/mathematics.md, 'The zonal grid (any dimension)')."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.special import hyp2f1, ive

import spde_tokens as st
from spde_tokens.grids import resolving_degree


def _h(dim, r):
    """Mean of the Möbius density ρ_w along w/|w| (docs/mathematics.md, 'The zonal grid (any dimension)')."""
    z = 2 * r / (1 + r * r)
    return (1 + r * r) / (2 * r) - (1 - r * r) ** 2 / (2 * r * (1 + r * r)) * hyp2f1(1.0, 0.5, dim / 2, z * z)


@pytest.mark.parametrize(("dim", "r0", "dt"), [(3, 0.3, 2e-3), (8, 0.2, 2e-3), (64, 0.05, 1e-3)])
def test_mobius_family(dim, r0, dt):
    """beta = 0, Q = K = V = I: ρ_{w(t)}, w = r e_d, ṙ = ½ (1 − r²) h_d(r), to t = 1.5 on ZonalGrid(d, 127).

    Radii: r goes from 0.3 to 0.69 (d = 3), 0.2 to 0.56 (d = 8), 0.05 to 0.21 (d = 64, where the peak
    ((1 + r)/(1 − r))^{63} is e^{27}); the Gegenbauer coefficients decay like r^l √(dimension of degree l), the
    spectral tail stays below 1e-27 (checked). Measured: the relative L²(σ) error of the density (its coefficients)
    and the sup error of the law of s relative to its maximum. The grid values of the density themselves are not
    compared: at the outer nodes of d = 64 a rounding error of the coefficients is seen through 1/√w_i ≈ e^{57}.
    Tolerance 1e-8 (acceptance): measured 2e-12 (d = 3), 3e-11 (d = 8), 1.2e-10 (d = 64), the RK4 error (it falls
    16-fold when dt halves at d = 64); the ODE is solved to 1e-13.
    """
    grid, t_end = st.ZonalGrid(dim, 127), 1.5
    e = np.eye(dim)[-1]
    ode = solve_ivp(lambda t, r: 0.5 * (1 - r * r) * _h(dim, r), (0, t_end), [r0], rtol=1e-13, atol=1e-15,
                    dense_output=True)
    ds = st.solve_density(st.AttentionModel(dim, 0.0), None, st.initial.mobius(grid, r0 * e), t_end, dt,
                          save_every=0.5, progress=False)
    assert ds.attrs["density_engine"] == "spectral"
    assert float(ds.spectral_tail.max()) < 1e-27
    for k, t in enumerate(ds.time.values):
        exact = st.initial.mobius(grid, ode.sol(t)[0] * e).values
        c_exact, c_run = grid.analysis(exact), grid.analysis(ds.density.isel(time=k).values)
        assert np.linalg.norm(c_run - c_exact) <= 1e-8 * np.linalg.norm(c_exact)
        law = grid.law_of_s(exact)
        assert np.abs(ds.law_s.isel(time=k).values - law).max() <= 1e-8 * law.max()
    np.testing.assert_allclose(ds.mean_vector.values[:, -1], [_h(dim, ode.sol(t)[0]) for t in ds.time.values],
                               rtol=1e-8)


def _rate(dim, degree, beta):
    """σ_l = l(l + d − 2) I_{l+ν}(β)/(β I_ν(β)), ν = d/2 − 1 (scipy's ive; docs/mathematics.md, 'Linear instability
    of the uniform state')."""
    nu = dim / 2 - 1
    return degree * (degree + dim - 2) * ive(degree + nu, beta) / ive(nu, beta) / beta


@pytest.mark.parametrize("dim", [4, 16, 128])
@pytest.mark.parametrize("beta", [1.0, 10.0])
def test_linear_growth_rates(dim, beta):
    """Degree-l modes (l = 1…4) of 1 ± ε Y_l (ε = 1e-4) grow at σ_l; measured from ½(|c_l⁺(t)| + |c_l⁻(t)|).

    The mean of the two amplitudes cancels the quadratic term (the same for ±ε; a zonal mode of even degree meets
    its own square), leaving a relative O(ε²) ≈ 1e-8. RK4 with 200 steps to t = min(1, 3/σ): relative
    (σ dt)^4/120 ≤ 4e-10. Rounding: about 1e-17 per step on c_l (the degree-0 part of the drift is zero to
    rounding), i.e. a relative 1e-15/(ε σ t), ≤ 6e-8 for the slowest mode (d = 128, β = 1, l = 4: σ = 1.8e-6).
    Tolerance 1e-6 relative (acceptance); measured worst 1.5e-7.
    """
    lmax = max(16, resolving_degree(dim, beta))
    grid, eps = st.ZonalGrid(dim, lmax), 1e-4
    for degree in (1, 2, 3, 4):
        rate = _rate(dim, degree, beta)
        t_end = min(1.0, 3.0 / rate)
        amplitude = 0.0
        for sign in (1.0, -1.0):
            c = np.zeros(lmax + 1)
            c[0], c[degree] = 1.0, sign * eps
            rho0 = st.initial.as_density(grid, grid.synthesis(c), normalize=False)
            ds = st.solve_density(st.AttentionModel(dim, beta), None, rho0, t_end, t_end / 200, save_every=t_end,
                                  progress=False)
            amplitude += 0.5 * np.sqrt(ds.power_spectrum.values[-1, degree])
        measured = np.log(amplitude / eps) / t_end
        assert measured == pytest.approx(rate, rel=1e-6), (degree, measured, rate)


def _law_of_s_bins(grid, coeffs, edges):
    """P(s ∈ [edges_k, edges_{k+1}]) for the zonal density of ``coeffs``: ∫ c_d (1 − s²)^{(d−3)/2} ρ(s) ds by
    adaptive quadrature (scipy.quad) of the band-limited ρ evaluated by the recurrence."""
    from scipy.integrate import quad
    from scipy.special import gammaln

    d = grid.dim
    c_d = np.exp(gammaln(d / 2) - 0.5 * np.log(np.pi) - gammaln((d - 1) / 2))

    def law(s):
        return c_d * grid.evaluate_zonal(coeffs, np.array([s]))[0] * (1 - s * s) ** ((d - 3) / 2)

    return np.array([quad(law, a, b, epsabs=1e-13)[0] for a, b in zip(edges[:-1], edges[1:], strict=True)])


@pytest.mark.slow
@pytest.mark.parametrize("noise", [st.BiasNoise(0.5), st.MLPNoise(0.5, "tanh", 32)], ids=["bias", "mlp"])
def test_mean_density_matches_particles(noise):
    """V = 0, d = 8: the mean over 64 realizations of the law of x·e_d (tokens from vMF(κ = 4), 1000 per realization,
    fresh draws so that the mean is unbiased for the law of one token) against ``mean_density=True`` at t = 1, in 8
    bins of s. Each bin within 4 standard errors (over the realizations; 8 bins at 4 SE: a false alarm below 5e-4);
    the heat law with rate 2g must be rejected (power). The particles' layer update x ← (x + ΔN)/|x + ΔN| has the
    generator (g/2) Δ_S up to O(dt) = 1e-2 relative corrections of the change, below the 4 SE. About 45 s.
    """
    d, t_end, dt, realizations, n = 8, 1.0, 0.01, 64, 1000
    grid, e = st.ZonalGrid(d, 48), np.eye(d)[-1]
    rho0 = st.initial.von_mises_fisher(grid, e, 4.0)
    model = st.AttentionModel(d, 1.0, V=np.zeros((d, d)))
    edges = np.linspace(-1.0, 1.0, 9)
    predicted = {}
    for factor in (1.0, 2.0):  # the model's rate g, and 2g by a noise of amplitude √2 times larger
        scaled = noise if factor == 1.0 else type(noise)(**{k: (np.sqrt(factor) * v if k in ("gamma", "sigma") else v)
                                                             for k, v in noise.parameters().items()})
        ds = st.solve_density(model, scaled, rho0, t_end, dt, save_every=t_end, progress=False, mean_density=True)
        assert ds.attrs["one_point_rate"] == pytest.approx(factor * noise.one_point_rate(d), rel=1e-14)
        predicted[factor] = _law_of_s_bins(grid, grid.analysis(ds.density.isel(time=-1).values), edges)
    fractions = []
    for r in range(realizations):
        x0 = st.initial.sample(rho0, n, seed=1000 + r)
        run = st.simulate_particles(model, noise, x0, t_end, dt, seed=r, save_every=t_end, progress=False)
        fractions.append(np.histogram(run.positions.isel(time=-1).values @ e, edges)[0] / n)
    fractions = np.asarray(fractions)
    mean, se = fractions.mean(axis=0), fractions.std(axis=0, ddof=1) / np.sqrt(realizations)
    assert np.all(np.abs(mean - predicted[1.0]) < 4 * se), (mean - predicted[1.0]) / se
    assert np.max(np.abs(mean - predicted[2.0]) / se) > 4


def test_mean_density_is_the_heat_law():
    """mean_density=True with V = 0: each coefficient decays as exp(−(g/2) l(l + d − 2) t), g = γ² + 2ν (bias and
    idiosyncratic noise), exactly in spectral space (rounding: 1e-14 relative)."""
    d, gamma, nu, t_end = 16, 0.4, 0.05, 0.5
    grid = st.ZonalGrid(d, 24)
    rho0 = st.initial.von_mises_fisher(grid, np.eye(d)[-1], 3.0)
    ds = st.solve_density(st.AttentionModel(d, 2.0, V=np.zeros((d, d))),
                          st.BiasNoise(gamma) + st.IdiosyncraticNoise(nu), rho0, t_end, 0.05, save_every=t_end,
                          progress=False, mean_density=True)
    ell = np.arange(25)
    expected = grid.analysis(rho0.values) * np.exp(-0.5 * (gamma**2 + 2 * nu) * ell * (ell + d - 2) * t_end)
    np.testing.assert_allclose(grid.analysis(ds.density.isel(time=-1).values), expected, rtol=1e-12, atol=1e-15)
    assert ds.attrs["mean_density"] == 1


def test_idiosyncratic_noise_on_the_zonal_grid():
    """nu Δ_S on a ZonalGrid with V = 0: the mean along e_d decays as exp(−nu (d − 1) t) (degree 1)."""
    d, nu = 8, 0.1
    grid = st.ZonalGrid(d, 32)
    rho0 = st.initial.von_mises_fisher(grid, np.eye(d)[-1], 2.0)
    ds = st.solve_density(st.AttentionModel(d, 1.0, V=np.zeros((d, d))), st.IdiosyncraticNoise(nu), rho0, 1.0,
                          0.1, save_every=0.5, progress=False)
    m0 = float(ds.mean_vector.values[0, -1])
    np.testing.assert_allclose(ds.mean_vector.values[:, -1], m0 * np.exp(-nu * (d - 1) * ds.time.values), rtol=1e-12)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"noise": st.BiasNoise(0.3)}, "simulate_particles"),
    ({"engine": "lagrangian"}, "ZonalGrid"),
    ({"noise": st.BiasNoise(0.3), "mean_density": True}, "V = 0"),
    ({"noise": None, "mean_density": True, "V": 0}, "common noise"),
    ({"noise": st.ValueNoise(0.3), "mean_density": True, "V": 0}, "attention output"),
    ({"Q": 2}, "simulate_particles"),
    ({"V": 3}, "simulate_particles"),
    ({"mean_density": "yes"}, "mean_density"),
])
def test_zonal_refusals(kwargs, match):
    d = 5
    grid = st.ZonalGrid(d, 8)
    rho0 = st.initial.von_mises_fisher(grid, np.eye(d)[-1], 1.0)
    matrices = {"Q": np.diag([1.0, 2.0, 1.0, 1.0, 1.0]), "V": np.diag([1.0, 1.0, 1.0, 1.0, 2.0])}
    model_args = {k: (np.zeros((d, d)) if kwargs[k] == 0 else matrices[k]) for k in ("Q", "V") if k in kwargs}
    run_args = {k: v for k, v in kwargs.items() if k not in ("Q", "V")}
    with pytest.raises(ValueError, match=match):
        st.solve_density(st.AttentionModel(d, 1.0, **model_args), run_args.pop("noise", None), rho0, 0.1, 0.05,
                         progress=False, seed=0, **run_args)


@pytest.mark.slow
@pytest.mark.parametrize(("dim", "kappa", "lmax"), [(8, 4.0, 32), (64, 16.0, 64)])
def test_tokens_in_d_dimensions_follow_the_zonal_solver(dim, kappa, lmax):
    """Tokens drawn from a zonal vMF in R^d and moved by ``simulate_particles`` (RK4 flow, the density's scheme)
    against ``solve_density`` on ZonalGrid(d, lmax) (spectral tail < 1e-10), SA with beta = 1, to depth 0.5.

    MMD (kernel e^{x·y}, the tokens' zonal projection) at t = 0.5 for N = 16 … 256, 250 independent draws per N: the
    least-squares slope of log MMD against log N is −1/2 ± 0.1 (mean-field fluctuations O(N^{−1/2}); the solver's
    error is a floor far below the sampling MMD) with its standard error ≤ 0.03 (one log MMD has a spread of 0.6–0.8:
    few degrees carry the zonal MMD, so 250 draws over a factor 16 in N are needed: 150 gave 0.034 at d = 64). The
    histogram of x·e_d (10 bins, the draws of N = 256) matches the solver's law of s at the depths 0.1, 0.2 and 0.5:
    every bin expected to hold ≥ 20 of the 64 000 tokens within 4 standard errors of the draw-to-draw spread (≤ 30
    bins at 4 SE: a false alarm below 2e-3). A few minutes per d.
    """
    grid, e = st.ZonalGrid(dim, lmax), np.eye(dim)[-1]
    model = st.AttentionModel(dim, 1.0)
    rho0 = st.initial.von_mises_fisher(grid, e, kappa)
    dens = st.solve_density(model, None, rho0, 0.5, 0.05, save_every=0.1, progress=False)
    assert float(dens.spectral_tail.max()) < 1e-10
    depths = [1, 2, 5]  # records t = 0.1, 0.2, 0.5
    edges = np.linspace(-1.0, 1.0, 11)
    expected = [_law_of_s_bins(grid, grid.analysis(dens.density.isel(time=k).values), edges) for k in depths]
    final = grid.analysis(dens.density.isel(time=-1).values)
    sizes, draws = (16, 32, 64, 128, 256), 250
    log_n, log_mmd, fractions = [], [], []
    for n in sizes:
        for k in range(draws):
            x0 = st.initial.sample(rho0, n, seed=10_000 * n + k)
            parts = st.simulate_particles(model, None, x0, 0.5, 0.05, save_every=0.1, scheme="flow", progress=False)
            tokens = parts.positions.isel(time=-1).values
            log_n.append(np.log(n))
            log_mmd.append(np.log(st.diagnostics.mmd(grid, grid.empirical_coefficients(tokens), final)))
            if n == sizes[-1]:
                fractions.append([np.histogram(parts.positions.isel(time=j).values @ e, edges)[0] / n
                                  for j in depths])
    x, y = np.array(log_n), np.array(log_mmd)
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    se = np.sqrt(resid @ resid / (x.size - 2) / np.sum((x - x.mean()) ** 2))
    assert se <= 0.03 and abs(slope + 0.5) <= 0.1, (slope, se)
    fractions = np.asarray(fractions)  # (draw, depth, bin)
    mean, err = fractions.mean(axis=0), fractions.std(axis=0, ddof=1) / np.sqrt(draws)
    expected = np.asarray(expected)
    counted = expected * sizes[-1] * draws >= 20  # bins of the far tail hold a handful of tokens: no normal law
    z = np.abs(mean - expected)[counted] / err[counted]
    assert counted.sum() >= 15 and np.all(z < 4), z
