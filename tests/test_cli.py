"""The command line as a new user meets it (docs/guide.md, 'Command line'): the default run, the entry points, output
paths, blow-ups, Ctrl-C, warnings, the summary line's flags, and one-line errors."""

import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib

import numpy as np
import pytest
import xarray as xr

import spde_tokens as st
from spde_tokens.cli import main
from spde_tokens.config import DEFAULT_CONFIG
from spde_tokens.records import atomic_write

#: a small S^1 run that clusters (beta = 4) beyond its grid (n = 16): the spectral tail passes 1e-10 at t = 1.4 and
#: the density turns negative at t ≈ 2.6 (measured: min ρ = −0.0042 and tail 2.0e-4 at t = 3); about a second
CIRCLE = """\
[grid]
n = 16
[model]
dim = 2
beta = 4.0
[initial]
kind = "mixture"
weights = [0.5, 0.5]
means = [[1.0, 0.0], [0.0, 1.0]]
kappas = [2.0, 2.0]
[run]
t_end = 1.0
dt = 0.01
save_every = 0.1
# the spectral engine alone: these tests are about its resolution warnings and flags
engine = "spectral"
"""


def _circle(tmp_path):
    path = tmp_path / "circle.toml"
    path.write_text(CIRCLE)
    return path


def _python(*args, **kw):
    return subprocess.run([sys.executable, "-m", "spde_tokens", *args], capture_output=True, text=True, **kw)


def test_default_run_writes_netcdf(tmp_path, capsys):
    out = tmp_path / "run.nc"
    assert main(["run", "-o", str(out), "--no-progress"]) == 0
    summary = capsys.readouterr().out
    assert f"wrote {out}" in summary
    ds = st.open_run(out)
    assert ds.attrs["grid"] == "sphere" and ds.time.attrs["units"] == "1"
    plain = xr.open_dataset(out)  # plain xarray: time stays a float in units "1", not a duration
    assert plain.time.dtype == np.float64 and {"density", "energy", "spectral_tail"} <= set(plain.data_vars)
    plain.close()
    if shutil.which("ncdump"):  # netcdf-bin, installed by `make install`
        header = subprocess.run(["ncdump", "-h", str(out)], capture_output=True, text=True, check=True).stdout
        assert ':Conventions = "CF-1.8"' in header and "density(time, lat, lon)" in header
    # the default is a clustering run: energy grows, mass stays 1 to rounding
    assert ds.energy.values[-1] > ds.energy.values[0]
    np.testing.assert_allclose(ds.mass.values, 1.0, atol=1e-12)
    # it stays resolved (docs/guide.md, 'Command line'): its summary carries no flag
    assert ds.spectral_tail.values.max() <= 1e-10 and "UNDER-RESOLVED" not in summary
    assert "NEGATIVE" not in summary
    assert "spde-tokens run" in ds.attrs["history"].splitlines()[-1]  # the command line that made the file


def test_module_entry_version_and_built_in_configuration():
    proc = _python("config")
    assert proc.returncode == 0 and tomllib.loads(proc.stdout) == tomllib.loads(DEFAULT_CONFIG)
    proc = _python("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"spde-tokens {st.__version__}"


def test_bad_input_exits_with_one_line(tmp_path):
    proc = _python("run", str(tmp_path / "missing.toml"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "missing.toml" in proc.stderr and "Traceback" not in proc.stderr
    proc = _python("ensemble", "x.toml", "--realizations", "zero")  # argparse's errors are one line too
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--realizations" in proc.stderr


def test_debug_before_or_after_the_command(tmp_path, capsys):
    missing = str(tmp_path / "missing.toml")
    assert main(["run", missing]) == 2
    for argv in (["--debug", "run", missing], ["run", missing, "--debug"]):
        with pytest.raises(ValueError, match="missing.toml"):
            main(argv)


def test_validate_help_lists_the_cases(capsys):
    from spde_tokens.validation import CASE_NAMES

    with pytest.raises(SystemExit) as exit_:
        main(["validate", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in CASE_NAMES) and "{cases}" not in text


def test_set_overrides_keys_like_a_file(tmp_path, capsys):
    config, out = _circle(tmp_path), tmp_path / "set.nc"
    argv = ["run", str(config), "-o", str(out), "--no-progress", "--set", "model.beta=2", "--set",
            "noise.bias.gamma=0.3", "--set", "run.seed=7", "--set", "run.t_end=0.1", "--set",
            "model.normalization=unnormalized"]
    assert main(argv) == 0
    ds = st.open_run(out)
    assert ds.attrs["beta"] == 2.0 and ds.attrs["noise_bias_gamma"] == 0.3 and ds.attrs["seed"] == 7
    assert ds.attrs["normalization"] == "unnormalized" and float(ds.time[-1]) == 0.1
    capsys.readouterr()
    assert main(["run", str(config), "-o", str(tmp_path / "x.nc"), "--set", "model.bta=2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--set model.bta=2" in err and "did you mean 'beta'" in err


def test_omitted_tables_are_the_built_in_ones_but_noise_and_particles(tmp_path, capsys):
    config = tmp_path / "model_only.toml"
    config.write_text("[model]\ndim = 3\nbeta = 1.0\n[run]\nt_end = 0.02\ndt = 0.01\n")
    out = tmp_path / "m.nc"
    assert main(["run", str(config), "-o", str(out), "--no-progress", "--set", "grid.lmax=12"]) == 0
    ds = st.open_run(out)
    built_in = tomllib.loads(DEFAULT_CONFIG)
    assert ds.attrs["noise"] == "none" and ds.attrs["grid_lmax"] == 12  # no [noise]: deterministic
    assert tomllib.loads(f"v = {ds.attrs['initial_condition']}")["v"] == built_in["initial"]  # the file's record
    assert main(["particles", str(config), "-o", str(tmp_path / "p.nc")]) == 2  # no [particles]: no tokens
    assert "[particles]" in capsys.readouterr().err


def test_hardmax_tokens_from_a_config(tmp_path, capsys):
    # normalization = "hardmax" without beta (it is ∞): tokens only, no energy record, a summary and a figure
    config = tmp_path / "hardmax.toml"
    config.write_text('[model]\ndim = 3\nnormalization = "hardmax"\nQ = [[1, 0, 0], [0, 0.6, 0], [0, 0, 0.3]]\n'
                      '[run]\nt_end = 0.1\ndt = 0.05\n[particles]\nn = 40\n')
    out = tmp_path / "hardmax.nc"
    assert main(["particles", str(config), "-o", str(out), "--no-progress"]) == 0
    summary = capsys.readouterr().out
    assert "dispersion" in summary and "energy" not in summary
    ds = st.open_run(out)
    assert ds.attrs["normalization"] == "hardmax" and ds.attrs["beta"] == np.inf and "energy" not in ds
    assert main(["plot", str(out), "-o", str(tmp_path / "hardmax.png")]) == 0
    assert main(["run", str(config), "-o", str(tmp_path / "d.nc"), "--no-progress"]) == 2  # the density refuses it
    assert "hardmax" in capsys.readouterr().err


def test_blow_up_saves_the_records_and_says_where(tmp_path, capsys):
    # the run: the built-in configuration with unnormalized attention at beta = 8 and no noise collapses
    # beyond the grid within two steps (lmax 16: at step 2, so the record at t = 0.01 exists)
    config = tmp_path / "collapse.toml"
    config.write_text('[model]\ndim = 3\nbeta = 8.0\nnormalization = "unnormalized"\n')
    out = tmp_path / "collapse.nc"
    code = main(["run", str(config), "-o", str(out), "--no-progress", "--set", "grid.lmax=16", "--set",
                 "run.save_every=0.01", "--set", "run.dt=0.01", "--set", 'run.engine="spectral"'])  # "auto" hands over
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    blow = [line for line in err if "blow-up" in line]
    assert len(blow) == 1 and f"saved in {out}" in blow[0] and "Traceback" not in err
    ds = st.open_run(out)
    np.testing.assert_array_equal(ds.time.values, [0.0, 0.01])  # the records before the blow-up at step 2
    np.testing.assert_allclose(ds.mass.values, 1.0, atol=1e-12)  # mass is conserved to rounding up to then
    assert [name for name in os.listdir(tmp_path) if name.endswith(".nc")] == ["collapse.nc"]  # no temporary left


def _writes_nothing(*args, **kw):
    raise AssertionError("the run started although its output was refused")


def test_output_paths_are_checked_before_computing(tmp_path, capsys, monkeypatch):
    from spde_tokens import config as cfg

    config = _circle(tmp_path)
    monkeypatch.setattr(cfg, "run_density", _writes_nothing)
    existing = tmp_path / "old.nc"
    existing.write_bytes(b"old")
    cases = [
        (["-o", str(tmp_path / "missing" / "run.nc")], "does not exist"),
        (["-o", str(existing)], "exists; pass --overwrite"),
        (["-o", str(config), "--overwrite"], "input of this command"),  # never the configuration itself
        (["-o", str(tmp_path)], "is a folder"),
        (["-o", str(tmp_path / "a.nc"), "--checkpoint", str(tmp_path / "a.nc")], "also the output"),
        (["-o", str(tmp_path / "a.nc"), "--checkpoint", str(tmp_path / "missing" / "ck.nc")], "does not exist"),
        (["-o", str(tmp_path / "a.nc"), "--checkpoint", str(config)], "configuration file"),
    ]
    for options, message in cases:
        assert main(["run", str(config), *options]) == 2, options
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (options, err)
    assert existing.read_bytes() == b"old" and config.read_text() == CIRCLE


def test_overwrite_replaces_an_existing_file(tmp_path, capsys):
    config, out = _circle(tmp_path), tmp_path / "run.nc"
    out.write_bytes(b"old")
    assert main(["run", str(config), "-o", str(out), "--no-progress", "--overwrite", "--set", "run.t_end=0.1"]) == 0
    assert float(st.open_run(out).time[-1]) == 0.1
    png = tmp_path / "run.png"
    assert main(["plot", str(out)]) == 0 and png.exists()  # default name RUN.png
    assert main(["plot", str(out)]) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(["plot", str(out), "--overwrite"]) == 0
    assert main(["animate", str(out), "-o", str(tmp_path / "movie.png")]) == 2
    assert ".gif" in capsys.readouterr().err


def test_final_file_is_replaced_atomically(tmp_path):
    target = tmp_path / "run.nc"
    target.write_bytes(b"old")

    def fails_halfway(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(str(target), fails_halfway)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["run.nc"]  # old file intact, no temporary
    atomic_write(str(target), lambda tmp: open(tmp, "wb").write(b"new"))
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["run.nc"]


def test_validate_accepts_an_existing_folder_and_replaces_only_with_overwrite(tmp_path, capsys, monkeypatch):
    from spde_tokens.validation import report

    calls = []
    monkeypatch.setattr(report, "run_validation", lambda out, quick, cases, docs: calls.append(cases) or [])
    folder = tmp_path / "val"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")  # a non-empty folder of the user's
    assert main(["validate", "--quick", "-o", str(folder), "--case", "energy_mass"]) == 0
    (folder / "energy_mass.nc").write_bytes(b"earlier run")
    assert main(["validate", "--quick", "-o", str(folder), "--case", "energy_mass"]) == 2
    assert "energy_mass.nc" in capsys.readouterr().err
    assert main(["validate", "--quick", "-o", str(folder), "--case", "linear_growth"]) == 0  # replaces nothing
    assert main(["validate", "--quick", "-o", str(folder), "--case", "energy_mass", "--overwrite"]) == 0
    assert calls == [["energy_mass"], ["linear_growth"], ["energy_mass"]]
    assert main(["validate", "-o", str(folder / "notes.txt")]) == 2 and "is a file" in capsys.readouterr().err
    assert main(["validate", "-o", str(folder), "--case", "no_such_case"]) == 2
    assert "--case must be one of" in capsys.readouterr().err


def test_the_command_that_generated_the_validation_page_regenerates_it(tmp_path, capsys, monkeypatch):
    """The issue: docs/validation.md said it was generated by a command that, run again, refuses to replace the page
    (and the figures and reports of the earlier run) without --overwrite."""
    import re
    import shlex

    from spde_tokens.validation import report

    page = os.path.join(os.path.dirname(__file__), "..", "docs", "validation.md")
    with open(page, encoding="utf-8") as f:
        command = re.search(r"Generated by `spde-tokens ([^`]+)`", f.read()).group(1)
    argv = shlex.split(command)
    calls = []
    monkeypatch.setattr(report, "run_validation", lambda out, quick, cases, docs: calls.append(docs) or [])
    monkeypatch.chdir(tmp_path)
    docs = argv[argv.index("--docs") + 1]
    os.makedirs(os.path.dirname(docs) or ".", exist_ok=True)
    with open(docs, "w") as f:
        f.write("# Validation (the page of an earlier run)")
    os.makedirs("validation_out")
    with open(os.path.join("validation_out", "report.md"), "w") as f:
        f.write("the report of an earlier run")
    assert main(argv) == 0, capsys.readouterr().err
    assert calls == [docs]


def test_warnings_are_one_line_and_a_resumed_run_says_so(tmp_path, capsys):
    config, ck = _circle(tmp_path), tmp_path / "ck.nc"
    assert main(["run", str(config), "-o", str(tmp_path / "a.nc"), "--checkpoint", str(ck), "--no-progress",
                 "--set", "run.t_end=2.0"]) == 0
    first = capsys.readouterr().err.splitlines()
    assert main(["run", str(config), "-o", str(tmp_path / "b.nc"), "--checkpoint", str(ck), "--no-progress",
                 "--set", "run.t_end=2.5"]) == 0
    second = capsys.readouterr().err.splitlines()
    assert "resuming from" in second[1] and "step 200 of 250" in second[1]  # after the grid's warning
    for line in first + second:  # each a warning on one line (no source line, no file:line) or the resume log
        assert line.startswith("ResolutionWarning: ") or line.startswith("resuming from"), line
    # the under-resolution warning of each run once (the first at t = 1.4, where the tail passes 1e-10)
    assert sum("under-resolved at t" in line for line in first) == 1
    assert any("under-resolved at t = 1.4" in line for line in first)


def test_summary_flags_under_resolution_and_negative_density(tmp_path, capsys):
    config, out = _circle(tmp_path), tmp_path / "c.nc"
    assert main(["run", str(config), "-o", str(out), "--no-progress", "--set", "run.t_end=3.0"]) == 0
    summary = capsys.readouterr().out
    ds = st.open_run(out)
    t, tail = ds.time.values, ds.spectral_tail.values
    low, high = ds.density.min("theta").values, ds.density.max("theta").values
    negative = low < -1e-10 * high  # the guide's threshold
    assert tail.max() > 1e-10 and negative.any() and low.min() < -1e-3  # the run, measured
    assert (f"UNDER-RESOLVED (spectral tail {tail.max():.1e} > 1e-10 at t = {t[np.argmax(tail)]:g}, above since "
            f"t = {t[tail > 1e-10][0]:g})") in summary
    assert (f"NEGATIVE DENSITY (min ρ = {low.min():.2g} at t = {t[np.argmin(low)]:g}, below −1e-10 · max ρ since "
            f"t = {t[negative][0]:g})") in summary


def test_ctrl_c_says_where_the_checkpoint_is(tmp_path, capsys):
    import netCDF4

    config, ck = tmp_path / "long.toml", tmp_path / "ck.nc"
    config.write_text(CIRCLE.replace("t_end = 1.0", "t_end = 1000.0").replace("save_every = 0.1", "save_every = 0.01"))
    # SIGINT may be ignored by the process running the tests (a background job): the child gets the default
    proc = subprocess.Popen([sys.executable, "-m", "spde_tokens", "run", str(config), "-o", str(tmp_path / "x.nc"),
                             "--checkpoint", str(ck), "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not ck.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    *warned, last = err.splitlines()
    assert proc.returncode == 130 and all(line.startswith("ResolutionWarning: ") for line in warned)
    with netCDF4.Dataset(ck) as nc:
        step = int(nc.getncattr("checkpoint_step"))
    assert last == (f"spde-tokens run: interrupted; the checkpoint {ck} holds the run at t = {step * 0.01:.12g} "
                    f"(step {step}): the same command resumes it")
    assert not (tmp_path / "x.nc").exists()
    # the checkpoint is whole: a run to a nearer end resumes from it
    assert main(["run", str(config), "-o", str(tmp_path / "x.nc"), "--checkpoint", str(ck), "--no-progress",
                 "--set", f"run.t_end={(step + 5) * 0.01:.12g}"]) == 0
    assert f"resuming from {ck}: step {step} of {step + 5}" in capsys.readouterr().err


def test_plot_animate_compare_commands(tmp_path, capsys):
    from PIL import Image

    config = tmp_path / "small.toml"
    config.write_text(DEFAULT_CONFIG.replace("lmax = 31", "lmax = 16").replace("t_end = 10.0", "t_end = 0.1")
                      .replace("n = 2048", "n = 200"))
    dens, parts, cmp = tmp_path / "d.nc", tmp_path / "p.nc", tmp_path / "c.nc"
    assert main(["run", str(config), "-o", str(dens), "--no-progress"]) == 0
    assert main(["particles", str(config), "-o", str(parts), "--no-progress"]) == 0
    assert main(["compare", str(dens), str(parts), "-o", str(cmp)]) == 0
    for source in (dens, parts, cmp):
        png = tmp_path / f"{source.stem}.png"
        assert main(["plot", str(source), "-o", str(png)]) == 0
        with Image.open(png) as image:
            assert np.asarray(image.convert("L")).std() > 20  # not blank
    gif = tmp_path / "d.gif"
    assert main(["animate", str(dens), "-o", str(gif)]) == 0
    with Image.open(gif) as image:
        assert image.n_frames == st.open_run(dens).sizes["time"]
    assert "wrote" in capsys.readouterr().out
    assert main(["compare", str(dens), str(parts), "-o", str(dens), "--overwrite"]) == 2  # never an input
    assert "input of this command" in capsys.readouterr().err


def test_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nlmax = 16\n[model]\ndim = 3\nbeta = -1.0\n[initial]\nkind = \"uniform\"\n"
                   "[run]\nt_end = 0.1\ndt = 0.01\n")
    assert main(["run", str(bad), "-o", str(tmp_path / "x.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "beta" in err
    assert main(["plot", str(tmp_path / "missing.nc")]) == 2
    assert "does not exist" in capsys.readouterr().err


#: a zonal run on S^63 (docs/guide.md, 'Configuration files'): tokens of a vMF cap about e_d cluster; about a second
ZONAL = """\
[grid]
kind = "zonal"
dim = 64
lmax = 63
[model]
dim = 64
beta = 4.0
[initial]
kind = "von_mises_fisher"
mean = [1.0]
kappa = 8.0
[run]
t_end = 1.0
dt = 0.025
save_every = 0.25
"""


def test_zonal_run_file_and_plot(tmp_path, capsys):
    """``spde-tokens run`` on a zonal configuration: density and law_s on the coordinate s (CF attributes), the Gauss
    weights of σ, no flag; ``spde-tokens plot`` draws it."""
    config = tmp_path / "zonal.toml"
    config.write_text(ZONAL)
    out = tmp_path / "zonal.nc"
    assert main(["run", str(config), "-o", str(out), "--no-progress"]) == 0
    summary = capsys.readouterr().out
    assert "UNDER-RESOLVED" not in summary and "NEGATIVE" not in summary
    ds = st.open_run(out)
    assert ds.attrs["grid"] == "zonal" and ds.attrs["grid_dim"] == 64 and ds.attrs["grid_lmax"] == 63
    assert ds.density.dims == ds.law_s.dims == ("time", "s") and ds.s.attrs["units"] == "1"
    assert "normalized" in ds.density.attrs["long_name"] and {"long_name", "units"} <= set(ds.law_s.attrs)
    # the law of s integrates to 1: Σ_i w_i ρ_i = ∫ ρ dσ (the Gauss weights of σ are in the file)
    np.testing.assert_allclose((ds.gauss_weight * ds.density).sum("s").values, 1.0, rtol=1e-12)
    assert ds.mean_vector.sizes["component"] == 64 and ds.energy.values[-1] > ds.energy.values[0]
    assert main(["plot", str(out), "--overwrite"]) == 0
    assert (tmp_path / "zonal.png").stat().st_size > 10_000
