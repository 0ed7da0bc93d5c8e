"""Pathwise cross-validation: MMD(particles, density) on one noise path falls like N^{-1/2} (DESIGN 5).

For each noise case (none, ``BiasNoise(0.5)``, ``MLPNoise(0.5, "tanh", 64)``, ``ValueNoise(0.5)``) one noise path
drives the density solver once and the particles many times: N ∈ {64, 128, …, 4096} tokens, several independent
draws of the initial tokens per N (i.i.d. from the initial density). At t_end the MMD of DESIGN 1.4 between the
tokens and the density is measured; its root mean square over the draws is fitted against N in log-log. If the two
engines solve the same equation on the same path, the tokens are a sample of the density up to O(N^{-1/2})
fluctuations and the slope is −1/2; a discretization mismatch shows as a floor that flattens the slope at large N.

Setup (theory, not tuned on earlier runs): S^2, vMF(κ = 2) initial density, softmax attention beta = 1 (V = I; V = 0
for ValueNoise, the pure-noise network of Fedorov et al.), t_end = 0.5, dt = 0.01, ``SphereGrid(64)``: the finite-width
MLP field is analytic but not band-limited and lmax 64 keeps the spectral tail below 1e-10 to t = 0.5 (lmax 24 suffices
for the other cases). Particles use ``scheme="flow"`` (the density step's map, no strong-order-½ gap) for
μ-independent noise and ``"layer"`` for ValueNoise.

Cost: the particle drift is O(N²) per evaluation and ``flow`` takes four per step, so the sweep is dominated by the
largest N: about an hour for the full run (N ≤ 4096, 8 draws) on two cores, a few minutes with ``quick``
(N ≤ 1024, 4 draws). Run it with ``python validation/cross_validation.py [--quick] [-o FOLDER]``.
"""

from __future__ import annotations

import datetime
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr

from spde_tokens import initial
from spde_tokens.compare import compare
from spde_tokens.density import TAIL_WARNING, solve_density
from spde_tokens.grids import ResolutionWarning, SphereGrid
from spde_tokens.model import AttentionModel
from spde_tokens.noise import BiasNoise, MLPNoise, NoisePath, ValueNoise
from spde_tokens.particles import simulate_particles

#: the slope MMD ∝ N^slope of sampling (theory) and the half-width of the acceptance band
EXPECTED_SLOPE = -0.5
SLOPE_TOLERANCE = 0.1


@dataclass(frozen=True)
class Setup:
    """Parameters of the cross-validation (all recorded in the output file)."""

    lmax: int = 64
    kappa: float = 2.0
    beta: float = 1.0
    sigma: float = 0.5
    mlp_width: int = 64
    t_end: float = 0.5
    dt: float = 0.01
    path_seed: int = 2024
    token_seed: int = 7
    mmd_scale: float = 2.0


def noise_cases(setup: Setup) -> dict[str, tuple[object, AttentionModel, str]]:
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


def fit_slope(n_tokens: Sequence[int], mmd: np.ndarray) -> tuple[float, float]:
    """Slope of log sqrt(mean_draws MMD²) against log N and its standard error.

    The root mean square over draws is the quantity whose square has expectation C/N for i.i.d. tokens, so its
    log-log slope is −1/2 exactly. Standard error: the per-N points y_N = ½ log(mean MMD²) have variance
    cv²/(4 n_draws) (delta method) with cv² the relative variance of one draw's MMD², pooled over N (N·MMD²
    converges in law, so cv² does not depend on N); the least-squares slope then has variance var(y)/Σ(x − x̄)²,
    inflated by the reduced χ² of the residuals when it exceeds 1 (a misfit, e.g. a discretization floor).

    Parameters
    ----------
    n_tokens : the K values of N (K ≥ 3).
    mmd : MMD values, shape (K, draws) with draws ≥ 2.
    """
    x = np.log(np.asarray(n_tokens, dtype=float))
    m2 = np.asarray(mmd, dtype=float) ** 2
    if m2.ndim != 2 or m2.shape[0] != x.size or x.size < 3 or m2.shape[1] < 2:
        raise ValueError(f"mmd must have shape (len(n_tokens) ≥ 3, draws ≥ 2), got {m2.shape} for "
                         f"{x.size} values of N")
    if not np.all(np.isfinite(m2)) or np.any(m2.mean(axis=1) <= 0):
        raise ValueError("mmd must be finite with a positive mean at every N")
    mean = m2.mean(axis=1)
    y = 0.5 * np.log(mean)
    xc = x - x.mean()
    sxx = float(xc @ xc)
    slope = float(xc @ (y - y.mean()) / sxx)
    cv2 = float(np.mean(m2.var(axis=1, ddof=1) / mean**2))
    var_y = cv2 / (4.0 * m2.shape[1])
    resid = y - y.mean() - slope * xc
    chi2_red = float(resid @ resid) / var_y / (x.size - 2) if var_y > 0 else 1.0
    return slope, float(np.sqrt(var_y / sxx * max(1.0, chi2_red)))


def sweep(noise, model: AttentionModel, scheme: str, rho0: xr.DataArray, n_tokens: Sequence[int],
          tokens: list[list[np.ndarray]], t_end: float, dt: float, path_seed: int, mmd_scale: float = 2.0,
          log: Callable[[str], None] | None = None) -> dict:
    """One noise path: the density once, the particles for every N and draw; MMD at t_end against the density.

    Returns a dict with ``mmd`` (K, draws), ``floor`` (K,) the sampling floor of :func:`spde_tokens.compare.compare`,
    ``spectral_tail`` and ``min_density`` (largest tail, smallest density over the run), ``density_seconds`` and
    ``particle_seconds`` (K,) (mean wall time of one particle run).
    """
    n_steps = int(round(t_end / dt))
    path = None if noise is None else NoisePath(noise, model.dim, dt, max(n_steps, 1), path_seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResolutionWarning)  # the tail is recorded and judged by the caller
        dens = solve_density(model, noise, rho0, t_end, dt, path=path, save_every=t_end or None, progress=False)
    density_seconds = time.perf_counter() - start
    mmd = np.empty((len(n_tokens), len(tokens[0])))
    floor = np.empty(len(n_tokens))
    seconds = np.zeros(len(n_tokens))
    for k, n in enumerate(n_tokens):
        for d, x0 in enumerate(tokens[k]):
            start = time.perf_counter()
            parts = simulate_particles(model, noise, x0, t_end, dt, path=path, save_every=t_end or None,
                                       scheme=scheme, progress=False)
            seconds[k] += (time.perf_counter() - start) / len(tokens[k])
            cmp = compare(dens, parts, scale=mmd_scale).isel(time=-1)
            mmd[k, d] = float(cmp["mmd"])
            floor[k] = float(cmp["mmd_sampling_floor"])
        if log is not None:
            rms = np.sqrt(np.mean(mmd[k] ** 2))
            log(f"  N = {n:5d}: rms MMD {rms:.4f}, sampling floor {floor[k]:.4f} (ratio {rms / floor[k]:.2f}), "
                f"{seconds[k]:.1f} s per particle run")
    return {"mmd": mmd, "floor": floor, "spectral_tail": float(dens["spectral_tail"].max()),
            "min_density": float(dens["min_density"].min()), "density_seconds": density_seconds,
            "particle_seconds": seconds}


def _row(name: str, noise, slope: float, se: float, tail: float, ratio: float, n_max: int, draws: int,
         t_end: float) -> dict:
    tolerance = max(SLOPE_TOLERANCE, 4.0 * se)
    resolved = tail < TAIL_WARNING
    ok = abs(slope - EXPECTED_SLOPE) <= tolerance and resolved
    return {
        "case": f"cross_validation/{name}",
        "quantity": f"slope of log rms MMD(particles, density) vs log N at t = {t_end:g} ({noise!r})",
        "expected": f"{EXPECTED_SLOPE:g} ± {tolerance:.2g}",
        "measured": f"{slope:.3f} ± {se:.3f}",
        "verdict": "pass" if ok else ("FAIL (under-resolved)" if not resolved else "FAIL"),
        "slope": slope,
        "slope_se": se,
        "tolerance": (f"±{tolerance:.2g} = max(0.1, 4 standard errors of the slope); SE from the spread of MMD² "
                      f"over {draws} independent token draws per N (relative sd ≈ 0.5 for the kernel exp(2 x·y))"),
        "note": f"rms MMD / sampling floor at N = {n_max}: {ratio:.2f}; max spectral tail {tail:.1e}",
    }


def run(out_dir: str | os.PathLike, quick: bool = False, *, setup: Setup | None = None,
        log: Callable[[str], None] | None = None) -> dict:
    """Run the cross-validation, write ``cross_validation.nc`` and ``cross_validation.png`` into ``out_dir``.

    Parameters
    ----------
    out_dir : folder for the outputs (created if needed).
    quick : N ≤ 1024 with 4 draws per N (minutes) instead of N ≤ 4096 with 8 draws (about an hour).
    setup : parameters (default :class:`Setup`).
    log : called with a line of progress text (e.g. ``print``); silent by default.

    Returns
    -------
    dict noise name → table row (case, quantity, expected, measured, verdict, tolerance derivation, note).
    """
    setup = Setup() if setup is None else setup
    os.makedirs(out_dir, exist_ok=True)
    n_tokens = [64 * 2**k for k in range(5 if quick else 7)]
    draws = 4 if quick else 8
    grid = SphereGrid(setup.lmax)
    rho0 = initial.von_mises_fisher(grid, mean=[0.0, 0.0, 1.0], kappa=setup.kappa)
    tokens = token_draws(rho0, n_tokens, draws, setup.token_seed)
    cases = noise_cases(setup)
    results, rows = {}, {}
    for name, (noise, model, scheme) in cases.items():
        if log is not None:
            log(f"cross_validation: {name} ({noise!r}, scheme {scheme!r})")
        res = sweep(noise, model, scheme, rho0, n_tokens, tokens, setup.t_end, setup.dt, setup.path_seed,
                    setup.mmd_scale, log)
        res["slope"], res["slope_se"] = fit_slope(n_tokens, res["mmd"])
        ratio = float(np.sqrt(np.mean(res["mmd"][-1] ** 2)) / res["floor"][-1])
        results[name] = res
        rows[name] = _row(name, noise, res["slope"], res["slope_se"], res["spectral_tail"], ratio, n_tokens[-1],
                          draws, setup.t_end)
    ds = _dataset(setup, cases, n_tokens, draws, results, rows)
    ds.to_netcdf(os.path.join(out_dir, "cross_validation.nc"), engine="netcdf4", format="NETCDF4")
    plot(ds, os.path.join(out_dir, "cross_validation.png"))
    return rows


def _dataset(setup: Setup, cases: dict, n_tokens: list[int], draws: int, results: dict, rows: dict) -> xr.Dataset:
    from spde_tokens import __version__

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
        "noise": ("noise", names, {"long_name": "noise case"}),
        "noise_model": ("noise", [repr(cases[n][0]) if cases[n][0] is not None else "none" for n in names],
                        {"long_name": "noise model"}),
        "scheme": ("noise", [cases[n][2] for n in names], {"long_name": "particle stepper"}),
        "verdict": ("noise", [rows[n]["verdict"] for n in names], {"long_name": "verdict of the slope row"}),
        "n_tokens": ("n_tokens", np.asarray(n_tokens), {**one, "long_name": "number of tokens N"}),
        "draw": ("draw", np.arange(draws), {**one, "long_name": "independent draw of the initial tokens"}),
    }
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    attrs = {"Conventions": "CF-1.8", "title": "spde_tokens validation: pathwise cross-validation",
             "source": f"spde_tokens {__version__}",
             "history": f"{stamp} spde_tokens.validation.cross_validation {__version__}",
             "expected_slope": EXPECTED_SLOPE, "initial": "von_mises_fisher", "grid": "sphere",
             **{k: v for k, v in asdict(setup).items()}}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def plot(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Log-log MMD against N per noise case: draws, their rms, the N^{-1/2} fit line and the sampling floor."""
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
        ref = np.exp(np.mean(np.log(rms) + 0.5 * np.log(n))) / np.sqrt(n)
        ax.loglog(n, ref, ":", color="k", label="N^{-1/2} reference")
        ax.loglog(n, sel["mmd_sampling_floor"].values, "--", color="C3", label="sampling floor (i.i.d. tokens)")
        ax.set_title(f"{name}: {str(sel['noise_model'].values)} [{str(sel['verdict'].values)}]", fontsize=9)
        ax.set_xlabel("number of tokens N")
        ax.set_ylabel(f"MMD(particles, density) at t = {ds.attrs['t_end']:g}")
        ax.legend(fontsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"Pathwise cross-validation on S^2 (lmax {ds.attrs['lmax']}, dt {ds.attrs['dt']:g}, "
                 f"beta {ds.attrs['beta']:g}, vMF kappa {ds.attrs['kappa']:g})")
    fig.savefig(path, dpi=120)


def format_rows(rows: dict) -> str:
    """The rows as a plain-text table, with how each tolerance was derived."""
    lines = [f"{'case':28s} {'expected':>14s} {'measured':>16s}  verdict"]
    for row in rows.values():
        lines.append(f"{row['case']:28s} {row['expected']:>14s} {row['measured']:>16s}  {row['verdict']}")
    lines += [f"  {row['case']}: {row['note']}" for row in rows.values()]
    if rows:
        lines.append(f"  tolerance: {next(iter(rows.values()))['tolerance']}")
    return "\n".join(lines)
