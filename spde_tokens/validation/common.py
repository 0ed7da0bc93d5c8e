"""The contract of a validation case and its one table row.

A case is a module of this package that provides

* ``NAME`` (the module's name), ``TITLE`` (one line) and a module docstring: the case's equations, the claims it
  checks, its parameters and how its tolerances are derived (it becomes the case's section of docs/validation.md);
* ``measure(quick: bool) -> tuple[list[Row], xarray.Dataset]``: the table rows and the data behind them, with the
  case's parameters as attributes (every variable with ``units`` and ``long_name``);
* ``plot(ds: xarray.Dataset, path: str) -> None``: its figure, drawn from the Dataset as written.

The runner (:mod:`spde_tokens.validation.runner`) adds the rows (:func:`row_variables`) and the CF attributes
(:func:`case_attrs`) to the Dataset and writes the NetCDF file and the figure, in one place for every case.

A row is one of three kinds:

* ``check``: theory against a measurement (an exact solution, an identity, a formula with a derived tolerance);
  verdict "pass" or "fail".
* ``claim``: a published statement (docs/mathematics.md, 'The published phenomena', or the case's docstring),
  decided from the data; verdict "pass" or "disagrees". A disagreement is a finding, reported rather than tuned
  away, so a claim row is built only together with check rows that can fail (:func:`claim`).
* ``info``: a measurement without a verdict (verdict "info"), never counted as a pass.

Only "fail" makes ``spde-tokens validate`` exit non-zero.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any, Literal, TypedDict

import numpy as np

from spde_tokens._version import __version__

#: the verdicts a row can carry; a check gives pass/fail, a claim pass/disagrees
VERDICTS = ("pass", "fail", "disagrees")
#: the verdict column of a measurement without a verdict
INFO = "info"
KINDS = ("check", "claim", "info")
#: statistical rows accept a deviation of up to this many standard errors (fixed seeds)
Z_BAND = 4.0


class Row(TypedDict):
    """One row of the validation table.

    ``case`` is the case's ``NAME``; a sub-case tag, when there is one, starts ``quantity`` ("d=3: ...").
    ``expected`` is the theory (a number or a text with its formula), ``measured`` a number or a text carrying the
    number with its context, ``tolerance`` how the acceptance band was derived.
    """

    case: str
    quantity: str
    expected: str | float
    measured: str | float
    tolerance: str
    verdict: str
    kind: str


#: the keys of a :class:`Row` (a TypedDict is indexed by literal keys only)
RowKey = Literal["case", "quantity", "expected", "measured", "tolerance", "verdict", "kind"]
#: what a row accepts as measured: a number (stored as a float) or a text; booleans are refused
Measured = str | float | np.number


def _row(kind: str, case: str, quantity: str, expected: str | float, measured: Measured, tolerance: str,
         verdict: str) -> Row:
    for name, text in (("case", case), ("quantity", quantity), ("tolerance", tolerance)):
        if not isinstance(text, str) or not text:
            raise ValueError(f"{name} must be a non-empty string, got {text!r}")
    if isinstance(measured, (bool, np.bool_)) or not isinstance(measured, (str, int, float, np.number)):
        raise ValueError(f"measured must be a number or a string, got {measured!r}")
    return Row(case=case, quantity=quantity, expected=expected,
               measured=measured if isinstance(measured, str) else float(measured), tolerance=tolerance,
               verdict=verdict, kind=kind)


def check(case: str, quantity: str, expected: str | float, measured: Measured, tolerance: str, ok: bool) -> Row:
    """A theory row: "pass" when ``ok``, else "fail"."""
    return _row("check", case, quantity, expected, measured, tolerance, "pass" if bool(ok) else "fail")


def claim(case: str, quantity: str, expected: str | float, measured: Measured, tolerance: str, holds: bool,
          theory: Sequence[Row]) -> Row:
    """A published claim decided from the data: "pass" when ``holds``, else "disagrees".

    ``theory`` are the check rows of the same case that test the mathematics behind the claim (they can fail, the
    claim row cannot): a ValueError when there is none.
    """
    if not any(r["kind"] == "check" and r["case"] == case for r in theory):
        raise ValueError(f"theory must hold at least one check row of case {case!r} (a claim row cannot fail)")
    return _row("claim", case, quantity, expected, measured, tolerance, "pass" if bool(holds) else "disagrees")


def info(case: str, quantity: str, measured: Measured, note: str) -> Row:
    """A measurement reported without a verdict (verdict "info"); ``note`` says why it is not judged."""
    return _row("info", case, quantity, "none (a measurement, not a claim)", measured, note, INFO)


def _measured(rows: Sequence[Row]) -> np.ndarray:
    """The measured column: numbers when every row measured a number, else texts (a number with its context)."""
    values = [r["measured"] for r in rows]
    if all(isinstance(v, float) for v in values):
        return np.array(values, dtype=float)
    return np.array([str(v) for v in values], dtype=object)


def row_variables(rows: Sequence[Row]) -> dict:
    """The table rows as variables on a ``row`` dimension (so the file carries its own verdicts)."""
    one = {"units": "1"}
    columns: dict[RowKey, str] = {"case": "case of the row", "quantity": "validated quantity (sub-case tag first)",
               "expected": "expected (theory or published claim)", "tolerance": "how the tolerance was derived",
               "verdict": "verdict: pass, fail, disagrees (a claim the data contradicts) or info (no verdict)",
               "kind": "check (theory), claim (published statement) or info (measurement)"}
    out: dict[str, tuple[tuple[str, ...], Any, dict[str, str]]] = {
        f"row_{key}": (("row",), [str(r[key]) for r in rows], {**one, "long_name": long})
        for key, long in columns.items()}
    out["row_measured"] = (("row",), _measured(rows), {**one, "long_name": "measured value"})
    return out


def case_attrs(name: str, title: str, quick: bool, seconds: float) -> dict:
    """CF-1.8 global attributes of a case's file."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"Conventions": "CF-1.8", "title": f"spde_tokens validation: {title}",
            "history": f"{stamp} spde_tokens.validation.{name} {__version__} "
                       f"({'quick' if quick else 'full'} settings, {seconds:.0f} s)",
            "source": f"spde_tokens {__version__}", "case": name, "quick": int(bool(quick))}
