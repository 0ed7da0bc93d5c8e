"""Run bookkeeping shared by the engines: the time grid of a run and the Dataset built from its saved records."""

from __future__ import annotations

import datetime
import sys
from dataclasses import dataclass

import numpy as np
import xarray as xr

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


def _positive_finite(name: str, value, allow_zero: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not np.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        raise ValueError(f"{name} must be finite and {'≥' if allow_zero else '>'} 0, got {value!r}")
    return x


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
        dt = _positive_finite("dt", dt)
        t_end = _positive_finite("t_end", t_end, allow_zero=True)
        n_steps = _whole("t_end", t_end / dt)
        if save_every is None:
            stride = max(1, n_steps // 100)
        else:
            stride = _whole("save_every", _positive_finite("save_every", save_every) / dt)
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
