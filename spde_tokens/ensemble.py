"""Ensembles of noise realizations on dask.distributed (docs/guide.md, 'Ensembles of noise realizations').

Realization r of a run with seed s takes the seed ``SeedSequence(s).spawn(R)[r]`` reduced to an integer, so its
numbers do not depend on the number or kind of workers. Each realization is written to its own NetCDF file in
``out_dir`` as soon as it finishes (atomically: ``.tmp`` then rename) with the fingerprint of the configuration that
made it; re-running the same command reuses a file only when its fingerprint matches and refuses a folder holding
realizations of another configuration (never mixing them). Failed realizations are retried a bounded number of
times and then reported, and the ensemble Dataset (dimension ``realization``) is assembled lazily with
``xarray.open_mfdataset``. Every realization runs its transforms on the configured ``[grid] threads`` (default 1),
so a local cluster has one worker per that many cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
import warnings
from typing import Any

import numpy as np
import xarray as xr

from spde_tokens import checks
from spde_tokens.config import load_config, run_density, run_particles
from spde_tokens.io import append_history, toml_text, write_run
from spde_tokens.records import default_progress

#: attempts per realization beyond the first
RETRIES = 2
QUANTILES = (0.1, 0.5, 0.9)


def realization_seed(seed: int, realization: int) -> int:
    """The integer seed of realization r: ``SeedSequence(seed, spawn_key=(r,))`` (= ``SeedSequence(seed).spawn``)."""
    child = np.random.SeedSequence(seed, spawn_key=(realization,))
    return int(child.generate_state(1, dtype=np.uint32)[0])


def _part_path(out_dir: str, engine: str, realization: int) -> str:
    return os.path.join(out_dir, f"{engine}_{realization:05d}.nc")


def _realization_config(config: dict, realization: int) -> dict:
    """The configuration realization r runs: the ensemble's, with the realization's seed."""
    config = {section: dict(body) for section, body in config.items()}
    config["run"]["seed"] = realization_seed(config["run"].get("seed", 0), realization)
    return config


def _defining(config: dict, engine: str) -> dict:
    """The part of a configuration that defines the results of ``engine``: all of it but, for the density,
    ``[particles]``. ``[grid] threads`` belongs to it: shtns picks other kernels for another thread count, and the
    results differ in their last bits at lmax ≥ 63 (1e-13 to 5e-12 measured), so realizations of one ensemble are
    never mixed across thread counts."""
    return {section: body for section, body in config.items() if not (engine == "density" and section == "particles")}


def _numbers_as_floats(value: Any) -> Any:
    """Integers as floats (beta = 1 and beta = 1.0 are one setting), recursively."""
    if isinstance(value, dict):
        return {k: _numbers_as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_floats(v) for v in value]
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def part_fingerprint(config: dict, engine: str) -> str:
    """The fingerprint of a realization's file: a SHA-256 (first 16 hex digits) of the settings that define it
    (:func:`_defining` of the realization's configuration, its seed included), independent of key order and of
    writing a number as an integer or a float."""
    text = json.dumps(_numbers_as_floats(_defining(config, engine)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _first_difference(there: dict, here: dict) -> str:
    """The first setting (in table and key order) whose value differs between two configurations."""
    for section in sorted({*there, *here}):
        a, b = there.get(section, {}), here.get(section, {})
        for key in sorted({*a, *b}):
            if _numbers_as_floats(a.get(key)) != _numbers_as_floats(b.get(key)):
                show = [repr(t[key]) if key in t else "absent" for t in (a, b)]
                return f"[{section}] {key} = {show[0]} there, {show[1]} here"
    return "the fingerprints differ"


def reusable(path: str, config: dict, engine: str, realization: int) -> bool:
    """Whether the file ``path`` of realization ``realization`` exists and was made by the ensemble configuration
    ``config`` (its fingerprint, :func:`part_fingerprint`, matches).

    Raises
    ------
    ValueError naming the folder and the differing setting when the file was made by another configuration (or
    carries no fingerprint): an ensemble never mixes realizations of different configurations.
    """
    if not os.path.exists(path):
        return False
    with xr.open_dataset(path, engine="netcdf4", decode_timedelta=False) as part:
        attrs = {k: v.item() if isinstance(v, np.generic) else v for k, v in part.attrs.items()}
    if attrs.get("part_fingerprint") == part_fingerprint(_realization_config(config, realization), engine):
        return True
    if "part_fingerprint" not in attrs or "configuration" not in attrs:
        why = "it carries no fingerprint (an earlier version of spde_tokens wrote it)"
    else:
        there = tomllib.loads(str(attrs["configuration"]))
        there["run"]["seed"] = attrs.get("ensemble_seed")  # the file holds its realization's seed
        here = {section: dict(body) for section, body in config.items()}
        here["run"]["seed"] = here["run"].get("seed", 0)
        why = _first_difference(_defining(there, engine), _defining(here, engine))
    raise ValueError(f"out_dir {os.path.dirname(path)!r} holds realizations of another configuration "
                     f"({os.path.basename(path)}: {why}); remove the folder or write this ensemble elsewhere "
                     f"(another -o or out_dir)")


def run_realization(config: dict, realization: int, out_dir: str) -> list[str]:
    """Run one realization (density, and particles when configured) and write its files; returns their paths.

    A file already there is kept when its fingerprint matches (:func:`reusable`). Runs in a dask worker:
    transforms use the configured ``[grid] threads``, progress bars are off.
    """
    own = _realization_config(config, realization)
    written = []
    jobs = [("density", run_density)] + ([("particles", run_particles)] if "particles" in config else [])
    for engine, runner in jobs:
        path = _part_path(out_dir, engine, realization)
        if not reusable(path, config, engine, realization):
            ds = runner(own, progress=False)
            ds.attrs.update({"realization": realization, "ensemble_seed": config["run"].get("seed", 0),
                             "part_fingerprint": part_fingerprint(own, engine)})
            write_run(ds, path)  # atomic: a temporary file beside it, then renamed
        written.append(path)
    return written


def _realization_task(config: dict, realization: int, out_dir: str) -> tuple[list[str], list[tuple[type, str]]]:
    """:func:`run_realization` as a dask task: its paths, and its warnings as (category, message) pairs.

    A worker is another process, whose own ``warnings.showwarning`` would print each warning on its standard error
    as two lines (file:line, then the source line), past the command's one-line format; the warnings are instead
    sent back with the result, and :func:`run_ensemble` issues them in the caller's process.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = run_realization(config, realization, out_dir)
    found = dict.fromkeys((w.category, str(w.message)) for w in caught)
    return paths, list(found)


def _issue_worker_warnings(found: dict[int, list[tuple[type, str]]], total: int) -> None:
    """Each kind of warning of the realizations issued once, with the number of realizations that had it (a kind:
    the category and the message with its numbers blanked, as for the warnings of one run)."""
    kinds: dict[tuple[type, str], tuple[str, set[int]]] = {}
    for realization, pairs in sorted(found.items()):
        for category, message in pairs:
            key = (category, re.sub(r"[-+]?\d[\d.eE+-]*", "#", message))
            kinds.setdefault(key, (message, set()))[1].add(realization)
    for (category, _), (message, where) in kinds.items():
        note = (f" [realization {min(where)}]" if len(where) == 1 else
                f" [in {len(where)} of {total} realizations]")
        warnings.warn(f"{message}{note}", category, stacklevel=3)


def ensemble_statistics(ds: xr.Dataset) -> xr.Dataset:
    """Mean and quantile bands of energy and dispersion over realizations, and the median slope of log dispersion.

    The slope is the least-squares slope of log(dispersion) against time over the second half of the records of
    each realization: its median estimates the almost-sure exponential rate of synchronization.
    """
    out = xr.Dataset()
    q = xr.DataArray(list(QUANTILES), dims="quantile", attrs={"long_name": "quantile level", "units": "1"})
    for name in ("energy", "dispersion"):
        out[f"{name}_mean"] = ds[name].mean("realization")
        out[f"{name}_mean"].attrs = {"long_name": f"mean of {name} over realizations", "units": "1"}
        out[f"{name}_quantiles"] = ds[name].quantile(q, dim="realization").drop_vars("quantile")
        out[f"{name}_quantiles"].attrs = {"long_name": f"quantiles of {name} over realizations", "units": "1"}
    out = out.assign_coords(quantile=q)
    times = ds.time.values
    second = times >= times[-1] / 2
    disp = np.maximum(ds.dispersion.values[:, second], 1e-300)
    slopes = np.polyfit(times[second], np.log(disp).T, 1)[0] if second.sum() > 1 else np.full(disp.shape[0], np.nan)
    out["log_dispersion_slope"] = xr.Variable("realization", slopes, {
        "long_name": "slope of log dispersion over the second half of the run", "units": "1"})
    out["log_dispersion_slope_median"] = xr.Variable((), float(np.median(slopes)), {
        "long_name": "median over realizations of the slope of log dispersion", "units": "1"})
    return out


def run_ensemble(config: str | os.PathLike | dict, realizations: int, scheduler: str | None = None,
                 n_workers: int | None = None, out_dir: str | os.PathLike | None = None,
                 output: str | os.PathLike | None = None, progress: bool | None = None,
                 history: str | None = None) -> xr.Dataset:
    """Run ``realizations`` noise realizations of a configuration on dask.distributed.

    Parameters
    ----------
    config : a TOML path or a configuration dict (docs/guide.md, 'Configuration files'); its ``[run] seed`` is the
        ensemble seed and its ``[grid] threads`` (default 1) the transform threads of every realization.
    realizations : number of realizations R ≥ 1.
    scheduler : address of a running dask scheduler ("tcp://host:port"); None starts a LocalCluster.
    n_workers : workers of the LocalCluster (default: the number of cores divided by ``[grid] threads``), each
        running one realization at a time.
    out_dir : folder of the per-realization files, reachable by every worker (default ``OUT.parts/`` next to
        ``output``, else ``ensemble.parts``).
    output : where to write the assembled ensemble (NetCDF), optional.
    progress : progress bar over realizations (default: on in a terminal).
    history : what made the ensemble, e.g. the command line; appended to the ``history`` of ``output``.

    Returns
    -------
    The ensemble Dataset: the density runs stacked along ``realization`` (lazily opened), with the statistics of
    :func:`ensemble_statistics`, the ensemble ``seed`` and its ``configuration`` (TOML text).

    Raises
    ------
    ValueError on bad input, and when ``out_dir`` holds a realization file of another configuration (naming the
    first differing setting): files are reused only when their fingerprint matches (:func:`reusable`).
    """
    from dask.distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm  # deferred to the first ensemble, not needed by `import spde_tokens`

    cfg = load_config(config)
    realizations = checks.integer("realizations", realizations, 1)
    n_workers = None if n_workers is None else checks.integer("n_workers", n_workers, 1)
    threads = checks.integer("[grid] threads", cfg["grid"].get("threads", 1), 1)
    show_progress = default_progress(progress)
    if scheduler is not None and not isinstance(scheduler, str):
        raise ValueError(f"scheduler must be an address such as 'tcp://127.0.0.1:8786', got {scheduler!r}")
    if out_dir is None:
        out_dir = (os.fspath(output) + ".parts") if output is not None else "ensemble.parts"
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    engines = ["density"] + (["particles"] if "particles" in cfg else [])
    todo = [r for r in range(realizations)
            if not all([reusable(_part_path(out_dir, e, r), cfg, e, r) for e in engines])]  # checks every file
    failures: dict[int, str] = {}
    found: dict[int, list[tuple[type, str]]] = {}
    if todo:
        cluster = None
        if scheduler is None:
            # one BLAS thread; the transforms ask shtns and FFTW for their thread count explicitly, past OMP_NUM_THREADS
            cluster = LocalCluster(n_workers=n_workers or max(1, len(os.sched_getaffinity(0)) // threads),
                                   threads_per_worker=1, processes=True, dashboard_address=None,
                                   env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
        try:
            with Client(cluster if cluster is not None else scheduler) as client:
                futures = {client.submit(_realization_task, cfg, r, out_dir, retries=RETRIES, pure=False,
                                         key=f"spde-tokens-realization-{r}-{os.getpid()}"): r for r in todo}
                with tqdm(total=len(todo), disable=not show_progress, unit="realization",
                          desc="ensemble") as bar:
                    for future in as_completed(futures):
                        if future.status == "error":
                            failures[futures[future]] = repr(future.exception())
                        else:
                            found[futures[future]] = future.result()[1]
                        bar.update()
        finally:
            if cluster is not None:
                cluster.close()
    _issue_worker_warnings(found, len(todo))
    if failures:
        lines = "; ".join(f"realization {r}: {msg}" for r, msg in sorted(failures.items()))
        raise RuntimeError(f"{len(failures)} realization(s) failed after {RETRIES} retries (the others are in "
                           f"{out_dir}; re-run to retry): {lines}")
    ds = assemble(out_dir, realizations)
    ds.attrs["configuration"] = toml_text(cfg)
    if output is not None:
        write_run(ds, output, history=history)
    return ds


def _ensemble_settings(attrs: dict, engine: str) -> dict:
    """The defining settings of a realization file's configuration, with the ensemble seed for its own."""
    if "configuration" not in attrs or "ensemble_seed" not in attrs:
        raise ValueError("the realization file has no configuration or ensemble_seed attribute (an earlier version "
                         "of spde_tokens wrote it); run the ensemble again in a new out_dir")
    config = tomllib.loads(str(attrs["configuration"]))
    config["run"]["seed"] = int(attrs["ensemble_seed"])
    return _defining(config, engine)


def assemble(out_dir: str, realizations: int, engine: str = "density") -> xr.Dataset:
    """The realizations 0 … R − 1 of ``out_dir`` stacked along ``realization`` (lazy), with ensemble statistics.

    Raises
    ------
    ValueError when a realization file is missing, or when two of them come from different configurations.
    """
    from spde_tokens._version import __version__

    files = [_part_path(out_dir, engine, r) for r in range(realizations)]
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        raise ValueError(f"out_dir {out_dir!r} lacks {len(missing)} realization files, e.g. {missing[0]}")
    seeds, handovers, settings = [], [], None
    for f in files:
        with xr.open_dataset(f, engine="netcdf4", decode_timedelta=False) as one:
            seeds.append(int(one.attrs["seed"]))
            handover = one.attrs.get("handover_time", "none")
            handovers.append(np.nan if isinstance(handover, str) else float(handover))
            own = _ensemble_settings(one.attrs, engine)
            ensemble_seed = int(one.attrs["ensemble_seed"])
        if settings is not None and _numbers_as_floats(own) != _numbers_as_floats(settings):
            raise ValueError(f"out_dir {out_dir!r} mixes configurations ({os.path.basename(f)} and "
                             f"{os.path.basename(files[0])}: {_first_difference(own, settings)})")
        settings = own
    ds = xr.open_mfdataset(files, combine="nested", concat_dim="realization", engine="netcdf4",
                           data_vars="all", coords="minimal", compat="override", join="override",
                           decode_timedelta=False, combine_attrs="drop_conflicts")
    for name in list(ds.data_vars):  # the matrices and the cell measure are the same for every realization
        if "time" not in ds[name].dims and "realization" in ds[name].dims and name != "weights":
            ds[name] = ds[name].isel(realization=0)
    ds = ds.assign_coords(realization=xr.Variable("realization", np.arange(realizations),
                                                  {"long_name": "noise realization", "units": "1"}))
    ds["realization_seed"] = xr.Variable("realization", np.array(seeds), {"long_name": "seed of the realization",
                                                                          "units": "1"})
    if "handover_time" in ds.attrs or np.isfinite(handovers).any():  # each realization hands over when it must
        ds["handover_time"] = xr.Variable("realization", np.array(handovers), {
            "long_name": "time of the hand-over to the Lagrangian engine (NaN: none)", "units": "1"})
    ds = ds.merge(ensemble_statistics(ds))
    for name in ("realization", "part_fingerprint", "ensemble_seed", "history", "handover_time"):
        ds.attrs.pop(name, None)
    ds.attrs.update({"title": "spde_tokens ensemble", "realizations": int(realizations), "seed": ensemble_seed,
                     "history": append_history(None, f"ensemble of {realizations} realizations assembled from "
                                                      f"{out_dir} by spde_tokens {__version__}")})
    return ds


def summary(ds: xr.Dataset) -> dict[str, Any]:
    """Numbers worth printing after an ensemble run."""
    return {"realizations": int(ds.sizes["realization"]),
            "energy_mean_final": float(ds.energy_mean[-1]), "dispersion_mean_final": float(ds.dispersion_mean[-1]),
            "median_log_dispersion_slope": float(ds.log_dispersion_slope_median)}
