"""Small token sets of many independent realizations at once: the shared simulation and statistics of the
two-token cases (synchronization, antipodal).

A *batch* (:class:`Batch`) is the layer update of ``simulate_particles`` for one noise kind, vectorized over R
independent realizations, tokens x of shape (R, N, d). It draws the increments of one step (the law of the noise
model's ``sample``), merges the increments of two steps into those of one double step on the same randomness (as
``NoisePath.coarsen(2)`` does), stacks the increments of R ``NoisePath`` objects, and makes a step.
:class:`spde_tokens.validation.mlp_pairs.MLPBatch` and :class:`spde_tokens.validation.value_pairs.ValueBatch` are
the two batches; :func:`simulate`, :func:`simulate_coupled` (step dt and, on the same randomness, step 2 dt) and
:func:`faithfulness` (the batch against ``simulate_particles``) run either. The pairs, the attention output of each
realization's tokens, the median with its standard error and the Richardson statistics complete the module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from spde_tokens.drift import tangent_projection
from spde_tokens.model import AttentionModel
from spde_tokens.noise import NoisePath
from spde_tokens.particles import simulate_particles
from spde_tokens.validation.common import median_with_se, richardson_of_medians


class Batch(Protocol):
    """The layer update of one noise kind for R realizations at once (module docstring)."""

    # read-only members: the batches are frozen dataclasses
    @property
    def model(self) -> AttentionModel:
        """The attention model whose drift the step applies."""

    @property
    def noise(self) -> Any:
        """The noise model whose increments the batch draws."""

    def draw(self, rng: np.random.Generator, r: int, dim: int, dt: float) -> Any:
        """The increments of one step of length dt for r realizations."""

    def combine(self, first: Any, second: Any) -> Any:
        """The increments of one step of 2 dt made of two consecutive steps of dt (the same randomness)."""

    def from_path(self, increments: list[dict[str, np.ndarray]]) -> Any:
        """The increments of one step, one realization per ``NoisePath.increments`` dict."""

    def step(self, x: np.ndarray, dt: float, increments: Any) -> np.ndarray:
        """x (R, N, d) after one layer update with these increments."""


# ---------------------------------------------------------------------------------------------------------------
# tokens and pairs


def attention_output(model: AttentionModel, x: np.ndarray) -> np.ndarray:
    """a_μ(x_i) for the empirical measure of the tokens of each realization, x of shape (R, N, d).

    Softmax: Σ_j e^{beta x_iᵀA x_j} x_j / Σ_j e^{beta x_iᵀA x_j}; unnormalized: (1/N) Σ_j e^{beta x_iᵀA x_j} x_j
    (``spde_tokens.drift.attention_output_points`` per realization, max-shifted logits).
    """
    logits = model.beta * (x @ model.A) @ np.swapaxes(x, 1, 2)
    shift = logits.max(axis=-1, keepdims=True)
    w = np.exp(logits - shift)
    num = w @ x
    if model.softmax:
        return num / w.sum(axis=-1, keepdims=True)
    return num * (np.exp(shift) / x.shape[1])


def pair_distance(x: np.ndarray, sign: float = 1.0) -> np.ndarray:
    """1 − x·y (sign = +1) or 1 + x·y (sign = −1) as |x ∓ y|²/2: no cancellation for close pairs."""
    diff = x[:, 0] - sign * x[:, 1]
    return 0.5 * np.sum(diff * diff, axis=-1)


def uniform_points(rng: np.random.Generator, r: int, dim: int) -> np.ndarray:
    """r independent points uniform on S^{dim−1} (normalized Gaussian vectors), shape (r, dim)."""
    x = rng.standard_normal((r, dim))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def tight_pairs(rng: np.random.Generator, r: int, dim: int, u0: float, sign: float = 1.0) -> np.ndarray:
    """R pairs (R, 2, d): x uniform, y at 1 − x·y = u0 in a uniform tangent direction (sign −1: at −x instead)."""
    x = uniform_points(rng, r, dim)
    v = tangent_projection(x, rng.standard_normal((r, dim)))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * np.arcsin(np.sqrt(u0 / 2.0))
    y = np.cos(angle) * x + np.sin(angle) * v
    return np.stack([x, sign * y], axis=1)


# ---------------------------------------------------------------------------------------------------------------
# runs of a batch


def observed_steps(x0: np.ndarray, n_steps: int, step: Callable[[np.ndarray], np.ndarray],
                   observe: Callable[[np.ndarray], Any]) -> np.ndarray:
    """x_{k+1} = step(x_k) for k < n_steps; returns observe(x_k) for k = 0 … n_steps, shape (n_steps + 1, ...)."""
    x = x0.copy()
    first = np.asarray(observe(x))
    out = np.empty((n_steps + 1, *first.shape))
    out[0] = first
    for k in range(n_steps):
        x = step(x)
        out[k + 1] = observe(x)
    return out


def simulate(batch: Batch, x0: np.ndarray, dt: float, n_steps: int, rng: np.random.Generator,
             observe: Callable[[np.ndarray], Any]) -> np.ndarray:
    """n_steps layer updates of step dt from x0 (R, N, d), increments from ``rng``; observe(x) at every step."""
    r, _, d = x0.shape
    return observed_steps(x0, n_steps, lambda x: batch.step(x, dt, batch.draw(rng, r, d, dt)), observe)


def simulate_coupled(batch: Batch, x0: np.ndarray, dt: float, n_coarse: int, rng: np.random.Generator,
                     observe: Callable[[np.ndarray], Any]) -> np.ndarray:
    """The batch with step dt and, on the same randomness, with step 2 dt (``batch.combine`` of each two steps).

    Returns observe(x) at the times 2 k dt of both chains, shape (n_coarse + 1, 2, ...): [:, 0] step dt, [:, 1] 2 dt.
    """
    fine, coarse = x0.copy(), x0.copy()
    first = np.asarray(observe(fine))
    out = np.empty((n_coarse + 1, 2, *first.shape))
    out[0] = first
    r, _, d = x0.shape
    for k in range(n_coarse):
        a, b = batch.draw(rng, r, d, dt), batch.draw(rng, r, d, dt)
        fine = batch.step(batch.step(fine, dt, a), dt, b)
        coarse = batch.step(coarse, 2 * dt, batch.combine(a, b))
        out[k + 1, 0], out[k + 1, 1] = observe(fine), observe(coarse)
    return out


def faithfulness(batch: Batch, x0: np.ndarray, dt: float, t_end: float = 1.0) -> float:
    """Largest |x_batch − x_simulate_particles| at t_end when both are fed the same ``NoisePath`` increments.

    Realization s of x0 (R, N, d) is driven by ``NoisePath(batch.noise, d, dt, ·, seed=s)``: ``simulate_particles``
    (layer scheme, direct attention sums) reads the path, the batch takes its increments (``batch.from_path``).
    """
    n_steps = int(round(t_end / dt))
    paths = [NoisePath(batch.noise, batch.model.dim, dt, n_steps, seed=s) for s in range(x0.shape[0])]
    ref = np.stack([simulate_particles(batch.model, batch.noise, x0[s], t_end, dt, path=path, save_every=t_end,
                                       progress=False, attention="direct")["positions"].values[-1]
                    for s, path in enumerate(paths)])
    x = x0.copy()
    for k in range(n_steps):
        x = batch.step(x, dt, batch.from_path([p.increments(k) for p in paths]))
    return float(np.max(np.abs(x - ref)))


# ---------------------------------------------------------------------------------------------------------------
# statistics


def rate_statistics(series: np.ndarray, horizon: float) -> dict:
    """Slopes s = (q(T) − q(0))/T per realization of a log quantity q and their Richardson combination.

    Parameters
    ----------
    series : (n + 1, 2, R) from :func:`simulate_coupled` (dt chain, 2 dt chain); horizon : T.

    Returns
    -------
    dict: ``"median"``, ``"se"`` and ``"positive"`` (fraction > 0) of the dt slopes, ``"median_coarse"`` of the
    2 dt slopes, ``"richardson"`` and ``"richardson_se"``: the Richardson extrapolation of the medians
    2 med(s(dt)) − med(s(2 dt)) (O(dt²) bias; :func:`spde_tokens.validation.common.richardson_of_medians`, which says
    why the median of the per-realization extrapolations would be biased).
    """
    slopes = (series[-1] - series[0]) / horizon  # (2, R): dt chain, 2 dt chain
    med, se = median_with_se(slopes[0])
    rich, rich_se = richardson_of_medians(slopes[0], slopes[1])
    return {"median": med, "se": se, "positive": float(np.mean(slopes[0] > 0)),
            "median_coarse": float(np.median(slopes[1])), "richardson": rich, "richardson_se": rich_se}


def lognormal_mean_rate(fine: np.ndarray, coarse: np.ndarray, t: float) -> tuple[float, float, float]:
    """The exponent c of E u(t) = u(0) e^{c t} when log u is a Brownian motion with drift, from log(u(t)/u(0)).

    For log(u(t)/u(0)) = Λ t + s B(t), E u(t)/u(0) = exp((Λ + s²/2) t): c = (mean + var/2)/t of the log ratios, an
    estimate without the small-sample bias of log(sample mean of u), which is biased low once s² t ≳ 1 (the mean is
    carried by rare large values). Per chain c_h = (mean ℓ_h + ½ var ℓ_h)/t; returned: the Richardson combination
    2 c_dt − c_2dt, its standard error from the per-realization influence ψ = (ℓ − ℓ̄) + ½((ℓ − ℓ̄)² − var ℓ)
    (paired chains: sd(2 ψ_dt − ψ_2dt)/(t sqrt(n))), and c_dt alone.

    Parameters
    ----------
    fine, coarse : log(u(t)/u(0)) per realization, steps dt and 2 dt on the same randomness; t : the time.
    """
    def rate_and_influence(x: np.ndarray) -> tuple[float, np.ndarray]:
        dev = x - x.mean()
        var = float(x.var(ddof=1))
        return (float(x.mean()) + 0.5 * var) / t, dev + 0.5 * (dev**2 - var)

    (c_f, psi_f), (c_c, psi_c) = rate_and_influence(fine), rate_and_influence(coarse)
    return 2.0 * c_f - c_c, float(np.std(2.0 * psi_f - psi_c, ddof=1) / (t * np.sqrt(fine.size))), c_f
