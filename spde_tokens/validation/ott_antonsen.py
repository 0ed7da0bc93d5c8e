"""Ott–Antonsen reduction on S^1: the Kuramoto model of identical oscillators.

With beta = 0, no noise and Q = K = V = I on S^1 the drift is X(x) = P_x m (uniform attention: a = m, the mean
token). A Poisson kernel f_z(θ) = (1 − |z|²)/|e^{iθ} − z|² (density w.r.t. dθ/2π; ρ = f_z/(2π) w.r.t. arc length)
stays a Poisson kernel, and its radius r = |z| = |m| solves ṙ = ½ r (1 − r²), so

    r(t)² = r₀² eᵗ / (1 − r₀² + r₀² eᵗ).

Checks, with z₀ = 0.5 and t ∈ [0, 2]:

* the density solver on ``CircleGrid(256)`` at dt = 1e-3 against the exact Poisson kernel of radius r(t): RK4 within
  1e-10, Heun within 1e-6 (relative max-norm error over all records; a stepper of order p has the global error
  C dt^p, so the thresholds admit an error constant C up to 100 for RK4 and 1 for Heun; the spatial truncation
  r^257 ≈ 1e-19 is far below both);
* the observed temporal orders of ``rk4``, ``rk3`` and ``heun`` over dt ∈ {0.1, 0.05, 0.025} against a dt = 1e-3
  reference on ``CircleGrid(24)``. At n = 256, dt = 0.1 moves the top mode through λ = n |m| dt ≈ 21 radians per step,
  far beyond the transport stability of any explicit scheme (RK4: λ ≤ 2√2, docs/mathematics.md); at n = 24 the
  phase is λ ≈ 2.4·|m| ≤ 2. That grid truncates the Poisson kernel (spectral tail ~1e-3 at t = 2), but the truncation
  is common to every run and the reference, so the differences measure the time discretization alone;
* tokens: 16 independent draws of N = 10⁴ (quick: 2000) tokens from the initial Poisson kernel, moved by
  ``simulate_particles`` with ``scheme="flow"`` (RK4, dt = 0.01): the mean over the draws of |m̂(t)| − r(t) stays
  within 4 standard errors of 0, the standard error taken from the spread of the draws. At t = 0 that spread is
  sqrt((1 − r₀²)/(2N)) (the variance of cos θ under a Poisson kernel of radius r is (1 − r²)/2), which is checked too.
  For t > 0 the one-draw formula sqrt((1 − r(t)²)/(2N)) is *not* the standard error of |m̂(t)|: the sampling error
  of m̂ also drives the flow (ẋ = P_x m̂) and is propagated by it (200 draws of N = 2000 give a spread of 1.05, 1.32,
  1.43 times the formula at t = 0, 0.8, 2), so a single draw can leave a 4-sqrt((1 − r²)/(2N)) band without any
  error in the solver.

Cost: about 10 s (quick) and 20 s (full: larger N). Run it with
``python validation/ott_antonsen.py [--quick] [-o FOLDER]``.
"""

from __future__ import annotations

import warnings

import numpy as np
import numpy.typing as npt
import xarray as xr

import spde_tokens as st
from spde_tokens.steppers import SCHEMES
from spde_tokens.validation.common import Row, check

NAME = "ott_antonsen"
TITLE = "Ott–Antonsen reduction on S^1"

R0 = 0.5
T_END = 2.0
DT_FINE = 1e-3
SAVE_EVERY = 0.1
N_FINE = 256
N_ORDER = 24
ORDER_DTS = (0.1, 0.05, 0.025)
ORDER_TOLERANCE = 0.15
#: acceptance of the density error at dt = 1e-3: C dt^p with an error constant C ≤ 100 (rk4) and ≤ 1 (heun)
ERROR_TOLERANCE = {"rk4": 1e-10, "heun": 1e-6}
TOKEN_DT = 0.01
TOKEN_SEED = 2024
#: independent token draws (the standard error of their mean comes from their spread)
DRAWS = 16
STANDARD_ERRORS = 4.0


def exact_radius(t: npt.ArrayLike, r0: float = R0) -> np.ndarray:
    """r(t) = sqrt(r₀² eᵗ / (1 − r₀² + r₀² eᵗ)), the solution of ṙ = ½ r (1 − r²)."""
    e = np.exp(np.asarray(t, dtype=float))
    return np.sqrt(r0**2 * e / (1.0 - r0**2 + r0**2 * e))


def exact_density(theta: np.ndarray, r: npt.ArrayLike) -> np.ndarray:
    """ρ(θ) = (1 − r²)/(2π (1 − 2 r cos θ + r²)) for every radius in ``r`` (shape (len(r), len(theta)))."""
    r = np.asarray(r, dtype=float)[:, None]
    return (1.0 - r**2) / (2.0 * np.pi * (1.0 - 2.0 * r * np.cos(theta)[None, :] + r**2))


def token_radii(grid: st.CircleGrid, n_tokens: int, draws: int, seed: int) -> np.ndarray:
    """‖m̂(t)‖ at the records for ``draws`` independent samples of N tokens.

    The samples are disjoint slices of one i.i.d. sample of draws·N tokens (independent, and one rejection-sampling
    call instead of ``draws``).
    """
    pool = st.initial.sample(st.initial.poisson_kernel(grid, [R0, 0.0]), draws * n_tokens, seed=seed)
    out = []
    for x0 in pool.reshape(draws, n_tokens, 2):
        parts = st.simulate_particles(st.AttentionModel(2, 0.0), None, x0, t_end=T_END, dt=TOKEN_DT, scheme="flow",
                                      save_every=SAVE_EVERY, progress=False)
        out.append(np.linalg.norm(parts["mean_vector"].values, axis=1))
    return np.array(out)


def _solve(grid, scheme: str, dt: float, save_every: float) -> xr.Dataset:
    rho0 = st.initial.poisson_kernel(grid, [R0, 0.0])
    return st.solve_density(st.AttentionModel(2, 0.0), None, rho0, t_end=T_END, dt=dt, save_every=save_every,
                            scheme=scheme, progress=False, engine="spectral")


def _beyond_stability(scheme: str, n: int, dt: float) -> bool:
    """The solver's own criterion (density._check_transport_stability): |R(iλ)|^steps > 10 at λ = n dt."""
    growth = SCHEMES[scheme].amplification(1j * n * dt)
    return growth > 1.0 and round(T_END / dt) * np.log(growth) > np.log(10.0)


def _order_run(scheme: str, dt: float) -> xr.Dataset:
    """A CircleGrid(24) run. Its spectral-tail warning is expected (the truncation is deliberate, see the module
    docstring) and so is the transport-stability warning where the step is deliberately beyond it (Heun at every
    coarse step, rk3 at dt = 0.1); only those two messages are suppressed."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="under-resolved", category=st.ResolutionWarning)
        if _beyond_stability(scheme, N_ORDER, dt):
            warnings.filterwarnings("ignore", message=".*beyond the transport stability",
                                    category=st.ResolutionWarning)
        return _solve(st.CircleGrid(N_ORDER), scheme, dt, T_END)


def measure(quick: bool) -> tuple[list[Row], xr.Dataset]:
    """The rows and the Dataset of the case; ``quick``: N = 2000 tokens per draw instead of 10⁴."""
    rows: list[Row] = []

    # 1. density against the exact Poisson kernel
    grid = st.CircleGrid(N_FINE)
    theta = np.asarray(grid.coords()["theta"][1], dtype=float)
    fine = {scheme: _solve(grid, scheme, DT_FINE, SAVE_EVERY) for scheme in ("rk4", "heun")}
    time = fine["rk4"]["time"].values
    r_exact = exact_radius(time)
    rho_exact = exact_density(theta, r_exact)
    errors = {}
    for scheme, ds in fine.items():
        err = np.abs(ds["density"].values - rho_exact).max(axis=1) / rho_exact.max(axis=1)
        errors[scheme] = err
        tol = ERROR_TOLERANCE[scheme]
        order = SCHEMES[scheme].order
        rows.append(check(NAME, f"max relative density error, {scheme}, CircleGrid({N_FINE}), dt = {DT_FINE:g}, "
                           f"t ≤ {T_END:g}", f"≤ {tol:g}", err.max(),
                           f"global error C dt^{order} = {DT_FINE**order:g} C of an order-{order} stepper, admitting "
                           f"an error constant C ≤ {tol / DT_FINE**order:g}; spatial truncation r^{N_FINE + 1} < 1e-19 "
                           "is negligible", err.max() <= tol))

    # 2. temporal orders on CircleGrid(24)
    schemes = sorted(SCHEMES, key=lambda s: -SCHEMES[s].order)
    order_err = np.empty((len(schemes), len(ORDER_DTS)))
    order_tail = np.empty(len(schemes))
    for i, scheme in enumerate(schemes):
        ref_ds = _order_run(scheme, DT_FINE)
        ref = ref_ds["density"].isel(time=-1).values
        order_tail[i] = float(ref_ds["spectral_tail"].max())
        for j, dt in enumerate(ORDER_DTS):
            order_err[i, j] = np.abs(_order_run(scheme, dt)["density"].isel(time=-1).values - ref).max()
    observed = np.log2(order_err[:, :-1] / order_err[:, 1:])
    for i, scheme in enumerate(schemes):
        expected = SCHEMES[scheme].order
        for j in range(len(ORDER_DTS) - 1):
            p = observed[i, j]
            rows.append(check(NAME,
                f"observed temporal order, {scheme}, dt {ORDER_DTS[j]:g} → {ORDER_DTS[j + 1]:g}, CircleGrid({N_ORDER})",
                expected, p,
                f"±{ORDER_TOLERANCE:g}: with error C dt^p (1 + D dt) the halving ratio gives p + D dt/(2 ln 2), "
                "so ±0.15 admits D dt ≤ 0.2 at the coarser step; "
                f"n = {N_ORDER} because at n = {N_FINE} dt = 0.1 gives λ = n|m|dt ≈ 21 ≫ 2√2 (explicit transport "
                f"stability, docs/mathematics.md), here λ ≤ 2.4; reference dt = {DT_FINE:g} on the same grid "
                f"(its own error ≤ (dt_ref/0.025)^p ≈ 2e-3 of the smallest difference), spatial truncation "
                f"(tail {order_tail[i]:.0e}) common to all runs", abs(p - expected) <= ORDER_TOLERANCE))

    # 3. tokens drawn from the Poisson kernel: an ensemble of independent draws
    n_tokens = 2000 if quick else 10_000
    r_tokens = token_radii(grid, n_tokens, DRAWS, TOKEN_SEED)
    dev = r_tokens - r_exact
    se0 = np.sqrt((1.0 - r_exact**2) / (2.0 * n_tokens))
    spread = dev.std(axis=0, ddof=1)
    se_mean = spread / np.sqrt(DRAWS)
    tmax = float(np.abs(dev.mean(axis=0) / se_mean).max())
    rows.append(check(NAME, f"max over t of abs(mean over {DRAWS} draws of ‖m̂(t)‖ − r(t)) / SE of the mean, "
                      f"N = {n_tokens}, flow dt = {TOKEN_DT:g}", f"≤ {STANDARD_ERRORS:g}", tmax,
                      f"{STANDARD_ERRORS:g} standard errors of the mean over {DRAWS} independent draws (disjoint "
                      f"slices of one sample, seed {TOKEN_SEED}), SE from their spread (Student t, {DRAWS - 1} dof: "
                      "P(|t| > 4) ≈ 1e-3 per record); "
                      f"the spread is {spread[-1] / se0[-1]:.2f} × sqrt((1 − r²)/(2N)) at t = {T_END:g}: for t > 0 "
                      "the sampling error of m̂ feeds back through the drift, so the one-draw formula is not the "
                      "standard error there; bias of ‖m̂‖ (1 − r²)/(4Nr) and RK4 (~1e-9) are negligible",
                      tmax <= STANDARD_ERRORS))
    ratio0 = float(spread[0] / se0[0])
    band = STANDARD_ERRORS / np.sqrt(2.0 * (DRAWS - 1))
    rows.append(check(NAME, f"spread of ‖m̂(0)‖ over {DRAWS} draws / sqrt((1 − r₀²)/(2N)), N = {n_tokens}", 1.0,
                      ratio0, f"±{band:.2f} = 4 relative standard errors 1/sqrt(2({DRAWS} − 1)) of a sample standard "
                      "deviation; at t = 0 the tokens are i.i.d. from the Poisson kernel, where "
                      "Var(cos θ) = (1 − r²)/2 (tests st.initial.sample)", abs(ratio0 - 1.0) <= band))

    return rows, _dataset(time, theta, r_exact, fine, rho_exact, errors, schemes, order_err, observed, r_tokens, se0,
                          n_tokens)


def _dataset(time, theta, r_exact, fine, rho_exact, errors, schemes, order_err, observed, r_tokens, se0,
             n_tokens) -> xr.Dataset:
    one = {"units": "1"}
    data = {
        "r_exact": (("time",), r_exact, {**one, "long_name": "Ott-Antonsen radius r(t) (exact)"}),
        "r_density_rk4": (("time",), np.linalg.norm(fine["rk4"]["mean_vector"].values, axis=1),
                          {**one, "long_name": "|m| of the density, rk4, dt = 1e-3"}),
        "r_tokens": (("draw", "time"), r_tokens,
                     {**one, "long_name": "|mean token| of the particles (flow, dt = 0.01), independent draws"}),
        "r_tokens_se0": (("time",), se0, {**one, "long_name": "sqrt((1 - r^2)/(2N)): the standard error of "
                                                             "|mean token| for N i.i.d. tokens of the Poisson kernel"}),
        "density_rk4": (("time", "theta"), fine["rk4"]["density"].values,
                        {**one, "long_name": "density w.r.t. arc length, rk4, dt = 1e-3"}),
        "density_heun": (("time", "theta"), fine["heun"]["density"].values,
                         {**one, "long_name": "density w.r.t. arc length, heun, dt = 1e-3"}),
        "density_exact": (("time", "theta"), rho_exact,
                          {**one, "long_name": "exact Poisson kernel of radius r(t) w.r.t. arc length"}),
        "error_rk4": (("time",), errors["rk4"], {**one, "long_name": "max relative density error, rk4"}),
        "error_heun": (("time",), errors["heun"], {**one, "long_name": "max relative density error, heun"}),
        "order_error": (("scheme", "dt"), order_err,
                        {**one, "long_name": "max |density(dt) - density(dt = 1e-3)| at t = 2 on CircleGrid(24)"}),
        "observed_order": (("scheme", "dt_pair"), observed,
                           {**one, "long_name": "log2 of successive error ratios"}),
        "expected_order": (("scheme",), np.array([SCHEMES[s].order for s in schemes], dtype=float),
                           {**one, "long_name": "order of the scheme"}),
    }
    coords = {
        "time": ("time", time, {**one, "long_name": "depth t (dimensionless)"}),
        "theta": ("theta", theta, {"units": "radian", "long_name": "angle on S^1"}),
        "scheme": ("scheme", list(schemes), {**one, "long_name": "Runge-Kutta scheme"}),
        "dt": ("dt", np.asarray(ORDER_DTS), {**one, "long_name": "time step of the convergence runs"}),
        "draw": ("draw", np.arange(r_tokens.shape[0]), {**one, "long_name": "independent draw of the tokens"}),
        "dt_pair": ("dt_pair", np.arange(len(ORDER_DTS) - 1), {**one, "long_name": "pair (dt_k, dt_k+1)"}),
    }
    attrs = {"r0": R0, "t_end": T_END, "dt_fine": DT_FINE, "grid_n": N_FINE, "order_grid_n": N_ORDER,
             "n_tokens": n_tokens, "token_draws": r_tokens.shape[0], "token_seed": TOKEN_SEED, "token_dt": TOKEN_DT,
             "beta": 0.0, "model": "beta = 0, Q = K = V = I, softmax (uniform attention), no noise",
             "suppressed_warnings": "CircleGrid(24) convergence runs only: 'under-resolved' (deliberate truncation) "
                                    "and 'beyond the transport stability' where the step is deliberately unstable "
                                    "(heun, rk3 at dt = 0.1)"}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def plot(ds: xr.Dataset, path: str) -> None:
    """r(t) exact vs density vs tokens; density profiles vs exact; convergence of the schemes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from spde_tokens.plot import DPI, TIME_LABEL

    fig = Figure(figsize=(15, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_r, ax_p, ax_c = fig.subplots(1, 3)
    t = ds["time"].values
    tt = np.linspace(0.0, float(t[-1]), 400)
    ax_r.plot(tt, exact_radius(tt), "k-", lw=1.5, label="exact $r(t)$ (Ott–Antonsen)")
    ax_r.plot(t, ds["r_density_rk4"].values, "o", mfc="none", color="C0", ms=7,
              label=f"density, RK4, CircleGrid({ds.attrs['grid_n']})")
    draws = ds["r_tokens"].values
    mean, k = draws.mean(axis=0), draws.shape[0]
    half = 4 * draws.std(axis=0, ddof=1) / np.sqrt(k)
    ax_r.plot(t, draws[0], "x", color="C2", ms=5, label=f"one draw of N = {ds.attrs['n_tokens']} tokens (flow)")
    ax_r.errorbar(t, mean, yerr=half, fmt="s", color="C1", ms=4, capsize=2,
                  label=f"mean of {k} draws ± 4 standard errors")
    ax_r.set_xlabel(TIME_LABEL)
    ax_r.set_ylabel("order parameter $r = |m|$")
    ax_r.set_title("radius of the Poisson kernel")
    ax_r.legend(fontsize=8)
    ax_r.grid(alpha=0.3)

    theta = np.mod(ds["theta"].values + np.pi, 2 * np.pi) - np.pi  # the peak at θ = 0 in the middle
    order = np.argsort(theta)
    theta = theta[order]
    for k, colour in zip(np.linspace(0, t.size - 1, 4).round().astype(int), ("C0", "C1", "C2", "C3"), strict=True):
        ax_p.plot(theta, ds["density_rk4"].values[k, order], "-", color=colour, lw=1.5, label=f"RK4, t = {t[k]:g}")
        ax_p.plot(theta[::12], ds["density_exact"].values[k, order][::12], "o", color=colour, mfc="none", ms=5)
    ax_p.plot([], [], "ko", mfc="none", label="exact Poisson kernel")
    ax_p.set_xlabel("θ (radian)")
    ax_p.set_ylabel("density ρ (per unit arc length)")
    ax_p.set_title("density profiles")
    ax_p.legend(fontsize=8)
    ax_p.grid(alpha=0.3)

    dts = ds["dt"].values
    for i, scheme in enumerate(ds["scheme"].values):
        err = ds["order_error"].values[i]
        p = int(ds["expected_order"].values[i])
        observed = ", ".join(f"{q:.2f}" for q in ds["observed_order"].values[i])
        (line,) = ax_c.loglog(dts, err, "o-", label=f"{scheme}: observed orders {observed}")
        ax_c.loglog(dts, err[-1] * (dts / dts[-1]) ** p, ":", color=line.get_color(), label=f"slope {p}")
    ax_c.set_xlabel("time step dt")
    ax_c.set_ylabel("max |ρ(dt) − ρ(dt = 1e-3)| at t = 2")
    ax_c.set_title(f"temporal convergence, CircleGrid({ds.attrs['order_grid_n']})")
    ax_c.legend(fontsize=7, loc="upper left")
    ax_c.grid(alpha=0.3, which="both")
    fig.suptitle(f"Ott–Antonsen reduction on $S^1$: β = 0, Q = K = V = I, z₀ = {ds.attrs['r0']:g}")
    fig.savefig(path, dpi=DPI)
