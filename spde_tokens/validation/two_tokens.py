"""Two tokens under ``MLPNoise``: the theory and the vectorized simulation shared by the two-token cases.

The exponents of 1 − x·y from the dual kernel of the activation, the layer update of ``simulate_particles``
vectorized over independent realizations (:func:`layer_step`; :func:`simulate_coupled` runs step dt and, on the
same randomness, step 2 dt), tight and uniform pairs, the median with its standard error and the Richardson
log-mean rate. The derivations are in :mod:`spde_tokens.validation.synchronization`; the antipodal cases use the
pairs, the attention output and the statistics too.
"""

from __future__ import annotations

import numpy as np

from spde_tokens.activations import dual_derivative_at_one, dual_kernel
from spde_tokens.drift import tangent_projection
from spde_tokens.model import AttentionModel
from spde_tokens.noise import MLPNoise

MEDIAN_SE_FACTOR = np.sqrt(np.pi / 2.0)


# ---------------------------------------------------------------------------------------------------------------
# theory


def kappas(activation: str) -> tuple[float, float, float]:
    """(κ(1), κ'(1), κ(−1)) of the dual activation (``dual_kernel``, ``dual_derivative_at_one``)."""
    return (float(dual_kernel(activation, 1.0)), float(dual_derivative_at_one(activation)),
            float(dual_kernel(activation, -1.0)))


def noise_exponent(activation: str, dim: int, sigma: float) -> float:
    """Λ_noise = sigma² ((d − 3) κ'(1) − (d − 1) κ(1)): the a.s. rate of log(1 − x·y) from the noise alone."""
    k, kp, _ = kappas(activation)
    return sigma**2 * ((dim - 3) * kp - (dim - 1) * k)


def mean_exponent(activation: str, dim: int, sigma: float) -> float:
    """c = sigma² ((d − 1) κ'(1) − (d − 3) κ(1)): E(1 − x·y) ∝ exp(c t) from the noise alone (it grows, c > 0)."""
    k, kp, _ = kappas(activation)
    return sigma**2 * ((dim - 1) * kp - (dim - 3) * k)


def log_variance_rate(activation: str, sigma: float) -> float:
    """4 sigma² (κ(1) + κ'(1)): the quadratic variation of log(1 − x·y) per unit time near the diagonal."""
    k, kp, _ = kappas(activation)
    return 4.0 * sigma**2 * (k + kp)


def drift_exponent(model: AttentionModel) -> float:
    """The attention part of Λ for two tokens near the diagonal: −2 (softmax, V = I), −2 e^beta (unnormalized), 0."""
    if model.value_factor == 0.0:
        return 0.0
    if model.value_factor != 1.0 or model.zonal_factor != 1.0:
        raise ValueError("the drift exponent is implemented for V = 0 or Q = K = V = I")
    return -2.0 if model.softmax else -2.0 * np.exp(model.beta)


def antipodal_drift_exponent(model: AttentionModel) -> float:
    """The attention part of the exponent of log(1 + x·y) at an antipodal pair of two tokens.

    Softmax: d(1 + r)/dt = 2 e^{beta r}(1 − r²)/(e^beta + e^{beta r}) ≈ 4/(e^{2 beta} + 1) (1 + r); unnormalized:
    e^{beta r}(1 − r²) ≈ 2 e^{−beta} (1 + r); V = 0: none.
    """
    if model.value_factor == 0.0:
        return 0.0
    return 4.0 / (np.exp(2 * model.beta) + 1.0) if model.softmax else 2.0 * np.exp(-model.beta)


def crossing_dimension(activation: str) -> float:
    """The d where Λ_noise changes sign: (3κ' − κ)/(κ' − κ) (inf when κ' ≤ κ: never positive)."""
    k, kp, _ = kappas(activation)
    return (3.0 * kp - k) / (kp - k) if kp > k + 1e-12 else np.inf


# ---------------------------------------------------------------------------------------------------------------
# the layer update, vectorized over independent realizations


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


def mlp_field(noise: MLPNoise, x: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """ΔN = sigma W₂ φ(W₁ x)/sqrt(width) for each realization: x (R, N, d), W₁ (R, width, d), W₂ (R, d, width).

    The formula of ``MLPNoise.field`` with the increments of ``NoisePath.dW`` stacked over realizations.
    """
    hidden = noise.activation.phi(x @ np.swapaxes(w1, 1, 2))
    return (noise.sigma / np.sqrt(noise.width)) * (hidden @ np.swapaxes(w2, 1, 2))


def layer_step(model: AttentionModel, noise: MLPNoise, x: np.ndarray, dt: float, w1: np.ndarray,
               w2: np.ndarray) -> np.ndarray:
    """x ← normalize(x + dt P_x V a_μ(x) + P_x ΔN(x)) for R realizations at once, x of shape (R, N, d)."""
    move = tangent_projection(x, mlp_field(noise, x, w1, w2))
    if model.value_factor != 0.0:
        move += dt * tangent_projection(x, attention_output(model, x) @ model.V.T)
    x = x + move
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def draw_increments(rng: np.random.Generator, r: int, dim: int, width: int, dt: float):
    """W₁ (r, width, d) ~ N(0, 1) and W₂ (r, d, width) ~ N(0, dt): the law of ``MLPNoise.sample``."""
    return rng.standard_normal((r, width, dim)), rng.standard_normal((r, dim, width)) * np.sqrt(dt)


def pair_distance(x: np.ndarray, sign: float = 1.0) -> np.ndarray:
    """1 − x·y (sign = +1) or 1 + x·y (sign = −1) as |x ∓ y|²/2: no cancellation for close pairs."""
    diff = x[:, 0] - sign * x[:, 1]
    return 0.5 * np.sum(diff * diff, axis=-1)


def uniform_points(rng: np.random.Generator, r: int, dim: int) -> np.ndarray:
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


def observed_steps(x0: np.ndarray, n_steps: int, step, observe) -> np.ndarray:
    """x_{k+1} = step(x_k) for k < n_steps; returns observe(x_k) for k = 0 … n_steps, shape (n_steps + 1, ...)."""
    x = x0.copy()
    first = np.asarray(observe(x))
    out = np.empty((n_steps + 1, *first.shape))
    out[0] = first
    for k in range(n_steps):
        x = step(x)
        out[k + 1] = observe(x)
    return out


def simulate(model: AttentionModel, noise: MLPNoise, x0: np.ndarray, dt: float, n_steps: int,
             rng: np.random.Generator, observe) -> np.ndarray:
    """Run the batch for n_steps; returns observe(x) at every step (n_steps + 1, ...)."""

    def step(x: np.ndarray) -> np.ndarray:
        w1, w2 = draw_increments(rng, x.shape[0], x.shape[2], noise.width, dt)
        return layer_step(model, noise, x, dt, w1, w2)

    return observed_steps(x0, n_steps, step, observe)


def simulate_coupled(model: AttentionModel, noise: MLPNoise, x0: np.ndarray, dt: float, n_coarse: int,
                     rng: np.random.Generator, observe) -> np.ndarray:
    """The batch with step dt and, on the same randomness, with step 2 dt, as ``NoisePath.coarsen(2)`` builds it
    (the two steps' hidden features side by side: the sum of the two fields, frozen over the double step).

    Returns observe(x) at the times 2 k dt of both chains, shape (n_coarse + 1, 2, ...): [:, 0] step dt, [:, 1] 2 dt.
    """
    fine, coarse = x0.copy(), x0.copy()
    first = np.asarray(observe(fine))
    out = np.empty((n_coarse + 1, 2, *first.shape))
    out[0] = first
    r, _, d = x0.shape
    for k in range(n_coarse):
        a = draw_increments(rng, r, d, noise.width, dt)
        b = draw_increments(rng, r, d, noise.width, dt)
        fine = layer_step(model, noise, layer_step(model, noise, fine, dt, *a), dt, *b)
        coarse = layer_step(model, noise, coarse, 2 * dt, np.concatenate([a[0], b[0]], axis=1),
                            np.concatenate([a[1], b[1]], axis=2))
        out[k + 1, 0], out[k + 1, 1] = observe(fine), observe(coarse)
    return out


# ---------------------------------------------------------------------------------------------------------------
# statistics


def median_with_se(values: np.ndarray) -> tuple[float, float]:
    """Median and its standard error sqrt(π/2) · 1.4826 MAD / sqrt(n) (normal theory, robust spread)."""
    values = np.asarray(values, dtype=float)
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med)))
    return med, MEDIAN_SE_FACTOR * 1.4826 * mad / np.sqrt(values.size)


def richardson_log_mean_rate(fine: np.ndarray, coarse: np.ndarray, t: float) -> tuple[float, float]:
    """(2 log mean(fine) − log mean(coarse))/t and its delta-method standard error (the two are correlated)."""
    mf, mc = fine.mean(), coarse.mean()
    grad = np.stack([2.0 * fine / mf, -coarse / mc])  # per-realization influence, mean-centred below
    grad -= grad.mean(axis=1, keepdims=True)
    comb = grad[0] + grad[1]
    return (2.0 * np.log(mf) - np.log(mc)) / t, float(np.std(comb, ddof=1) / np.sqrt(fine.size) / t)
