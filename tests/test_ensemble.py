"""Ensembles on dask.distributed: identical numbers whatever the workers, restart skips finished realizations."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import xarray as xr

from spde_tokens.ensemble import realization_seed, run_ensemble

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
