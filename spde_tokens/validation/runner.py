"""Run one validation case: measure, then write its NetCDF file (rows and CF attributes added) and its figure.

The contract of a case is in :mod:`spde_tokens.validation.common`.
"""

from __future__ import annotations

import importlib
import os
import time
import traceback

from spde_tokens.io import write_run
from spde_tokens.validation.common import Row, case_attrs, check, row_variables

#: the cases in the order of the report; each is a module of this package following the contract
CASE_NAMES = ("ott_antonsen", "equiangular", "energy_mass", "linear_growth", "one_point_law", "cross_validation",
              "synchronization", "antipodal", "low_temperature", "high_dimension")


def _run(name: str, out_dir: str, quick: bool) -> list[Row]:
    module = importlib.import_module(f"spde_tokens.validation.{name}")
    if module.NAME != name:
        raise ValueError(f"case module {name} declares NAME = {module.NAME!r}")
    start = time.perf_counter()
    rows, ds = module.measure(quick)
    foreign = sorted({r["case"] for r in rows} - {name})
    if not rows or foreign:
        raise ValueError(f"measure of case {name} must return rows of that case, got {len(rows)} rows and cases "
                         f"{foreign}")
    ds = ds.assign(row_variables(rows))
    ds.attrs.update(case_attrs(name, module.TITLE, quick, time.perf_counter() - start))
    write_run(ds, os.path.join(out_dir, f"{name}.nc"))
    module.plot(ds, os.path.join(out_dir, f"{name}.png"))
    return rows


def run_case(name: str, out_dir: str, quick: bool) -> tuple[list[Row], float]:
    """Run case ``name`` into ``out_dir`` (``<name>.nc`` and ``<name>.png``); returns its rows and running time.

    A case that raises gives one failing row with the error instead of its rows.
    """
    if name not in CASE_NAMES:
        raise ValueError(f"case must be one of {', '.join(CASE_NAMES)}, got {name!r}")
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    try:
        rows = _run(name, out_dir, quick)
    except Exception as exc:  # a broken case is a failed row of the report, not a crash of the whole suite
        rows = [check(name, "case ran", "no error", repr(exc)[:200], traceback.format_exc(limit=2).splitlines()[-1],
                      False)]
    return rows, time.perf_counter() - start
