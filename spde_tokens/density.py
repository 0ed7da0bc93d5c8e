"""The density equation on S^1 and S^2 and its solver ``solve_density``.

The equations are those of docs/mathematics.md, 'The stochastic density step'.

The state is kept in spectral space (coefficients of ρ); the grid is visited only to form the flux:

    dρ = [−div_S(ρ X[ρ]) + ½ Δ_S(g ρ) + nu Δ_S ρ] dt − div_S(ρ dN),     X[ρ](x) = P_x V a_ρ(x).

Each step freezes the noise increment and integrates the random ODE of :class:`DensityEquation` (Wong–Zakai) with
a registered Runge–Kutta scheme (:mod:`spde_tokens.steppers`, RK4 by default), in sub-steps chosen from the
transport CFL number. Mass is conserved exactly: the divergence has no degree-0 component.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import numpy as np
import xarray as xr

from spde_tokens import diagnostics as diag
from spde_tokens.drift import GridAttention
from spde_tokens.grids import Grid, ResolutionWarning, ZonalGrid, grid_from_attrs
from spde_tokens.grids.base import RUN_BYTES_PER_NODE, check_memory
from spde_tokens.grids.multiply import SpectralTransport
from spde_tokens.initial import check_density, grid_of
from spde_tokens.lagrangian import (
    HANDOVER_TAIL,
    NodeFlow,
    node_rule,
    nodes_from_coefficients,
    smoothing_time,
)
from spde_tokens.model import AttentionModel
from spde_tokens.noise import IdiosyncraticNoise, NoiseModel, NoisePath, NoiseSum, as_noise, resolve_path
from spde_tokens.records import Recorder, TimeGrid, fingerprint_hash, record_coordinates
from spde_tokens.runner import State, run
from spde_tokens.steppers import Scheme, get_scheme

#: spectral_tail above which a run is reported as under-resolved
TAIL_WARNING = 1e-10
#: a run stops as a blow-up when a coefficient shows ∫|ρ| dA above this multiple of the mass: its negative part
#: then holds (BLOW_UP − 1)/2 = 4.5 times the mass, which no under-resolved density passes through on its way back
BLOW_UP = 10.0


class DensityEquation:
    """The density equation in spectral space, one frozen noise increment per step.

    See docs/mathematics.md, 'The stochastic density step'.

    Within a step of length dt the noise increment is frozen and the step integrates

        ∂_t ρ = −div_S(ρ (X[ρ] + u_n/dt + c_n)) + nu Δ_S ρ − hyperviscosity · (Δ_S/Δ_max)^4 ρ

    with u_n = P_x ΔN_n(x) the tangential noise field of step n and, for ValueNoise only, the drift correction
    c_n = −(sigma²/4) ∇_S |a_{ρ_n}|² (the Itô limit of the layer update; it vanishes at beta = 0). The linear terms
    are diagonal in spectral space and integrated exactly (Lawson).

    Parameters
    ----------
    model, grid : the attention model (``model.dim`` must match the grid) and the grid.
    attention : ``"auto"``, ``"zonal"`` or ``"quadrature"`` (see :class:`spde_tokens.drift.GridAttention`).
    memory_budget : bytes allowed for the quadrature kernel (default 25% of available memory).
    noise : None, a noise model or a sum of models.
    hyperviscosity : damping rate of the top degree (0: off, the default).
    """

    def __init__(self, model: AttentionModel, grid: Grid, attention: str = "auto",
                 memory_budget: float | None = None, noise: NoiseModel | None = None,
                 hyperviscosity: float = 0.0) -> None:
        if model.hardmax:
            raise ValueError("normalization='hardmax' (the zero-temperature velocity X_∞ = P_x V Aᵀx/|Aᵀx|) is "
                             "offered for tokens only: simulate them with spde_tokens.simulate_particles; the density "
                             "solver needs a finite beta (softmax or unnormalized)")
        self.model, self.grid = model, grid
        self.noise = as_noise(noise)
        self.attention = GridAttention(model, grid, attention, memory_budget)
        self._drift_off = model.value_factor == 0.0
        lap = grid.laplacian_eigenvalues
        linear = np.zeros(grid.n_coeff)
        if self.noise is not None and self.noise.nu > 0:
            linear += self.noise.nu * lap
        if hyperviscosity > 0:
            linear -= hyperviscosity * (lap / lap.min()) ** 4
        self.linear = linear if np.any(linear) else None
        # |a| ≤ 1 for softmax attention, so ‖V‖₂ bounds the drift speed; unnormalized speeds are measured
        self._speed_bound = np.linalg.norm(model.V, 2) if model.softmax else None

    def velocity(self, coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The density on the grid and its attention velocity X[ρ], tangent components."""
        rho = self.grid.synthesis(coeffs)
        v = np.zeros((self.grid.n_tangent, *self.grid.shape)) if self._drift_off else self.attention.drift(coeffs, rho)
        return rho, v

    def tendency(self, coeffs: np.ndarray) -> np.ndarray:
        """Coefficients of −div_S(ρ X[ρ]) (the noise moves ρ in its own sub-steps: :meth:`step`)."""
        rho, v = self.velocity(coeffs)
        np.multiply(v, rho, out=v)  # the flux ρ X[ρ], in place (velocity returns a new array)
        return -self.grid.divergence(v)

    def frozen_field(self, coeffs: np.ndarray, increments: dict, dt: float) -> np.ndarray | SpectralTransport:
        """u_n/dt + c_n at the start of a step: the noise's tangential velocity, frozen over the step.

        For noise linear in x (rotation, bias, quadratic form and their sums) on a SphereGrid or CircleGrid, the
        transport operator ρ ↦ −div_S(ρ u_n/dt) in spectral space instead (docs/mathematics.md, 'Spectral transport
        of linear noise fields'): no grid field is built. Otherwise the tangent components on the grid, built in
        place (one array from the model, projected once, scaled in place).
        """
        assert self.noise is not None  # a frozen field exists only with common noise (see step)
        transport = self.noise.spectral_transport(self.grid, increments, dt)
        if transport is not None:
            return transport
        context = None
        if self.noise.needs_context:
            context = self.attention.output(coeffs, self.grid.synthesis(coeffs))
        u = self.grid.to_tangent(self.noise.grid_field(self.grid, increments, context))
        u /= dt
        correction = self.noise.drift_correction(self.grid, context)  # ValueNoise's Itô term, owned by the model
        if correction is not None:
            u += correction
        return u

    def drift_speed(self, coeffs: np.ndarray) -> float:
        """An upper bound of |X[ρ]| (softmax: ‖V‖₂) or its measured maximum (unnormalized)."""
        if self._drift_off:
            return 0.0
        if self._speed_bound is not None:
            return float(self._speed_bound)
        return float(np.sqrt(np.max(np.sum(self.velocity(coeffs)[1] ** 2, axis=0))))

    @property
    def merges_half_steps(self) -> bool:
        """Whether consecutive steps may merge their adjacent drift half steps (see :meth:`step`): with common noise
        whose field does not depend on ρ (every model but ValueNoise, whose field and correction are built from the
        density at the start of each step)."""
        return (self.noise is not None and bool(self.noise.common_models)
                and not any(m.needs_context for m in self.noise.common_models))

    def step(self, coeffs: np.ndarray, dt: float, scheme: Scheme, cfl: float, increments: dict | None = None, *,
             owed: bool = False, close: bool = True) -> tuple[np.ndarray, int]:
        """Advance one step of length dt; returns the new coefficients and the largest number of sub-steps taken.

        With common noise the frozen-increment ODE is split (Strang; docs/mathematics.md, 'The stochastic density
        step'): a half step of the attention drift (and of the linear terms), the frozen noise field over the whole
        step, a second half step of the drift:

            ρ ← D_{dt/2} ∘ N_dt ∘ D_{dt/2} ρ,   D: ∂_t ρ = −div_S(ρ X[ρ]) + L ρ,   N: ∂_t ρ = −div_S(ρ (u_n/dt + c_n)).

        The noise transport is sub-stepped by its own CFL number and costs one synthesis and one vector analysis per
        stage (none for the fields linear in x): the attention drift is evaluated only by the half steps. Without
        common noise the step is the drift alone. Sub-steps of a transport of speed |v| over a time h:
        ⌈λ / (cfl · λ_stab)⌉ with λ = degree_max · |v| h, λ_stab the scheme's limit on the imaginary axis (none for
        Heun, which is then plain — and unstable for transport); the drift is sub-stepped only for unnormalized
        attention, whose speed (up to ‖V‖ e^{beta}) is measured at the start of each half step (softmax speeds are
        bounded by ‖V‖₂ and checked once by the solver).

        **Merged half steps** (when :attr:`merges_half_steps`): between records the second half step of one step and
        the first of the next are one drift step of length dt, D_{dt/2} ∘ D_{dt/2} = D_dt (the same map; the scheme
        integrates it in one step instead of two, four right-hand sides instead of eight). ``close=False`` stops after
        the noise part: the state then *owes* its closing half step D_{dt/2}; ``owed=True`` says that the given state
        owes one, and the step starts with D_dt instead of D_{dt/2}. :meth:`close` pays a debt.
        """
        if increments is None or self.noise is None or not self.noise.common_models:
            if owed:
                raise ValueError("owed=True: only a step with common noise leaves a half step owed")
            return self._drift_step(coeffs, dt, scheme, cfl)
        if (owed or not close) and not self.merges_half_steps:
            raise ValueError(f"owed/close: the half steps of {self.noise!r} cannot be merged (its field is built from "
                             "the density at the start of each step); use owed=False, close=True")
        frozen = self.frozen_field(coeffs, increments, dt)
        coeffs, first = self._drift_step(coeffs, dt if owed else 0.5 * dt, scheme, cfl)
        coeffs, moved = self._transport_step(coeffs, frozen, dt, scheme, cfl)
        if not close:
            return coeffs, max(first, moved)
        coeffs, second = self._drift_step(coeffs, 0.5 * dt, scheme, cfl)
        return coeffs, max(first, moved, second)

    def close(self, coeffs: np.ndarray, dt: float, scheme: Scheme, cfl: float) -> np.ndarray:
        """The closing half drift step D_{dt/2} owed by a state left by :meth:`step` with ``close=False``."""
        return self._drift_step(coeffs, 0.5 * dt, scheme, cfl)[0]

    def _substeps(self, speed: float, h: float, scheme: Scheme, cfl: float) -> int:
        if scheme.imaginary_stability <= 0:
            return 1
        return max(1, int(np.ceil(self.grid.degree_max * speed * h / (cfl * scheme.imaginary_stability))))

    def _drift_step(self, coeffs: np.ndarray, h: float, scheme: Scheme, cfl: float) -> tuple[np.ndarray, int]:
        """∂_t ρ = −div_S(ρ X[ρ]) + L ρ over a time h (L: nu Δ_S and the hyperviscosity, exact by Lawson)."""
        if self._drift_off and self.linear is None:
            return coeffs, 1
        n_sub = 1 if self._speed_bound is not None else self._substeps(self.drift_speed(coeffs), h, scheme, cfl)
        for _ in range(n_sub):
            coeffs = scheme.step(self.tendency, coeffs, h / n_sub, self.linear)
        return coeffs, n_sub

    def _transport_step(self, coeffs: np.ndarray, velocity: np.ndarray | SpectralTransport, h: float, scheme: Scheme,
                        cfl: float) -> tuple[np.ndarray, int]:
        """∂_t ρ = −div_S(ρ v) for the frozen field v over a time h, in as many sub-steps as its CFL number asks for.

        ``velocity`` is the tangent field on the grid (each stage: one synthesis, one product, one vector analysis)
        or a :class:`~spde_tokens.grids.multiply.SpectralTransport` (each stage: sparse products on the
        coefficients, no transform; its speed is the maximum of |v| over the sphere, an upper bound of the grid's).
        """
        f: Callable[[np.ndarray], np.ndarray]
        if isinstance(velocity, SpectralTransport):
            speed, f = velocity.speed, velocity
        else:
            speed = float(np.sqrt(np.max(np.sum(velocity**2, axis=0))))
            negative = -velocity
            flux = np.empty_like(negative)

            def f(c: np.ndarray) -> np.ndarray:
                return self.grid.divergence(np.multiply(self.grid.synthesis(c), negative, out=flux))

        n_sub = self._substeps(speed, h, scheme, cfl)
        for _ in range(n_sub):
            coeffs = scheme.step(f, coeffs, h / n_sub)
        return coeffs, n_sub


def _variables(grid: Grid) -> dict:
    out = {
        "density": (grid.dims, {"long_name": f"token density w.r.t. {grid.measure}", "units": "1"}),
        "power_spectrum": (("degree",), {"long_name": "power spectrum P_l = sum_m w_m |rho_lm|^2", "units": "1"}),
        "energy": ((), {"long_name": "interaction energy E_beta = (1/2beta) iint expm1(beta x.y) drho drho",
                        "units": "1"}),
        "dispersion": ((), {"long_name": "dispersion 1/2 iint |x-y|^2 drho drho", "units": "1"}),
        "mean_vector": (("component",), {"long_name": "mean token m = int x drho", "units": "1"}),
        "mass": ((), {"long_name": "total mass int rho dA", "units": "1"}),
        "min_density": ((), {"long_name": "minimum of the density on the grid", "units": "1"}),
        "spectral_tail": ((), {"long_name": "share of power at degrees >= 0.9 lmax", "units": "1"}),
        "attention_unreliable_fraction": ((), {"long_name": "fraction of nodes where the attention output was "
                                                            "zeroed or clipped", "units": "1"}),
        "substeps": ((), {"long_name": "largest number of sub-steps per step since the previous record",
                          "units": "1"}),
    }
    if isinstance(grid, ZonalGrid):
        out["law_s"] = (grid.dims, {"long_name": "probability density of s = x.e_d: c_d (1-s^2)^((d-3)/2) rho(s)",
                                    "units": "1"})
    return out


class SpectralEngine:
    """The spectral density solver as an engine of the run driver (:func:`spde_tokens.runner.run`).

    The state is ``{"coeffs": ρ_lm}``; each step takes the frozen noise increments of its step from the path.
    Between records, consecutive steps merge their adjacent drift half steps (:meth:`DensityEquation.step`): a
    state that owes its closing half step carries the key ``OWED``; every recorded (and checkpointed) state is
    closed, and so is the last good state of a blow-up.
    """

    name = "density"
    #: the key of a state that owes its closing half drift step
    OWED = "owes_half_step"

    def __init__(self, equation: DensityEquation, scheme: Scheme, cfl: float, times: TimeGrid,
                 path: NoisePath | None, blow_up: float):
        self.equation, self.grid, self.scheme, self.cfl = equation, equation.grid, scheme, cfl
        self.times, self.dt, self.path, self.blow_up = times, times.dt, path, blow_up
        self.merges = equation.merges_half_steps
        self.label = f"density {self.grid!r}"
        self.substeps = 1  # the largest number of sub-steps per step since the previous record
        self.warned = False

    def step(self, state: State, step: int) -> State:
        increments = self.path.increments(step - 1) if self.path is not None else None
        close = not self.merges or self.times.is_record(step)
        coeffs, n_sub = self.equation.step(state["coeffs"], self.dt, self.scheme, self.cfl, increments,
                                           owed=self.OWED in state, close=close)
        self.substeps = max(self.substeps, n_sub)
        return {"coeffs": coeffs} if close else {"coeffs": coeffs, self.OWED: np.ones(())}

    def closed(self, state: State) -> np.ndarray:
        """The coefficients of the state, after the half drift step it owes (if it owes one)."""
        if self.OWED not in state:
            return state["coeffs"]
        return self.equation.close(state["coeffs"], self.dt, self.scheme, self.cfl)

    def check(self, state: State) -> str | None:
        if not np.all(np.abs(state["coeffs"]) <= self.blow_up):  # also catches NaN
            return (f"the density became non-finite, or ∫|ρ| exceeded {BLOW_UP:g} times its mass (the flow has "
                    "collapsed it beyond the grid: raise lmax, lower dt, or follow the tokens instead)")
        return None

    def record(self, state: State) -> dict:
        assert self.OWED not in state  # steps that end on a record close their half step (see step)
        grid, coeffs = self.grid, state["coeffs"]
        field = grid.synthesis(coeffs)
        values = {
            "density": field,
            "power_spectrum": grid.power_spectrum(coeffs),
            "energy": diag.energy(grid, coeffs, self.equation.model.beta),
            "dispersion": diag.dispersion(grid, coeffs),
            "mean_vector": diag.mean_vector(grid, coeffs),
            "mass": diag.mass(grid, coeffs),
            "min_density": field.min(),
            "spectral_tail": diag.spectral_tail(grid, coeffs),
            "attention_unreliable_fraction": self.equation.attention.unreliable_fraction,
            "substeps": self.substeps,
        }
        if isinstance(grid, ZonalGrid):
            values["law_s"] = grid.law_of_s(field)
        self.substeps = 1
        return values

    def after_record(self, t: float, values: dict) -> None:
        if values["spectral_tail"] > TAIL_WARNING and not self.warned:
            self.warned = True
            warnings.warn(f"under-resolved at t = {t:g}: spectral_tail = {values['spectral_tail']:.2e} > "
                          f"{TAIL_WARNING:g} on {self.grid!r}; raise the resolution", ResolutionWarning, stacklevel=5)

    def last_good(self, state: State) -> np.ndarray:
        return self.grid.synthesis(self.closed(state))

    def final_attrs(self, state: State) -> dict:
        return {}


#: the density engines of ``solve_density(engine=...)``
ENGINES = ("auto", "spectral", "lagrangian")


def _node_variables(grid: Grid) -> dict:
    return {
        "nodes": (("node", "component"), {"long_name": "positions of the Lagrangian nodes (NaN before the hand-over)",
                                          "units": "1"}),
        "weights": (("node",), {"long_name": "mass w_i = rho(x_i) A_i carried by each node", "units": "1"}),
        "log_jacobian": (("node",), {"long_name": "log-Jacobian l_i of the flow since the hand-over: rho(X_i(t)) = "
                                                 "rho(X_i(s)) exp(-l_i)", "units": "1"}),
        "smoothing_time": ((), {"long_name": "heat-kernel time tau of the smoothing of the recorded density "
                                             "exp(-l(l+d-2) tau) (0: none)", "units": "1"}),
        "engine": ((), {"long_name": "engine that produced the record: spectral or lagrangian"}),
    }


class HandoverEngine:
    """The density run of ``engine="auto"`` or ``"lagrangian"`` (docs/mathematics.md, 'The Lagrangian engine').

    The state is ``{"coeffs": ρ_lm}`` while the spectral engine runs, then ``{"nodes", "log_jacobian", "weights",
    "handover_time"}``. ``"auto"`` steps spectrally and tests the spectral tail of every new state; at the first
    step whose tail exceeds ``handover_tail`` it builds the nodes from the state at the start of that step (still
    resolved; closed first if it owes a half drift step) and takes the step again, on the same noise increments,
    with the Lagrangian engine.
    ``"lagrangian"`` builds the nodes from ρ_0.
    """

    name = "density"

    def __init__(self, spectral: SpectralEngine, flow: NodeFlow, handover_tail: float):
        self.spectral, self.flow, self.handover_tail = spectral, flow, handover_tail
        self.grid, self.dt, self.path = spectral.grid, spectral.dt, spectral.path
        self.label = spectral.label
        self.beta = spectral.equation.model.beta
        self.rule = node_rule(self.grid)
        self.n_nodes = int(np.prod(self.rule.shape))

    def handover(self, coeffs: np.ndarray, t: float) -> State:
        """The Lagrangian state of the density ``coeffs`` at time t."""
        x, w = nodes_from_coefficients(self.rule, coeffs)
        return {"nodes": x, "log_jacobian": np.zeros(x.shape[0]), "weights": w, "handover_time": np.array([t])}

    def step(self, state: State, step: int) -> State:
        if "coeffs" in state:
            new = self.spectral.step(state, step)
            if not diag.spectral_tail(self.grid, new["coeffs"]) > self.handover_tail:
                return new
            state = self.handover(self.spectral.closed(state), float(f"{(step - 1) * self.dt:.12g}"))
        increments = self.path.increments(step - 1) if self.path is not None else None
        y = np.concatenate([state["nodes"], state["log_jacobian"][:, None]], axis=1)
        y = self.flow.step(y, state["weights"], self.dt, increments, self.spectral.scheme)
        return {**state, "nodes": y[:, :-1], "log_jacobian": y[:, -1]}

    def check(self, state: State) -> str | None:
        if "coeffs" in state:
            return self.spectral.check(state)
        if not (np.all(np.isfinite(state["nodes"])) and np.all(np.isfinite(state["log_jacobian"]))):
            return "the Lagrangian nodes or their log-Jacobians became non-finite"
        return None

    def record(self, state: State) -> dict:
        if "coeffs" in state:
            values = self.spectral.record(state)
            nan = np.full(self.n_nodes, np.nan)
            values.update(nodes=np.full((self.n_nodes, self.grid.dim), np.nan), weights=nan, log_jacobian=nan,
                          smoothing_time=0.0, engine="spectral")
            return values
        grid, x, w = self.grid, state["nodes"], state["weights"]
        coeffs = grid.empirical_coefficients(x, w)
        spectrum = grid.power_spectrum(coeffs)
        tau = smoothing_time(grid, spectrum)
        smooth = coeffs * np.exp(grid.laplacian_eigenvalues * tau)  # the heat kernel e^{τ Δ_S}
        field = grid.synthesis(smooth)
        m = w @ x
        mass = float(w.sum())
        return {
            "density": field, "power_spectrum": spectrum, "energy": diag.energy(grid, coeffs, self.beta),
            "dispersion": mass**2 - float(m @ m), "mean_vector": m, "mass": mass, "min_density": field.min(),
            "spectral_tail": diag.spectral_tail(grid, smooth),
            "attention_unreliable_fraction": self.flow.unreliable_fraction, "substeps": 1,
            "nodes": x, "weights": w, "log_jacobian": state["log_jacobian"], "smoothing_time": tau,
            "engine": "lagrangian",
        }

    def after_record(self, t: float, values: dict) -> None:
        if values["engine"] == "spectral":
            self.spectral.after_record(t, values)

    def last_good(self, state: State) -> np.ndarray:
        return self.spectral.last_good(state) if "coeffs" in state else state["nodes"]

    def final_attrs(self, state: State) -> dict:
        if "handover_time" in state:
            return {"handover_time": float(state["handover_time"][0])}
        return {"handover_time": "none"}


def _check_transport_stability(stepper: Scheme, grid: Grid, model: AttentionModel, times: TimeGrid) -> None:
    """Warn when the top degree, moved at the largest softmax drift speed |V|, could grow tenfold over the run.

    On a mode of degree l transported at speed |u| the scheme multiplies the amplitude by |R(iλ)| per step,
    λ = l |u| dt (|a| ≤ 1 for softmax attention, so |X| ≤ ‖V‖₂). Stochastic runs choose sub-steps instead.
    """
    if not model.softmax or times.n_steps == 0:
        return
    lam = float(grid.degree_max * np.linalg.norm(model.V, 2) * times.dt)
    growth = stepper.amplification(1j * lam)
    if growth > 1.0 and times.n_steps * np.log(growth) > np.log(10.0):
        warnings.warn(f"dt = {times.dt} is beyond the transport stability of scheme {stepper.name!r}: the top degree "
                      f"{grid.degree_max} may grow by |R(iλ)| = {growth:.4g} per step (λ = {lam:.3g}; stable for "
                      f"λ ≤ {stepper.imaginary_stability:.3g}); lower dt", ResolutionWarning, stacklevel=3)


def _mean_density_rate(model: AttentionModel, noise: NoiseSum | None, dim: int) -> float:
    """The one-point rate g of a ``mean_density`` run, after checking that its mean has a closed equation."""
    if model.value_factor != 0.0:
        raise ValueError("mean_density=True needs V = 0: with attention the mean over the noise of the density "
                         "depends on its fluctuations (the drift is quadratic in ρ) and has no closed equation; "
                         "average density runs over seeds (spde_tokens.ensemble) or simulate the tokens")
    if noise is None or not noise.common_models:
        raise ValueError("mean_density=True averages over a common noise; noise has none (a run without common "
                         "noise is its own mean: use mean_density=False)")
    context = [m for m in noise.common_models if m.needs_context]
    if context:
        raise ValueError(f"mean_density=True needs a noise field independent of the tokens; {context[0]!r} depends "
                         "on their attention output, so the one-point law is not a heat equation")
    return float(noise.one_point_rate(dim))


def _zonal_engine(noise: NoiseSum | None, engine: str, mean_density: bool) -> str:
    """The engine of a run on a ZonalGrid (spectral), after refusing what breaks the axial symmetry."""
    if noise is not None and noise.common_models and not mean_density:
        raise ValueError(f"noise: a ZonalGrid holds densities symmetric about e_d, and one realization of the common "
                         f"noise {noise!r} moves the density off its axis; simulate the tokens "
                         "(spde_tokens.simulate_particles), or solve for the mean density with mean_density=True "
                         "(V = 0)")
    if engine == "lagrangian":
        raise ValueError("engine='lagrangian' moves nodes on S^1 or S^2; on a ZonalGrid use engine='spectral' (or "
                         "'auto', which is spectral there), or simulate the tokens (spde_tokens.simulate_particles)")
    return "spectral"


def solve_density(model: AttentionModel, noise: NoiseModel | None, rho0: xr.DataArray, t_end: float, dt: float, *,
                  path: NoisePath | None = None, seed: int | None = None, save_every: float | None = None,
                  scheme: str = "rk4", cfl: float = 0.5, hyperviscosity: float = 0.0, attention: str = "auto",
                  memory_budget: float | None = None, progress: bool | None = None, threads: int | None = None,
                  checkpoint: str | os.PathLike[str] | None = None, checkpoint_every: int = 1, engine: str = "auto",
                  handover_tail: float = HANDOVER_TAIL, mean_density: bool = False) -> xr.Dataset:
    """Solve the density equation from ``rho0`` to ``t_end`` with fixed step ``dt``.

    The equation and the step are those of docs/mathematics.md, 'The stochastic density step' and 'The Lagrangian
    engine'; the stepping bookkeeping (records, checkpoints, progress, blow-up) is the run driver's
    (:func:`spde_tokens.runner.run`).

    Parameters
    ----------
    model : AttentionModel with the ``dim`` of rho0's grid: 2 (CircleGrid), 3 (SphereGrid), any d (ZonalGrid, where
        Qᵀ K = a I and V = c I are required: other matrices move the density off its axis).
    noise : None (deterministic), a noise model or a sum of models (:mod:`spde_tokens.noise`).
    rho0 : density DataArray from :mod:`spde_tokens.initial` (it carries its grid).
    t_end, dt : final time ≥ 0 and step > 0; t_end/dt must be a whole number.
    path : the NoisePath of the realization (same noise, dim and dt, at least t_end/dt steps); else built from seed.
    seed : integer seed of the realization (needed with common noise when no path is given).
    save_every : time between records, a whole number of steps (default: about 100 records).
    scheme : a registered Runge–Kutta scheme (``"rk4"`` default, ``"rk3"``, ``"heun"``).
    cfl : fraction of the scheme's stability limit on the imaginary axis that one sub-step may use (0 < cfl ≤ 1);
        0.5 by default, the margin measured in docs/numerics.md, 'The default cfl'.
    hyperviscosity : damping rate of the top degree by −(Δ_S/Δ_max)^4 (off by default; recorded when on).
    attention : ``"auto"``, ``"zonal"`` or ``"quadrature"``; memory_budget bounds the quadrature kernel.
    progress : tqdm progress bar (default: on when standard error is a terminal).
    threads : transform and BLAS threads (None: those of rho0's grid, 1 unless it was built with more).
    checkpoint : a NetCDF file rewritten atomically with the spectral state and the step, the records beside it
        (``checkpoint + ".records/"``); if it exists when the run starts (same settings), the run resumes from it
        and finishes bit-identical to an uninterrupted run; a later t_end continues a finished run.
    checkpoint_every : records between checkpoints (default 1: at every record).
    engine : ``"auto"`` (default: spectral while the density is resolved, then the Lagrangian engine from the first
        step whose spectral tail exceeds ``handover_tail``; spectral only with nu > 0 or hyperviscosity),
        ``"spectral"`` or ``"lagrangian"`` (from t = 0; nu > 0 is refused).
    handover_tail : the spectral tail at which ``"auto"`` hands over (default 1e-12, below the 1e-10 warning).
    mean_density : solve for the mean of the density over the realizations of the common noise instead of one
        realization. Only for V = 0 (no attention drift: with attention the mean has no closed equation) and noises
        whose field does not depend on the tokens (not ValueNoise): each token is then a Brownian motion of
        generator (g/2) Δ_S, g = ``noise.one_point_rate(dim)`` (idiosyncratic noise included, g = 2 nu), and the mean
        solves the heat equation ∂_t E ρ = (g/2) Δ_S E ρ (docs/mathematics.md, 'Common noise'), integrated exactly
        in spectral space; no path is drawn.

    On a ZonalGrid (docs/mathematics.md, 'The zonal grid (any dimension)') the run is deterministic, has
    IdiosyncraticNoise, or is a ``mean_density`` run: a common noise field moves a zonal density off its axis (one
    realization is not zonal) and is refused, as are matrices that break the symmetry; simulate the tokens instead
    (:func:`spde_tokens.simulate_particles`). The engine is spectral (``"auto"`` stays spectral; ``"lagrangian"``,
    whose nodes are points of S^1 or S^2, is refused). The record has ``law_s``, the density of s = x·e_d.

    Returns
    -------
    xarray.Dataset with ``density``, ``power_spectrum``, ``energy``, ``dispersion``, ``mean_vector``, ``mass``,
    ``min_density``, ``spectral_tail``, ``substeps`` on ``time``; with the Lagrangian engine also ``nodes``,
    ``weights``, ``log_jacobian``, ``smoothing_time``, ``engine`` and the attribute ``handover_time``
    (docs/guide.md, 'File format').

    Raises
    ------
    ValueError on bad input; :class:`spde_tokens.records.BlowUpError` (with the records so far) on a blow-up.
    """
    if not isinstance(model, AttentionModel):
        raise ValueError(f"model must be an AttentionModel, got {type(model).__name__}")
    grid = grid_of(rho0)
    if threads is not None and threads != grid.attrs().get("grid_threads", 1):
        grid = grid_from_attrs(grid.attrs(), threads=threads)
    if model.dim != grid.dim:
        raise ValueError(f"model.dim = {model.dim} does not match rho0, which lives on S^{grid.dim - 1} "
                         f"(dim {grid.dim})")
    check_density(np.asarray(rho0.values), "rho0")
    check_memory(f"the grid's degree ({grid!r})", int(np.prod(grid.shape)), RUN_BYTES_PER_NODE, "a density run")
    times = TimeGrid.build(t_end, dt, save_every)
    stepper = get_scheme(scheme)
    if isinstance(cfl, bool) or not isinstance(cfl, (int, float)) or not 0 < cfl <= 1:
        raise ValueError(f"cfl must be a number in (0, 1], got {cfl!r}")
    if isinstance(hyperviscosity, bool) or not isinstance(hyperviscosity, (int, float)) \
            or not 0 <= hyperviscosity < np.inf:
        raise ValueError(f"hyperviscosity must be a finite number ≥ 0, got {hyperviscosity!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if isinstance(handover_tail, bool) or not isinstance(handover_tail, (int, float)) or not 0 < handover_tail < 1:
        raise ValueError(f"handover_tail must be a number in (0, 1), got {handover_tail!r}")
    noise = as_noise(noise)
    if not isinstance(mean_density, (bool, np.bool_)):
        raise ValueError(f"mean_density must be True or False, got {mean_density!r}")
    rate = _mean_density_rate(model, noise, grid.dim) if mean_density else None
    if isinstance(grid, ZonalGrid):
        engine = _zonal_engine(noise, engine, bool(mean_density))
    if rate is not None:
        if engine == "lagrangian":
            raise ValueError("mean_density=True solves a heat equation, which is not transport: use "
                             "engine='spectral' (or 'auto')")
        engine = "spectral"
    if engine == "lagrangian" and noise is not None and noise.nu > 0:
        raise ValueError(f"engine='lagrangian' moves the density by transport only; nu = {noise.nu} "
                         "(IdiosyncraticNoise) needs engine='spectral' (or 'auto', which then stays spectral)")
    if engine == "lagrangian" and hyperviscosity > 0:
        raise ValueError(f"hyperviscosity = {hyperviscosity} filters the grid's degrees; the Lagrangian engine has "
                         "none: use engine='spectral' or hyperviscosity=0")
    if engine == "auto" and (hyperviscosity > 0 or (noise is not None and noise.nu > 0)):
        engine = "spectral"  # diffusion and the filter are not transport (docs/mathematics.md)
    if rate is not None:
        if path is not None:
            raise ValueError("path: a mean_density run averages over all paths and takes none")
        # the one-point law of every token is that of an idiosyncratic Brownian motion of diffusivity g/2
        equation = DensityEquation(model, grid, attention, memory_budget, IdiosyncraticNoise(0.5 * rate),
                                   float(hyperviscosity))
    else:
        path = resolve_path(noise, path, seed, grid.dim, times.dt, times.n_steps, grid.degree_max)
        equation = DensityEquation(model, grid, attention, memory_budget, noise, float(hyperviscosity))
    if noise is None or not noise.common_models:
        _check_transport_stability(stepper, grid, model, times)

    coeffs = grid.analysis(np.asarray(rho0.values, dtype=float))
    mass = diag.mass(grid, coeffs)
    if abs(mass - 1.0) > 1e-6:  # a Gauss rule integrates a normalized band-limited ρ to rounding
        raise ValueError(f"rho0 must be a probability density (∫ρ dA = 1), its mass is {mass:.6g}; divide it by its "
                         "mass (spde_tokens.initial.from_function normalizes)")
    # |ρ_c| ≤ basis_peak_c |ρ_0| ∫|ρ| / ∫ρ (Grid.basis_peak): a coefficient beyond BLOW_UP times that bound at
    # ∫|ρ| = ∫ρ means ∫|ρ| > BLOW_UP · mass
    blow_up = BLOW_UP * abs(coeffs[0]) * grid.basis_peak
    spectral = SpectralEngine(equation, stepper, float(cfl), times, path, blow_up)
    attrs = {"title": "spde_tokens density run", "engine": "density", "density_engine": engine, "scheme": scheme,
             "cfl": float(cfl), "hyperviscosity": float(hyperviscosity), "attention": equation.attention.method,
             "seed": "none" if seed is None else seed,
             **(noise.attrs() if noise is not None else {"noise": "none"}),
             **(path.attrs() if path is not None else {}), **grid.attrs(), **times.attrs()}
    if rate is not None:
        attrs.update(mean_density=1, one_point_rate=rate)
    coords = record_coordinates(grid)  # built once per grid
    fingerprint = {"model": repr(model), "model_matrices": fingerprint_hash(*model.matrices().values()),
                   "noise": repr(noise), "seed": -1 if path is None else path.seed,
                   "path_coarsening": 1 if path is None else path.factor, "scheme": scheme, "cfl": float(cfl),
                   "hyperviscosity": float(hyperviscosity), "attention": equation.attention.method,
                   "rho0": fingerprint_hash(rho0.values), "density_engine": engine, **grid.attrs()}
    if rate is not None:
        fingerprint["mean_density"] = 1
    variables = _variables(grid)
    state: State = {"coeffs": coeffs}
    run_engine: SpectralEngine | HandoverEngine = spectral
    if engine != "spectral":
        method = "harmonic" if model.zonal_factor is not None and grid.dim in (2, 3) else "direct"
        run_engine = HandoverEngine(spectral, NodeFlow(model, noise, method), float(handover_tail))
        attrs.update(handover_tail=float(handover_tail), node_attention=method)
        fingerprint["handover_tail"] = float(handover_tail)
        variables.update(_node_variables(grid))
        coords = coords.assign(node=xr.Variable("node", np.arange(run_engine.n_nodes),
                                                {"long_name": "Lagrangian node index", "units": "1"}))
        if engine == "lagrangian":
            state = run_engine.handover(coeffs, 0.0)
    ds = run(run_engine, state, times, Recorder(variables, coords, attrs, model), fingerprint=fingerprint,
             checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
             threads=grid.attrs().get("grid_threads", 1))
    if "weights" in ds:  # constant after the hand-over: one value per node
        ds["weights"] = ds["weights"].isel(time=-1, drop=True)
    return ds
