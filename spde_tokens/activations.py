"""Activations of the random MLP blocks and their dual kernels (``MLPNoise``; docs/mathematics.md, 'Common noise').

A random MLP block acts on tokens x ∈ S^{d-1} as the common noise ``ΔN(x) = sigma W₂ φ(W₁ x) / sqrt(width)``, whose
covariance is ``sigma² κ_φ(x·y) I dt`` with the **dual activation**

    κ_φ(t) = E[φ(u) φ(v)],    (u, v) standard Gaussians of correlation t ∈ [-1, 1],

and the one-point rate ``g = sigma² κ_φ(1)``; the synchronization exponent also needs ``κ_φ'(1) = E[φ'(u)²]``.
The infinite-width field is sampled from the expansions ``κ_φ(t) = Σ_l a_l P_l(t)`` (S^2) and
``κ_φ(cos θ) = b_0 + Σ_{n≥1} b_n cos(nθ)`` (S^1), whose coefficients are ≥ 0 (Schoenberg: κ_φ is a covariance on
every sphere).

Numerics (accuracies measured, see ``tests/test_activations.py``):

* Closed forms, exact to rounding: identity ``κ = t``; relu (arc-cosine kernel of Cho & Saul)
  ``κ = (sqrt(1-t²) + (π - arccos t) t) / (2π)``; erf ``κ = (2/π) arcsin(2t/3)``; sin ``κ = e^{-1} sinh t``.
* tanh, gelu and user callables: 2-D Gauss–Hermite quadrature with ``u = z₁``, ``v = t z₁ + sqrt(1-t²) z₂``
  (:func:`_gauss_hermite_dual`), 160 probabilists' nodes per axis.  The rule converges like exp(-c sqrt(n)) for tanh
  (poles at ±iπ/2): the largest change over t ∈ [-1, 1] is 1.6e-10 from 80 to 160 nodes and ≤ 2e-15 from 160 to 300
  (rounding), so κ_tanh and κ_gelu are accurate to ~2e-15.  Nodes whose normalized weight is below 1e-30 (|z| > 11.4)
  are dropped, which changes the sum by < 1e-30 · max φ² on them and makes the rule three times cheaper.  For a
  non-smooth φ the rule is only first order: for relu its error is about 0.13/n (8e-4 at 160 nodes), so use smooth
  callables or expect that floor.
* ``κ_φ'(1) = E[φ'(u)²]``: closed forms (1, 1/2, 4/(π sqrt 5), (1 + e^{-2})/2); 1-D Gauss–Hermite with φ' analytic
  for tanh (1 - tanh²) and gelu (Φ(u) + u φ_N(u)), accurate to ~1e-15; central differences of step 1e-5 for callables
  (truncation 1.7e-11 |φ'''| plus rounding ~1e-11 |φ|: about 1e-10 relative for smooth φ).
* ``a_l = ((2l+1)/2) ∫_{-1}^{1} κ_φ(t) P_l(t) dt`` in the variable t = cos θ, by Gauss–Legendre in θ ∈ [0, π] with
  2 lmax + 64 nodes: the relu kernel, whose t-form has (1 ∓ t)^{3/2} endpoint singularities, is analytic in θ, so
  the rule converges geometrically for every activation here (already at the floor with lmax + 40 nodes).  Measured
  error ≈ 3e-14 (lmax 40–100) to 2e-13 (lmax 1000), rounding of the Legendre recurrence, ∝ l·eps.
* ``b_n`` by the FFT of κ_φ(cos θ) on M = max(8 nmax, 4096) equispaced angles (trapezoid rule): geometric for the
  analytic periodic kernels; for relu κ(cos θ) has |θ|³ singularities at θ = 0, π, ``b_n ≈ (4/π²) n^{-4}`` (even n)
  and the aliasing error is O(M^{-4}), measured 3e-15 at M = 4096.

For relu the expansions converge algebraically: ``a_l ≈ (3/π)(l + ½)^{-4}`` and ``b_n ≈ (4/π²) n^{-4}`` for even
degrees (odd ones vanish beyond 1, since relu(u) - u/2 = |u|/2 is even; likewise for gelu, u (Φ(u) - 1/2) being
even), so the truncated one-point rate ``Σ_{l≤L} a_l`` misses about 1/(2π (L + 3/2)³) of κ(1) = 1/2.
"""

from __future__ import annotations

import functools
import operator
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

ACTIVATION_NAMES = ("tanh", "relu", "gelu", "erf", "sin", "identity")

_GH_NODES = 160  # Gauss–Hermite nodes per axis: κ_tanh, κ_gelu to ~2e-15 (see the module docstring)
_GH_WEIGHT_FLOOR = 1e-30  # nodes of smaller normalized weight are dropped
_GH_MAX_NODES = 300  # numpy's hermegauss overflows in its weights beyond about 330 nodes
_T_TOLERANCE = 1e-12  # correlations within this distance outside [-1, 1] are clipped, beyond it refused
_FD_STEP = 1e-5  # central-difference step for φ' of user callables
_CHUNK_ELEMENTS = 1 << 21  # evaluations of φ per vectorized block of the 2-D rule


def _relu(u: np.ndarray) -> np.ndarray:
    """relu(u) = max(u, 0)."""
    return np.maximum(u, 0.0)


def _gelu(u: np.ndarray) -> np.ndarray:
    """The exact GELU, u Φ(u) with Φ the standard normal CDF."""
    from scipy import special  # deferred: scipy.special costs ~0.3 s of `import spde_tokens`

    u = np.asarray(u, dtype=float)
    return u * special.ndtr(u)


def _erf(u: np.ndarray) -> np.ndarray:
    """erf(u) (``scipy.special.erf``, imported on first use like in :func:`_gelu`)."""
    from scipy import special  # deferred, as in _gelu

    return special.erf(u)


def _identity(u: np.ndarray) -> np.ndarray:
    """φ(u) = u (as a float array)."""
    return np.array(u, dtype=float)


_PHI: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": _relu,
    "gelu": _gelu,
    "erf": _erf,
    "sin": np.sin,
    "identity": _identity,
}


@dataclass(frozen=True)
class Activation:
    """An activation φ of the random MLP blocks.

    Attributes
    ----------
    name : one of ``ACTIVATION_NAMES``, or the ``__name__`` of a user callable (``"callable"`` if it has none).
    phi : the elementwise function, acting on NumPy arrays.
    builtin : True for the named activations (closed forms, caching, restorable from a file); False for callables.
    """

    name: str
    phi: Callable[[np.ndarray], np.ndarray]
    builtin: bool


def get_activation(activation: str | Callable | Activation) -> Activation:
    """The :class:`Activation` for a name of ``ACTIVATION_NAMES``, a callable, or an Activation (returned as is).

    gelu is the exact ``u Φ(u)`` (``scipy.special.ndtr``), erf is ``scipy.special.erf``.  A callable must act
    elementwise on arrays; it is recorded by its ``__name__`` only, so a run using it cannot be restored from a file
    (UserWarning).
    """
    if isinstance(activation, Activation):
        if activation.builtin and activation.name not in ACTIVATION_NAMES:
            raise ValueError(f"a builtin activation must be named one of {ACTIVATION_NAMES}, got {activation.name!r}")
        return activation
    if isinstance(activation, str):
        if activation not in ACTIVATION_NAMES:
            raise ValueError(f"activation must be one of {ACTIVATION_NAMES} or a callable, got {activation!r}")
        return Activation(activation, _PHI[activation], True)
    if callable(activation):
        name = getattr(activation, "__name__", None)
        name = name if isinstance(name, str) and name else "callable"
        warnings.warn(f"activation {name!r} is a callable: it is recorded by name only and cannot be restored from "
                      "a file", UserWarning, stacklevel=2)
        return Activation(name, activation, False)
    raise ValueError(f"activation must be one of {ACTIVATION_NAMES} or a callable, got {activation!r}")


# ----------------------------------------------------------------------------------------------------------------
# dual kernel κ_φ(t)


def _kappa_identity(t: np.ndarray) -> np.ndarray:
    return t.copy()


def _kappa_relu(t: np.ndarray) -> np.ndarray:
    # (1 - t)(1 + t) instead of 1 - t²: no cancellation near t = ±1
    return (np.sqrt((1.0 - t) * (1.0 + t)) + (np.pi - np.arccos(t)) * t) / (2.0 * np.pi)


def _kappa_erf(t: np.ndarray) -> np.ndarray:
    return (2.0 / np.pi) * np.arcsin(2.0 * t / 3.0)


def _kappa_sin(t: np.ndarray) -> np.ndarray:
    return np.exp(-1.0) * np.sinh(t)


_CLOSED_KAPPA: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": _kappa_identity,
    "relu": _kappa_relu,
    "erf": _kappa_erf,
    "sin": _kappa_sin,
}


@functools.lru_cache(maxsize=8)
def _gauss_hermite_rule(n_nodes: int, floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss–Hermite nodes z and weights w normalized to Σ w = 1 (so Σ w f(z) ≈ E f(u)).

    Nodes with w < floor are dropped.  The arrays are read-only (they are cached).
    """
    if not 1 <= n_nodes <= _GH_MAX_NODES:
        raise ValueError(f"n_nodes must be in [1, {_GH_MAX_NODES}], got {n_nodes}")
    with np.errstate(under="ignore"):
        z, w = np.polynomial.hermite_e.hermegauss(n_nodes)
    w = w / w.sum()
    keep = w >= floor
    z, w = z[keep], w[keep]
    z.flags.writeable = False
    w.flags.writeable = False
    return z, w


def _apply(phi: Callable[[np.ndarray], np.ndarray], u: np.ndarray) -> np.ndarray:
    """φ(u), checked to act elementwise and to be finite."""
    out = np.asarray(phi(u), dtype=float)
    if out.shape != u.shape:
        raise ValueError(f"activation must act elementwise on arrays: input shape {u.shape}, output {out.shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError("activation returned non-finite values at Gauss–Hermite nodes")
    return out


def _gauss_hermite_dual(phi: Callable[[np.ndarray], np.ndarray], t: ArrayLike, n_nodes: int = _GH_NODES,
                        ) -> np.ndarray:
    """κ_φ(t) = E[φ(u) φ(v)] by the 2-D Gauss–Hermite rule, for t in [-1, 1] (not checked here).

    Implements ``κ_φ(t) ≈ Σ_i Σ_j w_i w_j φ(z_i) φ(t z_i + sqrt(1 - t²) z_j)`` with the probabilists' rule of
    ``n_nodes`` nodes per axis (normalized weights, nodes of weight < 1e-30 dropped), vectorized over t in blocks.
    """
    t = np.asarray(t, dtype=float)
    flat = t.ravel()
    z, w = _gauss_hermite_rule(int(n_nodes), _GH_WEIGHT_FLOOR)
    outer = w * _apply(phi, z)
    k = z.size
    chunk = max(1, _CHUNK_ELEMENTS // (k * k))
    out = np.empty(flat.size)
    for start in range(0, flat.size, chunk):
        tt = flat[start:start + chunk, None, None]
        s = np.sqrt((1.0 - tt) * (1.0 + tt))
        values = _apply(phi, tt * z[:, None] + s * z[None, :])  # [c, i, j] = φ(t z_i + s z_j)
        out[start:start + chunk] = (values @ w) @ outer
    return out.reshape(t.shape)


def _check_correlation(t: ArrayLike) -> np.ndarray:
    """t as a float array, refused if non-finite or outside [-1, 1] by more than 1e-12, then clipped to [-1, 1]."""
    t = np.array(t, dtype=float)
    if not np.all(np.isfinite(t)):
        raise ValueError("t must be finite")
    if t.size and np.max(np.abs(t)) > 1.0 + _T_TOLERANCE:
        raise ValueError(f"t must lie in [-1, 1] (tolerance {_T_TOLERANCE:g}), got max |t| = {np.max(np.abs(t))!r}")
    return np.clip(t, -1.0, 1.0)


def _kappa(act: Activation, t: np.ndarray) -> np.ndarray:
    """κ_φ at checked correlations t: closed form when there is one, else the Gauss–Hermite rule."""
    if act.builtin and act.name in _CLOSED_KAPPA:
        return _CLOSED_KAPPA[act.name](t)
    return _gauss_hermite_dual(act.phi, t)


def dual_kernel(activation: str | Callable | Activation, t: ArrayLike) -> np.ndarray:
    """The dual activation κ_φ(t) = E[φ(u) φ(v)] for standard Gaussians u, v of correlation t.

    Parameters
    ----------
    activation : a name of ``ACTIVATION_NAMES``, a callable or an :class:`Activation`.
    t : correlations in [-1, 1] (values within 1e-12 outside are clipped; others are a ValueError).

    Returns
    -------
    κ_φ(t), an array of the shape of t.  Closed forms for identity, relu, erf, sin; 2-D Gauss–Hermite (error
    ~2e-15 for tanh and gelu) otherwise.

    Examples
    --------
    >>> float(dual_kernel("relu", 1.0))
    0.5
    """
    act = get_activation(activation)
    return _kappa(act, _check_correlation(t))


# ----------------------------------------------------------------------------------------------------------------
# κ_φ'(1) = E[φ'(u)²]

_CLOSED_DERIVATIVE = {
    "identity": 1.0,
    "relu": 0.5,
    "erf": 4.0 / (np.pi * np.sqrt(5.0)),
    "sin": 0.5 * (1.0 + np.exp(-2.0)),
}


def _tanh_prime(u: np.ndarray) -> np.ndarray:
    return 1.0 - np.tanh(u) ** 2


def _gelu_prime(u: np.ndarray) -> np.ndarray:
    from scipy import special  # deferred, as in _gelu

    return special.ndtr(u) + u * np.exp(-0.5 * u * u) / np.sqrt(2.0 * np.pi)


_PHI_PRIME: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": _tanh_prime, "gelu": _gelu_prime, "identity": np.ones_like, "relu": lambda u: (u > 0).astype(float),
    "erf": lambda u: 2.0 / np.sqrt(np.pi) * np.exp(-u * u), "sin": np.cos}


def activation_derivative(activation: str | Callable | Activation, u: np.ndarray) -> np.ndarray:
    """φ'(u) elementwise: closed forms for the named activations (relu: the step 1_{u > 0}); central differences of
    step 1e-5 for callables (about 1e-10 relative error for smooth φ)."""
    act = get_activation(activation)
    if act.builtin:
        return _PHI_PRIME[act.name](u)
    return (_apply(act.phi, u + _FD_STEP) - _apply(act.phi, u - _FD_STEP)) / (2.0 * _FD_STEP)


def dual_derivative_at_one(activation: str | Callable | Activation) -> float:
    """κ_φ'(1) = E[φ'(u)²], u standard Gaussian.

    Closed forms for identity (1), relu (1/2), erf (4/(π sqrt 5)) and sin ((1 + e^{-2})/2); 1-D Gauss–Hermite of
    φ'² with φ' analytic for tanh and gelu (error ~1e-15); for callables φ' by central differences of step 1e-5
    (about 1e-10 relative error for smooth φ; a kink of φ at a node would be averaged).
    """
    act = get_activation(activation)
    if act.builtin and act.name in _CLOSED_DERIVATIVE:
        return float(_CLOSED_DERIVATIVE[act.name])
    z, w = _gauss_hermite_rule(_GH_NODES, _GH_WEIGHT_FLOOR)
    if act.builtin:
        slope = _PHI_PRIME[act.name](z)
    else:
        slope = (_apply(act.phi, z + _FD_STEP) - _apply(act.phi, z - _FD_STEP)) / (2.0 * _FD_STEP)
    return float(w @ slope**2)


# ----------------------------------------------------------------------------------------------------------------
# expansions on S^2 (Legendre) and S^1 (cosine)


def _check_degree(value: int, name: str) -> int:
    """A non-negative integer degree, else ValueError naming the parameter."""
    try:
        if isinstance(value, bool | np.bool_):
            raise TypeError
        degree = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}") from None
    if degree < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {degree}")
    return degree


def _legendre_raw(act: Activation, lmax: int) -> np.ndarray:
    """a_l = ((2l+1)/2) ∫_{-1}^{1} κ_φ(t) P_l(t) dt for l = 0 … lmax, unclipped and uncached.

    Written as ((2l+1)/2) ∫_0^π κ_φ(cos θ) P_l(cos θ) sin θ dθ and integrated by Gauss–Legendre in θ with
    2 lmax + 64 nodes; P_l by the three-term recurrence (l+1) P_{l+1} = (2l+1) t P_l - l P_{l-1}.
    """
    x, w = np.polynomial.legendre.leggauss(2 * lmax + 64)
    theta = 0.5 * np.pi * (x + 1.0)
    t = np.cos(theta)
    f = (0.5 * np.pi) * w * np.sin(theta) * _kappa(act, t)
    out = np.empty(lmax + 1)
    p_prev, p = np.zeros_like(t), np.ones_like(t)
    for ell in range(lmax + 1):
        out[ell] = 0.5 * (2 * ell + 1) * (p @ f)
        p_prev, p = p, ((2 * ell + 1) * t * p - ell * p_prev) / (ell + 1)
    return out


@functools.lru_cache(maxsize=32)
def _legendre_builtin(name: str, lmax: int) -> np.ndarray:
    return _legendre_raw(get_activation(name), lmax)


def _legendre_unclipped(act: Activation, lmax: int) -> np.ndarray:
    """The unclipped a_l, cached per (name, lmax) for the named activations (a fresh array every call)."""
    return _legendre_builtin(act.name, lmax).copy() if act.builtin else _legendre_raw(act, lmax)


def legendre_coefficients(activation: str | Callable | Activation, lmax: int) -> np.ndarray:
    """Legendre coefficients of the dual kernel, ``κ_φ(t) = Σ_l a_l P_l(t)``, for l = 0 … lmax.

    Implements ``a_l = ((2l+1)/2) ∫_{-1}^{1} κ_φ(t) P_l(t) dt`` (Gauss–Legendre in θ = arccos t, error ≲ 1e-13
    for lmax ≤ 1000); negative values, from quadrature error only (Schoenberg), are clipped to 0.  On S^2 the
    infinite-width field has ``Σ_{l≤L} a_l`` as its one-point rate κ_φ(1), truncated.  Cached per (name, lmax) for
    the named activations.

    Examples
    --------
    >>> np.round(legendre_coefficients("relu", 2), 6)  # 3/16, the t/4 term, 15/256
    array([0.1875  , 0.25    , 0.058594])
    """
    act = get_activation(activation)
    lmax = _check_degree(lmax, "lmax")
    return np.maximum(_legendre_unclipped(act, lmax), 0.0)


def _cosine_spectrum(act: Activation, m: int) -> np.ndarray:
    """b_n of κ_φ(cos θ) = b_0 + Σ_{n≥1} b_n cos(nθ) for n = 0 … m/2 - 1, unclipped and uncached.

    Trapezoid rule (real FFT) on m equispaced angles θ_k = 2πk/m; κ_φ is evaluated on θ ∈ [0, π] only (the function
    is even in θ).  b_0 = mean, b_n = 2 Re(FFT_n)/m.
    """
    half = m // 2
    t = np.cos(2.0 * np.pi * np.arange(half + 1) / m)
    t[0], t[half] = 1.0, -1.0
    k = _kappa(act, t)
    c = np.fft.rfft(np.concatenate([k, k[-2:0:-1]])).real / m
    out = c[:half]
    out[1:] *= 2.0
    return out


@functools.lru_cache(maxsize=16)
def _cosine_builtin(name: str, m: int) -> np.ndarray:
    return _cosine_spectrum(get_activation(name), m)


def _cosine_unclipped(act: Activation, nmax: int) -> np.ndarray:
    """The unclipped b_n, n = 0 … nmax, from m = max(8 nmax, 4096) angles; cached per (name, m) for the named
    activations (every nmax ≤ 512 shares one spectrum), a fresh array every call."""
    m = max(8 * nmax, 4096)
    spectrum = _cosine_builtin(act.name, m) if act.builtin else _cosine_spectrum(act, m)
    return spectrum[: nmax + 1].copy()


def cosine_coefficients(activation: str | Callable | Activation, nmax: int) -> np.ndarray:
    """Fourier–cosine coefficients of the dual kernel on S^1, ``κ_φ(cos θ) = b_0 + Σ_{n≥1} b_n cos(nθ)``.

    Returns b_n for n = 0 … nmax (FFT of κ_φ(cos θ) on M = max(8 nmax, 4096) angles: geometric convergence for the
    smooth activations, O(M^{-4}) ≈ 3e-15 aliasing for relu); negative values, from quadrature error only, are
    clipped to 0.  Cached per (name, M) for the named activations.
    """
    act = get_activation(activation)
    nmax = _check_degree(nmax, "nmax")
    return np.maximum(_cosine_unclipped(act, nmax), 0.0)
