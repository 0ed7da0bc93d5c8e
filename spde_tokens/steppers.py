"""Explicit Runge–Kutta schemes, registered in one table and shared by the density and particle engines.

A scheme advances ``y' = f(y) + L y`` over one interval of length ``h``, where L is an optional *diagonal* linear
operator (given by its eigenvalues, e.g. ``nu Δ_S`` in spectral space) treated exactly by the Lawson integrating
factor ``exp(τ L)``:

    Y_i = e^{c_i h L} y + h Σ_j a_ij e^{(c_i - c_j) h L} f(Y_j),
    y_new = e^{h L} y + h Σ_j b_j e^{(1 - c_j) h L} f(Y_j).

Stability on the imaginary axis (transport by a velocity u on a mode of degree l, λ = l |u| h):

* ``"heun"`` (order 2): amplification |1 + iλ − λ²/2| = (1 + λ⁴/4)^{1/2} > 1 for every λ ≠ 0 — unconditionally
  unstable for pure transport; kept for comparison only.
* ``"rk3"`` (Shu–Osher SSP, order 3): stable for λ ≤ √3 ≈ 1.73.
* ``"rk4"`` (classical, order 4): stable for λ ≤ 2√2 ≈ 2.83 (the default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scheme:
    """Butcher tableau of an explicit Runge–Kutta scheme and its limit of stability on the imaginary axis."""

    name: str
    order: int
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    imaginary_stability: float

    def amplification(self, z: complex) -> float:
        """|R(z)| of the stability function R(z) = 1 + z bᵀ (I − z A)⁻¹ 𝟙 (the growth per step of y' = λy, z = hλ)."""
        n = len(self.b)
        a = np.zeros((n, n))
        for i, row in enumerate(self.a):
            a[i, : len(row)] = row
        return float(abs(1.0 + z * np.asarray(self.b) @ np.linalg.solve(np.eye(n) - z * a, np.ones(n))))

    def step(self, f: Callable[[np.ndarray], np.ndarray], y: np.ndarray, h: float,
             linear: np.ndarray | None = None) -> np.ndarray:
        """One step of size h of y' = f(y) + L y (L diagonal with eigenvalues ``linear``, or absent)."""

        def factor(tau: float) -> float | np.ndarray:
            return 1.0 if linear is None or tau == 0.0 else np.exp(tau * h * linear)

        k: list[np.ndarray] = []
        for i, ci in enumerate(self.c):
            stage = factor(ci) * y
            for j, aij in enumerate(self.a[i]):
                if aij:
                    stage = stage + (h * aij) * factor(ci - self.c[j]) * k[j]
            k.append(f(stage))
        out = factor(1.0) * y
        for j, bj in enumerate(self.b):
            if bj:
                out = out + (h * bj) * factor(1.0 - self.c[j]) * k[j]
        return out


SCHEMES: dict[str, Scheme] = {}


def register_scheme(scheme: Scheme) -> Scheme:
    """Add a scheme to the table used by every engine (and by the tests, which run them all)."""
    SCHEMES[scheme.name] = scheme
    return scheme


def get_scheme(name: str) -> Scheme:
    if name not in SCHEMES:
        raise ValueError(f"scheme must be one of {sorted(SCHEMES)}, got {name!r}")
    return SCHEMES[name]


register_scheme(Scheme("heun", 2, ((), (1.0,)), (0.5, 0.5), (0.0, 1.0), 0.0))
register_scheme(Scheme("rk3", 3, ((), (1.0,), (0.25, 0.25)), (1 / 6, 1 / 6, 2 / 3), (0.0, 1.0, 0.5), np.sqrt(3.0)))
register_scheme(Scheme("rk4", 4, ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 1 / 3, 1 / 3, 1 / 6),
                       (0.0, 0.5, 0.5, 1.0), 2.0 * np.sqrt(2.0)))
