"""Linear instability of the uniform state: the dispersion relation of softmax attention.

For SA with Q = K = V = I the velocity is X = (1/β) ∇_S log(G_β ρ). Linearized about the uniform density, a
perturbation of degree l grows at the rate

    S^2: σ_l = l(l + 1) i_l(β) / (β i_0(β))          S^1: σ_n = n² I_n(β) / (β I_0(β))

(i_l = ``scipy.special.spherical_in``, I_n = ``scipy.special.iv``). The case starts from the uniform density plus
ε = 1e-7 times one harmonic (S^2: order m = 1 — the full run adds m = l; S^1: wavenumber n), runs RK4 with 200 steps
to t = min(1, 3/σ) (the mode grows at most e^3-fold, to ≤ 2e-6, and stays linear) and measures
σ = log|c(t)/c(0)| / t from the mode's own coefficient, for degrees 1…6 and β ∈ {1, 5, 20}. The grid resolves the
kernel: lmax = max(16, ``resolving_degree``), the degree where the Funk–Hecke weights fall below 1e-16 (≈ 8.7 √β).

Tolerance: 1e-6 relative, from three sources. (i) Nonlinearity: the quadratic term of a single mode (l, m ≠ 0)
produces only orders 0 and 2m (cos² and cos·sin products on S^1: wavenumbers 0 and 2n), so the mode's own
coefficient feels it at third order, a relative O(ε² e^{2σt}) ≈ 1e-13 (an m = 0 mode of even l would see O(ε) ≈ 1e-7
and is not used). (ii) RK4: the growth factor per step is exact to (σ dt)^5/120, so σ has a relative error
(σ dt)^4/120 ≤ 4e-10 for σ t ≤ 3 in 200 steps. (iii) Rounding: ~1e-10 absolute on log|c| (transforms at 1e-16 of the
uniform part, seen through a mode 1e7 times smaller), i.e. a relative 1e-10/(σ t) ≤ 4e-7 for the slowest mode here
(σ ≈ 2.7e-4 at β = 1, l = 6 on S^2).

Cost: about 10 s (quick), 20 s (full). Run it with ``python validation/linear_growth.py [--quick] [-o FOLDER]``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.special import iv, spherical_in

import spde_tokens as st
from spde_tokens.grids import resolving_degree
from spde_tokens.validation.common import Row, check

NAME = "linear_growth"
TITLE = "Linear instability of the uniform state"

EPS = 1e-7
BETAS = (1.0, 5.0, 20.0)
DEGREES = (1, 2, 3, 4, 5, 6)
SPACES = ("S1", "S2")
#: S^2 orders measured: quick m = 1; full m = 1 and m = l
MODES = ("m=1", "m=l")
STEPS = 200
GROWTH = 3.0
MIN_LMAX = 16
TOLERANCE = 1e-6


def predicted_rate(dim: int, degree: int, beta: float) -> float:
    """σ_l = l(l+1) i_l(β)/(β i_0(β)) on S^2, n² I_n(β)/(β I_0(β)) on S^1 (ratios of scaled Bessel functions)."""
    if dim == 3:
        return float(degree * (degree + 1) * spherical_in(degree, beta) / (beta * spherical_in(0, beta)))
    return float(degree**2 * iv(degree, beta) / (beta * iv(0, beta)))


def perturbed_uniform(grid: st.CircleGrid | st.SphereGrid, degree: int, order: int | None,
                      eps: float = EPS) -> tuple[xr.DataArray, int, complex]:
    """Uniform density plus eps·(1 + 0.5i) times the harmonic (degree, order) (S^1: wavenumber ``degree``).

    Returns the density DataArray, the index of the coefficient and its initial value.
    """
    c = np.zeros(grid.n_coeff, complex)
    c[0] = 1.0 / np.sqrt(grid.area)
    if isinstance(grid, st.CircleGrid):  # S^1: the wavenumber alone
        idx = int(np.nonzero(grid.degrees == degree)[0][0])
    else:
        idx = int(np.nonzero((grid.degrees == degree) & (grid.orders == order))[0][0])
    c[idx] = eps * (1.0 + 0.5j)
    return st.initial.as_density(grid, grid.synthesis(c), normalize=False), idx, c[idx]


def measure_rate(grid: st.CircleGrid | st.SphereGrid, beta: float, degree: int,
                 order: int | None) -> tuple[float, float]:
    """(measured rate, t_end) of one perturbation run."""
    rate = predicted_rate(grid.dim, degree, beta)
    rho0, idx, c0 = perturbed_uniform(grid, degree, order)
    t_end = min(1.0, GROWTH / rate)
    ds = st.solve_density(st.AttentionModel(grid.dim, beta), None, rho0, t_end=t_end, dt=t_end / STEPS,
                          save_every=t_end, progress=False, engine="spectral")
    c1 = grid.analysis(ds["density"].isel(time=-1).values)[idx]
    return float(np.log(abs(c1) / abs(c0)) / t_end), t_end


def measure(quick: bool) -> tuple[list[Row], xr.Dataset]:
    """The rows and the Dataset of the case; ``quick``: S^2 perturbations of order m = 1 only (full: m = 1, l)."""
    shape = (len(SPACES), len(BETAS), len(DEGREES))
    predicted = np.empty(shape)
    measured = np.full((*shape, len(MODES)), np.nan)
    t_end = np.empty(shape)
    lmax = np.empty((len(SPACES), len(BETAS)), dtype=int)
    rows: list[Row] = []
    for i, space in enumerate(SPACES):
        dim = 2 if space == "S1" else 3
        for j, beta in enumerate(BETAS):
            lmax[i, j] = max(MIN_LMAX, resolving_degree(dim, beta))
            grid = st.CircleGrid(int(lmax[i, j])) if dim == 2 else st.SphereGrid(int(lmax[i, j]))
            for k, degree in enumerate(DEGREES):
                predicted[i, j, k] = predicted_rate(dim, degree, beta)
                orders = [None] if dim == 2 else ([1] if quick else sorted({1, degree}))
                for order in orders:
                    q = 0 if order in (None, 1) else 1
                    measured[i, j, k, q], t_end[i, j, k] = measure_rate(grid, beta, degree, order)
                rel = np.nanmax(np.abs(measured[i, j, k] / predicted[i, j, k] - 1.0))
                worst = measured[i, j, k, int(np.nanargmax(np.abs(measured[i, j, k] / predicted[i, j, k] - 1.0)))]
                what = "n" if dim == 2 else "l"
                modes = "" if dim == 2 else f", m ∈ {{{', '.join(str(o) for o in orders)}}}"
                formula = "n² I_n(β)/(β I_0(β))" if dim == 2 else "l(l+1) i_l(β)/(β i_0(β))"
                rows.append(check(NAME,
                    f"growth rate σ = {formula} on {space}, β = {beta:g}, {what} = {degree}{modes} ({grid!r}, "
                    f"t = {t_end[i, j, k]:.3g})", float(predicted[i, j, k]), worst,
                    f"relative {TOLERANCE:g}; measured relative error {rel:.1e}: nonlinear O(ε²) ≈ 1e-13 (single "
                    f"m ≠ 0 mode), RK4 (σ dt)^4/120 = {(predicted[i, j, k] * t_end[i, j, k] / STEPS) ** 4 / 120:.0e}, "
                    f"rounding 1e-10/(σ t) = {1e-10 / (predicted[i, j, k] * t_end[i, j, k]):.0e}",
                    rel <= TOLERANCE))
    return rows, _dataset(predicted, measured, t_end, lmax)


def _dataset(predicted, measured, t_end, lmax) -> xr.Dataset:
    one = {"units": "1"}
    dims = ("space", "beta", "degree")
    data = {
        "rate_predicted": (dims, predicted, {**one, "long_name": "linear growth rate from the dispersion relation"}),
        "rate_measured": ((*dims, "mode"), measured,
                          {**one, "long_name": "log|c(t)/c(0)|/t of the perturbed coefficient (NaN: not run)"}),
        "relative_error": ((*dims, "mode"), measured / predicted[..., None] - 1.0,
                           {**one, "long_name": "rate_measured / rate_predicted - 1"}),
        "t_end": (dims, t_end, {**one, "long_name": "duration of the run, min(1, 3/rate)"}),
        "lmax": (("space", "beta"), lmax, {**one, "long_name": "lmax (S^2) or largest wavenumber (S^1) of the grid"}),
    }
    coords = {
        "space": ("space", list(SPACES), {**one, "long_name": "sphere S^1 or S^2"}),
        "beta": ("beta", np.asarray(BETAS), {**one, "long_name": "inverse temperature"}),
        "degree": ("degree", np.asarray(DEGREES),
                   {**one, "long_name": "harmonic degree l (S^2) or wavenumber n (S^1)"}),
        "mode": ("mode", list(MODES), {**one, "long_name": "order m of the S^2 perturbation (S^1: first entry)"}),
    }
    attrs = {"eps": EPS, "steps": STEPS, "growth_budget": GROWTH, "scheme": "rk4",
             "model": "Q = K = V = I, softmax, no noise", "initial": "uniform + eps (1 + 0.5i) Y_lm"}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def plot(ds: xr.Dataset, path: str) -> None:
    """Dispersion relation per sphere: predicted (lines) and measured (markers) rate against degree, log scale;
    below, the relative error against the tolerance."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from spde_tokens.plot import DPI

    fig = Figure(figsize=(12, 8.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(SPACES), sharex=True)
    degree = ds["degree"].values
    dense = np.arange(1, degree.max() + 1)
    for i, space in enumerate(SPACES):
        dim = 2 if space == "S1" else 3
        ax_r, ax_e = axes[0, i], axes[1, i]
        for j, beta in enumerate(ds["beta"].values):
            colour = f"C{j}"
            ax_r.semilogy(dense, [predicted_rate(dim, int(l), float(beta)) for l in dense], "-", color=colour,
                          label=f"theory, β = {beta:g} (lmax {int(ds['lmax'].values[i, j])})")
            for q, (mode, marker) in enumerate(zip(MODES, ("o", "s"), strict=True)):
                rate = ds["rate_measured"].values[i, j, :, q]
                if np.all(np.isnan(rate)):
                    continue
                label = "measured" + ("" if dim == 2 else f", {mode}")
                ax_r.semilogy(degree, rate, marker, color=colour, mfc="none", ms=8 if q == 0 else 5,
                              label=f"{label}, β = {beta:g}")
                ax_e.semilogy(degree, np.maximum(np.abs(ds["relative_error"].values[i, j, :, q]), 1e-16), marker,
                              color=colour, mfc="none", ms=8 if q == 0 else 5, label=f"{label}, β = {beta:g}")
        formula = r"$n^2 I_n(\beta)/(\beta I_0(\beta))$" if dim == 2 else r"$l(l+1)\,i_l(\beta)/(\beta\, i_0(\beta))$"
        ax_r.set_ylabel("growth rate σ")
        ax_r.set_title(f"$S^{space[1]}$: dispersion relation σ = {formula}", fontsize=10)
        ax_r.legend(fontsize=7, ncol=2)
        ax_r.grid(alpha=0.3, which="both")
        ax_e.axhline(TOLERANCE, color="C3", ls=":", label=f"tolerance {TOLERANCE:g}")
        ax_e.set_xlabel("degree l" if dim == 3 else "wavenumber n")
        ax_e.set_ylabel("|σ_measured / σ_theory − 1|")
        ax_e.set_title(f"$S^{space[1]}$: relative error", fontsize=10)
        ax_e.legend(fontsize=7, ncol=2)
        ax_e.grid(alpha=0.3, which="both")
    fig.suptitle(f"{TITLE}: SA, Q = K = V = I, perturbation ε = {ds.attrs['eps']:g}, RK4 with "
                 f"{ds.attrs['steps']} steps")
    fig.savefig(path, dpi=DPI)
