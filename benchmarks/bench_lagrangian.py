"""Cost of one Lagrangian step against the raw work it cannot avoid, measured in the same run.

What it measures
----------------
The nodes of the built-in run's rule (SphereGrid(31) without dealiasing: 32 × 64 = 2048 nodes; and lmax 47, 63)
carry a two-cluster measure; ``AttentionModel(3, beta=4)`` (softmax, Q = K = V = I, harmonic attention of degree
L = 23), one BLAS thread:

* **basis**: the real harmonic basis (Re Y_lm, Im Y_lm, l ≤ L) at the nodes, ``SphereGrid.real_basis`` — the
  unavoidable per-stage work of a Funk–Hecke evaluation at moving points;
* **gemm**: the two BLAS products of one evaluation, channels (4 × N) @ basis.T then (5 × 2K) @ basis, on random
  arrays of the same shapes (K = (L+1)(L+2)/2);
* **floor** = basis + gemm: one stage's attention at its minimum;
* **step**: one RK4 step of ``NodeFlow.step`` without noise (four stages: attention, its trace, the divergence);
* **step+mlp**: the same with ``MLPNoise(0.25, "tanh", width=64)`` (field and divergence at every stage).

Printed: milliseconds and the ratio step / (4 × floor) (the aim: ≤ 1.5, i.e. the bookkeeping around the
unavoidable work costs at most half of it). Each time is the median of repeated calls; the floor is measured in the
same run, so the ratios hold on any machine.

Run: ``python benchmarks/bench_lagrangian.py [--repeat 7] [--json PATH]`` (under a minute).
"""

from __future__ import annotations

import argparse
import json
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from timing import median_time  # noqa: E402


def bench(lmax: int, repeat: int) -> dict:
    import spde_tokens as st
    from spde_tokens.lagrangian import NodeFlow, node_rule, nodes_from_coefficients
    from spde_tokens.noise import NoisePath, as_noise
    from spde_tokens.steppers import get_scheme

    grid = st.SphereGrid(lmax)
    rho0 = st.initial.mixture(grid, [0.6, 0.4], [[0, 0, 1], [1, 0, 0]], [8.0, 8.0])
    x, w = nodes_from_coefficients(node_rule(grid), grid.analysis(rho0.values))
    model = st.AttentionModel(3, beta=4.0)
    plain = NodeFlow(model, None, "harmonic")
    sums = plain.attention.sums
    n, k2 = x.shape[0], 2 * sums.grid.n_coeff
    rng = np.random.default_rng(0)
    basis = sums.basis(x)
    chans, gains = rng.standard_normal((4, n)), rng.standard_normal((5, k2))
    noise = as_noise(st.MLPNoise(0.25, "tanh", width=64))
    noisy = NodeFlow(model, noise, "harmonic")
    path = NoisePath(noise, 3, 0.02, n_steps=10**6, seed=0)
    counter = iter(range(10**6))
    state = np.concatenate([x, np.zeros((n, 1))], axis=1)
    rk4 = get_scheme("rk4")
    times = {
        "basis": median_time(lambda: sums.basis(x), repeat),
        "gemm": median_time(lambda: (chans @ basis.T, gains @ basis), repeat),
        "step": median_time(lambda: plain.step(state, w, 0.02, None, rk4), repeat),
        "step+mlp": median_time(lambda: noisy.step(state, w, 0.02, path.increments(next(counter)), rk4), repeat),
    }
    times["floor"] = times["basis"] + times["gemm"]
    return {"lmax": lmax, "nodes": n, "degree": sums.grid.lmax, "seconds": times,
            "step_over_4_floors": times["step"] / (4 * times["floor"]),
            "step_mlp_over_4_floors": times["step+mlp"] / (4 * times["floor"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = [bench(lmax, args.repeat) for lmax in (31, 47, 63)]
    for r in results:
        t = r["seconds"]
        print(f"lmax {r['lmax']:3d} ({r['nodes']:5d} nodes, harmonic degree {r['degree']}): basis "
              f"{1e3 * t['basis']:.2f} ms, gemm {1e3 * t['gemm']:.2f} ms, floor {1e3 * t['floor']:.2f} ms; step "
              f"{1e3 * t['step']:.1f} ms = {r['step_over_4_floors']:.2f} × 4 floors; with MLP noise "
              f"{1e3 * t['step+mlp']:.1f} ms = {r['step_mlp_over_4_floors']:.2f} × 4 floors")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
