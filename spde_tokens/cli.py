"""Command line: ``spde-tokens run | particles | ensemble | compare | plot | animate | validate``.

Every command exits with status 2 and a one-line message on bad input; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
import time


def _summary(ds, path: str, seconds: float) -> str:
    last = ds.isel(time=-1)
    return (f"wrote {path}: {ds.sizes['time']} records to t = {float(last.time):g} in {seconds:.1f} s; "
            f"energy {float(ds.energy[0]):.4f} -> {float(last.energy):.4f}, "
            f"dispersion {float(ds.dispersion[0]):.4f} -> {float(last.dispersion):.4f}")


def _engine(args: argparse.Namespace) -> int:
    """``run`` (the density) or ``particles`` on a configuration."""
    from spde_tokens import config as cfg
    from spde_tokens.io import write_run

    runner = cfg.run_density if args.command == "run" else cfg.run_particles
    start = time.perf_counter()
    ds = runner(cfg.load_config(args.config), progress=False if args.no_progress else None,
                checkpoint=args.checkpoint)
    path = write_run(ds, args.output)
    extra = f"mass error {abs(float(ds.mass[-1]) - 1):.1e}" if "mass" in ds else f"{ds.sizes['token']} tokens"
    print(_summary(ds, path, time.perf_counter() - start) + ", " + extra)
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from spde_tokens.ensemble import run_ensemble, summary

    start = time.perf_counter()
    ds = run_ensemble(args.config, args.realizations, scheduler=args.scheduler, n_workers=args.workers,
                      output=args.output, progress=False if args.no_progress else None)
    numbers = ", ".join(f"{k} {v:.4g}" for k, v in summary(ds).items())
    print(f"wrote {args.output} ({args.output}.parts/ holds one file per realization) in "
          f"{time.perf_counter() - start:.1f} s: {numbers}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from spde_tokens.compare import compare
    from spde_tokens.io import open_run, write_run

    cmp = compare(open_run(args.density), open_run(args.particles))
    path = write_run(cmp, args.output)
    last = cmp.isel(time=-1)
    print(f"wrote {path}: mmd at t = {float(last.time):g} is {float(last.mmd):.3e} "
          f"(sampling floor {float(last.mmd_sampling_floor):.3e})")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from spde_tokens.io import open_run
    from spde_tokens.plot import plot_run

    out = args.output or args.run.rsplit(".", 1)[0] + ".png"
    plot_run(open_run(args.run), out)
    print(f"wrote {out}")
    return 0


def _animate(args: argparse.Namespace) -> int:
    from spde_tokens.io import open_run
    from spde_tokens.plot import animate_density

    out = args.output or args.run.rsplit(".", 1)[0] + ".gif"
    animate_density(open_run(args.run), out)
    print(f"wrote {out}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from spde_tokens.validation.report import run_validation

    rows = run_validation(args.output, quick=args.quick, cases=args.case, docs=args.docs)
    print(f"report: {args.output}/report.md")
    return 1 if any(row["verdict"] == "fail" for row in rows) else 0  # a "disagrees" row is a finding


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spde-tokens", description="Tokens of deep Transformers on the sphere: "
                                     "density SPDE and particle simulations.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, default, text in (("run", "run.nc", "solve the density equation"),
                                ("particles", "particles.nc", "simulate the tokens of [particles]")):
        cmd = sub.add_parser(name, help=f"{text} (the built-in configuration without CONFIG)")
        cmd.add_argument("config", nargs="?", help="TOML configuration (default: the built-in run)")
        cmd.add_argument("-o", "--output", default=default, help=f"NetCDF output file (default {default})")
        cmd.add_argument("--no-progress", action="store_true", help="no progress bar")
        cmd.add_argument("--checkpoint", metavar="CK.nc", help="checkpoint file: written at every record, resumed "
                         "when it exists (a killed run loses at most one record interval)")
        cmd.set_defaults(func=_engine)
    ens = sub.add_parser("ensemble", help="run noise realizations on dask.distributed (a local cluster by default)")
    ens.add_argument("config", help="TOML configuration; [run] seed is the ensemble seed")
    ens.add_argument("--realizations", type=int, required=True, help="number of noise realizations")
    ens.add_argument("--scheduler", help="address of a running dask scheduler (default: a local cluster)")
    ens.add_argument("--workers", type=int, help="workers of the local cluster (default: one per core)")
    ens.add_argument("-o", "--output", default="ensemble.nc", help="NetCDF output (default ensemble.nc)")
    ens.add_argument("--no-progress", action="store_true", help="no progress bar")
    ens.set_defaults(func=_ensemble)
    cmp = sub.add_parser("compare", help="cross-validate a density run and a particle run on the same path")
    cmp.add_argument("density", help="density run (NetCDF)")
    cmp.add_argument("particles", help="particle run (NetCDF)")
    cmp.add_argument("-o", "--output", default="compare.nc", help="NetCDF output (default compare.nc)")
    cmp.set_defaults(func=_compare)
    plot = sub.add_parser("plot", help="figure of a run, comparison or ensemble file")
    plot.add_argument("run", help="NetCDF file written by spde-tokens")
    plot.add_argument("-o", "--output", help="image file (default: RUN.png)")
    plot.set_defaults(func=_plot)
    anim = sub.add_parser("animate", help="GIF of the density of a run")
    anim.add_argument("run", help="density run (NetCDF)")
    anim.add_argument("-o", "--output", help="GIF file (default: RUN.gif)")
    anim.set_defaults(func=_animate)
    val = sub.add_parser("validate", help="run the validation cases and write their report")
    val.add_argument("--quick", action="store_true",
                     help="the quick suite (about 5 minutes on 2 cores; the full suite takes about 35)")
    val.add_argument("-o", "--output", default="validation_out", help="folder for NetCDF, figures and report.md")
    val.add_argument("--case", action="append", help="run only this case (repeatable)")
    val.add_argument("--docs", metavar="PAGE", help="also write this Markdown page from the run (e.g. "
                     "docs/validation.md, with its figures under figures/validation/ next to it)")
    val.set_defaults(func=_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as exc:
        if args.debug:
            raise
        print(f"spde-tokens {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
