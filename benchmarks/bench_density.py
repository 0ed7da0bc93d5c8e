"""Cost of the density equation's right-hand side and of one RK4 step, in units of one transform pair.

What it measures
----------------
For every grid (SphereGrid(lmax), lmax = 63, 127, 255; CircleGrid(n), n = 256, 1024, 4096), with one thread:

* **floor**: one analysis + synthesis pair of the grid's own transforms (``grid.analysis(field)`` followed by
  ``grid.synthesis(coeffs)``): shtns on S^2, pyfftw on S^1;
* **rhs**: one evaluation of ``DensityEquation(model, grid).tendency(coeffs)``, i.e. ``−div_S(ρ X[ρ])``;
* **step**: one deterministic step ``get_scheme("rk4").step(eq.tendency, coeffs, dt)`` (four RHS and the stage
  sums);

and prints rhs/floor and step/floor. The density is the two-bump von Mises–Fisher mixture
``initial.mixture(grid, weights=[0.5, 0.5], means=[north pole, x axis], kappas=[4, 6])`` and the model
``AttentionModel(dim, beta=1.0)``, once with V = I (zonal path, the drift is tangential to the attention output)
and once with V = diag(1, 2, 0.5) (diag(1, 2) on S^1), which needs the radial term ∂_κ G̃ρ and the Cartesian
round trip ``P_x V a``.

Expected floor
--------------
An RHS on the zonal path needs four transforms: the synthesis of ρ, the synthesis of G̃ρ, a gradient synthesis (of
G̃ρ/κ) and a vector analysis (spheroidal/toroidal) for the divergence of ρX. A vector transform costs about two
scalar ones, so the transforms alone are about 3 pairs; those of G̃ρ run only up to the degree the kernel resolves
(15 at beta = 1; docs/numerics.md, 'Cheaper right-hand sides'), so they cost less than full ones; everything else
(normalization of the attention output, products on the grid) should be small. The issue asks that one RHS cost no
more than about 5 pairs at lmax = 255; an RK4 step is then about 4 × 5 = 20 pairs. The V ≠ cI path adds one
synthesis (∂_κ G̃ρ), so its transform floor is about 3.5 pairs.

Timing method
-------------
``time.perf_counter``; every callable is run once to warm up, then in batches of as many calls as take at
least 0.2 s. For each row the floor, rhs and step batches are interleaved, five rounds, and the median batch of
each time is reported; a ratio is the median over the rounds of the ratio of the batches of the same round, so
that a burst of load from another process hits numerator and denominator alike. Ratios are what matter: they
should be stable to about 10% between runs on a quiet machine; absolute times depend on the machine. The
``spread`` column, (max - min)/median of the per-round ratios, shows how quiet the machine was.

Whole process to a given error (``--mobius``)
-----------------------------------------------
The beta = 0 Möbius density on S² (``initial.mobius(grid, w₀)``, w₀ = (0.12, −0.2, 0.15)) is an exact solution:
ρ(t) = ρ_{w(t)} with ẇ = ½(1 + |w|²) m − (m·w) w, m = h_3(|w|) w/|w| (docs/mathematics.md, 'The Lagrangian engine').
For each (lmax, dt) of ``MOBIUS_RUNS`` a **fresh** Python process imports spde_tokens, builds the grid and ρ₀ and
solves to t = 1.5 (``engine="spectral"``, one record); this script times the whole process from launch to exit,
the child reports its own import, set-up (grid, ρ₀) and solve times, and the error max|ρ − ρ_{w(1.5)}| / max ρ is
computed here against w(1.5) from ``solve_ivp`` (rtol 1e-13). Two raw costs are timed alternately with the runs,
each a fresh process: ``python -c "import numpy, xarray"`` (what any xarray-based tool pays to start) and
``python -c "import numpy, xarray; xarray.DataArray(numpy.zeros(1))"`` (what it pays for its first object: xarray
then imports dask.array, when installed, to test for dask arrays); each time is the best of ``MOBIUS_REPEATS``
processes.

Then the 1e-6 run (SphereGrid(35), dt = 0.075) is broken down in this, warm, process (everything imported, two
warm-up rounds, medians of ``MOBIUS_WARM_REPEATS`` runs): the CPU time of the 20 steps (``SpectralEngine.step``)
against each fixed cost, i.e. everything else a run does: ρ₀ (``initial.mobius``), the equation
(``DensityEquation.__init__``), the two records (``SpectralEngine.record``), the Dataset (``Recorder.dataset``),
the rest of ``solve_density``'s set-up (checks, analysis of ρ₀, engine, attributes) and the rest of the driver
(``runner.run``: its loop with a blow-up check per step, bar, warnings), timed by wrapping those functions; and the
ratio fixed/(fixed + steps) in CPU and in wall time. Runs on a grid built once
(a user's grid, reused) alternate with runs that each build their grid, whose fixed costs include the grid. CPU
time is the primary clock: on a shared machine the scheduler's time slices (a few ms) land in the wall time of
whichever part is running.

How to run
----------
::

    python benchmarks/bench_density.py              # full table (about a minute)
    python benchmarks/bench_density.py --quick      # lmax 63 and n 256 only
    python benchmarks/bench_density.py --json out.json
    python benchmarks/bench_density.py --keep-heap  # glibc keeps freed memory (see below)
    python benchmarks/bench_density.py --mobius     # only the Möbius runs: whole processes, warm breakdown (30 s)
    python benchmarks/bench_density.py --warm       # only the warm breakdown of the 1e-6 Möbius run (a few s)

``--keep-heap`` asks glibc (``mallopt``) to keep freed memory instead of returning it to the system, so that the
multi-megabyte temporaries of an RHS at lmax 255 stop costing fresh page faults on every call: a diagnostic of how
much of the time is page faulting (which is slow in virtual machines and varies between processes).

OMP_NUM_THREADS is set to 1 when it is not already set (before numpy is imported), so that BLAS and shtns stay
on one thread; the grids are built with ``threads=1``.
"""

from __future__ import annotations

# ruff: noqa: E402  (OMP_NUM_THREADS must be set before numpy is imported)
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import contextlib
import functools
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from spde_tokens import initial
from spde_tokens.density import DensityEquation
from spde_tokens.grids import CircleGrid, Grid, SphereGrid
from spde_tokens.model import AttentionModel
from spde_tokens.steppers import get_scheme

#: seconds one batch of calls must last at least
MIN_BATCH_SECONDS = 0.2
#: batches per measurement (the median is reported)
ROUNDS = 5
SPHERE_LMAX = (63, 127, 255)
CIRCLE_N = (256, 1024, 4096)
#: CFL number degree_max · |V| · dt of the timed step (well inside RK4's limit 2√2)
CFL = 0.5
#: (lmax, dt) of the whole-process Möbius runs: errors about 1e-6 and 1e-8 at t = 1.5
MOBIUS_RUNS = ((35, 0.075), (63, 0.025))
MOBIUS_W0 = (0.12, -0.2, 0.15)
MOBIUS_T_END = 1.5
MOBIUS_REPEATS = 5
#: warm repetitions of the 1e-6 Möbius run in this process (the median of each part is reported)
MOBIUS_WARM_REPEATS = 9
#: the raw costs of a fresh process: importing numpy and xarray, and that plus the first xarray object built from a
#: NumPy array (xarray then imports dask.array, when installed, to test for dask arrays)
RAW_COSTS = {"import": "import numpy, xarray", "first_object": "import numpy, xarray; xarray.DataArray(numpy.zeros(1))"}
#: what a fresh process runs (argv: lmax, dt, output .npy); it prints its own split of the time as JSON
MOBIUS_CHILD = f"""
import time
start = time.perf_counter()
import json, sys
import numpy as np
import spde_tokens as st
imported = time.perf_counter()
lmax, dt, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
grid = st.SphereGrid(lmax)
rho0 = st.initial.mobius(grid, {list(MOBIUS_W0)})
ready = time.perf_counter()
ds = st.solve_density(st.AttentionModel(3, 0.0), None, rho0, t_end={MOBIUS_T_END}, dt=dt,
                      save_every={MOBIUS_T_END}, engine="spectral", progress=False)
solved = time.perf_counter()
np.save(out, ds.density.isel(time=-1).values)
print(json.dumps({{"import": imported - start, "setup": ready - imported, "solve": solved - ready}}))
"""


def keep_heap() -> bool:
    """Ask glibc to keep freed memory (no trimming, no mmap for large blocks); False where that is not possible."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_trim_threshold, 2**30)) and bool(mallopt(m_mmap_threshold, 2**30))


def calibrate(fn: Callable[[], object], min_seconds: float = MIN_BATCH_SECONDS) -> int:
    """Warm ``fn`` up once and return a number of calls that lasts at least ``min_seconds``."""
    fn()
    n = 1
    while True:
        elapsed = run_batch(fn, n) * n
        if elapsed >= min_seconds:
            return n
        # aim 20% past the target, never more than 10x at once
        n = max(n + 1, min(10 * n, int(np.ceil(1.2 * n * min_seconds / max(elapsed, 1e-9)))))


def run_batch(fn: Callable[[], object], n: int) -> float:
    """Seconds per call over ``n`` consecutive calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def measure(fns: dict[str, Callable[[], object]], rounds: int = ROUNDS) -> dict[str, list[float]]:
    """Per-call seconds of each callable in ``rounds`` batches, the batches of different callables interleaved."""
    counts = {name: calibrate(fn) for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(run_batch(fn, counts[name]))
    return times


def setups(quick: bool):
    """(label, grid factory, model dim, means, V matrices) of every grid in the table."""
    lmaxes = SPHERE_LMAX[:1] if quick else SPHERE_LMAX
    ns = CIRCLE_N[:1] if quick else CIRCLE_N
    for lmax in lmaxes:
        yield (f"sphere lmax={lmax}", lambda lmax=lmax: SphereGrid(lmax, threads=1), 3,
               [[0, 0, 1], [1, 0, 0]], [("I", None), ("diag(1,2,.5)", np.diag([1.0, 2.0, 0.5]))])
    for n in ns:
        yield (f"circle n={n}", lambda n=n: CircleGrid(n, threads=1), 2,
               [[0, 1], [1, 0]], [("I", None), ("diag(1,2)", np.diag([1.0, 2.0]))])


def rhs_timings(label: str, floor: Callable[[], object], eq: DensityEquation, coeffs: np.ndarray,
                dt: float) -> dict:
    """Check that the RHS of ``eq`` at ``coeffs`` is finite and conserves mass, then time ``floor``, the RHS and one
    RK4 step of length ``dt`` in interleaved batches (:func:`measure`): medians in ms, per-round ratios to the floor."""
    rhs = eq.tendency(coeffs)
    if not np.all(np.isfinite(rhs)) or abs(rhs[0]) > 1e-10 * np.max(np.abs(rhs)):
        raise RuntimeError(f"{label}: the RHS is not finite or does not conserve mass")
    rk4 = get_scheme("rk4")
    times = measure({
        "floor": floor,
        "rhs": lambda: eq.tendency(coeffs),
        "step": lambda: rk4.step(eq.tendency, coeffs, dt),
    })
    med = {name: float(np.median(values)) for name, values in times.items()}
    rhs_ratios = np.array(times["rhs"]) / np.array(times["floor"])
    step_ratios = np.array(times["step"]) / np.array(times["floor"])
    return {
        "floor_ms": 1e3 * med["floor"], "rhs_ms": 1e3 * med["rhs"], "step_ms": 1e3 * med["step"],
        # ratios of batches of the same round (taken seconds apart), then their median: a burst of load from
        # another process then slows numerator and denominator alike
        "rhs_over_floor": float(np.median(rhs_ratios)), "step_over_floor": float(np.median(step_ratios)),
        # spread of the per-round ratios, (max - min) / median: the stability of the numbers
        "rhs_ratio_spread": float(np.ptp(rhs_ratios) / np.median(rhs_ratios)),
        "step_ratio_spread": float(np.ptp(step_ratios) / np.median(step_ratios)),
        "batches_ms": {name: [1e3 * t for t in values] for name, values in times.items()},
    }


def bench_row(label: str, grid: Grid, dim: int, means, v_label: str, V) -> dict:
    """Floor, RHS and RK4-step times of one grid and model."""
    rho0 = initial.mixture(grid, weights=[0.5, 0.5], means=means, kappas=[4, 6])
    field = np.ascontiguousarray(rho0.values, dtype=float)
    model = AttentionModel(dim=dim, beta=1.0, V=V)
    eq = DensityEquation(model, grid)
    dt = CFL / (grid.degree_max * np.linalg.norm(model.V, 2))
    return {
        "grid": label, "repr": repr(grid), "shape": list(grid.shape), "V": v_label,
        "attention": eq.attention.method, "radial": model.value_factor is None,
        **rhs_timings(f"{label}, V = {v_label}", lambda: grid.synthesis(grid.analysis(field)), eq,
                      grid.analysis(field), dt),
    }


def mobius_center(t: float) -> np.ndarray:
    """w(t) of the beta = 0 Möbius solution on S² from w₀ (scipy's solve_ivp, rtol 1e-13)."""
    from scipy.integrate import solve_ivp

    def h3(r: float) -> float:
        return (1 + r * r) / (2 * r) - (1 - r * r) ** 2 / (4 * r * r) * np.log((1 + r) / (1 - r))

    def rhs(_: float, w: np.ndarray) -> np.ndarray:
        r = np.linalg.norm(w)
        m = h3(r) * w / r
        return 0.5 * (1 + r * r) * m - (m @ w) * w

    return solve_ivp(rhs, (0.0, t), np.array(MOBIUS_W0), rtol=1e-13, atol=1e-15).y[:, -1]


def fresh_process(args: list[str]) -> tuple[float, str]:
    """Wall seconds of ``python args`` from launch to exit, and its standard output."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout


def mobius_rows(repeats: int = MOBIUS_REPEATS) -> tuple[list[dict], dict[str, float]]:
    """Whole-process time of every run of ``MOBIUS_RUNS`` against the raw costs of :data:`RAW_COSTS` (fresh
    processes), best of ``repeats`` processes each, alternating runs and raw costs; also the raw costs (s)."""
    import tempfile

    from spde_tokens import initial

    exact_center = mobius_center(MOBIUS_T_END)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        best: dict[tuple[int, float], tuple[float, dict]] = {}
        raw: dict[str, list[float]] = {name: [] for name in RAW_COSTS}
        for _ in range(repeats):
            for name, code in RAW_COSTS.items():
                raw[name].append(fresh_process(["-c", code])[0])
            for lmax, dt in MOBIUS_RUNS:
                out = os.path.join(tmp, f"rho_{lmax}_{dt}.npy")  # the same numbers in every process
                wall, stdout = fresh_process(["-c", MOBIUS_CHILD, str(lmax), str(dt), out])
                split = json.loads(stdout.splitlines()[-1])
                if (lmax, dt) not in best or wall < best[lmax, dt][0]:
                    best[lmax, dt] = (wall, split)
        raw_s = {name: min(times) for name, times in raw.items()}
        for lmax, dt in MOBIUS_RUNS:
            wall, split = best[lmax, dt]
            grid = SphereGrid(lmax)
            exact = initial.mobius(grid, exact_center).values
            error = float(np.abs(np.load(os.path.join(tmp, f"rho_{lmax}_{dt}.npy")) - exact).max() / exact.max())
            rows.append({"lmax": lmax, "dt": dt, "error": error, "process_s": wall, "raw_s": raw_s["import"],
                         "process_over_raw": wall / raw_s["import"], "raw_first_object_s": raw_s["first_object"],
                         "process_over_raw_first_object": wall / raw_s["first_object"],
                         **{f"{k}_s": v for k, v in split.items()}})
    return rows, raw_s


#: the clocks of :func:`mobius_warm`: this process's CPU time (what a part costs, whatever else the machine runs) and
#: wall time (what a user waits, inflated whenever the scheduler gives the core to another process)
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def _now() -> dict[str, float]:
    return {name: clock() for name, clock in CLOCKS.items()}


@contextlib.contextmanager
def timed_methods(methods: dict[str, tuple[Any, str]]) -> Iterator[dict[str, dict[str, float]]]:
    """Inside the block, every call of the methods ``{part: (owner, name)}`` (of spde_tokens' own classes and
    modules) adds its seconds on each clock of :data:`CLOCKS` to ``totals[part][clock]``; the methods are restored on
    leaving."""
    totals = {part: dict.fromkeys(CLOCKS, 0.0) for part in methods}
    saved = {part: (cls, name, cls.__dict__[name]) for part, (cls, name) in methods.items()}

    def wrap(part: str, method: Callable) -> Callable:
        @functools.wraps(method)
        def timed(*args, **kwargs):
            start = _now()
            try:
                return method(*args, **kwargs)
            finally:
                end = _now()
                for clock in CLOCKS:
                    totals[part][clock] += end[clock] - start[clock]
        return timed

    try:
        for part, (cls, name, method) in saved.items():
            setattr(cls, name, wrap(part, method))
        yield totals
    finally:
        for cls, name, method in saved.values():
            setattr(cls, name, method)


def mobius_warm(lmax: int = MOBIUS_RUNS[0][0], dt: float = MOBIUS_RUNS[0][1],
                repeats: int = MOBIUS_WARM_REPEATS) -> dict:
    """The parts of the Möbius run of ``MOBIUS_CHILD`` in this (warm) process, medians over ``repeats`` runs (ms).

    Parts: ``rho0`` (``initial.mobius``) and the parts of ``solve_density``: ``equation``
    (``DensityEquation.__init__``), ``steps`` (the engine's steps), ``records`` (the engine's records: field and
    diagnostics), ``dataset`` (``Recorder.dataset``), ``setup`` (the rest of ``solve_density`` before the driver:
    checks, analysis of ρ₀, engine, attributes) and ``driver`` (the rest of :func:`spde_tokens.runner.run`: its loop
    with a blow-up check per step, bar, warnings, BLAS limit). Fixed costs are everything but the steps. Runs on one
    grid built beforehand (a user's grid, reused) and runs that each build their grid (``SphereGrid(lmax)``,
    ``*_fresh`` keys, its time ``grid``) alternate; the fresh runs' fixed costs include the grid. Times are CPU times
    of this process (``*_ms``); ``fixed_over_total`` is the median of the per-run ratios in CPU time,
    ``fixed_over_total_wall`` in wall time.
    """
    from spde_tokens import density
    from spde_tokens.density import DensityEquation, SpectralEngine, solve_density
    from spde_tokens.records import Recorder

    model = AttentionModel(3, 0.0)
    methods = {"equation": (DensityEquation, "__init__"), "steps": (SpectralEngine, "step"),
               "records": (SpectralEngine, "record"), "dataset": (Recorder, "dataset"), "run": (density, "run")}
    names = ("grid", "rho0", "solve", *methods)
    # mode → clock → part → seconds of every run
    parts: dict[str, dict[str, dict[str, list[float]]]] = {
        mode: {clock: {name: [] for name in names} for clock in CLOCKS} for mode in ("reused", "fresh")}
    user_grid = SphereGrid(lmax)
    for i in range(repeats + 2):  # two warm-up rounds
        for mode, taken in parts.items():
            with timed_methods(methods) as inside:
                start = _now()
                grid = user_grid if mode == "reused" else SphereGrid(lmax)
                built = _now()
                rho0 = initial.mobius(grid, list(MOBIUS_W0))
                ready = _now()
                solve_density(model, None, rho0, t_end=MOBIUS_T_END, dt=dt, save_every=MOBIUS_T_END,
                              engine="spectral", progress=False)
                solved = _now()
            if i < 2:
                continue
            for clock, runs in taken.items():
                runs["grid"].append(built[clock] - start[clock])
                runs["rho0"].append(ready[clock] - built[clock])
                runs["solve"].append(solved[clock] - ready[clock])
                for name, seconds in inside.items():
                    runs[name].append(seconds[clock])
    out: dict = {"lmax": lmax, "dt": dt, "repeats": repeats}
    for mode, taken in parts.items():
        suffix = "" if mode == "reused" else "_fresh"
        for clock, lists in taken.items():
            series: dict[str, np.ndarray] = {name: np.array(values) for name, values in lists.items()}
            series["setup"] = series["solve"] - series["run"] - series["equation"]
            series["driver"] = series["run"] - series["steps"] - series["records"] - series["dataset"]
            series["fixed"] = series["grid"] + series["rho0"] + series["solve"] - series["steps"]
            series["total"] = series["fixed"] + series["steps"]
            # the median of the per-run ratios, so that one slow run does not move it
            ratio = float(np.median(series["fixed"] / series["total"]))
            if clock == "wall":
                out[f"fixed_over_total_wall{suffix}"] = ratio
                continue
            out[f"fixed_over_total{suffix}"] = ratio
            for name, values in series.items():
                if mode == "fresh" or name != "grid":
                    out[f"{name}{suffix}_ms"] = 1e3 * float(np.median(values))
    return out


def format_warm(row: dict) -> str:
    def parts(suffix: str) -> str:
        names = ("grid", "rho0", "equation", "setup", "records", "dataset", "driver") if suffix else (
            "rho0", "equation", "setup", "records", "dataset", "driver")
        return ", ".join(f"{name} {row[f'{name}{suffix}_ms']:.2f}" for name in names)

    def line(suffix: str) -> str:
        return (f"steps {row[f'steps{suffix}_ms']:.2f}; fixed {row[f'fixed{suffix}_ms']:.2f} ({parts(suffix)}); "
                f"fixed/total {100 * row[f'fixed_over_total{suffix}']:.1f} % (wall clock "
                f"{100 * row[f'fixed_over_total_wall{suffix}']:.1f} %)")

    return (f"warm process, SphereGrid({row['lmax']}) dt={row['dt']:g}: CPU ms, medians of {row['repeats']} runs "
            f"(the parts' medians need not add up to the fixed costs' median)\n"
            f"  grid built once, reused: {line('')}\n"
            f"  grid built by each run:  {line('_fresh')}")


def format_mobius(row: dict) -> str:
    return (f"SphereGrid({row['lmax']:>3}) dt={row['dt']:<6g} error {row['error']:.1e}: process "
            f"{row['process_s']:.3f} s = {row['process_over_raw']:.2f} x raw import, "
            f"{row['process_over_raw_first_object']:.2f} x raw first object; inside: "
            f"import {row['import_s']:.3f} s, set-up {1e3 * row['setup_s']:.1f} ms, "
            f"solve {1e3 * row['solve_s']:.1f} ms")


#: the columns of :func:`timing_columns`
TIMING_HEADER = (f"{'floor (ms)':>10} {'rhs (ms)':>10} {'rhs/floor':>9} {'step (ms)':>10} {'step/floor':>10} "
                 f"{'spread':>7}")
HEADER = f"{'grid':<18} {'V':<13} {TIMING_HEADER}"


def timing_columns(row: dict, decimals: int = 3) -> str:
    """The times (ms, ``decimals`` digits) and ratios of :func:`rhs_timings`, with the larger ratio spread."""
    spread = max(row["rhs_ratio_spread"], row["step_ratio_spread"])
    return (f"{row['floor_ms']:>10.{decimals}f} {row['rhs_ms']:>10.{decimals}f} {row['rhs_over_floor']:>9.2f} "
            f"{row['step_ms']:>10.{decimals}f} {row['step_over_floor']:>10.2f} {100 * spread:>6.0f}%")


def format_row(row: dict) -> str:
    return f"{row['grid']:<18} {row['V']:<13} {timing_columns(row)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only lmax 63 and n 256")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    parser.add_argument("--keep-heap", action="store_true",
                        help="keep freed memory in the heap (glibc mallopt): times without fresh page faults")
    parser.add_argument("--mobius", action="store_true",
                        help="only the whole-process Möbius runs (fresh processes: import + set-up + solve) and "
                             "the warm-process breakdown of the 1e-6 run")
    parser.add_argument("--warm", action="store_true",
                        help="only the warm-process breakdown of the 1e-6 Möbius run (steps against fixed costs)")
    args = parser.parse_args(argv)
    heap = "default"
    if args.keep_heap:
        heap = "kept (mallopt)" if keep_heap() else "default (mallopt unavailable)"

    print(f"spde_tokens density RHS benchmark: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, numpy "
          f"{np.__version__}, python {platform.python_version()}, {platform.machine()}, heap {heap}")
    print("floor = one analysis + synthesis pair (shtns on S^2, pyfftw on S^1); median of "
          f"{ROUNDS} batches of >= {MIN_BATCH_SECONDS} s; spread = (max - min)/median of the per-batch ratios")
    if args.warm:
        warm = mobius_warm()
        print(format_warm(warm), flush=True)
        return _write_json(args, heap, [], [], {}, warm)
    mobius, raw = mobius_rows()
    print(f"whole process to t = {MOBIUS_T_END} on the beta = 0 Möbius density (fresh processes, best of "
          f"{MOBIUS_REPEATS}); raw costs of a fresh process: import {raw['import']:.3f} s "
          f"(python -c '{RAW_COSTS['import']}'), first object {raw['first_object']:.3f} s "
          f"(python -c '{RAW_COSTS['first_object']}'; xarray imports dask.array)")
    for row in mobius:
        print(format_mobius(row), flush=True)
    warm = mobius_warm()
    print(format_warm(warm), flush=True)
    rows: list[dict] = []
    if args.mobius:
        return _write_json(args, heap, rows, mobius, raw, warm)
    print(HEADER)
    print("-" * len(HEADER))
    for label, make_grid, dim, means, models in setups(args.quick):
        grid = make_grid()
        for v_label, V in models:
            row = bench_row(label, grid, dim, means, v_label, V)
            rows.append(row)
            print(format_row(row), flush=True)

    return _write_json(args, heap, rows, mobius, raw, warm)


def _write_json(args: argparse.Namespace, heap: str, rows: list[dict], mobius: list[dict], raw: dict[str, float],
                warm: dict) -> int:
    if args.json:
        meta = {"omp_num_threads": os.environ["OMP_NUM_THREADS"], "numpy": np.__version__,
                "python": platform.python_version(), "machine": platform.machine(), "quick": args.quick, "heap": heap,
                "rounds": ROUNDS, "min_batch_seconds": MIN_BATCH_SECONDS, "cfl": CFL}
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows, "mobius": mobius, "raw_s": raw, "mobius_warm": warm}, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
