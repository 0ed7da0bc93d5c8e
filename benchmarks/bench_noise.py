"""Cost of one stochastic step of the density equation (common noise), in units of one transform pair.

What it measures
----------------
For SphereGrid(lmax) (the solver's dealiased grid), lmax = 127 and 255, one thread, dt = 1e-3, and every common
noise model: RotationNoise(0.3), BiasNoise(0.3), QuadraticFormNoise(0.3), ValueNoise(0.3), MLPNoise(0.3, "tanh",
width=None) and MLPNoise(0.3, "tanh", width=64):

* **pair** (the unit): one shtns scalar analysis + synthesis, single-threaded, on the *plain* Gauss grid
  ((lmax + 1) × 2(lmax + 1), ``SphereGrid(lmax, dealias=False)``) at the same lmax; **dealiased pair** the same on the
  solver's grid (its ratio to the unit is printed: about 1.7–2);
* **field**: ``eq.frozen_field(coeffs, path.increments(k), dt)``: for the fields linear in x (rotation, bias,
  quadratic form) the spectral transport operator (no grid work), for the others the tangent field on the grid;
* **transport**: the noise part of the split step, ``eq._transport_step(coeffs, frozen, dt, rk4, cfl)``: its CFL
  sub-steps, sparse products on the coefficients for the linear fields (docs/mathematics.md, 'Spectral transport of
  linear noise fields'), one synthesis and one vector analysis per stage otherwise;
* **(grid)**: for the linear fields, the same sub-steps on the grid (``_transport_step`` with the tangent field
  P_x ΔN/dt on the nodes): the path the spectral operator replaced, for comparison;
* **drift**: the attention drift over one step, ``eq._drift_step(coeffs, dt, rk4, cfl)``: one RK4 step, 4 RHS;
* **floor 4**: four times the transforms no RHS can skip, a synthesis of ρ and a vector analysis of the flux ρX on
  the dealiased grid (``grid.synthesis``, ``grid.divergence``): the least a drift step of one evaluation per RK4
  stage can cost on this grid;
* **step**: one split step between records, ``eq.step(coeffs, dt, rk4, cfl, path.increments(k), owed=True,
  close=False)``: the field, the drift over dt (the closing half step of the previous step merged with the opening
  half step of this one, docs/mathematics.md, 'Splitting'), the transport — what every step but those ending on a
  record costs (ValueNoise, whose steps are not merged: the full step below);
* **record step**: a step that starts and ends on a record, ``eq.step(coeffs, dt, rk4, cfl, path.increments(k))``:
  two RK4 half steps of the drift (8 RHS); paid once per record;

each in pairs (time / pair of the same round). ``substeps`` is the mean number of noise sub-steps over the 64 steps of
the path, found by stepping the state once through the whole path before any timing.

Targets (docs/numerics.md, 'Performance'), per step between records, set-up excluded: BiasNoise ≤ 24 pairs,
RotationNoise ≤ 12 pairs (the drift is most of it, and ``floor 4`` alone is 10–15 pairs), MLPNoise(width=64) within
1.5 × its own floor: the activation φ over nodes × width (``phi`` of N_nodes × 64 pre-activations, in the
package's cache-sized row blocks), measured in the same run; its field is compared with that floor. The other
models have no target and are printed for reference.

Setup: ``AttentionModel(3, beta=1.0)`` (softmax, V = I), density ``initial.von_mises_fisher(grid, [0, 0, 1], 4.0)``,
``NoisePath(noise, 3, dt, n_steps=64, seed=0, lmax=grid.lmax)``, ``DensityEquation(model, grid, noise=noise)``, rk4,
cfl 0.5. The spectral operators of a grid are built on its first use (set-up: 0.3 s at lmax 127, 1.3 s at 255), before
the timing.

The number of sub-steps depends on the increment, so the timed calls rotate over a fixed set of eight steps k of the
path, chosen by their sub-step counts (every eighth of the 64 steps sorted by sub-steps) so that their mean is close
to the path's; each call uses the state the pre-pass reached before step k.

Timing method
-------------
``time.perf_counter``; every callable is warmed up, then run in batches of as many calls as take at least 0.2 s (a
multiple of the eight rotated steps). The pair, the dealiased pair, the activation floor, field, transport (both),
floor, drift and both step batches are interleaved, five rounds; a ratio is the median over the rounds of the ratio
of the batches of the same round, so that a burst of load from another process (the machine is shared) hits
numerator and denominator alike.
``spread`` is (max − min)/median of the per-round step ratios.

How to run
----------
::

    python benchmarks/bench_noise.py              # lmax 127 and 255 (a few minutes)
    python benchmarks/bench_noise.py --quick      # lmax 63 only (a smoke test)
    python benchmarks/bench_noise.py --lmax 255   # chosen degrees only
    python benchmarks/bench_noise.py --noise "Bias(0.3)" "MLP(tanh,w=64)"   # chosen models only
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
from spde_tokens.density import DensityEquation
from spde_tokens.grids import SphereGrid
from spde_tokens.model import AttentionModel
from spde_tokens.noise import (
    MLP_BLOCK_BYTES,
    BiasNoise,
    MLPNoise,
    NoisePath,
    QuadraticFormNoise,
    RotationNoise,
    ValueNoise,
)
from spde_tokens.steppers import get_scheme

#: seconds one batch of calls must last at least
MIN_BATCH_SECONDS = 0.2
#: batches per measurement (the median is reported)
ROUNDS = 5
SPHERE_LMAX = (127, 255)
QUICK_LMAX = (63,)
DT = 1e-3
N_STEPS = 64
SEED = 0
CFL = 0.5
#: steps of the path the timed calls rotate over
N_ROTATE = 8


#: per-step targets in pairs (docs/numerics.md, 'Performance'); MLP(width=64): field ≤ 1.5 × its activation floor
TARGET_PAIRS = {"Rotation(0.3)": 12.0, "Bias(0.3)": 24.0}
MLP_FLOOR_FACTOR = 1.5


def noises() -> list[tuple[str, object]]:
    return [("Rotation(0.3)", RotationNoise(0.3)),
            ("Bias(0.3)", BiasNoise(0.3)),
            ("QuadForm(0.3)", QuadraticFormNoise(0.3)),
            ("Value(0.3)", ValueNoise(0.3)),
            ("MLP(tanh,w=None)", MLPNoise(0.3, "tanh", width=None)),
            ("MLP(tanh,w=64)", MLPNoise(0.3, "tanh", width=64))]


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


def summarize(times: dict[str, list[float]], floor: str = "pair") -> dict:
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


def activation_floor(grid: SphereGrid, noise: MLPNoise) -> Callable[[], object]:
    """φ over the nodes × width pre-activations of one step: the floor of the finite-width MLP field.

    In the row blocks the package uses (``MLP_BLOCK_BYTES``), each in cache as in ``MLPNoise.field`` (where φ reads the
    block x W₁ᵀ just computed): φ of one cache-resident block, as many times as the nodes fill blocks (a floor over
    150 MB of stored pre-activations at lmax 255 would time the memory instead).
    """
    assert noise.width is not None
    w1 = np.random.default_rng(SEED).standard_normal((noise.width, grid.dim))
    flat = grid.points().reshape(-1, grid.dim)
    rows = max(1, MLP_BLOCK_BYTES // (8 * noise.width))
    block = flat[:rows] @ w1.T
    sizes = [min(rows, flat.shape[0] - start) for start in range(0, flat.shape[0], rows)]
    return lambda: [noise.activation.phi(block[:size]) for size in sizes]


def bench_row(grid: SphereGrid, plain: SphereGrid, label: str, noise) -> dict:
    """The pair, dealiased pair, field, transport and step of one grid and noise (and the MLP's activation floor)."""
    model = AttentionModel(3, beta=1.0)
    rho0 = initial.von_mises_fisher(grid, [0, 0, 1], 4.0)
    coeffs = grid.analysis(np.ascontiguousarray(rho0.values, dtype=float))
    plain_field = plain.synthesis(coeffs[: plain.n_coeff]) if plain.n_coeff == grid.n_coeff else None
    assert plain_field is not None  # the same lmax, hence the same coefficients
    dealiased_field = grid.synthesis(coeffs)
    flux = np.stack([dealiased_field, dealiased_field])  # a tangent field of the flux's size (its values do not matter)
    path = NoisePath(noise, 3, DT, n_steps=N_STEPS, seed=SEED, lmax=grid.lmax)
    eq = DensityEquation(model, grid, noise=noise)
    rk4 = get_scheme("rk4")

    states, subs = prepass(eq, path, coeffs, rk4)  # also builds the grid's spectral operators (set-up)
    ks = rotation_steps(subs)
    frozen = {k: eq.frozen_field(states[k], path.increments(k), DT) for k in ks}
    for k in ks:  # the timed step at (state k, increments k) must take the sub-steps the pre-pass saw
        if eq.step(states[k], DT, rk4, CFL, path.increments(k))[1] != subs[k]:
            raise RuntimeError(f"step {k}: the sub-step count is not reproducible")

    n = len(ks)
    merged = {"owed": eq.merges_half_steps, "close": not eq.merges_half_steps}
    fns = {
        "pair": (lambda: plain.synthesis(plain.analysis(plain_field)), 1),
        "dealiased_pair": (lambda: grid.synthesis(grid.analysis(dealiased_field)), 1),
        "field": (rotating([lambda k=k: eq.frozen_field(states[k], path.increments(k), DT) for k in ks]), n),
        "transport": (rotating([lambda k=k: eq._transport_step(states[k], frozen[k], DT, rk4, CFL) for k in ks]), n),
        "drift": (rotating([lambda k=k: eq._drift_step(states[k], DT, rk4, CFL) for k in ks]), n),
        "rhs_floor": (lambda: (grid.synthesis(coeffs), grid.divergence(flux)), 1),
        "step": (rotating([lambda k=k: eq.step(states[k], DT, rk4, CFL, path.increments(k), **merged) for k in ks]), n),
        "record_step": (rotating([lambda k=k: eq.step(states[k], DT, rk4, CFL, path.increments(k)) for k in ks]), n),
    }
    if not isinstance(frozen[ks[0]], np.ndarray):  # the same sub-steps on the grid: the path the operator replaced
        grid_velocity = {k: grid.to_tangent(eq.noise.grid_field(grid, path.increments(k))) / DT for k in ks}
        fns["grid_transport"] = (rotating([lambda k=k: eq._transport_step(states[k], grid_velocity[k], DT, rk4, CFL)
                                           for k in ks]), n)
    if isinstance(noise, MLPNoise) and noise.width is not None:
        fns["activation"] = (activation_floor(grid, noise), 1)
    stats = summarize(measure(fns))
    row = {
        "grid": f"sphere lmax={grid.lmax}", "repr": repr(grid), "plain_repr": repr(plain), "noise": label,
        "noise_repr": repr(noise), "attention": eq.attention.method,
        "spectral": not isinstance(frozen[ks[0]], np.ndarray),
        **{f"{name}_ms": s["ms"] for name, s in stats.items()},
        **{f"{name}_pairs": s["pairs"] for name, s in stats.items() if name != "pair"},
        "spread": stats["step"]["spread"],
        "substeps_mean": float(subs.mean()), "substeps_min": int(subs.min()), "substeps_max": int(subs.max()),
        "timed_steps": ks, "timed_substeps_mean": float(np.mean(subs[ks])), "substeps": subs.tolist(),
        "batches_ms": {name: s["batches_ms"] for name, s in stats.items()},
    }
    if label in TARGET_PAIRS:
        row["target"] = f"step <= {TARGET_PAIRS[label]:g}"
        row["met"] = row["step_pairs"] <= TARGET_PAIRS[label]
    if "activation" in stats:
        row["field_over_activation"] = stats["field"]["ms"] / stats["activation"]["ms"]
        row["target"] = f"field <= {MLP_FLOOR_FACTOR:g} x phi ({stats['activation']['pairs']:.1f})"
        row["met"] = row["field_over_activation"] <= MLP_FLOOR_FACTOR
    return row


# ---- output -------------------------------------------------------------------------------------------------------
HEADER = (f"{'grid':<16} {'noise':<17} {'pair ms':>7} {'dealiased':>9} {'field':>6} {'transport':>9} {'(grid)':>6} "
          f"{'floor4':>6} {'drift':>6} {'step':>6} {'record':>6} {'substeps':>8} {'spread':>6}  target")


def format_row(row: dict) -> str:
    line = (f"{row['grid']:<16} {row['noise']:<17} {row['pair_ms']:>7.3f} {row['dealiased_pair_pairs']:>9.2f} "
            f"{row['field_pairs']:>6.2f} {row['transport_pairs']:>9.2f} "
            f"{row['grid_transport_pairs'] if 'grid_transport_pairs' in row else float('nan'):>6.2f} "
            f"{4 * row['rhs_floor_pairs']:>6.1f} {row['drift_pairs']:>6.1f} {row['step_pairs']:>6.1f} "
            f"{row['record_step_pairs']:>6.1f} "
            f"{row['substeps_mean']:>8.2f} {100 * row['spread']:>5.0f}%  ")
    if "target" in row:
        measured = (f"field/phi = {row['field_over_activation']:.2f}" if "field_over_activation" in row
                    else f"step = {row['step_pairs']:.1f}")
        line += f"{row['target']}: {measured} {'met' if row['met'] else 'NOT met'}"
    if abs(row["timed_substeps_mean"] - row["substeps_mean"]) > 0.05 * row["substeps_mean"]:
        line += (f"\n{'':<16}   note: the timed steps {row['timed_steps']} take {row['timed_substeps_mean']:.2f} "
                 "sub-steps on average")
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only lmax 63 (a smoke test)")
    parser.add_argument("--lmax", type=int, nargs="+", metavar="L", help=f"these degrees (default {SPHERE_LMAX})")
    parser.add_argument("--noise", nargs="+", metavar="LABEL", help="these models only (labels as printed)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    lmaxes = args.lmax or (QUICK_LMAX if args.quick else SPHERE_LMAX)

    print(f"spde_tokens stochastic density step benchmark: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, numpy "
          f"{np.__version__}, python {platform.python_version()}, {platform.machine()}")
    print(f"AttentionModel(3, beta=1), vMF(kappa=4) at the north pole, dt={DT}, path of {N_STEPS} steps (seed {SEED}), "
          f"rk4, cfl {CFL}. Unit: one pair = shtns analysis + synthesis on the plain Gauss grid (lmax+1) x 2(lmax+1), "
          f"1 thread, same run; 'dealiased' = the solver grid's pair in that unit; field, transport (the noise "
          f"sub-steps) and step in pairs; median of {ROUNDS} rounds of >= {MIN_BATCH_SECONDS} s batches")
    print(HEADER)
    print("-" * len(HEADER))
    rows = []
    for lmax in lmaxes:
        grid, plain = SphereGrid(lmax, threads=1), SphereGrid(lmax, dealias=False, threads=1)
        for label, noise in noises():
            if args.noise and label not in args.noise:
                continue
            row = bench_row(grid, plain, label, noise)
            rows.append(row)
            print(format_row(row), flush=True)

    if args.json:
        meta = {"omp_num_threads": os.environ["OMP_NUM_THREADS"], "numpy": np.__version__,
                "python": platform.python_version(), "machine": platform.machine(), "quick": args.quick,
                "lmax": list(lmaxes), "rounds": ROUNDS, "min_batch_seconds": MIN_BATCH_SECONDS, "dt": DT,
                "n_steps": N_STEPS, "seed": SEED, "cfl": CFL, "scheme": "rk4"}
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
