"""Speed-up of an ensemble with 2 dask workers against 1 on the same run (aim: ≥ 1.8× on 2 cores).

Run: ``python benchmarks/bench_ensemble.py [--realizations 8] [--json PATH]`` (about a minute: 41 s with 1 worker
and 22 s with 2, 1.81–1.83×, measured on an idle 2-core machine). Each realization is the built-in S²
configuration at lmax 63 (MLP noise) for 1.0 time unit (about 5 s); both ensembles start from empty folders, so the
times include the local cluster's start-up, which is part of what a user pays. Run it on an otherwise idle machine:
a busy core makes the second worker useless.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _config() -> dict:
    from spde_tokens.config import load_config

    config = load_config(None)
    config["grid"]["lmax"] = 63
    # the spectral part of the built-in run, as measured in docs/numerics.md (resolved to t ≈ 1.1 at lmax 63)
    config["run"].update(t_end=1.0, dt=0.01, save_every=0.05, engine="spectral")
    config["run"].pop("handover_tail", None)
    config.pop("particles")
    return config


def main() -> None:
    import warnings

    from spde_tokens.ensemble import run_ensemble

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--realizations", type=int, default=8)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    config = _config()
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            start = time.perf_counter()
            run_ensemble(config, args.realizations, n_workers=workers, out_dir=os.path.join(tmp, str(workers)),
                         progress=False)
            times[workers] = time.perf_counter() - start
    speedup = times[1] / times[2]
    print(f"{'workers':>8} {'seconds':>9}")
    for workers, seconds in times.items():
        print(f"{workers:>8} {seconds:>9.2f}")
    print(f"speed-up 2 vs 1 workers: {speedup:.2f}x ({args.realizations} realizations)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"seconds": times, "speedup": speedup}, fh, indent=1)


if __name__ == "__main__":
    main()
