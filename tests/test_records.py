"""Checkpoints (docs/guide.md, 'Checkpoints'): atomic writes, SIGKILL at any moment, bit-identical restart."""

import signal
import subprocess
import sys
import time

import netCDF4
import numpy as np
import pytest

import spde_tokens as st
from spde_tokens.config import DEFAULT_CONFIG
from spde_tokens.records import TimeGrid

CONFIG = DEFAULT_CONFIG.replace("t_end = 10.0", "t_end = 0.8").replace("save_every = 0.1", "save_every = 0.02")


def _start(config, out, ck):
    return subprocess.Popen([sys.executable, "-m", "spde_tokens.cli", "run", str(config), "-o", str(out),
                             "--checkpoint", str(ck), "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _checkpoint_step(ck) -> int:
    try:
        with netCDF4.Dataset(ck) as nc:
            return int(nc.getncattr("checkpoint_step"))
    except (OSError, AttributeError):
        return -1


def test_sigkill_and_restart_is_bit_identical(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(CONFIG)
    reference = tmp_path / "reference.nc"
    proc = _start(config, reference, tmp_path / "ref_ck.nc")
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    ref = st.open_run(reference)
    n_steps = int(ref.attrs["n_steps"])
    # the first kill falls before the hand-over to the Lagrangian engine, the others after it
    assert 0.1 * 0.8 < ref.attrs["handover_time"] < 0.45 * 0.8
    ck = tmp_path / "ck.nc"
    out = tmp_path / "out.nc"
    # kill at several moments of the run (after the checkpoints of 10%, 45% and 70% of the steps, somewhere inside
    # the following record interval), restarting from the checkpoint each time
    for fraction in (0.1, 0.45, 0.7):
        proc = _start(config, out, ck)
        while _checkpoint_step(ck) < fraction * n_steps and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not out.exists()  # killed before the end
        assert _checkpoint_step(ck) >= fraction * n_steps  # and the checkpoint is whole and readable
    proc = _start(config, out, ck)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    res = st.open_run(out)
    for name in ref.data_vars:
        np.testing.assert_array_equal(res[name].values, ref[name].values, err_msg=name)
    np.testing.assert_array_equal(res.time.values, ref.time.values)


def test_particle_checkpoint_resumes_bit_identical(tmp_path, monkeypatch):
    from spde_tokens import particles

    x0 = st.initial.sample(st.initial.von_mises_fisher(st.SphereGrid(12), [0, 0, 1], 2.0), 64, seed=0)
    noise = st.BiasNoise(0.3) + st.IdiosyncraticNoise(0.01)
    model = st.AttentionModel(3, 1.0)
    full = st.simulate_particles(model, noise, x0, t_end=0.5, dt=0.01, seed=2, save_every=0.1)
    ck = tmp_path / "ck.nc"
    calls = {"n": 0}
    original = particles.TokenDynamics.layer_step

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 27:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(particles.TokenDynamics, "layer_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        st.simulate_particles(model, noise, x0, t_end=0.5, dt=0.01, seed=2, save_every=0.1, checkpoint=ck)
    monkeypatch.setattr(particles.TokenDynamics, "layer_step", original)
    assert st.open_run(ck).attrs["checkpoint_step"] == 20  # the last record before the interruption
    res = st.simulate_particles(model, noise, x0, t_end=0.5, dt=0.01, seed=2, save_every=0.1, checkpoint=ck)
    np.testing.assert_array_equal(res.positions.values, full.positions.values)
    with pytest.raises(ValueError, match="seed"):
        st.simulate_particles(model, noise, x0, t_end=0.5, dt=0.01, seed=3, save_every=0.1, checkpoint=ck)


def test_time_grid():
    tg = TimeGrid.build(1.0, 0.1, 0.3)
    assert tg.n_steps == 10 and tg.stride == 3 and [s for s in range(11) if tg.is_record(s)] == [0, 3, 6, 9, 10]
    assert TimeGrid.build(1.0, 1 / 3).n_steps == 3  # 1/(1/3) = 3 within 1e-9
    with pytest.raises(ValueError, match="t_end"):
        TimeGrid.build(1.0, 0.3)


def test_ctrl_c_during_a_write_comes_after_the_file_is_complete(tmp_path, monkeypatch):
    """The issue: Ctrl-C during a checkpoint or output write left a half-written file. SIGINT arrives in the middle
    of the write; the file is written whole, then KeyboardInterrupt is raised."""
    import os

    import xarray as xr

    from spde_tokens.records import Checkpoint

    original = xr.Dataset.to_netcdf
    interrupted = []

    def to_netcdf(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, then the write goes on
        interrupted.append(True)
        return original(self, *args, **kwargs)

    records = xr.Dataset({"positions": (("time", "token"), np.ones((3, 4)))}, coords={"time": [0.0, 0.1, 0.2]})
    ck = Checkpoint(tmp_path / "ck.nc", {"seed": 1})
    monkeypatch.setattr(xr.Dataset, "to_netcdf", to_netcdf)
    with pytest.raises(KeyboardInterrupt):
        ck.save({"x": np.arange(6.0).reshape(2, 3)}, 20, records)
    assert interrupted == [True]  # interrupted in the first write (the records part), which finished all the same
    monkeypatch.setattr(xr.Dataset, "to_netcdf", original)
    part = tmp_path / "ck.nc.records" / f"{20:012d}.nc"
    with xr.open_dataset(part, engine="netcdf4") as ds:
        np.testing.assert_array_equal(ds.positions.values, records.positions.values)
    assert sorted(p.name for p in part.parent.iterdir()) == [part.name]  # no temporary file left
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())  # and SIGINT unblocked


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    import xarray as xr

    from spde_tokens.records import _atomic_netcdf

    path = tmp_path / "state.nc"
    _atomic_netcdf(xr.Dataset({"x": ("i", [1.0, 2.0])}), str(path))

    def broken(self, target, *args, **kwargs):
        with open(target, "wb") as f:
            f.write(b"CDF half")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        _atomic_netcdf(xr.Dataset({"x": ("i", [3.0])}), str(path))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["state.nc"]
    with xr.open_dataset(path, engine="netcdf4") as ds:
        np.testing.assert_array_equal(ds.x.values, [1.0, 2.0])


def test_records_dataset_is_the_plain_xarray_dataset(monkeypatch):
    """The records are built on coordinates prebuilt once per grid (docs/numerics.md, 'Start-up and fixed costs'):
    the Dataset must be the one plain xarray builds from the same values, variables, coordinates and attributes,
    and nothing in it may be shared with the next run's."""
    import xarray as xr

    from spde_tokens import records
    from spde_tokens._version import __version__

    monkeypatch.setattr(records, "utc_stamp", lambda: "2000-01-01T00:00:00Z")
    grid = st.SphereGrid(8)
    model = st.AttentionModel(3, 1.0, V=np.diag([1.0, 2.0, 0.5]))
    variables = {"density": (grid.dims, {"long_name": "rho", "units": "1"}),
                 "power_spectrum": (("degree",), {"long_name": "P_l", "units": "1"}),
                 "mean_vector": (("component",), {"long_name": "m", "units": "1"}),
                 "mass": ((), {"long_name": "mass", "units": "1"})}
    run_attrs = {"title": "a test run", **grid.attrs()}
    rng = np.random.default_rng(0)
    times = [0.0, 0.25, 0.5]
    values = [{"density": rng.random(grid.shape), "power_spectrum": rng.random(9), "mean_vector": rng.random(3),
               "mass": rng.random()} for _ in times]

    def fast() -> xr.Dataset:
        recorder = records.Recorder(variables, records.record_coordinates(grid), run_attrs, model)
        for t, v in zip(times, values, strict=True):
            recorder.add(t, v)
        return recorder.dataset()

    ds = fast()
    area_name, area = records.cell_measure(grid.attrs())
    reference = xr.Dataset(
        {"density": (("time", *grid.dims), np.stack([v["density"] for v in values]),
                     {"long_name": "rho", "units": "1", "cell_measures": "area: area"}),
         "power_spectrum": (("time", "degree"), np.stack([v["power_spectrum"] for v in values]),
                            {"long_name": "P_l", "units": "1"}),
         "mean_vector": (("time", "component"), np.stack([v["mean_vector"] for v in values]),
                         {"long_name": "m", "units": "1"}),
         "mass": (("time",), np.array([v["mass"] for v in values]), {"long_name": "mass", "units": "1"}),
         **{name: (("row", "column"), mat, {"long_name": f"attention matrix {name}", "units": "1"})
            for name, mat in model.matrices().items()},
         area_name: area},
        coords={"time": ("time", times, {"units": "1", "long_name": "depth (dimensionless time)"}),
                **{name: xr.Variable(*spec) for name, spec in grid.coords().items()},
                "degree": ("degree", np.arange(9), {"long_name": "harmonic degree", "units": "1"}),
                "component": ("component", np.arange(3), {"long_name": "Cartesian component", "units": "1"})},
        attrs={"Conventions": "CF-1.8", "source": f"spde_tokens {__version__}",
               "history": f"2000-01-01T00:00:00Z created by spde_tokens {__version__}", **model.attrs(), **run_attrs})
    xr.testing.assert_identical(ds, reference)
    assert set(ds.xindexes) == {"time", "lat", "lon", "degree", "component"}
    # a user's changes to one run's coordinates do not reach the next run's
    ds.lat.attrs["units"] = "changed"
    ds["degree"].attrs.clear()
    with pytest.raises(ValueError):  # index values are read-only, as in any xarray object
        ds.lon.values[0] = 1.0
    xr.testing.assert_identical(fast(), reference)
