"""NetCDF-4 writing and reading of run Datasets (CF-1.8 attributes are set by the runs)."""

from __future__ import annotations

import os

import xarray as xr


def write_run(ds: xr.Dataset, path: str | os.PathLike) -> str:
    """Write a run Dataset as NetCDF-4 (netCDF4 engine) and return the path."""
    ds.to_netcdf(path, engine="netcdf4", format="NETCDF4")
    return os.fspath(path)


def open_run(path: str | os.PathLike) -> xr.Dataset:
    """Read a file written by spde_tokens back into memory, identical to the Dataset that was written.

    ``time`` has units "1" (depth is dimensionless), so it is not decoded as a date or a duration.
    """
    if not os.path.exists(path):
        raise ValueError(f"path {os.fspath(path)!r} does not exist")
    with xr.open_dataset(path, engine="netcdf4", decode_timedelta=False) as ds:
        return ds.load()
