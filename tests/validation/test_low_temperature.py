"""The low-temperature validation case: quick run through the runner, outputs, and the theory helpers it relies on."""

import os

import numpy as np
import pytest
from scipy.special import spherical_in

import spde_tokens as st
from spde_tokens.validation import low_temperature as lt
from spde_tokens.validation.runner import run_case

pytestmark = pytest.mark.slow


def test_growth_rates_match_the_formula_and_peak_near_sqrt_2beta():
    for beta in (4.0, 16.0, 36.0):
        g = lt.growth_rates(beta, 20)
        ell = np.arange(21)
        assert np.allclose(g, ell * (ell + 1) * spherical_in(ell, beta) / (beta * spherical_in(0, beta)))
        lstar, gmax = lt.fastest_degree(beta)
        assert gmax == pytest.approx(g.max()) and abs(lstar * (lstar + 1) - 2 * beta) <= 2 * lstar + 2


def test_maxima_of_a_random_degree_l_field_follow_kac_rice():
    counter = lt.MaximaCounter(lmax=48)
    for degree in (5, 8):
        amp = np.zeros(49)
        amp[degree] = 1.0
        counts = counter.count(amp, samples=60, seed=1)
        kac_rice = degree * (degree + 1) / (2 * np.sqrt(3))  # plus O(1) from the curvature of the sphere
        assert counts.mean() == pytest.approx(kac_rice, abs=4 * counts.std() / np.sqrt(60) + 1)


def test_single_linkage_counts_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(3)
    x = np.repeat(centres, 50, axis=0) + 1e-3 * rng.normal(size=(150, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels, found = lt.clusters(x, theta=0.2)
    assert found.shape == (3, 3) and np.all(np.bincount(labels) == 50)
    t = np.arange(6.0)
    assert lt.longest_plateau(t, np.array([5, 4, 4, 4, 3, 3]), 1, 5.0) == (3.0, 1.0, False)  # 4 on [1, 4)
    assert lt.longest_plateau(t, np.array([5, 4, 3, 3, 3, 3]), 1, 10.0) == (8.0, 2.0, True)  # open at t_end


def test_quick_run_writes_self_describing_outputs(tmp_path):
    rows, _ = run_case("low_temperature", str(tmp_path), quick=True)
    assert os.path.getsize(tmp_path / "low_temperature.png") > 10_000
    ds = st.open_run(tmp_path / "low_temperature.nc")
    assert ds.attrs["Conventions"] == "CF-1.8"
    for name in ds.variables:
        assert "long_name" in ds[name].attrs, name
        assert "units" in ds[name].attrs, name
    # every row with a verdict passes; the one measurement without a verdict is the time of closest approach (the
    # nearest-centre ratio of earlier versions is gone: it is not a claim of the paper)
    measurements = [r for r in rows if r["verdict"] == "info"]
    assert len(measurements) == 1 and "closest approach" in measurements[0]["quantity"]
    assert not any("nearest centre" in r["quantity"] for r in rows)
    failed = [r for r in rows if r["verdict"] not in ("pass", "info")]
    assert not failed, failed
    assert np.all(ds["onset_time"] > 0) and np.all(ds["v_aligned"].sel(value_matrix="identity") < 0.5)
    # the mean-field gap falls like 1/beta: beta·gap levels off (Laplace: c(1 + c1/beta))
    for case in "ab":
        scaled = ds["mean_field_beta"].values * ds[f"velocity_gap_{case}"].values
        assert abs(scaled[-1] / scaled[-2] - 1) < 0.02


def test_vmf_tokens_follow_the_law():
    """E x3 = coth κ − 1/κ and E x1 = E x2 = 0 for vMF(κ, e3) on S^2; 4 standard errors of 20000 draws."""
    x = lt.vmf_tokens(20000, seed=2, kappa=2.0)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-14)
    mean, se = x.mean(axis=0), x.std(axis=0) / np.sqrt(x.shape[0])
    expected = np.array([0.0, 0.0, 1 / np.tanh(2.0) - 1 / 2.0])
    assert np.all(np.abs(mean - expected) <= 4 * se), (mean, expected, se)


def test_closed_form_of_the_vmf_attention():
    """At beta = 0 the output is the mean of vMF(κ, e3), (coth κ − 1/κ) e3 (exact); the series branch of L(r)/r meets
    the direct one at r = 0.1 to 1e-12 (series remainder 3e-13,
    cancellation ~ε/r² = 2e-14)."""
    model = st.AttentionModel(3, beta=0.0)
    x = lt.vmf_tokens(5, seed=0)
    np.testing.assert_allclose(lt.vmf_attention(model, x), np.tile([0, 0, 1 / np.tanh(2.0) - 0.5], (5, 1)),
                               atol=1e-15)
    r = np.array([0.1 * (1 - 1e-13), 0.1])
    assert abs(lt.langevin_ratio(r)[0] - lt.langevin_ratio(r)[1]) < 1e-12


def test_projection_distance_is_the_exact_w2_to_two_atoms():
    """Against the network simplex of POT on tokens and the two atoms, with masses n_plus/N and 1 − n_plus/N."""
    import ot

    x = lt.vmf_tokens(60, seed=4)
    n_plus = int(np.sum(x[:, 0] > 0))
    atoms = np.array([[1.0, 0, 0], [-1.0, 0, 0]])
    cost = np.arccos(np.clip(x @ atoms.T, -1, 1)) ** 2
    w2 = np.sqrt(ot.emd2(np.full(60, 1 / 60), np.array([n_plus, 60 - n_plus]) / 60, cost))
    assert lt.projection_distance(x, n_plus) == pytest.approx(w2, rel=1e-12)


def test_fitted_constant_and_exponent_fit():
    """The bound with C fitted at beta0 returns the measured W2 there; the three-parameter fit returns −1 for
    g = (c/beta)(1 + c1/beta) exactly (the r/beta term absorbs c1 to first order: 1e-3 at beta ≥ 16)."""
    c = lt.fitted_constant(0.3, 4.0, 1.0)
    assert lt.theorem_bound(c, np.array([4.0]), 1.0)[0] == pytest.approx(0.3, rel=1e-12)
    beta = np.array([16.0, 64.0, 256.0, 1024.0, 4096.0])
    p, se, plain = lt.exponent_fit(beta, 1.5 / beta * (1 - 2.0 / beta))
    assert abs(p + 1) < 1e-3 and plain > -1.0


def test_token_rates_read_exponential_approach():
    """θ(t) = θ0 e^{−λt} toward +e1 and −e1 (sign of the start) gives λ exactly, to rounding of atan2 and log."""
    t = np.linspace(0.0, 16.0, 33)
    theta = np.array([0.5, 0.3])[None, :] * np.exp(-np.array([0.4, 0.7])[None, :] * t[:, None])
    sign = np.array([1.0, -1.0])
    pos = np.stack([sign * np.cos(theta), np.sin(theta), np.zeros_like(theta)], axis=-1)
    np.testing.assert_allclose(lt.token_rates(t, pos, sign), [0.4, 0.7], rtol=1e-12)
