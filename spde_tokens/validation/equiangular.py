"""Equiangular tokens: n tokens with all pairwise inner products equal to r follow a scalar ODE.

With Q = K = V = I and no noise, a configuration whose Gram matrix is (1 − r) I + r 𝟙𝟙ᵀ stays one (the dynamics
commutes with permutations of the tokens), and r solves

    SA:  ṙ = 2 e^{βr}(1 − r)((n − 1)r + 1) / (e^{β} + (n − 1) e^{βr}),
    USA: ṙ = (2/n) e^{βr}(1 − r)((n − 1)r + 1).

The regular simplex r = −1/(n − 1) is an equilibrium, so the runs start elsewhere: n = d = 4 with r₀ = −0.2 and
n = 6 tokens in d = 8 with r₀ = 0.3 (n = 6 with r₀ = −0.2 would be the simplex), for SA and USA and
beta ∈ {0.5, 2, 8}, twelve settings. The tokens are built as v_i = e_i + c 𝟙 in R^n, normalized, padded to R^d and
turned by a fixed random rotation (so nothing is aligned with the axes). The scalar ODE is solved by
``scipy.integrate.solve_ivp`` (DOP853, rtol 1e-12, atol 1e-14).

**Horizon and steps.** The settings run on very different clocks: the fastest linear rate Λ = max|∂ṙ/∂r| along the
trajectory ranges from 1e-3 (SA, β = 8, n = 4: the tokens sit near the simplex, metastable) to 200 (USA, β = 8, n = 6:
e^{βr} at r ≥ 0.3). A fixed horizon t = 1 with dt = 0.01 would leave the first with nothing to measure (r moves by
6e-5, RK4 errors below rounding) and the second beyond explicit stability (Λ dt ≈ 0.55 at t = 0 and 60 at the
consensus it reaches before t = 0.1; the particles blow up at dt = 0.04). So each setting runs over three of its own
fastest time scales: t_end = T with T · max_{[0,T]} |∂ṙ/∂r| = 3 (rounded to 3 digits), and the steps are T/25, T/50,
T/100 (Λ dt ≤ 0.12, 0.06, 0.03). For eight of the twelve settings T lies between 1.1 and 3.8, i.e. the finest step is
dt = 0.011 … 0.038, close to the dt = 0.01 of a unit horizon.

Rows per setting: equiangularity (spread of the off-diagonal Gram entries over every run and record < 1e-12), the
final error in r of ``scheme="flow"`` at dt = T/100 (< 1e-8) and the observed orders of ``"layer"`` (1) and
``"flow"`` (4) from the steps T/50 and T/100 (± 0.3).

**Off-sphere stages.** ``scheme="flow"`` evaluates its RK4 stages at points y = x + ½ k off the unit sphere, where
``tangent_projection`` (a − (y·a) y, tangent only for |y| = 1) leaves a radial component that relaxes at the rate
2 x·a. That is a time scale of the scheme, not of the dynamics on the sphere: ≈ 2 for SA at large β (the token
attends mostly to itself) and ≈ 2 e^β/n for USA. Each flow row reports 2 x·a dt, so a failure of the error row can be
told apart from a failure of the order.

Cost: a few seconds (quick and full are the same). Run it with ``python validation/equiangular.py [-o FOLDER]``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.integrate import solve_ivp

import spde_tokens as st
from spde_tokens.validation.common import Row, check

NAME = "equiangular"
TITLE = "Equiangular tokens"

#: (n tokens, dimension d, initial inner product r0)
CONFIGS = ((4, 4, -0.2), (6, 8, 0.3))
BETAS = (0.5, 2.0, 8.0)
NORMALIZATIONS = ("softmax", "unnormalized")
SCHEMES = {"layer": 1, "flow": 4}
#: steps per horizon T: dt = T/25, T/50, T/100
STEPS = (25, 50, 100)
RECORDS = 25
#: the horizon covers this many of the fastest linear time scales 1/max|∂ṙ/∂r|
HORIZON_RATES = 3.0
HORIZON_SEARCH = 1e4
SPREAD_TOLERANCE = 1e-12
FLOW_ERROR_TOLERANCE = 1e-8
ORDER_TOLERANCE = 0.3
#: bound on the error of the solve_ivp reference (rtol 1e-12, |r| ≤ 1)
REFERENCE_ERROR = 1e-12
ROTATION_SEED = 11


def rate(r: float | np.ndarray, n: int, beta: float, normalization: str) -> float | np.ndarray:
    """ṙ (module docstring) for n equiangular tokens (SA: ``"softmax"``, USA: ``"unnormalized"``)."""
    common = 2.0 * np.exp(beta * r) * (1.0 - r) * ((n - 1) * r + 1.0)
    if normalization == "softmax":
        return common / (np.exp(beta) + (n - 1) * np.exp(beta * r))
    return common / n


def rate_derivative(r: float | np.ndarray, n: int, beta: float, normalization: str) -> float | np.ndarray:
    """∂ṙ/∂r by the product and quotient rules (finite at consensus r = 1, where USA gives −2 e^β)."""
    e = np.exp(beta * r)
    common = 2.0 * e * (1.0 - r) * ((n - 1) * r + 1.0)
    d_common = 2.0 * e * (beta * (1.0 - r) * ((n - 1) * r + 1.0) - ((n - 1) * r + 1.0) + (1.0 - r) * (n - 1))
    if normalization == "softmax":
        den = np.exp(beta) + (n - 1) * e
        return (d_common * den - common * (n - 1) * beta * e) / den**2
    return d_common / n


def radial_rate(r: float | np.ndarray, n: int, beta: float, normalization: str) -> float | np.ndarray:
    """2 x·a at an equiangular configuration: the radial rate of the field's extension off the sphere.

    ``tangent_projection`` computes a − (y·a) y, which is tangent only for |y| = 1; at the RK4 stage points of the
    flow scheme (off the sphere) it pushes |y| back at the rate 2 x·a, a time scale of the scheme, not of the dynamics
    on the sphere. x·a = (e^β + (n − 1) r e^{βr})/(e^β + (n − 1) e^{βr}) (SA) or (e^β + (n − 1) r e^{βr})/n (USA).
    """
    num = np.exp(beta) + (n - 1) * r * np.exp(beta * r)
    if normalization == "softmax":
        return 2.0 * num / (np.exp(beta) + (n - 1) * np.exp(beta * r))
    return 2.0 * num / n


def horizon(n: int, r0: float, beta: float, normalization: str) -> float:
    """T with T · max_{[0,T]} |∂ṙ/∂r| = HORIZON_RATES, rounded to 3 significant digits (LSODA: the flow becomes
    stiff near consensus, where ∂ṙ/∂r → −2 e^β for USA)."""
    sol = solve_ivp(lambda t, r: rate(r, n, beta, normalization), (0.0, HORIZON_SEARCH), [r0], method="LSODA",
                    rtol=1e-10, atol=1e-14, dense_output=True)
    t = np.geomspace(1e-6, HORIZON_SEARCH, 40001)
    lam = np.maximum.accumulate(np.abs(rate_derivative(sol.sol(t)[0], n, beta, normalization)))
    k = int(np.argmax(t * lam >= HORIZON_RATES))
    return float(f"{t[k]:.3g}")


def equiangular_tokens(n: int, d: int, r0: float, seed: int = ROTATION_SEED) -> np.ndarray:
    """n unit vectors in R^d with all pairwise inner products r0 (−1/(n − 1) < r0 < 1), in a random orientation.

    v_i = e_i + c 𝟙 normalized has inner products (2c + n c²)/(1 + 2c + n c²) = r0, i.e.
    n(1 − r0) c² + 2(1 − r0) c − r0 = 0.
    """
    c = (-2 * (1 - r0) + np.sqrt(4 * (1 - r0) ** 2 + 4 * n * (1 - r0) * r0)) / (2 * n * (1 - r0))
    v = np.zeros((n, d))
    v[:, :n] = np.eye(n) + c
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q, rr = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return v @ (q * np.sign(np.diag(rr))).T


def _settings() -> list[tuple[int, int, float, str, float]]:
    return [(n, d, r0, norm, beta) for n, d, r0 in CONFIGS for norm in NORMALIZATIONS for beta in BETAS]


def measure(quick: bool) -> tuple[list[Row], xr.Dataset]:
    """The rows and the Dataset of the case; ``quick`` changes nothing (the full case takes a few seconds)."""
    settings = _settings()
    s = np.linspace(0.0, 1.0, RECORDS + 1)
    shape = (len(settings), len(SCHEMES), len(STEPS))
    t_end = np.empty(len(settings))
    r_ode = np.empty((len(settings), s.size))
    r_num = np.empty((*shape, s.size))
    spread = np.empty(shape)
    norm_dev = np.empty(shape)
    radial = np.empty(len(settings))
    rows: list[Row] = []
    for i, (n, d, r0, norm, beta) in enumerate(settings):
        T = t_end[i] = horizon(n, r0, beta, norm)
        r_ode[i] = solve_ivp(lambda t, r, n=n, beta=beta, norm=norm: rate(r, n, beta, norm), (0.0, T), [r0],
                             method="DOP853", rtol=1e-12, atol=1e-14, t_eval=s * T).y[0]
        x0 = equiangular_tokens(n, d, r0)
        model = st.AttentionModel(d, beta, normalization=norm)
        off = ~np.eye(n, dtype=bool)
        for j, scheme in enumerate(SCHEMES):
            for k, steps in enumerate(STEPS):
                ds = st.simulate_particles(model, None, x0, t_end=T, dt=T / steps, scheme=scheme,
                                           save_every=T / RECORDS, progress=False)
                x = ds["positions"].values
                gram = np.einsum("tic,tjc->tij", x, x)[:, off]
                r_num[i, j, k] = gram.mean(axis=1)
                spread[i, j, k] = np.ptp(gram, axis=1).max()
                norm_dev[i, j, k] = np.abs(np.linalg.norm(x, axis=2) - 1.0).max()
        radial[i] = np.abs(radial_rate(r_ode[i], n, beta, norm)).max()
        rows += _setting_rows(settings[i], T, spread[i], np.abs(r_num[i, :, :, -1] - r_ode[i, -1]), radial[i])
    return rows, _dataset(settings, s, t_end, r_ode, r_num, spread, norm_dev, radial)


def _setting_rows(setting, T: float, spread: np.ndarray, err: np.ndarray, radial: float) -> list[Row]:
    n, d, r0, norm, beta = setting
    label = f"{'SA' if norm == 'softmax' else 'USA'} n={n} d={d} r0={r0:g} β={beta:g} (T={T:g})"
    flow, layer = list(SCHEMES).index("flow"), list(SCHEMES).index("layer")
    worst = np.unravel_index(np.argmax(spread), spread.shape)
    rows = [
        check(NAME, f"{label}: spread of off-diagonal Gram entries, all runs and records", f"< {SPREAD_TOLERANCE:g}",
              spread.max(), "symmetry: the flow and both schemes commute with permutations of the tokens, so the "
              f"spread is rounding (~1e-16 per step); worst run: {list(SCHEMES)[worst[0]]} at dt = "
              f"T/{STEPS[worst[1]]}", spread.max() < SPREAD_TOLERANCE),
        check(NAME, f"{label}: abs(r(T) − r_ODE(T)), flow, dt = T/{STEPS[-1]} = {T / STEPS[-1]:.3g}",
              f"< {FLOW_ERROR_TOLERANCE:g}", err[flow, -1],
              f"threshold for RK4 at Λ dt ≤ {HORIZON_RATES / STEPS[-1]:.2g} (global error "
              f"~ (Λ dt)^4 |Δr|/120 ≈ 7e-9 |Δr|); ODE reference at rtol 1e-12; off-sphere stages: radial rate "
              f"2 x·a = {radial:.3g}, 2 x·a dt = {radial * T / STEPS[-1]:.3g}",
              err[flow, -1] < FLOW_ERROR_TOLERANCE),
    ]
    for scheme, j in (("layer", layer), ("flow", flow)):
        e1, e2 = err[j, -2], err[j, -1]
        p = float(np.log2(e1 / e2)) if e2 > 0 else np.nan
        # the reference is good to ~rtol |r| ≤ 1e-12: the most it can move log2(e1/e2)
        b = REFERENCE_ERROR
        shift = float(np.log2((e1 + b) / (e2 - b)) - p) if e2 > b else np.inf
        rows.append(check(NAME, f"{label}: observed order of {scheme}, dt = T/{STEPS[-2]} → T/{STEPS[-1]}",
                          SCHEMES[scheme], p,
                          f"±{ORDER_TOLERANCE:g}: the next error term C h^p (1 + D h) shifts log2 of the ratio by "
                          f"≈ D h/(2 ln 2) with |D| ~ Λ, Λ h ≤ {HORIZON_RATES / STEPS[-2]:.2g}; the ODE reference "
                          f"error (≤ {b:g}) can shift it by ≤ {shift:.2g}",
                          abs(p - SCHEMES[scheme]) <= ORDER_TOLERANCE))
    return rows


def _dataset(settings, s, t_end, r_ode, r_num, spread, norm_dev, radial) -> xr.Dataset:
    one = {"units": "1"}
    dims = ("setting", "scheme", "steps")
    data = {
        "n_tokens": (("setting",), np.array([x[0] for x in settings]), {**one, "long_name": "number of tokens n"}),
        "dimension": (("setting",), np.array([x[1] for x in settings]), {**one, "long_name": "ambient dimension d"}),
        "r0": (("setting",), np.array([x[2] for x in settings]), {**one, "long_name": "initial inner product"}),
        "normalization": (("setting",), [x[3] for x in settings], {**one, "long_name": "attention normalization"}),
        "beta": (("setting",), np.array([x[4] for x in settings]), {**one, "long_name": "inverse temperature"}),
        "t_end": (("setting",), t_end, {**one, "long_name": "horizon T with T max|dr'/dr| = 3"}),
        "radial_rate": (("setting",), radial, {**one, "long_name": "max over the trajectory of 2 x.a, the radial "
                                                                  "rate of the field extended off the sphere"}),
        "r_ode": (("setting", "s"), r_ode, {**one, "long_name": "r(t) of the scalar ODE (solve_ivp, rtol 1e-12)"}),
        "r_particles": ((*dims, "s"), r_num, {**one, "long_name": "mean off-diagonal Gram entry of the tokens"}),
        "gram_spread": (dims, spread, {**one, "long_name": "max over records of the spread (max - min) of the "
                                                          "off-diagonal Gram entries"}),
        "norm_deviation": (dims, norm_dev, {**one, "long_name": "max | |x_i| - 1 | over tokens and records"}),
        "final_error": (dims, np.abs(r_num[..., -1] - r_ode[:, None, None, -1]),
                        {**one, "long_name": "|r(T) - r_ODE(T)|"}),
    }
    coords = {
        "setting": ("setting", [f"{'SA' if x[3] == 'softmax' else 'USA'} n={x[0]} d={x[1]} r0={x[2]:g} beta={x[4]:g}"
                                for x in settings], {**one, "long_name": "setting"}),
        "scheme": ("scheme", list(SCHEMES), {**one, "long_name": "particle stepper"}),
        "steps": ("steps", np.asarray(STEPS), {**one, "long_name": "number of steps over [0, T] (dt = T/steps)"}),
        "s": ("s", s, {**one, "long_name": "normalized depth t/T"}),
    }
    attrs = {"horizon_rates": HORIZON_RATES, "rotation_seed": ROTATION_SEED, "model": "Q = K = V = I, no noise",
             "ode_solver": "solve_ivp DOP853 rtol 1e-12 atol 1e-14"}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def plot(ds: xr.Dataset, path: str) -> None:
    """r(t/T): ODE (lines) vs tokens (markers) per configuration; final error vs dt per scheme (log-log)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from spde_tokens.plot import DPI

    fig = Figure(figsize=(18, 9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    panels = [(n, d, r0, norm) for n, d, r0 in CONFIGS for norm in NORMALIZATIONS]
    s = ds["s"].values
    flow, layer = list(SCHEMES).index("flow"), list(SCHEMES).index("layer")
    for ax, (n, d, r0, norm) in zip(axes.T.ravel()[:4], panels, strict=True):
        for c, beta in enumerate(BETAS):
            i = int(np.nonzero((ds["n_tokens"].values == n) & (ds["beta"].values == beta)
                               & (ds["normalization"].values == norm))[0][0])
            colour = f"C{c}"
            ax.plot(s, ds["r_ode"].values[i], "-", color=colour, lw=1.5,
                    label=f"ODE, β = {beta:g} (T = {float(ds['t_end'][i]):.3g})")
            ax.plot(s[::2], ds["r_particles"].values[i, flow, -1, ::2], "o", color=colour, mfc="none", ms=6)
            ax.plot(s[1::2], ds["r_particles"].values[i, layer, -1, 1::2], "x", color=colour, ms=6)
        ax.plot([], [], "ko", mfc="none", label=f"tokens, flow, dt = T/{STEPS[-1]}")
        ax.plot([], [], "kx", label=f"tokens, layer, dt = T/{STEPS[-1]}")
        ax.set_xlabel("normalized depth t / T")
        ax.set_ylabel("pairwise inner product r")
        ax.set_title(f"{'SA' if norm == 'softmax' else 'USA'}: n = {n} tokens in d = {d}, r₀ = {r0:g}", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    steps = ds["steps"].values
    for ax, scheme in zip(axes[:, 2], SCHEMES, strict=True):
        j = list(SCHEMES).index(scheme)
        p = SCHEMES[scheme]
        err = ds["final_error"].values[:, j]
        for i in range(err.shape[0]):
            sa = str(ds["normalization"].values[i]) == "softmax"
            second = int(ds["n_tokens"].values[i]) != CONFIGS[0][0]
            colour = f"C{BETAS.index(float(ds['beta'].values[i])) + 3 * second}"
            ax.loglog(1.0 / steps, err[i], "o-" if sa else "s--", color=colour, ms=4, lw=1,
                      label=str(ds["setting"].values[i]))
        ref = np.exp(np.nanmean(np.log(err[:, -1]))) * (steps[-1] / steps) ** p
        ax.loglog(1.0 / steps, ref, "k-", lw=3, alpha=0.4, label=f"slope {p}")
        if scheme == "flow":
            ax.plot([1.0 / steps[-1]], [FLOW_ERROR_TOLERANCE], "rv", ms=9, label="tolerance 1e-8 at dt = T/100")
        ax.set_xlabel("dt / T")
        ax.set_ylabel("|r(T) − r_ODE(T)|")
        ax.set_title(f"convergence of the {scheme} scheme (order {p})", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"{TITLE}: Q = K = V = I, all pairwise inner products equal (SA: softmax, USA: unnormalized)")
    fig.savefig(path, dpi=DPI)
