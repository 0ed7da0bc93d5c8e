"""Every validation case in quick mode, through the runner: its rows pass, its NetCDF file and figure exist and are
usable, and the figure can be drawn again from the file alone.

Opt-in (``python -m pytest -m slow tests/validation/test_cases.py``): each case takes seconds to a minute; the low
temperature case has its own module (``test_low_temperature.py``) with unit tests of its parts. Every row with a
verdict must pass: a check that fails is a bug, and a published claim that the data contradict ("disagrees") is a
finding to be written into docs/mathematics.md, 'Corrections to earlier statements', before this test is changed.
"""

import importlib
import math

import numpy as np
import pytest
import xarray as xr

from spde_tokens.validation import CASE_NAMES
from spde_tokens.validation.common import INFO, KINDS
from spde_tokens.validation.runner import run_case

pytestmark = pytest.mark.slow

CASES = tuple(name for name in CASE_NAMES if name != "low_temperature")


def _figure_is_drawn(path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert min(pixels.shape) >= 400
    assert pixels.std() > 5 and (pixels < 128).mean() > 0.005  # drawn on, not a blank canvas


@pytest.mark.parametrize("name", CASES)
def test_case_passes_and_writes_its_outputs(name, tmp_path):
    rows, seconds = run_case(name, str(tmp_path), quick=True)  # under conftest's np.seterr(all="raise")
    assert rows and seconds > 0
    for row in rows:
        assert row["case"] == name and row["kind"] in KINDS
        assert all(isinstance(row[k], str) and row[k] for k in ("quantity", "tolerance"))
        # a number must be finite; a text carries the number with its context
        assert isinstance(row["measured"], str) or math.isfinite(row["measured"]), row
        assert row["verdict"] == {"check": "pass", "claim": "pass", "info": INFO}[row["kind"]], row
    if any(row["kind"] == "claim" for row in rows):  # a claim comes with checks of the mathematics behind it
        assert any(row["kind"] == "check" for row in rows)

    with xr.open_dataset(tmp_path / f"{name}.nc", decode_timedelta=False) as ds:
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["case"] == name and ds.attrs["quick"] == 1
        assert all(ds.attrs[key] for key in ("title", "history", "source"))
        for var in ds.variables.values():
            assert "units" in var.attrs and "long_name" in var.attrs, var.name
        assert list(ds["row_verdict"].values) == [row["verdict"] for row in rows]
        assert list(ds["row_kind"].values) == [row["kind"] for row in rows]
        # the figure needs nothing but the file
        module = importlib.import_module(f"spde_tokens.validation.{name}")
        module.plot(ds.load(), str(tmp_path / "again.png"))
    _figure_is_drawn(tmp_path / f"{name}.png")
    _figure_is_drawn(tmp_path / "again.png")
