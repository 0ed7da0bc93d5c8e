"""The density step's noise transport (docs/mathematics.md, 'Spectral transport of linear noise fields'): linear
fields move the coefficients by sparse products, without transforms; the others by grid sub-steps with one synthesis
and one vector analysis per stage. Both give the old path's numbers."""

import numpy as np
import pytest
from scipy.linalg import expm

import spde_tokens as st
from spde_tokens.density import DensityEquation
from spde_tokens.grids.multiply import SpectralTransport
from spde_tokens.noise import (
    BiasNoise,
    IdiosyncraticNoise,
    MLPNoise,
    NoisePath,
    NoiseSum,
    QuadraticFormNoise,
    RotationNoise,
    ValueNoise,
)
from spde_tokens.steppers import get_scheme

RK4 = get_scheme("rk4")
LINEAR = [BiasNoise(0.5), RotationNoise(0.5), QuadraticFormNoise(0.5), BiasNoise(0.3) + QuadraticFormNoise(0.4),
          RotationNoise(0.3) + BiasNoise(0.4) + IdiosyncraticNoise(1e-3)]


def _grid_velocity(eq, increments, dt):
    """The old path's frozen field: P_x ΔN on the nodes over dt, tangent components."""
    return eq.grid.to_tangent(eq.noise.grid_field(eq.grid, increments)) / dt


def _equation(grid, noise, beta=1.0):
    return DensityEquation(st.AttentionModel(grid.dim, beta), grid, noise=noise)


@pytest.mark.parametrize("noise", LINEAR, ids=repr)
@pytest.mark.parametrize("grid", [st.SphereGrid(31), st.SphereGrid(127), st.CircleGrid(31), st.CircleGrid(127)],
                         ids=repr)
def test_spectral_substeps_equal_the_grid_substeps(grid, noise):
    """The same RK4 sub-steps on the same operator: the spectral transport equals the grid transport to rounding
    (with the grid's sub-step count), and conserves mass exactly."""
    dt = 0.3 / grid.degree_max  # a displacement of ~0.3 √dt: several sub-steps at every degree
    eq = _equation(grid, noise)
    rho0 = st.initial.von_mises_fisher(grid, np.eye(grid.dim)[-1] + 0.3, 4.0)
    c = grid.analysis(rho0.values)
    increments = NoisePath(noise, grid.dim, dt, 1, seed=7).increments(0)
    frozen = eq.frozen_field(c, increments, dt)
    assert isinstance(frozen, SpectralTransport)
    velocity = _grid_velocity(eq, increments, dt)
    old, n_old = eq._transport_step(c, velocity, dt, RK4, 0.5)
    new, n_new = eq._transport_step(c, frozen, dt, RK4, 0.5)
    # the speed is the maximum over the sphere, the grid's over its nodes: at most one sub-step more
    assert n_old <= n_new <= n_old + 1
    if n_new != n_old:
        new = c
        for _ in range(n_old):
            new = RK4.step(frozen, new, dt / n_old)
    # both are ≈ 4 n_sub stages of an operator that agrees to rounding (tests/grids/test_multiply.py: first-derivative
    # rounding ~ n eps L max|ρ u| per stage) applied with weights h ≤ 1/(L max|u|): 1e-12 relative to the density's
    # largest coefficient covers lmax 127 (measured ≤ 2e-14)
    assert np.max(np.abs(new - old)) < 1e-12 * np.max(np.abs(c))
    assert new[0] == c[0]  # mass: the degree-0 row of the operator is zero


def test_spectral_transport_only_for_linear_fields_on_sphere_and_circle():
    dt = 1e-2
    sphere = st.SphereGrid(16)
    c = sphere.analysis(st.initial.uniform(sphere).values)
    for noise, spectral in [(BiasNoise(0.3), True), (RotationNoise(0.3) + QuadraticFormNoise(0.2), True),
                            (MLPNoise(0.3, "tanh", 8), False), (BiasNoise(0.3) + MLPNoise(0.3, "tanh", 8), False),
                            (ValueNoise(0.3), False)]:
        eq = _equation(sphere, noise)
        increments = NoisePath(noise, 3, dt, 1, seed=1, lmax=16).increments(0)
        frozen = eq.frozen_field(c, increments, dt)
        assert isinstance(frozen, SpectralTransport) is spectral, repr(noise)
        if not spectral:
            assert frozen.shape == (2, *sphere.shape)
    assert NoiseSum().linear_field({}) == (None, None)  # no common model: nothing to move


@pytest.mark.parametrize("lmax", [31, 127])
def test_rotation_substeps_converge_to_the_rotated_density(lmax):
    """u = Ω x/dt over dt rotates ρ₀ by e^{Ω}: the spectral RK4 sub-steps reach the rotated vMF density with RK4's
    fourth order in the sub-step (the error falls by 2⁴ when the sub-steps double)."""
    grid = st.SphereGrid(lmax)
    noise = RotationNoise(1.0)
    eq = _equation(grid, noise)
    mu = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
    c = grid.analysis(st.initial.von_mises_fisher(grid, mu, 6.0).values)
    omega = np.array([[0.0, 0.5, -0.2], [-0.5, 0.0, 0.3], [0.2, -0.3, 0.0]])
    frozen = eq.frozen_field(c, {"rotation": omega}, 1.0)
    exact = grid.analysis(st.initial.von_mises_fisher(grid, expm(omega) @ mu, 6.0).values)
    errors = []
    for cfl in (0.5, 0.25):
        moved, n_sub = eq._transport_step(c, frozen, 1.0, RK4, cfl)
        errors.append(np.max(np.abs(moved - exact)) / np.max(np.abs(exact)))
    # RK4 on the rotation generator: local error ∝ λ⁵ per sub-step, global ∝ n λ⁵ ∝ 1/n⁴: ratio 16 (14–18 allowed for
    # the leading-order approximation at λ = cfl · 2√2 ≤ 1.4 and the vMF's truncation at lmax, < 1e-14 for κ = 6)
    assert 14 < errors[0] / errors[1] < 18
    assert errors[1] < 1e-3


def test_no_transforms_in_the_spectral_substeps(monkeypatch):
    """A linear field's sub-steps cost no transform; a grid field's stage: one synthesis, one vector analysis."""
    grid = st.SphereGrid(24)
    calls = {"synthesis": 0, "analysis": 0, "divergence": 0, "gradient": 0}
    for name in calls:
        original = getattr(type(grid), name)

        def counted(self, *args, _name=name, _original=original):
            calls[_name] += 1
            return _original(self, *args)

        monkeypatch.setattr(type(grid), name, counted)
    c = grid.analysis(st.initial.von_mises_fisher(grid, [0, 0, 1], 3.0).values)
    dt = 2e-2
    for noise in (BiasNoise(0.6) + QuadraticFormNoise(0.3), MLPNoise(0.6, "tanh", 16)):
        eq = _equation(grid, noise)
        frozen = eq.frozen_field(c, NoisePath(noise, 3, dt, 1, seed=2).increments(0), dt)
        for name in calls:
            calls[name] = 0
        _, n_sub = eq._transport_step(c, frozen, dt, RK4, 0.5)
        assert n_sub >= 2
        if isinstance(frozen, SpectralTransport):
            assert calls == {"synthesis": 0, "analysis": 0, "divergence": 0, "gradient": 0}
        else:
            assert calls == {"synthesis": 4 * n_sub, "analysis": 0, "divergence": 4 * n_sub, "gradient": 0}


def _runs(grid, noise, monkeypatch, **kwargs):
    """The run with the spectral transport and the same run with the old grid sub-steps (``spectral_transport``
    disabled): split steps, attention drift, 50 steps."""
    model = st.AttentionModel(grid.dim, 1.0)
    rho0 = st.initial.von_mises_fisher(grid, np.eye(grid.dim)[-1], 3.0)
    kwargs = dict(t_end=0.1, dt=2e-3, seed=4, save_every=2e-3, engine="spectral", **kwargs)  # sub-steps of every step
    new = st.solve_density(model, noise, rho0, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(NoiseSum, "spectral_transport", lambda self, grid, increments, dt: None)
        old = st.solve_density(model, noise, rho0, **kwargs)
    return new, old


@pytest.mark.parametrize(("grid", "noise"), [(st.SphereGrid(31), BiasNoise(0.5)),
                                             (st.CircleGrid(48), RotationNoise(0.5)),
                                             (st.CircleGrid(48), BiasNoise(0.5))], ids=repr)
def test_pathwise_the_same_run_as_the_grid_path(grid, noise, monkeypatch):
    """One model alone: its speed is the maximum of |u| over the sphere, which the nodes approach to O(1/L²) (on S¹
    a rotation's |u| is constant), so on this path every step takes the grid path's sub-steps (asserted) and the
    runs agree to rounding."""
    new, old = _runs(grid, noise, monkeypatch)
    np.testing.assert_array_equal(new.substeps.values, old.substeps.values)
    # 50 steps × (8 drift stages + ~12 noise stages) of per-stage rounding ≤ 1e-14 of the peak (test above)
    peak = float(old.density.max())
    np.testing.assert_allclose(new.density.values, old.density.values, rtol=0, atol=1e-11 * peak)
    np.testing.assert_allclose(new.mass.values, 1.0, rtol=0, atol=1e-13)


@pytest.mark.filterwarnings("ignore::spde_tokens.ResolutionWarning")  # the QF run reaches a 1e-10 tail
@pytest.mark.parametrize("noise", [QuadraticFormNoise(0.5), BiasNoise(0.5) + QuadraticFormNoise(0.3)], ids=repr)
def test_pathwise_within_the_time_discretization_error(noise, monkeypatch):
    """Where a step's speed (the maximum over the sphere; a bound |b| + ‖A‖ + spread(S)/2 for a sum) crosses a
    sub-step threshold that the nodes' maximum does not, the step takes one sub-step more than the grid path: the
    runs then differ by less than the grid path's own sub-step error (cfl 0.5 against cfl 0.25)."""
    grid = st.SphereGrid(31)
    new, old = _runs(grid, noise, monkeypatch)
    assert np.all(new.substeps.values >= old.substeps.values)
    assert np.any(new.substeps.values > old.substeps.values)  # the case this test is about
    _, finer = _runs(grid, noise, monkeypatch, cfl=0.25)
    time_error = np.max(np.abs(finer.density.values - old.density.values))
    assert np.max(np.abs(new.density.values - old.density.values)) < time_error
    np.testing.assert_allclose(new.mass.values, 1.0, rtol=0, atol=1e-13)
