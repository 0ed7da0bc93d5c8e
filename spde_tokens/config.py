"""TOML run configuration (docs/guide.md, 'Configuration files'): parsing with ``tomllib``, validation of every key,
and building the run.

Unknown or misspelt keys are errors that name the key and suggest the nearest valid one. ``DEFAULT_CONFIG`` is the
built-in run of ``spde-tokens run``: tokens on S² clustering under softmax attention while random MLP blocks
(finite width 64, tanh) shake them with a common noise (about 10 s).
"""

from __future__ import annotations

import copy
import difflib
import os
import tomllib
from typing import Any

from spde_tokens.noise import NOISE_MODELS, NoiseSum, as_noise

DEFAULT_CONFIG = """\
# spde_tokens built-in run: tokens on S^2 cluster under softmax attention (beta = 4) while the common noise of
# random MLP blocks (tanh, width 64) shakes them all with one random field; ~10 s on one core. The noise sharpens
# the density (synchronization): at lmax 63 it stays resolved (spectral tail < 1e-10) up to t ≈ 1.1.
[grid]
lmax = 63

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
t_end = 1.1
dt = 0.01
save_every = 0.05
seed = 0

[particles]
n = 2048
"""

SCHEMA: dict[str, set[str]] = {
    "grid": {"lmax", "n", "dealias", "threads"},
    "model": {"dim", "beta", "normalization", "Q", "K", "V"},
    "initial": {"kind", "mean", "kappa", "weights", "means", "kappas", "center"},
    "noise": set(),  # read from the noise registry when a file is checked (spde_tokens.noise.NOISE_MODELS)
    "run": {"t_end", "dt", "save_every", "seed", "scheme", "cfl", "hyperviscosity", "attention", "memory_budget"},
    "particles": {"n", "seed", "scheme"},
}
REQUIRED = {"grid": set(), "model": {"dim"}, "initial": {"kind"}, "run": {"t_end", "dt"}}
INITIAL_KINDS = {"uniform": set(), "von_mises_fisher": {"mean", "kappa"}, "mixture": {"weights", "means", "kappas"},
                 "poisson_kernel": {"center"}}


def _unknown(key: str, where: str, valid) -> ValueError:
    near = difflib.get_close_matches(key, sorted(valid), n=1)
    hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(sorted(valid))}"
    return ValueError(f"unknown key {key!r} in {where}{hint}")


def load_config(config: str | os.PathLike | dict | None = None) -> dict[str, Any]:
    """Parse and validate a configuration: a TOML file path, a dict, or None for ``DEFAULT_CONFIG``."""
    if config is None:
        data = tomllib.loads(DEFAULT_CONFIG)
    elif isinstance(config, dict):
        data = copy.deepcopy(config)
    else:
        path = os.fspath(config)
        if not os.path.isfile(path):
            raise ValueError(f"config file {path!r} does not exist")
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {path!r} is not valid TOML: {exc}") from None
    for section, body in data.items():
        if section not in SCHEMA:
            raise _unknown(section, "the configuration", SCHEMA)
        if not isinstance(body, dict):
            raise ValueError(f"[{section}] must be a table, got {type(body).__name__}")
        for key in body:
            allowed = set(NOISE_MODELS) if section == "noise" else SCHEMA[section]
            if key not in allowed:
                raise _unknown(key, f"[{section}]", allowed)
    for section, keys in REQUIRED.items():
        if section not in data:
            raise ValueError(f"the configuration needs a [{section}] table")
        for key in keys:
            if key not in data[section]:
                raise ValueError(f"[{section}] needs the key {key!r}")
    for kind, params in data.get("noise", {}).items():
        if not isinstance(params, dict):
            example = NOISE_MODELS[kind].parameter_names()[0]
            raise ValueError(f"[noise] {kind} must be a table such as {{ {example} = 0.1 }}")
        for key in params:
            if key not in NOISE_MODELS[kind].parameter_names():
                raise _unknown(key, f"[noise] {kind}", set(NOISE_MODELS[kind].parameter_names()))
    kind = data["initial"]["kind"]
    if kind not in INITIAL_KINDS:
        raise ValueError(f"[initial] kind must be one of {sorted(INITIAL_KINDS)}, got {kind!r}")
    for key in INITIAL_KINDS[kind]:
        if key not in data["initial"]:
            raise ValueError(f"[initial] kind = {kind!r} needs the key {key!r}")
    dim = data["model"]["dim"]
    grid = data["grid"]
    if dim == 3 and "lmax" not in grid:
        raise ValueError("[grid] needs 'lmax' for dim = 3 (S^2)")
    if dim == 2 and "n" not in grid:
        raise ValueError("[grid] needs 'n' for dim = 2 (S^1)")
    if dim not in (2, 3):
        raise ValueError(f"[model] dim must be 2 or 3 for the density solver, got {dim!r}")
    return data


def build_grid(config: dict):
    from spde_tokens.grids import CircleGrid, SphereGrid

    g = config["grid"]
    opts = {k: g[k] for k in ("dealias", "threads") if k in g}
    return SphereGrid(g["lmax"], **opts) if config["model"]["dim"] == 3 else CircleGrid(g["n"], **opts)


def build_model(config: dict):
    from spde_tokens.model import AttentionModel

    return AttentionModel(**config["model"])


def build_noise(config: dict) -> NoiseSum | None:
    """The sum of the [noise] models (None without any: a deterministic run), built through the registry."""
    models = [NOISE_MODELS[kind](**params) for kind, params in config.get("noise", {}).items()]
    return as_noise(NoiseSum(*models)) if models else None


def build_initial(config: dict, grid):
    from spde_tokens import initial

    params = dict(config["initial"])
    kind = params.pop("kind")
    return getattr(initial, kind)(grid, **params)


def run_density(config: dict, progress: bool | None = None, checkpoint=None):
    """Solve the density equation described by a validated configuration; the Dataset (and the records of a
    BlowUpError) carries the configuration as TOML text and the initial condition (``io.provenance``)."""
    from spde_tokens.density import solve_density
    from spde_tokens.io import provenance, with_attrs

    grid = build_grid(config)
    run = dict(config["run"])
    return with_attrs(lambda: solve_density(build_model(config), build_noise(config), build_initial(config, grid),
                                            **run, progress=progress, checkpoint=checkpoint, threads=grid.threads),
                      provenance(config))


def run_particles(config: dict, progress: bool | None = None, checkpoint=None):
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
