"""Energy and mass along the deterministic flow: E_beta nondecreasing, ∫ρ conserved.

For Q = K = V = I, no noise and softmax attention, the density equation ∂_t ρ = −div_S(ρ X[ρ]) is the Wasserstein
gradient ascent of the interaction energy E_beta[ρ] = (1/(2 beta)) ∫∫ expm1(beta x·y) dρ dρ (½|m|² at beta = 0),
so E_beta is nondecreasing (docs/mathematics.md, 'Diagnostics'); the equation is in divergence form, so the mass
∫ ρ dA is conserved exactly. Both hold for the spectral scheme up to rounding: the divergence has no degree-0
coefficient, and E is a spectral sum.

Runs: the 3-bump von Mises–Fisher mixture of ``tests/test_density.py`` (weights 0.4, 0.35, 0.25; kappas 3, 4, 5) on
S^1 and S^2, beta ∈ {0, 1, 5}, RK4 with dt = 0.01, a record at every step. Quick: ``CircleGrid(48)`` and
``SphereGrid(64)`` to t = 2; full: ``CircleGrid(128)`` and ``SphereGrid(96)`` to t = 2.5. The claims are about the
equation, so they are checked only where the grid resolves it: the bumps sharpen exponentially in t, and the grids are
sized so that the spectral tail stays below 1e-10 to the end (measured first crossings: SphereGrid(24) at t = 1.1,
SphereGrid(48) at 2.0 for beta = 5, SphereGrid(96) at 2.7, SphereGrid(128) at 3.0, CircleGrid(96) at 2.9 and
CircleGrid(128) at 3.2); ``CircleGrid(48)`` stays below 4e-11 to t = 2.

Rows per run: the largest |mass − 1| (≤ 1e-12), the largest one-step decrease of E relative to max|E| (≤ 1e-13,
rounding of the spectral sum) and the final spectral tail (< 1e-10, the solver's under-resolution alarm). The flow
contracts every bump towards a point (at beta = 0 the whole mass collapses to one Dirac mass), so the density sharpens
without bound and any fixed grid is eventually under-resolved: the tail row reports when that happens (the first time
the tail exceeds 1e-10, and min ρ, which a truncated spectrum drives negative). The solver's ``ResolutionWarning``
is not suppressed.

Cost: about 10 s (quick) and 40 s (full). Run it with ``python validation/energy_mass.py [--quick] [-o FOLDER]``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

import spde_tokens as st
from spde_tokens.density import TAIL_WARNING
from spde_tokens.validation.common import Row, check

NAME = "energy_mass"
TITLE = "Energy and mass along the deterministic flow"

BETAS = (0.0, 1.0, 5.0)
DT = 0.01
WEIGHTS = (0.4, 0.35, 0.25)
KAPPAS = (3.0, 4.0, 5.0)
MEANS = {2: ((1.0, 0.0), (-0.6, 0.8), (0.0, -1.0)), 3: ((0.0, 0.0, 1.0), (1.0, 0.0, 0.2), (-0.5, 0.8, -0.3))}
#: (space, grid size, t_end) for quick and full runs
RESOLUTION = {True: (("S1", 48), ("S2", 64), 2.0), False: (("S1", 128), ("S2", 96), 2.5)}
MASS_TOLERANCE = 1e-12
ENERGY_TOLERANCE = 1e-13


def _grid(space: str, size: int):
    return st.CircleGrid(size) if space == "S1" else st.SphereGrid(size)


def measure(quick: bool) -> tuple[list[Row], xr.Dataset]:
    """The rows and the Dataset of the case; ``quick``: smaller grids and t ≤ 2 (module docstring)."""
    *spaces, t_end = RESOLUTION[bool(quick)]
    n_time = int(round(t_end / DT)) + 1
    shape = (len(spaces), len(BETAS), n_time)
    series = {name: np.empty(shape) for name in ("energy", "mass", "spectral_tail", "min_density", "max_density",
                                                  "dispersion")}
    rows: list[Row] = []
    for i, (space, size) in enumerate(spaces):
        grid = _grid(space, size)
        rho0 = st.initial.mixture(grid, WEIGHTS, MEANS[grid.dim], KAPPAS)
        for j, beta in enumerate(BETAS):
            ds = st.solve_density(st.AttentionModel(grid.dim, beta), None, rho0, t_end=t_end, dt=DT, save_every=DT,
                                  progress=False, engine="spectral")
            time = ds["time"].values
            for name in ("energy", "mass", "spectral_tail", "min_density", "dispersion"):
                series[name][i, j] = ds[name].values
            series["max_density"][i, j] = ds["density"].max(dim=grid.dims).values
            rows += _run_rows(f"{grid!r}, β = {beta:g}, t ≤ {t_end:g}", time,
                              {name: values[i, j] for name, values in series.items()})
    return rows, _dataset(spaces, time, series, t_end)


def _run_rows(label: str, time: np.ndarray, s: dict) -> list[Row]:
    mass_err = float(np.abs(s["mass"] - 1.0).max())
    e = s["energy"]
    decrease = float(max(0.0, -np.diff(e).min()) / np.abs(e).max())
    tail = float(s["spectral_tail"][-1])
    above = np.nonzero(s["spectral_tail"] > TAIL_WARNING)[0]
    first = f"first above {TAIL_WARNING:g} at t = {time[above[0]]:g}" if above.size else f"never above {TAIL_WARNING:g}"
    ratio = float((s["min_density"] / s["max_density"]).min())
    return [
        check(NAME, f"{label}: max abs(mass − 1)", f"≤ {MASS_TOLERANCE:g}", mass_err,
              "rounding: div_S(ρX) has no degree-0 coefficient, so ρ_00 changes by ~1e-16 per RK stage",
              mass_err <= MASS_TOLERANCE),
        check(NAME, f"{label}: largest decrease of E_β over one step / max abs(E_β)", f"≤ {ENERGY_TOLERANCE:g}",
              decrease,
              "E_β is nondecreasing along the Q = K = V = I flow (gradient ascent); the tolerance is rounding of the "
              "spectral sum Σ e_l P_l (~1e-16 relative)", decrease <= ENERGY_TOLERANCE),
        check(NAME, f"{label}: final spectral tail", f"< {TAIL_WARNING:g}", tail,
              f"the solver's under-resolution alarm (docs/mathematics.md, 'Time stepping'); {first}; "
              f"min ρ / max ρ over the run = {ratio:.2g}",
              tail < TAIL_WARNING),
    ]


def _dataset(spaces, time, series, t_end) -> xr.Dataset:
    one = {"units": "1"}
    dims: tuple[str, ...] = ("space", "beta", "time")
    names = {"energy": "interaction energy E_beta", "mass": "total mass int rho dA",
             "spectral_tail": "share of power at degrees >= 0.9 lmax", "min_density": "minimum of the density",
             "max_density": "maximum of the density", "dispersion": "dispersion 1 - |m|^2"}
    data = {name: (dims, series[name], {**one, "long_name": long}) for name, long in names.items()}
    data["grid_size"] = (("space",), np.array([size for _, size in spaces]),
                         {**one, "long_name": "lmax (S^2) or largest wavenumber n (S^1)"})
    coords = {
        "space": ("space", [space for space, _ in spaces], {**one, "long_name": "sphere S^1 or S^2"}),
        "beta": ("beta", np.asarray(BETAS), {**one, "long_name": "inverse temperature"}),
        "time": ("time", time, {**one, "long_name": "depth t (dimensionless)"}),
    }
    attrs = {"t_end": t_end, "dt": DT, "scheme": "rk4", "initial": "mixture", "weights": np.asarray(WEIGHTS),
             "kappas": np.asarray(KAPPAS), "means_s1": np.ravel(MEANS[2]), "means_s2": np.ravel(MEANS[3]),
             "model": "Q = K = V = I, softmax, no noise"}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def plot(ds: xr.Dataset, path: str) -> None:
    """Per sphere: normalized energy gain, |mass − 1| and the spectral tail against depth, one curve per beta."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from spde_tokens.plot import DPI, TIME_LABEL

    fig = Figure(figsize=(15, 8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(ds.sizes["space"], 3, squeeze=False)
    t = ds["time"].values
    floor = 1e-18
    for i, space in enumerate(ds["space"].values):
        size = int(ds["grid_size"].values[i])
        grid = f"CircleGrid({size})" if space == "S1" else f"SphereGrid({size})"
        ax_e, ax_m, ax_t = axes[i]
        for j, beta in enumerate(ds["beta"].values):
            e = ds["energy"].values[i, j]
            gain = (e - e[0]) / (e.max() - e[0]) if e.max() > e[0] else np.zeros_like(e)
            ax_e.plot(t, gain, color=f"C{j}", label=f"β = {beta:g}: E from {e[0]:.4g} to {e[-1]:.4g}")
            ax_m.semilogy(t, np.maximum(np.abs(ds["mass"].values[i, j] - 1.0), floor), color=f"C{j}",
                          label=f"β = {beta:g}")
            ax_t.semilogy(t, np.maximum(ds["spectral_tail"].values[i, j], 1e-300), color=f"C{j}",
                          label=f"β = {beta:g}")
        ax_e.set_ylabel("(E_β(t) − E_β(0)) / (max E_β − E_β(0))")
        ax_e.set_title(f"$S^{space[1]}$, {grid}: energy gain (nondecreasing)", fontsize=10)
        ax_m.axhline(MASS_TOLERANCE, color="C3", ls=":", label="tolerance 1e-12")
        ax_m.set_ylabel(f"|mass − 1| (zeros shown at {floor:g})")
        ax_m.set_title(f"$S^{space[1]}$: mass error", fontsize=10)
        ax_t.axhline(TAIL_WARNING, color="C3", ls=":", label=f"under-resolution alarm {TAIL_WARNING:g}")
        ax_t.set_ylabel("spectral tail")
        ax_t.set_title(f"$S^{space[1]}$: spectral tail", fontsize=10)
        for ax in (ax_e, ax_m, ax_t):
            ax.set_xlabel(TIME_LABEL)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(f"{TITLE}: Q = K = V = I, softmax, 3-bump mixture, RK4 dt = {ds.attrs['dt']:g}")
    fig.savefig(path, dpi=DPI)
