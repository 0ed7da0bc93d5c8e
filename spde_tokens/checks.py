"""Validation of scalar arguments: every bad value raises a ValueError that names the parameter."""

from __future__ import annotations

import numpy as np


def is_integer(value) -> bool:
    """True for Python and NumPy integers (not bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def integer(name: str, value, minimum: int) -> int:
    """An integer ≥ minimum."""
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def real(name: str, value, minimum: float = 0.0, strict: bool = False) -> float:
    """A finite real number ≥ minimum (> minimum when ``strict``)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if isinstance(value, bool) or not np.isfinite(x) or x < minimum or (strict and x == minimum):
        raise ValueError(f"{name} must be finite and {'>' if strict else '≥'} {minimum:g}, got {value!r}")
    return x


def seed(value) -> int | None:
    """None or a non-negative integer."""
    return None if value is None else integer("seed", value, 0)
