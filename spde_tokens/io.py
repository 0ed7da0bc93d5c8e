"""NetCDF-4 writing and reading of run Datasets, their provenance attributes, and TOML text of configurations.

The runs set the CF-1.8 attributes (docs/guide.md, 'File format'); :func:`write_run` adds the file-level encoding:
no ``_FillValue`` on coordinates (CF 2.5.1: a coordinate has no missing values) and zlib compression of the data
variables, and appends the command that made the file to ``history``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from typing import Any

import xarray as xr

from spde_tokens.records import BlowUpError, _atomic_netcdf, utc_stamp

#: zlib level of the data variables (with the shuffle filter): the built-in run's file is 2.73 MB at level 4 against
#: 3.58 MB uncompressed (float64 fields of a smooth density compress little) and 2.77 MB at level 1; levels 6 and 9
#: gain under 0.3 % more (measured, 2 cores)
COMPLEVEL = 4

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def append_history(history: str | None, line: str) -> str:
    """``history`` with one more line, ``"<UTC time> <line>"`` (CF 2.6.2: one line per processing step)."""
    new = f"{utc_stamp()} {line}"
    return f"{history}\n{new}" if history else new


def encoding(ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """The NetCDF encoding :func:`write_run` uses: coordinates without ``_FillValue``, data variables compressed
    (zlib level :data:`COMPLEVEL` with the shuffle filter; scalars stay plain); text variables (a density run's
    ``engine``) as character arrays, which CF knows, rather than NetCDF-4 variable-length strings, which it does not."""
    out: dict[str, dict[str, Any]] = {str(name): {"_FillValue": None} for name in ds.coords}
    for name, var in ds.data_vars.items():
        out[str(name)] = {"zlib": True, "complevel": COMPLEVEL, "shuffle": True} if var.ndim else {}
        if var.dtype.kind in "USO":
            out[str(name)]["dtype"] = "S1"
    return out


def write_run(ds: xr.Dataset, path: str | os.PathLike, history: str | None = None) -> str:
    """Write a run Dataset as NetCDF-4 (netCDF4 engine), atomically, and return the path.

    The file is written to ``path + ".tmp"`` in the same folder, flushed with fsync and renamed over ``path`` with
    ``os.replace``, with Ctrl-C held back until it is complete (``records._atomic_netcdf``): a failed or interrupted
    write leaves the old file (or none) and no temporary file, never a part of one.

    Parameters
    ----------
    ds : a Dataset of ``solve_density``, ``simulate_particles``, ``compare`` or ``run_ensemble``.
    path : the file to write (replaced if it exists).
    history : what made the file, e.g. the command line ``"spde-tokens run run.toml -o run.nc"``; appended to the
        file's ``history`` attribute as a line ``"<UTC time> <history>"`` (``ds`` itself is not changed).
    """
    if history is not None and not isinstance(history, str):
        raise ValueError(f"history must be a string (the command that made the file), got {type(history).__name__}")
    out = ds.copy(deep=False)
    for var in out.variables.values():
        var.encoding = {}  # encodings read from other files (chunk sizes, a realization's layout) do not carry over
    for name in [n for n, v in out.data_vars.items() if v.dtype.kind == "O"]:
        out[name] = out[name].astype(str)  # text read back from a file (object dtype): fixed-width for the encoding
    if history:
        out.attrs["history"] = append_history(ds.attrs.get("history"), history)
    path = os.fspath(path)
    _atomic_netcdf(out, path, encoding=encoding(out))
    return path


def open_run(path: str | os.PathLike) -> xr.Dataset:
    """Read a file written by spde_tokens back into memory, identical to the Dataset that was written.

    ``time`` has units "1" (depth is dimensionless), so it is not decoded as a date or a duration;
    ``ds.encoding["source"]`` is the file's path.
    """
    if not os.path.exists(path):
        raise ValueError(f"path {os.fspath(path)!r} does not exist")
    with xr.open_dataset(path, engine="netcdf4", decode_timedelta=False) as ds:
        return ds.load()


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else
                                                         ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are TOML basic-string escapes
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v, where)}" for k, v in value.items()) + " }"
    raise ValueError(f"{where}: a configuration value must be a TOML value (bool, int, float, str, list, table), "
                     f"got {type(value).__name__}")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def toml_text(config: dict[str, dict[str, Any]]) -> str:
    """A configuration (tables of values, as :func:`spde_tokens.config.load_config` returns) as TOML text that
    ``tomllib`` reads back equal; tables nested in a table (the ``[noise]`` models) are written inline."""
    lines = []
    for section, body in config.items():
        if not isinstance(body, dict):
            raise ValueError(f"[{section}] must be a table, got {type(body).__name__}")
        lines.append(f"[{_toml_key(section)}]")
        lines.extend(f"{_toml_key(k)} = {_toml_value(v, f'[{section}] {k}')}" for k, v in body.items())
        lines.append("")
    return "\n".join(lines)


def inline_table(table: dict[str, Any]) -> str:
    """One TOML table as an inline table, e.g. ``{ kind = "uniform" }`` (an attribute that reads as TOML)."""
    return _toml_value(dict(table), "table")


def provenance(config: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The attributes that say how a configured run was made: ``configuration`` (the whole configuration as TOML
    text) and ``initial_condition`` (its ``[initial]`` table inline, e.g. ``{ kind = "uniform" }``)."""
    return {"configuration": toml_text(config), "initial_condition": inline_table(config["initial"])}


def with_attrs(run: Callable[[], xr.Dataset], attrs: dict[str, Any]) -> xr.Dataset:
    """``run()`` with ``attrs`` added to the Dataset it returns, and to the records of a BlowUpError it raises (so
    that the records saved after a blow-up say how they were made too)."""
    try:
        ds = run()
    except BlowUpError as exc:
        if exc.dataset is not None:
            exc.dataset.attrs.update(attrs)
        raise
    ds.attrs.update(attrs)
    return ds
