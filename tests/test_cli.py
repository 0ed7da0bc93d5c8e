"""The command line: the default run writes a readable NetCDF file; bad input exits non-zero with one line."""

import subprocess
import sys

import numpy as np

import spde_tokens as st
from spde_tokens.cli import main


def test_default_run_writes_netcdf(tmp_path, capsys):
    out = tmp_path / "run.nc"
    assert main(["run", "-o", str(out), "--no-progress"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    ds = st.open_run(out)
    assert ds.attrs["grid"] == "sphere" and ds.time.attrs["units"] == "1"
    # the default is a clustering run: energy grows, mass stays 1 to rounding
    assert ds.energy.values[-1] > ds.energy.values[0]
    np.testing.assert_allclose(ds.mass.values, 1.0, atol=1e-12)


def test_bad_input_exits_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "spde_tokens.cli", "run", str(tmp_path / "missing.toml")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "error" in proc.stderr and "Traceback" not in proc.stderr
