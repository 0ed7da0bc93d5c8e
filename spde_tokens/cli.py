"""Command line: ``spde-tokens run | particles | ensemble | compare | plot | animate | validate | config``
(docs/guide.md, 'Command line').

Bad input exits with status 2 and one line naming the parameter (``--debug``, before or after the command, shows
the traceback); a blow-up exits with status 1 after saving the records up to it; Ctrl-C exits with status 130 and
says where the checkpoint is. Output paths are checked before anything is computed: their folder must exist and be
writable, an existing file is replaced only with ``--overwrite`` (never the configuration or an input file), and the
final file is written atomically (a temporary file beside it, then ``os.replace``). Warnings are one line each and
the package's log (such as "resuming from ck.nc: step 350 of 1100") goes to standard error.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, NoReturn, TextIO

from spde_tokens._version import __version__

if TYPE_CHECKING:
    import xarray as xr

PROG = "spde-tokens"
#: exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it)
INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (status 2), like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _CaseHelp(argparse.HelpFormatter):
    """Fills ``{cases}`` in a help text with the validation cases, imported only when the help is shown."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text is not None and "{cases}" in text:
            from spde_tokens.validation import CASE_NAMES

            text = text.replace("{cases}", ", ".join(CASE_NAMES))
        return text


def _same(a: str | os.PathLike[str] | None, b: str | os.PathLike[str] | None) -> bool:
    """True when two paths name the same file (through links too), whether or not it exists yet."""
    return a is not None and b is not None and os.path.realpath(a) == os.path.realpath(b)


def _folder_of(path: str, option: str) -> str:
    """The existing, writable folder that will hold ``path`` (given with ``option``)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: the folder {folder} is not writable")
    return folder


def check_output(path: str, option: str, overwrite: bool, inputs: Sequence[str | None] = ()) -> None:
    """Refuse, before anything is computed, an output file that cannot be written or would replace a file silently.

    Parameters
    ----------
    path : the output file.
    option : how the command line names it (``-o``, ``--checkpoint``), for the message.
    overwrite : whether an existing file may be replaced.
    inputs : files the command reads (the configuration, input runs): never replaced, even with ``overwrite``.
    """
    for source in inputs:
        if _same(path, source):
            raise ValueError(f"{option} {path} is an input of this command; choose another file")
    if os.path.isdir(path):
        raise ValueError(f"{option} {path} is a folder; give a file name")
    _folder_of(path, option)
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"{option} {path} exists; pass --overwrite to replace it")


def _flags(ds: xr.Dataset) -> list[str]:
    """UNDER-RESOLVED and NEGATIVE DENSITY, with where they occur (docs/guide.md, 'Command line')."""
    import numpy as np

    from spde_tokens.density import TAIL_WARNING
    from spde_tokens.initial import NEGATIVE_TOLERANCE

    if "engine" in ds:  # the Lagrangian records are a smoothed projection of positive masses, resolved by design
        ds = ds.isel(time=ds.engine.values == "spectral")
    t, flags = ds.time.values, []
    if "spectral_tail" in ds:
        tail = ds.spectral_tail.values
        over = np.flatnonzero(tail > TAIL_WARNING)
        if over.size:
            worst = over[np.argmax(tail[over])]
            flags.append(f"UNDER-RESOLVED (spectral tail {tail[worst]:.1e} > {TAIL_WARNING:g} at t = {t[worst]:g}, "
                         f"above since t = {t[over[0]]:g})")
    if "density" in ds:
        # on a zonal grid the law of s: the density's values at the outer nodes of high d carry rounding seen
        # through 1/√w_i (docs/guide.md, 'File format'), which the law weighs out
        field = ds.law_s if "law_s" in ds else ds.density
        space = [d for d in field.dims if d != "time"]
        low, high = field.min(space).values, field.max(space).values
        below = np.flatnonzero(low < -NEGATIVE_TOLERANCE * high)
        if below.size:
            worst = below[np.argmin(low[below])]
            flags.append(f"NEGATIVE DENSITY (min ρ = {low[worst]:.2g} at t = {t[worst]:g}, below "
                         f"−{NEGATIVE_TOLERANCE:g} · max ρ since t = {t[below[0]]:g})")
    return flags


def _summary(ds: xr.Dataset, path: str, seconds: float) -> str:
    last = ds.isel(time=-1)
    extra = f"mass error {abs(float(ds.mass[-1]) - 1):.1e}" if "mass" in ds else f"{ds.sizes['token']} tokens"
    import numpy as np

    handover = ds.attrs.get("handover_time")
    if isinstance(handover, (int, float, np.floating)):
        extra += f", Lagrangian engine from t = {float(handover):g} (hand-over)"
    # a hardmax run (beta = ∞) records no energy: E_beta grows like e^beta/beta
    energy = (f"energy {float(ds.energy[0]):.4f} -> {float(last.energy):.4f}, " if "energy" in ds else "")
    return "; ".join([f"wrote {path}: {ds.sizes['time']} records to t = {float(last.time):g} in {seconds:.1f} s, "
                      f"{energy}dispersion {float(ds.dispersion[0]):.4f} -> {float(last.dispersion):.4f}, {extra}",
                      *_flags(ds)])


def _write_run(ds: xr.Dataset, path: str, args: argparse.Namespace) -> str:
    """``ds`` written atomically to ``path``, with the command line appended to its ``history``."""
    from spde_tokens.io import write_run

    return write_run(ds, path, history=args.history)  # atomic itself


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.no_progress else None


def _engine(args: argparse.Namespace) -> int:
    """``run`` (the density) or ``particles`` on a configuration."""
    from spde_tokens import config as cfg
    from spde_tokens.records import BlowUpError

    config = cfg.load_config(args.config, args.set)
    check_output(args.output, "-o", args.overwrite, [args.config])
    if args.checkpoint is not None:
        if _same(args.checkpoint, args.output):
            raise ValueError(f"--checkpoint {args.checkpoint} is also the output (-o): give them different files")
        if _same(args.checkpoint, args.config) or os.path.isdir(args.checkpoint):
            raise ValueError(f"--checkpoint {args.checkpoint} is the configuration file or a folder; give a NetCDF "
                             "file name (an existing checkpoint of this run is resumed)")
        _folder_of(args.checkpoint, "--checkpoint")
    runner = cfg.run_density if args.command == "run" else cfg.run_particles
    start = time.perf_counter()
    try:
        ds = runner(config, progress=_progress(args), checkpoint=args.checkpoint)
    except BlowUpError as exc:
        reason = str(exc).split("; the records up to")[0]  # the rest speaks of .dataset and .state, for Python users
        if exc.dataset is None or not exc.dataset.sizes.get("time"):
            print(f"{PROG} {args.command}: blow-up: {reason}; no records to save", file=sys.stderr)
        else:
            _write_run(exc.dataset, args.output, args)
            print(f"{PROG} {args.command}: blow-up: {reason}; the records up to t = "
                  f"{float(exc.dataset.time[-1]):g} are saved in {args.output}", file=sys.stderr)
        return 1
    print(_summary(ds, _write_run(ds, args.output, args), time.perf_counter() - start))
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from spde_tokens.config import load_config
    from spde_tokens.ensemble import run_ensemble, summary

    config = load_config(args.config, args.set)
    check_output(args.output, "-o", args.overwrite, [args.config])
    start = time.perf_counter()
    ds = run_ensemble(config, args.realizations, scheduler=args.scheduler, n_workers=args.workers,
                      out_dir=args.output + ".parts", progress=_progress(args))
    _write_run(ds.load(), args.output, args)
    numbers = ", ".join(f"{k} {v:.4g}" for k, v in summary(ds).items())
    print(f"wrote {args.output} ({args.output}.parts/ holds one file per realization) in "
          f"{time.perf_counter() - start:.1f} s: {numbers}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from spde_tokens.compare import compare
    from spde_tokens.io import open_run

    check_output(args.output, "-o", args.overwrite, [args.density, args.particles])
    cmp = compare(open_run(args.density), open_run(args.particles))
    path = _write_run(cmp, args.output, args)
    last = cmp.isel(time=-1)
    print(f"wrote {path}: mmd at t = {float(last.time):g} is {float(last.mmd):.3e} "
          f"(sampling floor {float(last.mmd_sampling_floor):.3e})")
    return 0


def _figure(args: argparse.Namespace) -> int:
    """``plot`` (a figure of any output file) or ``animate`` (a GIF of a density run)."""
    from spde_tokens.io import open_run
    from spde_tokens.plot import animate_density, plot_run
    from spde_tokens.records import atomic_write

    ext = ".png" if args.command == "plot" else ".gif"
    out = args.output or os.path.splitext(args.run)[0] + ext
    if args.command == "animate" and not out.lower().endswith(".gif"):
        raise ValueError(f"-o {out}: an animation is written as a GIF; give a file name ending in .gif")
    check_output(out, "-o", args.overwrite, [args.run])
    ds = open_run(args.run)
    if args.command == "plot":
        atomic_write(out, lambda tmp: plot_run(ds, tmp))
    else:
        atomic_write(out, lambda tmp: animate_density(ds, tmp))
    print(f"wrote {out}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from spde_tokens.validation import CASE_NAMES, report

    names = args.case or list(CASE_NAMES)
    unknown = [n for n in names if n not in CASE_NAMES]
    if unknown:
        raise ValueError(f"--case must be one of {', '.join(CASE_NAMES)}, got {unknown[0]!r}")
    folder = args.output
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"-o {folder} is a file; give a folder (it may exist and hold other files)")
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):  # the folder and its missing parents are created in the nearest existing one
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"-o {folder}: the folder {existing} is not writable")
    targets = [os.path.join(folder, "report.md"), *(os.path.join(folder, f"{n}{e}") for n in names
                                                   for e in (".nc", ".png"))]
    if args.docs is not None:
        _folder_of(args.docs, "--docs")
        figures = os.path.join(os.path.dirname(os.path.abspath(args.docs)), "figures", "validation")
        targets += [args.docs, *(os.path.join(figures, f"{n}.png") for n in names)]
    replaced = [t for t in targets if os.path.exists(t)]
    if replaced and not args.overwrite:
        raise ValueError(f"-o {folder}: validate would replace {len(replaced)} file(s), such as {replaced[0]}; pass "
                         "--overwrite to replace them")
    rows = report.run_validation(folder, quick=args.quick, cases=names, docs=args.docs)
    print(f"report: {os.path.join(folder, 'report.md')}")
    return 1 if any(row["verdict"] == "fail" for row in rows) else 0  # a "disagrees" row is a finding


def _config(args: argparse.Namespace) -> int:
    from spde_tokens.config import DEFAULT_CONFIG

    print(DEFAULT_CONFIG, end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``spde-tokens`` argument parser."""
    parser = _Parser(prog=PROG, description="Tokens of deep Transformers on the sphere: density SPDE and particle "
                     "simulations (docs/guide.md, 'Command line').")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    debug = _Parser(add_help=False)  # --debug after the command too; SUPPRESS keeps the value given before it
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    writes = _Parser(add_help=False, parents=[debug])
    writes.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    configured = _Parser(add_help=False, parents=[writes])
    configured.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                            help="override a key of the configuration, such as --set model.beta=2 or --set "
                            "noise.bias.gamma=0.3 (the value is TOML; a bare word is a string; repeatable)")
    configured.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, default, text in (("run", "run.nc", "solve the density equation"),
                                ("particles", "particles.nc", "simulate the tokens of [particles]")):
        cmd = sub.add_parser(name, parents=[configured], help=f"{text} (the built-in configuration without CONFIG)")
        cmd.add_argument("config", nargs="?", help="TOML configuration (default: the built-in one, "
                         "`spde-tokens config` prints it)")
        cmd.add_argument("-o", "--output", default=default, help=f"NetCDF output file (default {default})")
        cmd.add_argument("--checkpoint", metavar="CK.nc", help="checkpoint file: written at every record, resumed "
                         "when it exists (a killed run loses at most one record interval)")
        cmd.set_defaults(func=_engine)
    ens = sub.add_parser("ensemble", parents=[configured],
                         help="run noise realizations on dask.distributed (a local cluster by default)")
    ens.add_argument("config", help="TOML configuration; [run] seed is the ensemble seed")
    ens.add_argument("--realizations", type=_positive, required=True, help="number of noise realizations")
    ens.add_argument("--scheduler", help="address of a running dask scheduler (default: a local cluster)")
    ens.add_argument("--workers", type=_positive, help="workers of the local cluster (default: one per core)")
    ens.add_argument("-o", "--output", default="ensemble.nc", help="NetCDF output (default ensemble.nc; "
                     "OUTPUT.parts/ holds the realizations, and a re-run resumes from them)")
    ens.set_defaults(func=_ensemble)
    cmp = sub.add_parser("compare", parents=[writes],
                         help="cross-validate a density run and a particle run on the same path")
    cmp.add_argument("density", help="density run (NetCDF)")
    cmp.add_argument("particles", help="particle run (NetCDF)")
    cmp.add_argument("-o", "--output", default="compare.nc", help="NetCDF output (default compare.nc)")
    cmp.set_defaults(func=_compare)
    for name, text, ext in (("plot", "figure of a run, comparison or ensemble file", "png"),
                            ("animate", "GIF of the density of a run", "gif")):
        fig = sub.add_parser(name, parents=[writes], help=text)
        fig.add_argument("run", help="NetCDF file written by spde-tokens")
        fig.add_argument("-o", "--output", help=f"image file (default: RUN.{ext})")
        fig.set_defaults(func=_figure)
    val = sub.add_parser("validate", parents=[writes], formatter_class=_CaseHelp,
                         help="run the validation cases and write their report")
    val.add_argument("--quick", action="store_true",
                     help="the quick suite (about 5 minutes on 2 cores; the full suite takes about 35)")
    val.add_argument("-o", "--output", default="validation_out", help="folder for NetCDF, figures and report.md "
                     "(it may exist and hold other files; --overwrite is needed only to replace files)")
    val.add_argument("--case", action="append", metavar="NAME", help="run only this case (repeatable): {cases}")
    val.add_argument("--docs", metavar="PAGE", help="also write this Markdown page from the run (e.g. "
                     "docs/validation.md, with its figures under figures/validation/ next to it)")
    val.set_defaults(func=_validate)
    conf = sub.add_parser("config", parents=[debug], help="print the built-in configuration (a TOML file to edit)")
    conf.set_defaults(func=_config)
    return parser


def _positive(text: str) -> int:
    """An argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer ≥ 1, got {text!r}")
    return value


class _TqdmHandler(logging.Handler):
    """Log records on standard error, above any progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """A warning as one line, ``Category: message``, above any progress bar (no source line)."""
    from tqdm.auto import tqdm

    tqdm.write(f"{category.__name__}: {message}", file=sys.stderr)


@contextmanager
def _console() -> Iterator[None]:
    """Within the command: warnings as one line each, the package's INFO log on standard error."""
    log = logging.getLogger("spde_tokens")
    handler = _TqdmHandler(logging.INFO)
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


#: Ctrl-C inside these packages' frames is deferred: xarray holds its file lock across a NetCDF read or write, and a
#: KeyboardInterrupt raised there leaves it taken, so the write's own clean-up (and any later file access) deadlocks
_DEFER_IN = (os.path.join("xarray", "backends", ""), os.path.join("netCDF4", ""))
#: seconds between looks for the end of a deferred read or write
_DEFER_POLL = 0.02


def _in_file_access(frame: FrameType | None) -> bool:
    while frame is not None:
        if any(part in frame.f_code.co_filename for part in _DEFER_IN):
            return True
        frame = frame.f_back
    return False


@contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt, but never inside a NetCDF read or write: there it waits for the file access
    to end (looking again every 20 ms). Installed only in the main thread, when Ctrl-C has Python's default handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if _in_file_access(frame):
            signal.setitimer(signal.ITIMER_REAL, _DEFER_POLL)  # SIGALRM: look again
            return
        raise KeyboardInterrupt

    old_alarm = signal.signal(signal.SIGALRM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGALRM, old_alarm)


def _interrupted(args: argparse.Namespace) -> str:
    """Where the work done before Ctrl-C is, and how to continue it."""
    if args.command in ("run", "particles"):
        if args.checkpoint is None or not os.path.exists(args.checkpoint):
            return "nothing was saved (a run with --checkpoint CK.nc can be resumed)"
        try:
            import netCDF4

            with netCDF4.Dataset(args.checkpoint) as ck:
                step, dt = int(ck.getncattr("checkpoint_step")), float(ck.getncattr("run_dt"))
            at = f" at t = {step * dt:.12g} (step {step})"
        except (OSError, ValueError, AttributeError):
            at = ""
        return f"the checkpoint {args.checkpoint} holds the run{at}: the same command resumes it"
    if args.command == "ensemble":
        return f"the finished realizations are in {args.output}.parts/: the same command continues"
    if args.command == "validate":
        return f"the cases finished so far are in {args.output}/"
    return "nothing was written"


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.history = shlex.join([PROG, *argv])  # appended to the history of the files the command writes
    with _console():
        try:
            with _interruptible():
                return args.func(args)
        except KeyboardInterrupt:
            print(f"{PROG} {args.command}: interrupted; {_interrupted(args)}", file=sys.stderr)
            return INTERRUPTED
        except (ValueError, OSError, RuntimeError) as exc:
            if args.debug:
                raise
            message = " ".join(str(exc).split("\n"))
            print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
