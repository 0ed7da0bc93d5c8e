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
