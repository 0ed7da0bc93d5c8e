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
#: the standard error of a median is this factor times sd/sqrt(n) for a normal law (1/(2 f(m)) = sqrt(π/2) sd)
MEDIAN_SE_FACTOR = float(np.sqrt(np.pi / 2.0))
#: the normal-theory standard deviation is this factor times the median absolute deviation
MAD_TO_SD = 1.4826


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


# ---------------------------------------------------------------------------------------------------------------
# rate estimators shared by the cases (almost-sure rates of realizations)


def _checked_sample(name: str, values: object, size: int | None = None) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size < 2 or not np.all(np.isfinite(arr)) or (size is not None and arr.size != size):
        raise ValueError(f"{name} must be a 1-d array of at least 2 finite values"
                         + ("" if size is None else f" of the same length as fine ({size})") + f", got shape "
                         f"{arr.shape}")
    return arr


def _median_and_scale(values: np.ndarray) -> tuple[float, float]:
    """The median m and 1/(2 f(m)) = sqrt(π/2) σ for a normal law of robust spread σ = 1.4826 MAD."""
    med = float(np.median(values))
    return med, MEDIAN_SE_FACTOR * MAD_TO_SD * float(np.median(np.abs(values - med)))


def median_with_se(values: object) -> tuple[float, float]:
    """The median of a sample and its standard error sqrt(π/2) · 1.4826 MAD / sqrt(n) (normal law, robust spread)."""
    arr = _checked_sample("values", values)
    med, scale = _median_and_scale(arr)
    return med, scale / float(np.sqrt(arr.size))


def richardson_of_medians(fine: object, coarse: object) -> tuple[float, float]:
    """The Richardson extrapolation of the medians, 2 med(s_dt) − med(s_2dt), and its standard error.

    ``fine`` and ``coarse`` are the per-realization slopes with steps dt and 2 dt on the same randomness (paired).
    A weak scheme's median slope is m + a dt + O(dt²), so 2 med(s_dt) − med(s_2dt) = m + O(dt²). The median of the
    per-realization extrapolations, med(2 s_dt − s_2dt), is *not*: 2 s_dt − s_2dt = s + η with η the difference of
    the two chains' path errors, of order sqrt(dt) per realization whatever the number of realizations, and a
    conditional variance Var(η | s) that depends on s shifts the median by −½ d/ds Var(η | s) to first order
    (measured +0.07 ± 0.01 at d = 8, beta = 0.5 in the antipodal case, 40 000 realizations at dt = 0.005).

    Standard error: the influence function of a median is sign(s − m)/(2 f(m)), with f(m) = 1/(sqrt(2π) σ) for
    a normal law of robust spread σ = 1.4826 MAD; the estimate's influence is 2 ψ_dt − ψ_2dt per realization
    (the two chains are correlated), and its standard error sd(2 ψ_dt − ψ_2dt)/sqrt(n).
    """
    f = _checked_sample("fine", fine)
    c = _checked_sample("coarse", coarse, f.size)
    (med_f, scale_f), (med_c, scale_c) = _median_and_scale(f), _median_and_scale(c)
    influence = 2.0 * scale_f * np.sign(f - med_f) - scale_c * np.sign(c - med_c)
    return 2.0 * med_f - med_c, float(np.std(influence, ddof=1) / np.sqrt(f.size))
