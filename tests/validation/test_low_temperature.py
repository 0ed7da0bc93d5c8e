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
    # every row with a verdict passes; the nearest-centre ratio (not a claim of the paper) is a measurement, one per
    # beta, never counted as a pass
    measurements = [r for r in rows if r["verdict"] == "info"]
    assert [r["quantity"].split(":")[0] for r in measurements] == [f"beta={b:g}" for b in lt.QUICK.betas]
    assert all("nearest centre" in r["quantity"] and r["kind"] == "info" for r in measurements)
    failed = [r for r in rows if r["verdict"] not in ("pass", "info")]
    assert not failed, failed
    assert np.all(ds["onset_time"] > 0) and np.all(ds["v_aligned"].sel(value_matrix="identity") < 0.5)
