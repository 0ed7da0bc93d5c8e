"""Run bookkeeping shared by the engines: the time grid of a run and the Dataset built from its saved records."""

from __future__ import annotations

import datetime
import sys
from dataclasses import dataclass

import numpy as np
import xarray as xr

from spde_tokens import checks
from spde_tokens.model import AttentionModel

#: relative tolerance on t_end/dt and save_every/dt being whole numbers (DESIGN 1.3)
WHOLE_STEPS_RTOL = 1e-9


class BlowUpError(FloatingPointError):
    """A run produced non-finite values; ``dataset`` holds the records up to the last good state."""

    def __init__(self, message: str, dataset: xr.Dataset | None = None, state=None):
        super().__init__(message)
        self.dataset = dataset
        self.state = state


def _whole(name: str, ratio: float) -> int:
    n = round(ratio)
    if abs(ratio - n) > WHOLE_STEPS_RTOL * max(abs(ratio), 1.0):
        raise ValueError(f"{name} must be a whole number of steps dt (to 1e-9 relative), got {ratio:.12g} steps")
    return int(n)


@dataclass(frozen=True)
class TimeGrid:
    """Fixed steps of a run: n_steps steps of size dt, a record every ``stride`` steps and at the end."""

    t_end: float
    dt: float
    save_every: float
    n_steps: int
    stride: int

    @classmethod
    def build(cls, t_end, dt, save_every=None) -> TimeGrid:
        """Validate (DESIGN 1.3): dt > 0, t_end ≥ 0, t_end/dt and save_every/dt whole numbers.

        The default ``save_every`` gives about 100 records.
        """
        dt = checks.real("dt", dt, strict=True)
        t_end = checks.real("t_end", t_end)
        n_steps = _whole("t_end", t_end / dt)
        if save_every is None:
            stride = max(1, n_steps // 100)
        else:
            stride = _whole("save_every", checks.real("save_every", save_every, strict=True) / dt)
            if stride < 1:
                raise ValueError(f"save_every must be at least one step dt = {dt}, got {save_every}")
        return cls(t_end, dt, stride * dt, n_steps, stride)

    def is_record(self, step: int) -> bool:
        return step % self.stride == 0 or step == self.n_steps

    def attrs(self) -> dict:
        return {"t_end": self.t_end, "dt": self.dt, "save_every": self.save_every, "n_steps": self.n_steps}


def default_progress(progress: bool | None) -> bool:
    """Progress bars are on by default when standard error is a terminal."""
    return sys.stderr.isatty() if progress is None else bool(progress)


class Recorder:
    """Collects the records of a run (variables on ``time``) and builds the output Dataset."""

    def __init__(self):
        self.times: list[float] = []
        self.rows: dict[str, list] = {}

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, names) -> Recorder:
        """A recorder holding the records of a Dataset (to resume a run from its checkpoint)."""
        out = cls()
        out.times = [float(t) for t in ds.time.values]
        out.rows = {name: list(ds[name].values) for name in names if name in ds}
        return out

    def add(self, t: float, **values) -> None:
        self.times.append(float(t))
        for name, value in values.items():
            self.rows.setdefault(name, []).append(np.asarray(value))

    def __len__(self) -> int:
        return len(self.times)

    def dataset(self, variables: dict[str, tuple[tuple[str, ...], dict]], coords: dict, attrs: dict,
                model: AttentionModel) -> xr.Dataset:
        """Dataset with ``variables`` (name → (dims after time, attrs)), the model's matrices and CF attributes."""
        from spde_tokens import __version__

        data = {}
        for name, (dims, var_attrs) in variables.items():
            data[name] = xr.Variable(("time", *dims), np.stack(self.rows[name]) if self.rows.get(name) else
                                     np.empty((0,)), var_attrs)
        for name, mat in model.matrices().items():
            data[name] = xr.Variable(("row", "column"), mat, {"long_name": f"attention matrix {name}",
                                                              "units": "1"})
        all_coords = {"time": xr.Variable("time", np.array(self.times), {"units": "1", "long_name":
                                          "depth (dimensionless time)", "axis": "T"}), **coords}
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        base = {"Conventions": "CF-1.8", "source": f"spde_tokens {__version__}",
                "history": f"{stamp} created by spde_tokens {__version__}"}
        base.update(model.attrs())
        base.update(attrs)
        return xr.Dataset(data, coords=all_coords, attrs=base)


def fingerprint_hash(*arrays: np.ndarray) -> str:
    """A short hash of arrays (matrices, initial state) that identifies a run in its checkpoint."""
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=float).tobytes())
    return h.hexdigest()[:16]


def resume(store: Checkpoint | None, variables: dict) -> tuple[dict[str, np.ndarray] | None, int, Recorder]:
    """Where a run starts: (state, first step to take, recorder).

    From the checkpoint of this run when ``store`` holds one (its state, the step after its last one, and its records
    under ``variables``), else ``(None, 1, Recorder())``: a fresh run, which records its initial state itself.
    """
    resumed = store.load() if store is not None else None
    if resumed is None:
        return None, 1, Recorder()
    state, last, records = resumed
    return state, last + 1, Recorder.from_dataset(records, variables)


class Checkpoint:
    """Atomic checkpoints (DESIGN 3): the state, the step index and the records so far in one NetCDF file.

    Each save writes ``path + ".tmp"``, flushes it to disk with fsync and renames it over ``path`` with
    ``os.replace`` (atomic on POSIX), so a run killed at any moment leaves either the previous or the new
    checkpoint, never a partial file. ``fingerprint`` (str, int and float values) identifies the run: a
    checkpoint written by another run is refused with a ValueError naming the first differing setting.
    """

    def __init__(self, path, fingerprint: dict):
        import os

        self.path = os.fspath(path)
        self.fingerprint = {f"run_{k}": v for k, v in fingerprint.items()}

    def load(self) -> tuple[dict[str, np.ndarray], int, xr.Dataset] | None:
        """(state, step, records) from an existing checkpoint of this run, or None when there is none."""
        import os

        if not os.path.exists(self.path):
            return None
        try:
            with xr.open_dataset(self.path, engine="netcdf4", decode_timedelta=False) as ds:
                ds = ds.load()
        except (OSError, ValueError) as exc:
            raise ValueError(f"checkpoint {self.path!r} cannot be read ({exc}); remove it to start afresh") from None
        for key, value in self.fingerprint.items():
            stored = ds.attrs.get(key)
            stored = stored.item() if isinstance(stored, np.generic) else stored
            same = (np.isclose(stored, value, rtol=1e-12, atol=0) if isinstance(value, float) and
                    isinstance(stored, (float, np.floating)) else stored == value)
            if not same:
                raise ValueError(f"checkpoint {self.path!r} belongs to another run: {key[4:]} = {stored!r} there, "
                                 f"{value!r} here; remove it or use another checkpoint file")
        state = {name[6:]: ds[name].values for name in ds.data_vars if name.startswith("state_")}
        if "coeff_real" in ds:
            state["coeffs"] = ds["coeff_real"].values + 1j * ds["coeff_imag"].values
        step = int(ds.attrs["checkpoint_step"])
        records = ds.drop_vars([n for n in ds.data_vars if n.startswith("state_") or n.startswith("coeff_")])
        return state, step, records

    def save(self, state: dict[str, np.ndarray], step: int, records: xr.Dataset) -> None:
        import os

        ds = records.copy()
        for name, value in state.items():
            if np.iscomplexobj(value):
                ds["coeff_real"] = xr.Variable(("coeff",), value.real, {"long_name": "spectral state, real part",
                                                                         "units": "1"})
                ds["coeff_imag"] = xr.Variable(("coeff",), value.imag, {"long_name": "spectral state, imaginary "
                                                                         "part", "units": "1"})
            else:
                dims = tuple(f"state_{name}_{i}" for i in range(value.ndim))
                ds[f"state_{name}"] = xr.Variable(dims, value, {"long_name": f"state {name}", "units": "1"})
        ds.attrs.update(self.fingerprint)
        ds.attrs["checkpoint_step"] = int(step)
        tmp = self.path + ".tmp"
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        directory = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
