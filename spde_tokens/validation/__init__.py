"""Validation cases of DESIGN 5, importable and run by ``spde-tokens validate``.

Each case is a module of this package with ``NAME``, ``TITLE`` and ``run(out_dir, quick=False)``: it writes
``<case>.nc`` and ``<case>.png`` into ``out_dir`` and returns table rows (case, quantity, expected, measured,
verdict, and how the tolerance was derived). Expected values come from theory, never from an earlier run.
:func:`spde_tokens.validation.report.run_validation` runs them in the order of ``CASE_NAMES`` and writes
``report.md``.
"""

from spde_tokens.validation.report import CASE_NAMES, run_validation

__all__ = ["CASE_NAMES", "run_validation"]
