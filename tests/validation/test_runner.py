"""The runner of a validation case: what it writes (NetCDF with rows and CF attributes, the figure), how a broken case
becomes a failing row, and that every case module provides the contract it relies on. Fast: a stub case."""

import importlib
import inspect
import sys
import types

import numpy as np
import pytest
import xarray as xr

from spde_tokens.validation import runner
from spde_tokens.validation.common import check, info


def _stub(monkeypatch, name: str, measure) -> list:
    """A case module ``spde_tokens.validation.<name>`` with this ``measure``; returns the Datasets plot() received."""
    plotted = []
    module = types.ModuleType(f"spde_tokens.validation.{name}", "A stub case.")
    module.NAME, module.TITLE, module.measure = name, "A stub", measure

    def plot(ds, path):
        plotted.append(ds)
        with open(path, "wb") as fh:
            fh.write(b"png")

    module.plot = plot
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(runner, "CASE_NAMES", (*runner.CASE_NAMES, name))
    return plotted


def test_run_case_writes_rows_and_cf_attributes(monkeypatch, tmp_path):
    rows = [check("stub", "x: a number", 1.0, 1.0 + 1e-16, "rounding", True),
            info("stub", "y: a text", "3 of 4", "not judged")]
    data = xr.Dataset({"x": (("t",), np.arange(3.0), {"units": "1", "long_name": "x"})}, attrs={"dt": 0.1})
    plotted = _stub(monkeypatch, "stub", lambda quick: (rows, data))

    got, seconds = runner.run_case("stub", str(tmp_path / "out"), quick=True)
    assert got == rows and seconds >= 0
    with xr.open_dataset(tmp_path / "out" / "stub.nc") as ds:
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["title"] == "spde_tokens validation: A stub"
        assert ds.attrs["case"] == "stub" and ds.attrs["quick"] == 1 and ds.attrs["dt"] == 0.1
        assert "spde_tokens.validation.stub" in ds.attrs["history"] and "quick settings" in ds.attrs["history"]
        assert list(ds["row_verdict"].values) == ["pass", "info"]
        assert list(ds["row_kind"].values) == ["check", "info"]
        assert list(ds["row_measured"].values) == [str(1.0 + 1e-16), "3 of 4"]  # mixed column: texts
        for var in ds.variables.values():
            assert {"units", "long_name"} <= set(var.attrs), var.name
    # the figure is drawn from the Dataset as written: rows and attributes included
    assert len(plotted) == 1 and "row_verdict" in plotted[0] and plotted[0].attrs["case"] == "stub"
    assert (tmp_path / "out" / "stub.png").read_bytes() == b"png"


@pytest.mark.parametrize("measure, message", [
    (lambda quick: 1 / 0, "ZeroDivisionError"),
    (lambda quick: ([check("other", "q", 1, 1, "t", True)], xr.Dataset()), "must return rows of that case"),
    (lambda quick: ([], xr.Dataset()), "must return rows of that case"),
])
def test_a_broken_case_is_one_failing_row(monkeypatch, tmp_path, measure, message):
    _stub(monkeypatch, "stub", measure)
    rows, _ = runner.run_case("stub", str(tmp_path), quick=False)
    assert len(rows) == 1 and rows[0]["verdict"] == "fail" and rows[0]["case"] == "stub"
    assert message in rows[0]["measured"] + rows[0]["tolerance"]
    assert not (tmp_path / "stub.nc").exists()


def test_unknown_case_is_refused(tmp_path):
    with pytest.raises(ValueError, match="case must be one of"):
        runner.run_case("no_such_case", str(tmp_path), quick=True)


@pytest.mark.parametrize("name", runner.CASE_NAMES)
def test_case_module_follows_the_contract(name):
    module = importlib.import_module(f"spde_tokens.validation.{name}")
    assert module.NAME == name and isinstance(module.TITLE, str) and module.TITLE
    assert module.__doc__ and len(module.__doc__) > 500  # equations, claims, parameters, tolerances
    assert list(inspect.signature(module.measure).parameters) == ["quick"]
    assert list(inspect.signature(module.plot).parameters) == ["ds", "path"]
    assert not hasattr(module, "run")  # the runner writes the files, in one place
