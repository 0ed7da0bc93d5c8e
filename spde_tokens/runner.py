"""The run driver shared by every engine: time grid, records, checkpoints, progress bar and blow-up detection.

An engine (the spectral density solver of :mod:`spde_tokens.density`, the tokens of :mod:`spde_tokens.particles`)
describes its state and one step; :func:`run` does the rest, the same way for all of them:

* steps n = first … n_steps of the :class:`~spde_tokens.records.TimeGrid`, with a tqdm bar;
* a record at t = 0 and every ``stride`` steps and at the end (:meth:`Engine.record`), collected by a
  :class:`~spde_tokens.records.Recorder`;
* an atomic checkpoint every ``checkpoint_every`` records and at the end; a run that finds a checkpoint of itself
  resumes from it and finishes bit-identical to an uninterrupted run, a later ``t_end`` continues a finished one;
* a step whose state is not finite or not bounded (:meth:`Engine.check`) stops the run with a
  :class:`~spde_tokens.records.BlowUpError` that holds the records so far and the last good state;
* warnings raised while stepping are shown once per kind: the first of each kind above the progress bar (which it
  does not break), and at the end of the run each kind once more as a Python warning with its count.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import xarray as xr

from spde_tokens.records import (
    BlowUpError,
    Checkpoint,
    Recorder,
    TimeGrid,
    default_progress,
)

if TYPE_CHECKING:
    from tqdm import tqdm

#: the state of an engine: named arrays (complex arrays are stored as real and imaginary parts in checkpoints)
State = dict[str, np.ndarray]

log = logging.getLogger("spde_tokens")


class Engine(Protocol):
    """What an engine gives the driver."""

    #: the engine's name, recorded in checkpoints ("density", "particles")
    name: str
    #: the progress bar's label
    label: str

    def step(self, state: State, step: int) -> State:
        """The state after step ``step`` (from t = (step − 1) dt to step·dt)."""

    def check(self, state: State) -> str | None:
        """None when the state is good, else what is wrong with it (non-finite, unbounded)."""

    def record(self, state: State) -> dict[str, Any]:
        """The recorded values at this state, one per variable of the recorder."""

    def after_record(self, t: float, values: dict[str, Any]) -> None:
        """Called after each record (under-resolution warnings)."""

    def last_good(self, state: State) -> Any:
        """What a BlowUpError carries as the last good state (grid values, positions)."""

    def final_attrs(self, state: State) -> dict[str, Any]:
        """Global attributes known only from the final state (the hand-over time of a density run)."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside spde_tokens (and contextlib), counted from the caller: a
    warning then points at the user's line, not at the package's internals."""
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and (frame.f_code.co_filename.startswith(_PACKAGE)
                                 or frame.f_code.co_filename.endswith("contextlib.py")):
        frame, level = frame.f_back, level + 1
    return level


@contextmanager
def grouped_warnings(bar: tqdm) -> Iterator[Callable[[], None]]:
    """Warnings inside the block: the first of each kind written above ``bar``; on leaving, each kind re-issued
    once as a warning, with the number of times it occurred (a kind: the category and the message with its
    numbers blanked, so "under-resolved at t = 0.3" and "… t = 0.4" are one kind)."""
    kinds: dict[tuple[type[Warning], str], list] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seen = 0

        def flush() -> None:
            nonlocal seen
            for w in caught[seen:]:
                key = (w.category, re.sub(r"[-+]?\d[\d.eE+-]*", "#", str(w.message)))
                if key not in kinds:
                    kinds[key] = [w, 0]
                    if not bar.disable:
                        bar.write(f"{w.category.__name__}: {w.message}")
                kinds[key][1] += 1
            seen = len(caught)

        try:
            yield flush
        finally:
            flush()
    for w, count in kinds.values():
        note = f" [{count} times during the run]" if count > 1 else ""
        warnings.warn(f"{w.message}{note}", w.category, stacklevel=_user_stacklevel())


@functools.cache
def _blas_controller() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries, scanned once per process (a scan per run cost
    0.6–6 ms, a fixed cost of every run; docs/numerics.md, 'Start-up and fixed costs'). Deferred to the first run:
    ``import spde_tokens`` does not load threadpoolctl."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def run(engine: Engine, state: State, times: TimeGrid, recorder: Recorder, *, fingerprint: dict[str, Any],
        checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 1,
        progress: bool | None = None, threads: int = 1) -> xr.Dataset:
    """Step ``engine`` from ``state`` over ``times`` and return the Dataset of its records.

    Parameters
    ----------
    engine : the engine (see :class:`Engine`).
    state : its initial state.
    times : the time grid (steps and records).
    recorder : collects the records; knows the variables, coordinates and attributes of the output.
    fingerprint : the settings that identify the run in its checkpoint (str, int or float values).
    checkpoint : a NetCDF file for atomic checkpoints (None: none).
    checkpoint_every : records between checkpoints (≥ 1); each record is written once, so 1 costs O(records).
    progress : tqdm progress bar (default: on when standard error is a terminal).
    threads : BLAS threads while stepping (default 1). OpenBLAS otherwise starts one thread per core, and its small
        products then run 10–15 times slower whenever another process keeps a core busy; parallelism belongs to
        ensembles.
    """
    if not isinstance(checkpoint_every, int) or isinstance(checkpoint_every, bool) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an integer ≥ 1 (records between checkpoints), "
                         f"got {checkpoint_every!r}")
    store = None
    if checkpoint is not None:
        store = Checkpoint(checkpoint, {"engine": engine.name, **fingerprint, "dt": times.dt,
                                        "save_every": times.save_every})
    resumed = store.load() if store is not None else None
    unsaved = 0

    def take_record(step: int) -> None:
        nonlocal unsaved
        values = engine.record(state)
        t = times.time(step)
        recorder.add(t, values)
        engine.after_record(t, values)
        unsaved += 1
        if store is not None and (unsaved >= checkpoint_every or step == times.n_steps):
            store.save(state, step, recorder.dataset())
            recorder.clear()  # the records now live on disk: long runs do not keep them in memory
            unsaved = 0

    def records() -> xr.Dataset:
        """Every record so far: those saved with the checkpoint, then those still in memory."""
        saved = store.load() if store is not None else None
        return recorder.dataset(None if saved is None else saved[2])

    if resumed is None:
        first = 1
        take_record(0)
    else:
        assert store is not None  # resumed from it
        state, last, _ = resumed
        if last > times.n_steps:
            raise ValueError(f"checkpoint {store.path!r} is at step {last}, beyond the {times.n_steps} steps of this "
                             f"run (t_end = {times.t_end}); use t_end ≥ {times.time(last)} or another checkpoint file")
        first = last + 1
        log.info("resuming from %s: step %d of %d (t = %g)", store.path, last, times.n_steps, times.time(last))
    from tqdm.auto import tqdm  # deferred to the first run: not needed by `import spde_tokens`

    with tqdm(total=times.n_steps, initial=first - 1, disable=not default_progress(progress), unit="step",
              desc=engine.label) as bar, grouped_warnings(bar) as flush_warnings, \
            _blas_controller().limit(limits=threads, user_api="blas"):
        for step in range(first, times.n_steps + 1):
            with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is caught below, with its state
                new = engine.step(state, step)
            problem = engine.check(new)
            if problem is not None:
                done = records()
                raise BlowUpError(f"{problem} at step {step} (t = {times.time(step):g}); the records up to t = "
                                  f"{float(done.time[-1]):g} are in .dataset and the last good state in .state",
                                  done, engine.last_good(state), reason=problem)
            state = new
            if times.is_record(step):
                take_record(step)
            flush_warnings()
            bar.update()
    ds = records()
    ds.attrs.update(engine.final_attrs(state))
    return ds
