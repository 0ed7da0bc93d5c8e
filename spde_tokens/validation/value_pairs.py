"""Two tokens under random value matrices (``ValueNoise``, V = 0, Qᵀ K = I, softmax): the exponent at the antipodal
pair, the sample plan of the sign runs and the vectorized layer update.

Shared by the antipodal case and its cluster part; the derivations are in the docstring of
:mod:`spde_tokens.validation.antipodal`. :class:`ValueBatch` is the layer update of ``simulate_particles`` under
``ValueNoise`` for R realizations at once, run by the functions of :mod:`spde_tokens.validation.two_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spde_tokens.drift import tangent_projection
from spde_tokens.model import AttentionModel
from spde_tokens.noise import ValueNoise
from spde_tokens.validation.common import MEDIAN_SE_FACTOR
from spde_tokens.validation.two_tokens import attention_output

SIGMA = 1.0
DT = 0.005
#: 1 + x·y of the tight antipodal pairs (and of the cap centres)
V0 = 5e-5
T_MAX = 8.0
#: sample sizes are chosen so that |Λ| is this many standard errors from 0
SIGNIFICANCE = 7.0
#: the standard error of the Richardson rate over that of the median dt slope (measured 1.0 to 1.9)
RICHARDSON_INFLATION = 1.5
#: below this 1 + x·y the law of log(1 + x·y) is that of the antipodal pair up to O(1 + x·y)
STAY = 1e-2


def exponent(beta: float, dim: int, sigma: float = SIGMA) -> float:
    """Λ = sigma² (d − 2 − cosh 2beta)/cosh² beta: the a.s. rate of log(1 + x·y) at the antipodal pair."""
    return sigma**2 * (dim - 2 - np.cosh(2 * beta)) / np.cosh(beta) ** 2


def variance_rate(beta: float, sigma: float = SIGMA) -> float:
    """sigma² (8 − 4/cosh² beta): the quadratic variation of log(1 + x·y) per unit time at the antipodal pair."""
    return sigma**2 * (8.0 - 4.0 / np.cosh(beta) ** 2)


def critical_beta(dim: float) -> float:
    """The beta where cosh 2beta = d − 2 (0 for d ≤ 3: antipodal pairs attract for every beta > 0)."""
    return 0.5 * np.arccosh(dim - 2) if dim > 3 else 0.0


def model_for(beta: float, dim: int) -> AttentionModel:
    """Softmax attention, Q = K = I (Qᵀ K = I), V = 0: the pure-noise network of Fedorov et al."""
    return AttentionModel(dim, beta, V=np.zeros((dim, dim)))


def sample_plan(beta: float, dim: int, r_max: int) -> tuple[float, int]:
    """(T, R) of a sign run: T = min(8, 16/|Λ|) (Λ < 0) or min(8, 3/Λ), and R T = (7 sqrt(π/2) 1.5 s/|Λ|)² clipped
    to [400, r_max], s² the variance rate (docstring of :mod:`spde_tokens.validation.antipodal`)."""
    lam = exponent(beta, dim)
    horizon = min(T_MAX, (16.0 if lam < 0 else 3.0) / abs(lam))
    need = (SIGNIFICANCE * MEDIAN_SE_FACTOR * RICHARDSON_INFLATION * np.sqrt(variance_rate(beta)) / abs(lam)) ** 2
    return horizon, int(np.clip(np.ceil(need / horizon), 400, r_max))


@dataclass(frozen=True)
class ValueBatch:
    """x ← normalize(x + P_x sigma ΔW a_μ(x)) for R realizations (V = 0: no attention drift), ΔW (R, d, d).

    Increments: ΔW with N(0, dt) entries, the law of ``ValueNoise.sample``; a double step sums the two.
    """

    model: AttentionModel
    noise: ValueNoise

    def __post_init__(self) -> None:
        if self.model.value_factor != 0.0:
            raise ValueError("model: ValueBatch implements V = 0 (the noise alone moves the tokens)")

    def draw(self, rng: np.random.Generator, r: int, dim: int, dt: float) -> np.ndarray:
        return rng.standard_normal((r, dim, dim)) * np.sqrt(dt)

    def combine(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return first + second

    def from_path(self, increments: list[dict[str, np.ndarray]]) -> np.ndarray:
        return np.stack([i["value"] for i in increments])

    def step(self, x: np.ndarray, dt: float, increments: np.ndarray) -> np.ndarray:
        """The formula of ``ValueNoise.field`` (sigma a ΔWᵀ) with the attention output of each realization's tokens
        (dt enters through the increments only)."""
        a = attention_output(self.model, x)
        x = x + tangent_projection(x, self.noise.sigma * (a @ np.swapaxes(increments, 1, 2)))
        return x / np.linalg.norm(x, axis=-1, keepdims=True)
