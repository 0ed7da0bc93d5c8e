"""Antipodal clusters (spde_tokens.validation.antipodal_clusters): the exact symmetry of the density solver and of
the particles under x → −x, and the cap means following the two-token update up to O(r²). Fast (a few seconds)."""

import numpy as np
import pytest

from spde_tokens.noise import ValueNoise
from spde_tokens.validation import antipodal_clusters as ac
from spde_tokens.validation.value_pairs import DT, ValueBatch, model_for


def test_symmetric_density_and_tokens_stay_symmetric():
    """ρ(−x) = ρ(x) makes the attention output odd, so odd degrees stay at rounding; closed token sets stay closed.

    Tolerances are those of the case's rows: (K ε)² relative power for K RK4 stage evaluations (each may add a
    rounding error of relative size ε to the odd part) and n_steps N ε for the tokens (the attention sums' bound).
    """
    res = ac.density_symmetry(lmax=16, t_end=0.2, half_tokens=16)
    assert res["stages"] >= 4 * res["n_steps"]
    assert res["odd_share"].max() <= (res["stages"] * ac.EPS) ** 2
    assert res["asymmetry"].max() <= res["n_steps"] * res["n_tokens"] * ac.EPS
    verdicts = {r["quantity"].split(":")[0]: r["verdict"] for r in ac.density_rows("antipodal", res)}
    assert verdicts["density/odd_degrees"] == verdicts["density/tokens_symmetric"] == "pass"
    # the tokens moved (the check is not trivially met by a frozen run) and the density order parameter is finite
    assert np.ptp(res["order_tokens"]) > 1e-3 and np.all(np.isfinite(res["order_density"]))


def test_cap_means_follow_the_two_token_update_to_second_order_in_the_radius():
    """Cap means of 2 × 8 tokens against two tokens started at the cap means, same increments, 200 steps.

    Softmax weights inside a cap are equal up to O(β r²) and the mean of F(c̄ + δ_i) is F(c̄) + O(r²) (Σ δ_i = 0
    to first order), so the deviation is C r² with C independent of r: doubling r must multiply it by 4 up to the
    relative O(r²) ≈ 1e-7 of the next order and rounding (1e-16 against a deviation ≥ 1e-8), far inside 4 ± 0.01.
    """
    batch = ValueBatch(model_for(1.0, 3), ValueNoise(1.0))

    def deviation(radius: float) -> float:
        rng = np.random.default_rng(0)
        x = ac.tight_caps(rng, 3, 3, 8, radius)
        pair = ac.cap_means(x, 8)
        worst = 0.0
        for _ in range(200):
            dw = rng.standard_normal((3, 3, 3)) * np.sqrt(DT)
            x, pair = batch.step(x, DT, dw), batch.step(pair, DT, dw)
            worst = max(worst, float(np.abs(ac.cap_means(x, 8) - pair).max()))
        return worst

    small, large = deviation(1e-4), deviation(2e-4)
    assert small < 1e-6  # against |c̄₁ + c̄₂| ≈ 1e-2 at the start
    assert large / small == pytest.approx(4.0, abs=0.01)


def test_persistence_interval_brackets_the_linear_law():
    """The interval contains P(X_T < 0) of the unconstrained Brownian motion with drift Λ (< 0 at d = 3, β = 1)."""
    from scipy import special

    from spde_tokens.validation.value_pairs import exponent, variance_rate

    beta, dim, t = 1.0, 3, 8.0
    low, high = ac.persistence_interval(beta, dim, t)
    free = special.ndtr(-exponent(beta, dim) * t / np.sqrt(variance_rate(beta) * t))
    assert 0 < low <= free <= high < 1
