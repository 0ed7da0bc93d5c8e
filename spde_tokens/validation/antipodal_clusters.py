"""Antipodal clusters of many tokens and in the density solver: the part of the ``antipodal`` case.

Clusters. Two caps of n equal-mass tokens each, of angular radius r₀ = 1e-4, around c and c' with 1 + c·c' = 5e-5.
Softmax weights inside a cap are equal up to O(beta r²), so every token of a cap sees the attention output of the two
normalized cap means c̄₁, c̄₂ — that of two tokens — up to O(r²): the cap means follow the two-token layer update up to
O(r²) per step, and log(1 + c̄₁·c̄₂) has the two-token exponent Λ = sigma² (d − 2 − cosh 2beta)/cosh² beta. Inside a
cap the noise field is sigma P_x ΔW a with a the same vector for every token (the gradient of x ↦ sigma x·ΔW a: the
flow is conformal), so every chord of a cap scales by one factor e^{ℓ(t)}, and for a pair of tokens x, y moved by
the same P_x dξ, dξ ~ N(0, s² dt I), s² = sigma² |a|², Itô gives d log(1 − x·y) = −(d − 1) s² dt + 2 s dB: the radius
obeys ℓ(t) = B(S) − ((d − 1)/2) S, S = ∫ s² dt, with |a| = tanh beta at the antipodal pair (a = (p − q) x). Hence
the median rate of log r is −(d − 1) sigma² tanh² beta / 2, and sup_t ℓ(t) ≤ sup_S (B(S) − (d − 1) S/2), which is
exponential with rate d − 1: P(sup ℓ > z) = e^{−(d − 1) z}.

Density. For a density with ρ(−x) = ρ(x) and Qᵀ K = I the attention output is odd, a(−x) = −a(x), so the ValueNoise
field u(x) = sigma P_x ΔW a(x) and the Itô correction −(sigma²/4) ∇|a|² are odd vector fields, i.e. invariant under
the antipodal map: the equation commutes with x ↦ −x and the odd-degree spherical-harmonic coefficients stay 0. The
same holds for a token set closed under x ↦ −x in the layer update.

The equations, parameters and tolerances are in the docstring of :mod:`spde_tokens.validation.antipodal`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
from scipy import special

from spde_tokens import initial
from spde_tokens.density import TAIL_WARNING, solve_density
from spde_tokens.drift import tangent_projection
from spde_tokens.grids import Grid, ResolutionWarning, SphereGrid
from spde_tokens.noise import NoisePath, ValueNoise
from spde_tokens.particles import simulate_particles
from spde_tokens.validation import deep_density
from spde_tokens.validation.common import Z_BAND, Row, check
from spde_tokens.validation.two_tokens import (
    faithfulness,
    pair_distance,
    rate_statistics,
    simulate_coupled,
    tight_pairs,
)
from spde_tokens.validation.value_pairs import (
    DT,
    SIGMA,
    STAY,
    V0,
    ValueBatch,
    exponent,
    model_for,
    sample_plan,
    variance_rate,
)

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn
    from matplotlib.axes import Axes

CAP_RADIUS = 1e-4
#: (beta, d): Λ = −1.16 sigma² (antipodal clusters attract) and Λ = +3.51 sigma² (they separate)
CELLS = ((1.0, 3), (0.5, 8))
TOKENS_PER_CAP = {True: 16, False: 64}  # quick, full
REALIZATIONS = {True: 200, False: 400}
#: probability that the radius bound is exceeded in some realization of a cell (a false alarm)
ALPHA = 1e-3
EPS = np.finfo(float).eps
RK4_STAGES = 4

DENSITY_LMAX = 64
DENSITY_KAPPA = 10.0
DENSITY_BETA = 1.0
DENSITY_SIGMA = 0.5
DENSITY_T = 1.0
DENSITY_DT = 0.01
HALF_TOKENS = 256
PATH_SEED = 2025
TOKEN_SEED = 11


def tight_caps(rng: np.random.Generator, realizations: int, dim: int, per_cap: int, radius: float) -> np.ndarray:
    """Two caps of equal-mass tokens around an antipodal pair of centres c, c' with 1 + c·c' = V0.

    x = cos θ c + sin θ w, w uniform among the unit tangent vectors at the centre, θ = radius · U^{1/(d−1)}
    (uniform in the cap to first order in the radius).

    Parameters
    ----------
    rng : random generator; realizations, dim : R and d; per_cap : n tokens per cap; radius : angular radius.

    Returns
    -------
    (R, 2n, d) unit vectors: the n tokens of the cap around c, then the n around c'.
    """
    centres = tight_pairs(rng, realizations, dim, V0, sign=-1.0)[:, :, None, :]  # (R, 2, 1, d)
    v = tangent_projection(centres, rng.standard_normal((realizations, 2, per_cap, dim)))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    theta = radius * rng.random((realizations, 2, per_cap, 1)) ** (1.0 / (dim - 1))
    return (np.cos(theta) * centres + np.sin(theta) * v).reshape(realizations, 2 * per_cap, dim)


def cap_means(x: np.ndarray, per_cap: int) -> np.ndarray:
    """The normalized means c̄₁, c̄₂ (R, 2, d) of the two caps of :func:`tight_caps`."""
    m = x.reshape(x.shape[0], 2, per_cap, x.shape[-1]).mean(axis=2)
    return m / np.linalg.norm(m, axis=-1, keepdims=True)


def cap_observables(x: np.ndarray, per_cap: int) -> np.ndarray:
    """(2, R): log(1 + c̄₁·c̄₂) and the log of the cap radius max_i |x_i − c̄| (largest chord to the mean, both caps)."""
    means = cap_means(x, per_cap)
    caps = x.reshape(x.shape[0], 2, per_cap, x.shape[-1])
    radius = np.max(np.linalg.norm(caps - means[:, :, None, :], axis=-1), axis=(1, 2))
    return np.stack([np.log(pair_distance(means, -1.0)), np.log(radius)])


def radius_exponent(beta: float, dim: int, sigma: float = SIGMA) -> float:
    """−(d − 1) sigma² tanh² beta / 2: the a.s. rate of log(cap radius) at antipodal clusters (|a| = tanh beta)."""
    return -0.5 * (dim - 1) * sigma**2 * np.tanh(beta) ** 2


def radius_bound(dim: int, realizations: int) -> float:
    """z with R e^{−(d − 1) z} = ALPHA: sup_t log(r(t)/r(0)) exceeds it in some realization with probability ≤ ALPHA.

    log(r/r₀) = B(S) − ((d − 1)/2) S (module docstring), whose supremum over S ≥ 0 is exponential with rate d − 1;
    the union bound over the R realizations gives P(max > z) ≤ R e^{−(d − 1) z}.
    """
    return float(np.log(realizations / ALPHA) / (dim - 1))


def persistence_interval(beta: float, dim: int, horizon: float) -> tuple[float, float]:
    """Bounds of P(v(T) < v(0)), v = 1 + c̄₁·c̄₂, from the linear (v → 0) law of log v.

    For small v, X = log(v/v₀) is a Brownian motion with drift Λ and variance rate s² (:func:`exponent`,
    :func:`variance_rate`); it is trusted while v < STAY, i.e. X < m = log(STAY/V0), where the drift and variance of
    log v differ from their limits by O(v) ≤ O(1e-2). The paths that stay below m end below 0 with probability
    P(X_T < 0, M_T < m) = Φ(−ΛT/(s√T)) − e^{2Λm/s²} Φ((−2m − ΛT)/(s√T)) (reflection principle, M_T the running
    maximum); those that reach m, with probability P(M_T ≥ m), may end anywhere.

    Parameters
    ----------
    beta, dim : the cell; horizon : T.

    Returns
    -------
    (P(X_T < 0, M_T < m), P(X_T < 0, M_T < m) + P(M_T ≥ m)).
    """
    lam, s = exponent(beta, dim), np.sqrt(variance_rate(beta) * horizon)
    m = np.log(STAY / V0)
    reflect = np.exp(2 * lam * m / variance_rate(beta))
    below = special.ndtr(-lam * horizon / s) - reflect * special.ndtr((-2 * m - lam * horizon) / s)
    reach = 1.0 - special.ndtr((m - lam * horizon) / s) + reflect * special.ndtr((-m - lam * horizon) / s)
    return float(below), float(below + reach)


def measure_clusters(beta: float, dim: int, per_cap: int, realizations: int, seed: int) -> dict:
    """Two antipodal caps under the layer update, steps DT and 2 DT on the same increments (as the two-token rows).

    The cap means should follow the two-token law, d log(1 + c̄₁·c̄₂) = Λ dt + s dB, and the cap radius r
    d log r = −((d − 1)/2) sigma² tanh² beta dt + sigma tanh beta dB' (module docstring).

    Parameters
    ----------
    beta, dim : the cell; per_cap : tokens per cap; realizations : R; seed : seed of the caps and increments.
        T is the sign run's (:func:`spde_tokens.validation.value_pairs.sample_plan`).

    Returns
    -------
    dict: :func:`rate_statistics` of log(1 + c̄₁·c̄₂) (``"v"``) and of log r (``"radius"``); ``"persistence"`` the
    fraction of realizations whose 1 + c̄₁·c̄₂ ends below its start; ``"max_log_radius_ratio"`` the largest
    log(r(t)/r(0)) over realizations and time, ``"initial_radius"`` and ``"max_radius"`` the largest r at t = 0
    and over the run; ``"median_log_v"`` and ``"median_log_radius"`` the median paths of log(v(t)/v(0)) and
    log(r(t)/r(0)) (DT chain, every 2 DT); ``"horizon"`` T.
    """
    horizon, _ = sample_plan(beta, dim, realizations)
    n_pairs = max(1, int(round(horizon / (2 * DT))))
    horizon = 2 * n_pairs * DT
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    x0 = tight_caps(rng, realizations, dim, per_cap, CAP_RADIUS)
    series = simulate_coupled(ValueBatch(model_for(beta, dim), ValueNoise(SIGMA)), x0, DT, n_pairs, rng,
                              lambda x: cap_observables(x, per_cap))  # (steps, chain, quantity, R)
    log_v, log_r = series[:, :, 0], series[:, :, 1]
    ratio_v, ratio_r = log_v[:, 0] - log_v[0, 0], log_r[:, 0] - log_r[0, 0]
    return {"v": rate_statistics(log_v, horizon), "radius": rate_statistics(log_r, horizon), "horizon": horizon,
            "persistence": float(np.mean(ratio_v[-1] < 0)), "max_log_radius_ratio": float(ratio_r.max()),
            "max_radius": float(np.exp(log_r[:, 0].max())), "initial_radius": float(np.exp(log_r[0, 0].max())),
            "median_log_v": np.median(ratio_v, axis=1), "median_log_radius": np.median(ratio_r, axis=1)}


def _cell_tag(beta: float, dim: int) -> str:
    return f"d={dim},β={beta:g}"


def cluster_rows(case: str, quick: bool) -> tuple[list[Row], dict]:
    """Rows and results of the cluster runs at the CELLS.

    Parameters
    ----------
    case : the case the rows belong to; quick : 2 × 16 tokens and 200 realizations per cell (full: 2 × 64 and 400).

    Returns
    -------
    The rows (faithfulness; per cell the exponent of log(1 + c̄₁·c̄₂) against Λ, the radius rate against
    −(d − 1) sigma² tanh² beta / 2, the radius bound; persistence where Λ < 0) and a dict of the results.
    """
    per_cap, realizations = TOKENS_PER_CAP[quick], REALIZATIONS[quick]
    worst = max(faithfulness(ValueBatch(model_for(b, d), ValueNoise(SIGMA)),
                             tight_caps(np.random.default_rng(99), 2, d, per_cap, CAP_RADIUS), DT) for b, d in CELLS)
    rows = [check(case, f"clusters/faithfulness: vectorized layer update vs simulate_particles, 2 × {per_cap} tokens "
                  "in two antipodal caps, same NoisePath, (β, d) ∈ " + ", ".join(f"({b:g}, {d})" for b, d in CELLS)
                  + ", t = 1", "identical up to rounding (≤ 1e-10)", f"max |Δx| = {worst:.1e}",
                  "rounding of the same formulas over 200 steps", worst <= 1e-10)]
    results = []
    for k, (beta, dim) in enumerate(CELLS):
        res = measure_clusters(beta, dim, per_cap, realizations, seed=30_000 + k)
        results.append(res)
        tag, lam = _cell_tag(beta, dim), exponent(beta, dim)
        v, rad = res["v"], res["radius"]
        z = (v["richardson"] - lam) / v["richardson_se"]
        rows.append(check(case, f"clusters/rate/{tag}: Richardson rate 2 med s(dt) − med s(2 dt) of log(1 + c̄₁·c̄₂), "
                          "cap means of "
                          f"2 × {per_cap} tokens from caps of radius {CAP_RADIUS:g} at 1 + c₁·c₂ = {V0:g}, "
                          f"T = {res['horizon']:g}, {realizations} realizations",
                          f"two-token exponent Λ = sigma²(d − 2 − cosh 2β)/cosh²β = {lam:+.3f}",
                          f"{v['richardson']:+.3f} ± {v['richardson_se']:.3f} (z = {z:+.2f}; dt = {DT:g} alone "
                          f"{v['median']:+.3f}, 2 dt {v['median_coarse']:+.3f})",
                          "4 standard errors of the median (as the two-token rate rows)", abs(z) <= Z_BAND))
        theory = radius_exponent(beta, dim)
        z = (rad["richardson"] - theory) / rad["richardson_se"]
        rows.append(check(case, f"clusters/radius_rate/{tag}: Richardson rate 2 med s(dt) − med s(2 dt) of log(cap "
                          "radius)",
                          f"−(d − 1) sigma² tanh²β / 2 = {theory:+.3f} (conformal contraction, |a| = tanh β)",
                          f"{rad['richardson']:+.3f} ± {rad['richardson_se']:.3f} (z = {z:+.2f}; dt = {DT:g} alone "
                          f"{rad['median']:+.3f})", "4 standard errors of the median", abs(z) <= Z_BAND))
        bound = radius_bound(dim, realizations)
        rows.append(check(case, f"clusters/radius_max/{tag}: largest log(r(t)/r(0)) over realizations and t ≤ T "
                          "(cap radius r: largest chord to the mean)",
                          f"≤ z = log(R/α)/(d − 1) = {bound:.2f} (α = {ALPHA:g})",
                          f"{res['max_log_radius_ratio']:+.2f}; radius ≤ {res['initial_radius']:.2e} at t = 0, "
                          f"≤ {res['max_radius']:.2e} over the run",
                          "P(sup_t log(r/r₀) > z) = e^{−(d−1) z} per realization (sup of a Brownian motion with drift "
                          "−(d − 1)/2 in its own clock), union bound over R", res["max_log_radius_ratio"] <= bound))
        if lam < 0:
            low, high = persistence_interval(beta, dim, res["horizon"])
            p = res["persistence"]
            band = Z_BAND * np.sqrt(max(p * (1 - p), low * (1 - low), high * (1 - high)) / realizations)
            rows.append(check(case, f"clusters/persistence/{tag}: fraction of realizations with 1 + c̄₁·c̄₂ below "
                              f"its start at T = {res['horizon']:g}",
                              f"in [{low:.3f}, {high:.3f}]: linear law of log v (Brownian motion, drift Λ, variance "
                              f"rate {variance_rate(beta):.2f} sigma²) below 1 + c̄₁·c̄₂ = {STAY:g}",
                              f"{p:.3f} ± {np.sqrt(p * (1 - p) / realizations):.3f}",
                              f"interval ± 4 binomial standard errors ({band:.3f}); the interval's width is the "
                              "probability of reaching the nonlinear region", low - band <= p <= high + band))
    return rows, {"results": results, "faithfulness": worst, "per_cap": per_cap, "realizations": realizations}


def second_moment_eigenvalue(grid: Grid, field: np.ndarray) -> float:
    """Largest eigenvalue of ∫ x xᵀ ρ dA / ∫ ρ dA by the grid's quadrature (exact for a band-limited ρ)."""
    w = grid.weights() * field
    x = grid.points()
    return float(np.linalg.eigvalsh(np.einsum("ij,ija,ijb->ab", w, x, x) / w.sum())[-1])


def density_symmetry(lmax: int = DENSITY_LMAX, t_end: float = DENSITY_T, half_tokens: int = HALF_TOKENS) -> dict:
    """The density from a symmetric vMF mixture and antipodally closed tokens, driven by one noise path.

    ρ₀ = ½ vMF(e₃, κ) + ½ vMF(−e₃, κ) on ``SphereGrid(lmax)``, ``ValueNoise(DENSITY_SIGMA)``, step DENSITY_DT. As
    ρ(−x) = ρ(x) implies a_ρ(−x) = −a_ρ(x), the odd-degree coefficients of ρ stay 0 and tokens x_{i+n} = −x_i stay
    antipodal (module docstring).

    Parameters
    ----------
    lmax : degree of the grid; t_end : final time; half_tokens : n, the tokens drawn from ρ₀ (followed by their
        antipodes, moved by ``simulate_particles`` on the density's ``NoisePath``).

    Returns
    -------
    dict of arrays on the records (every step): ``"odd_share"`` Σ_{l odd} P_l / Σ_l P_l, ``"tail"`` the spectral
    tail, ``"order_density"`` and ``"order_tokens"`` the largest eigenvalue of ∫ x xᵀ dρ and of (1/N) Σ x_i x_iᵀ,
    ``"asymmetry"`` max_i |x_i + x_{i+n}|; and ``"stages"`` (RK4 stage evaluations), ``"n_steps"``, ``"lmax"``,
    ``"t_end"``, ``"n_tokens"``.
    """
    grid = SphereGrid(lmax)
    rho0 = initial.mixture(grid, [0.5, 0.5], [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]], [DENSITY_KAPPA] * 2)
    model, noise = model_for(DENSITY_BETA, 3), ValueNoise(DENSITY_SIGMA)
    n_steps = int(round(t_end / DENSITY_DT))
    path = NoisePath(noise, 3, DENSITY_DT, n_steps, seed=PATH_SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResolutionWarning)  # the tail is judged by a row
        dens = solve_density(model, noise, rho0, t_end, DENSITY_DT, path=path, save_every=DENSITY_DT,
                             progress=False, engine="spectral")
    power = dens["power_spectrum"].values
    half = initial.sample(rho0, half_tokens, seed=TOKEN_SEED)
    parts = simulate_particles(model, noise, np.concatenate([half, -half]), t_end, DENSITY_DT, path=path,
                               save_every=DENSITY_DT, progress=False, attention="direct")
    x = parts["positions"].values
    return {"time": dens["time"].values, "odd_share": power[:, 1::2].sum(axis=1) / power.sum(axis=1),
            "tail": dens["spectral_tail"].values,
            "order_density": np.array([second_moment_eigenvalue(grid, f) for f in dens["density"].values]),
            "order_tokens": np.linalg.eigvalsh(np.einsum("tna,tnb->tab", x, x) / x.shape[1])[:, -1],
            "asymmetry": np.max(np.abs(x[:, :half_tokens] + x[:, half_tokens:]), axis=(1, 2)),
            "stages": RK4_STAGES * int(dens["substeps"].values[1:].sum()), "n_steps": n_steps, "lmax": lmax,
            "t_end": t_end, "n_tokens": 2 * half_tokens}


def density_rows(case: str, res: dict) -> list[Row]:
    """Rows of the density run: odd degrees stay at rounding, the tokens stay antipodally closed, the run resolved."""
    setup = (f"SphereGrid({res['lmax']}), ρ₀ = ½ vMF(e₃, {DENSITY_KAPPA:g}) + ½ vMF(−e₃, {DENSITY_KAPPA:g}), "
             f"β = {DENSITY_BETA:g}, ValueNoise({DENSITY_SIGMA:g}), dt = {DENSITY_DT:g}, t ≤ {res['t_end']:g}")
    odd = float(res["odd_share"].max())
    odd_tol = (res["stages"] * EPS) ** 2
    asym = float(res["asymmetry"].max())
    asym_tol = res["n_steps"] * res["n_tokens"] * EPS
    tail = float(res["tail"].max())
    return [
        check(case, f"density/odd_degrees: largest share of power at odd degrees, {setup}",
              "0: ρ(−x) = ρ(x) makes a_ρ odd, the equation commutes with x → −x",
              f"{odd:.1e}", f"rounding: (unit-roundoff growth over {res['stages']} RK4 stage evaluations)² = "
              f"({res['stages']} ε)² = {odd_tol:.1e}, relative power", odd <= odd_tol),
        check(case, f"density/tokens_symmetric: max |x_i + x_(i+n)| over t ≤ {res['t_end']:g}, {res['n_tokens']} "
              "tokens (n drawn from ρ₀ and their antipodes), simulate_particles on the density's NoisePath",
              "0: the layer update commutes with x → −x", f"{asym:.1e}",
              f"rounding: n_steps × N ε = {res['n_steps']} × {res['n_tokens']} ε = {asym_tol:.1e} (error bound of "
              "the attention sums over N tokens, per step, without growth)", asym <= asym_tol),
        check(case, f"density/resolved: largest spectral tail over t ≤ {res['t_end']:g}",
              f"< {TAIL_WARNING:g} (spde_tokens.density.TAIL_WARNING)", f"{tail:.1e}",
              "the density is compared with the tokens only while resolved", tail < TAIL_WARNING),
    ]


def measure(case: str, quick: bool) -> tuple[list[Row], xr.Dataset]:
    """The cluster and density rows and their arrays.

    Parameters
    ----------
    case : the case the rows belong to; quick : the quick settings of :func:`cluster_rows` (the density run is the
        same in both modes).

    Returns
    -------
    The rows and an ``xarray.Dataset`` (dimensions ``cluster_cell``, ``cluster_step``, ``density_time`` and the
    ``deep_*`` ones of :mod:`spde_tokens.validation.deep_density`, the antipodal clusters to depth 10 on Lagrangian
    nodes beside tokens on the same path) merged into the case's file.
    """
    rows, clusters = cluster_rows(case, quick)
    dens = density_symmetry()
    rows += density_rows(case, dens)
    deep_setup = deep_density.DeepSetup("antipodal")
    deep = deep_density.measure(deep_setup)
    rows += deep_density.rows(case, deep_setup, deep)
    deep_vars, deep_coords, deep_attrs = deep_density.dataset_variables(deep_setup, deep)
    ds = _dataset(clusters, dens)
    return rows, ds.assign_coords(deep_coords).assign(deep_vars).assign_attrs(deep_attrs)


def _dataset(clusters: dict, dens: dict) -> xr.Dataset:
    one = {"units": "1"}
    results = clusters["results"]
    steps = max(r["median_log_v"].size for r in results)
    paths = {key: np.full((len(results), steps), np.nan) for key in ("median_log_v", "median_log_radius")}
    for k, res in enumerate(results):
        for key, arr in paths.items():
            arr[k, : res[key].size] = res[key]
    cell = ("cluster_cell",)

    def per_cell(f) -> np.ndarray:
        return np.array([f(b, d, r) for (b, d), r in zip(CELLS, results, strict=True)], dtype=float)

    persistence = per_cell(lambda b, d, r: r["persistence"] if exponent(b, d) < 0 else np.nan)
    interval = np.array([persistence_interval(b, d, r["horizon"]) if exponent(b, d) < 0 else (np.nan, np.nan)
                         for (b, d), r in zip(CELLS, results, strict=True)])
    data = {
        "cluster_beta": (cell, per_cell(lambda b, d, r: b), {**one, "long_name": "inverse temperature of the cell"}),
        "cluster_dim": (cell, per_cell(lambda b, d, r: d), {**one, "long_name": "ambient dimension of the cell"}),
        "cluster_lambda_theory": (cell, per_cell(lambda b, d, r: exponent(b, d)),
                                  {**one, "long_name": "two-token exponent (d - 2 - cosh 2 beta)/cosh^2 beta"}),
        "cluster_horizon": (cell, per_cell(lambda b, d, r: r["horizon"]), {**one, "long_name": "time T of the run"}),
        "cluster_slope_richardson": (cell, per_cell(lambda b, d, r: r["v"]["richardson"]),
                                     {**one, "long_name": "2 med s(dt) - med s(2 dt), slopes of log(1 + cbar1.cbar2)"}),
        "cluster_slope_richardson_se": (cell, per_cell(lambda b, d, r: r["v"]["richardson_se"]),
                                        {**one, "long_name": "standard error of cluster_slope_richardson"}),
        "cluster_slope_median": (cell, per_cell(lambda b, d, r: r["v"]["median"]),
                                 {**one, "long_name": "median slope of log(1 + cbar1.cbar2), step dt"}),
        "cluster_radius_rate_theory": (cell, per_cell(lambda b, d, r: radius_exponent(b, d)),
                                       {**one, "long_name": "-(d - 1) tanh^2 beta / 2, sigma = 1"}),
        "cluster_radius_richardson": (cell, per_cell(lambda b, d, r: r["radius"]["richardson"]),
                                      {**one, "long_name": "2 med s(dt) - med s(2 dt), s slopes of log(cap radius)"}),
        "cluster_radius_richardson_se": (cell, per_cell(lambda b, d, r: r["radius"]["richardson_se"]),
                                         {**one, "long_name": "standard error of cluster_radius_richardson"}),
        "cluster_max_log_radius_ratio": (cell, per_cell(lambda b, d, r: r["max_log_radius_ratio"]),
                                         {**one, "long_name": "largest log(r(t)/r(0)) over realizations and time"}),
        "cluster_radius_bound": (cell, per_cell(lambda b, d, r: radius_bound(d, clusters["realizations"])),
                                 {**one, "long_name": "bound log(R/alpha)/(d - 1) of cluster_max_log_radius_ratio"}),
        "cluster_max_radius": (cell, per_cell(lambda b, d, r: r["max_radius"]),
                               {"units": "radian", "long_name": "largest cap radius (chord) over realizations and "
                                                                "time"}),
        "cluster_persistence": (cell, persistence,
                                {**one, "long_name": "fraction with 1 + cbar1.cbar2 below its start at T"}),
        "cluster_persistence_low": (cell, interval[:, 0], {**one, "long_name": "lower end of the theory interval"}),
        "cluster_persistence_high": (cell, interval[:, 1], {**one, "long_name": "upper end of the theory interval"}),
        "cluster_median_log_ratio": (("cluster_cell", "cluster_step"), paths["median_log_v"],
                                     {**one, "long_name": "median of log(v(t)/v(0)), v = 1 + cbar1.cbar2"}),
        "cluster_median_log_radius": (("cluster_cell", "cluster_step"), paths["median_log_radius"],
                                      {**one, "long_name": "median of log(r(t)/r(0)), r the cap radius"}),
        "cluster_faithfulness": ((), clusters["faithfulness"],
                                 {**one, "long_name": "max |x_batch - x_simulate_particles| for the caps"}),
        "density_odd_share": (("density_time",), dens["odd_share"],
                              {**one, "long_name": "share of power at odd degrees"}),
        "density_spectral_tail": (("density_time",), dens["tail"],
                                  {**one, "long_name": "spectral tail of the symmetric density"}),
        "density_order": (("density_time",), dens["order_density"],
                          {**one, "long_name": "largest eigenvalue of the second moment of the density"}),
        "token_order": (("density_time",), dens["order_tokens"],
                        {**one, "long_name": "largest eigenvalue of the second moment of the tokens"}),
        "token_asymmetry": (("density_time",), dens["asymmetry"],
                            {**one, "long_name": "max |x_i + x_(i+n)| of the antipodally closed tokens"}),
    }
    coords = {"cluster_cell": ("cluster_cell", np.arange(len(CELLS)), {**one, "long_name": "cluster cell index"}),
              "cluster_step": ("cluster_step", np.arange(steps), {**one, "long_name": "step index (2 dt) of the "
                                                                                        "cluster runs"}),
              "density_time": ("density_time", dens["time"], {**one, "long_name": "depth t of the density run"})}
    attrs = {"cluster_cap_radius": CAP_RADIUS, "cluster_tokens_per_cap": clusters["per_cap"],
             "cluster_realizations": clusters["realizations"], "cluster_alpha": ALPHA,
             "density_lmax": dens["lmax"], "density_kappa": DENSITY_KAPPA, "density_beta": DENSITY_BETA,
             "density_sigma": DENSITY_SIGMA, "density_dt": DENSITY_DT, "density_tokens": dens["n_tokens"],
             "density_path_seed": PATH_SEED}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def plot_clusters(ax_rate: Axes, ax_paths: Axes, ds: xr.Dataset) -> None:
    """Cluster exponents on the exponent panel (stars) and their median paths on the paths panel (black; the
    caller draws the legends)."""
    dt = 2 * float(ds.attrs["dt"])
    lam, rich, se = (ds[k].values for k in ("cluster_lambda_theory", "cluster_slope_richardson",
                                            "cluster_slope_richardson_se"))
    ax_rate.errorbar(lam, rich, yerr=4 * se, fmt="*", ms=11, color="k", capsize=3,
                     label=f"clusters 2×{ds.attrs['cluster_tokens_per_cap']}")
    for k in range(ds.sizes["cluster_cell"]):
        c = ds["cluster_median_log_ratio"].values[k]
        good = np.isfinite(c)
        t = dt * np.arange(c.size)[good]
        label = f"clusters d={int(ds['cluster_dim'][k])}, β={float(ds['cluster_beta'][k]):g}"
        ax_paths.plot(t, c[good], "k-", lw=2.2, alpha=0.7, label=label)
        ax_paths.plot(t, lam[k] * t, "k:", lw=1.0)


def plot_density(ax: Axes, ds: xr.Dataset) -> None:
    """Projective order parameter of the symmetric density and of the antipodally closed tokens on one path."""
    t = ds["density_time"].values
    ax.plot(t, ds["density_order"].values, "b-", lw=1.5, label=f"density, SphereGrid({ds.attrs['density_lmax']})")
    ax.plot(t, ds["token_order"].values, "r-", lw=1.0, alpha=0.8,
            label=f"{ds.attrs['density_tokens']} tokens, same path (sampling error ~ N^(-1/2))")
    ax.set_xlabel("depth t")
    ax.set_ylabel(r"largest eigenvalue of $\int x x^\top d\rho$")
    ax.set_title(f"½ vMF(±e₃, {ds.attrs['density_kappa']:g}), ValueNoise({ds.attrs['density_sigma']:g}), "
                 f"β = {ds.attrs['density_beta']:g}\ndensity vs antipodally closed tokens on one path", fontsize=9)
    ax.text(0.02, 0.03, f"max odd-degree power share {float(ds['density_odd_share'].max()):.0e}\n"
            f"max |x_i + x_(i+n)| {float(ds['token_asymmetry'].max()):.0e}\n"
            f"max spectral tail {float(ds['density_spectral_tail'].max()):.0e}", transform=ax.transAxes,
            fontsize=8, va="bottom")
    ax.legend(fontsize=7.5, loc="upper left")
