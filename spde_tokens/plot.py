"""Figures and animations of run Datasets: density maps, tokens, diagnostics, comparisons, ensembles.

The Datasets are those of docs/guide.md, 'File format'.

Every function reads a Dataset as the runs build it (or as ``open_run`` reads it back), draws a
``matplotlib.figure.Figure`` on the Agg canvas (no display and no pyplot state, so nothing stays open) and saves it
when ``path`` is given (150 dpi; the format follows the extension, PNG for ``.png``). Matplotlib is imported inside
the functions: importing ``spde_tokens`` does not import it.

Examples
--------
>>> import spde_tokens as st
>>> from spde_tokens.plot import plot_run
>>> fig = plot_run(st.open_run("run.nc"), "run.png")        # doctest: +SKIP
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import xarray as xr

from spde_tokens.density import TAIL_WARNING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import QuadMesh
    from matplotlib.figure import Figure, FigureBase
    from matplotlib.lines import Line2D

#: resolution of saved raster figures
DPI = 150
TIME_LABEL = "depth t (dimensionless)"
DENSITY_LABEL = "density (per unit area)"
DENSITY_VARS = ("density", "energy", "dispersion", "power_spectrum", "spectral_tail")
PARTICLE_VARS = ("positions", "dispersion")  # no energy at beta = ∞ (hardmax runs)
COMPARISON_VARS = ("mmd", "energy_density", "energy_particles", "dispersion_density", "dispersion_particles")
#: how a title names a noise kind (otherwise the kind itself, underscores as spaces)
NOISE_NAMES = {"mlp": "MLP", "quadratic_form": "quadratic-form"}
#: how a title writes a noise model's amplitudes
NOISE_SYMBOLS = {"sigma": "σ", "gamma": "γ", "alpha": "α", "nu": "ν"}
#: maps (or token panels) per row
MAP_COLUMNS = 4
#: clusters of a Lagrangian record lighter than this are not labelled
CLUSTER_MASS = 0.05


# ---- shared pieces ------------------------------------------------------------------------------------------------
def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, path: str | os.PathLike[str] | None) -> Figure:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=DPI)
    return fig


def _require(ds: object, names: Sequence[str], what: str) -> None:
    """ValueError naming the missing variables (and the empty time axis) of a Dataset given to ``what``."""
    if not isinstance(ds, xr.Dataset):
        raise ValueError(f"{what} needs an xarray.Dataset, got {type(ds).__name__}")
    missing = [name for name in names if name not in ds.variables]
    if missing:
        raise ValueError(f"{what}: the Dataset lacks the variable(s) {', '.join(missing)} "
                         f"(it needs {', '.join(names)})")
    if ds.sizes.get("time", 0) == 0:
        raise ValueError(f"{what}: the Dataset has no records (no 'time' dimension or an empty one)")


def _record_indices(n: int, times: int) -> np.ndarray:
    """`times` evenly spaced record indices from the first to the last (fewer when there are fewer records)."""
    if isinstance(times, bool) or not isinstance(times, (int, np.integer)) or times < 1:
        raise ValueError(f"times must be a whole number ≥ 1, got {times!r}")
    return np.unique(np.round(np.linspace(0, n - 1, min(int(times), n))).astype(int))


def _number(value: Any) -> str:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return f"{float(value):g}"
    return str(value)


def _model_text(kind: str, parameters: dict[str, Any]) -> str:
    """One noise model in words, e.g. ``MLP noise σ = 0.25, tanh, width 64``."""
    words = []
    for name, value in parameters.items():
        if name == "activation":
            words.append(str(value))
        elif name == "width":
            words.append("infinite width" if value is None or str(value) == "none" else f"width {_number(value)}")
        else:
            words.append(f"{NOISE_SYMBOLS.get(name, name)} = {_number(value)}")
    return " ".join([f"{NOISE_NAMES.get(kind, kind.replace('_', ' '))} noise", ", ".join(words)]).strip()


def _models_from_attrs(attrs: dict[Any, Any]) -> dict[str, dict[str, Any]]:
    """kind → parameters, from the ``noise_<kind>_<parameter>`` attributes that ``NoiseModel.attrs()`` writes."""
    from spde_tokens.noise import NOISE_MODELS

    models: dict[str, dict[str, Any]] = {}
    for key, value in attrs.items():
        if not str(key).startswith("noise_"):
            continue
        rest = str(key)[len("noise_"):]
        kind = max((k for k in NOISE_MODELS if rest.startswith(k + "_")), key=len, default=None)
        if kind is None:  # a kind this version does not know: its parameter names have no underscore
            kind, _, name = rest.rpartition("_")
        else:
            name = rest[len(kind) + 1:]
        if kind and name:
            models.setdefault(kind, {})[name] = value
    return models


def _models_from_repr(text: str) -> dict[str, dict[str, Any]] | None:
    """kind → parameters, read from the ``noise`` attribute (the models' repr, ``BiasNoise(gamma=0.3) + …``), or
    None when it does not read as one."""
    import ast

    from spde_tokens.noise import NOISE_MODELS

    kinds = {cls.__name__: kind for kind, cls in NOISE_MODELS.items()}
    models: dict[str, dict[str, Any]] = {}
    for term in text.split(" + "):
        try:
            call = ast.parse(term.strip(), mode="eval").body
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in kinds
                    and not call.args):
                return None
            models[kinds[call.func.id]] = {str(k.arg): ast.literal_eval(k.value) for k in call.keywords}
        except (SyntaxError, ValueError):
            return None
    return models


def noise_text(attrs: dict[Any, Any]) -> str:
    """The noise of a run in words, for a figure's title: ``"MLP noise σ = 0.25, tanh, width 64 + bias noise
    γ = 0.3"``, or ``"no noise"``.

    Parameters
    ----------
    attrs : the global attributes of a run Dataset. The models are read from the ``noise_<kind>_<parameter>``
        attributes (``NoiseModel.attrs()``); without them, from the ``noise`` attribute when it reads as the models'
        repr, otherwise that attribute is shown as it is (``"noise unknown"`` without one).
    """
    models = _models_from_attrs(attrs)
    noise = attrs.get("noise")
    if not models:
        if noise is None:
            return "noise unknown"
        if str(noise) == "none":
            return "no noise"
        parsed = _models_from_repr(str(noise))
        if not parsed:
            return f"noise {noise}"
        models = parsed
    return " + ".join(_model_text(kind, parameters) for kind, parameters in models.items())


def _title(attrs: dict[Any, Any], head: str) -> str:
    parts = [head]
    if attrs.get("grid") == "sphere":
        parts.append(f"$S^2$, $l_{{max}}$ = {attrs.get('grid_lmax')} ({attrs.get('grid_nlat')}×"
                     f"{attrs.get('grid_nlon')} nodes)")
    elif attrs.get("grid") == "circle":
        parts.append(f"$S^1$, n = {attrs.get('grid_n')} ({attrs.get('grid_nodes')} nodes)")
    if "n_tokens" in attrs:
        parts.append(f"N = {int(attrs['n_tokens'])} tokens")
    if "beta" in attrs:
        parts.append(f"β = {float(attrs['beta']):g}" + (f" ({attrs['normalization']})" if "normalization" in attrs
                                                         else ""))
    parts.append(noise_text(attrs))
    parts.append(f"seed {attrs.get('seed', 'none')}")
    return textwrap.fill(" · ".join(parts), 130)


def _line(ax: Axes, t: npt.ArrayLike, y: npt.ArrayLike, **kw: Any) -> list[Line2D]:
    """A time series, with markers when the records are few."""
    t = np.asarray(t, dtype=float)
    return ax.plot(t, y, marker="o" if t.size <= 30 else None, ms=3, **kw)


def _log_if_decays(ax: Axes, *series: npt.ArrayLike) -> None:
    """Log y-axis when the positive values span more than a factor 10 (zeros and negatives are masked)."""
    values = np.concatenate([np.ravel(np.asarray(s, dtype=float)) for s in series])
    positive = values[np.isfinite(values) & (values > 0)]
    if positive.size >= 2 and positive.max() > 10 * positive.min():
        ax.set_yscale("log", nonpositive="mask")


def _time_axis(ax: Axes, ylabel: str, title: str | None = None) -> None:
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)


def _energy_dispersion(ax_e: Axes | None, ax_d: Axes, ds: xr.Dataset, **kw: Any) -> None:
    """E_β(t) on ``ax_e`` (None: a hardmax run at β = ∞, which records no energy) and 1 − |m|²(t) on ``ax_d``."""
    t = ds["time"].values
    if ax_e is not None:
        _line(ax_e, t, ds["energy"].values, **kw)
        _time_axis(ax_e, r"$E_\beta$", "interaction energy")
    _line(ax_d, t, ds["dispersion"].values, **kw)
    _time_axis(ax_d, "1 − |m|²", "dispersion")


def _time_colors(n: int) -> np.ndarray:
    from matplotlib import colormaps

    return colormaps["viridis"](np.linspace(0.0, 0.9, n))


# ---- maps on S^2 --------------------------------------------------------------------------------------------------
def _map_axes(sub: FigureBase, n: int, columns: int = MAP_COLUMNS, dark: bool = False) -> list[Axes]:
    """n Mollweide axes in rows of ``columns`` (unused cells removed); ``dark``: light longitude labels."""
    ncols = min(n, columns)
    axes = sub.subplots(-(-n // ncols), ncols, squeeze=False, subplot_kw={"projection": "mollweide"}).ravel()
    for ax in axes[n:]:
        ax.remove()
    for ax in axes[:n]:
        ax.grid(True, lw=0.4, color="0.6", alpha=0.6)
        ax.set_xticks(np.radians([-120, -60, 0, 60, 120]))
        ax.set_yticks(np.radians([-60, -30, 0, 30, 60]))
        ax.tick_params(labelsize=6)
        ax.tick_params(axis="x", labelcolor="0.9" if dark else "0.3")
    return list(axes[:n])


class _SphereMesh:
    """Cell edges (radians, lon in [−180°, 180°)) of the lat/lon nodes of a density run, for ``pcolormesh``.

    Longitudes are shifted to [−180°, 180°) and sorted; the columns wrap once on each side so that the cells reach
    exactly ±180°. Latitude cells end at the poles.
    """

    def __init__(self, ds: xr.Dataset) -> None:
        lat, lon = ds["lat"].values.astype(float), (ds["lon"].values.astype(float) + 180.0) % 360.0 - 180.0
        self.lat_order, self.lon_order = np.argsort(lat), np.argsort(lon)
        lat, lon = lat[self.lat_order], lon[self.lon_order]
        ext = np.concatenate([[lon[-1] - 360.0], lon, [lon[0] + 360.0]])
        mid = 0.5 * (ext[1:] + ext[:-1])
        lon_edges = np.concatenate([[2 * ext[0] - mid[0]], mid, [2 * ext[-1] - mid[-1]]])
        lat_edges = np.concatenate([[-90.0], 0.5 * (lat[1:] + lat[:-1]), [90.0]])
        self.x, self.y = np.radians(np.clip(lon_edges, -180.0, 180.0)), np.radians(lat_edges)

    def field(self, values: np.ndarray) -> np.ndarray:
        """A (lat, lon) field (or a stack of them) reordered and wrapped to the cells."""
        f = np.asarray(values, dtype=float)[..., self.lat_order, :][..., self.lon_order]
        return np.concatenate([f[..., -1:], f, f[..., :1]], axis=-1)

    def draw(self, ax: Axes, field: np.ndarray, vmin: float, vmax: float) -> QuadMesh:
        return ax.pcolormesh(self.x, self.y, field, shading="flat", cmap="viridis", vmin=vmin, vmax=vmax,
                             rasterized=True)


def _density_maps(sub: FigureBase, ds: xr.Dataset, indices: np.ndarray, titles: list[str]) -> list[Axes]:
    """Mollweide maps of the density at ``indices`` with one colour scale and one colorbar."""
    mesh = _SphereMesh(ds)
    fields = mesh.field(ds["density"].transpose("time", "lat", "lon").values[indices])
    vmin, vmax = min(0.0, float(np.nanmin(fields))), float(np.nanmax(fields))
    axes = _map_axes(sub, len(indices), dark=True)
    for ax, field, title in zip(axes, fields, titles, strict=True):
        image = mesh.draw(ax, field, vmin, vmax)
        ax.set_title(title, fontsize=9)
    sub.colorbar(image, ax=axes, shrink=0.85, label=DENSITY_LABEL)
    return axes


def _lonlat(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (radians) of unit vectors (…, 3), the grid's convention (sin θ cos φ, …, cos θ)."""
    return np.arctan2(x[..., 1], x[..., 0]), np.arcsin(np.clip(x[..., 2], -1.0, 1.0))


def _lagrangian(ds: xr.Dataset, index: int) -> bool:
    """True when record ``index`` of a density run comes from the Lagrangian engine (nodes, not the grid)."""
    return "engine" in ds and str(ds["engine"].values[index]) == "lagrangian"


def _node_clusters(ds: xr.Dataset, index: int) -> list[tuple[np.ndarray, float]]:
    """The clusters (centre, mass ≥ 5%) of the nodes' measure at record ``index``, at most six."""
    from spde_tokens.diagnostics import clusters

    found = clusters(ds["nodes"].values[index], ds["weights"].values, min_mass=CLUSTER_MASS)
    return found[:6]


def _mark_clusters(ax: Axes, ds: xr.Dataset, index: int) -> None:
    """Circles at the clusters of the nodes' measure on a Mollweide map, labelled with their masses."""
    for centre, mass in _node_clusters(ds, index):
        lon, lat = _lonlat(centre)
        ax.plot(lon, lat, "o", mfc="none", mec="white", mew=1.2, ms=14)
        ax.annotate(f"{100 * mass:.0f}%", (lon, lat), xytext=(9, 7), textcoords="offset points", color="white",
                    fontsize=8, fontweight="bold")


def _mark_handover(ds: xr.Dataset, *axes: Axes) -> None:
    """A dotted vertical line at the hand-over to the Lagrangian engine on time axes."""
    t = ds.attrs.get("handover_time")
    if isinstance(t, (int, float, np.floating)):
        for ax in axes:
            ax.axvline(float(t), color="0.4", ls=":", lw=1, label=f"hand-over t = {float(t):g}")


def _theta_axis(ax: Axes) -> None:
    ax.set_xlim(0.0, 2 * np.pi)
    ax.set_xticks(np.linspace(0.0, 2 * np.pi, 5), ["0", "π/2", "π", "3π/2", "2π"])
    ax.set_xlabel("θ (rad)")
    ax.grid(alpha=0.3)


def _circle_curves(ds: xr.Dataset, indices: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """θ sorted and closed at θ_0 + 2π, and the densities of the records ``indices`` on it (S^1 runs)."""
    theta = ds["theta"].values.astype(float)
    order = np.argsort(theta)
    rho = ds["density"].transpose("time", "theta").values[np.atleast_1d(indices)][:, order]
    return np.append(theta[order], theta[order][0] + 2 * np.pi), np.concatenate([rho, rho[:, :1]], axis=1)


def _circle_density(ax: Axes, ds: xr.Dataset, index: int, **kw: Any) -> list[Line2D]:
    theta, rho = _circle_curves(ds, index)
    return ax.plot(theta, rho[0], **kw)


def _zonal_density(sub: FigureBase, ds: xr.Dataset, indices: np.ndarray) -> None:
    """Zonal runs (S^{d−1}): the law of the polar angle θ = arccos s over depth and angle (a map), and the law of s
    (``law_s``, the density of s = x·e_d) at the records ``indices``. The law, not the density per unit of σ, is
    drawn: in high d the density at the outermost nodes carries rounding seen through 1/√w_i, which the law weighs
    out (docs/guide.md, 'File format')."""
    ax_map, ax_law = sub.subplots(1, 2, width_ratios=[1.6, 1.0])
    s = ds["s"].values.astype(float)
    t = ds["time"].values.astype(float)
    law = ds["law_s"].transpose("time", "s").values.astype(float)
    # the law of θ: law_s(cos θ) sin θ
    angle = np.degrees(np.arccos(np.clip(s, -1.0, 1.0)))
    theta_law = law * np.sqrt((1.0 - s) * (1.0 + s))
    image = ax_map.pcolormesh(t, angle, np.clip(theta_law, 0.0, None).T, shading="nearest", cmap="magma")
    sub.colorbar(image, ax=ax_map, label="law of θ (per radian)")
    ax_map.set_ylim(180.0, 0.0)
    ax_map.set_ylabel("polar angle θ = arccos(x·e_d) (degrees)")
    ax_map.set_xlabel(TIME_LABEL)
    ax_map.set_title(f"depth–angle map on $S^{{{int(ds.attrs.get('grid_dim', ds.sizes['component'])) - 1}}}$",
                     fontsize=10)
    _mark_handover(ds, ax_map)
    for color, i in zip(_time_colors(len(indices)), indices, strict=True):
        ax_law.plot(s, law[i], color=color, label=f"t = {t[i]:.4g}")
    ax_law.set_xlabel("s = x·e_d")
    ax_law.set_ylabel("law of s (per unit s)")
    ax_law.set_xlim(-1.0, 1.0)
    ax_law.grid(alpha=0.3)
    ax_law.legend(fontsize=8)


# ---- density runs -------------------------------------------------------------------------------------------------
def plot_density(ds: xr.Dataset, path: str | os.PathLike[str] | None = None, times: int = 4) -> Figure:
    """The density at ``times`` evenly spaced records and its diagnostics (docs/mathematics.md, 'Diagnostics').

    Top: on S^2, Mollweide maps of ρ (per unit area, one colour scale and colorbar); on S^1, ρ against θ at those
    times on one axis. Records of the Lagrangian engine show the heat-smoothed projection of the nodes' measure, with
    its clusters (mass ≥ 5%) circled and labelled by their masses (S^1: the last record's, above their angles); the
    hand-over is a dotted line on the time axes. Bottom: E_β(t); 1 − |m|² (log scale when it spans more than a factor
    10); the power spectrum P_l at the first and last records (log y; the dotted line marks the tail degrees
    l ≥ ⌈0.9 l_max⌉); and ``spectral_tail`` (log) with the 1e-10 under-resolution alarm. Saved to ``path`` when given.
    """
    _require(ds, DENSITY_VARS, "plot_density")
    indices = _record_indices(ds.sizes["time"], times)
    t = ds["time"].values.astype(float)
    sphere = "lat" in ds["density"].dims
    rows = -(-len(indices) // MAP_COLUMNS) if sphere else 1
    fig = _new_figure(15.0, 3.4 + (2.2 * rows if sphere else 3.6))
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.2 * rows if sphere else 3.6, 3.4])  # type: ignore[misc]
    if "s" in ds["density"].dims:
        _zonal_density(top, ds, indices)
    elif sphere:
        titles = [f"t = {t[i]:.4g}" + (" (Lagrangian)" if _lagrangian(ds, i) else "") for i in indices]
        for ax, i in zip(_density_maps(top, ds, indices, titles), indices, strict=True):
            if _lagrangian(ds, i):
                _mark_clusters(ax, ds, i)
    else:
        ax = top.subplots()
        for color, i in zip(_time_colors(len(indices)), indices, strict=True):
            _circle_density(ax, ds, i, color=color, label=f"t = {t[i]:.4g}")
        ax.axhline(1 / (2 * np.pi), color="0.5", ls=":", lw=1, label="uniform 1/(2π)")
        if _lagrangian(ds, indices[-1]):  # the masses of the last record's clusters above their angles
            for centre, mass in _node_clusters(ds, indices[-1]):
                angle = np.arctan2(centre[1], centre[0]) % (2 * np.pi)
                ax.annotate(f"{100 * mass:.0f}%", (angle, 1.0), xycoords=("data", "axes fraction"),
                            xytext=(0, -12), textcoords="offset points", ha="center", fontsize=8)
        _theta_axis(ax)
        ax.set_ylabel("density ρ (per unit length)")
        ax.legend(fontsize=8, ncols=2)
    ax_e, ax_d, ax_p, ax_s = bottom.subplots(1, 4)
    _energy_dispersion(ax_e, ax_d, ds)
    _log_if_decays(ax_d, ds["dispersion"].values)
    _mark_handover(ds, ax_e, ax_d, ax_s)

    degree = ds["degree"].values.astype(float)
    spectra = ds["power_spectrum"].values[[0, -1]]
    for spectrum, i, style in zip(spectra, (0, -1), ("-", "--"), strict=True):
        ax_p.plot(degree, np.where(spectrum > 0, spectrum, np.nan), style, marker=".", ms=3, label=f"t = {t[i]:.4g}")
    ax_p.set_yscale("log", nonpositive="mask")
    positive = spectra[spectra > 0]
    if positive.size:
        ax_p.set_ylim(max(positive.min(), positive.max() * 1e-40) / 3, positive.max() * 3)
    ax_p.axvline(np.ceil(0.9 * degree.max()), color="0.5", ls=":", lw=1, label="tail degrees")
    ax_p.set_xlabel("wavenumber n" if "theta" in ds["density"].dims else "degree l")
    ax_p.set_ylabel("$P_n$" if "theta" in ds["density"].dims else "$P_l$")
    ax_p.set_title("power spectrum", fontsize=10)
    ax_p.grid(alpha=0.3)
    ax_p.legend(fontsize=8)

    tail = ds["spectral_tail"].values.astype(float)
    _line(ax_s, t, np.where(tail > 0, tail, np.nan), color="C2")
    ax_s.axhline(TAIL_WARNING, color="C3", ls="--", lw=1, label=f"alarm {TAIL_WARNING:g} (under-resolved above)")
    ax_s.set_yscale("log", nonpositive="mask")
    if not np.any(tail > 0):
        ax_s.text(0.5, 0.5, "spectral tail = 0 at every record", transform=ax_s.transAxes, ha="center", fontsize=8)
    _time_axis(ax_s, "spectral tail (share of power)", "spectral tail")
    ax_s.legend(fontsize=8)
    fig.suptitle(_title(ds.attrs, "density run"), fontsize=10)
    return _finish(fig, path)


# ---- particle runs ------------------------------------------------------------------------------------------------
def _grid_axes(sub: FigureBase, n: int, columns: int = MAP_COLUMNS) -> list[Axes]:
    ncols = min(n, columns)
    axes = sub.subplots(-(-n // ncols), ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.remove()
    return list(axes[:n])


def _nearest(t_from: np.ndarray, t: float) -> int:
    return int(np.argmin(np.abs(np.asarray(t_from, dtype=float) - t)))


def plot_particles(ds: xr.Dataset, path: str | os.PathLike[str] | None = None, times: int = 4,
                   density: xr.Dataset | None = None) -> Figure:
    """The tokens at ``times`` evenly spaced records, with E_β(t) and 1 − |m|²(t) below.

    d = 3: tokens on Mollweide maps (longitude, latitude of the positions), drawn over the density maps of
    ``density`` (a density run on S^2, nearest record) when given. d = 2: histograms of the token angles θ
    (per radian) at those times on one axis, with the density curves of ``density`` (on S^1) when given.
    d > 3: the tokens projected on the first two principal directions of the plotted records (the unit disc is
    the projection of the sphere). A given ``density`` also adds its energy and dispersion (dashed).
    """
    _require(ds, PARTICLE_VARS, "plot_particles")
    dim = int(ds.sizes["component"])
    if density is not None:
        _require(density, DENSITY_VARS, "plot_particles(density=)")
        density_dim = 3 if "lat" in density["density"].dims else 2
        if density_dim != dim:
            raise ValueError(f"density: the density run lives in dim {density_dim} but the tokens in dim {dim}")
    indices = _record_indices(ds.sizes["time"], times)
    t = ds["time"].values.astype(float)
    x = ds["positions"].transpose("time", "token", "component").values[indices]
    n_tok = x.shape[1]
    size = float(np.clip(3000.0 / n_tok, 0.3, 8.0))
    rows = -(-len(indices) // MAP_COLUMNS) if dim != 2 else 1
    row_height = {2: 3.6, 3: 2.2}.get(dim, 3.4)
    fig = _new_figure(15.0 if dim != 2 else 12.0, 3.4 + row_height * rows)
    top, bottom = fig.subfigures(2, 1, height_ratios=[row_height * rows, 3.4])  # type: ignore[misc]
    titles = [f"t = {t[i]:.4g}" for i in indices]
    if dim == 3:
        if density is not None:
            near = [_nearest(density["time"].values, t[i]) for i in indices]
            t_dens = density["time"].values.astype(float)[near]
            axes = _density_maps(top, density, np.array(near), titles)
            color = "w"
            titles = [f"{title}, {n_tok} tokens over the density" + ("" if np.isclose(td, t[i], rtol=1e-9) else
                      f" at t = {td:.4g}") for title, td, i in zip(titles, t_dens, indices, strict=True)]
        else:
            axes, color = _map_axes(top, len(indices)), "k"
            titles = [f"{title}, {n_tok} tokens" for title in titles]
        for ax, tokens in zip(axes, x, strict=True):
            lon, lat = _lonlat(tokens)
            ax.scatter(lon, lat, s=size, c=color, edgecolors="none", alpha=0.8, rasterized=True)
        for ax, title in zip(axes, titles, strict=True):
            ax.set_title(title, fontsize=9)
    elif dim == 2:
        ax = top.subplots()
        bins = np.linspace(0.0, 2 * np.pi, int(np.clip(n_tok // 20, 12, 72)) + 1)
        for color, tokens, i in zip(_time_colors(len(indices)), x, indices, strict=True):
            theta = np.mod(np.arctan2(tokens[:, 1], tokens[:, 0]), 2 * np.pi)
            ax.hist(theta, bins=bins, density=True, histtype="step", color=color, lw=1.5, label=f"t = {t[i]:.4g}")
            if density is not None:
                _circle_density(ax, density, _nearest(density["time"].values, t[i]), color=color, ls="--", lw=1)
        ax.axhline(1 / (2 * np.pi), color="0.5", ls=":", lw=1, label="uniform 1/(2π)")
        if _lagrangian(ds, indices[-1]):  # the masses of the last record's clusters above their angles
            for centre, mass in _node_clusters(ds, indices[-1]):
                angle = np.arctan2(centre[1], centre[0]) % (2 * np.pi)
                ax.annotate(f"{100 * mass:.0f}%", (angle, 1.0), xycoords=("data", "axes fraction"),
                            xytext=(0, -12), textcoords="offset points", ha="center", fontsize=8)
        _theta_axis(ax)
        ax.set_ylabel("tokens per radian (histogram)" + (", dashed: density" if density is not None else ""))
        ax.legend(fontsize=8, ncols=2)
        ax.set_title(f"token angles, {n_tok} tokens", fontsize=10)
    else:
        flat = x.reshape(-1, dim)
        values, vectors = np.linalg.eigh(np.cov(flat, rowvar=False, bias=True))
        order = np.argsort(values)[::-1][:2]
        share = values[order] / max(float(values.sum()), np.finfo(float).tiny)
        axes = _grid_axes(top, len(indices))
        circle = np.linspace(0.0, 2 * np.pi, 200)
        for ax, tokens, title in zip(axes, x, titles, strict=True):
            proj = tokens @ vectors[:, order]
            ax.plot(np.cos(circle), np.sin(circle), color="0.6", lw=0.8)
            ax.scatter(proj[:, 0], proj[:, 1], s=size, c="k", edgecolors="none", alpha=0.8, rasterized=True)
            ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal",
                   xlabel=f"principal coordinate 1 ({100 * share[0]:.0f}% of variance)",
                   ylabel=f"principal coordinate 2 ({100 * share[1]:.0f}%)")
            ax.set_title(f"{title}, {n_tok} tokens", fontsize=9)
            ax.grid(alpha=0.3)
    if "energy" in ds:
        ax_e, ax_d = bottom.subplots(1, 2)
    else:  # E_beta grows like e^beta/beta: a hardmax run (beta = ∞) records none
        ax_e, ax_d = None, bottom.subplots()
    _energy_dispersion(ax_e, ax_d, ds, color="C0", label=f"particles (N = {n_tok})")
    series = [ds["dispersion"].values]
    if density is not None:
        _energy_dispersion(ax_e, ax_d, density, color="C1", ls="--", label="density")
        series.append(density["dispersion"].values)
        for ax in (ax_e, ax_d):
            if ax is not None:
                ax.legend(fontsize=8)
    _log_if_decays(ax_d, *series)
    fig.suptitle(_title(ds.attrs, f"particle run on $S^{{{dim - 1}}}$"), fontsize=10)
    return _finish(fig, path)


# ---- comparisons and ensembles ------------------------------------------------------------------------------------
def plot_comparison(cmp: xr.Dataset, path: str | os.PathLike[str] | None = None) -> Figure:
    """A density run against a particle run (``compare``): MMD(t) on log y with the i.i.d. sampling floor (if
    present), and the energies and dispersions of both engines side by side (plus the unbiased token dispersion
    and the Wasserstein-2 distance when present)."""
    _require(cmp, COMPARISON_VARS, "plot_comparison")
    t = cmp["time"].values.astype(float)
    has_w2 = "wasserstein2" in cmp
    n = cmp.attrs.get("n_tokens")
    fig = _new_figure(15.0 if has_w2 else 13.0, 4.2)
    axes = fig.subplots(1, 4 if has_w2 else 3)
    ax_m, ax_e, ax_d = axes[:3]
    tokens = f"particles (N = {int(n)})" if n is not None else "particles"
    mmd = cmp["mmd"].values.astype(float)
    _line(ax_m, t, np.where(mmd > 0, mmd, np.nan), color="C0", label="MMD(tokens, density)")
    if "mmd_sampling_floor" in cmp:
        _line(ax_m, t, cmp["mmd_sampling_floor"].values, color="0.4", ls="--",
              label="sampling floor (N i.i.d. tokens)")
    ax_m.set_yscale("log", nonpositive="mask")
    scale = cmp.attrs.get("mmd_scale")
    _time_axis(ax_m, "MMD" + (f" (kernel exp({float(scale):g} x·y))" if scale is not None else ""),
               "maximum mean discrepancy")
    for ax, name, label, title in ((ax_e, "energy", r"$E_\beta$", "interaction energy"),
                                   (ax_d, "dispersion", "1 − |m|²", "dispersion")):
        _line(ax, t, cmp[f"{name}_density"].values, color="C1", label="density (SPDE)")
        _line(ax, t, cmp[f"{name}_particles"].values, color="C0", ls="--", label=tokens)
        _time_axis(ax, label, title)
    series = [cmp["dispersion_density"].values, cmp["dispersion_particles"].values]
    if "dispersion_particles_unbiased" in cmp:
        _line(ax_d, t, cmp["dispersion_particles_unbiased"].values, color="C0", ls=":", label="particles, N/(N−1)")
        series.append(cmp["dispersion_particles_unbiased"].values)
    _log_if_decays(ax_d, *series)
    if has_w2:
        _line(axes[3], t, cmp["wasserstein2"].values, color="C4")
        _time_axis(axes[3], "$W_2$ (rad)", "Wasserstein-2 distance")
    for ax in axes[:3]:
        ax.legend(fontsize=8)
    fig.suptitle(_title(cmp.attrs, "density vs particles"), fontsize=10)
    return _finish(fig, path)


def plot_ensemble(ens: xr.Dataset, path: str | os.PathLike[str] | None = None) -> Figure:
    """``energy`` and ``dispersion`` (those present) over the ``realization`` dimension against depth: the median
    with the 25–75% and 5–95% bands from 20 realizations on, else the median and every realization drawn alone
    (an empirical 5–95% band needs a realization beyond each edge, 0.05 R ≥ 1). The title names the ensemble's
    seed (attribute ``seed``)."""
    if not isinstance(ens, xr.Dataset) or "realization" not in ens.dims:
        raise ValueError("plot_ensemble needs an xarray.Dataset with a 'realization' dimension")
    names = [name for name in ("energy", "dispersion") if name in ens and "realization" in ens[name].dims]
    if not names:
        raise ValueError("plot_ensemble: the Dataset lacks the variable(s) energy, dispersion on (realization, time)")
    _require(ens, names, "plot_ensemble")
    t = ens["time"].values.astype(float)
    r = int(ens.sizes["realization"])
    bands = r >= 20
    fig = _new_figure(5.5 * len(names), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, name in zip(axes, names, strict=True):
        values = ens[name].transpose("realization", "time").values.astype(float)
        if bands:
            q05, q25, q75, q95 = np.nanquantile(values, [0.05, 0.25, 0.75, 0.95], axis=0)
            ax.fill_between(t, q05, q95, color="C0", alpha=0.2, lw=0, label="5–95%")
            ax.fill_between(t, q25, q75, color="C0", alpha=0.4, lw=0, label="25–75%")
        else:
            for i, row in enumerate(values):
                ax.plot(t, row, color="C0", alpha=0.45, lw=0.8,
                        label=f"each of the {r} realizations (too few for quantile bands)" if i == 0 else None)
        _line(ax, t, np.nanmedian(values, axis=0), color="C0" if bands else "C1", label="median")
        if name == "dispersion":
            _log_if_decays(ax, values)
        _time_axis(ax, r"$E_\beta$" if name == "energy" else "1 − |m|²",
                   f"{'interaction energy' if name == 'energy' else 'dispersion'} over {r} realizations")
        ax.legend(fontsize=8)
    fig.suptitle(_title(ens.attrs, f"ensemble of {r} realizations"), fontsize=10)
    return _finish(fig, path)


def plot_run(ds: xr.Dataset, path: str | os.PathLike[str] | None = None, times: int = 4) -> Figure:
    """The figure that fits the Dataset: a comparison (``mmd``), an ensemble (a ``realization`` dimension), else by
    ``attrs["engine"]`` or the variables a density run (``density``) or a particle run (``positions``)."""
    if not isinstance(ds, xr.Dataset):
        raise ValueError(f"plot_run needs an xarray.Dataset, got {type(ds).__name__}")
    if "mmd" in ds:
        return plot_comparison(ds, path)
    if "realization" in ds.dims:
        return plot_ensemble(ds, path)
    engine = ds.attrs.get("engine")
    if engine not in ("density", "particles"):
        engine = "density" if "density" in ds else "particles" if "positions" in ds else None
    if engine == "density":
        return plot_density(ds, path, times)
    if engine == "particles":
        return plot_particles(ds, path, times)
    raise ValueError("plot_run: the Dataset is none of a density run (variable density), a particle run "
                     "(positions), a comparison (mmd) or an ensemble (realization dimension)")


# ---- animation ----------------------------------------------------------------------------------------------------
def animate_density(ds: xr.Dataset, path: str | os.PathLike[str], fps: int = 10, *, max_frames: int = 200,
                    dpi: int = 100) -> str:
    """A GIF of the density over the records (at most ``max_frames``, evenly spaced), with a fixed colour scale
    (S^2: a Mollweide map and colorbar; S^1: ρ against θ with fixed limits); the title shows t. Returns the path."""
    _require(ds, ("density",), "animate_density")
    path = os.fspath(path)
    if not path.lower().endswith(".gif"):
        raise ValueError(f"path must end in .gif (an animated GIF is written), got {path!r}")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps < np.inf:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    from matplotlib.animation import PillowWriter

    indices = _record_indices(ds.sizes["time"], max_frames)
    t = ds["time"].values.astype(float)
    sphere = "lat" in ds["density"].dims
    fig = _new_figure(8.0, 5.0 if sphere else 4.5)
    if sphere:
        mesh = _SphereMesh(ds)
        fields = mesh.field(ds["density"].transpose("time", "lat", "lon").values[indices])
        (ax,) = _map_axes(fig, 1, dark=True)
        image = mesh.draw(ax, fields[0], min(0.0, float(np.nanmin(fields))), float(np.nanmax(fields)))
        fig.colorbar(image, ax=ax, shrink=0.8, label=DENSITY_LABEL)

        def update(k: int) -> None:
            image.set_array(fields[k].ravel())
    else:
        ax = fig.subplots()
        theta, rho = _circle_curves(ds, indices)
        (line,) = ax.plot(theta, rho[0], color="C0")
        ax.set_ylim(min(0.0, float(np.nanmin(rho))), 1.05 * float(np.nanmax(rho)))
        ax.axhline(1 / (2 * np.pi), color="0.5", ls=":", lw=1, label="uniform 1/(2π)")
        if _lagrangian(ds, indices[-1]):  # the masses of the last record's clusters above their angles
            for centre, mass in _node_clusters(ds, indices[-1]):
                angle = np.arctan2(centre[1], centre[0]) % (2 * np.pi)
                ax.annotate(f"{100 * mass:.0f}%", (angle, 1.0), xycoords=("data", "axes fraction"),
                            xytext=(0, -12), textcoords="offset points", ha="center", fontsize=8)
        _theta_axis(ax)
        ax.set_ylabel("density ρ (per unit length)")
        ax.legend(fontsize=8, loc="upper right")

        def update(k: int) -> None:
            line.set_ydata(rho[k])
    ax.set_title(f"t = {t[indices[0]]:.4g}")
    fig.suptitle(_title(ds.attrs, "density run"), fontsize=9)
    fig.canvas.draw()
    fig.set_layout_engine("none")  # freeze the layout: the frames do not jitter as the title changes
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, path, dpi=dpi):
        for k, i in enumerate(indices):
            update(k)
            ax.set_title(f"t = {t[i]:.4g}")
            writer.grab_frame()
    return path
