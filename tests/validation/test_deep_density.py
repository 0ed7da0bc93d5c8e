"""The deep density runs (spde_tokens.validation.deep_density): the projective dispersion on exact configurations,
and the premise of the comparison — the Lagrangian nodes and tokens moved by ``simulate_particles(scheme="flow")``
on the same path are the same flow map. Fast (a few seconds)."""

import warnings

import numpy as np
import pytest

import spde_tokens as st
from spde_tokens.validation import deep_density as dd


def test_projective_dispersion_of_exact_configurations():
    """Masses 0.5 at c and 0.3 at −c (projectively synchronized) and 0.2 at a point orthogonal to c: M has the
    eigenvalue 0.8 along c, so the axis is ±c oriented towards the mean (0.2 c), and q = 1 − 0.8 = 0.2 exactly."""
    c = np.array([0.6, 0.0, 0.8])
    e = np.array([0.8, 0.0, -0.6])
    x = np.array([[c, -c, e]])
    w = np.array([0.5, 0.3, 0.2])
    axis = dd.principal_axis(x, w)
    np.testing.assert_allclose(axis[0], c, atol=1e-15)
    assert dd.projective_dispersion(x, w, axis)[0] == pytest.approx(0.2, abs=1e-15)
    # all the mass on ±c: q = 0 to rounding, with no cancellation (the perpendicular parts are exactly 0)
    assert dd.projective_dispersion(x[:, :2], np.array([0.6, 0.4]), axis)[0] < 1e-30


def test_nodes_and_tokens_started_at_the_nodes_follow_the_same_flow():
    """V = 0 and MLPNoise: the Lagrangian nodes move by the RK4 flow of the frozen increments, as do tokens with
    scheme="flow" on the same path; started at the nodes, the tokens stay on them up to the two integrators'
    sub-step choices (O(dt⁴) per step; with the same sub-steps, to rounding)."""
    setup = dd.DeepSetup("sync", lmax=8, t_end=0.4)
    model, noise, rho0, scheme = dd.problem(setup)
    path = st.NoisePath(noise, 3, setup.dt, 20, seed=setup.path_seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.ResolutionWarning)
        dens = st.solve_density(model, noise, rho0, setup.t_end, setup.dt, path=path, save_every=0.2,
                                engine="lagrangian", progress=False)
    nodes = dens.nodes.values
    parts = st.simulate_particles(model, noise, nodes[0], setup.t_end, setup.dt, path=path, scheme=scheme,
                                  save_every=0.2, progress=False)
    gap = np.abs(parts.positions.values - nodes).max()
    assert np.abs(nodes[-1] - nodes[0]).max() > 0.1  # the flow moved the nodes
    assert gap < 1e-12, gap  # measured 1e-15: the same RK4 steps; tolerance: rounding of 20 steps, 4 stages, width 64


def test_bad_kind():
    with pytest.raises(ValueError, match="kind"):
        dd.problem(dd.DeepSetup("other"))
