"""The figure of the synchronization case (:mod:`spde_tokens.validation.synchronization`) from its Dataset."""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from spde_tokens.validation import deep_density
from spde_tokens.validation.mlp_pairs import kappas
from spde_tokens.validation.sync_density import plot_panels


def plot(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Twelve panels: median log(1 − x·y) paths, measured vs theoretical Λ, Λ_noise(d), mean rates, projective fates,
    the density solver beside the particles on one path (dispersions, MMD vs floor, the density with tokens), and
    the same to depth 10 with the Lagrangian engine (projective dispersion, its ratio, the final nodes and tokens)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 18), layout="constrained")
    ax = fig.subplots(4, 3)
    dt = 2 * float(ds.attrs["dt"])  # records every second step
    lam_t, lam_m, lam_se = (ds[k].values for k in ("lambda_theory", "lambda_measured", "lambda_se"))
    dims = ds["dim"].values
    show = [i for i in range(ds.sizes["setting"]) if dims[i] == 3 or ds["attention"].values[i] != "V=0"
            or ds["activation_name"].values[i] == "sin"]
    for n, i in enumerate(show[:12]):
        curve = ds["median_log_ratio"].values[i]
        t = dt * np.arange(curve.size)
        ok = np.isfinite(curve)
        color = f"C{n % 10}"
        ax[0, 0].plot(t[ok], curve[ok], color=color, lw=1.2, label=str(ds["label"].values[i]))
        ax[0, 0].plot(t[ok], lam_t[i] * t[ok], ":", color=color, lw=1.0)
    ax[0, 0].set_xlabel("depth t")
    ax[0, 0].set_ylabel(r"median $\log[(1 - x\cdot y)(t) / (1 - x\cdot y)(0)]$")
    ax[0, 0].set_title("(a) tight pairs: median paths (dotted: Λ t)", fontsize=10)
    ax[0, 0].legend(fontsize=6)

    lo, hi = min(lam_t.min(), lam_m.min()) - 0.3, max(lam_t.max(), lam_m.max()) + 0.3
    ax[0, 1].plot([lo, hi], [lo, hi], "k-", lw=0.8)
    for d in np.unique(dims):
        sel = dims == d
        ax[0, 1].errorbar(lam_t[sel], lam_m[sel], yerr=4 * lam_se[sel], fmt="o", ms=4, capsize=2, label=f"d = {d}")
    ax[0, 1].axhline(0, color="0.6", lw=0.6)
    ax[0, 1].axvline(0, color="0.6", lw=0.6)
    ax[0, 1].set_xlabel("theory Λ")
    ax[0, 1].set_ylabel("2 med s(dt) − med s(2dt) (± 4 SE)")
    ax[0, 1].set_title("(b) almost-sure rate of log(1 − x·y)", fontsize=10)
    ax[0, 1].legend(fontsize=7)

    dd = np.linspace(2, 40, 400)
    for n, a in enumerate(ds["activation"].values):
        a = str(a)
        k, kp, _ = kappas(a)
        ax[0, 2].plot(dd, (dd - 3) * kp - (dd - 1) * k, color=f"C{n}", lw=1.2, label=a)
        c = float(ds["crossing_dimension"].sel(activation=a))
        if np.isfinite(c):
            ax[0, 2].plot([c], [0], "x", color=f"C{n}", ms=8)
        sel = (ds["activation_name"].values == a) & (ds["attention"].values == "V=0") & (ds["sigma"].values == 1.0)
        if sel.any():
            ax[0, 2].errorbar(dims[sel], lam_m[sel], yerr=4 * lam_se[sel], fmt="o", color=f"C{n}", ms=4, capsize=2)
    ax[0, 2].axhline(0, color="k", lw=0.8)
    ax[0, 2].set_xlabel("dimension d")
    ax[0, 2].set_ylabel(r"$\Lambda_{noise}/\sigma^2$")
    ax[0, 2].set_title("(c) noise exponent vs d (x: crossing, dots: measured)", fontsize=10)
    ax[0, 2].legend(fontsize=7)

    c_t, c_m, c_se = (ds[k].values for k in ("mean_rate_theory", "mean_rate_measured", "mean_rate_se"))
    lo, hi = min(c_t.min(), -c_t.max()) - 0.3, max(c_t.max(), c_m.max()) + 0.3
    ax[1, 0].plot([lo, hi], [lo, hi], "k-", lw=0.8, label="E u ∝ exp(+c t) (Itô)")
    ax[1, 0].plot([lo, hi], [-lo, -hi], "r--", lw=0.8, label="decay at rate c (rejected, see docs/mathematics.md)")
    ax[1, 0].errorbar(c_t, c_m, yerr=4 * c_se, fmt="o", ms=4, capsize=2, color="C0", label="measured ± 4 SE")
    ax[1, 0].set_xlabel("theory c")
    ax[1, 0].set_ylabel(r"measured slope of $\log E(1 - x\cdot y)$")
    ax[1, 0].set_title("(d) the mean of 1 − x·y", fontsize=10)
    ax[1, 0].legend(fontsize=7)

    for j in range(ds.sizes["projective"]):
        curve = ds["projective_median_log"].values[j]
        t = float(ds.attrs["projective_dt"]) * np.arange(curve.size)
        ok = np.isfinite(curve)
        ax[1, 1].plot(t[ok], curve[ok], lw=1.2, label=str(ds["projective_label"].values[j]))
    ax[1, 1].set_xlabel("depth t")
    ax[1, 1].set_ylabel(r"median $\log(1 - (x\cdot y)^2)$")
    ax[1, 1].set_title("(e) projective synchronization, uniform pairs, d = 3", fontsize=10)
    ax[1, 1].legend(fontsize=7)

    labels = [str(v) for v in ds["projective_label"].values]
    anti, coin, und = (ds[k].values.astype(float) for k in ("projective_antipodal", "projective_coincident",
                                                           "projective_undecided"))
    total = anti + coin + und
    pos = np.arange(len(labels))
    ax[1, 2].bar(pos, coin / total, color="C0", label="coincident")
    ax[1, 2].bar(pos, anti / total, bottom=coin / total, color="C3", label="antipodal")
    ax[1, 2].bar(pos, und / total, bottom=(coin + anti) / total, color="0.7", label="undecided")
    ax[1, 2].axhline(0.5, color="k", ls=":", lw=0.8)
    ax[1, 2].set_xticks(pos, labels, rotation=30, ha="right", fontsize=7)
    ax[1, 2].set_ylabel("fraction of pairs")
    ax[1, 2].set_title(f"(f) fates at T = {ds.attrs['projective_t_end']:g}", fontsize=10)
    ax[1, 2].legend(fontsize=7)
    plot_panels(ds, *ax[2])
    deep_density.plot_panels(ds, *ax[3])
    for a, tag in zip(ax[3], "jkl", strict=True):
        a.set_title(f"({tag}) {a.get_title()}", fontsize=10)
    fig.suptitle(f"{ds.attrs['title']}: (a)–(f) two tokens, MLPNoise width {ds.attrs['width']}, "
                 f"dt {ds.attrs['dt']:g} and 2 dt, "
                 f"{ds.attrs['realizations']} realizations per setting\n(g)–(i) density solver (lmax "
                 f"{ds.attrs['density_lmax']}) beside {ds.attrs['density_draws']} draws of "
                 f"{ds.attrs['density_n_tokens']} tokens on one path, {ds.attrs['density_activation']}, sigma "
                 f"{ds.attrs['density_sigma']:g}, V = 0\n(j)–(l) to depth {ds.attrs['deep_t_end']:g} on one path: "
                 f"the density on Lagrangian nodes (hand-over at t = {ds.attrs['deep_handover_time']:g}) beside "
                 f"{ds.attrs['deep_draws']} draws of {ds.attrs['deep_n_tokens']} tokens, tanh, sigma 1, V = 0")
    fig.savefig(path, dpi=120)
