"""Run bookkeeping shared by the engines: the time grid, the records of a run and its atomic checkpoints.

The output schema (variables, coordinates, CF attributes) is described in docs/guide.md, 'File format'.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from spde_tokens import checks
from spde_tokens.model import AttentionModel

if TYPE_CHECKING:
    from spde_tokens.grids import Grid

#: relative tolerance on t_end/dt and save_every/dt being whole numbers (docs/mathematics.md, 'Time stepping')
WHOLE_STEPS_RTOL = 1e-9

#: name → (dimensions after ``time``, attributes) of the variables an engine records
Variables = dict[str, tuple[tuple[str, ...], dict[str, str]]]


class BlowUpError(FloatingPointError):
    """A run produced non-finite (or unbounded) values.

    Parameters
    ----------
    message : the whole message: what went wrong, at which step, where the records are.
    dataset : the records up to the last good state (None when there are none).
    state : the last good state (grid values or token positions).
    reason : the engine's one-line account of the problem, without the step and the records, e.g. ``"tokens became
        non-finite"``; the message itself when not given.

    Attributes
    ----------
    dataset, state, reason : as given.
    """

    def __init__(self, message: str, dataset: xr.Dataset | None = None, state: Any = None,
                 reason: str | None = None):
        super().__init__(message)
        self.dataset = dataset
        self.state = state
        self.reason = message if reason is None else reason


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
    def build(cls, t_end: float, dt: float, save_every: float | None = None) -> TimeGrid:
        """Validate dt > 0, t_end ≥ 0, and t_end/dt, save_every/dt whole numbers (to 1e-9 relative).

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

    def time(self, step: int) -> float:
        """The time of step ``step``: step·dt, rounded to 12 significant digits so that ``ds.sel(time=0.35)`` finds
        the record (step·dt itself can be 0.35000000000000003)."""
        return float(f"{step * self.dt:.12g}")

    def attrs(self) -> dict[str, float | int]:
        return {"t_end": self.t_end, "dt": self.dt, "save_every": self.save_every, "n_steps": self.n_steps}


def default_progress(progress: bool | None) -> bool:
    """Whether to show a progress bar: ``progress`` itself, or when None, whether standard error is a terminal.

    Raises
    ------
    ValueError when ``progress`` is neither None nor a bool (e.g. the string "yes").
    """
    if progress is None:
        return sys.stderr.isatty()
    if not isinstance(progress, (bool, np.bool_)):
        raise ValueError(f"progress must be None (a bar when standard error is a terminal), True or False, "
                         f"got {progress!r}")
    return bool(progress)


def utc_stamp() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``, the prefix of every ``history`` line."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cell_measure(attrs: dict[str, Any]) -> tuple[str, xr.Variable] | None:
    """The quadrature weights of the grid named by ``attrs`` (``Grid.attrs()``) as a variable, or None without one.

    On S² the variable ``area`` (lat, lon): the area of each node's cell on the unit sphere, Σ area · f = ∫ f dA for
    band-limited f, linked to the fields by ``cell_measures = "area: area"``. CF 7.2 requires square metres for an
    area measure, so the radius counts as 1 m. On S¹ the variable ``arc_length`` (theta), 2π/n per node, in metres
    likewise; CF has no length measure, so no ``cell_measures`` points to it. On a zonal grid ``gauss_weight`` (s),
    the Gauss weights of the normalized measure σ (they sum to 1), units "1".
    """
    if "grid" not in attrs:
        return None
    from spde_tokens.grids import grid_from_attrs

    grid = grid_from_attrs(attrs)
    dims = grid.dims
    if attrs["grid"] == "zonal":  # a probability weight of the normalized measure, not a length or an area
        return "gauss_weight", xr.Variable(dims, grid.weights(), {
            "long_name": "Gauss weight of the node for the normalized surface measure sigma: sum(gauss_weight * f) "
                         "= integral of f dsigma", "units": "1"})
    if grid.dim == 3:
        return "area", xr.Variable(dims, grid.weights(), {
            "long_name": "area of the quadrature cell on the unit sphere (radius 1 m): sum(area * f) = integral of f",
            "standard_name": "cell_area", "units": "m2"})
    return "arc_length", xr.Variable(dims, grid.weights(), {
        "long_name": "arc length of the quadrature cell on the unit circle (radius 1 m): sum(arc_length * f) = "
                     "integral of f", "units": "m"})


#: per grid, the coordinates of its runs' records (:func:`record_coordinates`); a grid's entry goes with the grid
_RECORD_COORDINATES: weakref.WeakKeyDictionary[Grid, xr.Coordinates] = weakref.WeakKeyDictionary()


def record_coordinates(grid: Grid) -> xr.Coordinates:
    """The coordinates of a density run's records on ``grid``, with their indexes, built once per grid.

    The grid's own (:meth:`~spde_tokens.grids.Grid.coordinates`), ``degree`` (0 … degree_max, of the power spectrum)
    and ``component`` (0 … dim − 1, of the mean vector). Building the pandas indexes of coordinates was most of the
    cost of a run's Dataset (docs/numerics.md, 'Start-up and fixed costs'); xarray copies the variables and their
    attributes into every Dataset built from these, so the cached object is never handed to users.
    """
    coordinates = _RECORD_COORDINATES.get(grid)
    if coordinates is None:
        coordinates = grid.coordinates().assign(
            degree=xr.Variable("degree", np.arange(grid.degree_max + 1), {"long_name": "harmonic degree",
                                                                          "units": "1"}),
            component=xr.Variable("component", np.arange(grid.dim), {"long_name": "Cartesian component",
                                                                     "units": "1"}))
        _RECORD_COORDINATES[grid] = coordinates
    return coordinates


class Recorder:
    """Collects the records of a run (values on ``time``) and turns them into a Dataset.

    Parameters
    ----------
    variables : name → (dimensions after ``time``, attributes) of every recorded variable.
    coords : the coordinates of those dimensions (``time`` excluded): variables, or ``xarray.Coordinates`` whose
        indexes are then reused as they are (:func:`record_coordinates`).
    attrs : global attributes of the run; a grid's attributes (``Grid.attrs()``) add its quadrature weights
        (:func:`cell_measure`), linked to the fields on the grid by ``cell_measures``.
    model : the attention model, whose matrices are stored as variables and parameters as attributes.
    """

    def __init__(self, variables: Variables, coords: Mapping[str, xr.Variable] | xr.Coordinates,
                 attrs: dict[str, Any], model: AttentionModel):
        self.variables, self.attrs, self.model = variables, attrs, model
        # indexes built once per run at most, not at every call of dataset()
        self.coords = coords if isinstance(coords, xr.Coordinates) else xr.Coordinates(dict(coords))
        self.times: list[float] = []
        self.rows: dict[str, list[np.ndarray]] = {}

    def add(self, t: float, values: dict[str, Any]) -> None:
        self.times.append(float(t))
        for name in self.variables:
            self.rows.setdefault(name, []).append(np.asarray(values[name]))

    def __len__(self) -> int:
        return len(self.times)

    def clear(self) -> None:
        """Forget the records (they have been written to a checkpoint part)."""
        self.times, self.rows = [], {}

    def dataset(self, earlier: xr.Dataset | None = None) -> xr.Dataset:
        """The records as a Dataset with the model's matrices and CF attributes, after the ``earlier`` records."""
        from spde_tokens._version import __version__

        data = {}
        for name, (dims, var_attrs) in self.variables.items():
            rows = self.rows.get(name)
            values = np.stack(rows) if rows else np.empty((0, *(self.coords[d].size for d in dims)))
            data[name] = xr.Variable(("time", *dims), values, var_attrs)
        for name, mat in self.model.matrices().items():
            data[name] = xr.Variable(("row", "column"), mat, {"long_name": f"attention matrix {name}", "units": "1"})
        measure = cell_measure(self.attrs)
        if measure is not None:
            name, weights = measure
            data[name] = weights
            for var in data.values():
                if name == "area" and var.ndim > weights.ndim and var.dims[-weights.ndim:] == weights.dims:
                    var.attrs["cell_measures"] = "area: area"
        # depth is dimensionless: units "1" and no axis "T" (CF reserves it for time units)
        time = xr.Variable("time", np.array(self.times, dtype=float), {"units": "1",
                                                                      "long_name": "depth (dimensionless time)"})
        base = {"Conventions": "CF-1.8", "source": f"spde_tokens {__version__}",
                "history": f"{utc_stamp()} created by spde_tokens {__version__}"}
        base.update(self.model.attrs())
        base.update(self.attrs)
        # ``time``, named like its dimension, becomes the index coordinate; the others come with their indexes
        # (building those was most of the cost of this Dataset; docs/numerics.md, 'Start-up and fixed costs')
        ds = xr.Dataset({"time": time, **data}, coords=self.coords, attrs=base)
        if earlier is not None and earlier.sizes.get("time", 0):
            ds = concat_records([earlier, ds])
            ds.attrs = base
        return ds


def concat_records(parts: list[xr.Dataset]) -> xr.Dataset:
    """Records of consecutive parts of one run joined along ``time`` (other variables taken from the first)."""
    if len(parts) == 1:
        return parts[0]
    return xr.concat(parts, dim="time", data_vars="minimal", coords="minimal", compat="override",
                     combine_attrs="override")


def fingerprint_hash(*arrays: np.ndarray) -> str:
    """A short hash of arrays (matrices, initial state) that identifies a run in its checkpoint."""
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=float).tobytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def deferred_sigint() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) inside the block and deliver it right after, so that a file is never half written.

    In the main thread SIGINT is blocked (``signal.pthread_sigmask``) and its Python handler replaced by one that
    notes the signal (a signal sent to the process can reach another thread, where it is not blocked); on leaving,
    the handler and the mask are restored and a noted or pending SIGINT is delivered, which raises
    KeyboardInterrupt under the default handler. Elsewhere (another thread, a handler not set from Python) the block
    runs as it is.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    noted: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    caller_blocks = signal.SIGINT in mask  # then a pending SIGINT is the caller's to receive
    try:
        yield
    finally:
        pending = not caller_blocks and signal.SIGINT in signal.sigpending()
        if pending:  # take it while blocked, to deliver it once below, under the restored handler
            signal.sigwait({signal.SIGINT})
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, previous)
        if noted or pending:
            signal.raise_signal(signal.SIGINT)


def atomic_write(path: str, write: Callable[[str], Any]) -> str:
    """Call ``write(temporary)`` on a temporary file beside ``path`` (same extension, so writers that choose the format
    by it work), fsync it, ``os.replace`` it over ``path`` and fsync the folder, with Ctrl-C held back until the file
    is complete (:func:`deferred_sigint`): ``path`` is the old file or the whole new one, never a part. A failed write
    removes the temporary file. Returns ``path``."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.{os.getpid()}.partial{ext}")
    with deferred_sigint():
        try:
            write(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    return path


def _atomic_netcdf(ds: xr.Dataset, path: str, encoding: dict[str, dict[str, Any]] | None = None) -> None:
    """Write ``ds`` to ``path`` as NetCDF-4 by :func:`atomic_write`; ``encoding`` is passed to ``Dataset.to_netcdf``."""
    atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding))


class Checkpoint:
    """Atomic checkpoints: the state and the step index in ``path``, the records in parts beside it.

    HDF5 files are not crash-consistent, so nothing is ever appended: each save writes the records taken since
    the previous save as one new part ``path + ".records/<step>.nc"``, then the state file ``path``, each by a
    temporary file, fsync and ``os.replace`` (atomic on POSIX). A run killed at any moment leaves a readable state
    and the parts up to it; parts written after the state (a kill between the two writes) are ignored on loading.
    Each record is written once, so checkpointing costs O(records), not O(records²).
    ``fingerprint`` (str, int and float values) identifies the run: a checkpoint written by another run is refused
    with a ValueError naming the first differing setting. The run's length is not part of it: a run with a later
    t_end continues a finished checkpoint (docs/guide.md, 'Checkpoints').
    """

    def __init__(self, path: str | os.PathLike, fingerprint: dict[str, Any]):
        self.path = os.fspath(path)
        self.parts = self.path + ".records"
        self.fingerprint = {f"run_{k}": v for k, v in fingerprint.items()}

    def load(self) -> tuple[dict[str, np.ndarray], int, xr.Dataset] | None:
        """(state, step, records) from an existing checkpoint of this run, or None when there is none."""
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
                                 f"{value!r} here; remove it (and {self.parts!r}) or use another checkpoint file")
        state = {str(name)[6:]: ds[name].values for name in ds.data_vars if str(name).startswith("state_")}
        if "coeff_real" in ds:
            state["coeffs"] = ds["coeff_real"].values + 1j * ds["coeff_imag"].values
        step = int(ds.attrs["checkpoint_step"])
        return state, step, self._records(step)

    def _records(self, step: int) -> xr.Dataset:
        parts = []
        for name in sorted(glob.glob(os.path.join(self.parts, "*.nc"))):
            if int(os.path.basename(name)[:-3]) <= step:
                with xr.open_dataset(name, engine="netcdf4", decode_timedelta=False) as part:
                    parts.append(part.load())
        if not parts:
            raise ValueError(f"checkpoint {self.path!r} has no records in {self.parts!r}; remove it to start afresh")
        return concat_records(parts)

    def save(self, state: dict[str, np.ndarray], step: int, records: xr.Dataset) -> None:
        """Write the records taken since the previous save (``records``), then the state at ``step``."""
        os.makedirs(self.parts, exist_ok=True)
        _atomic_netcdf(records, os.path.join(self.parts, f"{step:012d}.nc"))
        ds = xr.Dataset(attrs={**self.fingerprint, "checkpoint_step": int(step)})
        for name, value in state.items():
            if np.iscomplexobj(value):
                ds["coeff_real"] = xr.Variable(("coeff",), value.real, {"long_name": "spectral state, real part",
                                                                         "units": "1"})
                ds["coeff_imag"] = xr.Variable(("coeff",), value.imag, {"long_name": "spectral state, imaginary "
                                                                         "part", "units": "1"})
            else:
                dims = tuple(f"state_{name}_{i}" for i in range(value.ndim))
                ds[f"state_{name}"] = xr.Variable(dims, value, {"long_name": f"state {name}", "units": "1"})
        _atomic_netcdf(ds, self.path)
