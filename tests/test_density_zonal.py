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
