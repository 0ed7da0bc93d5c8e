"""Cost of a density step on the zonal grid (S^{d−1}, any d), in units of one dense transform product.

What it measures
----------------
For ZonalGrid(d, lmax), d ∈ {64, 1024}, lmax ∈ {127, 511} (dealiased: ⌈3(lmax+1)/2⌉ nodes), with one thread:

* **floor**: one dense transform product, the analysis ``grid.analysis(field)`` (a product of the field with the
  (lmax+1) × nodes matrix √w_i Y_l(s_i));
* **rhs**: one evaluation of ``DensityEquation(model, grid).tendency(coeffs)``, −div_S(ρ X[ρ]) on the zonal path
  (SA, Q = K = V = I, beta = 4);
* **step**: one RK4 step (four RHS and the stage sums);

and prints rhs/floor and step/floor. The density is a von Mises–Fisher cap about e_d with κ = d/4 (a mean
A_d(κ) ≈ 1/4, resolved at both degrees).

Expected floor
--------------
An RHS takes four dense products: the synthesis of ρ, the synthesis of G̃ρ (Funk–Hecke multipliers, diagonal), the
gradient synthesis of G̃ρ/κ and the Galerkin divergence (one analysis-like product), so about 4 floors, plus the
node-wise softmax normalization (O(nodes)); an RK4 step about 16. The products are matrix-vector products
(memory-bound: the matrices are (lmax+1) × nodes doubles, 0.2 MB at lmax 127 and 3 MB at lmax 511), so the ratios
should not depend on d: the dimension enters only through the recurrence coefficients and the weights, computed once.

Measured (2 shared cores under load, OMP_NUM_THREADS=1): at lmax 511 one product takes 0.10 ms and an RHS 6.5–6.8
of them (d = 64 and 1024 alike), an RK4 step 26–30; at lmax 127 a product takes 13 µs, so the RHS (11.5 products,
0.15 ms) and the step (48–56) are dominated by the Python and NumPy call overhead of the node-wise operations. The
first run of this benchmark found the divergence negating its (lmax+1) × nodes matrix at every call (13 products per
RHS at lmax 511 before the fix).

Timing method
-------------
As ``bench_density.py`` (its ``measure``): batches of at least 0.2 s, floor, rhs and step batches interleaved over
five rounds, ratios of the batches of the same round and their median; ``spread`` = (max − min)/median of the
per-round ratios.

How to run
----------
::

    python benchmarks/bench_zonal.py              # the full table (about half a minute)
    python benchmarks/bench_zonal.py --quick      # lmax 127 only
    python benchmarks/bench_zonal.py --json out.json

OMP_NUM_THREADS is set to 1 when it is not already set (before numpy is imported).
"""

from __future__ import annotations

# ruff: noqa: E402  (OMP_NUM_THREADS must be set before numpy is imported)
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform

import numpy as np
from bench_density import MIN_BATCH_SECONDS, ROUNDS, TIMING_HEADER, rhs_timings, timing_columns

from spde_tokens import initial
from spde_tokens.density import DensityEquation
from spde_tokens.grids import ZonalGrid
from spde_tokens.model import AttentionModel

DIMS = (64, 1024)
LMAXES = (127, 511)
BETA = 4.0
#: CFL number lmax · |V| · dt of the timed step (inside RK4's limit 2√2)
CFL = 0.5


def bench_row(dim: int, lmax: int) -> dict:
    """Floor, RHS and RK4-step times of one zonal grid."""
    grid = ZonalGrid(dim, lmax, threads=1)
    rho0 = initial.von_mises_fisher(grid, np.eye(dim)[-1], dim / 4)
    field = np.ascontiguousarray(rho0.values, dtype=float)
    eq = DensityEquation(AttentionModel(dim, BETA), grid)
    return {"grid": repr(grid), "dim": dim, "lmax": lmax, "nodes": grid.nodes,
            **rhs_timings(repr(grid), lambda: grid.analysis(field), eq, grid.analysis(field), CFL / grid.degree_max)}


HEADER = f"{'d':>5} {'lmax':>5} {'nodes':>6} {TIMING_HEADER}"


def format_row(row: dict) -> str:
    return f"{row['dim']:>5} {row['lmax']:>5} {row['nodes']:>6} {timing_columns(row, decimals=4)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only lmax 127")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    print(f"spde_tokens zonal density benchmark: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, numpy "
          f"{np.__version__}, python {platform.python_version()}, {platform.machine()}")
    print(f"floor = one dense transform product (analysis); median of {ROUNDS} batches of >= {MIN_BATCH_SECONDS} s")
    print(HEADER)
    print("-" * len(HEADER))
    rows = []
    for lmax in LMAXES[:1] if args.quick else LMAXES:
        for dim in DIMS:
            row = bench_row(dim, lmax)
            rows.append(row)
            print(format_row(row), flush=True)
    if args.json:
        meta = {"omp_num_threads": os.environ["OMP_NUM_THREADS"], "numpy": np.__version__,
                "python": platform.python_version(), "machine": platform.machine(), "quick": args.quick,
                "rounds": ROUNDS, "min_batch_seconds": MIN_BATCH_SECONDS, "cfl": CFL, "beta": BETA}
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
