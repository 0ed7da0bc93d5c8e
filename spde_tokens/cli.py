"""Command line: ``spde-tokens run``.

Every command exits with status 2 and a one-line message on bad input; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
import time


def default_run(progress: bool | None):
    """The built-in default: clustering of tokens on S^2 under softmax attention (beta = 6, Q = K = V = I).

    Three von Mises–Fisher bumps merge into clusters; lmax = 47 resolves the kernel (8.7 sqrt(6) ≈ 21).
    """
    import spde_tokens as st

    grid = st.SphereGrid(lmax=47)
    model = st.AttentionModel(dim=3, beta=6.0)
    rho0 = st.initial.mixture(grid, weights=[0.4, 0.35, 0.25],
                              means=[[0, 0, 1], [1, 0, 0.2], [-0.5, 0.8, -0.3]], kappas=[3.0, 4.0, 5.0])
    return st.solve_density(model, None, rho0, t_end=4.0, dt=0.01, save_every=0.1, progress=progress)


def _run(args: argparse.Namespace) -> int:
    from spde_tokens.io import write_run

    if args.config is not None:
        raise ValueError("run: configuration files are not supported yet; run without CONFIG for the default")
    start = time.perf_counter()
    ds = default_run(progress=False if args.no_progress else None)
    path = write_run(ds, args.output)
    last = ds.isel(time=-1)
    print(f"wrote {path}: {ds.sizes['time']} records to t = {float(last.time):g} in "
          f"{time.perf_counter() - start:.1f} s; energy {float(ds.energy[0]):.4f} -> {float(last.energy):.4f}, "
          f"dispersion {float(ds.dispersion[0]):.4f} -> {float(last.dispersion):.4f}, "
          f"mass error {abs(float(last.mass) - 1):.1e}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spde-tokens", description="Tokens of deep Transformers on the sphere: "
                                     "density SPDE and particle simulations.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="solve the density equation (built-in default without CONFIG)")
    run.add_argument("config", nargs="?", help="TOML configuration (default: the built-in run)")
    run.add_argument("-o", "--output", default="run.nc", help="NetCDF output file (default run.nc)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, NotImplementedError) as exc:
        if args.debug:
            raise
        print(f"spde-tokens {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
