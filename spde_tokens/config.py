"""TOML run configuration (docs/guide.md, 'Configuration files'): parsing with ``tomllib``, validation of every key,
and building the run.

Unknown or misspelt keys, and values of the wrong type, are errors that name the key (and suggest the nearest valid
one). A table a configuration omits is taken from the built-in one, except [noise] and [particles]; ``--set
table.key=value`` overrides apply last (:func:`apply_setting`). ``DEFAULT_CONFIG`` is the
built-in run of ``spde-tokens run``: tokens on S² clustering under softmax attention while random MLP blocks
(finite width 64, tanh) shake them with a common noise (about 10 s).
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from spde_tokens import checks
from spde_tokens.noise import NOISE_MODELS, NoiseSum, as_noise

if TYPE_CHECKING:
    import xarray as xr

    from spde_tokens.grids import Grid
    from spde_tokens.model import AttentionModel

DEFAULT_CONFIG = """\
# spde_tokens built-in run: tokens on S^2 cluster under softmax attention (beta = 4) while the common noise of
# random MLP blocks (tanh, width 64) shakes them all with one random field; ~30 s on one core. The noise sharpens
# the density: at lmax 31 the grid resolves it (spectral tail ≤ 1e-10) to t ≈ 0.14, then the Lagrangian engine
# carries the measure through the collapse into clusters, to depth 10.
[grid]
lmax = 31

[model]
dim = 3
beta = 4.0
normalization = "softmax"

[initial]
kind = "mixture"
weights = [0.4, 0.35, 0.25]
means = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.2], [-0.5, 0.8, -0.3]]
kappas = [3.0, 4.0, 5.0]

[noise]
mlp = { sigma = 0.25, activation = "tanh", width = 64 }

[run]
t_end = 10.0
dt = 0.02
save_every = 0.1
seed = 0
handover_tail = 1e-10

[particles]
n = 2048
"""

#: the TOML type of every key of every table but [noise], whose tables hold the noise models' parameters (checked by
#: the models); the ranges of the values are checked by the objects they build (docs/guide.md, 'Configuration files')
TYPES: dict[str, dict[str, str]] = {
    "grid": {"kind": "string", "dim": "integer", "lmax": "integer", "n": "integer", "dealias": "boolean",
             "threads": "integer"},
    "model": {"dim": "integer", "beta": "number", "normalization": "string", "Q": "matrix", "K": "matrix",
              "V": "matrix"},
    "initial": {"kind": "string", "mean": "vector", "kappa": "number", "weights": "vector", "means": "matrix",
                "kappas": "vector", "center": "vector"},
    "run": {"t_end": "number", "dt": "number", "save_every": "number", "seed": "integer", "scheme": "string",
            "cfl": "number", "hyperviscosity": "number", "attention": "string", "memory_budget": "number",
            "engine": "string", "handover_tail": "number", "mean_density": "boolean"},
    "particles": {"n": "integer", "seed": "integer", "scheme": "string"},
}
SCHEMA: dict[str, set[str]] = {**{section: set(keys) for section, keys in TYPES.items()}, "noise": set()}
#: tables that a configuration without them does not take from the built-in one: no [noise] is a deterministic run,
#: no [particles] is a run without tokens
OPTIONAL_TABLES = ("noise", "particles")
REQUIRED = {"model": {"dim"}, "initial": {"kind"}, "run": {"t_end", "dt"}}
INITIAL_KINDS = {"uniform": set(), "von_mises_fisher": {"mean", "kappa"}, "mixture": {"weights", "means", "kappas"},
                 "poisson_kernel": {"center"}, "mobius": {"center"}}
#: [grid] kind → the grid's size key; without ``kind`` the grid is the circle (dim 2) or the sphere (dim 3)
GRID_KINDS = {"circle": "n", "sphere": "lmax", "zonal": "lmax"}
#: what each TOML type accepts, and how a message names it
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "integer": (checks.is_integer, "an integer"),
    "number": (checks.is_real, "a number"),
    "boolean": (lambda v: isinstance(v, bool), "true or false"),
    "string": (lambda v: isinstance(v, str), "a string in quotes"),
    "vector": (lambda v: isinstance(v, list) and all(checks.is_real(x) for x in v), "a list of numbers"),
    "matrix": (lambda v: isinstance(v, list) and all(isinstance(r, list) and all(checks.is_real(x) for x in r)
                                                     for r in v), "a list of lists of numbers"),
}
#: netCDF-4 (HDF5) and classic netCDF files start with these bytes
_NETCDF_MAGIC = (b"\x89HDF", b"CDF\x01", b"CDF\x02", b"CDF\x05")


def _unknown(key: str, where: str, valid: Iterable[str]) -> ValueError:
    near = difflib.get_close_matches(key, sorted(valid), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(sorted(valid))}"
    return ValueError(f"unknown key {key!r} in {where}{hint}")


def _read(path: str) -> dict[str, Any]:
    """The tables of a TOML file, with a message that names the file when it is not one."""
    if os.path.isdir(path):
        raise ValueError(f"config file {path!r} is a folder, not a TOML file")
    if not os.path.isfile(path):
        raise ValueError(f"config file {path!r} does not exist")
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw.startswith(_NETCDF_MAGIC):
        raise ValueError(f"config file {path!r} is a NetCDF file, not a TOML configuration (spde-tokens plot draws a "
                         "run file; spde-tokens config prints a configuration to start from)")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"config file {path!r} is not a text file (TOML is UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config file {path!r} is not valid TOML: {exc}") from None


def _toml_value(text: str, setting: str) -> Any:
    """The right-hand side of ``--set key=value`` as a TOML value; a bare word is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", text):
            return text
        raise ValueError(f"--set {setting}: {text!r} is not a TOML value (a number, true/false, \"text\", [list] "
                         "or { inline = table })") from None


def apply_setting(data: dict[str, Any], setting: str) -> None:
    """Apply one ``--set`` override ``table.key=value`` (``noise.bias.gamma=0.3``) to a configuration, in place.

    Parameters
    ----------
    data : the configuration (tables of keys).
    setting : ``table.key=value``, the value a TOML value (``2``, ``"softmax"``, ``[0, 0, 1]``, ``{ gamma = 0.3 }``)
        or a bare word, read as a string; a table given as a whole (``noise={}``) replaces it.

    Raises
    ------
    ValueError naming the setting when it has no ``=``, names an unknown table or key, or its value is not TOML.
    """
    if not isinstance(setting, str) or "=" not in setting:
        raise ValueError(f"--set needs table.key=value (such as model.beta=2), got {setting!r}")
    name, text = (part.strip() for part in setting.split("=", 1))
    path = name.split(".")
    value = _toml_value(text, setting)
    if path[0] not in SCHEMA:
        raise ValueError(f"--set {setting}: " + str(_unknown(path[0], "the configuration", SCHEMA)))
    allowed = set(NOISE_MODELS) if path[0] == "noise" else SCHEMA[path[0]]
    if len(path) > 1 and path[1] not in allowed:
        raise ValueError(f"--set {setting}: " + str(_unknown(path[1], f"[{path[0]}]", allowed)))
    if len(path) > 2 and (path[0] != "noise" or len(path) > 3):
        raise ValueError(f"--set {setting}: {name!r} has too many parts (table.key, or noise.model.parameter)")
    if len(path) == 1:
        data[path[0]] = value
        return
    table = data.setdefault(path[0], {})
    if len(path) == 3:
        table = table.setdefault(path[1], {})
    table[path[-1]] = value


def _check_types(data: dict[str, Any]) -> None:
    """Every table is a table, every key known and of its TOML type; [noise] holds registered models' tables."""
    for section, body in data.items():
        if section not in SCHEMA:
            raise _unknown(section, "the configuration", SCHEMA)
        if not isinstance(body, dict):
            raise ValueError(f"[{section}] must be a table, got {body!r}")
        allowed = set(NOISE_MODELS) if section == "noise" else SCHEMA[section]
        for key, value in body.items():
            if key not in allowed:
                raise _unknown(key, f"[{section}]", allowed)
            if section == "noise":
                if not isinstance(value, dict):
                    example = NOISE_MODELS[key].parameter_names()[0]
                    raise ValueError(f"[noise] {key} must be a table such as {{ {example} = 0.1 }}, got {value!r}")
                names = set(NOISE_MODELS[key].parameter_names())
                for name in value:
                    if name not in names:
                        raise _unknown(name, f"[noise] {key}", names)
                continue
            accepts, what = _KINDS[TYPES[section][key]]
            if not accepts(value):
                raise ValueError(f"[{section}] {key} must be {what}, got {checks.describe(value)}")


def load_config(config: str | os.PathLike[str] | dict[str, Any] | None = None,
                settings: Sequence[str] = ()) -> dict[str, Any]:
    """Parse and validate a configuration (docs/guide.md, 'Configuration files').

    Parameters
    ----------
    config : a TOML file path, a dict of tables, or None for ``DEFAULT_CONFIG``. A table it does not have is taken
        from ``DEFAULT_CONFIG`` whole, except [noise] (none: a deterministic run) and [particles] (none: no tokens).
    settings : ``--set`` overrides ``table.key=value`` applied after that (:func:`apply_setting`).

    Returns
    -------
    The configuration: tables of keys, every key known and of its type, the kind-specific keys present.

    Raises
    ------
    ValueError naming the file, table or key (and the nearest valid key when it is misspelt).
    """
    builtin = tomllib.loads(DEFAULT_CONFIG)
    taken: set[str] = set()  # tables taken from the built-in configuration
    if config is None:
        data = builtin
    else:
        if isinstance(config, dict):
            data = copy.deepcopy(config)
        elif isinstance(config, (str, os.PathLike)):
            data = _read(os.fspath(config))
        else:
            raise ValueError(f"config must be a TOML file path, a dict or None, got {type(config).__name__}")
        _check_types(data)
        taken = set(builtin) - set(data) - set(OPTIONAL_TABLES)
        data = {**{k: builtin[k] for k in sorted(taken)}, **data}
    for setting in settings:
        apply_setting(data, setting)
    _check_types(data)
    for section, keys in REQUIRED.items():
        missing = keys - set(data[section])
        if missing:
            raise ValueError(f"[{section}] needs the key {sorted(missing)[0]!r}")
    initial = data["initial"]
    kind = initial["kind"]
    if kind not in INITIAL_KINDS:
        raise ValueError(f"[initial] kind must be one of {sorted(INITIAL_KINDS)}, got {kind!r}")
    missing, extra = INITIAL_KINDS[kind] - set(initial), set(initial) - INITIAL_KINDS[kind] - {"kind"}
    if missing:
        raise ValueError(f"[initial] kind = {kind!r} needs the key {sorted(missing)[0]!r}")
    if extra:
        raise ValueError(f"[initial] kind = {kind!r} takes no key {sorted(extra)[0]!r} "
                         f"(it takes {', '.join(sorted(INITIAL_KINDS[kind])) or 'none'})")
    _check_grid(data["model"]["dim"], data["grid"], "grid" in taken)
    budget = data["run"].get("memory_budget")
    if budget is not None and not budget > 0:
        raise ValueError(f"[run] memory_budget must be a positive number of bytes, got {budget!r}")
    return data


def _kind_of(grid: dict[str, Any], dim: Any) -> str:
    """The [grid] kind: as written, else ``"sphere"`` for dim 3 and ``"circle"`` for dim 2."""
    return str(grid.get("kind", "sphere" if dim == 3 else "circle"))


def grid_kind(config: dict[str, Any]) -> str:
    """The [grid] kind of a configuration (:func:`_kind_of` its [grid] and [model] dim)."""
    return _kind_of(config["grid"], config["model"]["dim"])


def _check_grid(dim: Any, grid: dict[str, Any], builtin: bool) -> None:
    """[grid] fits [model] dim: circle (dim 2, key n), sphere (dim 3, lmax) or zonal (any dim, lmax, ``dim`` equal to
    [model] dim)."""
    kind = _kind_of(grid, dim)
    if kind not in GRID_KINDS:
        raise ValueError(f"[grid] kind must be one of {sorted(GRID_KINDS)}, got {kind!r}")
    if kind == "zonal":
        if "dim" not in grid:
            raise ValueError(f"[grid] kind = 'zonal' needs the key 'dim' (equal to [model] dim = {dim})")
        if grid["dim"] != dim:
            raise ValueError(f"[grid] dim = {grid['dim']} must equal [model] dim = {dim}: the zonal grid holds "
                             "densities on the sphere of the tokens")
    else:
        if "dim" in grid:
            raise ValueError(f"[grid] dim is a key of kind = 'zonal' only; the {kind} grid's dimension is that of "
                             "[model] dim")
        if dim not in (2, 3):
            raise ValueError(f"[model] dim must be 2 or 3 for the {kind} grid, got {dim!r}; densities in other "
                             "dimensions are zonal: [grid] kind = 'zonal' with dim and lmax")
        if dim != (2 if kind == "circle" else 3):
            raise ValueError(f"[model] dim = {dim} does not fit [grid] kind = {kind!r} (dim "
                             f"{2 if kind == 'circle' else 3})")
    need = GRID_KINDS[kind]
    other = "n" if need == "lmax" else "lmax"
    if need not in grid or other in grid:
        origin = " (the built-in [grid] is for S^2: write a [grid] table)" if builtin else ""
        raise ValueError(f"[grid] needs {need!r} and not {other!r} for dim = {dim} ({kind} grid){origin}")


def build_grid(config: dict[str, Any]) -> Grid:
    """The grid of [grid]: ``CircleGrid(n)``, ``SphereGrid(lmax)`` or ``ZonalGrid(dim, lmax)``."""
    from spde_tokens.grids import CircleGrid, SphereGrid, ZonalGrid

    g = config["grid"]
    opts = {k: g[k] for k in ("dealias", "threads") if k in g}
    kind = grid_kind(config)
    if kind == "zonal":
        return ZonalGrid(g["dim"], g["lmax"], **opts)
    return SphereGrid(g["lmax"], **opts) if kind == "sphere" else CircleGrid(g["n"], **opts)


def build_model(config: dict[str, Any]) -> AttentionModel:
    from spde_tokens.model import AttentionModel

    return AttentionModel(**config["model"])


def build_noise(config: dict[str, Any]) -> NoiseSum | None:
    """The sum of the [noise] models (None without any: a deterministic run), built through the registry."""
    models = [NOISE_MODELS[kind](**params) for kind, params in config.get("noise", {}).items()]
    return as_noise(NoiseSum(*models)) if models else None


def build_initial(config: dict[str, Any], grid: Grid) -> xr.DataArray:
    from spde_tokens import initial

    params = dict(config["initial"])
    kind = params.pop("kind")
    if grid_kind(config) == "zonal":  # [r] stands for r e_d: the zonal grid's centres and means lie on its axis
        for key in ("mean", "center"):
            if key in params and len(params[key]) == 1:
                params[key] = [0.0] * (grid.dim - 1) + list(params[key])
        if "means" in params:
            params["means"] = [[0.0] * (grid.dim - 1) + list(m) if len(m) == 1 else m for m in params["means"]]
    return getattr(initial, kind)(grid, **params)


def run_density(config: dict[str, Any], progress: bool | None = None,
                checkpoint: str | os.PathLike[str] | None = None) -> xr.Dataset:
    """Solve the density equation described by a validated configuration; the Dataset (and the records of a
    BlowUpError) carries the configuration as TOML text and the initial condition (``io.provenance``)."""
    from spde_tokens.density import solve_density
    from spde_tokens.io import provenance, with_attrs

    grid = build_grid(config)
    run = dict(config["run"])
    return with_attrs(lambda: solve_density(build_model(config), build_noise(config), build_initial(config, grid),
                                            **run, progress=progress, checkpoint=checkpoint,
                                            threads=int(grid.attrs().get("grid_threads", 1))),
                      provenance(config))


def run_particles(config: dict[str, Any], progress: bool | None = None,
                  checkpoint: str | os.PathLike[str] | None = None) -> xr.Dataset:
    """Simulate the tokens of ``[particles]`` (drawn from the initial density) on the run's noise path; the Dataset
    carries the configuration, the initial condition and the seed of the draw, ``particles_seed``."""
    from spde_tokens.initial import sample
    from spde_tokens.io import provenance, with_attrs
    from spde_tokens.particles import simulate_particles

    if "particles" not in config:
        raise ValueError("the configuration needs a [particles] table (n = number of tokens)")
    grid = build_grid(config)
    rho0 = build_initial(config, grid)
    part = config["particles"]
    if "n" not in part:
        raise ValueError("[particles] needs the key 'n'")
    run = config["run"]
    x0 = sample(rho0, part["n"], seed=part.get("seed", 0))
    return with_attrs(lambda: simulate_particles(build_model(config), build_noise(config), x0, t_end=run["t_end"],
                                                 dt=run["dt"], seed=run.get("seed"), save_every=run.get("save_every"),
                                                 scheme=part.get("scheme", "layer"), lmax=grid.degree_max,
                                                 progress=progress, checkpoint=checkpoint),
                      {**provenance(config), "particles_seed": part.get("seed", 0)})
