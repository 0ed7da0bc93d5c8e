"""Synchronization by noise, density solver and particles side by side while the density is resolved.

Setting: S² (d = 3), V = 0 (no attention drift), common noise ``MLPNoise(sigma, "tanh", 64)``, which does not
depend on μ. One ``NoisePath`` drives ``solve_density`` from a von Mises–Fisher bump ρ0 = vMF([0, 0, 1], κ) and
``simulate_particles(scheme="flow")`` (RK4 on the frozen-increment ODE of the density step) from D independent
draws of N tokens i.i.d. from ρ0. Without drift the tokens do not interact: every token is pushed by the same random
flow map Φ_t of the path as the density, ρ_t = Φ_t # ρ0, so *conditional on the path* the tokens at time t are N
i.i.d. samples of ρ_t (up to the time discretizations of the two engines, O(dt⁴) per sub-step). Two identities
follow at every record time t, exact for i.i.d. samples (docs/mathematics.md, 'Diagnostics';
:func:`spde_tokens.compare.sampling_floor`):

    E MMD²(μ_N, ρ_t) = floor(t)² = (1/N) (k_L(x, x) − Σ_l λ_l P_l(ρ_t)),     k(x, y) = exp(2 x·y),
    E [1 − |m̂|²]    = (1 − 1/N) (1 − |m_t|²),     m̂ = (1/N) Σ_i x_i,  m_t = ∫ x ρ_t dA,

(the second from E|m̂|² = |m_t|² + (1 − |m_t|²)/N for unit vectors). Conditional on the path the D draws are
independent, so the mean over draws of MMD²/floor² and of the token dispersion over (1 − 1/N) times the density's
have expectation 1 and a standard error sd/sqrt(D) from their spread over draws; a row passes within 4 standard
errors. A different path, a time shift or a discretization gap between the engines makes the law ν_t of the tokens
differ from ρ_t and adds MMD²(ν_t, ρ_t)/floor(t)² to the first ratio; floor² ∝ 1/N, so this bias grows like N
and the check sees discrepancies far below the sampling noise of one draw (tokens moved by a path of another seed
give a ratio of about 10 at N = 64 after t = 0.08, see the tests).

Rows (:func:`rows`): each ratio averaged per draw over the records t > 0, against 1, and its change
r(t_end) − r(0) on the same draws, against 0: the t = 0 sampling luck of the draws cancels (a control variate),
which cuts the standard error of the MMD ratio about threefold. On the token seed used the 128 draws of full mode
start at r(0) = 0.80 ± 0.05 for the MMD ratio, a sampling fluke of those draws (direct kernel sums give the same
value; 5120 further draws give 1.005 ± 0.010), which the pooled row carries and the change row cancels.

Resolution: the identities compare with the density only while it is resolved, spectral tail < 1e-10
(:data:`spde_tokens.density.TAIL_WARNING`) at every record used. The finite-width field roughens the density
quickly: on the path used (seed 2024, sigma = 1, κ = 8) the tail passes 1e-10 near t = 0.13 at lmax 64 and near
t = 0.31 at lmax 96, and is 1.4e-11 at t = 0.4 at lmax 128 (measured). So quick mode uses lmax 96 to t = 0.25,
full mode lmax 128 to t = 0.4 (records every 0.05, dt = 0.01).

What the window can and cannot show: a tight bump follows the two-point motion of the synchronization case, so
log(1 − |m_t|²)
drifts at the almost-sure rate Λ = −2 sigma² κ(1) = −0.79 sigma² (tanh, d = 3) with fluctuations of standard
deviation about sqrt(4 sigma² (κ(1) + κ'(1)) t): over t = 0.25 the drift is −0.20 and the spread 0.93, so the
direction of the density's dispersion on one resolved path is not predicted by theory and no row checks it (the
figure shows it; on this path it falls from 0.23 to 0.11 by t = 0.25 and to 0.065 by t = 0.4). Settings: κ = 8,
N = 512 tokens, D = 64 draws (quick) or 128 (full), token seed 7. Cost on two shared cores: quick 6 s for the
density and 21 s for the particles and comparisons; full 19 s and 112 s.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from spde_tokens import initial
from spde_tokens.compare import compare
from spde_tokens.density import TAIL_WARNING, solve_density
from spde_tokens.grids import ResolutionWarning, SphereGrid
from spde_tokens.model import AttentionModel
from spde_tokens.noise import MLPNoise, NoisePath
from spde_tokens.particles import simulate_particles
from spde_tokens.validation.common import Z_BAND, Row, check
from spde_tokens.validation.cross_validation import sampling_density, token_draws

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn
    from matplotlib.axes import Axes

TAG = "density"


@dataclass(frozen=True)
class Setup:
    """Parameters of the side-by-side run (recorded in the case's file)."""

    lmax: int = 96
    t_end: float = 0.25
    dt: float = 0.01
    record_every: float = 0.05
    sigma: float = 1.0
    activation: str = "tanh"
    width: int = 64
    kappa: float = 8.0
    n_tokens: int = 512
    draws: int = 64
    path_seed: int = 2024
    token_seed: int = 7


QUICK = Setup()
FULL = Setup(lmax=128, t_end=0.4, draws=128)


def model_and_noise(setup: Setup) -> tuple[AttentionModel, MLPNoise]:
    """V = 0 on S² (no drift; beta only names the model) and the μ-independent field MLPNoise(sigma, φ, width)."""
    return AttentionModel(3, beta=1.0, V=np.zeros((3, 3))), MLPNoise(setup.sigma, setup.activation, setup.width)


def noise_path(setup: Setup, seed: int | None = None) -> NoisePath:
    """The path of the realization (seed ``setup.path_seed`` unless given), t_end/dt steps of dt."""
    n_steps = int(round(setup.t_end / setup.dt))
    return NoisePath(model_and_noise(setup)[1], 3, setup.dt, n_steps, setup.path_seed if seed is None else seed)


def density_run(setup: Setup, path: NoisePath) -> xr.Dataset:
    """``solve_density`` from vMF([0, 0, 1], κ) on ``SphereGrid(lmax)`` along ``path`` (RK4, records every
    ``record_every``); the resolution is judged from its ``spectral_tail`` by the caller."""
    model, noise = model_and_noise(setup)
    rho0 = initial.von_mises_fisher(SphereGrid(setup.lmax), [0.0, 0.0, 1.0], setup.kappa)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResolutionWarning)
        return solve_density(model, noise, rho0, setup.t_end, setup.dt, path=path, save_every=setup.record_every,
                             progress=False, engine="spectral")


def particle_statistics(setup: Setup, dens: xr.Dataset, path: NoisePath, tokens: list[np.ndarray]) -> dict:
    """Run ``simulate_particles(scheme="flow")`` from each draw of tokens along ``path`` and ``compare`` with dens.

    Returns ``mmd`` and ``dispersion_particles`` (draws, records), ``floor`` (records; the sampling floor depends
    on ρ_t and N only), ``positions`` (tokens of the first draw at the last record) and ``seconds`` (all runs).
    """
    model, noise = model_and_noise(setup)
    start = time.perf_counter()
    mmd, disp = [], []
    floor = positions = None
    for x0 in tokens:
        parts = simulate_particles(model, noise, x0, setup.t_end, setup.dt, path=path, scheme="flow",
                                   save_every=setup.record_every, progress=False)
        cmp = compare(dens, parts)
        mmd.append(cmp["mmd"].values)
        disp.append(cmp["dispersion_particles"].values)
        if floor is None:
            floor, positions = cmp["mmd_sampling_floor"].values, parts["positions"].values[-1]
    return {"mmd": np.array(mmd), "dispersion_particles": np.array(disp), "floor": floor, "positions": positions,
            "seconds": time.perf_counter() - start}


def ratios(res: dict, n_tokens: int) -> dict:
    """Per draw and record: MMD²/floor² and token dispersion / ((1 − 1/N) density dispersion), expectation 1 each."""
    return {"mmd": res["mmd"] ** 2 / res["floor"] ** 2,
            "dispersion": res["dispersion_particles"] / ((1.0 - 1.0 / n_tokens) * res["dispersion_density"])}


def mean_and_se(values: np.ndarray) -> tuple[float, float]:
    """Mean over draws (axis 0) and its standard error sd/sqrt(D)."""
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


def measure(setup: Setup) -> dict:
    """The density once and the particles for every draw, on one path; the records, the ratios and the timings."""
    path = noise_path(setup)
    start = time.perf_counter()
    dens = density_run(setup, path)
    density_seconds = time.perf_counter() - start
    tokens = token_draws(sampling_density(setup.kappa), [setup.n_tokens], setup.draws, setup.token_seed)[0]
    res = particle_statistics(setup, dens, path, tokens)
    res.update(time=dens["time"].values, dispersion_density=dens["dispersion"].values,
               spectral_tail=dens["spectral_tail"].values, density_final=dens["density"].values[-1],
               lat=dens["lat"].values, lon=dens["lon"].values, density_seconds=density_seconds)
    res["ratios"] = ratios(res, setup.n_tokens)
    return res


def rows(case: str, setup: Setup, res: dict) -> list[Row]:
    """Table rows of ``case``, 4 standard errors over the draws: each ratio pooled over the records t > 0 (expected 1)
    and its change r(t_end) − r(0) on the same draws (expected 0, a control variate); the density's resolution."""
    n, d = setup.n_tokens, setup.draws
    times = res["time"]
    label = f"tanh d=3 sigma={setup.sigma:g} V=0, lmax {setup.lmax}, N = {n}, {d} draws"
    tolerance = (f"4 standard errors of the mean over {d} token draws, independent given the path "
                 f"(sd of the per-draw value / sqrt({d}))")
    out = []
    for key, what, identity in (
            ("mmd", "r = MMD²(tokens, ρ_t) / floor(t)², kernel exp(2 x·y)",
             "E MMD² = floor² = (k_L(x, x) − Σ λ_l P_l(ρ_t))/N for i.i.d. samples of ρ_t"),
            ("dispersion", "r = token dispersion 1 − |m̂|² / ((1 − 1/N) density dispersion 1 − |m_t|²)",
             "E(1 − |m̂|²) = (1 − 1/N)(1 − |m_t|²) for N i.i.d. samples of ρ_t")):
        values = res["ratios"][key]
        mean, se = mean_and_se(values[:, 1:].mean(axis=1))
        z = abs(mean - 1.0) / se
        out.append(check(case, f"{TAG}/{key}/pooled: {what}, mean over the {times.size - 1} records "
                         f"t = {times[1]:g}..{times[-1]:g} and the draws ({label})", f"1: {identity}",
                         f"{mean:.4f} ± {se:.4f} (z = {z:.2f})", tolerance, z <= Z_BAND))
        mean, se = mean_and_se(values[:, -1] - values[:, 0])
        z = abs(mean) / se
        if key == "mmd":
            extra = f"rms MMD {np.sqrt(np.mean(res['mmd'][:, -1] ** 2)):.4f}, floor {res['floor'][-1]:.4f}"
        else:
            extra = (f"tokens {res['dispersion_particles'][:, -1].mean():.5f} vs (1 − 1/N) density "
                     f"{(1 - 1 / n) * res['dispersion_density'][-1]:.5f}")
        out.append(check(case, f"{TAG}/{key}/change: r(t = {times[-1]:g}) − r(0) on the same draws, mean over "
                         f"the draws ({label})", "0: E r = 1 at both times (the t = 0 sampling luck cancels)",
                         f"{mean:+.4f} ± {se:.4f} (z = {z:.2f}); at t = {times[-1]:g}: {extra}", tolerance,
                         z <= Z_BAND))
    tail = float(np.max(res["spectral_tail"]))
    out.append(check(case, f"{TAG}/resolved: largest spectral tail of the density over the {times.size} records "
                     f"t ≤ {times[-1]:g} (lmax {setup.lmax})", f"< {TAIL_WARNING:g} (the density is resolved where "
                     "it is compared)", f"{tail:.2e}; density dispersion {res['dispersion_density'][0]:.4f} → "
                     f"{res['dispersion_density'][-1]:.4f}", "TAIL_WARNING of spde_tokens.density",
                     tail < TAIL_WARNING))
    return out


def dataset_variables(setup: Setup, res: dict) -> tuple[dict, dict]:
    """Data variables and coordinates of the side-by-side run for the case's Dataset (dimensions ``density_*``)."""
    one = {"units": "1"}
    rec, draw = ("density_time",), ("density_draw",)
    data = {
        "density_dispersion": (rec, res["dispersion_density"],
                               {**one, "long_name": "dispersion 1 - |m_t|^2 of the density"}),
        "density_spectral_tail": (rec, res["spectral_tail"],
                                  {**one, "long_name": "share of the density's power at degrees >= 0.9 lmax"}),
        "density_mmd_floor": (rec, res["floor"],
                              {**one, "long_name": "sampling floor sqrt(E MMD^2) of N i.i.d. samples of rho_t"}),
        "density_token_mmd": (draw + rec, res["mmd"],
                              {**one, "long_name": "MMD between the tokens of a draw and the density, exp(2 x.y)"}),
        "density_token_dispersion": (draw + rec, res["dispersion_particles"],
                                     {**one, "long_name": "dispersion 1 - |mean token|^2 of a draw"}),
        "density_final": (("density_lat", "density_lon"), res["density_final"],
                          {**one, "long_name": "density w.r.t. surface measure at the last record"}),
        "density_final_tokens": (("density_token", "density_component"), res["positions"],
                                 {**one, "long_name": "tokens of draw 0 at the last record"}),
        "density_seconds": ((), res["density_seconds"], {"units": "s", "long_name": "wall time of the density run"}),
        "density_particle_seconds": ((), res["seconds"],
                                     {"units": "s", "long_name": "wall time of all particle runs and comparisons"}),
    }
    coords = {
        "density_time": ("density_time", res["time"], {**one, "long_name": "depth t of the side-by-side records"}),
        "density_draw": ("density_draw", np.arange(setup.draws), {**one, "long_name": "independent token draw"}),
        "density_token": ("density_token", np.arange(setup.n_tokens), {**one, "long_name": "token index"}),
        "density_component": ("density_component", np.arange(3), {**one, "long_name": "Cartesian component"}),
        "density_lat": ("density_lat", res["lat"], {"units": "degrees_north", "long_name": "latitude"}),
        "density_lon": ("density_lon", res["lon"], {"units": "degrees_east", "long_name": "longitude"}),
    }
    return data, coords


def attrs(setup: Setup) -> dict:
    """The setup as attributes ``density_<field>`` of the case's file."""
    return {f"density_{key}": value for key, value in asdict(setup).items()}


def plot_panels(ds: xr.Dataset, ax_disp: Axes, ax_mmd: Axes, ax_map: Axes) -> None:
    """Density dispersion with the draws' token dispersions (mean ± 4 SE and each draw), rms MMD against the
    sampling floor, and the density at the last record with the tokens of draw 0 (orthographic view)."""
    t = ds["density_time"].values
    n = ds.sizes["density_token"]
    disp = ds["density_token_dispersion"].values
    mean, se = disp.mean(axis=0), disp.std(axis=0, ddof=1) / np.sqrt(disp.shape[0])
    for k in range(disp.shape[0]):
        ax_disp.plot(t, disp[k], color="C1", lw=0.5, alpha=0.3, label="token draws" if k == 0 else None)
    ax_disp.fill_between(t, mean - Z_BAND * se, mean + Z_BAND * se, color="C1", alpha=0.4,
                         label="mean of the draws ± 4 SE")
    ax_disp.plot(t, (1 - 1 / n) * ds["density_dispersion"].values, "k-", lw=1.5,
                 label=r"density: $(1 - 1/N)(1 - |m_t|^2)$")
    ax_disp.set_xlabel("depth t")
    ax_disp.set_ylabel("dispersion")
    ax_disp.set_title(f"(g) density vs {disp.shape[0]} draws of {n} tokens, one path", fontsize=10)
    ax_disp.legend(fontsize=7)

    mmd = ds["density_token_mmd"].values
    ax_mmd.plot(np.repeat(t[None], mmd.shape[0], axis=0).ravel(), mmd.ravel(), ".", color="0.6", ms=3,
                label="single draws")
    ax_mmd.plot(t, np.sqrt(np.mean(mmd**2, axis=0)), "o-", color="C0", label="rms over draws")
    ax_mmd.plot(t, ds["density_mmd_floor"].values, "--", color="C3", label="sampling floor (i.i.d. tokens)")
    ax_mmd.set_xlabel("depth t")
    ax_mmd.set_ylabel("MMD(tokens, density)")
    ax_mmd.set_title(f"(h) MMD vs floor; max spectral tail {float(ds['density_spectral_tail'].max()):.1e}",
                     fontsize=10)
    ax_mmd.set_ylim(bottom=0)
    ax_mmd.legend(fontsize=7)

    lat, lon = np.meshgrid(np.radians(ds["density_lat"].values), np.radians(ds["density_lon"].values), indexing="ij")
    nodes = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1).reshape(-1, 3)
    rho = ds["density_final"].values.ravel()
    tokens = ds["density_final_tokens"].values
    centre = tokens.mean(axis=0) / np.linalg.norm(tokens.mean(axis=0))
    e1 = np.cross(centre, [0.0, 0.0, 1.0] if abs(centre[2]) < 0.9 else [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(centre, e1)
    near = nodes @ centre > 0.0
    levels = np.linspace(0.0, rho[near].max(), 15)
    filled = ax_map.tricontourf(nodes[near] @ e1, nodes[near] @ e2, np.clip(rho[near], 0.0, None), levels=levels,
                                cmap="viridis")
    ax_map.figure.colorbar(filled, ax=ax_map, label="density w.r.t. surface measure", format="%.1f")
    ax_map.plot(tokens @ e1, tokens @ e2, ".", color="w", ms=1.5, alpha=0.8)
    ax_map.set_aspect("equal")
    ax_map.set_xlim(-0.7, 0.7)
    ax_map.set_ylim(-0.7, 0.7)
    ax_map.set_title(f"(i) density at t = {t[-1]:g} and the tokens of one draw (white)", fontsize=10)
    ax_map.set_xlabel("orthographic view around the mean token")
