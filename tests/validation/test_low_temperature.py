"""The low-temperature validation case (DESIGN 5): quick run, outputs, and the theory helpers it relies on."""

import os

import numpy as np
import pytest
from scipy.special import spherical_in

import spde_tokens as st
from spde_tokens.validation import low_temperature as lt

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
    rows = lt.run(tmp_path, quick=True)
    assert {"case", "quantity", "expected", "measured", "tolerance", "verdict"} <= set(rows[0])
    assert all(r["verdict"] in ("pass", "fail", "disagrees") for r in rows)
    assert os.path.getsize(tmp_path / "low_temperature.png") > 10_000
    ds = st.open_run(tmp_path / "low_temperature.nc")
    assert ds.attrs["Conventions"] == "CF-1.8"
    for name in ds.variables:
        assert "long_name" in ds[name].attrs, name
        assert "units" in ds[name].attrs, name
    # every claim holds in the quick run except "W2(clustered, pushed) small compared with W2(clustered, initial)":
    # 11-13% of the tokens join a neighbouring cluster, ratio 0.64-0.83 (reported as disagreements, see the module)
    verdicts = {(r["case"], r["quantity"].split(" (")[0]): r["verdict"] for r in rows}
    for (case, quantity), verdict in verdicts.items():
        if "W2(clustered, initial pushed" in quantity:
            assert verdict in ("pass", "disagrees"), (case, quantity)
        else:
            assert verdict == "pass", (case, quantity)
    assert np.all(ds["onset_time"] > 0) and np.all(ds["v_aligned"].sel(value_matrix="identity") < 0.5)
