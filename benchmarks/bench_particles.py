"""Cost of one particle step against the plainest numpy softmax attention (aim: ≤ 1.2× two evaluations).

What it measures
----------------
For N = 4096 tokens on S^{d−1}, d = 3 and d = 64, ``AttentionModel(d, beta=1.0)`` (softmax, Q = K = V = I),
tokens drawn uniformly with seed 0, one BLAS thread:

* **floor**: two evaluations of the plainest numpy softmax attention,
  ``L = beta X Xᵀ; E = exp(L − max_j L); out = (E X) / (E 1)`` (one N × N matrix, no blocks, no safeguards);
* **layer**: one step of ``TokenDynamics.layer_step`` (the default particle stepper, docs/mathematics.md,
  'Common noise': x ← normalize(x + dt X[μ](x) + P_x ΔN + P_x ξ)) without noise: one attention evaluation in row
  blocks of at most 64 MiB, the max-shifted sums as BLAS products, the reliability test and the tangent projection;
* **layer+mlp**: the same step with the common noise of ``MLPNoise(0.5, "tanh", width=64)`` (its increments drawn
  inside the timed call, as ``simulate_particles`` does);
* **flow**: one step of ``scheme="flow"`` (RK4 on the frozen-increment ODE: four attention evaluations, so its
  floor ratio is about 2);
* **harmonic** (d = 3 only): the layer step with the Funk–Hecke harmonic attention, O(N L²) instead of O(N²).

Every time is the median of repeated calls, printed in milliseconds and in floors (time / floor). The floor is
measured in the same run, so the ratios hold on any machine; absolute times vary ±15% on a shared machine.

Why two evaluations: the floor of the issue counts a step as costing about two bare attention evaluations; the
layer step needs one attention evaluation plus O(N d) work, so its ratio should be well under 1.

Run: ``python benchmarks/bench_particles.py [--tokens 4096] [--repeat 7] [--json PATH]`` (under a minute).
"""

from __future__ import annotations

import argparse
import json
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from timing import median_time  # noqa: E402


def naive_attention(x: np.ndarray, beta: float) -> np.ndarray:
    """The plainest numpy softmax attention: Σ_j e^{beta x_i·x_j} x_j / Σ_j e^{beta x_i·x_j}."""
    logits = beta * (x @ x.T)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (weights @ x) / weights.sum(axis=1, keepdims=True)


def bench(dim: int, n_tokens: int, repeat: int) -> dict:
    """Times (seconds) of the floor and of each step variant at one dimension."""
    from spde_tokens.model import AttentionModel
    from spde_tokens.noise import MLPNoise, NoisePath, NoiseSum
    from spde_tokens.particles import TokenDynamics, harmonic_degree_of

    model = AttentionModel(dim, beta=1.0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n_tokens, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    dt = 0.01
    xi = np.zeros_like(x)
    noise = MLPNoise(0.5, "tanh", width=64)
    path = NoisePath(noise, dim, dt, n_steps=10**6, seed=0)
    plain = TokenDynamics(model, None)
    noisy = TokenDynamics(model, NoiseSum(noise))
    counter = iter(range(10**6))
    times = {
        "floor": median_time(lambda: (naive_attention(x, model.beta), naive_attention(x, model.beta)), repeat),
        "layer": median_time(lambda: plain.layer_step(x, dt, None, xi), repeat),
        "layer+mlp": median_time(lambda: noisy.layer_step(x, dt, path.increments(next(counter)), xi), repeat),
        "flow": median_time(lambda: plain.flow_step(x, dt, None, xi), repeat),
    }
    if dim == 3:
        harmonic = TokenDynamics(model, None, attention="harmonic", harmonic_degree=harmonic_degree_of(model, None))
        times["harmonic"] = median_time(lambda: harmonic.layer_step(x, dt, None, xi), repeat)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    results = {}
    print(f"N = {args.tokens} tokens, beta = 1, one BLAS thread; ratio = time / (2 naive attention evaluations)")
    print(f"{'d':>4} {'variant':>10} {'ms':>9} {'ratio':>7}")
    for dim in (3, 64):
        times = bench(dim, args.tokens, args.repeat)
        results[dim] = {name: {"seconds": t, "ratio": t / times["floor"]} for name, t in times.items()}
        for name, t in times.items():
            print(f"{dim:>4} {name:>10} {1e3 * t:>9.2f} {t / times['floor']:>7.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
