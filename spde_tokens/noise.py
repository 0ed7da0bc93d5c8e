"""Common-noise models (docs/mathematics.md, 'Common noise'), their registry, and the random path of one
realization (``NoisePath``).

One layer of a deep Transformer at initialization moves every token by the same random field ΔN(x; μ), with
mean 0 and covariance O(dt). Each model below gives that field at any set of points (grid nodes or tokens) from the
increments of one step, so the density solver and the particle simulator driven by the same ``NoisePath`` see
exactly the same field. E[ΔN(x) ΔN(y)ᵀ]/dt is given by ``covariance`` (the basis of the tests):

=========================  ================================================  ===================================
model                      ΔN(x)                                             E[ΔN(x) ΔN(y)ᵀ]/dt
=========================  ================================================  ===================================
RotationNoise(sigma)       sigma ΔΩ x, ΔΩ antisymmetric                      sigma² ((x·y) I − y xᵀ)
BiasNoise(gamma)           gamma ΔB                                          gamma² I
QuadraticFormNoise(alpha)  alpha ΔS x, ΔS = (ΔB + ΔBᵀ)/√2                     alpha² ((x·y) I + y xᵀ)
ValueNoise(sigma)          sigma ΔW a_μ(x)                                   sigma² (a(x)·a(y)) I
MLPNoise(sigma, φ, width)  sigma W₂ φ(W₁ x)/sqrt(width)                       sigma² κ_φ(x·y) I
IdiosyncraticNoise(nu)     sqrt(2 nu) ΔB_i, independent per token            2 nu I (same token), 0 otherwise
=========================  ================================================  ===================================

Brownian entries have variance dt. Models add (``BiasNoise(0.3) + MLPNoise(0.5, "tanh", 64)``); a sum holds at most
one model of each kind and its order does not matter.

**The registry.** Every model class declares, in one place: its ``kind`` (the key of its table in a configuration's
``[noise]`` section, and its stream in a ``NoisePath``), its stream ``code``, its parameters (the constructor's
arguments), its field at points (``field``) and on grids (``grid_field``), the surface divergence of its tangential
field at points (``divergence``, for the Lagrangian engine: div_S(P_x F) = tr(P_x DF(x) P_x) − (d − 1) x·F(x) for a
field F defined on R^d), its one-point rate g (``one_point_rate``), the drift correction it needs, if any
(``drift_correction``: ValueNoise's Itô term), and, for the fields linear in x, ΔN(x) = M x + b (``linear_field``:
rotation, bias, quadratic form), from which ``spectral_transport`` builds the density step's transport operator
−div_S(ρ u) in spectral space, without transforms (docs/mathematics.md, 'Spectral transport of linear noise
fields'); a sum has one when each of its common models has one. Defining a subclass with a ``kind`` registers it in
:data:`NOISE_MODELS`, which the configuration reads: adding a model touches this module and its tests only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeAlias

import numpy as np

from spde_tokens import checks
from spde_tokens.activations import (
    Activation,
    activation_derivative,
    cosine_coefficients,
    dual_kernel,
    get_activation,
    legendre_coefficients,
)
from spde_tokens.grids import Grid, grid_from_attrs
from spde_tokens.grids.multiply import SpectralTransport, linear_transport

#: the increments of one step of a path, keyed as in ``NoisePath.dW``
Increments: TypeAlias = dict[str, np.ndarray]

#: the registry: kind → model class (filled by defining a subclass of NoiseModel with a ``kind``)
NOISE_MODELS: dict[str, type[NoiseModel]] = {}
#: bytes of one block of hidden features φ(W₁ x) in the finite-width MLP field
MLP_BLOCK_BYTES = 2 * 2**20  # small blocks stay in cache: 1.6x faster than 32 MiB (bench_noise)


def _brownian(rng: np.random.Generator, shape: int | tuple[int, ...], dt: float) -> np.ndarray:
    return rng.standard_normal(shape) * np.sqrt(dt)


class NoiseModel:
    """A common-noise model: increments of one step, the field they make, and its covariance."""

    #: the model's key in a configuration's [noise] table and its stream in a NoisePath ("" for sums)
    kind: str = ""
    #: its stream in ``SeedSequence(seed, spawn_key=(code, step))``; fixed forever (a new code changes every path)
    code: int = 0
    #: the field needs the attention output a_μ (passed as ``context``)
    needs_context = False
    #: one field shared by all tokens (False for idiosyncratic noise)
    common = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            taken = {other.code: name for name, other in NOISE_MODELS.items() if name != cls.kind}
            if cls.code < 1 or cls.code in taken:
                raise ValueError(f"noise model {cls.__name__}: code {cls.code} must be ≥ 1 and unused "
                                 f"(taken: {taken})")
            NOISE_MODELS[cls.kind] = cls

    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        """The constructor's parameters: the keys of the model's table in a configuration."""
        return tuple(name for name in inspect.signature(cls.__init__).parameters if name != "self")

    def __add__(self, other: NoiseModel) -> NoiseSum:
        return NoiseSum(self) + other

    def __radd__(self, other: object) -> NoiseSum:
        if other == 0 or other is None:  # sum([...]) starts from 0
            return NoiseSum(self)
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        return (type(self) is type(other) and isinstance(other, NoiseModel)
                and self.parameters() == other.parameters())

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.parameters().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.parameters().items())
        return f"{type(self).__name__}({args})"

    def parameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def increment_keys(self) -> tuple[str, ...]:
        """Keys of ``NoisePath.dW`` that this model draws."""
        return (self.kind,)

    def sample(self, rng: np.random.Generator, dim: int, dt: float, lmax: int | None) -> Increments:
        """Increments of one step (without the amplitude), keyed as in ``NoisePath.dW``."""
        raise NotImplementedError

    @staticmethod
    def combine(increments: list[Increments]) -> Increments:
        """Increments of k consecutive steps merged into those of one step of length k·dt (Brownian: summed)."""
        return {key: np.sum([inc[key] for inc in increments], axis=0) for key in increments[0]}

    def field(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None) -> np.ndarray:
        """ΔN at ``points`` (..., d) as Cartesian vectors (..., d), amplitude included."""
        raise NotImplementedError

    def grid_field(self, grid: Grid, increments: Increments, context: np.ndarray | None = None) -> np.ndarray:
        """ΔN at the nodes of ``grid``, shape (*grid.shape, d)."""
        return self.field(grid.points(), increments, context)

    def divergence(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None,
                   jacobian: np.ndarray | None = None) -> np.ndarray:
        """div_S(P_x ΔN)(x) at unit ``points`` (..., d), shape (...): tr(P_x DF P_x) − (d − 1) x·F(x), F = ΔN.

        ``context`` and ``jacobian`` are the attention output a_μ (..., d) and its Jacobian Da_μ (..., d, d) at the
        points, for the models whose field depends on them (ValueNoise).
        """
        raise NotImplementedError

    def field_and_divergence(self, points: np.ndarray, increments: Increments) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`field` and :meth:`divergence` at the same points together (models whose field does not depend on
        μ); a model overrides it when both share work (MLPNoise: one evaluation of the hidden layer)."""
        return self.field(points, increments), self.divergence(points, increments)

    def linear_field(self, increments: Increments) -> tuple[np.ndarray | None, np.ndarray | None] | None:
        """(M, b) with ΔN(x) = M x + b (amplitude included; None for a zero part) for the fields linear in x, None for
        the others (the density step then moves ρ by grid sub-steps)."""
        return None

    def spectral_transport(self, grid: Grid, increments: Increments, dt: float) -> SpectralTransport | None:
        """ρ ↦ −div_S(ρ u_n/dt), u_n = P_x ΔN_n, on the coefficients of ``grid`` by sparse products (no transform),
        for a linear field (:meth:`linear_field`) on a SphereGrid or CircleGrid; None otherwise.

        docs/mathematics.md, 'Spectral transport of linear noise fields'.
        """
        linear = self.linear_field(increments)
        transport = linear_transport(grid) if linear is not None else None
        if linear is None or transport is None:
            return None
        matrix, vector = linear
        return transport.operator(None if matrix is None else matrix / dt, None if vector is None else vector / dt)

    def drift_correction_points(self, points: np.ndarray, context: np.ndarray, jacobian: np.ndarray | None,
                                hessian: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """The drift of :meth:`drift_correction` at unit ``points`` (N, d) as Cartesian tangent vectors, with its
        surface divergence (N,), from the attention output a_μ, its Jacobian and its second derivatives there (the
        Lagrangian engine); None for the models without one."""
        return None

    def drift_correction(self, grid: Grid, context: np.ndarray | None) -> np.ndarray | None:
        """A drift (tangent components on ``grid``) the frozen-increment step must add to reach the layer update's
        limit, or None (every model but ValueNoise, whose field depends on x through a_μ)."""
        return None

    def covariance(self, x: np.ndarray, y: np.ndarray, context_x: np.ndarray | None = None,
                   context_y: np.ndarray | None = None) -> np.ndarray:
        """E[ΔN(x) ΔN(y)ᵀ]/dt for two points (d,) (docs/mathematics.md, 'Common noise')."""
        raise NotImplementedError

    def one_point_rate(self, dim: int) -> float:
        """g with E[P_x ΔN(x) (P_x ΔN(x))ᵀ]/dt = g P_x (for the value noise it depends on a_μ: not defined)."""
        raise NotImplementedError

    def attrs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.parameters().items():
            out[f"noise_{self.kind}_{key}"] = "none" if value is None else value
        return out


class RotationNoise(NoiseModel):
    """ΔN(x) = sigma ΔΩ x with ΔΩ antisymmetric, d(d−1)/2 independent Brownian entries (rigid rotation)."""

    kind = "rotation"
    code = 1

    def __init__(self, sigma: float) -> None:
        self.sigma = checks.real("sigma", sigma)

    def parameters(self) -> dict[str, Any]:
        return {"sigma": self.sigma}

    def sample(self, rng: np.random.Generator, dim: int, dt: float, lmax: int | None) -> Increments:
        upper = np.triu(_brownian(rng, (dim, dim), dt), 1)
        return {"rotation": upper - upper.T}

    def field(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None) -> np.ndarray:
        return self.sigma * points @ increments["rotation"].T

    def linear_field(self, increments: Increments) -> tuple[np.ndarray | None, np.ndarray | None]:
        """M = sigma ΔΩ, b = 0: a rotation."""
        return self.sigma * increments["rotation"], None

    def divergence(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None,
                   jacobian: np.ndarray | None = None) -> np.ndarray:
        """0: DF = sigma ΔΩ is antisymmetric (tr(P ΔΩ P) = 0) and x·ΔΩx = 0 — rotations preserve area."""
        return np.zeros(points.shape[:-1])

    def covariance(self, x: np.ndarray, y: np.ndarray, context_x: np.ndarray | None = None,
                   context_y: np.ndarray | None = None) -> np.ndarray:
        return self.sigma**2 * ((x @ y) * np.eye(x.size) - np.outer(y, x))

    def one_point_rate(self, dim: int) -> float:
        return self.sigma**2


class BiasNoise(NoiseModel):
    """ΔN(x) = gamma ΔB: one Brownian d-vector (random biases in the residual stream)."""

    kind = "bias"
    code = 2

    def __init__(self, gamma: float) -> None:
        self.gamma = checks.real("gamma", gamma)

    def parameters(self) -> dict[str, Any]:
        return {"gamma": self.gamma}

    def sample(self, rng: np.random.Generator, dim: int, dt: float, lmax: int | None) -> Increments:
        return {"bias": _brownian(rng, dim, dt)}

    def field(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None) -> np.ndarray:
        return np.broadcast_to(self.gamma * increments["bias"], points.shape).copy()

    def linear_field(self, increments: Increments) -> tuple[np.ndarray | None, np.ndarray | None]:
        """M = 0, b = gamma ΔB: u = P_x b = ∇_S(b·x)."""
        return None, self.gamma * increments["bias"]

    def divergence(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None,
                   jacobian: np.ndarray | None = None) -> np.ndarray:
        """−(d − 1) gamma ΔB·x (a constant field: DF = 0)."""
        return -(points.shape[-1] - 1) * self.gamma * (points @ increments["bias"])

    def covariance(self, x: np.ndarray, y: np.ndarray, context_x: np.ndarray | None = None,
                   context_y: np.ndarray | None = None) -> np.ndarray:
        return self.gamma**2 * np.eye(x.size)

    def one_point_rate(self, dim: int) -> float:
        return self.gamma**2


class QuadraticFormNoise(NoiseModel):
    """ΔN(x) = alpha ΔS x, ΔS = (ΔB + ΔBᵀ)/√2 a symmetric Brownian matrix."""

    kind = "quadratic_form"
    code = 3

    def __init__(self, alpha: float) -> None:
        self.alpha = checks.real("alpha", alpha)

    def parameters(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def sample(self, rng: np.random.Generator, dim: int, dt: float, lmax: int | None) -> Increments:
        b = _brownian(rng, (dim, dim), dt)
        return {"quadratic_form": (b + b.T) / np.sqrt(2.0)}

    def field(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None) -> np.ndarray:
        return self.alpha * points @ increments["quadratic_form"]

    def linear_field(self, increments: Increments) -> tuple[np.ndarray | None, np.ndarray | None]:
        """M = alpha ΔS (symmetric), b = 0."""
        return self.alpha * increments["quadratic_form"], None

    def divergence(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None,
                   jacobian: np.ndarray | None = None) -> np.ndarray:
        """alpha (tr ΔS − d x·ΔS x): DF = alpha ΔS, tr(P ΔS P) = tr ΔS − x·ΔS x, x·F = alpha x·ΔS x."""
        ds = increments["quadratic_form"]
        return self.alpha * (np.trace(ds) - points.shape[-1] * np.einsum("...i,ij,...j->...", points, ds, points))

    def covariance(self, x: np.ndarray, y: np.ndarray, context_x: np.ndarray | None = None,
                   context_y: np.ndarray | None = None) -> np.ndarray:
        return self.alpha**2 * ((x @ y) * np.eye(x.size) + np.outer(y, x))

    def one_point_rate(self, dim: int) -> float:
        return self.alpha**2


class ValueNoise(NoiseModel):
    """ΔN(x; μ) = sigma ΔW a_μ(x): random value matrices; ``context`` is the attention output a_μ at the points."""

    kind = "value"
    code = 4
    needs_context = True

    def __init__(self, sigma: float) -> None:
        self.sigma = checks.real("sigma", sigma)

    def parameters(self) -> dict[str, Any]:
        return {"sigma": self.sigma}

    def sample(self, rng: np.random.Generator, dim: int, dt: float, lmax: int | None) -> Increments:
        return {"value": _brownian(rng, (dim, dim), dt)}

    def field(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None) -> np.ndarray:
        if context is None:
            raise ValueError("ValueNoise needs the attention output a_μ at the points (context=...)")
        return self.sigma * context @ increments["value"].T

    def divergence(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None,
                   jacobian: np.ndarray | None = None) -> np.ndarray:
        """sigma (tr(P ΔW J P) − (d − 1) x·ΔW a), J = Da_μ the Jacobian of the attention output at the points."""
        if context is None or jacobian is None:
            raise ValueError("ValueNoise's divergence needs the attention output a_μ (context=...) and its Jacobian "
                             "(jacobian=...) at the points")
        dw = increments["value"]
        m = np.einsum("ij,...jk->...ik", dw, jacobian)  # D(ΔW a) = ΔW J
        x = points
        trace = np.einsum("...ii->...", m) - np.einsum("...i,...ij,...j->...", x, m, x)
        return self.sigma * (trace - (x.shape[-1] - 1) * np.einsum("...i,ij,...j->...", x, dw, context))

    def drift_correction_points(self, points: np.ndarray, context: np.ndarray, jacobian: np.ndarray | None,
                                hessian: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """c_n = −(sigma²/4) ∇_S|a|² at points and its divergence −(sigma²/4) Δ_S|a|², with f = |a|² on R^d:
        ∇f = 2 Daᵀ a, D²f = 2 (Daᵀ Da + Σ_k a_k D²a_k), ∇_S f = P_x ∇f, Δ_S f = tr(P_x D²f P_x) − (d − 1) x·∇f."""
        if self.sigma == 0:
            return None
        if jacobian is None or hessian is None:
            raise ValueError("ValueNoise's drift correction needs the Jacobian (jacobian=...) and the second "
                             "derivatives (hessian=...) of the attention output at the points")
        x = points
        grad = 2.0 * np.einsum("nki,nk->ni", jacobian, context)
        hess = 2.0 * (np.einsum("nki,nkj->nij", jacobian, jacobian) + np.einsum("nk,nkij->nij", context, hessian))
        lap = (np.einsum("nii->n", hess) - np.einsum("ni,nij,nj->n", x, hess, x)
               - (x.shape[-1] - 1) * np.einsum("ni,ni->n", x, grad))
        tangent = grad - np.einsum("ni,ni->n", x, grad)[:, None] * x
        return -0.25 * self.sigma**2 * tangent, -0.25 * self.sigma**2 * lap

    def drift_correction(self, grid: Grid, context: np.ndarray | None) -> np.ndarray | None:
        """c_n = −(sigma²/4) ∇_S|a_μ|²: the frozen field sigma ΔW a_μ(x) misses the Itô term of the layer update
        because a depends on x (docs/mathematics.md, 'The stochastic density step'); 0 at beta = 0."""
        if self.sigma == 0:
            return None
        if context is None:
            raise ValueError("ValueNoise's drift correction needs the attention output a_μ on the grid (context=...)")
        return -0.25 * self.sigma**2 * grid.gradient(grid.analysis(np.sum(context**2, axis=-1)))

    def covariance(self, x: np.ndarray, y: np.ndarray, context_x: np.ndarray | None = None,
                   context_y: np.ndarray | None = None) -> np.ndarray:
        if context_x is None or context_y is None:
            raise ValueError("ValueNoise's covariance needs the attention output a_μ at both points "
                             "(context_x=..., context_y=...)")
        return self.sigma**2 * (context_x @ context_y) * np.eye(x.size)

    def one_point_rate(self, dim: int) -> float:
        raise ValueError("the one-point rate of ValueNoise is sigma² |a_μ(x)|²: it depends on the measure")


class MLPNoise(NoiseModel):
    """ΔN(x) = sigma W₂ φ(W₁ x)/sqrt(width): random MLP blocks.

    W₁ (width × d) has i.i.d. N(0, 1) entries, fresh every step; W₂ (d × width) has i.i.d. N(0, dt) entries.
    ``width=None`` is the infinite-width Gaussian field of covariance sigma² κ_φ(x·y) I, sampled spectrally up to
    the degree L of the path (dim 2 and 3 only): each component is Σ_{l ≤ L} s_l Σ_m ξ_lm Y_lm with
    s_l² = area · c_l / (number of real harmonics of degree l), c_l the Legendre (S²) or Fourier-cosine (S¹)
    coefficients of κ_φ, so that the covariance is Σ_{l ≤ L} c_l P_l(x·y) (truncated g = sigma² Σ c_l).

    Cost on a grid of N nodes: O(N · width · d) per step for finite width (two BLAS products, in blocks);
    d spectral syntheses per step for width=None.
    """

    kind = "mlp"
    code = 5

    def __init__(self, sigma: float, activation: str | Callable[[np.ndarray], np.ndarray] | Activation = "tanh",
                 width: int | None = None) -> None:
        self.sigma = checks.real("sigma", sigma)
        self.activation: Activation = get_activation(activation)
        self.width = None if width is None else checks.integer("width (None: infinite width)", width, 1)

    def parameters(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "activation": self.activation.name, "width": self.width}

    def __eq__(self, other: object) -> bool:
        return (super().__eq__(other) and isinstance(other, MLPNoise)
                and (self.activation.builtin or self.activation.phi is other.activation.phi))

    __hash__ = NoiseModel.__hash__

    def increment_keys(self) -> tuple[str, ...]:
        return ("mlp_coeff",) if self.width is None else ("mlp_w1", "mlp_w2")

    def sample(self, rng: np.random.Generator, dim: int, dt: float, lmax: int | None) -> Increments:
        if self.width is not None:
            return {"mlp_w1": rng.standard_normal((self.width, dim)),
                    "mlp_w2": _brownian(rng, (dim, self.width), dt)}
        return {"mlp_coeff": _brownian(rng, (dim, spectral_size(dim, lmax)), dt)}

    @staticmethod
    def combine(increments: list[Increments]) -> Increments:
        if "mlp_w1" in increments[0]:  # the k steps' features side by side: the same field
            return {"mlp_w1": np.concatenate([inc["mlp_w1"] for inc in increments], axis=0),
                    "mlp_w2": np.concatenate([inc["mlp_w2"] for inc in increments], axis=1)}
        return NoiseModel.combine(increments)

    def field(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None) -> np.ndarray:
        if "mlp_coeff" in increments:
            grid = spectral_grid(points.shape[-1], increments["mlp_coeff"])
            coeffs = self._coefficients(grid, increments["mlp_coeff"])
            flat = points.reshape(-1, points.shape[-1])
            out = np.stack([grid.evaluate(c, flat) for c in coeffs], axis=-1)
            return out.reshape(points.shape)
        w1, w2 = increments["mlp_w1"], increments["mlp_w2"]
        assert self.width is not None  # the increments mlp_w1, mlp_w2 are those of a finite width
        flat = points.reshape(-1, points.shape[-1])
        out = np.empty((flat.shape[0], w2.shape[0]))
        rows = max(1, MLP_BLOCK_BYTES // (8 * w1.shape[0]))
        scale = self.sigma / np.sqrt(self.width)
        for start in range(0, flat.shape[0], rows):
            hidden = self.activation.phi(flat[start:start + rows] @ w1.T)
            out[start:start + rows] = scale * (hidden @ w2.T)
        return out.reshape(points.shape)

    def divergence(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None,
                   jacobian: np.ndarray | None = None) -> np.ndarray:
        """Finite width: (sigma/sqrt(width)) Σ_k φ'(w₁ₖ·x) (w₁ₖ·w₂ₖ − (w₁ₖ·x)(w₂ₖ·x)) − (d − 1) x·F(x), from
        DF = (sigma/sqrt(width)) W₂ diag(φ'(W₁x)) W₁. Infinite width: the band-limited field (degree L) on the grid of
        degree L + 2, where P_x F and its divergence are exact, evaluated at the points."""
        return self.field_and_divergence(points, increments)[1]

    def field_and_divergence(self, points: np.ndarray, increments: Increments) -> tuple[np.ndarray, np.ndarray]:
        """The field and :meth:`divergence` together; at finite width they share the hidden layer φ(W₁x)."""
        dim = points.shape[-1]
        flat = points.reshape(-1, dim)
        if "mlp_coeff" in increments:
            xi = increments["mlp_coeff"]
            lmax = spectral_grid(dim, xi).degree_max
            fine = grid_from_attrs({"grid": "sphere", "grid_lmax": lmax + 2, "grid_dealias": 1} if dim == 3 else
                                   {"grid": "circle", "grid_n": lmax + 2, "grid_dealias": 1})
            values = self.field(fine.points(), increments)
            div = fine.divergence(fine.to_tangent(values))
            return self.field(points, increments), fine.evaluate(div, flat).reshape(points.shape[:-1])
        w1, w2 = increments["mlp_w1"], increments["mlp_w2"]
        assert self.width is not None  # the increments mlp_w1, mlp_w2 are those of a finite width
        field = np.empty(flat.shape)
        out = np.empty(flat.shape[0])
        rows = max(1, MLP_BLOCK_BYTES // (8 * w1.shape[0]))
        scale = self.sigma / np.sqrt(self.width)
        cross = np.einsum("kd,dk->k", w1, w2)  # w₁ₖ·w₂ₖ
        for start in range(0, flat.shape[0], rows):
            x = flat[start:start + rows]
            pre = x @ w1.T
            hidden = self.activation.phi(pre)
            if self.activation.builtin and self.activation.name == "tanh":
                slope = 1.0 - hidden * hidden  # tanh' from tanh: one transcendental pass instead of two
            else:
                slope = activation_derivative(self.activation, pre)
            trace = slope @ cross - np.sum(slope * pre * (x @ w2), axis=1)
            f = scale * (hidden @ w2.T)
            field[start:start + rows] = f
            out[start:start + rows] = scale * trace - (dim - 1) * np.einsum("nd,nd->n", x, f)
        return field.reshape(points.shape), out.reshape(points.shape[:-1])

    def grid_field(self, grid: Grid, increments: Increments, context: np.ndarray | None = None) -> np.ndarray:
        if "mlp_coeff" in increments and spectral_size(grid.dim, grid.degree_max) == increments["mlp_coeff"].shape[1]:
            coeffs = self._coefficients(grid, increments["mlp_coeff"])
            return np.stack([grid.synthesis(c) for c in coeffs], axis=-1)
        return super().grid_field(grid, increments, context)

    def spectral_weights(self, dim: int, lmax: int) -> np.ndarray:
        """c_l: Legendre coefficients a_l of κ_φ on S² (dim 3), Fourier-cosine b_n on S¹ (dim 2), l ≤ lmax."""
        if dim == 3:
            return legendre_coefficients(self.activation, lmax)
        if dim == 2:
            return cosine_coefficients(self.activation, lmax)
        raise ValueError(f"MLPNoise(width=None) exists for dim 2 and 3 only, got dim = {dim}")

    def _coefficients(self, grid: Grid, xi: np.ndarray) -> np.ndarray:
        """Complex coefficients (d, n_coeff) of the d field components from the real normals ξ (d, n_real)."""
        c = self.spectral_weights(grid.dim, grid.degree_max)
        n_real_per_degree = np.bincount(grid.degrees, weights=grid.order_weight, minlength=grid.degree_max + 1)
        scale = self.sigma * grid.per_degree(np.sqrt(grid.area * c / n_real_per_degree))
        positive = grid.order_weight > 1
        out = xi[:, : grid.n_coeff].astype(complex)
        out[:, positive] = (out[:, positive] + 1j * xi[:, grid.n_coeff:]) / np.sqrt(2.0)
        return scale * out

    def covariance(self, x: np.ndarray, y: np.ndarray, context_x: np.ndarray | None = None,
                   context_y: np.ndarray | None = None) -> np.ndarray:
        return self.sigma**2 * float(dual_kernel(self.activation, np.clip(x @ y, -1.0, 1.0))) * np.eye(x.size)

    def one_point_rate(self, dim: int, lmax: int | None = None) -> float:
        """sigma² κ_φ(1); for width=None and a truncation degree, the truncated sigma² Σ_{l ≤ L} c_l."""
        if self.width is None and lmax is not None:
            return self.sigma**2 * float(np.sum(self.spectral_weights(dim, lmax)))
        return self.sigma**2 * float(dual_kernel(self.activation, 1.0))


class IdiosyncraticNoise(NoiseModel):
    """Independent Brownian motion of each token with generator nu Δ_S (particles: x ← normalize(x + sqrt(2nu) ΔB_i)).

    In the density equation it is the exact spectral factor exp(nu Δ_S dt).
    """

    kind = "idiosyncratic"
    code = 6
    common = False

    def __init__(self, nu: float) -> None:
        self.nu = checks.real("nu", nu)

    def parameters(self) -> dict[str, Any]:
        return {"nu": self.nu}

    def increment_keys(self) -> tuple[str, ...]:
        return ()

    def sample(self, rng: np.random.Generator, dim: int, dt: float, lmax: int | None) -> Increments:
        return {}

    def field(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None) -> np.ndarray:
        return np.zeros(points.shape)

    def divergence(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None,
                   jacobian: np.ndarray | None = None) -> np.ndarray:
        """0: no common field (a diffusion, not a transport)."""
        return np.zeros(points.shape[:-1])

    def token_field(self, rng: np.random.Generator, n: int, dim: int, dt: float) -> np.ndarray:
        """sqrt(2 nu) ΔB_i for n tokens."""
        return np.sqrt(2.0 * self.nu) * _brownian(rng, (n, dim), dt)

    def covariance(self, x: np.ndarray, y: np.ndarray, context_x: np.ndarray | None = None,
                   context_y: np.ndarray | None = None) -> np.ndarray:
        return 2.0 * self.nu * np.eye(x.size) if np.array_equal(x, y) else np.zeros((x.size, x.size))

    def one_point_rate(self, dim: int) -> float:
        return 2.0 * self.nu


def spectral_size(dim: int, lmax: int | None) -> int:
    """Number of real Gaussian coefficients of a band-limited field of degree lmax: (L+1)² on S², 2L+1 on S¹."""
    if dim not in (2, 3):
        raise ValueError(f"MLPNoise(width=None) exists for dim 2 and 3 only, got dim = {dim}")
    if lmax is None:
        raise ValueError("lmax (the truncation degree of the infinite-width MLP field) is required for "
                         "MLPNoise(width=None)")
    return (lmax + 1) ** 2 if dim == 3 else 2 * lmax + 1


def spectral_grid(dim: int, xi: np.ndarray) -> Grid:
    """The grid whose degree matches the spectral increments ξ (d, n_real) of an infinite-width field."""
    n = xi.shape[-1]
    if dim == 3:
        lmax = int(round(np.sqrt(n))) - 1
        return grid_from_attrs({"grid": "sphere", "grid_lmax": lmax, "grid_dealias": 1})
    return grid_from_attrs({"grid": "circle", "grid_n": (n - 1) // 2, "grid_dealias": 1})


class NoiseSum(NoiseModel):
    """A sum of noise models of distinct kinds; the field is the sum of the fields."""

    def __init__(self, *models: NoiseModel) -> None:
        self.models: dict[str, NoiseModel] = {}
        for m in models:
            self._add(m)

    def _add(self, model: NoiseModel) -> None:
        parts = model.models.values() if isinstance(model, NoiseSum) else [model]
        for m in parts:
            if not isinstance(m, NoiseModel):
                raise ValueError(f"noise must be a sum of noise models, got {type(m).__name__}")
            if m.kind in self.models:
                raise ValueError(f"noise: two {type(m).__name__} models in one sum; combine their amplitudes instead")
            self.models[m.kind] = m
        self.models = dict(sorted(self.models.items()))

    def __add__(self, other: NoiseModel) -> NoiseSum:
        out = NoiseSum(*self.models.values())
        out._add(other)
        return out

    def __eq__(self, other: object) -> bool:
        other = as_noise(other) if isinstance(other, NoiseModel) else other
        return isinstance(other, NoiseSum) and self.models == other.models

    __hash__ = NoiseModel.__hash__

    def __iter__(self) -> Iterator[NoiseModel]:
        return iter(self.models.values())

    def __repr__(self) -> str:
        return " + ".join(repr(m) for m in self.models.values()) or "NoiseSum()"

    def parameters(self) -> dict[str, Any]:
        return {kind: m.parameters() for kind, m in self.models.items()}

    @property
    def needs_context(self) -> bool:  # type: ignore[override]  # a sum needs it when one of its models does
        return any(m.needs_context for m in self)

    @property
    def common_models(self) -> list[NoiseModel]:
        return [m for m in self if m.common]

    @property
    def nu(self) -> float:
        """Diffusivity of the idiosyncratic part (0 without it)."""
        m = self.models.get("idiosyncratic")
        return m.nu if isinstance(m, IdiosyncraticNoise) else 0.0

    @property
    def random(self) -> bool:
        """True when a run with this noise needs random numbers."""
        return bool(self.models)

    def field(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros(points.shape)
        for m in self.common_models:
            out += m.field(points, increments, context)
        return out

    def grid_field(self, grid: Grid, increments: Increments, context: np.ndarray | None = None) -> np.ndarray:
        """The sum of the models' fields, accumulated in the first one's (a fresh array from every model)."""
        models = self.common_models
        if not models:
            return np.zeros((*grid.shape, grid.dim))
        out = models[0].grid_field(grid, increments, context)
        for m in models[1:]:
            out += m.grid_field(grid, increments, context)
        return out

    def linear_field(self, increments: Increments) -> tuple[np.ndarray | None, np.ndarray | None] | None:
        """The sums of the common models' M and b; None when one of them is not linear in x."""
        parts = [m.linear_field(increments) for m in self.common_models]
        if any(p is None for p in parts):
            return None
        matrices = [p[0] for p in parts if p is not None and p[0] is not None]
        vectors = [p[1] for p in parts if p is not None and p[1] is not None]
        return (sum(matrices[1:], matrices[0]) if matrices else None,
                sum(vectors[1:], vectors[0]) if vectors else None)

    def divergence(self, points: np.ndarray, increments: Increments, context: np.ndarray | None = None,
                   jacobian: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros(points.shape[:-1])
        for m in self.common_models:
            out += m.divergence(points, increments, context, jacobian)
        return out

    def field_and_divergence(self, points: np.ndarray, increments: Increments) -> tuple[np.ndarray, np.ndarray]:
        field, div = np.zeros(points.shape), np.zeros(points.shape[:-1])
        for m in self.common_models:
            f, d = m.field_and_divergence(points, increments)
            field += f
            div += d
        return field, div

    def drift_correction_points(self, points: np.ndarray, context: np.ndarray, jacobian: np.ndarray | None,
                                hessian: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        parts = [c for m in self if (c := m.drift_correction_points(points, context, jacobian, hessian)) is not None]
        if not parts:
            return None
        return sum((p[0] for p in parts[1:]), parts[0][0]), sum((p[1] for p in parts[1:]), parts[0][1])

    def drift_correction(self, grid: Grid, context: np.ndarray | None) -> np.ndarray | None:
        corrections = [c for m in self if (c := m.drift_correction(grid, context)) is not None]
        return sum(corrections[1:], corrections[0]) if corrections else None

    def covariance(self, x: np.ndarray, y: np.ndarray, context_x: np.ndarray | None = None,
                   context_y: np.ndarray | None = None) -> np.ndarray:
        return sum((m.covariance(x, y, context_x, context_y) for m in self), np.zeros((x.size, x.size)))

    def one_point_rate(self, dim: int) -> float:
        return sum(m.one_point_rate(dim) for m in self)

    def attrs(self) -> dict[str, Any]:
        out = {"noise": repr(self) if self.models else "none"}
        for m in self:
            out.update(m.attrs())
        return out


def as_noise(noise: NoiseModel | None) -> NoiseSum | None:
    """None, a model or a sum → None or a NoiseSum (an empty sum is None: a deterministic run)."""
    if noise is None:
        return None
    if isinstance(noise, NoiseSum):
        return noise if noise.models else None
    if isinstance(noise, NoiseModel):
        return NoiseSum(noise)
    raise ValueError(f"noise must be None or a noise model (e.g. st.BiasNoise(0.3)), got {type(noise).__name__}")


class _LazyIncrements(Mapping[str, np.ndarray]):
    """``path.dW``: key → array over all steps, produced only when asked for."""

    def __init__(self, path: NoisePath) -> None:
        self._path = path

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._keys():
            raise KeyError(f"{key!r}: this path has increments {sorted(self._keys())}")
        return np.stack([self._path.increments(s)[key] for s in range(self._path.n_steps)])

    def _keys(self) -> list[str]:
        return list(self._path.increments(0)) if self._path.n_steps else []

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())


class NoisePath:
    """The randomness of one realization on S^{dim−1}: increments of every step, produced lazily.

    Step s of a model is drawn from ``numpy.random.SeedSequence(seed, spawn_key=(code, s))`` (the model's ``code``),
    so a path is reproducible from (noise, dim, seed, dt, n_steps) alone and a longer path extends a shorter one.
    ``lmax`` is the truncation degree of ``MLPNoise(width=None)`` (required for it, ignored otherwise).

    Parameters
    ----------
    noise : a noise model or a sum of models.
    dim : ambient dimension d ≥ 2.
    dt : step > 0.
    n_steps : number of steps ≥ 1.
    seed : non-negative integer.
    lmax : truncation degree of the infinite-width MLP field (the density grid's degree).
    """

    def __init__(self, noise: NoiseModel, dim: int, dt: float, n_steps: int, seed: int, lmax: int | None = None,
                 _factor: int = 1) -> None:
        summed = as_noise(noise)
        if summed is None:
            raise ValueError("noise: a NoisePath needs at least one noise model")
        self.noise: NoiseSum = summed
        dim, dt = checks.integer("dim", dim, 2), checks.real("dt", dt, strict=True)
        n_steps, seed = checks.integer("n_steps", n_steps, 1), checks.integer("seed", seed, 0)
        mlp = self.noise.models.get("mlp")
        if isinstance(mlp, MLPNoise) and mlp.width is None:
            spectral_size(dim, lmax)  # dim 2 or 3 and lmax given
            checks.integer("lmax", lmax, 1)
        self.dim, self.dt, self.n_steps, self.seed = dim, dt, n_steps, seed
        self.lmax = None if lmax is None else int(lmax)
        self.factor = int(_factor)  # steps of the base path per step of this one
        self.dW = _LazyIncrements(self)

    def __repr__(self) -> str:
        return (f"NoisePath({self.noise!r}, dim={self.dim}, dt={self.dt}, n_steps={self.n_steps}, seed={self.seed}"
                f"{'' if self.factor == 1 else f', coarsened ×{self.factor}'})")

    def _base_increments(self, step: int) -> Increments:
        base_dt = self.dt / self.factor
        out: Increments = {}
        for model in self.noise.common_models:
            seq = np.random.SeedSequence(self.seed, spawn_key=(model.code, step))
            out.update(model.sample(np.random.default_rng(seq), self.dim, base_dt, self.lmax))
        return out

    def increments(self, step: int) -> Increments:
        """Increments of step ``step`` (0-based) of this path, keyed as in ``dW``."""
        if not 0 <= step < self.n_steps:
            raise ValueError(f"step must be in [0, {self.n_steps}), got {step}")
        if self.factor == 1:
            return self._base_increments(step)
        fine = [self._base_increments(step * self.factor + j) for j in range(self.factor)]
        out: Increments = {}
        for model in self.noise.common_models:
            keys = model.increment_keys()
            out.update(model.combine([{k: inc[k] for k in keys} for inc in fine]))
        return out

    def token_increments(self, step: int, n_tokens: int) -> np.ndarray:
        """The idiosyncratic displacements sqrt(2 nu) ΔB_i of ``n_tokens`` tokens at this step (zeros without it)."""
        model = self.noise.models.get("idiosyncratic")
        if not isinstance(model, IdiosyncraticNoise):
            return np.zeros((n_tokens, self.dim))
        base_dt = self.dt / self.factor
        out = np.zeros((n_tokens, self.dim))
        for j in range(self.factor):
            seq = np.random.SeedSequence(self.seed, spawn_key=(model.code, step * self.factor + j))
            out += model.token_field(np.random.default_rng(seq), n_tokens, self.dim, base_dt)
        return out

    def coarsen(self, k: int) -> NoisePath:
        """The same realization with step k·dt (k must divide n_steps): increments merged over k steps."""
        if not checks.is_integer(k) or k < 1 or self.n_steps % k:
            raise ValueError(f"k must be a positive integer dividing n_steps = {self.n_steps}, got {k!r}")
        return NoisePath(self.noise, self.dim, self.dt * k, self.n_steps // k, self.seed, self.lmax,
                         _factor=self.factor * int(k))

    def check(self, noise: NoiseModel | None, dim: int, dt: float, n_steps: int, lmax: int | None = None) -> None:
        """ValueError naming what differs when this path cannot drive a run with these settings."""
        noise = as_noise(noise)
        if noise is None or noise != self.noise:
            raise ValueError(f"path: its noise {self.noise!r} differs from the run's noise {noise!r}")
        if dim != self.dim:
            raise ValueError(f"path: its dim = {self.dim} differs from the run's dim = {dim}")
        if abs(dt - self.dt) > 1e-12 * dt:
            raise ValueError(f"path: its dt = {self.dt} differs from the run's dt = {dt}")
        if n_steps > self.n_steps:
            raise ValueError(f"path: it has n_steps = {self.n_steps}, fewer than the {n_steps} steps of the run")
        mlp = noise.models.get("mlp")
        if isinstance(mlp, MLPNoise) and mlp.width is None and lmax is not None and lmax != self.lmax:
            raise ValueError(f"path: its lmax = {self.lmax} (infinite-width MLP truncation) differs from the "
                             f"grid's degree {lmax}")

    def attrs(self) -> dict[str, Any]:
        return {"seed": self.seed, "path_dt": self.dt, "path_n_steps": self.n_steps,
                "path_coarsening": self.factor, "path_lmax": -1 if self.lmax is None else self.lmax}


class AntitheticPath(NoisePath):
    """The mirrored path −ΔN of a NoisePath: equally likely, with the opposite first-order effect.

    Every Brownian increment is negated, except the hidden weights W₁ of the finite-width MLP field (fresh N(0, 1)
    draws, not Brownian): W₂ → −W₂ alone gives −ΔN, while negating both would give the same field for odd φ.
    """

    def increments(self, step: int) -> Increments:
        return {key: value if key == "mlp_w1" else -value for key, value in super().increments(step).items()}


def resolve_path(noise: NoiseSum | None, path: NoisePath | None, seed: int | None, dim: int, dt: float,
                 n_steps: int, lmax: int | None, tokens: bool = False) -> NoisePath | None:
    """The path that drives a run: the given one (checked against the run) or a new one from ``seed``.

    ``tokens`` says whether idiosyncratic noise needs random numbers (particles) or not (the density, where it is
    the deterministic term nu Δ_S ρ). Returns None when the run needs no randomness.
    """
    seed = checks.seed(seed)
    if noise is None:
        if path is not None:
            raise ValueError("path is given but the run has no noise (noise=None)")
        return None
    if path is not None:
        if not isinstance(path, NoisePath):
            raise ValueError(f"path must be a NoisePath, got {type(path).__name__}")
        path.check(noise, dim, dt, n_steps, lmax)
        if seed is not None and seed != path.seed:
            raise ValueError(f"seed = {seed} differs from the path's seed = {path.seed}; give one of them")
        return path
    if not noise.common_models and not (tokens and "idiosyncratic" in noise.models):
        return None
    if seed is None:
        raise ValueError("seed: a run with noise needs seed= (an integer) or path= (a NoisePath)")
    return NoisePath(noise, dim, dt, max(n_steps, 1), seed, lmax)
