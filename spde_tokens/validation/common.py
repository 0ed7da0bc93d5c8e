"""What every validation case shares: its table rows, their NetCDF variables and the CF attributes of its file."""

from __future__ import annotations

import datetime

import numpy as np

from spde_tokens import __version__

#: the verdicts of a row. "disagrees" is kept for a row that checks a claim of DESIGN 5 or of a paper which the
#: measurement contradicts (the evidence in ``measured``, the reasoning in the case's docstring and in
#: docs/validation.md); the mathematically right statement is checked by rows of its own. Only "fail" makes
#: ``spde-tokens validate`` exit non-zero: a disagreement is a finding, reported rather than tuned away.
VERDICTS = ("pass", "fail", "disagrees")


def verdict(ok: bool, claim: bool = False) -> str:
    """"pass" when the check holds; otherwise "disagrees" for a published claim, "fail" for anything else."""
    return "pass" if ok else ("disagrees" if claim else "fail")


def make_row(case: str, quantity: str, expected, measured: float, tolerance: str, ok: bool) -> dict:
    """One row of the validation table."""
    return {"case": case, "quantity": quantity, "expected": expected, "measured": float(measured),
            "tolerance": tolerance, "verdict": verdict(ok)}


def _measured(rows: list[dict]) -> np.ndarray:
    """The measured column: numbers when every row measured a number, else texts (a number with its context)."""
    values = [r["measured"] for r in rows]
    if all(isinstance(v, (int, float, np.number)) for v in values):
        return np.array(values, dtype=float)
    return np.array([str(v) for v in values], dtype=object)


def row_variables(rows: list[dict]) -> dict:
    """The table rows as variables on a ``row`` dimension (so the file carries its own verdicts)."""
    one = {"units": "1"}
    return {
        "row_case": (("row",), [r["case"] for r in rows], {**one, "long_name": "case (and sub-case) of the row"}),
        "row_quantity": (("row",), [r["quantity"] for r in rows], {**one, "long_name": "validated quantity"}),
        "row_expected": (("row",), [str(r["expected"]) for r in rows], {**one, "long_name": "expected (theory)"}),
        "row_measured": (("row",), _measured(rows), {**one, "long_name": "measured value"}),
        "row_tolerance": (("row",), [r["tolerance"] for r in rows], {**one, "long_name": "how the tolerance was "
                                                                                         "derived"}),
        "row_verdict": (("row",), [r["verdict"] for r in rows], {**one, "long_name": "verdict"}),
    }


def case_attrs(name: str, title: str, extra: dict) -> dict:
    """CF-1.8 global attributes of a case's file."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"Conventions": "CF-1.8", "title": f"spde_tokens validation: {title}",
            "history": f"{stamp} spde_tokens.validation.{name} {__version__}",
            "source": f"spde_tokens {__version__}", "case": name, **extra}
