"""The command line: the default run writes a readable NetCDF file; bad input exits non-zero with one line."""

import shutil
import subprocess
import sys

import numpy as np
import xarray as xr

import spde_tokens as st
from spde_tokens.cli import main


def test_default_run_writes_netcdf(tmp_path, capsys):
    out = tmp_path / "run.nc"
    assert main(["run", "-o", str(out), "--no-progress"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
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


def test_bad_input_exits_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "spde_tokens.cli", "run", str(tmp_path / "missing.toml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "error" in proc.stderr and "Traceback" not in proc.stderr


def test_plot_animate_compare_commands(tmp_path, capsys):
    from PIL import Image

    config = tmp_path / "small.toml"
    from spde_tokens.config import DEFAULT_CONFIG

    config.write_text(DEFAULT_CONFIG.replace("lmax = 63", "lmax = 16").replace("t_end = 1.1", "t_end = 0.1")
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


def test_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid]\nlmax = 16\n[model]\ndim = 3\nbeta = -1.0\n[initial]\nkind = \"uniform\"\n"
                   "[run]\nt_end = 0.1\ndt = 0.01\n")
    assert main(["run", str(bad), "-o", str(tmp_path / "x.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "beta" in err
    assert main(["plot", str(tmp_path / "missing.nc")]) == 2
    assert "does not exist" in capsys.readouterr().err
