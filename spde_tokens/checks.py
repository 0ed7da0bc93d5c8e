"""Validation of scalar and array arguments: every bad value raises a ValueError that names the parameter.

Numbers are numbers: strings ("4", "0.01") and booleans are refused everywhere, so the Python API, a TOML
configuration and the command line (``--set model.beta=...``) all refuse them with the same message.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def describe(value: object) -> str:
    """``value`` as the user wrote it, with a hint when it is a string standing for a number."""
    if isinstance(value, str):
        return f"the string {value!r} (write numbers without quotes)"
    return repr(value)


def is_integer(value: object) -> bool:
    """True for Python and NumPy integers (not bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """True for Python and NumPy real numbers and 0-d real arrays (not bool, not str, not complex)."""
    return (isinstance(value, (int, float, np.number, np.ndarray)) and np.ndim(value) == 0
            and np.asarray(value).dtype.kind in "iuf")


def integer(name: str, value: Any, minimum: int) -> int:
    """An integer ≥ minimum."""
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {describe(value)}")
    return int(value)


def boolean(name: str, value: Any) -> bool:
    """True or False (Python or NumPy booleans); strings such as "no", numbers and None are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def real(name: str, value: Any, minimum: float = 0.0, strict: bool = False) -> float:
    """A finite real number ≥ minimum (> minimum when ``strict``)."""
    if not is_real(value):
        raise ValueError(f"{name} must be a real number, got {describe(value)}")
    x = float(value)
    if not np.isfinite(x) or x < minimum or (strict and x == minimum):
        raise ValueError(f"{name} must be finite and {'>' if strict else '≥'} {minimum:g}, got {value!r}")
    return x


def real_array(name: str, value: Any, ndim: int) -> np.ndarray:
    """A finite real array with ``ndim`` dimensions (a vector for 1, a matrix for 2); strings, booleans and ragged
    nestings are refused."""
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged nesting
        arr = np.asarray(None)
    if arr.ndim != ndim or arr.dtype.kind not in "iuf" or arr.size == 0:
        what = {1: "a non-empty list of real numbers", 2: "a non-empty list of equally long lists of real numbers"}
        raise ValueError(f"{name} must be {what.get(ndim, f'a {ndim}-dimensional real array')}, got {describe(value)}")
    arr = arr.astype(float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf entries), got {value!r}")
    return arr


def seed(value: Any) -> int | None:
    """None or a non-negative integer."""
    return None if value is None else integer("seed", value, 0)
