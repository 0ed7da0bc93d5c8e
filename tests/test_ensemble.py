"""Ensembles on dask.distributed: identical numbers whatever the workers, restart reuses the finished realizations
of the same configuration only, the ensemble file says how it was made, and its figure draws only honest bands."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib

import numpy as np
import pytest
import xarray as xr

from spde_tokens.cli import main
from spde_tokens.config import load_config
from spde_tokens.ensemble import _part_path, assemble, realization_seed, reusable, run_ensemble, run_realization
from spde_tokens.io import toml_text
from spde_tokens.plot import plot_ensemble

CONFIG = {
    "grid": {"n": 24},
    "model": {"dim": 2, "beta": 2.0},
    "initial": {"kind": "von_mises_fisher", "mean": [1.0, 0.0], "kappa": 1.0},
    "noise": {"bias": {"gamma": 0.4}},
    "run": {"t_end": 0.3, "dt": 0.01, "save_every": 0.05, "seed": 11},
}


def test_realization_seeds_are_spawned_from_the_run_seed():
    children = np.random.SeedSequence(11).spawn(5)
    for r, child in enumerate(children):
        assert realization_seed(11, r) == int(child.generate_state(1, dtype=np.uint32)[0])
    assert len({realization_seed(11, r) for r in range(100)}) == 100


def test_one_and_two_workers_give_identical_arrays(tmp_path):
    one = run_ensemble(CONFIG, 4, n_workers=1, out_dir=tmp_path / "one", progress=False)
    two = run_ensemble(CONFIG, 4, n_workers=2, out_dir=tmp_path / "two", progress=False)
    for name in ("density", "energy", "dispersion", "realization_seed", "energy_quantiles"):
        np.testing.assert_array_equal(one[name].values, two[name].values)
    assert one.sizes["realization"] == 4 and np.isfinite(float(one.log_dispersion_slope_median))
    # the realizations differ from each other (different seeds)
    assert not np.array_equal(one.density.values[0], one.density.values[1])
    # the ensemble says how it was made: its seed, its configuration, a history line
    assert one.attrs["seed"] == 11 and tomllib.loads(one.attrs["configuration"]) == load_config(CONFIG)
    assert re.fullmatch(r"\S+Z ensemble of 4 realizations assembled from .*", one.attrs["history"])


def test_rerun_skips_finished_realizations(tmp_path):
    parts = tmp_path / "parts"
    run_ensemble(CONFIG, 3, n_workers=1, out_dir=parts, progress=False)
    files = sorted(os.listdir(parts))
    stamps = {f: os.stat(parts / f).st_mtime_ns for f in files}
    os.remove(parts / files[1])  # as if the worker of realization 1 had been killed
    ds = run_ensemble(CONFIG, 3, n_workers=1, out_dir=parts, progress=False)
    assert ds.sizes["realization"] == 3
    for f in (files[0], files[2]):
        assert os.stat(parts / f).st_mtime_ns == stamps[f]  # not recomputed
    assert os.path.exists(parts / files[1])


def _changed(table, key, value):
    return {**CONFIG, table: {**CONFIG[table], key: value}}


@pytest.mark.parametrize(("config", "same"), [
    (CONFIG, True),
    (_changed("model", "beta", 2), True),  # beta = 2 and beta = 2.0 are one setting
    (_changed("grid", "threads", 2), r"\[grid\] threads = absent there, 2 here"),  # other kernels, other last bits
    ({**CONFIG, "particles": {"n": 10}}, True),  # [particles] does not define the density
    (_changed("model", "beta", 3.0), r"\[model\] beta = 2\.0 there, 3\.0 here"),
    (_changed("run", "seed", 12), r"\[run\] seed = 11 there, 12 here"),  # the ensemble seed, not realization's
    (_changed("noise", "bias", {"gamma": 0.5}), r"\[noise\] bias = \{'gamma': 0\.4\} there"),
    ({k: v for k, v in CONFIG.items() if k != "noise"}, r"\[noise\] bias = .* there, absent here"),
])
def test_a_realization_file_is_reused_only_by_its_own_configuration(config, same, tmp_path):
    run_realization(CONFIG, 1, str(tmp_path))
    path = str(tmp_path / "density_00001.nc")
    if same is True:
        assert reusable(path, config, "density", 1)
    else:
        with pytest.raises(ValueError, match=f"out_dir '{re.escape(str(tmp_path))}' holds realizations of another "
                                             f"configuration \\(density_00001.nc: {same}"):
            reusable(path, config, "density", 1)
    assert not reusable(str(tmp_path / "density_00002.nc"), config, "density", 2)  # not there: computed


def test_a_file_without_fingerprint_is_refused(tmp_path):
    run_realization(CONFIG, 0, str(tmp_path))
    path = tmp_path / "density_00000.nc"
    with xr.open_dataset(path) as ds:
        old = ds.load()
    del old.attrs["part_fingerprint"]  # as written before fingerprints
    old.to_netcdf(path)
    with pytest.raises(ValueError, match="carries no fingerprint"):
        reusable(str(path), CONFIG, "density", 0)


def test_assemble_refuses_realizations_of_two_configurations(tmp_path):
    run_realization(CONFIG, 0, str(tmp_path))
    run_realization(_changed("model", "beta", 3.0), 1, str(tmp_path))
    with pytest.raises(ValueError, match=r"mixes configurations \(density_00001.nc and density_00000.nc: "
                                         r"\[model\] beta = 3\.0 there, 2\.0 here\)"):
        assemble(str(tmp_path), 2)


def test_ensemble_command_never_mixes_configurations(tmp_path, capsys):
    """The reported case: an ensemble at beta 1, then the same command at beta 3 with the same -o (its output file
    removed, its parts kept) reused the beta-1 realizations and reported beta = 1. Now it refuses, in one line."""
    config = tmp_path / "ens.toml"
    out = tmp_path / "ens.nc"
    config.write_text(toml_text(_changed("model", "beta", 1.0)))
    assert main(["ensemble", str(config), "--realizations", "2", "--workers", "1", "-o", str(out),
                 "--no-progress"]) == 0
    with xr.open_dataset(out) as ens:  # the file says what it is: beta, the ensemble seed, its history
        assert float(ens.attrs["beta"]) == 1.0 and int(ens.attrs["seed"]) == 11
        assert "ensemble of 2 realizations" in ens.attrs["history"]
    out.unlink()
    config.write_text(toml_text(_changed("model", "beta", 3.0)))
    capsys.readouterr()
    assert main(["ensemble", str(config), "--realizations", "2", "--workers", "1", "-o", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out}.parts" in err and "[model] beta = 1.0 there, 3.0 here" in err
    assert not out.exists()  # nothing written that would say beta = 1


@pytest.fixture(scope="module")
def four_realizations(tmp_path_factory):
    folder = tmp_path_factory.mktemp("four")
    for r in range(4):
        run_realization(CONFIG, r, str(folder))
    return assemble(str(folder), 4)


def test_figure_of_a_small_ensemble_draws_each_realization_and_names_the_seed(four_realizations):
    """4 realizations: no 5–95% band (an empirical one needs ≥ 20), each realization drawn; the title has seed 11."""
    fig = plot_ensemble(four_realizations)
    assert "seed 11" in fig._suptitle.get_text()
    for ax in fig.axes:
        assert len(ax.collections) == 0  # no fill_between band
        lines = [line for line in ax.get_lines() if line.get_label() != "median"]
        assert len(lines) == 4
    energy = np.sort([line.get_ydata()[-1] for line in fig.axes[0].get_lines() if line.get_label() != "median"])
    np.testing.assert_array_equal(energy, np.sort(four_realizations.energy.values[:, -1]))


def test_figure_of_twenty_realizations_draws_quantile_bands(four_realizations):
    """20 realizations (the 4 above, each five times): the 5–95% and 25–75% bands at their empirical quantiles."""
    ens = xr.concat([four_realizations[["energy", "dispersion"]]] * 5, dim="realization")
    ens.attrs = four_realizations.attrs
    fig = plot_ensemble(ens)
    ax = fig.axes[0]
    assert len(ax.collections) == 2
    outer = ax.collections[0].get_paths()[0].vertices[:, 1]
    values = four_realizations.energy.values
    assert np.min(outer) == pytest.approx(np.quantile(np.repeat(values, 5, axis=0), 0.05, axis=0).min(), rel=1e-12)


def _start_cluster(tmp_path, n_workers):
    """An external ``dask scheduler`` on 127.0.0.1 and ``dask worker`` processes (one thread each)."""
    scheduler_file = tmp_path / "scheduler.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--scheduler-file", str(scheduler_file), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
    for _ in range(150):
        if scheduler_file.exists() and scheduler_file.stat().st_size > 0:
            break
        time.sleep(0.2)
    address = json.loads(scheduler_file.read_text())["address"]
    for _ in range(n_workers):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads",
                                       "1", "--no-dashboard"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, env=env))
    return address, procs


def _stop(procs):
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in procs:
        p.wait(timeout=30)


def test_external_scheduler_gives_the_same_numbers(tmp_path):
    address, procs = _start_cluster(tmp_path, 2)
    try:
        remote = run_ensemble(CONFIG, 4, scheduler=address, out_dir=tmp_path / "remote", progress=False)
    finally:
        _stop(procs)
    local = run_ensemble(CONFIG, 4, n_workers=1, out_dir=tmp_path / "local", progress=False)
    np.testing.assert_array_equal(remote.density.values, local.density.values)


def test_killed_worker_still_gives_the_full_ensemble(tmp_path):
    """SIGKILL one of two workers once the first realization is on disk: the scheduler moves its tasks to the
    other worker, the ensemble is complete and identical to a local run, and a re-run recomputes nothing."""
    config = {**CONFIG, "run": {**CONFIG["run"], "t_end": 1.0}}
    parts = tmp_path / "parts"
    address, procs = _start_cluster(tmp_path, 2)

    def kill_one_worker():
        for _ in range(600):
            if parts.exists() and any(f.endswith(".nc") for f in os.listdir(parts)):
                break
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_one_worker)
    try:
        killer.start()
        ds = run_ensemble(config, 8, scheduler=address, out_dir=parts, progress=False)
        killer.join()
    finally:
        _stop(procs)
    assert procs[1].returncode == -signal.SIGKILL  # the worker was really killed during the run
    assert ds.sizes["realization"] == 8
    stamps = {f: os.stat(parts / f).st_mtime_ns for f in os.listdir(parts)}
    again = run_ensemble(config, 8, n_workers=1, out_dir=parts, progress=False)
    assert {f: os.stat(parts / f).st_mtime_ns for f in os.listdir(parts)} == stamps  # nothing recomputed
    local = run_ensemble(config, 8, n_workers=1, out_dir=tmp_path / "local", progress=False)
    np.testing.assert_array_equal(again.density.values, local.density.values)


def test_workers_use_the_configured_threads(tmp_path):
    """``[grid] threads`` reaches the grid of every realization (recorded by the grid the solver used)."""
    config = {**CONFIG, "grid": {**CONFIG["grid"], "threads": 2}}
    ds = run_ensemble(config, 2, n_workers=1, out_dir=tmp_path, progress=False)
    assert ds.attrs["grid_threads"] == 2
    for name in os.listdir(tmp_path):
        with xr.open_dataset(tmp_path / name) as part:
            assert part.attrs["grid_threads"] == 2


@pytest.mark.parametrize(("kwargs", "name"), [({"realizations": 0}, "realizations"),
                                              ({"realizations": 2, "n_workers": 0}, "n_workers"),
                                              ({"realizations": 2, "scheduler": 8786}, "scheduler")])
def test_bad_input(kwargs, name, tmp_path):
    with pytest.raises(ValueError, match=name):
        run_ensemble(CONFIG, out_dir=tmp_path, **kwargs)


@pytest.mark.parametrize("threads", [0, 1.5])
def test_bad_threads(threads, tmp_path):
    with pytest.raises(ValueError, match=r"\[grid\] threads"):
        run_ensemble({**CONFIG, "grid": {**CONFIG["grid"], "threads": threads}}, 2, out_dir=tmp_path)


def test_worker_warnings_come_back_as_one_line_each(tmp_path, capfd):
    """The issue: a warning in a dask worker was printed by the worker's process as two lines (file:line, then the
    source line). It is now issued by the command's process: one line, once per kind, with its realizations."""
    config = tmp_path / "ens.toml"
    config.write_text(toml_text(_changed("model", "beta", 8.0)))  # n = 24 does not resolve the kernel at beta 8
    capfd.readouterr()
    assert main(["ensemble", str(config), "--realizations", "2", "--workers", "1", "-o", str(tmp_path / "ens.nc"),
                 "--no-progress"]) == 0
    err = [line for line in capfd.readouterr().err.splitlines() if "Warning" in line or "DensityEquation" in line]
    assert len(err) == 1, err  # a worker printed "…/density.py:412: ResolutionWarning: …" and "  equation = …"
    assert err[0].startswith("ResolutionWarning: CircleGrid(n=24") and err[0].endswith("[in 2 of 2 realizations]")


def test_worker_warnings_reach_the_caller(tmp_path):
    from spde_tokens import ResolutionWarning

    with pytest.warns(ResolutionWarning, match=r"does not resolve the attention kernel .* \[realization 0\]"):
        run_ensemble(_changed("model", "beta", 8.0), 1, n_workers=1, out_dir=tmp_path, progress=False)


def test_an_ensemble_of_lagrangian_runs_keeps_each_hand_over(tmp_path):
    """Realizations hand over at their own times (the noise sharpens each differently): the ensemble keeps each time
    and each realization's node weights, and its statistics run across the hand-over."""
    config = {**CONFIG, "grid": {"n": 12}, "run": {**CONFIG["run"], "t_end": 1.0, "save_every": 0.1}}
    ens = run_ensemble(config, 3, n_workers=1, out_dir=tmp_path / "parts", progress=False)
    handover = ens.handover_time.values
    assert np.all((handover > 0) & (handover < 1.0))
    assert ens.weights.dims == ("realization", "node")
    for r in range(3):
        one = xr.open_dataset(_part_path(str(tmp_path / "parts"), "density", r), engine="netcdf4")
        assert one.attrs["handover_time"] == handover[r]
        np.testing.assert_array_equal(ens.weights.values[r], one.weights.values)
        one.close()
    assert np.all(np.isfinite(ens.energy_mean.values))
    np.testing.assert_allclose(ens.mass.values, 1.0, rtol=0, atol=1e-12)
