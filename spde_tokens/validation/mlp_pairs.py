"""Two tokens under random MLP blocks (``MLPNoise``): the exponents of 1 ∓ x·y and the vectorized layer update.

The exponents come from the dual kernel κ of the activation (``spde_tokens.activations``); the derivations are in
the docstring of :mod:`spde_tokens.validation.synchronization`. :class:`MLPBatch` is the layer update of
``simulate_particles`` under ``MLPNoise`` (finite width) for R realizations at once, run by the functions of
:mod:`spde_tokens.validation.two_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spde_tokens.activations import dual_derivative_at_one, dual_kernel
from spde_tokens.drift import tangent_projection
from spde_tokens.model import AttentionModel
from spde_tokens.noise import MLPNoise
from spde_tokens.validation.two_tokens import attention_output

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
        raise ValueError("model: the drift exponent is implemented for V = 0 or Q = K = V = I")
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


@dataclass(frozen=True)
class MLPBatch:
    """x ← normalize(x + dt P_x V a_μ(x) + P_x ΔN(x)) for R realizations, ΔN = sigma W₂ φ(W₁ x)/sqrt(width).

    Increments: (W₁, W₂) with W₁ (R, width, d) ~ N(0, 1) and W₂ (R, d, width) ~ N(0, dt), the law of
    ``MLPNoise.sample``; a double step puts the two steps' hidden features side by side (``MLPNoise.combine``).
    """

    model: AttentionModel
    noise: MLPNoise

    def __post_init__(self) -> None:
        if self.noise.width is None:
            raise ValueError("noise: MLPBatch needs a finite-width MLPNoise")

    @property
    def width(self) -> int:
        """The number of hidden features of the noise (finite: checked at construction)."""
        width = self.noise.width
        if width is None:  # excluded by __post_init__; narrows int | None to int
            raise ValueError("noise: MLPBatch needs a finite-width MLPNoise")
        return width

    def draw(self, rng: np.random.Generator, r: int, dim: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
        width = self.width
        return rng.standard_normal((r, width, dim)), rng.standard_normal((r, dim, width)) * np.sqrt(dt)

    def combine(self, first: tuple[np.ndarray, np.ndarray],
                second: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([first[0], second[0]], axis=1), np.concatenate([first[1], second[1]], axis=2)

    def from_path(self, increments: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        return np.stack([i["mlp_w1"] for i in increments]), np.stack([i["mlp_w2"] for i in increments])

    def field(self, x: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
        """ΔN = sigma W₂ φ(W₁ x)/sqrt(width) for each realization (the formula of ``MLPNoise.field``)."""
        hidden = self.noise.activation.phi(x @ np.swapaxes(w1, 1, 2))
        return (self.noise.sigma / np.sqrt(self.width)) * (hidden @ np.swapaxes(w2, 1, 2))

    def step(self, x: np.ndarray, dt: float, increments: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        move = tangent_projection(x, self.field(x, *increments))
        if self.model.value_factor != 0.0:
            move += dt * tangent_projection(x, attention_output(self.model, x) @ self.model.V.T)
        x = x + move
        return x / np.linalg.norm(x, axis=-1, keepdims=True)
