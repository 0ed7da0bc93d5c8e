"""The exact-solution validation cases of DESIGN 5 in quick mode: every row passes, the outputs exist and are usable.

Opt-in (``python -m pytest -m slow tests/validation/test_exact_cases.py``): each case takes seconds to a minute.
"""

import importlib
import math
import numbers

import numpy as np
import pytest
import xarray as xr

pytestmark = pytest.mark.slow

CASES = ("ott_antonsen", "equiangular", "energy_mass", "linear_growth")
KEYS = {"case", "quantity", "expected", "measured", "tolerance", "verdict"}


@pytest.mark.parametrize("name", CASES)
def test_case_passes_and_writes_its_outputs(name, tmp_path):
    from PIL import Image

    module = importlib.import_module(f"spde_tokens.validation.{name}")
    assert module.NAME == name and isinstance(module.TITLE, str) and module.TITLE
    rows = module.run(str(tmp_path), quick=True)

    assert isinstance(rows, list) and rows
    for row in rows:
        assert set(row) == KEYS, row
        assert row["case"] == name
        assert isinstance(row["quantity"], str) and row["quantity"]
        assert isinstance(row["tolerance"], str) and row["tolerance"]
        assert isinstance(row["expected"], (str, numbers.Real))
        assert isinstance(row["measured"], numbers.Real)
        assert row["verdict"] in ("pass", "fail")  # these cases check no claim of DESIGN 5 in doubt

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
    failed = [f"{row['quantity']}: expected {row['expected']}, measured {row['measured']:.4g} ({row['tolerance']})"
              for row in rows if row["verdict"] != "pass"]
    assert not failed, "\n".join(failed)
    assert all(math.isfinite(row["measured"]) for row in rows)
