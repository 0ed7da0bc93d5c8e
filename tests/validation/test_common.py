"""The one row type of the validation table: checks, claims and measurements, and their NetCDF variables."""

import numpy as np
import pytest

from spde_tokens.validation.common import INFO, KINDS, VERDICTS, case_attrs, check, claim, info, row_variables


def test_a_check_passes_or_fails():
    ok, bad = check("c", "q", 1.0, 1.0, "exact", True), check("c", "q", 1.0, 2.0, "exact", np.bool_(False))
    assert (ok["verdict"], bad["verdict"], ok["kind"]) == ("pass", "fail", "check")
    assert set(ok) == {"case", "quantity", "expected", "measured", "tolerance", "verdict", "kind"}
    assert isinstance(check("c", "q", 1, np.float32(0.5), "t", True)["measured"], float)


def test_a_claim_passes_or_disagrees_and_needs_a_check_that_can_fail():
    theory = check("c", "rate: c against the data", 0.8, 0.79, "4 SE", True)
    holds = claim("c", "claim: the mean grows", "grows", "grows in 12/12", "4 SE", True, [theory])
    contradicted = claim("c", "claim: the mean grows", "grows", "grows in 3/12", "4 SE", False, [theory])
    assert (holds["verdict"], contradicted["verdict"], holds["kind"]) == ("pass", "disagrees", "claim")
    with pytest.raises(ValueError, match="theory"):
        claim("c", "q", "e", "m", "t", True, [])
    with pytest.raises(ValueError, match="theory"):  # a check of another case does not count
        claim("c", "q", "e", "m", "t", True, [check("other", "q", 1, 1, "t", True)])
    with pytest.raises(ValueError, match="theory"):  # nor does another claim
        claim("c", "q", "e", "m", "t", True, [holds])


def test_a_measurement_has_no_verdict():
    row = info("c", "ratio", "0.66 (89% in the nearest cluster)", "not a claim of the paper")
    assert row["verdict"] == INFO not in VERDICTS and row["kind"] == "info"
    assert KINDS == ("check", "claim", "info")


@pytest.mark.parametrize("field, kwargs", [
    ("case", {"case": ""}), ("quantity", {"quantity": None}), ("tolerance", {"tolerance": ""}),
    ("measured", {"measured": True}), ("measured", {"measured": [1.0]})])
def test_bad_rows_are_refused(field, kwargs):
    args = {"case": "c", "quantity": "q", "expected": 1.0, "measured": 1.0, "tolerance": "t", "ok": True, **kwargs}
    with pytest.raises(ValueError, match=field):
        check(**args)


def test_row_variables_and_attributes():
    rows = [check("c", "a", 1.0, 0.5, "t", True), check("c", "b", "≤ 1", 0.25, "t", False)]
    variables = row_variables(rows)
    assert variables["row_measured"][1].dtype == float  # numbers stay numbers
    assert variables["row_verdict"][1] == ["pass", "fail"] and variables["row_expected"][1] == ["1.0", "≤ 1"]
    for dims, _, attrs in variables.values():
        assert dims == ("row",) and {"units", "long_name"} <= set(attrs)
    attrs = case_attrs("c", "A title", quick=False, seconds=12.3)
    assert attrs["Conventions"] == "CF-1.8" and attrs["quick"] == 0 and "full settings, 12 s" in attrs["history"]


# ---------------------------------------------------------------------------------------------------------------
# the Richardson estimator of an almost-sure rate

_DT, _Q2, _DRIFT = 0.01, 10.0, 3.0  # step, conditional variance factor of the path error, weak-error coefficient


def _skewed_slopes(rng, n):
    """Paired slopes of a synthetic scheme whose exact slope S ~ N(0, 1) has median 0 (the rate to estimate).

    s_h = S + a h + sqrt(h) g(S) Z_h with g(S)² = q² e^{−S}: a weak error a h and a path error whose conditional
    variance depends on S (as for the two-token slopes, where the spread of s(2 dt) − s(dt) falls from 1.1 to 0.6
    across the deciles of s). The 2 dt chain reuses the dt chain's randomness: Z_2dt sqrt(2 dt) = sqrt(dt)(Z₁ + Z₂).
    """
    s = rng.standard_normal(n)
    z1, z2 = rng.standard_normal((2, n))
    g = np.sqrt(_Q2 * np.exp(-s))
    return s + _DRIFT * _DT + np.sqrt(_DT) * g * z1, s + 2 * _DRIFT * _DT + np.sqrt(_DT) * g * (z1 + z2)


def _median_of(var_factor, shift):
    """The exact median of S + shift + sqrt(var_factor e^{−S}) Z, S, Z ~ N(0, 1) independent (quadrature)."""
    from scipy import integrate, optimize, special

    def cdf(m):
        def integrand(s):
            return np.exp(-s * s / 2) / np.sqrt(2 * np.pi) * special.ndtr((m - shift - s)
                                                                          / np.sqrt(var_factor * np.exp(-s)))
        return integrate.quad(integrand, -12, 12, limit=200, epsabs=1e-13)[0] - 0.5

    return optimize.brentq(cdf, -2, 2, xtol=1e-12)


def test_richardson_of_medians_removes_the_bias_of_the_median_of_richardson_slopes():
    """2 med(s_dt) − med(s_2dt) estimates the median rate (0); med(2 s_dt − s_2dt) is biased, whatever n.

    Large-sample limits by quadrature: the per-realization extrapolation is S + sqrt(dt) g(S)(Z₁ − Z₂), whose
    median is shifted by about −½ d/ds Var = dt q² = 0.1 (exactly 0.0974); the marginal medians are 0 + (a + q²/2) h
    + O(h²), so their Richardson combination leaves the O(h²) term, 0.0071, below one standard error at n = 20 000.
    """
    from spde_tokens.validation.common import median_with_se, richardson_of_medians

    limit_rich = 2 * _median_of(_DT * _Q2, _DRIFT * _DT) - _median_of(2 * _DT * _Q2, 2 * _DRIFT * _DT)
    limit_median_of_rich = _median_of(2 * _DT * _Q2, 0.0)
    fine, coarse = _skewed_slopes(np.random.default_rng(0), 20_000)
    est, se = richardson_of_medians(fine, coarse)
    biased, biased_se = median_with_se(2 * fine - coarse)
    assert abs(limit_rich) < se  # the O(dt²) remainder is below one standard error: unbiased at this size
    assert abs(est - limit_rich) <= 4 * se, (est, se, limit_rich)
    assert abs(biased - limit_median_of_rich) <= 4 * biased_se, (biased, biased_se)
    assert limit_median_of_rich > 8 * biased_se and biased > 6 * biased_se  # the bias is visible and far from 0


def test_richardson_of_medians_standard_error_matches_the_spread_over_replicates():
    """The influence-function standard error against the spread of the estimate over 300 replicates of n = 2000.

    The spread of a standard deviation estimated from 300 replicates is 1/sqrt(2 · 300) = 4% relative; the normal
    density at the median is an approximation for this mixture (measured 8% low), so the band is 20%.
    """
    from spde_tokens.validation.common import richardson_of_medians

    rng = np.random.default_rng(1)
    estimates, errors = np.array([richardson_of_medians(*_skewed_slopes(rng, 2000)) for _ in range(300)]).T
    assert abs(errors.mean() / estimates.std(ddof=1) - 1.0) < 0.2, (errors.mean(), estimates.std(ddof=1))


@pytest.mark.parametrize(("fine", "coarse", "name"), [([1.0], [1.0], "fine"), ([1.0, np.nan], [1.0, 2.0], "fine"),
                                                      ([1.0, 2.0], [1.0, 2.0, 3.0], "coarse")])
def test_richardson_of_medians_refuses_bad_samples(fine, coarse, name):
    from spde_tokens.validation.common import richardson_of_medians

    with pytest.raises(ValueError, match=name):
        richardson_of_medians(fine, coarse)
