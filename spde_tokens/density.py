"""The density equation on S^1 and S^2 and its solver ``solve_density`` (DESIGN 1.3).

The state is kept in spectral space (coefficients of ρ); the grid is visited only to form the flux ρ X[ρ]:

    ∂_t ρ = −div_S(ρ X[ρ]),     X[ρ](x) = P_x V a_ρ(x)      (deterministic part)

Each step integrates this ODE over [t, t + dt] with a registered Runge–Kutta scheme (:mod:`spde_tokens.steppers`,
RK4 by default). Mass is conserved exactly: the divergence has no degree-0 component.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from spde_tokens import diagnostics as diag
from spde_tokens.drift import GridAttention
from spde_tokens.grids import Grid, ResolutionWarning, grid_from_attrs
from spde_tokens.initial import check_density, grid_of
from spde_tokens.model import AttentionModel
from spde_tokens.records import BlowUpError, Recorder, TimeGrid, default_progress
from spde_tokens.steppers import get_scheme

#: spectral_tail above which a run is reported as under-resolved
TAIL_WARNING = 1e-10
#: coefficients larger than this multiple of the mass coefficient stop the run as a blow-up
BLOW_UP = 1e8


class DensityEquation:
    """Right-hand side ``F(ρ) = −div_S(ρ X[ρ])`` in spectral space.

    Parameters
    ----------
    model : the attention model (``model.dim`` must match the grid).
    grid : CircleGrid or SphereGrid.
    attention : ``"auto"``, ``"zonal"`` or ``"quadrature"`` (see :class:`spde_tokens.drift.GridAttention`).
    memory_budget : bytes allowed for the quadrature kernel (default 25% of available memory).
    """

    def __init__(self, model: AttentionModel, grid: Grid, attention: str = "auto",
                 memory_budget: float | None = None):
        self.model, self.grid = model, grid
        self.attention = GridAttention(model, grid, attention, memory_budget)

    def velocity(self, coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The density on the grid and the drift X[ρ] there (tangent components)."""
        rho = self.grid.synthesis(coeffs)
        return rho, self.attention.drift(coeffs, rho)

    def tendency(self, coeffs: np.ndarray) -> np.ndarray:
        """Coefficients of −div_S(ρ X[ρ])."""
        rho, x = self.velocity(coeffs)
        return -self.grid.divergence(rho * x)


def _records(grid: Grid, coeffs: np.ndarray, beta: float) -> dict:
    field = grid.synthesis(coeffs)
    return {
        "density": field,
        "power_spectrum": grid.power_spectrum(coeffs),
        "energy": diag.energy(grid, coeffs, beta),
        "dispersion": diag.dispersion(grid, coeffs),
        "mean_vector": diag.mean_vector(grid, coeffs),
        "mass": diag.mass(grid, coeffs),
        "min_density": field.min(),
        "spectral_tail": diag.spectral_tail(grid, coeffs),
    }


def _variables(grid: Grid) -> dict:
    return {
        "density": (grid.dims, {"long_name": "token density w.r.t. surface measure", "units": "1"}),
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
    }


def _check_transport_stability(stepper, grid: Grid, model: AttentionModel, times: TimeGrid) -> None:
    """Warn when the top degree, moved at the largest softmax drift speed |V|, could grow tenfold over the run.

    On a mode of degree l transported at speed |u| the scheme multiplies the amplitude by |R(iλ)| per step,
    λ = l |u| dt (|a| ≤ 1 for softmax attention, so |X| ≤ ‖V‖₂).
    """
    if not model.softmax or times.n_steps == 0:
        return
    lam = grid.degree_max * np.linalg.norm(model.V, 2) * times.dt
    growth = stepper.amplification(1j * lam)
    if growth > 1.0 and times.n_steps * np.log(growth) > np.log(10.0):
        warnings.warn(f"dt = {times.dt} is beyond the transport stability of scheme {stepper.name!r}: the top degree "
                      f"{grid.degree_max} may grow by |R(iλ)| = {growth:.4g} per step (λ = {lam:.3g}; stable for "
                      f"λ ≤ {stepper.imaginary_stability:.3g}); lower dt", ResolutionWarning, stacklevel=3)


def solve_density(model: AttentionModel, noise, rho0: xr.DataArray, t_end: float, dt: float, *,
                  path=None, seed: int | None = None, save_every: float | None = None, scheme: str = "rk4",
                  attention: str = "auto", memory_budget: float | None = None, progress: bool | None = None,
                  threads: int = 1) -> xr.Dataset:
    """Solve the density equation from ``rho0`` to ``t_end`` with fixed step ``dt``.

    Parameters
    ----------
    model : AttentionModel with ``dim`` 2 (CircleGrid) or 3 (SphereGrid).
    noise : ``None`` for the deterministic equation ∂_t ρ = −div_S(ρ X[ρ]).
    rho0 : density DataArray from :mod:`spde_tokens.initial` (it carries its grid).
    t_end, dt : final time ≥ 0 and step > 0; t_end/dt must be a whole number.
    save_every : time between records, a whole number of steps (default: about 100 records).
    scheme : a registered Runge–Kutta scheme (``"rk4"`` default, ``"rk3"``, ``"heun"``).
    attention : ``"auto"``, ``"zonal"`` or ``"quadrature"``; memory_budget bounds the quadrature kernel.
    progress : tqdm progress bar (default: on when standard error is a terminal).
    threads : transform threads of the grid (1 by default).

    Returns
    -------
    xarray.Dataset with ``density``, ``power_spectrum``, ``energy``, ``dispersion``, ``mean_vector``, ``mass``,
    ``min_density``, ``spectral_tail`` on ``time`` (DESIGN 3).

    Raises
    ------
    ValueError on bad input; :class:`spde_tokens.records.BlowUpError` (with the records so far) on a blow-up.
    """
    if not isinstance(model, AttentionModel):
        raise ValueError(f"model must be an AttentionModel, got {type(model).__name__}")
    if noise is not None or path is not None:
        raise NotImplementedError("stochastic runs (noise, path) are not available yet: pass noise=None")
    grid = grid_of(rho0)
    if threads != 1:
        grid = grid_from_attrs(grid.attrs(), threads=threads)
    if model.dim != grid.dim:
        raise ValueError(f"model.dim = {model.dim} does not match rho0, which lives on S^{grid.dim - 1} "
                         f"(dim {grid.dim})")
    check_density(np.asarray(rho0.values), "rho0")
    times = TimeGrid.build(t_end, dt, save_every)
    stepper = get_scheme(scheme)
    equation = DensityEquation(model, grid, attention, memory_budget)
    _check_transport_stability(stepper, grid, model, times)

    coeffs = grid.analysis(np.asarray(rho0.values, dtype=float))
    # |ρ_lm| ≤ max|Y_lm| ∫|ρ| ≤ sqrt((2l+1)/4π) ∫|ρ|: a coefficient beyond BLOW_UP · |ρ_00| means ∫|ρ| grew by
    # orders of magnitude, which no density with small negative parts can do
    blow_up = BLOW_UP * abs(coeffs[0]) * np.sqrt(2 * grid.degree_max + 1)
    recorder = Recorder()
    warned = False

    def record(step: int) -> None:
        nonlocal warned
        values = _records(grid, coeffs, model.beta)
        recorder.add(step * times.dt, attention_unreliable_fraction=equation.attention.unreliable_fraction,
                     **values)
        if values["spectral_tail"] > TAIL_WARNING and not warned:
            warned = True
            warnings.warn(f"under-resolved at t = {step * times.dt:g}: spectral_tail = {values['spectral_tail']:.2e}"
                          f" > {TAIL_WARNING:g} on {grid!r}; raise the resolution", ResolutionWarning, stacklevel=3)

    def build() -> xr.Dataset:
        attrs = {"title": "spde_tokens density run", "engine": "density", "scheme": scheme,
                 "attention": equation.attention.method, "noise": "none",
                 "seed": "none" if seed is None else int(seed), **grid.attrs(), **times.attrs()}
        coords = {name: xr.Variable(*spec) for name, spec in grid.coords().items()}
        coords["degree"] = xr.Variable("degree", np.arange(grid.degree_max + 1), {"long_name": "harmonic degree",
                                                                                  "units": "1"})
        coords["component"] = xr.Variable("component", np.arange(grid.dim), {"long_name": "Cartesian component",
                                                                             "units": "1"})
        return recorder.dataset(_variables(grid), coords, attrs, model)

    record(0)
    with tqdm(total=times.n_steps, disable=not default_progress(progress), unit="step",
              desc=f"density {grid!r}") as bar:
        for step in range(1, times.n_steps + 1):
            with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is caught below, with its state
                new = stepper.step(equation.tendency, coeffs, times.dt)
            if not np.all(np.abs(new) <= blow_up):  # also catches NaN
                raise BlowUpError(f"the density became non-finite or unbounded at step {step} "
                                  f"(t = {step * times.dt:g}); the "
                                  f"records up to t = {recorder.times[-1]:g} are in .dataset and the last good "
                                  "state in .state", build(), grid.synthesis(coeffs))
            coeffs = new
            if times.is_record(step):
                record(step)
            bar.update()
    return build()
