"""Cost of one stochastic step of the density equation (common noise), in units of one transform pair.

What it measures
----------------
For SphereGrid(lmax), lmax = 127 and 255, with one thread, and three noise models, BiasNoise(0.5),
MLPNoise(0.5, "tanh", width=None) (the infinite-width field, sampled spectrally up to the grid's degree) and
MLPNoise(0.5, "tanh", width=64) (a finite random MLP evaluated at every node):

* **floor**: one analysis + synthesis pair of shtns on the same grid (``grid.synthesis(grid.analysis(field))``);
* **field**: ``eq.frozen_field(coeffs, path.increments(k), dt)``, the noise's tangential velocity u_n/dt that a
  step freezes (the draw of the increments of step k included, as in ``solve_density``);
* **rhs**: one evaluation of the right-hand side with that frozen field, ``eq.tendency(coeffs, frozen)``, i.e.
  ``−div_S(ρ (X[ρ] + u_n/dt))``;
* **step**: one full stochastic step ``eq.step(coeffs, dt, get_scheme("rk4"), 0.5, path.increments(k))``, split
  (docs/mathematics.md, 'Splitting'): the field, two RK4 half steps of the attention drift (eight RHS without
  noise), and between them the frozen noise transport in as many RK4 sub-steps as its CFL number asks for, each
  stage one synthesis and one vector analysis;

each in milliseconds and in pairs (time / floor). ``substeps`` is the mean number of noise sub-steps over the 64
steps of the path, found by stepping the state once through the whole path before any timing; ``drift rhs`` is the
8 attention RHS of a step, ``noise stages`` 4 × substeps transport stages (about one pair each).

Setup: ``AttentionModel(3, beta=1.0)`` (softmax, V = I), density ``initial.von_mises_fisher(grid, [0, 0, 1], 4.0)``,
dt = 2e-3, ``NoisePath(noise, 3, dt, n_steps=64, seed=0, lmax=grid.lmax)``, ``DensityEquation(model, grid,
noise=noise)``, scheme rk4, cfl 0.5.

The number of sub-steps depends on the increment (λ = lmax · (‖V‖ dt + max|u_n|) / (cfl · 2√2)), so the timed
calls rotate over a fixed set of eight steps k of the path, chosen by their sub-step counts (every eighth of the
64 steps sorted by sub-steps) so that their mean is close to the path's; each call uses the state the pre-pass
reached before step k. The note under a row gives that set's mean when it differs from the path's by more than 5%.

Expected floor
--------------
An RHS costs about 3 transform pairs: the synthesis of ρ and of G̃ρ, one gradient synthesis and one vector
analysis (a vector transform is about two scalar ones). Adding the frozen noise field costs one array sum on the
grid, so the aim of the issue is the same as without noise: ≤ 5 pairs per RHS. The field is computed once per step
(not per RHS): for BiasNoise it is a constant vector projected on the tangent frame, for MLPNoise(width=None) d = 3
spectral syntheses (about 1.5 pairs) plus the draw of 3 (lmax + 1)² normals, for MLPNoise(width=64) two BLAS
products (N × d × width) and N × width activations over the N nodes.

A second table breaks the field down (same timing method): ``incr`` the draw of the increments, ``grid_field``
``noise.grid_field(grid, increments)`` (the Cartesian field at the nodes), ``tangent`` the projection
``grid.to_tangent(vectors) / dt``; for width=None the d syntheses and the scaling of the coefficients
(``MLPNoise._coefficients``); for width=64 the three stages x W₁ᵀ, φ and φ W₂ᵀ over the nodes, in the blocks the
package uses; and ``rhs0``, the RHS without noise (``eq.tendency(coeffs)``), for comparison.

Timing method
-------------
As ``bench_density.py``: ``time.perf_counter``; every callable is warmed up, then run in batches of as many calls
as take at least 0.2 s (here a multiple of the eight rotated steps). For each row the floor, field, rhs and step
batches are interleaved, five rounds; the median batch of each is reported, and a ratio (pairs) is the median over
the rounds of the ratio of the batches of the same round, so that a burst of load from another process hits
numerator and denominator alike. ``spread`` is (max − min)/median of the per-round ratios (the worst column).

How to run
----------
::

    python benchmarks/bench_noise.py              # lmax 127 and 255 (several minutes: the pre-pass steps the path)
    python benchmarks/bench_noise.py --quick      # lmax 63 only (a smoke test)
    python benchmarks/bench_noise.py --lmax 255   # chosen degrees only
    python benchmarks/bench_noise.py --json out.json

OMP_NUM_THREADS is set to 1 when it is not already set (before numpy is imported), so that BLAS and shtns stay
on one thread; the grids are built with ``threads=1``.
"""

from __future__ import annotations

# ruff: noqa: E402  (OMP_NUM_THREADS must be set before numpy is imported)
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

from spde_tokens import initial
from spde_tokens import noise as noise_module
from spde_tokens.density import DensityEquation
from spde_tokens.grids import SphereGrid
from spde_tokens.model import AttentionModel
from spde_tokens.noise import BiasNoise, MLPNoise, NoisePath
from spde_tokens.steppers import get_scheme

#: seconds one batch of calls must last at least
MIN_BATCH_SECONDS = 0.2
#: batches per measurement (the median is reported)
ROUNDS = 5
SPHERE_LMAX = (127, 255)
QUICK_LMAX = (63,)
DT = 2e-3
N_STEPS = 64
SEED = 0
CFL = 0.5
#: steps of the path the timed calls rotate over
N_ROTATE = 8


def noises() -> list[tuple[str, object]]:
    return [("Bias(0.5)", BiasNoise(0.5)),
            ("MLP(tanh,w=None)", MLPNoise(0.5, "tanh", width=None)),
            ("MLP(tanh,w=64)", MLPNoise(0.5, "tanh", width=64))]


# ---- timing (as bench_density.py, with batches a multiple of a cycle length) ------------------------------------
def run_batch(fn: Callable[[], object], n: int) -> float:
    """Seconds per call over ``n`` consecutive calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def calibrate(fn: Callable[[], object], cycle: int = 1, min_seconds: float = MIN_BATCH_SECONDS) -> int:
    """Warm ``fn`` up and return a multiple of ``cycle`` calls that lasts at least ``min_seconds``."""
    fn()
    n = cycle
    while True:
        elapsed = run_batch(fn, n) * n
        if elapsed >= min_seconds:
            return n
        # aim 20% past the target, never more than 10x at once, whole cycles
        target = max(n + 1, min(10 * n, int(np.ceil(1.2 * n * min_seconds / max(elapsed, 1e-9)))))
        n = cycle * int(np.ceil(target / cycle))


def measure(fns: dict[str, tuple[Callable[[], object], int]], rounds: int = ROUNDS) -> dict[str, list[float]]:
    """Per-call seconds of each (callable, cycle) in ``rounds`` batches, the batches of different callables
    interleaved."""
    counts = {name: calibrate(fn, cycle) for name, (fn, cycle) in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, (fn, _cycle) in fns.items():
            times[name].append(run_batch(fn, counts[name]))
    return times


def rotating(calls: list[Callable[[], object]]) -> Callable[[], object]:
    """One callable that runs ``calls`` in turn, one per call."""
    state = {"i": 0}

    def fn():
        i = state["i"]
        state["i"] = (i + 1) % len(calls)
        return calls[i]()

    return fn


def summarize(times: dict[str, list[float]], floor: str = "floor") -> dict:
    """Median ms of every entry, median per-round ratio to the floor and its spread."""
    out = {}
    base = np.array(times[floor])
    for name, values in times.items():
        v = np.array(values)
        ratios = v / base
        out[name] = {"ms": 1e3 * float(np.median(v)), "pairs": float(np.median(ratios)),
                     "spread": float(np.ptp(ratios) / np.median(ratios)), "batches_ms": list(1e3 * v)}
    return out


# ---- one row ------------------------------------------------------------------------------------------------------
def prepass(eq: DensityEquation, path: NoisePath, coeffs: np.ndarray, scheme) -> tuple[list[np.ndarray], np.ndarray]:
    """Step the state through the whole path: the state before every step and the sub-steps of every step."""
    states, subs = [], []
    mass0 = coeffs[0].real
    for k in range(path.n_steps):
        states.append(coeffs)
        coeffs, n_sub = eq.step(coeffs, path.dt, scheme, CFL, path.increments(k))
        subs.append(n_sub)
    if not np.all(np.isfinite(coeffs)) or abs(coeffs[0].real - mass0) > 1e-10 * abs(mass0):
        raise RuntimeError("the pre-pass through the path did not stay finite or did not conserve mass")
    return states, np.array(subs)


def rotation_steps(subs: np.ndarray, n: int = N_ROTATE) -> list[int]:
    """n steps of the path spread over its sub-step distribution (every (len/n)-th after sorting by sub-steps)."""
    order = sorted(range(subs.size), key=lambda k: (subs[k], k))
    return [order[int((i + 0.5) * subs.size / n)] for i in range(n)]


def bench_row(grid: SphereGrid, label: str, noise) -> tuple[dict, dict]:
    """The main row (floor, field, rhs, step) and the field breakdown of one grid and noise."""
    model = AttentionModel(3, beta=1.0)
    rho0 = initial.von_mises_fisher(grid, [0, 0, 1], 4.0)
    field = np.ascontiguousarray(rho0.values, dtype=float)
    coeffs = grid.analysis(field)
    path = NoisePath(noise, 3, DT, n_steps=N_STEPS, seed=SEED, lmax=grid.lmax)
    eq = DensityEquation(model, grid, noise=noise)
    rk4 = get_scheme("rk4")

    states, subs = prepass(eq, path, coeffs, rk4)
    ks = rotation_steps(subs)
    frozen = {k: eq.frozen_field(states[k], path.increments(k), DT) for k in ks}
    for k in ks:  # the timed step at (state k, increments k) must take the sub-steps the pre-pass saw
        if eq.step(states[k], DT, rk4, CFL, path.increments(k))[1] != subs[k]:
            raise RuntimeError(f"step {k}: the sub-step count is not reproducible")

    n = len(ks)
    times = measure({
        "floor": (lambda: grid.synthesis(grid.analysis(field)), 1),
        "field": (rotating([lambda k=k: eq.frozen_field(states[k], path.increments(k), DT) for k in ks]), n),
        "rhs": (rotating([lambda k=k: eq.tendency(states[k], frozen[k]) for k in ks]), n),
        "step": (rotating([lambda k=k: eq.step(states[k], DT, rk4, CFL, path.increments(k)) for k in ks]), n),
    })
    stats = summarize(times)
    row = {
        "grid": f"sphere lmax={grid.lmax}", "repr": repr(grid), "shape": list(grid.shape), "noise": label,
        "noise_repr": repr(noise), "attention": eq.attention.method,
        **{f"{name}_ms": s["ms"] for name, s in stats.items()},
        **{f"{name}_pairs": s["pairs"] for name, s in stats.items() if name != "floor"},
        "spread": max(s["spread"] for name, s in stats.items() if name != "floor"),
        "substeps_mean": float(subs.mean()), "substeps_min": int(subs.min()), "substeps_max": int(subs.max()),
        "drift_rhs_per_step": 8.0, "noise_stages_per_step": 4.0 * float(subs.mean()),
        "timed_steps": ks, "timed_substeps_mean": float(np.mean(subs[ks])),
        "substeps": subs.tolist(),
        "batches_ms": {name: s["batches_ms"] for name, s in stats.items()},
    }
    return row, bench_breakdown(grid, label, noise, eq, path, states[0], field, ks)


def mlp_stage_calls(model: MLPNoise, grid: SphereGrid, increments: dict) -> dict[str, tuple[Callable, int]]:
    """The three stages of the finite-width field over all nodes, in the package's blocks (inputs precomputed)."""
    w1, w2 = increments["mlp_w1"], increments["mlp_w2"]
    flat = grid.points().reshape(-1, grid.dim)
    block_bytes = getattr(noise_module, "MLP_BLOCK_BYTES", 32 * 2**20)
    rows = max(1, block_bytes // (8 * w1.shape[0]))
    blocks = [slice(s, s + rows) for s in range(0, flat.shape[0], rows)]
    pre = [flat[b] @ w1.T for b in blocks]
    hidden = [model.activation.phi(p) for p in pre]
    scale = model.sigma / np.sqrt(model.width)
    return {
        "x W1^T": (lambda: [flat[b] @ w1.T for b in blocks], 1),
        "phi": (lambda: [model.activation.phi(p) for p in pre], 1),
        "h W2^T": (lambda: [scale * (h @ w2.T) for h in hidden], 1),
    }


def bench_breakdown(grid: SphereGrid, label: str, noise, eq: DensityEquation, path: NoisePath,
                    coeffs: np.ndarray, field: np.ndarray, ks: list[int]) -> dict:
    """Where the field time goes: the draw, the Cartesian field, the projection, and the model's own parts."""
    k = ks[0]
    increments = path.increments(k)
    vectors = eq.noise.grid_field(grid, increments)
    fns: dict[str, tuple[Callable, int]] = {
        "floor": (lambda: grid.synthesis(grid.analysis(field)), 1),
        "incr": (lambda: path.increments(k), 1),
        "grid_field": (lambda: eq.noise.grid_field(grid, increments), 1),
        "tangent": (lambda: grid.to_tangent(vectors) / DT, 1),
    }
    if isinstance(noise, MLPNoise) and noise.width is None:
        xi = increments["mlp_coeff"]
        coefficients = getattr(noise, "_coefficients", None)
        if coefficients is not None:
            c = coefficients(grid, xi)
            fns["coefficients"] = (lambda: coefficients(grid, xi), 1)
        else:
            c = np.stack([coeffs] * grid.dim)
        fns[f"{grid.dim} syntheses"] = (lambda: [grid.synthesis(ci) for ci in c], 1)
    elif isinstance(noise, MLPNoise):
        fns.update(mlp_stage_calls(noise, grid, increments))
    fns["rhs0"] = (lambda: eq.tendency(coeffs), 1)
    stats = summarize(measure(fns))
    return {"grid": f"sphere lmax={grid.lmax}", "noise": label,
            "parts": {name: {"ms": s["ms"], "pairs": s["pairs"]} for name, s in stats.items()},
            "spread": max(s["spread"] for name, s in stats.items() if name != "floor")}


# ---- output -------------------------------------------------------------------------------------------------------
HEADER = (f"{'grid':<16} {'noise':<17} {'floor ms':>8} {'field ms (pairs)':>17} {'rhs ms (pairs)':>15} "
          f"{'step ms (pairs)':>19} {'substeps':>8} {'drift rhs':>9} {'noise stages':>12} {'spread':>6}")


def cell(ms: float, pairs: float, width: int) -> str:
    return f"{ms:.2f} ({pairs:.1f})".rjust(width)


def format_row(row: dict) -> str:
    line = (f"{row['grid']:<16} {row['noise']:<17} {row['floor_ms']:>8.3f} "
            f"{cell(row['field_ms'], row['field_pairs'], 17)} {cell(row['rhs_ms'], row['rhs_pairs'], 15)} "
            f"{cell(row['step_ms'], row['step_pairs'], 19)} {row['substeps_mean']:>8.2f} "
            f"{row['drift_rhs_per_step']:>9.0f} {row['noise_stages_per_step']:>12.1f} "
            f"{100 * row['spread']:>5.0f}%")
    if abs(row["timed_substeps_mean"] - row["substeps_mean"]) > 0.05 * row["substeps_mean"]:
        line += (f"\n{'':<16}   note: the timed steps {row['timed_steps']} take {row['timed_substeps_mean']:.2f} "
                 "sub-steps on average")
    return line


def format_breakdown(b: dict) -> str:
    parts = "  ".join(f"{name} {p['ms']:.2f} ({p['pairs']:.1f})" for name, p in b["parts"].items()
                      if name != "floor")
    floor = b["parts"]["floor"]["ms"]
    return f"{b['grid']:<16} {b['noise']:<17} {floor:>8.3f}  {parts}  [spread {100 * b['spread']:.0f}%]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only lmax 63 (a smoke test)")
    parser.add_argument("--lmax", type=int, nargs="+", metavar="L", help=f"these degrees (default {SPHERE_LMAX})")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    lmaxes = args.lmax or (QUICK_LMAX if args.quick else SPHERE_LMAX)

    print(f"spde_tokens stochastic density step benchmark: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, numpy "
          f"{np.__version__}, python {platform.python_version()}, {platform.machine()}")
    print(f"AttentionModel(3, beta=1), vMF(kappa=4) at the north pole, dt={DT}, path of {N_STEPS} steps (seed {SEED}), "
          f"rk4, cfl {CFL}; floor = one shtns analysis + synthesis pair; (pairs) = time / floor; median of {ROUNDS} "
          f"batches of >= {MIN_BATCH_SECONDS} s; substeps = mean noise sub-steps over the path; a split step = "
          "8 drift RHS + 4 x substeps noise stages")
    print(HEADER)
    print("-" * len(HEADER))
    rows, breakdowns = [], []
    for lmax in lmaxes:
        grid = SphereGrid(lmax, threads=1)
        for label, noise in noises():
            row, breakdown = bench_row(grid, label, noise)
            rows.append(row)
            breakdowns.append(breakdown)
            print(format_row(row), flush=True)

    print()
    print("field breakdown, ms (pairs): incr = path.increments(k), grid_field = noise.grid_field (Cartesian), "
          "tangent = to_tangent/dt; rhs0 = RHS without noise")
    for b in breakdowns:
        print(format_breakdown(b))

    if args.json:
        meta = {"omp_num_threads": os.environ["OMP_NUM_THREADS"], "numpy": np.__version__,
                "python": platform.python_version(), "machine": platform.machine(), "quick": args.quick,
                "lmax": list(lmaxes), "rounds": ROUNDS, "min_batch_seconds": MIN_BATCH_SECONDS, "dt": DT,
                "n_steps": N_STEPS, "seed": SEED, "cfl": CFL, "scheme": "rk4"}
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows, "breakdown": breakdowns}, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
