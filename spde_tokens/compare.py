"""Density ↔ particles cross-validation: one noise path seen by both engines, compared record by record.

A density run (``solve_density``) and a particle run (``simulate_particles``) driven by the same ``NoisePath`` should
agree pathwise: the empirical measure μ_N of the tokens approaches the density ρ_t as N grows, with the MMD
(docs/mathematics.md, 'Diagnostics') falling like N^{-1/2} until it meets the discretization floor. For N i.i.d.
samples of ρ,

    E MMD²(μ_N, ρ) = (1/N) (k(x, x) − ∫∫ k dρ dρ) = (1/N) (e^{s} − Σ_l λ_l P_l(ρ)),     k(x, y) = exp(s x·y),

the *sampling floor* against which the measured MMD is judged (tokens of an interacting system are not i.i.d., but
their fluctuations are of the same order, O(N^{-1/2})). The verdict: the runs agree when MMD ≤ VERDICT_BAND × floor
at every common time. For i.i.d. samples N·MMD² tends to a Gaussian quadratic form Σ_k w_k Z_k² with Σ_k w_k =
N·floor², and for thresholds t ≥ 1.54 the probability P(Σ w_k Z_k² ≥ t Σ w_k) is largest with a single term
(Székely and Bakirov, 2003, "Extremal probabilities for Gaussian quadratic forms"), so MMD > 3 × floor happens with
probability at most P(Z² > 9) = 0.27 % when the engines agree up to sampling.

Runs are compared only when they are the same realization: the same noise (kind and parameters), seed, base step of
the noise path, truncation of an infinite-width MLP field, dim, attention model and initial condition (:func:`compare`
refuses others with a ValueError naming the attribute).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from numpy.typing import ArrayLike

from spde_tokens import diagnostics as diag
from spde_tokens.grids import Grid, ZonalGrid, grid_from_attrs
from spde_tokens.records import utc_stamp

#: relative tolerance for two record times to be the same time
TIME_RTOL = 1e-9
#: attributes that must agree between the two runs: the noise, the attention model and the initial condition
#: (every ``noise_<kind>_<parameter>`` attribute too; the path's seed, base step and truncation are checked apart)
MATCHED_ATTRS = ("noise", "beta", "normalization", "initial_condition")
#: the runs agree when MMD ≤ VERDICT_BAND × the sampling floor at every common time (see the module docstring)
VERDICT_BAND = 3.0


def sampling_floor(grid: Grid, coeffs: np.ndarray, n_tokens: int, scale: float = diag.MMD_SCALE) -> float:
    """sqrt(E MMD²) between ρ and the empirical measure of ``n_tokens`` i.i.d. samples of it.

    E MMD² = (1/N) (k_L(x, x) − Σ_l λ_l P_l(ρ)) with λ_l the Funk–Hecke weights of exp(scale x·y) and
    k_L(x, x) = Σ_{l ≤ L} λ_l n_l / area (n_l harmonics of degree l: 2l + 1 on S^2, 1 or 2 on S^1), which is
    e^{scale} up to the truncation at the grid's degree L, the same truncation as :func:`diagnostics.mmd`.

    On a ZonalGrid the MMD is that of the tokens' zonal projection (coefficients (1/N) Σ_i Y_l(x_i·e_d), one per
    degree, not the N(d, l) harmonics of degree l of S^{d−1}), and the trace is E_ρ Σ_l μ_l Y_l(s)² =
    ∫ ρ(s) Σ_l μ_l Y_l(s)² dσ (:meth:`ZonalGrid.diagonal_integral`), with μ_l the normalized weights: below e^{scale},
    which would count every harmonic.
    (By Jensen the mean MMD itself is slightly below this root mean square.)
    """
    w = grid.zonal_weights(scale)
    lam = w.value * np.exp(w.log_scale)
    if isinstance(grid, ZonalGrid):
        # the tokens' coefficients are those of their zonal projection, (1/N) Σ_i Y_l(s_i): one harmonic per degree,
        # so E (c_l − ρ_l)² = (∫ ρ Y_l² dσ − ρ_l²)/N and the trace is ∫ ρ Σ_l μ_l Y_l² dσ, not Σ_l μ_l N(d, l)
        trace = grid.diagonal_integral(grid.synthesis(coeffs), lam)
    else:
        n_per_degree = np.bincount(grid.degrees, weights=grid.order_weight, minlength=grid.degree_max + 1)
        trace = float(lam @ n_per_degree) / grid.area
    return float(np.sqrt(max(trace - lam @ grid.power_spectrum(coeffs), 0.0) / n_tokens))


def _attr_text(value: object) -> str:
    if isinstance(value, np.ndarray):
        return repr(value.tolist())
    if isinstance(value, (np.integer, np.floating)):
        return repr(value.item())
    return repr(value)


def _differ(name: str, a: object, b: object, hint: str) -> ValueError:
    return ValueError(f"{name}: the density run has {name} = {_attr_text(a)} but the particle run has {name} = "
                      f"{_attr_text(b)}; {hint}")


def _check_runs(dens: xr.Dataset, parts: xr.Dataset) -> None:
    """ValueError naming the first attribute that makes the two runs different realizations or models."""
    if not isinstance(dens, xr.Dataset) or "density" not in dens:
        raise ValueError("dens must be a density run Dataset (solve_density or open_run) with a 'density' variable")
    if not isinstance(parts, xr.Dataset) or "positions" not in parts:
        raise ValueError("parts must be a particle run Dataset (simulate_particles or open_run) with 'positions'")
    dim_d = int(dens.attrs.get("model_dim", dens.sizes.get("component", -1)))
    dim_p = int(parts.sizes["component"])
    if dim_d != dim_p or int(parts.attrs.get("model_dim", dim_p)) != dim_p:
        raise ValueError(f"dim: the density run has dim {dim_d} but the particle run has dim {dim_p}")
    noise_keys = sorted(k for k in {*dens.attrs, *parts.attrs} if k.startswith("noise_"))
    for name in (*MATCHED_ATTRS, *noise_keys):
        a, b = dens.attrs.get(name), parts.attrs.get(name)
        if name == "initial_condition" and (a is None or b is None):
            continue  # only runs made from a configuration record it
        if a is None or b is None:
            raise ValueError(f"{name}: attribute missing from the {'density' if a is None else 'particle'} run")
        if _attr_text(a) != _attr_text(b):
            raise _differ(name, a, b, "compare runs of the same realization")
    for name in ("Q", "K", "V"):
        if name in dens and name in parts and not np.array_equal(dens[name].values, parts[name].values):
            raise ValueError(f"{name}: the runs have different attention matrices {name}; compare runs of one model")
    if "path_dt" not in dens.attrs:  # no noise path: the density does not depend on a seed
        return
    hint = "they are different noise paths; drive both runs with one NoisePath (or one configuration)"
    for name in ("seed", "path_dt"):
        if name not in parts.attrs:
            raise ValueError(f"{name}: attribute missing from the particle run (the density run has a noise path)")
    if _attr_text(dens.attrs["seed"]) != _attr_text(parts.attrs["seed"]):
        raise _differ("seed", dens.attrs["seed"], parts.attrs["seed"], hint)
    # the Brownian increments are drawn per step of the base path: the same seed with another base step is
    # another realization (a coarsened path keeps its base step, dt / coarsening)
    base_d = float(dens.attrs["path_dt"]) / float(dens.attrs.get("path_coarsening", 1))
    base_p = float(parts.attrs["path_dt"]) / float(parts.attrs.get("path_coarsening", 1))
    if abs(base_d - base_p) > 1e-12 * max(base_d, base_p):
        raise ValueError(f"path_dt: the runs' noise paths have base steps path_dt/path_coarsening = {base_d:g} "
                         f"(density) and {base_p:g} (particles); {hint}")
    # the infinite-width MLP field is drawn degree by degree up to path_lmax: another truncation is another field
    if dens.attrs.get("noise_mlp_width") == "none":
        a, b = dens.attrs.get("path_lmax"), parts.attrs.get("path_lmax")
        if _attr_text(a) != _attr_text(b):
            raise _differ("path_lmax", a, b, hint)


def verdict(mmd: ArrayLike, floor: ArrayLike, times: ArrayLike, band: float = VERDICT_BAND) -> tuple[str, float]:
    """The verdict on a comparison and the largest ratio MMD / sampling floor over the common times.

    "agree up to sampling: …" when MMD ≤ ``band`` × floor at every time (the engines agree up to the sampling of
    N tokens), "differ beyond sampling: …" otherwise; the text states the largest ratio and its time.
    """
    mmd, floor, times = (np.asarray(a, dtype=float) for a in (mmd, floor, times))
    ratio = np.divide(mmd, floor, out=np.where(mmd > 0, np.inf, 0.0), where=floor > 0)
    worst = int(np.argmax(ratio))
    at = f"{ratio[worst]:.3g} at t = {float(times[worst]):g}"
    if ratio[worst] <= band:
        return f"agree up to sampling: MMD <= {band:g} x sampling floor at every time (largest ratio {at})", \
            float(ratio[worst])
    return f"differ beyond sampling: MMD/sampling floor = {at}, above the band {band:g}", float(ratio[worst])


def _source(ds: xr.Dataset, what: str) -> str:
    source = ds.encoding.get("source")
    return repr(str(source)) if source else f"an in-memory {what} run"


def common_times(t_a: np.ndarray, t_b: np.ndarray, rtol: float = TIME_RTOL) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j) with t_a[i] = t_b[j] to ``rtol`` relative (the nearest t_b of each t_a)."""
    t_a, t_b = np.asarray(t_a, dtype=float), np.asarray(t_b, dtype=float)
    if t_b.size == 0:
        return np.empty(0, int), np.empty(0, int)
    order = np.argsort(t_b)
    sorted_b = t_b[order]
    pos = np.searchsorted(sorted_b, t_a)
    lo, hi = np.clip(pos - 1, 0, t_b.size - 1), np.clip(pos, 0, t_b.size - 1)
    nearest = order[np.where(np.abs(sorted_b[lo] - t_a) <= np.abs(sorted_b[hi] - t_a), lo, hi)]
    ok = np.abs(t_b[nearest] - t_a) <= rtol * np.maximum(np.abs(t_a), np.abs(t_b[nearest]))
    return np.flatnonzero(ok), nearest[ok]


def _variables(wasserstein: bool, scale: float) -> dict:
    out = {
        "mmd": {"long_name": f"maximum mean discrepancy between tokens and density, kernel exp({scale:g} x.y)",
                "units": "1"},
        "mmd_sampling_floor": {"long_name": "root mean square MMD between the density and N i.i.d. samples of it, "
                                            "sqrt((exp(s) - sum_l lambda_l P_l(rho))/N) (zonal grid: exp(s) "
                                            "becomes int rho sum_l mu_l Y_l^2 dsigma)", "units": "1"},
        "energy_density": {"long_name": "interaction energy E_beta of the density", "units": "1"},
        "energy_particles": {"long_name": "interaction energy E_beta of the empirical measure (with the i = j "
                                          "terms)", "units": "1"},
        "dispersion_density": {"long_name": "dispersion 1 - |m|^2 of the density", "units": "1"},
        "dispersion_particles": {"long_name": "dispersion 1 - |m|^2 of the empirical measure", "units": "1"},
        "dispersion_particles_unbiased": {"long_name": "unbiased dispersion N/(N-1) (1 - |m|^2) of the tokens",
                                          "units": "1"},
    }
    if wasserstein:
        out["wasserstein2"] = {"long_name": "Wasserstein-2 distance (geodesic ground cost) between tokens and "
                                            "density", "units": "radian"}
    return out


def compare(dens: xr.Dataset, parts: xr.Dataset, scale: float = diag.MMD_SCALE,
            wasserstein: bool = False) -> xr.Dataset:
    """Compare a density run and a particle run of the same realization at their common record times.

    At each common time t (equal to 1e-9 relative), with ρ_t analysed on the grid of the density run and μ_N the
    empirical measure of the N tokens (coefficients (1/N) Σ_i conj(Y_lm(x_i))):

    * ``mmd`` = MMD(μ_N, ρ_t), MMD² = Σ_l λ_l P_l(μ_N − ρ_t) for the kernel exp(scale x·y) (docs/mathematics.md,
      'Diagnostics');
    * ``mmd_sampling_floor`` = sqrt((e^{scale} − Σ_l λ_l P_l(ρ_t)) / N), the root mean square MMD of N i.i.d.
      samples of ρ_t: an MMD near it means the engines agree up to sampling, one far above it a discrepancy;
    * ``energy_density``, ``energy_particles``, ``dispersion_density``, ``dispersion_particles`` (the runs' own
      records) and ``dispersion_particles_unbiased`` = N/(N − 1) (1 − |m̂|²), whose mean over i.i.d. tokens is the
      density's 1 − |m|²;
    * ``wasserstein2`` (if ``wasserstein``): :func:`diagnostics.wasserstein2` on at most 2000 points, with its
      discretization floor of about 0.04 rad on S^2.

    Records of the Lagrangian engine (``engine`` = "lagrangian") are compared through the nodes' measure Σ w_k δ_{y_k}:
    its projection onto the grid's degrees for the MMD (exact for the kernel up to its weights beyond lmax) and the
    nodes themselves for W2 (:func:`diagnostics.wasserstein2_nodes`), not through the smoothed ``density``.

    Parameters
    ----------
    dens : density run (``solve_density`` or ``open_run``); its attributes identify the grid.
    parts : particle run (``simulate_particles`` or ``open_run``) on the same S^{d−1}.
    scale : scale s > 0 of the MMD kernel exp(s x·y).
    wasserstein : also compute the Wasserstein-2 distance (about 1 s per record).

    Returns
    -------
    xarray.Dataset on the common ``time`` with the variables above, CF attributes (``history`` names the two
    inputs: their files when they were read by ``open_run``), the attributes ``seed``, ``noise``, the grid's,
    ``n_tokens``, ``mmd_scale``, the inputs' provenance (``initial_condition``, ``particles_seed``,
    ``density_configuration``, ``particles_configuration``, those present) and the verdict: ``verdict`` (text,
    "agree: …" or "differ: …", see :func:`verdict`), ``verdict_band`` and ``mmd_floor_ratio_max``.

    Raises
    ------
    ValueError naming the attribute when the runs are not one realization of one model: different dim, ``noise``
    (or any ``noise_*`` parameter), ``beta``, ``normalization``, matrices ``Q``, ``K``, ``V``,
    ``initial_condition``, ``seed``, base step of the noise path (``path_dt``), truncation ``path_lmax`` of an
    infinite-width MLP field; no common record time; a bad ``scale``.
    """
    _check_runs(dens, parts)
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a positive number, got {scale!r}") from None
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    grid = grid_from_attrs(dens.attrs)
    if grid.dim != parts.sizes["component"]:
        raise ValueError(f"dim: the density's grid is for dim {grid.dim} but the particle run has dim "
                         f"{parts.sizes['component']}")
    i_dens, i_parts = common_times(dens["time"].values, parts["time"].values)
    if i_dens.size == 0:
        raise ValueError(f"time: the runs have no record time in common (density {dens.sizes['time']} records "
                         f"over [{float(dens.time.min()):g}, {float(dens.time.max()):g}], particles "
                         f"{parts.sizes['time']} over [{float(parts.time.min()):g}, {float(parts.time.max()):g}])")
    n = int(parts.sizes["token"])
    rows: dict[str, list[float]] = {name: [] for name in _variables(wasserstein, scale)}
    for i, j in zip(i_dens, i_parts, strict=True):
        nodes = "engine" in dens and str(dens["engine"].values[i]) == "lagrangian"
        if nodes:  # the nodes' measure itself, not the smoothed field drawn from it
            x_nodes, w_nodes = np.asarray(dens["nodes"].values[i], dtype=float), np.asarray(dens["weights"].values)
            coeffs = grid.empirical_coefficients(x_nodes, w_nodes)
        else:
            coeffs = grid.analysis(np.asarray(dens["density"].isel(time=i).values, dtype=float))
        tokens = np.asarray(parts["positions"].isel(time=j).values, dtype=float)
        m = tokens.mean(axis=0)
        rows["mmd"].append(diag.mmd(grid, grid.empirical_coefficients(tokens), coeffs, scale))
        rows["mmd_sampling_floor"].append(sampling_floor(grid, coeffs, n, scale))
        rows["energy_density"].append(float(dens["energy"].isel(time=i)))
        rows["energy_particles"].append(float(parts["energy"].isel(time=j)))
        rows["dispersion_density"].append(float(dens["dispersion"].isel(time=i)))
        rows["dispersion_particles"].append(float(parts["dispersion"].isel(time=j)))
        rows["dispersion_particles_unbiased"].append(n / (n - 1) * (1.0 - m @ m) if n > 1 else np.nan)
        if wasserstein:
            rows["wasserstein2"].append(diag.wasserstein2_nodes(tokens, x_nodes, w_nodes) if nodes else
                                        diag.wasserstein2(tokens, grid, coeffs))

    from spde_tokens._version import __version__

    times = dens["time"].values[i_dens]
    text, worst = verdict(rows["mmd"], rows["mmd_sampling_floor"], times)
    attrs = {"Conventions": "CF-1.8", "title": "spde_tokens cross-validation", "source": f"spde_tokens {__version__}",
             "history": f"{utc_stamp()} compare() of the density run {_source(dens, 'density')} and the particle "
                        f"run {_source(parts, 'particle')} by spde_tokens {__version__}",
             "seed": dens.attrs.get("seed", "none"), "noise": dens.attrs["noise"], **grid.attrs(), "n_tokens": n,
             "mmd_scale": scale, "model_dim": grid.dim, "verdict": text, "verdict_band": VERDICT_BAND,
             "mmd_floor_ratio_max": worst}
    for key in ("beta", "normalization", "dt", "t_end", "initial_condition"):
        if key in dens.attrs:
            attrs[key] = dens.attrs[key]
    if "particles_seed" in parts.attrs:
        attrs["particles_seed"] = parts.attrs["particles_seed"]
    for what, run in (("density", dens), ("particles", parts)):
        if "configuration" in run.attrs:
            attrs[f"{what}_configuration"] = run.attrs["configuration"]
    # depth is dimensionless: units "1" and no axis "T" (CF reserves it for time units)
    time = xr.Variable("time", times, {"units": "1", "long_name": "depth (dimensionless time)"})
    data = {name: xr.Variable("time", np.asarray(rows[name], dtype=float), var_attrs)
            for name, var_attrs in _variables(wasserstein, scale).items()}
    return xr.Dataset(data, coords={"time": time}, attrs=attrs)
