"""Tokens on S^{d−1} driven by attention and the common noise: the layer update and its flow.

Two steppers, both using the tangential noise field u_n(x) = P_x ΔN_n(x) of the same ``NoisePath`` as the density:

* ``"layer"`` (default): the layer update itself, x ← normalize(x + dt X[μ](x) + u_n(x) + P_x ξ_i) with ξ_i the
  idiosyncratic displacement of token i. Its limit is the Itô SDE of docs/mathematics.md, 'Common noise'.
* ``"flow"``: RK4 on the frozen-increment ODE ẋ = P_x(X[μ](x) dt + u_n(x) + ξ_i) over s ∈ [0, 1], then normalize —
  the same map as the density step (Wong–Zakai), for noise fields that do not depend on μ.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import xarray as xr

from spde_tokens import checks
from spde_tokens import diagnostics as diag
from spde_tokens.drift import (
    attention_output_harmonic,
    attention_output_points,
    harmonic_degree,
    tangent_projection,
)
from spde_tokens.model import AttentionModel
from spde_tokens.noise import NoiseModel, NoisePath, NoiseSum, as_noise, resolve_path
from spde_tokens.records import Recorder, TimeGrid, fingerprint_hash
from spde_tokens.runner import State, run
from spde_tokens.steppers import SCHEMES, Scheme, get_scheme

#: "layer" (the layer update) or "flow" (the frozen-increment ODE by RK4); "flow" also takes any registered scheme
#: of :mod:`spde_tokens.steppers` by name
PARTICLE_SCHEMES = ("layer", "flow")


def check_tokens(x0: npt.ArrayLike, dim: int) -> np.ndarray:
    """Tokens must be an (N, dim) array of finite unit vectors (|x| = 1 within 1e-8); they are refused otherwise."""
    x = np.array(x0, dtype=float)
    if x.ndim != 2 or x.shape[1] != dim or x.shape[0] < 1:
        raise ValueError(f"x0 must have shape (N, {dim}) with N ≥ 1 for model.dim = {dim}, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("x0 must be finite (no NaN or inf)")
    err = np.max(np.abs(np.linalg.norm(x, axis=1) - 1.0))
    if err > 1e-8:
        raise ValueError(f"x0 must be unit vectors: |x| deviates from 1 by {err:.2e} > 1e-8 (normalize them first)")
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class TokenDynamics:
    """The particle system: drift X[μ] of the empirical measure and the common noise at the tokens."""

    def __init__(self, model: AttentionModel, noise: NoiseSum | None, block_bytes: int = 64 * 2**20,
                 attention: str = "direct", harmonic_degree: int | None = None):
        self.model, self.noise, self.block_bytes = model, noise, block_bytes
        self._drift_off = model.value_factor == 0.0
        self.method, self.degree = attention, harmonic_degree

    def attention(self, x: np.ndarray) -> np.ndarray:
        """a_μ at the tokens: direct max-shifted sums in row blocks (O(N²)) or Funk–Hecke harmonics (O(N L²))."""
        if self.method == "harmonic":
            return attention_output_harmonic(self.model, x, self.degree)
        return attention_output_points(self.model, x, x, block_bytes=self.block_bytes)

    def drift(self, x: np.ndarray, a: np.ndarray | None = None) -> np.ndarray:
        """X[μ](x_i) = P_{x_i} V a_μ(x_i), μ the empirical measure of the tokens."""
        if self._drift_off:
            return np.zeros_like(x)
        a = self.attention(x) if a is None else a
        return tangent_projection(x, a @ self.model.V.T)

    def noise_field(self, x: np.ndarray, increments: dict | None, context: np.ndarray | None = None) -> np.ndarray:
        """u_n(x) = P_x ΔN_n(x) of the common noise (zero without it)."""
        if increments is None or self.noise is None or not self.noise.common_models:
            return np.zeros_like(x)
        return tangent_projection(x, self.noise.field(x, increments, context))

    def layer_step(self, x: np.ndarray, dt: float, increments: dict | None, xi: np.ndarray) -> np.ndarray:
        """x ← normalize(x + dt X[μ](x) + P_x ΔN(x; μ) + P_x ξ)."""
        need_a = not self._drift_off or (self.noise is not None and self.noise.needs_context)
        a = self.attention(x) if need_a else None
        move = dt * self.drift(x, a) + self.noise_field(x, increments, a) + tangent_projection(x, xi)
        return normalize(x + move)

    def flow_step(self, x: np.ndarray, dt: float, increments: dict | None, xi: np.ndarray,
                  scheme: Scheme) -> np.ndarray:
        """The frozen-increment step of the density, for the tokens: ``scheme`` on ẋ = dt X[μ](x) over s ∈ [0, 1]
        without noise; with noise split like the density step (Strang: docs/mathematics.md, 'The stochastic density
        step'), a half step of the drift, ẋ = P_x(ΔN_n(x) + ξ) over s ∈ [0, 1], a half step of the drift; each stage is
        evaluated at its projection on the sphere and each part ends normalized."""

        def drift(h: float) -> Callable[[np.ndarray], np.ndarray]:
            def f(y: np.ndarray) -> np.ndarray:
                # stages are evaluated at their projection on the sphere: off the sphere P_y is not a projection and
                # the field would relax |y| at a rate 2 y·a unrelated to the motion on the sphere
                return h * self.drift(normalize(y))

            return f

        def noise(y: np.ndarray) -> np.ndarray:
            y = normalize(y)
            return tangent_projection(y, (self.noise_field(y, increments) if increments else 0) + xi)

        if not increments and not np.any(xi):
            return normalize(scheme.step(drift(dt), x, 1.0))
        x = normalize(scheme.step(drift(0.5 * dt), x, 1.0))
        x = normalize(scheme.step(noise, x, 1.0))
        return normalize(scheme.step(drift(0.5 * dt), x, 1.0))


def harmonic_degree_of(model: AttentionModel, degree: int | None) -> int:
    return harmonic_degree(model) if degree is None else int(degree)


class TokenEngine:
    """The tokens as an engine of the run driver (:func:`spde_tokens.runner.run`); the state is
    ``{"positions": x}`` and each step takes the common increments and the tokens' own increments from the path."""

    name = "particles"

    def __init__(self, dynamics: TokenDynamics, scheme: str, dt: float, path: NoisePath | None, n_tokens: int):
        self.dynamics, self.dt, self.path = dynamics, dt, path
        self.scheme = None if scheme == "layer" else get_scheme("rk4" if scheme == "flow" else scheme)
        self.label = f"{n_tokens} tokens"
        self.beta = dynamics.model.beta

    def step(self, state: State, step: int) -> State:
        x, path = state["positions"], self.path
        increments = path.increments(step - 1) if path is not None and path.noise.common_models else None
        xi = path.token_increments(step - 1, x.shape[0]) if path is not None else np.zeros_like(x)
        if self.scheme is None:
            return {"positions": self.dynamics.layer_step(x, self.dt, increments, xi)}
        return {"positions": self.dynamics.flow_step(x, self.dt, increments, xi, self.scheme)}

    def check(self, state: State) -> str | None:
        return None if np.all(np.isfinite(state["positions"])) else "tokens became non-finite"

    def record(self, state: State) -> dict:
        x = state["positions"]
        m = diag.mean_vector_tokens(x)
        out = {"positions": x, "dispersion": float(1.0 - m @ m), "mean_vector": m}
        if np.isfinite(self.beta):  # E_beta grows like e^beta/beta: the zero-temperature model records none
            out["energy"] = diag.energy_tokens(x, self.beta)
        return out

    def after_record(self, t: float, values: dict) -> None:
        pass

    def last_good(self, state: State) -> np.ndarray:
        return state["positions"]

    def final_attrs(self, state: State) -> dict:
        return {}


def _variables(energy: bool = True) -> dict:
    """The recorded variables; ``energy`` False for the zero-temperature model (E_beta diverges as beta → ∞)."""
    return {
        "positions": (("token", "component"), {"long_name": "token positions on the unit sphere", "units": "1"}),
        **({"energy": ((), {"long_name": "interaction energy E_beta of the empirical measure", "units": "1"})}
           if energy else {}),
        "dispersion": ((), {"long_name": "dispersion 1 - |m|^2 of the empirical measure", "units": "1"}),
        "mean_vector": (("component",), {"long_name": "mean token m = (1/N) sum x_i", "units": "1"}),
    }


def simulate_particles(model: AttentionModel, noise: NoiseModel | None, x0: npt.ArrayLike, t_end: float, dt: float,
                       *, path: NoisePath | None = None, seed: int | None = None, save_every: float | None = None,
                       scheme: str = "layer", lmax: int | None = None, attention: str = "auto",
                       harmonic_degree: int | None = None, progress: bool | None = None, block_bytes: int = 64 * 2**20,
                       checkpoint: str | os.PathLike[str] | None = None, checkpoint_every: int = 1) -> xr.Dataset:
    """Simulate N tokens on S^{d−1} under attention and common noise.

    Parameters
    ----------
    model : AttentionModel (any dim ≥ 2, any Q, K, V, softmax, unnormalized or hardmax: the zero-temperature velocity
        X_∞(x) = P_x V Aᵀx/|Aᵀx| of docs/mathematics.md, 'The zero-temperature equation', which moves every token on
        its own; a ValueError if a token meets the kernel of Aᵀ).
    noise : None, a noise model or a sum of models; the same objects as for the density.
    x0 : (N, dim) unit vectors (refused, not normalized, when |x| deviates from 1 by more than 1e-8).
    t_end, dt : final time ≥ 0 and step > 0, t_end/dt a whole number.
    path, seed : the NoisePath of the realization, or the seed to build it from.
    lmax : truncation degree of ``MLPNoise(width=None)`` when the path is built here (the density grid's degree).
    save_every : time between records, a whole number of steps (default: about 100 records).
    scheme : ``"layer"`` (the layer update, default) or ``"flow"`` (RK4 on the frozen-increment ODE, the map of the
        density step; noise fields that depend on μ, i.e. ValueNoise, are refused); the name of any registered
        scheme of :mod:`spde_tokens.steppers` (``"rk3"``, ``"heun"``, …) is the flow with that scheme.
    attention : ``"direct"`` (max-shifted sums over all pairs in row blocks of ``block_bytes``: O(N²) time, bounded
        memory), ``"harmonic"`` (Funk–Hecke expansion to ``harmonic_degree``, O(N L²); needs Qᵀ K = a I and dim 2
        or 3; agrees with the direct sums to ~1e-13 at the default degree) or ``"auto"`` (harmonic when available
        and (L+1)² < N/4).
    progress : tqdm progress bar (default: on when standard error is a terminal).
    block_bytes : memory of one block of the N × N attention logits.
    checkpoint : a NetCDF file rewritten atomically with the positions and the step, the records beside it
        (``checkpoint + ".records/"``); an existing checkpoint of the same run is resumed, bit-identical to an
        uninterrupted run; a later t_end continues a finished run.
    checkpoint_every : records between checkpoints (default 1: at every record).

    Returns
    -------
    xarray.Dataset with ``positions`` (time, token, component), ``energy`` (not for hardmax), ``dispersion``,
    ``mean_vector``.
    """
    if not isinstance(model, AttentionModel):
        raise ValueError(f"model must be an AttentionModel, got {type(model).__name__}")
    x = check_tokens(x0, model.dim)
    lmax = None if lmax is None else checks.integer("lmax", lmax, 1)
    if scheme not in PARTICLE_SCHEMES and scheme not in SCHEMES:
        raise ValueError(f"scheme must be 'layer', 'flow' or a flow scheme of {sorted(SCHEMES)}, got {scheme!r}")
    times = TimeGrid.build(t_end, dt, save_every)
    noise = as_noise(noise)
    if scheme != "layer" and noise is not None and noise.needs_context:
        raise ValueError("scheme='flow' needs a noise field that does not depend on μ; use scheme='layer' with "
                         "ValueNoise")
    path = resolve_path(noise, path, seed, model.dim, times.dt, times.n_steps, lmax, tokens=True)
    if attention not in ("auto", "direct", "harmonic"):
        raise ValueError(f"attention must be 'auto', 'direct' or 'harmonic', got {attention!r}")
    harmonic_ok = model.zonal_factor is not None and model.dim in (2, 3) and 0 < model.beta < np.inf
    if attention == "harmonic" and not harmonic_ok:
        raise ValueError("attention='harmonic' needs Qᵀ K = a I, a finite beta > 0 (not normalization='hardmax') and "
                         "dim 2 or 3")
    if attention == "auto":
        small = harmonic_ok and (harmonic_degree_of(model, harmonic_degree) + 1) ** 2 < x.shape[0] / 4
        attention = "harmonic" if small else "direct"
    dynamics = TokenDynamics(model, noise, block_bytes, attention, harmonic_degree)
    engine = TokenEngine(dynamics, scheme, times.dt, path, x.shape[0])
    attrs = {"title": "spde_tokens particle run", "engine": "particles", "scheme": scheme, "attention": attention,
             "n_tokens": x.shape[0], "seed": "none" if seed is None else seed,
             **(noise.attrs() if noise is not None else {"noise": "none"}),
             **(path.attrs() if path is not None else {}), **times.attrs()}
    coords = {"token": xr.Variable("token", np.arange(x.shape[0]), {"long_name": "token index", "units": "1"}),
              "component": xr.Variable("component", np.arange(model.dim), {"long_name": "Cartesian component",
                                                                            "units": "1"})}
    fingerprint = {"model": repr(model), "model_matrices": fingerprint_hash(*model.matrices().values()),
                   "noise": repr(noise), "seed": -1 if path is None else path.seed,
                   "path_coarsening": 1 if path is None else path.factor, "scheme": scheme, "attention": attention,
                   "x0": fingerprint_hash(x)}
    return run(engine, {"positions": x}, times, Recorder(_variables(not model.hardmax), coords, attrs, model),
               fingerprint=fingerprint, checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress)
