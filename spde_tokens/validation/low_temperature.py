"""Clustering at low temperature: onset, clusters, transport, V.

Setup: N tokens drawn i.i.d. uniformly on S^2 (fixed seed), deterministic SA dynamics with Q = K = I,
ẋ_i = P_{x_i} V Σ_j softmax_j(β x_i·x_j) x_j, for β in {4, 9, 16, 25, 36} ({4, 16, 36} with ``quick``).

1. **Onset.** The uniform state is unstable: the degree-l part of the density grows at
   γ_l(β) = l(l+1) i_l(β)/(β i_0(β)) (docs/mathematics.md, 'The published phenomena': linear instability), fastest
   at l* = argmax γ_l. The empirical measure of i.i.d. tokens has white spectrum, E P_l(0) = (2l+1)/(4πN)
   (orthonormal harmonics), so the relative amplitude of its degree-l* part, A(t) = sqrt(4π P_l*(t)) (rms of that
   part over the uniform density 1/(4π)), starts at A(0) ≈ sqrt((2l*+1)/N) and grows like A(0) e^{γ_l* t}.
   **Onset time** t_on: A reaches a = 1/2 (log-linear interpolation between records). Linear theory gives
   t_lin = ln(a/A(0))/γ_l*, i.e. t_on ≈ ln(C sqrt(N))/γ_max with C = a/sqrt(2l*+1). Rows: the growth rate of A
   while A < a/2 against γ_l*, t_on against t_lin, t_on·γ_max against ln(a sqrt(N/(2l*+1))), and the slope of t_on
   against 1/γ_max.
2. **Clusters formed.** Tokens climb the gradient of G_β ρ (X = (1/β) ∇ log G_β ρ for V = I), so clusters form at
   the local maxima of the linearly grown, kernel-smoothed perturbation φ = Σ_l (i_l/i_0) e^{γ_l t} δ_l(0), δ white.
   Expected count: the mean number of local maxima of that isotropic Gaussian field at t = t_lin, by Monte Carlo
   over random fields (theory, not the dynamics); for one degree l it tends to l(l+1)/(2√3) (Kac–Rice; Nicolaescu,
   Cammarota–Marinucci–Wigman), so the count grows with β like the fastest-growing degree: λ* = l*(l*+1) ≈ 2β.
   Clusters are counted by single linkage at angle θ_c = 1/sqrt(β), the width of the kernel
   exp(β(x·y − 1)) ≈ exp(−βθ²/2): collapsed clusters have radius ≪ θ_c (tokens contract onto their cluster at rate 1),
   two clusters closer than θ_c attend to each other with weight ≥ e^{−1/2} and merge in O(1) time, and clusters
   ≥ 3θ_c apart merge only after ~e^{4.5} time units; any threshold in between gives the same count once collapsed.
   The clustered time t_c is the first record after onset where the rms angle of tokens to their cluster's centre
   is below θ_c/10.
3. **Transport.** At t_c, with centres c_k, ν = the initial tokens each moved to its nearest centre. Among measures
   on the centres ν is the closest to μ_0 (W2(ν, μ_0) = D, the quantization error), so
   D ≤ W2(μ_c, μ_0) ≤ D + W2(μ_c, ν). The ratio W2(μ_c, ν)/W2(μ_c, μ_0) says how far the tokens are from going to
   the nearest centre (≪ 1 if they all do; an assignment unrelated to distance would move mass between neighbouring
   centres, a distance ≈ 2D, ratio ≳ 1). Which tokens end in which cluster is not a claim of the low-temperature
   paper (docs/mathematics.md, 'Corrections to earlier statements'), so the ratio is reported without a verdict.
   For K cells of area 4π/K the quantization error is D² = c·4π/K with c between 5/(18√3) ≈ 0.160 (regular
   hexagons) and 1/π (Poisson–Voronoi cells), so sqrt(K)·W2(μ_c, μ_0) ∈ [1.42, 2.0].
   W2 by POT (``diagnostics.wasserstein2_tokens``, exact, squared geodesic cost).
4. **Metastability.** After t_c the count K(t) is piecewise constant: the longest plateau (to the next change, or
   to t_end when none follows, then a lower bound) must last ≥ 5 t_on.
5. **Spectrum of V.** With V = diag(2, 1, 0.5) a collapsed cluster moves by ċ = P_c V c (Oja flow), so x·e1 grows
   like e^{2t} against e^{t}, e^{t/2}: a token with |x(0)·e1| = u has |x(t)·e1| > 0.99 once u > 7.0 e^{−t}; at t_end
   the fraction of tokens with |x·e1| > 0.99 is 1 (no token may miss, tolerance < 1/N). With V = I the law of the
   final state is rotation invariant: ⟨(x·e1)²⟩ = 1/3 with standard deviation sqrt(Σ_k w_k² · 4/45) over clusters of
   mass w_k (for u uniform on [−1, 1], var u² = 4/45), band 4 standard deviations.

Measured (seeds as in ``Setup``): at t_c 86–92% of the tokens sit in the cluster whose centre was nearest their start,
the rest in a neighbouring one, and W2(μ_c, ν)/W2(μ_c, μ_0) is 0.64–0.85, rising with beta, while both distances fall
with beta. A reason in theory: between clusters of masses m1, m2 at distance s the softmax basin boundary is shifted
from the bisector by about ln(m1/m2)/(β s), a fraction ln(m1/m2)/(β s²) of s, and at the linear wavelength s ≈ π/l* ≈
π/sqrt(2β) this fraction does not shrink with beta.

Steppers: RK4 (``scheme="flow"``, exact growth factor to 1e-6) with dt = 0.25 to t = 6 and dt = 0.5 to t = 14,
then the layer update with dt = 1 (dt = 0.5 with V = diag): in the clustered phase only slow merging remains (merge
times move by ≲ 1 between dt = 1 and 0.5). Cost on one core: about 5 minutes (N = 1500, t_end = 200), about a minute
with ``quick`` (N = 1000, t_end = 60). Run it with ``python validation/low_temperature.py [--quick] [-o FOLDER]``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.special import spherical_in

from spde_tokens.diagnostics import wasserstein2_tokens
from spde_tokens.grids import SphereGrid, grid_from_attrs
from spde_tokens.model import AttentionModel
from spde_tokens.particles import simulate_particles
from spde_tokens.validation.common import Row, check, info

NAME = "low_temperature"
TITLE = "Clustering at low temperature"

#: onset threshold on the relative amplitude of the degree-l* part of the empirical measure
ONSET_AMPLITUDE = 0.5
#: bounds of sqrt(K) W2(clustered, initial): hexagonal cells (5/(18√3)·4π)^½ and Poisson–Voronoi cells (4π/π)^½
QUANTIZATION_BAND = (float(np.sqrt(4 * np.pi * 5 / (18 * np.sqrt(3)))), 2.0)
PLATEAU_FACTOR = 5.0


@dataclass(frozen=True)
class Setup:
    """Parameters of the case (all recorded in the output file)."""

    betas: tuple[float, ...] = (4.0, 9.0, 16.0, 25.0, 36.0)
    n_tokens: int = 1500
    seed: int = 20240607
    t_end: float = 200.0
    v_beta: float = 36.0
    v_diag: tuple[float, ...] = (2.0, 1.0, 0.5)
    v_t_end: float = 40.0
    mc_samples: int = 200


QUICK = Setup(betas=(4.0, 16.0, 36.0), n_tokens=1000, t_end=60.0, v_t_end=30.0, mc_samples=100)


# ---- theory ----------------------------------------------------------------------------------------------------
def growth_rates(beta: float, lmax: int) -> np.ndarray:
    """γ_l = l(l+1) i_l(β)/(β i_0(β)) for l = 0 … lmax, by the ratio i_l/i_0 (no overflow up to β ~ 700)."""
    ell = np.arange(lmax + 1)
    return ell * (ell + 1) * kernel_ratios(beta, lmax) / beta


def kernel_ratios(beta: float, lmax: int) -> np.ndarray:
    """i_l(β)/i_0(β): the Funk–Hecke weights of exp(β x·y) relative to degree 0."""
    ell = np.arange(lmax + 1)
    return spherical_in(ell, beta) / spherical_in(0, beta)


def fastest_degree(beta: float) -> tuple[int, float]:
    """l* = argmax_l γ_l(β) and γ_max."""
    g = growth_rates(beta, int(4 * np.sqrt(beta)) + 8)
    return int(np.argmax(g)), float(g.max())


class MaximaCounter:
    """Local maxima of random isotropic fields on a Gauss grid (node > every node within 1.6 latitude spacings)."""

    def __init__(self, lmax: int = 64):
        grid = grid_from_attrs({"grid": "sphere", "grid_lmax": lmax, "grid_dealias": 1})
        if not isinstance(grid, SphereGrid):  # the cached grid of these attributes is a SphereGrid
            raise TypeError(f"expected a SphereGrid, got {grid!r}")
        self.grid = grid
        pts = self.grid.points().reshape(-1, 3)
        radius = 1.6 * np.pi / self.grid.nlat
        tree = cKDTree(pts)
        balls = tree.query_ball_point(pts, 2 * np.sin(radius / 2))
        neighbours = [[j for j in nb if j != i] for i, nb in enumerate(balls)]
        self.flat = np.concatenate(neighbours).astype(int)
        self.starts = np.cumsum([0] + [len(nb) for nb in neighbours[:-1]])

    def count(self, amplitudes: np.ndarray, samples: int, seed: int) -> np.ndarray:
        """Numbers of maxima of Σ_l c_l Σ_m ξ_lm Y_lm (ξ standard Gaussian, real field) over ``samples`` draws."""
        g = self.grid
        c = g.per_degree(np.pad(amplitudes, (0, max(0, g.lmax + 1 - amplitudes.size)))[:g.lmax + 1])
        rng = np.random.default_rng(seed)
        zero = g.orders == 0
        out = np.empty(samples, dtype=int)
        for k in range(samples):
            xi = (rng.normal(size=g.n_coeff) + 1j * rng.normal(size=g.n_coeff)) / np.sqrt(2.0)
            xi[zero] = rng.normal(size=int(zero.sum()))
            f = g.synthesis(c * xi).ravel()
            out[k] = int(np.sum(f > np.maximum.reduceat(f[self.flat], self.starts)))
        return out


def expected_clusters(beta: float, n_tokens: int, counter: MaximaCounter, samples: int,
                      seed: int) -> tuple[float, float]:
    """Mean and standard deviation of the number of maxima of the smoothed linear field at t = t_lin (theory)."""
    lstar, gmax = fastest_degree(beta)
    t_lin = np.log(ONSET_AMPLITUDE * np.sqrt(n_tokens / (2 * lstar + 1))) / gmax
    lmax = counter.grid.lmax
    amp = kernel_ratios(beta, lmax) * np.exp(growth_rates(beta, lmax) * t_lin)
    amp[0] = 0.0
    counts = counter.count(amp, samples, seed)
    return float(counts.mean()), float(counts.std(ddof=1))


# ---- runs ------------------------------------------------------------------------------------------------------
def uniform_tokens(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 3))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def segments(t_end: float, late_dt: float) -> list[tuple[str, float, float, float]]:
    """(scheme, dt, stop time, save_every) of the consecutive particle runs."""
    out = [("flow", 0.25, 6.0, 0.25), ("flow", 0.5, 14.0, 0.5)]
    if t_end > 50.0:
        out += [("layer", late_dt, 50.0, 1.0), ("layer", late_dt, t_end, 5.0)]
    else:
        out += [("layer", late_dt, t_end, 1.0)]
    return out


def integrate(model: AttentionModel, x0: np.ndarray,
              parts: Sequence[tuple[str, float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Chain ``simulate_particles`` over the segments: record times and positions (time, token, component)."""
    times, positions, x, t0 = [0.0], [x0], x0, 0.0
    for scheme, dt, stop, save in parts:
        ds = simulate_particles(model, None, x, t_end=stop - t0, dt=dt, save_every=save, scheme=scheme,
                                progress=False)
        times += list(t0 + ds.time.values[1:])
        positions += list(ds.positions.values[1:])
        x, t0 = ds.positions.values[-1], stop
    return np.array(times), np.stack(positions)


# ---- measurements ----------------------------------------------------------------------------------------------
def degree_amplitude(positions: np.ndarray, degree: int) -> np.ndarray:
    """A_l = sqrt(4π P_l) of the empirical measure at every record (relative rms of its degree-l part)."""
    grid = grid_from_attrs({"grid": "sphere", "grid_lmax": max(degree, 4), "grid_dealias": 0})
    return np.array([np.sqrt(4 * np.pi * grid.power_spectrum(grid.empirical_coefficients(x))[degree])
                     for x in positions])


def crossing_time(t: np.ndarray, amp: np.ndarray, level: float) -> float:
    """First time A reaches ``level``, log-linear interpolation between records (NaN if never)."""
    above = np.nonzero(amp >= level)[0]
    if above.size == 0 or above[0] == 0:
        return float("nan") if above.size == 0 else float(t[0])
    k = above[0]
    s = (np.log(level) - np.log(amp[k - 1])) / (np.log(amp[k]) - np.log(amp[k - 1]))
    return float(t[k - 1] + s * (t[k] - t[k - 1]))


def early_rate(t: np.ndarray, amp: np.ndarray, level: float) -> float:
    """Least-squares slope of ln A over the records before A first reaches ``level`` (at least three)."""
    above = np.nonzero(amp >= level)[0]
    n = max(3, int(above[0]) if above.size else amp.size)
    return float(np.polyfit(t[:n], np.log(amp[:n]), 1)[0])


def clusters(x: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Single-linkage clusters at angle ``theta``: labels and unit centres (normalized cluster means)."""
    tree = cKDTree(x)
    pairs = tree.sparse_distance_matrix(tree, 2 * np.sin(theta / 2), output_type="coo_matrix")
    _, labels = connected_components(pairs, directed=False)
    sums = np.zeros((labels.max() + 1, 3))
    np.add.at(sums, labels, x)
    return labels, sums / np.linalg.norm(sums, axis=1, keepdims=True)


def cluster_history(positions: np.ndarray, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """Number of clusters and rms angle of tokens to their cluster centre at every record."""
    counts, radius = [], []
    for x in positions:
        labels, centres = clusters(x, theta)
        counts.append(centres.shape[0])
        radius.append(np.sqrt(np.mean(np.arccos(np.clip(np.sum(x * centres[labels], axis=1), -1, 1)) ** 2)))
    return np.array(counts), np.array(radius)


def longest_plateau(t: np.ndarray, counts: np.ndarray, start: int, t_end: float) -> tuple[float, float, bool]:
    """Longest interval after record ``start`` with a constant count: (length, start time, open at t_end)."""
    best = (0.0, float(t[start]), False)
    k = start
    while k < t.size:
        change = np.nonzero(counts[k:] != counts[k])[0]
        stop, is_open = (k + int(change[0]), False) if change.size else (t.size, True)
        length = (t[stop] if not is_open else t_end) - t[k]
        if length > best[0]:
            best = (float(length), float(t[k]), is_open)
        k = stop
    return best


def measure_beta(beta: float, x0: np.ndarray, setup: Setup, counter: MaximaCounter) -> dict:
    """The V = I run at one beta and everything measured on it."""
    lstar, gmax = fastest_degree(beta)
    glstar = float(growth_rates(beta, lstar)[lstar])
    start = time.perf_counter()
    t, pos = integrate(AttentionModel(3, beta=beta), x0, segments(setup.t_end, 1.0))
    seconds = time.perf_counter() - start
    amp = degree_amplitude(pos, lstar)
    theta = 1.0 / np.sqrt(beta)
    counts, radius = cluster_history(pos, theta)
    t_on = crossing_time(t, amp, ONSET_AMPLITUDE)
    collapsed = np.nonzero((t >= t_on) & (radius <= theta / 10))[0]
    kc = int(collapsed[0]) if collapsed.size else t.size - 1
    labels, centres = clusters(pos[kc], theta)
    nearest = np.argmax(x0 @ centres.T, axis=1)
    pushed = centres[nearest]
    k_mean, k_sd = expected_clusters(beta, x0.shape[0], counter, setup.mc_samples, setup.seed + int(beta))
    plateau, plateau_start, plateau_open = longest_plateau(t, counts, kc, setup.t_end)
    return {
        "time": t, "amplitude": amp, "counts": counts, "radius": radius, "positions_clustered": pos[kc],
        "positions_final": pos[-1], "lstar": lstar, "gamma_max": gmax, "gamma_lstar": glstar,
        "amplitude0": float(amp[0]), "onset_time": t_on,
        "onset_time_linear": float(np.log(ONSET_AMPLITUDE / amp[0]) / glstar),
        "early_rate": early_rate(t, amp, ONSET_AMPLITUDE / 2), "clustered_time": float(t[kc]),
        "clusters_formed": int(centres.shape[0]),
        "clusters_formed_2theta": int(clusters(pos[kc], 2 * theta)[1].shape[0]),
        "clusters_expected": k_mean, "clusters_expected_sd": k_sd,
        "clusters_kac_rice": lstar * (lstar + 1) / (2 * np.sqrt(3)),
        "w2_pushed": wasserstein2_tokens(pos[kc], pushed), "w2_initial": wasserstein2_tokens(pos[kc], x0),
        "w2_quantization": float(np.sqrt(np.mean(np.arccos(np.clip(np.sum(x0 * pushed, 1), -1, 1)) ** 2))),
        "same_cluster_fraction": float(np.mean(labels == nearest)),
        "plateau": plateau, "plateau_start": plateau_start, "plateau_open": plateau_open, "seconds": seconds,
    }


def orientation(x: np.ndarray, theta: float) -> dict:
    """Fraction with |x·e1| > 0.99, ⟨(x·e1)²⟩ and its standard deviation for a rotation-invariant cluster law."""
    labels, _ = clusters(x, theta)
    w = np.bincount(labels) / x.shape[0]
    return {"aligned": float(np.mean(np.abs(x[:, 0]) > 0.99)), "m11": float(np.mean(x[:, 0] ** 2)),
            "m11_sd": float(np.sqrt(np.sum(w**2) * 4 / 45)), "clusters": int(w.size)}


# ---- rows ------------------------------------------------------------------------------------------------------
def _fit(x, y, sigma=None) -> tuple[float, float]:
    """Weighted least-squares slope and its standard error (inflated by the reduced χ² when above 1)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    w = np.ones_like(x) if sigma is None else 1.0 / np.asarray(sigma, float) ** 2
    xm, ym = np.sum(w * x) / w.sum(), np.sum(w * y) / w.sum()
    sxx = np.sum(w * (x - xm) ** 2)
    slope = float(np.sum(w * (x - xm) * (y - ym)) / sxx)
    chi2 = float(np.sum(w * (y - ym - slope * (x - xm)) ** 2)) / max(x.size - 2, 1)
    scale = chi2 if sigma is None else max(1.0, chi2)
    return slope, float(np.sqrt(scale / sxx))


def beta_rows(r: dict, beta: float, n: int) -> list[Row]:
    tag = f"beta={beta:g}"
    ls, g = r["lstar"], r["gamma_lstar"]
    t_on, t_lin = r["onset_time"], r["onset_time_linear"]
    k, km, ksd = r["clusters_formed"], r["clusters_expected"], r["clusters_expected_sd"]
    ratio = r["w2_pushed"] / r["w2_initial"]
    need = PLATEAU_FACTOR * t_on
    return [
        check(NAME, f"{tag}: growth rate of A_l* (l* = {ls}) while A < {ONSET_AMPLITUDE / 2:g}",
              f"γ_l* = {g:.4f} ± 25%",
              f"{r['early_rate']:.4f} (A(0) = {r['amplitude0']:.3f}, E A(0)² = (2l*+1)/N = {(2 * ls + 1) / n:.4f})",
              "±25%: the quadratic term changes d ln A/dt by a relative O(A) ≤ 1/4 in the fit window; RK4 at "
              "γ dt ≤ 0.18 reproduces e^{γ dt} to 1e-6", abs(r["early_rate"] / g - 1) <= 0.25),
        check(NAME, f"{tag}: onset time t_on (A_l* = {ONSET_AMPLITUDE:g})",
              f"t_lin = ln(a/A(0))/γ_l* = {t_lin:.3f} ± {1 / g:.3f}",
              f"{t_on:.3f} (γ_l*·(t_on − t_lin) = {g * (t_on - t_lin):+.2f})",
              "±1/γ_l* (one e-fold): linear theory fixes the time to reach amplitude a only up to the nonlinear "
              "saturation, which is O(1) at a = 1/2", abs(t_on - t_lin) <= 1 / g),
        check(NAME, f"{tag}: clusters formed at t_c = {r['clustered_time']:g} (single linkage at 1/sqrt(beta))",
              f"{km:.1f} ± {4 * ksd:.1f} maxima of the smoothed linear field (l*(l*+1)/(2√3) = "
              f"{r['clusters_kac_rice']:.1f})", f"{k} ({r['clusters_formed_2theta']} at 2/sqrt(beta))",
              f"4 standard deviations of the number of maxima over random fields (Monte Carlo, sd {ksd:.2f})",
              abs(k - km) <= 4 * ksd),
        info(NAME, f"{tag}: W2(clustered, initial pushed to nearest centre) / W2(clustered, initial)",
             f"{r['w2_pushed']:.4f} / {r['w2_initial']:.4f} = {ratio:.3f} ({100 * r['same_cluster_fraction']:.1f}% "
             "of tokens in the cluster nearest their start)",
             "which tokens end in which cluster is not a claim of the low-temperature paper (docs/mathematics.md, "
             "'Corrections to earlier statements'); reported without a verdict"),
        check(NAME, f"{tag}: longest plateau of the cluster count after t_c", f"≥ {PLATEAU_FACTOR:g} t_on = {need:.1f}",
              f"{'≥ ' if r['plateau_open'] else ''}{r['plateau']:.1f} from t = {r['plateau_start']:g} "
              f"({int(r['counts'][-1])} clusters at t_end)",
              "the claim itself (metastability); an open plateau is cut by t_end and is a lower bound",
              r["plateau"] >= need),
    ]


def summary_rows(results: dict, setup: Setup) -> list[Row]:
    betas = list(results)
    n = setup.n_tokens
    get = {key: np.array([results[b][key] for b in betas], dtype=float) for key in
           ("onset_time", "gamma_max", "lstar", "clusters_formed", "clusters_expected", "clusters_expected_sd",
            "w2_pushed", "w2_initial")}
    rows = []
    slope, se = _fit(1 / get["gamma_max"], get["onset_time"])
    rows.append(check(NAME, "onset: slope of t_on against 1/γ_max over beta", "> 0 (t_on γ_max = ln(C sqrt N) > 0)",
                      f"{slope:.2f} ± {se:.2f} (1/γ_max spans {1 / get['gamma_max'].max():.3f}–"
                      f"{1 / get['gamma_max'].min():.3f})",
                      "sign only: γ_max(β) varies by 11% over β ∈ [4, 36] (γ_max → 2/e), so the lever arm is short "
                      "and ln(2l*+1) co-varies with 1/γ_max", slope > 0))
    product = get["onset_time"] * get["gamma_max"]
    theory = np.log(ONSET_AMPLITUDE * np.sqrt(n / (2 * get["lstar"] + 1)))
    rows.append(check(NAME, "onset: t_on·γ_max per beta",
                      "ln(a sqrt(N/(2l*+1))) ± 1: " + ", ".join(f"{v:.2f}" for v in theory),
                      ", ".join(f"{v:.2f}" for v in product),
                      "±1 e-fold of the nonlinear saturation; E A(0)² = (2l*+1)/N for i.i.d. tokens",
                      bool(np.all(np.abs(product - theory) <= 1))))
    lam = get["lstar"] * (get["lstar"] + 1)
    slope, se = _fit(np.log(lam), np.log(get["clusters_formed"]),
                     get["clusters_expected_sd"] / get["clusters_expected"])
    rows.append(check(NAME, "clusters: log-log slope of clusters formed against λ* = l*(l*+1)", f"1 ± {4 * se:.2f}",
                      f"{slope:.3f} (counts {', '.join(str(int(k)) for k in get['clusters_formed'])} for l* = "
                      f"{', '.join(str(int(v)) for v in get['lstar'])})",
                      "4 standard errors; per-beta errors from the Monte Carlo spread of the number of maxima",
                      abs(slope - 1) <= 4 * se))
    slope, se = _fit(np.log(betas), np.log(get["w2_pushed"]))
    rows.append(check(NAME, "transport: log-log slope of W2(clustered, pushed to nearest centre) against beta",
                      "< 0 (decreasing)",
                      f"{slope:.2f} ± {se:.2f} (W2 = {', '.join(f'{v:.4f}' for v in get['w2_pushed'])})",
                      "sign only", slope < 0))
    scaled = np.sqrt(get["clusters_formed"]) * get["w2_initial"]
    lo, hi = QUANTIZATION_BAND
    rows.append(check(NAME, "transport: sqrt(K)·W2(clustered, initial) per beta", f"in [{lo:.2f}, {hi:.2f}]",
                      ", ".join(f"{v:.2f}" for v in scaled),
                      "quantization of the sphere into K cells: hexagonal (5/(18√3)) to Poisson–Voronoi (1/π) "
                      "second moment", bool(np.all((scaled >= lo) & (scaled <= hi)))))
    return rows


def v_rows(diag: dict, ident: dict, setup: Setup) -> list[Row]:
    n = setup.n_tokens
    miss = 7.0 * np.exp(-(setup.v_diag[0] - setup.v_diag[1]) * (setup.v_t_end - 14.0))
    return [
        check(NAME, f"V: fraction of tokens with |x·e1| > 0.99 at t = {setup.v_t_end:g}, V = diag{setup.v_diag}, "
              f"beta = {setup.v_beta:g}", f"1 (Oja flow: misses < 7 e^(−(λ1−λ2)(t − 14)) = {miss:.1e})",
              f"{diag['aligned']:.4f} ({int(round((1 - diag['aligned']) * n))} of {n} tokens off, "
              f"{diag['clusters']} clusters)", "less than one token (1/N)",
              diag["aligned"] >= 1 - max(miss, 0.5 / n)),
        check(NAME, f"V: ⟨(x·e1)²⟩ at t = {setup.t_end:g}, V = I, beta = {setup.v_beta:g}",
              f"1/3 ± {4 * ident['m11_sd']:.3f} (no preferred axis)",
              f"{ident['m11']:.3f} ({ident['clusters']} clusters; V = diag: {diag['m11']:.4f}; fraction "
              f"|x·e1| > 0.99 {ident['aligned']:.3f})",
              "4 sd of Σ_k w_k (c_k·e1)² for independent uniform cluster directions: var = Σ w_k² · 4/45",
              abs(ident["m11"] - 1 / 3) <= 4 * ident["m11_sd"]),
    ]


# ---- output ----------------------------------------------------------------------------------------------------
_PER_BETA = {  # key → (long_name, units)
    "lstar": ("fastest-growing degree l* = argmax gamma_l", "1"),
    "gamma_max": ("largest linear growth rate gamma_l* of the uniform state", "1"),
    "amplitude0": ("initial relative amplitude A(0) of the degree-l* part of the empirical measure", "1"),
    "early_rate": ("fitted growth rate of A while A < a/2", "1"),
    "onset_time": ("onset time: A reaches a", "1"),
    "onset_time_linear": ("linear prediction ln(a/A(0))/gamma_l* of the onset time", "1"),
    "clustered_time": ("first record after onset with cluster rms radius below theta_c/10", "1"),
    "clusters_formed": ("number of clusters at the clustered time", "1"),
    "clusters_formed_2theta": ("number of clusters at the clustered time, single linkage at 2/sqrt(beta)", "1"),
    "clusters_expected": ("mean number of maxima of the smoothed linear field (Monte Carlo)", "1"),
    "clusters_expected_sd": ("standard deviation of the number of maxima of the smoothed linear field", "1"),
    "clusters_kac_rice": ("l*(l*+1)/(2 sqrt 3): maxima of a random degree-l* harmonic", "1"),
    "w2_pushed": ("W2(clustered tokens, initial tokens moved to the nearest cluster centre)", "rad"),
    "w2_initial": ("W2(clustered tokens, initial tokens)", "rad"),
    "w2_quantization": ("W2(initial tokens moved to nearest centre, initial tokens): quantization error", "rad"),
    "same_cluster_fraction": ("fraction of tokens ending in the cluster whose centre was nearest their start", "1"),
    "plateau": ("longest interval of constant cluster count after the clustered time", "1"),
    "plateau_start": ("start of the longest plateau", "1"),
    "plateau_open": ("1 if the longest plateau lasts until t_end (a lower bound)", "1"),
    "seconds": ("wall time of the particle run", "s"),
}


def build_dataset(setup: Setup, x0: np.ndarray, results: dict, vres: dict) -> xr.Dataset:
    betas = list(results)
    t = results[betas[0]]["time"]
    one = {"units": "1"}
    data: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]] = {
        key: (("beta",), np.array([float(results[b][key]) for b in betas]), {"long_name": ln, "units": u})
            for key, (ln, u) in _PER_BETA.items()}
    series = {"amplitude_lstar": "relative amplitude A = sqrt(4 pi P_l*) of the empirical measure",
              "cluster_count": "number of single-linkage clusters at angle 1/sqrt(beta)",
              "cluster_radius": "rms angle of tokens to their cluster centre"}
    for name, key in zip(series, ("amplitude", "counts", "radius"), strict=True):
        data[name] = (("beta", "time"), np.stack([results[b][key] for b in betas]).astype(float),
                      {"long_name": series[name], "units": "rad" if key == "radius" else "1"})
    data["positions_initial"] = (("token", "component"), x0, {**one, "long_name": "initial tokens (uniform)"})
    data["positions_clustered"] = (("beta", "token", "component"), np.stack([results[b]["positions_clustered"]
                                   for b in betas]), {**one, "long_name": "tokens at the clustered time (V = I)"})
    data["positions_final"] = (("value_matrix", "token", "component"), np.stack([vres[k]["x"] for k in vres]),
                               {**one, "long_name": f"tokens at the end of the runs at beta = {setup.v_beta:g}"})
    for key, ln in (("aligned", "fraction of tokens with |x.e1| > 0.99"), ("m11", "mean of (x.e1)^2"),
                    ("m11_sd", "standard deviation of mean (x.e1)^2 for isotropic clusters")):
        data[f"v_{key}"] = (("value_matrix",), np.array([vres[k][key] for k in vres]), {**one, "long_name": ln})
    coords = {"beta": ("beta", np.array(betas), {**one, "long_name": "inverse temperature"}),
              "time": ("time", t, {**one, "long_name": "depth (dimensionless time)", "axis": "T"}),
              "token": ("token", np.arange(x0.shape[0]), {**one, "long_name": "token index"}),
              "component": ("component", np.arange(3), {**one, "long_name": "Cartesian component"}),
              "value_matrix": ("value_matrix", list(vres), {"long_name": "value matrix V of the run", "units": "1"}),
              "v_end_time": ("value_matrix", np.array([vres[k]["t_end"] for k in vres]),
                             {**one, "long_name": "time of positions_final"})}
    attrs = {"onset_amplitude": ONSET_AMPLITUDE, "cluster_threshold": "1/sqrt(beta) rad, single linkage",
             "normalization": "softmax", "Q": "identity", "K": "identity"}
    for key, value in asdict(setup).items():
        attrs[key] = np.asarray(value, dtype=float) if isinstance(value, tuple) else value
    return xr.Dataset(data, coords=coords, attrs=attrs)


def plot(ds: xr.Dataset, path: str) -> None:
    """Onset against 1/γ_max, A_l*(t), cluster counts (log time), W2 against beta, final tokens (Mollweide)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 9), layout="constrained")
    FigureCanvasAgg(fig)
    betas = ds["beta"].values
    colors = [f"C{k}" for k in range(betas.size)]
    t = ds["time"].values
    ax = fig.add_subplot(2, 3, 1)
    inv = 1 / ds["gamma_max"].values
    ax.plot(inv, ds["onset_time"], "o", label="measured t_on")
    ax.plot(inv, ds["onset_time_linear"], "s", mfc="none", label="ln(a/A(0))/γ_l* (linear theory)")
    coef = np.polyfit(inv, ds["onset_time"].values, 1)
    xs = np.linspace(inv.min(), inv.max(), 10)
    ax.plot(xs, np.polyval(coef, xs), "k--", lw=1, label=f"fit: slope {coef[0]:.2f}")
    for b, x, y in zip(betas, inv, ds["onset_time"].values, strict=True):
        ax.annotate(f"β={b:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xlabel="1/γ_max(β)", ylabel="onset time t_on", title=f"Onset: A_l* reaches {ONSET_AMPLITUDE:g}")
    ax.legend(fontsize=8)
    ax = fig.add_subplot(2, 3, 2)
    early = t <= 16
    for b, c in zip(betas, colors, strict=True):
        r = ds.sel(beta=b)
        ax.semilogy(t[early], r["amplitude_lstar"].values[early], color=c, label=f"β={b:g}, l*={int(r['lstar'])}")
        ax.semilogy(t[early], r["amplitude0"].values * np.exp(float(r["gamma_max"]) * t[early]), ":", color=c)
    ax.axhline(ONSET_AMPLITUDE, color="k", lw=0.8)
    ax.set(ylim=(0.02, 5), xlabel="t", ylabel="A_l* = sqrt(4π P_l*)", title="degree-l* amplitude (dotted: A(0)e^{γt})")
    ax.legend(fontsize=8)
    ax = fig.add_subplot(2, 3, 3)
    for b, c in zip(betas, colors, strict=True):
        r = ds.sel(beta=b)
        count = r["cluster_count"].values
        forming = (t >= float(r["onset_time"])) & (t <= float(r["clustered_time"]))  # before onset: percolated
        formed = t >= float(r["clustered_time"])
        ax.step(t[forming], count[forming], where="post", color=c, lw=0.6, alpha=0.6)
        ax.step(t[formed], count[formed], where="post", color=c, lw=1.8, label=f"β={b:g}")
        ax.plot(t[formed][0], count[formed][0], "o", color=c)
        ax.axhline(float(r["clusters_expected"]), color=c, ls=":", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="t (log), from t_on", ylabel="clusters",
           title="clusters (thin: forming, dot: t_c, dotted: expected)")
    ax.legend(fontsize=8, loc="lower left")
    ax = fig.add_subplot(2, 3, 4)
    ax.loglog(betas, ds["w2_initial"], "o-", label="W2(clustered, initial)")
    ax.loglog(betas, ds["w2_pushed"], "s-", label="W2(clustered, initial → nearest centre)")
    ax.loglog(betas, ds["w2_quantization"], "^:", label="quantization error D")
    lo, hi = QUANTIZATION_BAND
    k = ds["clusters_formed"].values
    ax.fill_between(betas, lo / np.sqrt(k), hi / np.sqrt(k), color="0.85", label="[1.42, 2]/sqrt(K)")
    ax.set(xlabel="β", ylabel="W2 (rad)", title="transport to the clustered state")
    ax.legend(fontsize=8)
    for pos, key in ((5, 0), (6, 1)):
        ax = fig.add_subplot(2, 3, pos, projection="mollweide")
        x = ds["positions_final"].isel(value_matrix=key).values
        ax.scatter([0, np.pi - 1e-3], [0, 0], marker="o", facecolors="none", edgecolors="r", s=150, label="±e1")
        ax.scatter(np.arctan2(x[:, 1], x[:, 0]), np.arcsin(np.clip(x[:, 2], -1, 1)), s=12, alpha=0.5,
                   label="tokens")
        ax.grid(True, lw=0.3)
        ax.set_title(f"V = {str(ds['value_matrix'].values[key])}, β = {ds.attrs['v_beta']:g}, "
                     f"t = {float(ds['v_end_time'].values[key]):g}: |x·e1|>0.99 for "
                     f"{100 * float(ds['v_aligned'].values[key]):.1f}%", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{TITLE}: N = {ds.attrs['n_tokens']} uniform tokens on S², SA, Q = K = I")
    fig.savefig(path, dpi=110)


def measure(quick: bool) -> tuple[list[Row], xr.Dataset]:
    """The rows and the Dataset of the case; ``quick``: three betas, N = 1000, t_end = 60 (about a minute) instead of
    five betas, N = 1500, t_end = 200 (``QUICK`` and ``Setup()``)."""
    setup = QUICK if quick else Setup()
    x0 = uniform_tokens(setup.n_tokens, setup.seed)
    counter = MaximaCounter()
    results, rows = {}, []
    for beta in setup.betas:
        results[beta] = measure_beta(beta, x0, setup, counter)
        rows += beta_rows(results[beta], beta, setup.n_tokens)
    rows += summary_rows(results, setup)
    v_beta = setup.v_beta
    if v_beta in results:
        ident = {**orientation(results[v_beta]["positions_final"], 1 / np.sqrt(v_beta)), "t_end": setup.t_end,
                 "x": results[v_beta]["positions_final"]}
    else:
        _, pos = integrate(AttentionModel(3, beta=v_beta), x0, segments(setup.t_end, 1.0))
        ident = {**orientation(pos[-1], 1 / np.sqrt(v_beta)), "t_end": setup.t_end, "x": pos[-1]}
    _, pos = integrate(AttentionModel(3, beta=v_beta, V=np.diag(setup.v_diag)), x0, segments(setup.v_t_end, 0.5))
    diag = {**orientation(pos[-1], 1 / np.sqrt(v_beta)), "t_end": setup.v_t_end, "x": pos[-1]}
    rows += v_rows(diag, ident, setup)
    vres = {"diag(" + ", ".join(f"{v:g}" for v in setup.v_diag) + ")": diag, "identity": ident}
    return rows, build_dataset(setup, x0, results, vres)
