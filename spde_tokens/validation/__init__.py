"""The validation cases, importable and run by ``spde-tokens validate``.

Each case is a module of this package following one contract (:mod:`spde_tokens.validation.common`): ``NAME``,
``TITLE`` and a module docstring (equations, claims, parameters, tolerances), ``measure(quick) -> (rows, Dataset)``
and ``plot(dataset, path)``. :func:`spde_tokens.validation.runner.run_case` runs one case and writes
``<case>.nc`` (with the rows and the CF attributes) and ``<case>.png``; :func:`spde_tokens.validation.report.
run_validation` runs them in the order of ``CASE_NAMES`` and writes ``report.md``. Expected values come from theory
or from a published claim, never from an earlier run.
"""

from spde_tokens.validation.report import run_validation
from spde_tokens.validation.runner import CASE_NAMES

__all__ = ["CASE_NAMES", "run_validation"]
