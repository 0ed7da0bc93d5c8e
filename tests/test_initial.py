"""Initial densities: normalization, closed forms, the grid they carry, bad input."""

import numpy as np
import pytest
import xarray as xr
from scipy.special import iv

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
