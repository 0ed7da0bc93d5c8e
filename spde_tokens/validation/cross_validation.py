"""Pathwise cross-validation: MMD(particles, density) on one noise path falls like N^{-1/2}.

For each noise case (none, ``BiasNoise(0.5)``, ``MLPNoise(0.5, "tanh", 64)``, ``ValueNoise(0.5)``) one noise path
drives the density solver once and the particles many times: N ∈ {64, 128, …, 4096} tokens, several independent
draws of the initial tokens per N (i.i.d. from the initial density; each noise case has its own draws, token seed
``token_seed + k`` for the k-th case, so the four slopes are independent samples). At t_end the MMD
(docs/mathematics.md, 'Diagnostics') between the tokens and the density is measured; its root mean square over the
draws is fitted against N in log-log. If the two engines solve the same equation on the same path, the tokens are a
sample of the density up to O(N^{-1/2}) fluctuations and the slope is −1/2; a discretization mismatch shows as a
floor that flattens the slope at large N.

Setup (theory, not tuned on earlier runs): S^2, vMF(κ = 2) initial density, softmax attention beta = 1 (V = I;
V = 0 for ValueNoise, the pure-noise network of Fedorov et al.), t_end = 0.5, dt = 0.01, ``SphereGrid(96)``: the
finite-width MLP field is analytic but not band-limited, and on the path used here the density's spectral tail at
t = 0.5 is 2e-9 at lmax 64, 4e-11 at 80 and 5e-13 at 96 (lmax 24 suffices for the other cases). Particles use
``scheme="flow"`` (the density step's map, no strong-order-½ gap) for μ-independent noise and ``"layer"`` for
ValueNoise.

Rows per noise case: the slope against −½ (band max(0.1, 4 standard errors)), and the change of the slope from
t = 0 to t_end on the same draws against 0 (4 standard errors): the draws' luck is common to both times and cancels,
so this second row is the sharp one (standard error ≈ 0.01–0.04 against 0.03–0.06 for the slope).

Cost: the particle runs dominate (four drift evaluations per ``flow`` step, O(N²) with direct attention sums,
O(N L²) with the harmonic path ``simulate_particles`` picks by default for large N). Measured on two shared cores:
the full run (N ≤ 4096, 8 draws) 12.5 min, 32 min with direct sums (``simulate_particles(attention="direct")``);
the quick run (N ≤ 512, 8 draws; N = 1024 alone cost three quarters of the former quick run's 6 min: the slope's
standard error grows by sqrt(2), from 4 values of N instead of 5) about 1.5 min. Run it with
``spde-tokens validate --case cross_validation [--quick] [-o FOLDER]`` or the script ``validation/cross_validation.py``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr

from spde_tokens import initial
from spde_tokens.compare import compare
from spde_tokens.density import TAIL_WARNING, solve_density
from spde_tokens.grids import ResolutionWarning, SphereGrid
from spde_tokens.model import AttentionModel
from spde_tokens.noise import BiasNoise, MLPNoise, NoiseModel, NoisePath, ValueNoise
from spde_tokens.particles import simulate_particles
from spde_tokens.validation.common import Z_BAND, Row, check

NAME = "cross_validation"
TITLE = "Pathwise cross-validation: MMD(particles, density) ∝ N^{-1/2} on one noise path"

#: the slope MMD ∝ N^slope of sampling (theory) and the half-width of the acceptance band
EXPECTED_SLOPE = -0.5
SLOPE_TOLERANCE = 0.1


@dataclass(frozen=True)
class Setup:
    """Parameters of the cross-validation (all recorded in the output file)."""

    lmax: int = 96
    kappa: float = 2.0
    beta: float = 1.0
    sigma: float = 0.5
    mlp_width: int = 64
    t_end: float = 0.5
    dt: float = 0.01
    path_seed: int = 2024
    token_seed: int = 7
    mmd_scale: float = 2.0


def noise_cases(setup: Setup) -> dict[str, tuple[NoiseModel | None, AttentionModel, str]]:
    """name → (noise, model, particle scheme) of the four cases."""
    model = AttentionModel(3, beta=setup.beta)
    return {
        "none": (None, model, "flow"),
        "bias": (BiasNoise(setup.sigma), model, "flow"),
        "mlp": (MLPNoise(setup.sigma, "tanh", setup.mlp_width), model, "flow"),
        "value": (ValueNoise(setup.sigma), AttentionModel(3, beta=setup.beta, V=np.zeros((3, 3))), "layer"),
    }


def token_draws(rho0: xr.DataArray, n_tokens: Sequence[int], draws: int, seed: int) -> list[list[np.ndarray]]:
    """``draws`` independent i.i.d. samples of ρ0 for every N: disjoint slices of one ``initial.sample`` call.

    Disjoint slices of an i.i.d. sample are independent samples; one call avoids the fixed cost of a rejection
    batch per draw.
    """
    pool = initial.sample(rho0, int(draws * np.sum(n_tokens)), seed=seed)
    out, start = [], 0
    for n in n_tokens:
        row = []
        for _ in range(draws):
            row.append(pool[start:start + n])
            start += n
        out.append(row)
    return out


def sampling_density(kappa: float) -> xr.DataArray:
    """The initial vMF density on the smallest grid that represents it to rounding, to draw tokens from.

    Its coefficients are proportional to i_l(κ), below 1e-16 of i_0 beyond degree ≈ 8.7 sqrt(κ) + 8 (21 at κ = 2),
    so ``SphereGrid(L)`` with that L is the same density as on the run's grid; rejection sampling evaluates ρ at
    every proposal, which costs O(L²) per point (about 20× less at L = 21 than at the run's 96).
    """
    lmax = max(16, int(np.ceil(8.7 * np.sqrt(kappa))) + 8)
    return initial.von_mises_fisher(SphereGrid(lmax), mean=[0.0, 0.0, 1.0], kappa=kappa)


def fit_slope(n_tokens: Sequence[int], mmd: np.ndarray, reference: np.ndarray | None = None) -> tuple[float, float]:
    """Slope of log sqrt(mean_draws MMD²) against log N and its standard error.

    The root mean square over draws is the quantity whose square has expectation C/N for i.i.d. tokens, so its
    log-log slope is −1/2 exactly. Standard error: the per-N points y_N = ½ log(mean MMD²) have variance
    cv²/(4 n_draws) (delta method) with cv² the relative variance of one draw's MMD², pooled over N (N·MMD²
    converges in law, so cv² does not depend on N); the least-squares slope then has variance var(y)/Σ(x − x̄)²,
    inflated by the reduced χ² of the residuals when it exceeds 1 (a misfit, e.g. a discretization floor).

    With ``reference`` (the MMD of the same draws at another time, e.g. t = 0) the slope is that of
    ½ log(mean MMD² / mean reference²): the change of the slope since the reference. Draw-to-draw luck common to both
    cancels (a control variate), so this slope, expected 0 when the dynamics neither adds a floor nor changes the
    N^{-1/2} law, has a much smaller error; its variance uses the per-draw spread of MMD²/mean − ref²/mean.

    Parameters
    ----------
    n_tokens : the K values of N (K ≥ 3).
    mmd, reference : MMD values, shape (K, draws) with draws ≥ 2.
    """
    x = np.log(np.asarray(n_tokens, dtype=float))
    m2 = np.asarray(mmd, dtype=float) ** 2
    r2 = None if reference is None else np.asarray(reference, dtype=float) ** 2
    for name, arr in (("mmd", m2), ("reference", r2)):
        if arr is None:
            continue
        if arr.ndim != 2 or arr.shape[0] != x.size or x.size < 3 or arr.shape[1] < 2 or arr.shape != m2.shape:
            raise ValueError(f"{name} must have shape (len(n_tokens) ≥ 3, draws ≥ 2), got {arr.shape} for "
                             f"{x.size} values of N")
        if not np.all(np.isfinite(arr)) or np.any(arr.mean(axis=1) <= 0):
            raise ValueError(f"{name} must be finite with a positive mean at every N")
    z = m2 / m2.mean(axis=1, keepdims=True)
    y = 0.5 * np.log(m2.mean(axis=1))
    if r2 is not None:
        z = z - r2 / r2.mean(axis=1, keepdims=True)
        y = y - 0.5 * np.log(r2.mean(axis=1))
    xc = x - x.mean()
    sxx = float(xc @ xc)
    slope = float(xc @ (y - y.mean()) / sxx)
    var_y = float(np.mean(z.var(axis=1, ddof=1))) / (4.0 * m2.shape[1])
    resid = y - y.mean() - slope * xc
    chi2_red = float(resid @ resid) / var_y / (x.size - 2) if var_y > 0 else 1.0
    return slope, float(np.sqrt(var_y / sxx * max(1.0, chi2_red)))


def sweep(noise: NoiseModel | None, model: AttentionModel, scheme: str, rho0: xr.DataArray, n_tokens: Sequence[int],
          tokens: list[list[np.ndarray]], t_end: float, dt: float, path_seed: int, mmd_scale: float = 2.0) -> dict:
    """One noise path: the density once, the particles for every N and draw; MMD at t_end against the density.

    Returns a dict with ``mmd`` (K, draws) at t_end and ``mmd_initial`` at t = 0, ``floor`` (K,) the sampling
    floor of :func:`spde_tokens.compare.compare` at t_end, ``spectral_tail`` and ``min_density`` (largest tail,
    smallest density over the run), ``density_seconds`` and ``particle_seconds`` (K,) (mean wall time of one
    particle run).
    """
    n_steps = int(round(t_end / dt))
    path = None if noise is None else NoisePath(noise, model.dim, dt, max(n_steps, 1), path_seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResolutionWarning)  # the tail is recorded and judged by the caller
        dens = solve_density(model, noise, rho0, t_end, dt, path=path, save_every=t_end or None, progress=False,
                             engine="spectral")
    density_seconds = time.perf_counter() - start
    mmd = np.empty((len(n_tokens), len(tokens[0])))
    mmd_initial = np.empty_like(mmd)
    floor = np.empty(len(n_tokens))
    seconds = np.zeros(len(n_tokens))
    for k in range(len(n_tokens)):
        for d, x0 in enumerate(tokens[k]):
            start = time.perf_counter()
            parts = simulate_particles(model, noise, x0, t_end, dt, path=path, save_every=t_end or None,
                                       scheme=scheme, progress=False)
            seconds[k] += (time.perf_counter() - start) / len(tokens[k])
            cmp = compare(dens, parts, scale=mmd_scale)
            mmd[k, d] = float(cmp["mmd"][-1])
            mmd_initial[k, d] = float(cmp["mmd"][0])
            floor[k] = float(cmp["mmd_sampling_floor"][-1])
    return {"mmd": mmd, "mmd_initial": mmd_initial, "floor": floor, "spectral_tail": float(dens["spectral_tail"].max()),
            "min_density": float(dens["min_density"].min()), "density_seconds": density_seconds,
            "particle_seconds": seconds}


def _slope_row(name: str, noise, res: dict, draws: int, t_end: float) -> Row:
    """The slope of log rms MMD against log N at t_end, against −½ (band max(0.1, 4 standard errors))."""
    slope, se, tail = res["slope"], res["slope_se"], res["spectral_tail"]
    tolerance = max(SLOPE_TOLERANCE, Z_BAND * se)
    resolved = tail < TAIL_WARNING
    return check(NAME, f"{name}: slope of log rms MMD(particles, density) vs log N at t = {t_end:g} ({noise!r})",
                 f"{EXPECTED_SLOPE:g} ± {tolerance:.2g}",
                 f"{slope:.3f} ± {se:.3f}" + ("" if resolved else f" (under-resolved: tail {tail:.1e})"),
                 f"±{tolerance:.2g} = max(0.1, 4 standard errors of the slope); SE from the spread of MMD² over "
                 f"{draws} independent token draws per N (relative sd 0.5–0.75 for the kernel exp(2 x·y))",
                 abs(slope - EXPECTED_SLOPE) <= tolerance and resolved)


def _change_row(name: str, res: dict, t_end: float) -> Row:
    """The sharp row: the slope's change from t = 0 to t_end on the same draws is 0 (no floor, no engine mismatch)."""
    change, se, tail = res["slope_change"], res["slope_change_se"], res["spectral_tail"]
    resolved = tail < TAIL_WARNING
    return check(NAME, f"{name}: change of that slope from t = 0 to t = {t_end:g} on the same token draws",
                 f"0 ± {Z_BAND * se:.2g}",
                 f"{change:+.3f} ± {se:.3f}" + ("" if resolved else f" (under-resolved: tail {tail:.1e})"),
                 "4 standard errors of the slope of ½ log(mean MMD²(t)/mean MMD²(0)); the luck of the draws, common "
                 "to both times, cancels (control variate). Tokens that follow the density's flow keep the N^{-1/2} "
                 "sampling law (propagation of chaos given the path): the dynamics changes the constant, not the "
                 "exponent, unless a discretization floor or a mismatch of the engines appears",
                 abs(change) <= Z_BAND * se and resolved)


def measure(quick: bool) -> tuple[list[Row], xr.Dataset]:
    """The rows and the Dataset of the cross-validation (parameters of :class:`Setup`).

    ``quick``: N ≤ 512 (about 1.5 minutes) instead of N ≤ 4096 (about 12 minutes on two cores), 8 draws per N.
    Two rows per noise case: the slope and its change since t = 0.
    """
    setup = Setup()
    n_tokens = [64 * 2**k for k in range(4 if quick else 7)]
    draws = 8
    grid = SphereGrid(setup.lmax)
    rho0 = initial.von_mises_fisher(grid, mean=[0.0, 0.0, 1.0], kappa=setup.kappa)
    sampler = sampling_density(setup.kappa)
    cases = noise_cases(setup)
    results, rows = {}, []
    for k, (name, (noise, model, scheme)) in enumerate(cases.items()):
        # independent token draws per noise case (seed token_seed + k): the four slopes are four samples
        tokens = token_draws(sampler, n_tokens, draws, setup.token_seed + k)
        res = sweep(noise, model, scheme, rho0, n_tokens, tokens, setup.t_end, setup.dt, setup.path_seed,
                    setup.mmd_scale)
        res["slope"], res["slope_se"] = fit_slope(n_tokens, res["mmd"])
        res["slope_initial"] = fit_slope(n_tokens, res["mmd_initial"])[0]
        res["slope_change"], res["slope_change_se"] = fit_slope(n_tokens, res["mmd"], res["mmd_initial"])
        res["rows"] = [_slope_row(name, noise, res, draws, setup.t_end), _change_row(name, res, setup.t_end)]
        results[name] = res
        rows += res["rows"]
    return rows, _dataset(setup, cases, n_tokens, draws, results)


def _dataset(setup: Setup, cases: dict, n_tokens: list[int], draws: int, results: dict) -> xr.Dataset:
    names = list(cases)

    def stack(key):
        return np.stack([np.asarray(results[name][key], dtype=float) for name in names])

    one = {"units": "1"}
    data = {
        "mmd": (("noise", "n_tokens", "draw"), stack("mmd"),
                {**one, "long_name": "MMD between tokens and density at t_end, kernel exp(s x.y)"}),
        "mmd_sampling_floor": (("noise", "n_tokens"), stack("floor"),
                               {**one, "long_name": "rms MMD of N i.i.d. samples of the density at t_end"}),
        "slope": (("noise",), stack("slope"), {**one, "long_name": "slope of log rms MMD against log N"}),
        "slope_se": (("noise",), stack("slope_se"), {**one, "long_name": "standard error of the slope"}),
        "mmd_initial": (("noise", "n_tokens", "draw"), stack("mmd_initial"),
                        {**one, "long_name": "MMD between the initial tokens and the initial density"}),
        "slope_initial": (("noise",), stack("slope_initial"),
                          {**one, "long_name": "slope of log rms MMD against log N at t = 0 (sampling alone)"}),
        "slope_change": (("noise",), stack("slope_change"),
                         {**one, "long_name": "slope of log(rms MMD at t_end / rms MMD at t = 0) against log N"}),
        "slope_change_se": (("noise",), stack("slope_change_se"),
                            {**one, "long_name": "standard error of slope_change"}),
        "spectral_tail": (("noise",), stack("spectral_tail"),
                          {**one, "long_name": "largest spectral tail of the density run"}),
        "min_density": (("noise",), stack("min_density"),
                        {**one, "long_name": "smallest density value on the grid over the run"}),
        "density_seconds": (("noise",), stack("density_seconds"),
                            {"units": "s", "long_name": "wall time of the density run"}),
        "particle_seconds": (("noise", "n_tokens"), stack("particle_seconds"),
                             {"units": "s", "long_name": "mean wall time of one particle run"}),
    }
    coords = {
        "noise": ("noise", names, {**one, "long_name": "noise case"}),
        "noise_model": ("noise", [repr(cases[n][0]) if cases[n][0] is not None else "none" for n in names],
                        {**one, "long_name": "noise model"}),
        "scheme": ("noise", [cases[n][2] for n in names], {**one, "long_name": "particle stepper"}),
        "verdict": ("noise", [results[n]["rows"][0]["verdict"] for n in names],
                    {**one, "long_name": "verdict of the slope row"}),
        "verdict_change": ("noise", [results[n]["rows"][1]["verdict"] for n in names],
                           {**one, "long_name": "verdict of the slope-change row"}),
        "n_tokens": ("n_tokens", np.asarray(n_tokens), {**one, "long_name": "number of tokens N"}),
        "draw": ("draw", np.arange(draws), {**one, "long_name": "independent draw of the initial tokens"}),
    }
    attrs = {"expected_slope": EXPECTED_SLOPE, "initial": "von_mises_fisher", "grid": "sphere",
             **{k: v for k, v in asdict(setup).items()}}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def plot(ds: xr.Dataset, path: str) -> None:
    """Log-log MMD against N per noise case: draws, their rms (also at t = 0), an N^{-1/2} line, the sampling floor."""
    from matplotlib.figure import Figure

    names = list(ds["noise"].values)
    fig = Figure(figsize=(10, 8), layout="constrained")
    axes = fig.subplots(2, (len(names) + 1) // 2, squeeze=False, sharex=True, sharey=True).ravel()
    n = ds["n_tokens"].values.astype(float)
    for ax, name in zip(axes, names, strict=False):
        sel = ds.sel(noise=name)
        mmd = sel["mmd"].values
        ax.loglog(np.repeat(n, mmd.shape[1]), mmd.ravel(), ".", color="0.6", ms=4, label="single draws")
        rms = np.sqrt(np.mean(mmd**2, axis=1))
        slope, se = float(sel["slope"]), float(sel["slope_se"])
        ax.loglog(n, rms, "o-", color="C0", label=f"rms over draws: slope {slope:.3f} ± {se:.3f}")
        rms0 = np.sqrt(np.mean(sel["mmd_initial"].values ** 2, axis=1))
        ax.loglog(n, rms0, "s-.", color="C2", ms=4, alpha=0.7,
                  label=f"same draws at t = 0: slope {float(sel['slope_initial']):.3f}")
        ref = np.exp(np.mean(np.log(rms) + 0.5 * np.log(n))) / np.sqrt(n)
        ax.loglog(n, ref, ":", color="k", label=r"$\propto N^{-1/2}$ reference")
        ax.loglog(n, sel["mmd_sampling_floor"].values, "--", color="C3",
                  label=f"sampling floor at t = {ds.attrs['t_end']:g} (i.i.d. tokens)")
        ax.set_title(f"{name}: {str(sel['noise_model'].values)} [{str(sel['verdict'].values)}]\nslope change "
                     f"since t = 0: {float(sel['slope_change']):+.3f} ± {float(sel['slope_change_se']):.3f}",
                     fontsize=9)
        ax.set_xlabel("number of tokens N")
        ax.set_ylabel(f"MMD(particles, density) at t = {ds.attrs['t_end']:g}")
        ax.legend(fontsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"Pathwise cross-validation on S^2 (lmax {ds.attrs['lmax']}, dt {ds.attrs['dt']:g}, "
                 f"beta {ds.attrs['beta']:g}, vMF kappa {ds.attrs['kappa']:g})")
    fig.savefig(path, dpi=120)
