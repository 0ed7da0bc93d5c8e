"""Validation cases of DESIGN 5, importable and run by ``spde-tokens validate``.

Each case is a module with ``run(out_dir, quick=False) -> dict``: it writes its NetCDF file and figure into
``out_dir`` and returns table rows (case, quantity, expected, measured, verdict, and how the tolerance was derived).
Expected values come from theory, never from an earlier run. ``CASES`` maps a case name to its ``run``.
"""

from spde_tokens.validation import cross_validation

CASES = {"cross_validation": cross_validation.run}

__all__ = ["CASES", "cross_validation"]
