"""Density solver and particles side by side on one path (spde_tokens.validation.sync_density), a small case.

S², V = 0, MLPNoise(1, "tanh", 64), vMF(κ = 8) on SphereGrid(40) to t = 0.08 (the spectral tail stays below 1e-10
there: 3e-11 at t = 0.04), N = 64 tokens, 200 draws: about 5 s.
"""

import numpy as np
import pytest

from spde_tokens import diagnostics as diag
from spde_tokens.density import TAIL_WARNING
from spde_tokens.grids import grid_from_attrs
from spde_tokens.particles import simulate_particles
from spde_tokens.validation import sync_density as sd

SETUP = sd.Setup(lmax=40, t_end=0.08, record_every=0.04, n_tokens=64, draws=200)


@pytest.fixture(scope="module")
def result():
    return sd.measure(SETUP)


def test_tokens_are_iid_samples_of_the_density(result):
    """E MMD² = floor² and E(1 − |m̂|²) = (1 − 1/N)(1 − |m_t|²) at every record, within 4 standard errors.

    Power: for i.i.d. samples MMD²/floor² has a per-draw sd of about 0.7 (a weighted χ² sum), so with 200 draws its
    mean has SE ≈ 0.05; the token dispersion of N samples of vMF(8) has sd ≈ 2 |m| sqrt(var(x·m)/N) ≈ 0.03, i.e.
    0.12 of the dispersion 0.23, so its ratio has SE ≈ 0.008. The bounds below (1.4× these) keep the test sharp.
    """
    assert result["time"].tolist() == pytest.approx([0.0, 0.04, 0.08])
    assert np.max(result["spectral_tail"]) < TAIL_WARNING
    for key, se_bound in (("mmd", 0.07), ("dispersion", 0.012)):
        r = result["ratios"][key]
        assert r.shape == (SETUP.draws, 3)
        for k in range(3):
            mean, se = sd.mean_and_se(r[:, k])
            assert 0 < se < se_bound, (key, k, se)
            assert abs(mean - 1.0) <= 4 * se, (key, k, mean, se)
        change, se = sd.mean_and_se(r[:, -1] - r[:, 0])
        assert se < se_bound and abs(change) <= 4 * se, (key, change, se)


def test_rows(result):
    rows = sd.rows("synchronization", SETUP, result)
    assert len(rows) == 5
    for row in rows:
        assert row["case"] == "synchronization" and row["quantity"].startswith("density/")
        assert row["kind"] == "check" and row["verdict"] == "pass", row


def test_another_path_is_detected(result):
    """Tokens moved by a path of another seed are far from ρ_t: MMD²/floor² ≫ 1 (the identity has power).

    That path moves the bump by about sigma sqrt(t) ≈ 0.3 rad from where the density's path takes it, so the
    law of the tokens sits at an MMD well above the floor 0.19 of 64 tokens; measured ratio ≈ 10 (50 draws).
    """
    dens = sd.density_run(SETUP, sd.noise_path(SETUP))
    grid = grid_from_attrs(dens.attrs)
    coeffs = grid.analysis(dens["density"].values[-1])
    model, noise = sd.model_and_noise(SETUP)
    other = sd.noise_path(SETUP, seed=SETUP.path_seed + 1)
    tokens = sd.token_draws(sd.sampling_density(SETUP.kappa), [SETUP.n_tokens], 20, SETUP.token_seed)[0]
    ratio = []
    for x0 in tokens:
        x = simulate_particles(model, noise, x0, SETUP.t_end, SETUP.dt, path=other, scheme="flow",
                               save_every=SETUP.t_end, progress=False)["positions"].values[-1]
        ratio.append(diag.mmd(grid, grid.empirical_coefficients(x), coeffs) ** 2 / result["floor"][-1] ** 2)
    mean, se = sd.mean_and_se(np.array(ratio))
    assert mean - 4 * se > 3.0, (mean, se)
