"""Antipodal phase transition: two tokens under random value matrices, V = 0, Qᵀ K = I, softmax.

Theory. ``ValueNoise(sigma)`` moves a token by sigma ΔW a_μ(x) with a_μ the softmax attention output: for two tokens
with r = x·y, a(x) = p x + q y, p = e^beta/(e^beta + e^{beta r}), q = 1 − p. The layer update has the Itô limit
dX = sigma P_X dW a(X) − ((d − 1)/2) sigma² |a(X)|² X dt (docs/mathematics.md, 'Common noise'), the same dW for both
tokens. At the antipodal pair (v = 1 + r → 0) the drift of v is sigma² v (2 + 4P(d − 3)) and its quadratic variation
sigma² v² (8 − 16P), with P = pq = 1/(4 cosh² beta), so log(1 + x·y) is a Brownian motion with drift

    Λ = sigma² (4P(d − 1) − 2) = sigma² (d − 2 − cosh 2 beta) / cosh² beta,     variance rate sigma² (8 − 4/cosh² beta)

(the phase transition of docs/mathematics.md, 'The published phenomena', derived here). Antipodal pairs attract with
positive probability exactly when cosh 2 beta > d − 2; when Λ > 0 no pair ends antipodal.

Measurement, with the layer update of ``simulate_particles`` vectorized over independent realizations (a row checks
it against ``simulate_particles`` on the same ``NoisePath``) over a grid of (beta, d), sigma = 1, dt = 0.005. The
layer update has an O(dt) bias in the exponent that grows with d and beta (measured, 1500 realizations: +0.08 at
d = 4, beta = 1 and +0.19 at d = 8, beta = 2 for dt = 0.01; within one standard error, 0.045, at dt = 0.005):

* sign: pairs start antipodal up to 1 + x·y = 5e-5; each gives the slope (log v(T) − log v(0))/T, with step dt
  and (same increments summed in pairs) 2 dt; the rate is the Richardson extrapolation of the medians,
  2 med s(dt) − med s(2 dt) (the median of the per-realization extrapolations 2 s(dt) − s(2 dt) is biased, about
  +0.07 at d = 8, beta = 0.5, whatever R: :func:`spde_tokens.validation.common.richardson_of_medians`; its standard
  error comes from the influence functions of the two paired medians). Wherever |Λ| > 0.2 sigma² that rate must
  have the sign of Λ, beyond 4 standard errors; without the Richardson step the O(dt) bias (up to 0.1 at d = 4)
  can hide the sign of the cells nearest the margin. The number of realizations R and T come from theory:
  T = min(8, 16/|Λ|) (Λ < 0) or min(8, 3/Λ) (Λ > 0, so the median pair stays in the linear regime 1 + x·y ≲ 1e-3),
  and R T = (7 sqrt(π/2) s/|Λ|)² (clipped to [400, R_max]), s² the variance rate, times 1.5² for the spread of the
  Richardson estimate, so that a slope of size |Λ| lies 7 standard errors from 0 and the 4-standard-error sign test
  has a power of about 0.999 (the standard error of 2 med s(dt) − med s(2 dt) is measured 1.0 to 1.9 times that of
  med s(dt), so the margin is at least 5.5 standard errors; R_max = 1500 in quick mode, 3000 in full, does not bind
  on these grids: the largest R is 2750, at d = 4, beta = 0.75,
  |Λ| = 0.21). The Richardson rate must also lie within 4 standard errors of Λ.
* probability: independent uniform pairs run to T = 40 (dt = 0.005; 0.01 in quick mode, where the bias above
  shifts the boundary by up to about 0.2 sigma² at d = 8). A pair ends antipodal when 1 + x·y < 1e-2
  throughout [T/2, T] and < 1e-4 at T (absorbed: where Λ > 0 a pair may visit the antipodal neighbourhood, since log
  v is a Brownian motion with drift, but it rarely stays there for 20 time units), coincident when 1 − x·y < 1e-4 at
  T. Where Λ < −0.2 sigma² at least one pair must be absorbed (P > 0). Where Λ > 0.2 sigma², P = 0, but at a finite
  time a pair can sit near the antipodal pair on an excursion: the count may not exceed n p + 4 sqrt(n p), p the
  probability that log(1 + x·y), a Brownian motion with drift Λ from 0, is below log 1e-4 at T (essentially 0 except
  next to the boundary: 0.045 at d = 4, beta = 0.5). The fraction and its binomial standard error are reported.
  This is a weak test near the boundary; the sign check above is the sharp one.

Antipodal clusters of many tokens and in the density solver (:mod:`spde_tokens.validation.antipodal_clusters`):

* clusters: two caps of n equal-mass tokens (n = 16 quick, 64 full) of angular radius r₀ = 1e-4 around c and c'
  with 1 + c·c' = 5e-5, R = 200 (400) realizations, at (beta, d) = (1, 3) (Λ = −1.16 sigma²: the clusters attract)
  and (0.5, 8) (Λ = +3.51 sigma²: they separate), T of the sign run (8 and 0.85). Softmax weights inside a cap are
  equal up to O(beta r²), so the normalized cap means c̄₁, c̄₂ follow the two-token update up to O(r²) per step and
  log(1 + c̄₁·c̄₂) has the exponent Λ: its Richardson rate (of the medians) must lie within 4 standard errors of Λ (R T is
  above the 7-standard-error requirement of the sign rows). Inside a cap the noise field is sigma P_x ΔW a with one
  vector a, |a| = tanh beta at the antipodal pair (a = (p − q) x): the flow is conformal, and for two tokens moved
  by the same P_x dξ, dξ ~ N(0, s² dt I), Itô gives d log(1 − x·y) = −(d − 1) s² dt + 2 s dB. So the log of the cap
  radius r (largest chord to the cap mean) is B(S) − ((d − 1)/2) S, S = sigma² tanh² beta t: its median
  Richardson rate must lie within 4 standard errors of −(d − 1) sigma² tanh² beta / 2, and sup_t log(r/r₀),
  exponential with rate d − 1, must stay below z = log(R/α)/(d − 1), α = 1e-3 (union bound over R; z = 6.1 at
  d = 3 and 1.7 at d = 8 in quick mode: r ≤ 0.05 and 6e-4). Persistence (Λ < 0): below v = 1 + c̄₁·c̄₂ = 1e-2 the
  law of X = log(v/v₀) is a Brownian motion with drift Λ and variance rate s² up to O(v), so the fraction of
  realizations ending below their start lies in [P(X_T < 0, M_T < m), P(X_T < 0, M_T < m) + P(M_T ≥ m)],
  m = log(1e-2/v₀), M_T the running maximum (reflection principle; [0.843, 0.965] at beta = 1, d = 3, T = 8),
  widened by 4 binomial standard errors. A row checks the vectorized update on the caps against
  ``simulate_particles``.
* density: ``SphereGrid(64)``, ρ₀ = ½ vMF(e₃, 10) + ½ vMF(−e₃, 10), beta = 1, ``ValueNoise(0.5)``, dt = 0.01,
  t ≤ 1. ρ(−x) = ρ(x) makes the attention output odd, a(−x) = −a(x) (Qᵀ K = I), so the field
  u = sigma P_x ΔW a(x) and the Itô correction −(sigma²/4) ∇|a|² are invariant under x → −x: the equation commutes
  with it and the odd-degree coefficients stay 0. Row: the largest share of power at odd degrees over the run is
  ≤ (K ε)², K the number of RK4 stage evaluations (about 1000; each may add a rounding error of relative size ε to
  the odd part, and nothing amplifies it over this window). The same ``NoisePath`` drives 2 × 256 tokens (256 drawn
  from ρ₀ and their antipodes) through ``simulate_particles``: max |x_i + x_(i+256)| ≤ n_steps N ε (the error bound
  of the attention sums per step, without growth). The figure shows the largest eigenvalue of ∫ x xᵀ dρ against
  that of the tokens. A row checks that the spectral tail stays below 1e-10 (``TAIL_WARNING``) over the window: the
  noise contracts each bump, and at sigma = 1 two of eight pilot paths reached a tail of 1e-2 before t = 1 at
  lmax 64; at sigma = 0.5 all eight stayed below 5e-13.
* to depth 10 (:mod:`spde_tokens.validation.deep_density`, bottom row of the figure): ρ₀ = 0.7 vMF(e₃, 10) +
  0.3 vMF(−e₃, 10) on ``SphereGrid(16)`` with ``engine="auto"`` (Lagrangian nodes from the first step), beta = 1,
  ``ValueNoise(1)``, dt = 0.02, beside 16 draws of 256 tokens (layer update) on the same path. The two bumps contract
  towards an antipodal pair of clusters (cosh 2 beta > d − 2 at d = 3). Row: the mass on the far side of the
  density's principal axis (the lighter cluster) against the tokens' fraction, 4 standard errors over the draws;
  the projective dispersion of both is reported without a verdict (interacting tokens: no exact identity).

Quick: beta ∈ {0, 0.5, 1, 1.5, 2} × d ∈ {2, 3, 4, 6, 8}; full: beta ∈ {0, 0.25, …, 2} × d ∈ {2, …, 8}.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import special

from spde_tokens.noise import ValueNoise
from spde_tokens.validation import antipodal_clusters, deep_density
from spde_tokens.validation.common import Z_BAND, Row, check
from spde_tokens.validation.two_tokens import (
    faithfulness,
    pair_distance,
    rate_statistics,
    simulate,
    simulate_coupled,
    tight_pairs,
    uniform_points,
)
from spde_tokens.validation.value_pairs import (
    DT,
    SIGMA,
    STAY,
    T_MAX,
    V0,
    ValueBatch,
    critical_beta,
    exponent,
    model_for,
    sample_plan,
    variance_rate,
)

NAME = "antipodal"
TITLE = "Antipodal phase transition under random value matrices"

MARGIN = 0.2  # |Λ| > MARGIN sigma² is required for a sign check
PROB_T = 40.0
PROB_DT = {True: 0.01, False: 0.005}  # quick, full
DECIDED = 1e-4


def measure_sign(beta: float, dim: int, r_max: int, seed: int) -> dict:
    """Slopes of log(1 + x·y) from tight antipodal pairs, step dt and (same increments summed in pairs) step 2 dt.

    Returns :func:`rate_statistics` of log(1 + x·y), the number of realizations, T and the median path of
    log(v(t)/v(0)) of the dt chain.
    """
    horizon, realizations = sample_plan(beta, dim, r_max)
    n_pairs = max(1, int(round(horizon / (2 * DT))))
    horizon = 2 * n_pairs * DT
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    x0 = tight_pairs(rng, realizations, dim, V0, sign=-1.0)
    log_v = simulate_coupled(ValueBatch(model_for(beta, dim), ValueNoise(SIGMA)), x0, DT, n_pairs, rng,
                             lambda x: np.log(pair_distance(x, -1.0)))
    return {**rate_statistics(log_v, horizon), "n": realizations, "horizon": horizon,
            "median_log_v": np.median(log_v[:, 0] - log_v[0, 0], axis=1)}


def measure_probability(beta: float, dim: int, realizations: int, seed: int, dt: float) -> dict:
    """Fates of independent uniform pairs at PROB_T: antipodal (absorbed), coincident, undecided counts."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    x0 = np.stack([uniform_points(rng, realizations, dim), uniform_points(rng, realizations, dim)], axis=1)
    n_steps = int(round(PROB_T / dt))
    both = simulate(ValueBatch(model_for(beta, dim), ValueNoise(SIGMA)), x0, dt, n_steps, rng,
                    lambda x: np.stack([pair_distance(x, 1.0), pair_distance(x, -1.0)]))
    u, v = both[:, 0], both[:, 1]
    anti_now = v[-1] < DECIDED
    anti = int((anti_now & np.all(v[n_steps // 2:] < STAY, axis=0)).sum())
    coin = int((u[-1] < DECIDED).sum())
    return {"antipodal": anti, "coincident": coin, "undecided": realizations - anti - coin, "n": realizations,
            "near_antipodal": int(anti_now.sum())}


def excursion_probability(beta: float, dim: int, t: float) -> float:
    """P(log v(t) < log 1e-4) for log v a Brownian motion with drift Λ and variance rate s², from v = 1.

    Where Λ > 0 no pair converges to the antipodal pair, but at a finite time some are near it, on an excursion:
    this is the linear model's probability of that, the allowance of the probability rows.
    """
    lam = exponent(beta, dim)
    return float(special.ndtr((np.log(DECIDED) - lam * t) / np.sqrt(variance_rate(beta) * t)))


def measure(quick: bool) -> tuple[list[Row], xr.Dataset]:
    """The rows and the Dataset of the case, the cluster and density parts included.

    ``quick``: 25 cells (beta ∈ {0, 0.5, …, 2}, d ∈ {2, 3, 4, 6, 8}); full: 63 cells (beta step 0.25, d = 2…8).
    """
    betas = np.arange(0.0, 2.0 + 1e-9, 0.5 if quick else 0.25)
    dims = np.array([2, 3, 4, 6, 8] if quick else list(range(2, 9)))
    r_max = 1500 if quick else 3000
    prob_n = 200 if quick else 300
    rows: list[Row] = []

    worst = max(faithfulness(ValueBatch(model_for(b, d), ValueNoise(SIGMA)),
                             tight_pairs(np.random.default_rng(99), 2, d, 1e-2, sign=-1.0), DT)
                for b, d in ((1.0, 4), (0.0, 3), (2.0, 2)))
    rows.append(check(NAME, "faithfulness: vectorized two-token layer update vs simulate_particles with ValueNoise, "
                      "same NoisePath (beta, d) ∈ {(1, 4), (0, 3), (2, 2)}, t = 1",
                      "identical up to rounding (≤ 1e-10)", f"max |Δx| = {worst:.1e}",
                      "rounding of the same formulas over 200 steps", worst <= 1e-10))

    shape = (betas.size, dims.size)
    lam = np.array([[exponent(b, int(d)) for d in dims] for b in betas])
    keys = ("median", "se", "positive", "n", "horizon", "median_coarse", "richardson", "richardson_se")
    fields = {k: np.full(shape, np.nan) for k in (*keys, "antipodal", "coincident", "undecided", "n_prob",
                                                   "near_antipodal")}
    curves = {}
    for i, b in enumerate(betas):
        for j, d in enumerate(dims):
            d = int(d)
            if abs(lam[i, j]) > MARGIN * SIGMA**2:
                res = measure_sign(float(b), d, r_max, seed=10_000 + 100 * i + j)
                for key in keys:
                    fields[key][i, j] = res[key]
                curves[(i, j)] = res["median_log_v"]
            res = measure_probability(float(b), d, prob_n, seed=20_000 + 100 * i + j, dt=PROB_DT[quick])
            for key in ("antipodal", "coincident", "undecided", "near_antipodal"):
                fields[key][i, j] = res[key]
            fields["n_prob"][i, j] = res["n"]

    for j, d in enumerate(dims):
        d = int(d)
        expected, measured, magnitude, agree, determined = [], [], [], True, 0
        for i, b in enumerate(betas):
            if not np.isfinite(fields["median"][i, j]):
                continue
            theory = "+" if lam[i, j] > 0 else "-"
            med, se = fields["richardson"][i, j], fields["richardson_se"][i, j]
            sign = "+" if med > Z_BAND * se else ("-" if med < -Z_BAND * se else "?")
            determined += sign != "?"
            agree &= sign == theory
            expected.append(f"β={b:g}:{theory}")
            measured.append(f"β={b:g}:{sign}({med:+.2f})")
            magnitude.append(abs(fields["richardson"][i, j] - lam[i, j]) / fields["richardson_se"][i, j])
        if not expected:
            continue
        rows.append(check(NAME, f"sign/d={d}: sign of the Richardson rate 2 med s(dt) − med s(2 dt) of log(1 + x·y) "
                          "from "
                          "1 + x·y = 5e-5, where |Λ| > 0.2 sigma²",
                          f"sign of Λ = sigma²(d − 2 − cosh 2β)/cosh²β: {' '.join(expected)}",
                          f"{' '.join(measured)} ({determined}/{len(expected)} determined)",
                          "median beyond 4 standard errors from 0 (R, T from theory for 7 standard errors)",
                          agree))
        worst_z = max(magnitude)
        i_w = [i for i in range(betas.size) if np.isfinite(fields["median"][i, j])][int(np.argmax(magnitude))]
        bias = np.nanmax(np.abs(fields["median_coarse"][:, j] - fields["median"][:, j]))
        rows.append(check(NAME, f"rate/d={d}: Richardson rate 2 med s(dt) − med s(2 dt) of log(1 + x·y) against Λ "
                          "(max |z| over β)", "|z| ≤ 4 at every β with |Λ| > 0.2 sigma²",
                          f"max |z| = {worst_z:.2f} at β = {betas[i_w]:g} (Λ = {lam[i_w, j]:+.3f}, Richardson "
                          f"{fields['richardson'][i_w, j]:+.3f} ± {fields['richardson_se'][i_w, j]:.3f}, dt = {DT:g} "
                          f"alone {fields['median'][i_w, j]:+.3f}); largest step bias s(2dt) − s(dt) = {bias:.3f}",
                          "4 standard errors of 2 med s(dt) − med s(2 dt), influence functions of the paired "
                          "medians (the 2 dt chain "
                          "uses the same increments summed in pairs)", worst_z <= Z_BAND))

        parts, ok = [], True
        for i, b in enumerate(betas):
            n = fields["n_prob"][i, j]
            k = fields["antipodal"][i, j]
            p = k / n
            if lam[i, j] > MARGIN * SIGMA**2:
                p_exc = excursion_probability(float(b), d, PROB_T)
                ok &= k <= n * p_exc + Z_BAND * np.sqrt(n * p_exc)
            elif lam[i, j] < -MARGIN * SIGMA**2:
                ok &= k >= 1
            parts.append(f"β={b:g}:{p:.3f}±{np.sqrt(p * (1 - p) / n):.3f}")
        und = int(np.sum(fields["undecided"][:, j]))
        rows.append(check(NAME, f"probability/d={d}: fraction of independent uniform pairs absorbed at the "
                          f"antipodal pair by T = {PROB_T:g} ({int(prob_n)} per β)",
                          f"0 for β < β_c = {critical_beta(d):.3f}, > 0 for β > β_c (cosh 2β_c = d − 2; cells with "
                          "|Λ| ≤ 0.2 sigma² not judged)",
                          " ".join(parts) + f" (undecided pairs over all β: {und})",
                          "Λ < −0.2: at least one absorbed pair (1 + x·y < 1e-2 over [T/2, T], < 1e-4 at T); Λ > 0.2: "
                          "at most n p + 4 sqrt(n p), p = P(log(1 + x·y) < log 1e-4 at T) for a Brownian motion with "
                          "drift Λ from 1 + x·y = 1 (finite-time excursions; 0 for all but the cells nearest the "
                          "boundary); ± is the binomial standard error", ok))

    cluster_rows, extra = antipodal_clusters.measure(NAME, quick)
    rows += cluster_rows
    ds = xr.merge([_dataset(betas, dims, lam, fields, curves, worst, r_max, prob_n, PROB_DT[quick]), extra],
                  combine_attrs="no_conflicts")
    return rows, ds


def _dataset(betas, dims, lam, fields, curves, worst, r_max, prob_n, prob_dt) -> xr.Dataset:
    one = {"units": "1"}
    n_steps = int(round(T_MAX / (2 * DT))) + 1
    curve = np.full((betas.size, dims.size, n_steps), np.nan)
    for (i, j), c in curves.items():
        curve[i, j, : c.size] = c
    cell = ("beta", "dim")
    data = {
        "lambda_theory": (cell, lam, {**one, "long_name": "exponent (d - 2 - cosh 2 beta)/cosh^2 beta, sigma = 1"}),
        "slope_median": (cell, fields["median"], {**one, "long_name": "median slope of log(1 + x.y) from 5e-5"}),
        "slope_se": (cell, fields["se"], {**one, "long_name": "standard error of the median slope"}),
        "slope_median_coarse": (cell, fields["median_coarse"],
                                {**one, "long_name": "median slope with step 2 dt (increments summed in pairs)"}),
        "slope_richardson": (cell, fields["richardson"],
                             {**one, "long_name": "Richardson of the medians 2 med s(dt) - med s(2 dt)"}),
        "slope_richardson_se": (cell, fields["richardson_se"],
                                {**one, "long_name": "standard error of slope_richardson"}),
        "fraction_positive": (cell, fields["positive"], {**one, "long_name": "fraction of positive slopes"}),
        "sign_realizations": (cell, fields["n"], {**one, "long_name": "realizations of the sign run"}),
        "sign_horizon": (cell, fields["horizon"], {**one, "long_name": "time T of the sign run"}),
        "median_log_ratio": (("beta", "dim", "step"), curve,
                             {**one, "long_name": "median of log(v(t)/v(0)), v = 1 + x.y, t = 2 dt step"}),
        "antipodal_count": (cell, fields["antipodal"],
                            {**one, "long_name": "uniform pairs absorbed at the antipodal pair"}),
        "coincident_count": (cell, fields["coincident"],
                             {**one, "long_name": "uniform pairs with 1 - x.y < 1e-4 at the end"}),
        "undecided_count": (cell, fields["undecided"], {**one, "long_name": "uniform pairs neither at the end"}),
        "near_antipodal_count": (cell, fields["near_antipodal"],
                                 {**one, "long_name": "uniform pairs with 1 + x.y < 1e-4 at the end, absorbed or not"}),
        "probability_antipodal": (cell, fields["antipodal"] / fields["n_prob"],
                                  {**one, "long_name": "fraction of uniform pairs absorbed at the antipodal pair"}),
        "critical_beta": (("dim",), np.array([critical_beta(int(d)) for d in dims]),
                          {**one, "long_name": "beta with cosh 2 beta = d - 2"}),
        "faithfulness_max_difference": ((), worst,
                                        {**one, "long_name": "max |x_batch - x_simulate_particles| on equal paths"}),
    }
    coords = {"beta": ("beta", betas, {**one, "long_name": "inverse temperature beta"}),
              "dim": ("dim", dims, {**one, "long_name": "ambient dimension d"}),
              "step": ("step", np.arange(n_steps), {**one, "long_name": "step index of the sign runs"})}
    attrs = {"sigma": SIGMA, "dt": DT, "v0": V0, "margin": MARGIN, "z_band": Z_BAND,
             "max_realizations": r_max, "probability_realizations": prob_n, "probability_t_end": PROB_T,
             "probability_dt": prob_dt, "decided_threshold": DECIDED, "absorbed_threshold": STAY,
             "attention": "softmax, Q = K = I, V = 0"}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def plot(ds: xr.Dataset, path: str) -> None:
    """Heat map of the antipodal probability with the boundary cosh 2beta = d − 2 and the sign checks; rates and
    median paths (two tokens and clusters); the symmetric density against antipodally closed tokens."""
    from matplotlib.figure import Figure

    betas, dims = ds["beta"].values, ds["dim"].values
    fig = Figure(figsize=(19, 9.6), layout="constrained")
    grid = fig.subplots(2, 4)
    ax = grid[0]
    db = betas[1] - betas[0]
    b_edges = np.concatenate([betas - db / 2, [betas[-1] + db / 2]])
    all_dims = np.arange(dims.min(), dims.max() + 1)  # dimensions not in the grid stay blank
    d_edges = np.concatenate([all_dims - 0.5, [all_dims[-1] + 0.5]])
    prob = np.full((all_dims.size, betas.size), np.nan)
    prob[np.searchsorted(all_dims, dims)] = ds["probability_antipodal"].values.T
    mesh = ax[0].pcolormesh(b_edges, d_edges, np.ma.masked_invalid(prob), cmap="viridis", vmin=0,
                            vmax=max(0.5, float(np.nanmax(prob))), shading="flat")
    fig.colorbar(mesh, ax=ax[0], label="P(pair ends antipodal)")
    bb = np.linspace(0, b_edges[-1], 300)
    ax[0].plot(bb, 2 + np.cosh(2 * bb), "w-", lw=2.0, label=r"$\cosh 2\beta = d - 2$")
    lam, rich, rich_se = (ds[k].values for k in ("lambda_theory", "slope_richardson", "slope_richardson_se"))
    for i, b in enumerate(betas):
        for j, d in enumerate(dims):
            if not np.isfinite(rich[i, j]):
                ax[0].plot(b, d, "o", mfc="none", mec="0.8", ms=6)
                continue
            band = 4 * rich_se[i, j]
            sign = "+" if rich[i, j] > band else ("-" if rich[i, j] < -band else "?")
            good = sign == ("+" if lam[i, j] > 0 else "-")
            ax[0].text(b, d, sign, ha="center", va="center", fontsize=12, fontweight="bold",
                       color="white" if good else "red")
    ax[0].set_ylim(d_edges[0], d_edges[-1])
    ax[0].set_xlabel(r"inverse temperature $\beta$")
    ax[0].set_ylabel("dimension d")
    ax[0].set_title("P(antipodal) from uniform pairs; signs of the median slope\n"
                    "of log(1 + x·y) (white: agrees with Λ, red: not; o: |Λ| ≤ 0.2)", fontsize=9)
    ax[0].legend(loc="upper left", fontsize=8)

    med, se = ds["slope_richardson"].values, ds["slope_richardson_se"].values
    ok = np.isfinite(med)
    lo, hi = float(np.nanmin(lam[ok])) - 0.3, float(np.nanmax(lam[ok])) + 0.3
    ax[1].plot([lo, hi], [lo, hi], "k-", lw=0.8)
    for j, d in enumerate(dims):
        sel = ok[:, j]
        ax[1].errorbar(lam[sel, j], med[sel, j], yerr=4 * se[sel, j], fmt="o", ms=4, capsize=2, label=f"d = {d}")
    ax[1].axhline(0, color="0.6", lw=0.6)
    ax[1].axvline(0, color="0.6", lw=0.6)
    ax[1].set_xlabel(r"theory $\Lambda = (d - 2 - \cosh 2\beta)/\cosh^2\beta$")
    ax[1].set_ylabel("2 med s(dt) − med s(2dt), log(1 + x·y) (± 4 SE)")
    ax[1].set_title("exponent at the antipodal pair (sigma = 1)", fontsize=9)

    dt = 2 * float(ds.attrs["dt"])
    curves = ds["median_log_ratio"].values
    shown = 0
    for j, d in enumerate(dims):
        for i in (0, betas.size // 2, betas.size - 1):
            c = curves[i, j]
            if not np.isfinite(c[0]) or shown >= 10:
                continue
            t = dt * np.arange(c.size)
            good = np.isfinite(c)
            line = ax[2].plot(t[good], c[good], lw=1.2, label=f"d={d}, β={betas[i]:g}")[0]
            ax[2].plot(t[good], lam[i, j] * t[good], ":", color=line.get_color(), lw=1.0)
            shown += 1
    ax[2].set_xlabel("depth t")
    ax[2].set_ylabel(r"median $\log[v(t)/v(0)]$, $v = 1 + x\cdot y$")
    ax[2].set_title("median paths from 1 + x·y = 5e-5 (dotted: Λ t; black: cap means)", fontsize=9)
    antipodal_clusters.plot_clusters(ax[1], ax[2], ds)
    ax[1].legend(fontsize=7, ncol=2)
    ax[2].legend(fontsize=6.5, ncol=2)
    antipodal_clusters.plot_density(ax[3], ds)
    deep_density.plot_panels(ds, *grid[1, :3])
    deep_density.plot_split(ds, grid[1, 3])
    fig.suptitle(f"{TITLE}: ValueNoise(sigma = {ds.attrs['sigma']:g}), V = 0, softmax, Q = K = I: two tokens, two "
                 "antipodal caps of tokens, a symmetric density;\nbottom: the density from 0.7 vMF(e₃, 10) + 0.3 "
                 f"vMF(−e₃, 10) to depth {ds.attrs['deep_t_end']:g} on Lagrangian nodes (hand-over at t = "
                 f"{ds.attrs['deep_handover_time']:g}) beside {ds.attrs['deep_draws']} draws of "
                 f"{ds.attrs['deep_n_tokens']} tokens on the same path (beta = 1, d = 3)")
    fig.savefig(path, dpi=120)
