"""Synchronization and antipodal clusters at the density level to depth 10, beside tokens on the same noise path.

The spectral grid holds a collapsing density only for a while; ``solve_density(engine="auto")`` hands over to the
Lagrangian engine (docs/mathematics.md, 'The Lagrangian engine') when the spectral tail exceeds ``handover_tail``,
and the weighted nodes x_i(t), w_i carry the measure to any depth. One ``NoisePath`` drives the density and D
independent draws of N tokens i.i.d. from ρ0 (``simulate_particles``), so the two are compared realization by
realization, to depth 10 on ``SphereGrid(16)``, where the grid alone is under-resolved from the first step.

Observable: the projective dispersion along the density's principal axis c(t) (top eigenvector of
M = ∫ x xᵀ dρ_t = Σ_i w_i x_i x_iᵀ),

    q(t) = 1 − cᵀ M c,       q̂(t) = 1 − cᵀ M̂ c,       M̂ = (1/N) Σ_i x_i x_iᵀ (tokens),

which is 0 exactly when the mass sits on ±c (synchronized, or projectively synchronized onto an antipodal pair).
Given the path, tokens that do not interact (V = 0 and a μ-independent noise) are N i.i.d. samples of ρ_t (they
are moved by the same flow map, up to the O(dt⁴) difference of the two RK4 discretizations), so E M̂ = M and
E q̂ = q *exactly* (q̂ is linear in M̂ for the fixed axis c): the ratio r = q̂/q has expectation 1 at every depth.
With ValueNoise the tokens interact (a_μ), so the identity holds up to the O(1/N) propagation-of-chaos error and
the O(dt) gap between the layer update of the tokens and the density's frozen-increment step.

* ``sync`` (the synchronization case): S², V = 0, ``MLPNoise(1, "tanh", 64)``, ρ0 = vMF(e₃, 8), tokens by
  ``scheme="flow"``. The tanh field is odd, so both the coincident and the antipodal pair are absorbing and q → 0
  (projective synchronization) at the almost-sure rate Λ = −2 sigma² κ(1) of log(1 − (x·y)²) (the synchronization
  case's docstring). Rows: r pooled over the records t ∈ [1, 10] and over the draws against 1 (4 standard errors
  over the D draws, independent given the path); tokens started *at the Lagrangian nodes* and moved by
  ``simulate_particles`` on the path land on the nodes at every record to depth 10 (the nodes are the push-forward
  by the tokens' flow map: max |Δx| within rounding, n_steps × 4 stages × width × ε, times 4 for the flow's
  stretching); the decay rate of log q of the density over [1, 10] against that of the mean of the tokens' q̂ (their
  difference is (log r̄(10) − log r̄(1))/9, delta-method standard error over the draws); and the density's rate
  against Λ within 4 s/sqrt(9), s² = 4 sigma²(κ(1) + κ'(1)) the variance rate of log(1 − x·y) on one path (a
  single realization of a Brownian motion with drift). r at t = 10 alone is not a row: there q ≈ 1e-5 is carried
  by the little mass still between ±c, which 720 nodes and 256 tokens both sample coarsely (heavy-tailed ratios;
  measured 0.43 ± 0.13 at t = 10 against 0.97 ± 0.20 pooled).
* ``antipodal`` (the antipodal case): S², V = 0, softmax beta = 1, ``ValueNoise(1)``, ρ0 = 0.7 vMF(e₃, 10) +
  0.3 vMF(−e₃, 10), tokens by the layer update (``scheme="flow"`` refuses μ-dependent noise). At d = 3 antipodal
  pairs attract for every beta > 0 (cosh 2 beta > d − 2), so the two bumps contract towards an antipodal pair of
  clusters. Row: the mass on the side c·x < 0 of the density's axis (oriented towards the heavier cluster) against
  the tokens' fraction (mean over draws, standard error from the spread over draws) within 4 standard errors. The
  identity E q̂ = q does not carry over (the tokens interact and the layer update differs from the frozen-increment
  flow by O(dt^½) on each path, which the contraction of q makes visible: measured r = 2.8 ± 0.2 pooled), so q is
  reported without a verdict.

Settings: lmax 16 (720 nodes), dt = 0.02, records every 0.5, path seed 2024, N = 256 tokens, D = 16 draws (token seeds
7, 8, …). Cost on two shared cores: about 15 s (sync) and 27 s (antipodal) of CPU for the density, 1.5 s and 0.8 s
per token draw.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from spde_tokens import initial
from spde_tokens.density import solve_density
from spde_tokens.grids import ResolutionWarning, SphereGrid
from spde_tokens.lagrangian import node_rule
from spde_tokens.model import AttentionModel
from spde_tokens.noise import MLPNoise, NoiseModel, NoisePath, ValueNoise
from spde_tokens.particles import simulate_particles
from spde_tokens.validation.common import Z_BAND, Row, check, info
from spde_tokens.validation.mlp_pairs import kappas

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn
    from matplotlib.axes import Axes

KINDS = ("sync", "antipodal")
EPS = float(np.finfo(float).eps)
#: the records from which the pooled ratio and the rates are taken (after the first contraction)
T_FROM = 1.0


@dataclass(frozen=True)
class DeepSetup:
    """Parameters of a deep run (recorded in the case's file as ``deep_<field>``)."""

    kind: str
    lmax: int = 16
    t_end: float = 10.0
    dt: float = 0.02
    record_every: float = 0.5
    n_tokens: int = 256
    draws: int = 16
    path_seed: int = 2024
    token_seed: int = 7


def problem(setup: DeepSetup) -> tuple[AttentionModel, NoiseModel, xr.DataArray, str]:
    """(model, noise, ρ0, particle scheme) of the run (module docstring)."""
    grid = SphereGrid(setup.lmax)
    if setup.kind == "sync":
        return (AttentionModel(3, 1.0, V=np.zeros((3, 3))), MLPNoise(1.0, "tanh", 64),
                initial.von_mises_fisher(grid, [0.0, 0.0, 1.0], 8.0), "flow")
    if setup.kind == "antipodal":
        return (AttentionModel(3, 1.0, V=np.zeros((3, 3))), ValueNoise(1.0),
                initial.mixture(grid, [0.7, 0.3], [[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]], [10.0, 10.0]), "layer")
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {setup.kind!r}")


def principal_axis(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Top eigenvector c of Σ_i w_i x_i x_iᵀ per record, x (T, n, 3), w (n,), oriented so that c·Σ_i w_i x_i ≥ 0."""
    m2 = np.einsum("tni,tnj,n->tij", x, x, w)
    axis = np.linalg.eigh(m2)[1][..., -1]
    sign = np.sign(np.einsum("ti,ti->t", axis, np.einsum("tni,n->ti", x, w)))
    return axis * np.where(sign == 0, 1.0, sign)[:, None]


def projective_dispersion(x: np.ndarray, w: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """1 − cᵀ M c = Σ_i w_i (1 − (c·x_i)²) per record, as Σ_i w_i |x_i − (c·x_i) c|² (equal for unit x_i, and
    without the cancellation of 1 − (c·x)² when the mass sits near ±c)."""
    along = np.einsum("tni,ti->tn", x, axis)
    perp = x - along[..., None] * axis[:, None, :]
    return np.einsum("tn,n->t", np.sum(perp**2, axis=-1), w)


def measure(setup: DeepSetup) -> dict:
    """The density (engine "auto") and the D token draws on one path; q, q̂ per record and the mass split."""
    model, noise, rho0, scheme = problem(setup)
    n_steps = int(round(setup.t_end / setup.dt))
    path = NoisePath(noise, 3, setup.dt, n_steps, seed=setup.path_seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResolutionWarning)  # the hand-over to the nodes is the point of the run
        dens = solve_density(model, noise, rho0, setup.t_end, setup.dt, path=path, save_every=setup.record_every,
                             progress=False, engine="auto")
    times = dens["time"].values
    nodes, weights = dens["nodes"].values, dens["weights"].values
    keep = np.all(np.isfinite(nodes), axis=(1, 2))  # records made by the nodes (NaN before the hand-over)
    axis = principal_axis(nodes[keep], weights)
    q_density = projective_dispersion(nodes[keep], weights, axis)
    flow_gap = np.nan
    if setup.kind == "sync" and handover_time(dens) == 0.0:
        # tokens at the nodes of the hand-over (the Gauss rule of the grid, at t = 0): the same flow map
        start = node_rule(SphereGrid(setup.lmax)).points().reshape(-1, 3)
        moved = simulate_particles(model, noise, start, setup.t_end, setup.dt, path=path, scheme=scheme,
                                   save_every=setup.record_every, progress=False)["positions"].values[keep]
        flow_gap = float(np.abs(moved - nodes[keep]).max())
    q_tokens, side, final_tokens = [], [], None
    for k in range(setup.draws):
        x0 = initial.sample(rho0, setup.n_tokens, seed=setup.token_seed + k)
        parts = simulate_particles(model, noise, x0, setup.t_end, setup.dt, path=path, scheme=scheme,
                                   save_every=setup.record_every, progress=False)
        x = parts["positions"].values[keep]
        uniform = np.full(setup.n_tokens, 1.0 / setup.n_tokens)
        q_tokens.append(projective_dispersion(x, uniform, axis))
        side.append(float(np.mean(x[-1] @ axis[-1] < 0)))
        if final_tokens is None:
            final_tokens = x[-1]
    return {"time": times[keep], "q_density": q_density, "q_tokens": np.array(q_tokens), "axis": axis,
            "side_density": float(weights[nodes[-1] @ axis[-1] < 0].sum()), "side_tokens": np.array(side),
            "handover_time": handover_time(dens), "n_nodes": int(weights.size),
            "final_nodes": nodes[-1], "weights": weights, "final_tokens": final_tokens,
            "smoothing_time": float(dens["smoothing_time"].values[-1]), "flow_gap": flow_gap,
            "n_steps": n_steps}


def handover_time(dens: xr.Dataset) -> float:
    """The hand-over time of a run with engine "auto" (NaN when it did not hand over)."""
    value = dens.attrs.get("handover_time", "none")
    return float(value) if value != "none" else float("nan")


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


def rows(case: str, setup: DeepSetup, res: dict) -> list[Row]:
    """The rows of a deep run (module docstring); tags ``deep/...``."""
    t, qd, qt = res["time"], res["q_density"], res["q_tokens"]
    ratio = qt / qd  # (draws, records)
    late = t >= T_FROM - 1e-9
    d, n = setup.draws, setup.n_tokens
    label = (f"SphereGrid({setup.lmax}) → {res['n_nodes']} Lagrangian nodes (hand-over at t = "
             f"{res['handover_time']:g}), N = {n}, {d} draws, one path")
    tolerance = f"4 standard errors of the mean over the {d} token draws (sd over draws / sqrt({d}))"
    out = []
    if setup.kind == "sync":
        mean, se = _mean_se(ratio[:, late].mean(axis=1))
        out.append(check(case, f"deep/sync/pooled: r = q̂/q, q = 1 − cᵀ(∫ x xᵀ dρ)c along the density's axis c, "
                         f"mean over records t ∈ [{T_FROM:g}, {t[-1]:g}] and draws ({label})",
                         "1: E q̂ = q given the path (exact for i.i.d. samples of ρ_t)",
                         f"{mean:.3f} ± {se:.3f} (z = {(mean - 1) / se:+.2f})", tolerance,
                         abs(mean - 1) <= Z_BAND * se))
        width = 64
        tol = 4 * res["n_steps"] * 4 * width * EPS
        out.append(check(case, f"deep/sync/flow: the Lagrangian nodes at every record to t = {t[-1]:g} against "
                         f"{res['n_nodes']} tokens started at the nodes, simulate_particles(scheme='flow') on the "
                         "same path", "identical: the density is the push-forward by the tokens' flow map",
                         f"max |Δx| = {res['flow_gap']:.1e}",
                         f"rounding: n_steps × 4 stages × width × ε × 4 (stretching) = {tol:.1e}",
                         bool(res["flow_gap"] <= tol)))
    if setup.kind == "sync":
        i0 = int(np.argmax(late))
        span = t[-1] - t[i0]
        rate_d = float(np.log(qd[-1] / qd[i0]) / span)
        bar = qt.mean(axis=0)
        rate_t = float(np.log(bar[-1] / bar[i0]) / span)
        # the difference is (log r̄(T) − log r̄(t₀))/span, r̄ the mean over draws: delta method over the draws
        infl = (ratio[:, -1] / ratio[:, -1].mean() - ratio[:, i0] / ratio[:, i0].mean()) / span
        se = float(infl.std(ddof=1) / np.sqrt(d))
        out.append(check(case, f"deep/sync/rate: decay rate of log q of the density over [{t[i0]:g}, {t[-1]:g}] "
                         "against that of the tokens' mean q̂ on the same path",
                         "equal (the density and the tokens follow the same flow)",
                         f"density {rate_d:+.3f}, tokens {rate_t:+.3f} (difference {rate_d - rate_t:+.3f} ± {se:.3f})",
                         "4 standard errors (delta method over the draws)", abs(rate_d - rate_t) <= Z_BAND * se))
        k1, kp, _ = kappas("tanh")
        lam, s = -2.0 * k1, float(np.sqrt(4.0 * (k1 + kp)))
        band = Z_BAND * s / np.sqrt(span)
        out.append(check(case, "deep/sync/theory: decay rate of log q of the density on this path (projective "
                         "synchronization of the whole measure)",
                         f"Λ = −2 sigma² κ(1) = {lam:+.3f} (a.s. rate of log(1 − (x·y)²), tanh, d = 3, V = 0)",
                         f"{rate_d:+.3f} (z = {(rate_d - lam) / (s / np.sqrt(span)):+.2f})",
                         f"one path: log q moves like a Brownian motion with drift Λ and variance rate s² = "
                         f"4 sigma²(κ(1) + κ'(1)) = {s * s:.2f}; band 4 s/sqrt({span:g}) = {band:.2f}",
                         abs(rate_d - lam) <= band))
    else:
        mean, se = _mean_se(res["side_tokens"])
        p = res["side_density"]
        out.append(check(case, f"deep/antipodal/split: mass on the far side c·x < 0 of the density's axis at "
                         f"t = {t[-1]:g} (the lighter of the two antipodal clusters), tokens against density",
                         f"the density's {p:.4f} (from 0.3 at t = 0)",
                         f"tokens {mean:.4f} ± {se:.4f} (z = {(mean - p) / se:+.2f}; binomial sd of a draw "
                         f"{np.sqrt(p * (1 - p) / n):.4f}, measured {res['side_tokens'].std(ddof=1):.4f})",
                         tolerance, abs(mean - p) <= Z_BAND * se))
        mean, se = _mean_se(ratio[:, late].mean(axis=1))
        out.append(info(case, f"deep/antipodal/q: r = q̂/q along the density's axis, mean over records t ∈ "
                        f"[{T_FROM:g}, {t[-1]:g}] and draws ({label})", f"{mean:.2f} ± {se:.2f}; q from "
                        f"{qd[0]:.2e} to {qd[-1]:.2e}", "interacting tokens under the layer update: no exact identity "
                        "(module docstring)"))
    out.append(info(case, f"deep/{setup.kind}/reach: the density's q at t = {t[-1]:g} and the final smoothing time of "
                    "its grid projection", f"q = {qd[-1]:.2e}; smoothing time {res['smoothing_time']:.3g}",
                    f"how far beyond the grid (lmax {setup.lmax}) the nodes carry the measure"))
    return out


def dataset_variables(setup: DeepSetup, res: dict) -> tuple[dict, dict, dict]:
    """(data variables, coordinates, attributes) for the case's Dataset, names prefixed ``deep_``."""
    one = {"units": "1"}
    rec, draw = ("deep_time",), ("deep_draw",)
    data = {
        "deep_q_density": (rec, res["q_density"],
                           {**one, "long_name": "projective dispersion 1 - c.Mc of the density (Lagrangian nodes)"}),
        "deep_q_tokens": (draw + rec, res["q_tokens"],
                          {**one, "long_name": "projective dispersion 1 - c.M_hat c of a token draw, c the "
                                               "density's axis"}),
        "deep_axis": (rec + ("deep_component",), res["axis"], {**one, "long_name": "principal axis c of the density"}),
        "deep_side_tokens": (draw, res["side_tokens"], {**one, "long_name": "fraction of tokens with c.x < 0 at "
                                                                            "the end"}),
        "deep_side_density": ((), res["side_density"], {**one, "long_name": "mass of the density with c.x < 0 at the "
                                                                            "end"}),
        "deep_final_nodes": (("deep_node", "deep_component"), res["final_nodes"],
                             {**one, "long_name": "Lagrangian nodes at the last record"}),
        "deep_weights": (("deep_node",), res["weights"], {**one, "long_name": "masses of the Lagrangian nodes"}),
        "deep_final_tokens": (("deep_token", "deep_component"), res["final_tokens"],
                              {**one, "long_name": "tokens of draw 0 at the last record"}),
    }
    coords = {
        "deep_time": ("deep_time", res["time"], {**one, "long_name": "depth t of the deep records"}),
        "deep_draw": ("deep_draw", np.arange(setup.draws), {**one, "long_name": "token draw of the deep run"}),
        "deep_node": ("deep_node", np.arange(res["n_nodes"]), {**one, "long_name": "Lagrangian node"}),
        "deep_token": ("deep_token", np.arange(setup.n_tokens), {**one, "long_name": "token index (deep run)"}),
        "deep_component": ("deep_component", np.arange(3), {**one, "long_name": "Cartesian component"}),
    }
    attrs = {f"deep_{key}": value for key, value in asdict(setup).items()}
    attrs["deep_handover_time"] = res["handover_time"]
    return data, coords, attrs


def plot_panels(ds: xr.Dataset, ax_q: Axes, ax_r: Axes, ax_map: Axes) -> None:
    """q of the density and of the token draws against depth (log scale), the ratio r = q̂/q (mean ± 4 standard
    errors over the draws) against 1, and the final nodes (sized by mass) with the tokens of draw 0 in an
    orthographic view along the density's axis."""
    t = ds["deep_time"].values
    qt = ds["deep_q_tokens"].values
    ratio = qt / ds["deep_q_density"].values
    mean, se = ratio.mean(axis=0), ratio.std(axis=0, ddof=1) / np.sqrt(ratio.shape[0])
    ax_r.fill_between(t, mean - Z_BAND * se, mean + Z_BAND * se, color="C1", alpha=0.35,
                      label="mean over draws ± 4 SE")
    ax_r.plot(t, mean, "o-", color="C1", ms=3)
    ax_r.axhline(1.0, color="k", lw=1.0, label="E q̂ / q = 1")
    ax_r.set_xlabel("depth t")
    ax_r.set_ylabel(r"$r = \hat q / q$")
    ax_r.set_title("tokens against the density on the same path", fontsize=10)
    ax_r.legend(fontsize=7)
    for k in range(qt.shape[0]):
        ax_q.semilogy(t, qt[k], color="C1", lw=0.6, alpha=0.35, label="token draws" if k == 0 else None)
    ax_q.semilogy(t, qt.mean(axis=0), color="C1", lw=2.0, label=f"mean of {qt.shape[0]} draws")
    ax_q.semilogy(t, ds["deep_q_density"].values, "k-", lw=1.6, label="density (Lagrangian nodes)")
    ax_q.set_xlabel("depth t")
    ax_q.set_ylabel(r"$q = 1 - c^\top M c$")
    ax_q.set_title(f"density (SphereGrid({ds.attrs['deep_lmax']}) → nodes) and "
                   f"{qt.shape[0]} × {ds.sizes['deep_token']} tokens, one path", fontsize=10)
    ax_q.grid(alpha=0.3, which="both")
    ax_q.legend(fontsize=7)
    axis = ds["deep_axis"].values[-1]
    e1 = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    nodes, w = ds["deep_final_nodes"].values, ds["deep_weights"].values
    tokens = ds["deep_final_tokens"].values
    for pts, colour, size, label in ((nodes, "k", 4000 * w, "density nodes (area ∝ mass)"),
                                     (tokens, "C1", np.full(len(tokens), 6.0), "tokens, draw 0")):
        front = pts @ axis >= 0
        ax_map.scatter(pts[front] @ e1, pts[front] @ e2, s=size[front], c=colour, alpha=0.5,
                       label=f"{label}, c·x ≥ 0")
        ax_map.scatter(pts[~front] @ e1, pts[~front] @ e2, s=size[~front], facecolors="none", edgecolors=colour,
                       alpha=0.7, label=f"{label}, c·x < 0")
    extent = 1.15 * float(np.quantile(np.abs(np.concatenate([tokens @ e1, tokens @ e2])), 0.98))
    ax_map.set_aspect("equal")
    ax_map.set_xlim(-extent, extent)
    ax_map.set_ylim(-extent, extent)
    ax_map.set_xlabel("orthographic view along the density's axis c: (x·e₁, x·e₂), zoomed")
    ax_map.set_title(f"t = {t[-1]:g}: nodes and tokens (mass with c·x < 0: density "
                     f"{float(ds['deep_side_density']):.3f}, tokens {float(ds['deep_side_tokens'].mean()):.3f})",
                     fontsize=10)
    ax_map.legend(fontsize=6.5, loc="lower left")


def plot_split(ds: xr.Dataset, ax: Axes) -> None:
    """The mass on the far side c·x < 0 of the density's axis at the last record: each token draw, their mean ± 4
    standard errors, the density's value and the initial weight of the far bump."""
    side = ds["deep_side_tokens"].values
    mean, se = float(side.mean()), float(side.std(ddof=1) / np.sqrt(side.size))
    ax.plot(np.arange(side.size), side, "o", color="C1", ms=5, label="token draws")
    ax.axhspan(mean - Z_BAND * se, mean + Z_BAND * se, color="C1", alpha=0.25, label="mean of the draws ± 4 SE")
    ax.axhline(float(ds["deep_side_density"]), color="k", lw=1.6, label="density (Lagrangian nodes)")
    ax.axhline(0.3, color="0.5", ls=":", lw=1.0, label="weight of the far bump at t = 0")
    ax.set_xlabel("token draw")
    ax.set_ylabel("mass with c·x < 0")
    ax.set_ylim(0, max(0.6, float(side.max()) + 0.05))
    ax.set_title(f"t = {float(ds['deep_time'].values[-1]):g}: mass of the lighter antipodal cluster", fontsize=10)
    ax.legend(fontsize=7)
