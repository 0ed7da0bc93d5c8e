"""Every Python example in README.md and docs/*.md runs as written, and what it prints and computes holds.

Each example must check something: every boolean it prints must be True, and every run it leaves in its
namespace must satisfy the identities of the model (docs/mathematics.md, 'The published phenomena', 'Energy
monotonicity and mass'); a file it writes must read back identical to the run it came from.
"""

import os
import pathlib
import re

import numpy as np
import pytest
import xarray as xr

import spde_tokens as st

ROOT = pathlib.Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(path, i, code) for path in FILES
          for i, code in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), re.S))]


def _check_run(ds: xr.Dataset) -> None:
    """The identities every run of an example satisfies, whatever it prints."""
    if ds.attrs["engine"] == "density":
        assert np.all(np.isfinite(ds.density.values))
        # the divergence has no degree-0 coefficient and st.initial densities have mass 1: rounding of ≤ 100
        # steps of a few ε each stays far below 1e-12
        np.testing.assert_allclose(ds.mass.values, 1.0, rtol=0, atol=1e-12)
        identity = all(np.array_equal(ds[name].values, np.eye(ds.attrs["model_dim"])) for name in "QKV")
        if ds.attrs["noise"] == "none" and identity:
            # E_beta is nondecreasing along the deterministic Q = K = V = I flow; rounding of its spectral sum
            e = ds.energy.values
            assert np.all(np.diff(e) >= -1e-13 * np.abs(e).max()), e
    else:
        # the layer update and the flow end every step with a normalization: |x| = 1 up to a few ε
        norms = np.linalg.norm(ds.positions.values, axis=-1)
        np.testing.assert_allclose(norms, 1.0, rtol=0, atol=1e-14)


@pytest.mark.parametrize(("path", "index", "code"), BLOCKS, ids=[f"{p.name}-{i}" for p, i, _ in BLOCKS])
def test_example_runs(path, index, code, tmp_path, capsys):
    namespace = {"__name__": "__docs__"}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(code, f"{path.name}[{index}]", "exec"), namespace)
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert out.strip(), "the example prints nothing"
    printed = re.findall(r"\b(?:True|False)\b", out)
    assert "False" not in printed, out  # the checks the example prints
    runs = [v for v in namespace.values() if isinstance(v, xr.Dataset) and "engine" in v.attrs]
    for ds in runs:
        _check_run(ds)
    in_memory = [ds for ds in runs if "source" not in ds.encoding]  # not read from a file
    for file in sorted(tmp_path.glob("*.nc")):
        back = st.open_run(file)
        assert any(back.identical(ds) for ds in in_memory), f"{file.name} differs from every run of the example"
    assert printed or runs, "the example checks nothing: print a check (True/False) or make a run"
