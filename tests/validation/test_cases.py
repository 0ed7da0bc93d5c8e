"""Every validation case of DESIGN 5 in quick mode: its rows pass, its NetCDF and figure exist and are usable.

Opt-in (``python -m pytest -m slow tests/validation/test_cases.py``): each case takes seconds to a minute; the low
temperature case has its own module (``test_low_temperature.py``) with unit tests of its parts. A row that tests
theory must pass. A row that checks a claim of DESIGN 5 found to be wrong (listed in ``DISAGREEMENTS``) must have the
verdict "disagrees", with the evidence in ``measured``.
"""

import importlib
import math
import numbers

import numpy as np
import pytest
import xarray as xr

from spde_tokens.validation import CASE_NAMES

pytestmark = pytest.mark.slow

CASES = tuple(name for name in CASE_NAMES if name != "low_temperature")
KEYS = {"case", "quantity", "expected", "measured", "tolerance", "verdict"}
#: rows (by the start of their quantity) that check a statement of DESIGN 5 found to be wrong (see docs/mathematics.md)
DISAGREEMENTS = {"synchronization": ("mean_rate/DESIGN_claim",)}


def _is_disagreement(name: str, row: dict) -> bool:
    return any(row["quantity"].startswith(tag) for tag in DISAGREEMENTS.get(name, ()))


@pytest.mark.parametrize("name", CASES)
def test_case_passes_and_writes_its_outputs(name, tmp_path):
    from PIL import Image

    module = importlib.import_module(f"spde_tokens.validation.{name}")
    assert module.NAME == name and isinstance(module.TITLE, str) and module.TITLE
    rows = module.run(str(tmp_path), quick=True)  # under conftest's np.seterr(all="raise"), underflow ignored

    assert isinstance(rows, list) and rows
    for row in rows:
        assert KEYS <= set(row), row
        assert row["case"].split("/")[0] == name
        assert all(isinstance(row[k], str) and row[k] for k in ("quantity", "tolerance"))
        assert isinstance(row["expected"], (str, numbers.Real))
        # a number must be finite; a text carries the number with its context
        assert isinstance(row["measured"], str) or math.isfinite(row["measured"]), row
        assert row["verdict"] in ("pass", "fail", "disagrees")

    with xr.open_dataset(tmp_path / f"{name}.nc", decode_timedelta=False) as ds:
        assert ds.attrs["Conventions"] == "CF-1.8"
        for key in ("title", "history", "source"):
            assert ds.attrs[key]
        for var in ds.variables.values():
            assert "units" in var.attrs and "long_name" in var.attrs, var.name
        assert list(ds["row_verdict"].values) == [row["verdict"] for row in rows]

    with Image.open(tmp_path / f"{name}.png") as image:
        image.verify()
    with Image.open(tmp_path / f"{name}.png") as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert min(pixels.shape) >= 400
    assert pixels.std() > 5 and (pixels < 128).mean() > 0.005  # drawn on, not a blank canvas

    # last, so that a failing row does not hide a broken output file
    for tag in DISAGREEMENTS.get(name, ()):
        assert any(row["quantity"].startswith(tag) for row in rows), tag
    wrong = [row for row in rows if _is_disagreement(name, row) and row["verdict"] != "disagrees"]
    assert not wrong, f"a recorded disagreement now passes, update docs/mathematics.md and this test: {wrong}"
    failed = [f"{row['quantity']}: expected {row['expected']}, measured {row['measured']} ({row['tolerance']})"
              for row in rows if not _is_disagreement(name, row) and row["verdict"] != "pass"]
    assert not failed, "\n".join(failed)
