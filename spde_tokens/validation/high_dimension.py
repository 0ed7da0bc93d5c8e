"""High dimension: the onset of clustering on S^{d−1} for d = 3 … 1024, on the zonal grid and by tokens.

For SA with Q = K = V = I the uniform state is unstable (docs/mathematics.md, 'Linear instability of the uniform
state'): in d dimensions a zonal perturbation of degree l grows at

    σ_l(d, β) = l (l + d − 2) I_{l+ν}(β) / (β I_ν(β)),    ν = d/2 − 1,

evaluated here as (β/2)^l Γ(ν+1)/Γ(ν+l+1) · ₀F₁(; ν+l+1; β²/4)/₀F₁(; ν+1; β²/4) (``scipy.special.hyp0f1`` and
``gammaln``: no underflow of I_ν at d = 1024), independently of the solver's Funk–Hecke weights. For β ≪ d the
degree-1 mode is the fastest (σ_1 → 1 as d → ∞: one cluster), for β ≳ d higher degrees win (several clusters).

**Onset by the zonal solver.** The density starts at 1 + Σ_{l=1}^{4} ε_l Y_l with ε_l = ε / Y_l(1), ε = 1e-6 (each
degree contributes at most ε to the sup of the perturbation, whatever d), on ``ZonalGrid(d, max(16,
resolving_degree(d, β)))``, RK4 with 240 steps to 1.3 T_lin and a record at every step. The onset time is the time
at which the perturbation's L²(σ) norm A(t) = (Σ_{l ≥ 1} P_l)^{1/2} reaches A_th = 1e-2 (log-linear interpolation
between records); the linear theory predicts T_lin solving Σ_l ε_l² e^{2 σ_l T} = A_th². Tolerance 2e-3 relative:
the quadratic terms change the growth rate by a relative O(A), so over the last e-folding before the threshold they
shift the onset by a relative ≲ A_th/ln(A_th/A(0)) ≈ 1e-3 (measured up to 7e-4, at β = 16 where degrees 2–4 dominate
and interact); RK4 and the interpolation between records contribute below 1e-6. Dimensions: 3, 16, 128, 1024
(``quick``; full adds 8, 32, 512), β ∈ {1, 4, 16}.

**Energy.** The same runs record E_β(t); along the deterministic flow it is nondecreasing in every dimension (the
derivation of 'Energy monotonicity and mass' does not depend on d): each run's increments are checked ≥ −1e-12
max|E| (rounding of a spectral sum). The figure shows E_β(t) − E_β(0) for every d on one plot at β = 4.

**Onset by tokens.** N i.i.d. uniform tokens in R^d (seed d) have a mean vector m(0) of size ≈ N^{−1/2}; the degree-1
part of their empirical measure is m, which the linearized flow multiplies by e^{σ_N t} (the other degrees do not
enter m at first order). Each token also attends to itself: its own term e^{β} x_i/N in the softmax numerator is
radial (projected out), but it adds e^{β}/N to the denominator, whose other terms sum to ≈ (N − 1) μ_0(β)/N
(μ_0 = ₀F₁(; d/2; β²/4), the mean of e^{β x·y} over uniform y), so the tokens' rate is

    σ_N = σ_1 (N − 1) μ_0 / ((N − 1) μ_0 + e^{β})

(5% below σ_1 at β = 4, N = 1024: measured, the onset of the tokens at d = 128 is 6% later than the mean-field
prediction). The onset time of the tokens is when |m| reaches m_th = 0.1, predicted T = ln(m_th/|m(0)|)/σ_N.
``simulate_particles`` (layer update, dt = 1.3 T/100, a record every 4 steps, log-linear interpolation) at d = 16 and
128, β ∈ {1, 4}, N = 1024 (``quick``; 2048 in full). Tolerance 5% relative: the nonlinear terms shift the onset by a
relative O(m_th²) = 1%; the layer update (explicit Euler) has a relative rate error σ dt/2 ≤ 1%; the perturbations of
degree ≥ 2, of size N^{−1/2}, reach m at second order, a relative O(N^{−1/2}) ≈ 3%.

Cost: about a minute with ``quick``, three minutes in full, one core.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from scipy.optimize import brentq
from scipy.special import gammaln, hyp0f1

import spde_tokens as st
from spde_tokens.grids import ResolutionWarning, resolving_degree
from spde_tokens.validation.common import Row, check

NAME = "high_dimension"
TITLE = "High dimension: clustering onset on S^{d-1} for d = 3 ... 1024"

BETAS = (1.0, 4.0, 16.0)
DIMS_QUICK = (3, 16, 128, 1024)
DIMS_FULL = (3, 8, 16, 32, 128, 512, 1024)
DEGREES = (1, 2, 3, 4)
EPS = 1e-6
THRESHOLD = 1e-2
STEPS = 240
SPAN = 1.3
ONSET_TOLERANCE = 2e-3
ENERGY_ROUNDING = 1e-12
PARTICLE_DIMS = (16, 128)
PARTICLE_BETAS = (1.0, 4.0)
MEAN_THRESHOLD = 0.1
PARTICLE_STEPS = 100
PARTICLE_RECORD_EVERY = 4
PARTICLE_TOLERANCE = 0.05
MIN_LMAX = 16


def growth_rate(dim: int, degree: int, beta: float) -> float:
    """σ_l = l(l + d − 2) I_{l+ν}(β)/(β I_ν(β)), ν = d/2 − 1, by the ₀F₁ series (no underflow in high d)."""
    nu = 0.5 * dim - 1.0
    log_ratio = (degree * np.log(0.5 * beta) + gammaln(nu + 1.0) - gammaln(nu + degree + 1.0)
                 + np.log(hyp0f1(nu + degree + 1.0, 0.25 * beta * beta)) - np.log(hyp0f1(nu + 1.0, 0.25 * beta * beta)))
    return float(degree * (degree + dim - 2) * np.exp(log_ratio) / beta)


def _crossing(t: np.ndarray, values: np.ndarray, level: float) -> float:
    """The first time at which ``values`` reaches ``level``, interpolating log(values) linearly (NaN if never)."""
    above = np.flatnonzero(values >= level)
    if above.size == 0 or above[0] == 0:
        return float("nan")
    k = above[0]
    a, b = np.log(values[k - 1]), np.log(values[k])
    return float(t[k - 1] + (np.log(level) - a) / (b - a) * (t[k] - t[k - 1]))


def predicted_onset(dim: int, beta: float, amplitudes: np.ndarray) -> float:
    """T_lin with Σ_l ε_l² e^{2 σ_l T} = A_th² (the linear growth of the perturbation's L²(σ) norm)."""
    rates = np.array([growth_rate(dim, l, beta) for l in DEGREES])
    log_eps = np.log(amplitudes)

    def gap(t: float) -> float:
        terms = 2.0 * (log_eps + rates * t)
        top = terms.max()
        return 0.5 * (top + np.log(np.sum(np.exp(terms - top)))) - np.log(THRESHOLD)

    return float(brentq(gap, 0.0, (np.log(THRESHOLD) - log_eps.min()) / rates.max() + 1.0, xtol=1e-14, rtol=1e-14))


def zonal_onset(dim: int, beta: float) -> dict:
    """One zonal run from the perturbed uniform state: predicted and measured onset, the energy record."""
    lmax = max(MIN_LMAX, resolving_degree(dim, beta))
    grid = st.ZonalGrid(dim, lmax)
    top = grid.basis_values(np.ones(1))[:, 0]
    amplitudes = EPS / top[list(DEGREES)]
    coeffs = np.zeros(lmax + 1)
    coeffs[0] = 1.0
    coeffs[list(DEGREES)] = amplitudes
    rho0 = st.initial.as_density(grid, grid.synthesis(coeffs), normalize=False)
    t_lin = predicted_onset(dim, beta, amplitudes)
    dt = SPAN * t_lin / STEPS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResolutionWarning)  # the kernel is resolved by lmax; the tail is recorded
        ds = st.solve_density(st.AttentionModel(dim, beta), None, rho0, STEPS * dt, dt, save_every=dt,
                              progress=False)
    amplitude = np.sqrt(ds["power_spectrum"].values[:, 1:].sum(axis=1))
    t = ds["time"].values
    return {"lmax": lmax, "predicted": t_lin, "measured": _crossing(t, amplitude, THRESHOLD), "time": t,
            "energy": ds["energy"].values, "amplitude": amplitude, "tail": float(ds["spectral_tail"].max())}


def particle_onset(dim: int, beta: float, n: int) -> dict:
    """Tokens uniform in R^d (seed d): predicted and measured time at which |m| reaches MEAN_THRESHOLD."""
    rng = np.random.default_rng(dim)
    x0 = rng.standard_normal((n, dim))
    x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
    m0 = float(np.linalg.norm(x0.mean(axis=0)))
    mu0 = float(hyp0f1(0.5 * dim, 0.25 * beta * beta))
    rate = growth_rate(dim, 1, beta) * (n - 1) * mu0 / ((n - 1) * mu0 + np.exp(beta))  # σ_N: the self-attention
    t_lin = np.log(MEAN_THRESHOLD / m0) / rate
    dt = float(f"{SPAN * t_lin / PARTICLE_STEPS:.6g}")
    ds = st.simulate_particles(st.AttentionModel(dim, beta), None, x0, PARTICLE_STEPS * dt, dt,
                               save_every=PARTICLE_RECORD_EVERY * dt, progress=False)
    m = np.linalg.norm(ds["mean_vector"].values, axis=1)
    return {"predicted": float(t_lin), "measured": _crossing(ds["time"].values, m, MEAN_THRESHOLD), "m0": m0,
            "rate": rate, "dt": dt}


def measure(quick: bool) -> tuple[list[Row], xr.Dataset]:
    """The rows and the Dataset of the case (``quick``: fewer dimensions and tokens)."""
    dims = DIMS_QUICK if quick else DIMS_FULL
    n_tokens = 1024 if quick else 2048
    rows: list[Row] = []
    shape = (len(dims), len(BETAS))
    predicted, measured, lmax, tails = np.empty(shape), np.empty(shape), np.empty(shape, int), np.empty(shape)
    rates = np.empty((*shape, len(DEGREES)))
    energy = np.full((*shape, STEPS + 1), np.nan)
    rel_time = np.linspace(0.0, SPAN, STEPS + 1)
    for i, dim in enumerate(dims):
        for j, beta in enumerate(BETAS):
            res = zonal_onset(dim, beta)
            predicted[i, j], measured[i, j], lmax[i, j], tails[i, j] = (res["predicted"], res["measured"],
                                                                         res["lmax"], res["tail"])
            rates[i, j] = [growth_rate(dim, l, beta) for l in DEGREES]
            energy[i, j] = res["energy"]
            rel = abs(measured[i, j] / predicted[i, j] - 1.0)
            fastest = DEGREES[int(np.argmax(rates[i, j]))]
            rows.append(check(NAME, f"d={dim}: onset time of the zonal solver, β = {beta:g} (fastest degree "
                                    f"{fastest}, ZonalGrid(lmax {lmax[i, j]}))", float(predicted[i, j]),
                              float(measured[i, j]),
                              f"relative {ONSET_TOLERANCE:g}: nonlinear shift ≲ A_th/ln(A_th/A_0) ≈ 1e-3; measured "
                              f"{rel:.1e}", rel <= ONSET_TOLERANCE))
            e = res["energy"]
            drop = float(np.min(np.diff(e)))
            rows.append(check(NAME, f"d={dim}: E_β nondecreasing, β = {beta:g}", "min ΔE ≥ 0",
                              f"min ΔE = {drop:.2e} (E from {e[0]:.6g} to {e[-1]:.6g})",
                              f"rounding {ENERGY_ROUNDING:g} × max|E|",
                              drop >= -ENERGY_ROUNDING * float(np.max(np.abs(e)))))
    p_shape = (len(PARTICLE_DIMS), len(PARTICLE_BETAS))
    p_pred, p_meas, p_m0 = np.empty(p_shape), np.empty(p_shape), np.empty(p_shape)
    for i, dim in enumerate(PARTICLE_DIMS):
        for j, beta in enumerate(PARTICLE_BETAS):
            res = particle_onset(dim, beta, n_tokens)
            p_pred[i, j], p_meas[i, j], p_m0[i, j] = res["predicted"], res["measured"], res["m0"]
            rel = abs(p_meas[i, j] / p_pred[i, j] - 1.0)
            rows.append(check(NAME, f"d={dim}: onset time of {n_tokens} tokens (|m| from {res['m0']:.3f} to "
                                    f"{MEAN_THRESHOLD:g}), β = {beta:g}", float(p_pred[i, j]), float(p_meas[i, j]),
                              f"relative {PARTICLE_TOLERANCE:g}: nonlinear O(m_th²) 1%, Euler σ_1 dt/2 ≤ 1%, "
                              f"degrees ≥ 2 O(N^-1/2) 3%; measured {rel:.1e}", rel <= PARTICLE_TOLERANCE))
    one = {"units": "1"}
    data = {
        "onset_predicted": (("dim", "beta"), predicted, {**one, "long_name": "linear onset time T_lin of the "
                                                                             "zonal perturbation"}),
        "onset_measured": (("dim", "beta"), measured, {**one, "long_name": "time the zonal solver's perturbation "
                                                                           "norm reaches the threshold"}),
        "growth_rate": (("dim", "beta", "degree"), rates, {**one, "long_name": "sigma_l(d, beta) of the uniform "
                                                                                 "state"}),
        "lmax": (("dim", "beta"), lmax, {**one, "long_name": "degree of the zonal grid"}),
        "spectral_tail_max": (("dim", "beta"), tails, {**one, "long_name": "largest spectral tail of the run"}),
        "energy": (("dim", "beta", "relative_time"), energy, {**one, "long_name": "E_beta along the zonal run"}),
        "particle_onset_predicted": (("particle_dim", "particle_beta"), p_pred,
                                     {**one, "long_name": "ln(m_th/|m(0)|)/sigma_N"}),
        "particle_onset_measured": (("particle_dim", "particle_beta"), p_meas,
                                    {**one, "long_name": "time |m| of the tokens reaches m_th"}),
        "particle_m0": (("particle_dim", "particle_beta"), p_m0, {**one, "long_name": "|m(0)| of the tokens"}),
    }
    coords = {
        "dim": ("dim", np.asarray(dims), {**one, "long_name": "ambient dimension d (sphere S^(d-1))"}),
        "beta": ("beta", np.asarray(BETAS), {**one, "long_name": "inverse temperature"}),
        "degree": ("degree", np.asarray(DEGREES), {**one, "long_name": "harmonic degree l"}),
        "relative_time": ("relative_time", rel_time, {**one, "long_name": "time / T_lin"}),
        "particle_dim": ("particle_dim", np.asarray(PARTICLE_DIMS), {**one, "long_name": "dimension of the tokens"}),
        "particle_beta": ("particle_beta", np.asarray(PARTICLE_BETAS), {**one, "long_name": "beta of the tokens"}),
    }
    attrs = {"eps": EPS, "threshold": THRESHOLD, "steps": STEPS, "mean_threshold": MEAN_THRESHOLD,
             "n_tokens": n_tokens, "model": "Q = K = V = I, softmax, no noise",
             "initial": "1 + sum_l eps/Y_l(1) Y_l, l = 1..4 (zonal); uniform tokens (particles)"}
    return rows, xr.Dataset(data, coords=coords, attrs=attrs)


def plot(ds: xr.Dataset, path: str) -> None:
    """Left: onset time against d for each β (lines: linear theory; markers: zonal solver; crosses: tokens).
    Middle: the growth rates σ_l(d) at β = 4. Right: E_β(t) − E_β(0) against t/T_lin for every d at β = 4."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from spde_tokens.plot import DPI

    fig = Figure(figsize=(16, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_t, ax_r, ax_e = fig.subplots(1, 3)
    dims = ds["dim"].values
    for j, beta in enumerate(ds["beta"].values):
        colour = f"C{j}"
        ax_t.plot(dims, ds["onset_predicted"].values[:, j], "-", color=colour, label=f"linear theory, β = {beta:g}")
        ax_t.plot(dims, ds["onset_measured"].values[:, j], "o", mfc="none", color=colour,
                  label=f"zonal solver, β = {beta:g}")
    for i, dim in enumerate(ds["particle_dim"].values):
        for j in range(ds.sizes["particle_beta"]):
            ax_t.plot([dim], [ds["particle_onset_measured"].values[i, j]], "x", color="k", ms=8,
                      label="tokens (|m| onset)" if i == j == 0 else None)
            ax_t.plot([dim], [ds["particle_onset_predicted"].values[i, j]], "+", color="0.5", ms=10,
                      label="ln(m_th/|m0|)/σ_N" if i == j == 0 else None)
    ax_t.set_xscale("log")
    ax_t.set_xlabel("dimension d")
    ax_t.set_ylabel("onset time")
    ax_t.set_title(f"onset: perturbation norm reaches {ds.attrs['threshold']:g}", fontsize=10)
    ax_t.legend(fontsize=7)
    ax_t.grid(alpha=0.3, which="both")
    j4 = int(np.argmin(np.abs(ds["beta"].values - 4.0)))
    for k, degree in enumerate(ds["degree"].values):
        ax_r.loglog(dims, ds["growth_rate"].values[:, j4, k], "o-", label=f"l = {degree}")
    ax_r.set_xlabel("dimension d")
    ax_r.set_ylabel("growth rate σ_l")
    ax_r.set_title(f"dispersion relation at β = {ds['beta'].values[j4]:g}", fontsize=10)
    ax_r.legend(fontsize=8)
    ax_r.grid(alpha=0.3, which="both")
    colours = np.linspace(0.1, 0.9, dims.size)
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    for i, dim in enumerate(dims):
        e = ds["energy"].values[i, j4]
        ax_e.semilogy(ds["relative_time"].values, np.where(e - e[0] > 0, e - e[0], np.nan), color=cmap(colours[i]),
                      label=f"d = {dim}")
    ax_e.set_xlabel("t / T_lin")
    ax_e.set_ylabel("E_β(t) − E_β(0)")
    ax_e.set_title(f"interaction energy, β = {ds['beta'].values[j4]:g}", fontsize=10)
    ax_e.legend(fontsize=8)
    ax_e.grid(alpha=0.3, which="both")
    fig.suptitle(f"{TITLE}: SA, Q = K = V = I")
    fig.savefig(path, dpi=DPI)
