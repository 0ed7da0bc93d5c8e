"""Run the validation cases of DESIGN 5 and write their table and report (``spde-tokens validate``)."""

from __future__ import annotations

import importlib
import os
import time
import traceback

#: the cases in the order of DESIGN 5; each is a module of this package with ``run(out_dir, quick)``
CASE_NAMES = ("ott_antonsen", "equiangular", "energy_mass", "linear_growth", "one_point_law", "cross_validation",
              "synchronization", "antipodal", "low_temperature")
COLUMNS = ("case", "quantity", "expected", "measured", "verdict")


def _rows(result) -> list[dict]:
    rows = list(result.values()) if isinstance(result, dict) else list(result)
    return [{key: row.get(key, "") for key in (*COLUMNS, "tolerance")} for row in rows]


def run_case(name: str, out_dir: str, quick: bool) -> tuple[list[dict], float]:
    """Rows of one case and its running time; a case that raises gives one failing row with the error."""
    start = time.perf_counter()
    try:
        module = importlib.import_module(f"spde_tokens.validation.{name}")
        rows = _rows(module.run(out_dir, quick=quick))
    except Exception as exc:  # a broken case is a failed row of the report, not a crash of the whole suite
        rows = [{"case": name, "quantity": "case ran", "expected": "no error", "measured": repr(exc)[:200],
                 "verdict": "fail", "tolerance": traceback.format_exc(limit=2).splitlines()[-1]}]
    return rows, time.perf_counter() - start


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "/").replace("\n", " ")


def format_table(rows: list[dict]) -> str:
    """A plain-text table of the rows."""
    cells = [[_cell(row[c]) for c in COLUMNS] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(COLUMNS)]
    line = "  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, "-" * len(line), *body])


def write_report(rows: list[dict], timings: dict[str, float], out_dir: str, quick: bool) -> str:
    """``out_dir/report.md``: the table, how each tolerance was derived, and the figures."""
    lines = [f"# spde_tokens validation ({'quick' if quick else 'full'})", "",
             f"{sum(r['verdict'] == 'pass' for r in rows)} of {len(rows)} rows pass.", "",
             "| " + " | ".join(COLUMNS) + " | tolerance |", "|" + "---|" * (len(COLUMNS) + 1)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in (*COLUMNS, "tolerance")) + " |" for r in rows]
    lines += ["", "## Cases", ""]
    for name, seconds in timings.items():
        lines.append(f"### {name} ({seconds:.0f} s)")
        if os.path.exists(os.path.join(out_dir, f"{name}.png")):
            lines.append(f"![{name}]({name}.png)")
        lines.append("")
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    return path


def run_validation(out_dir: str = "validation_out", quick: bool = False, cases=None,
                   echo=print) -> list[dict]:
    """Run the cases (all by default), print the table, write ``report.md``; returns the rows."""
    names = CASE_NAMES if not cases else tuple(cases)
    unknown = [n for n in names if n not in CASE_NAMES]
    if unknown:
        raise ValueError(f"case must be one of {', '.join(CASE_NAMES)}, got {unknown[0]!r}")
    os.makedirs(out_dir, exist_ok=True)
    rows, timings = [], {}
    for name in names:
        case_rows, timings[name] = run_case(name, out_dir, quick)
        rows += case_rows
        if echo is not None:
            echo(f"{name}: {sum(r['verdict'] == 'pass' for r in case_rows)}/{len(case_rows)} rows pass "
                 f"({timings[name]:.0f} s)")
    write_report(rows, timings, out_dir, quick)
    if echo is not None:
        echo(format_table(rows))
    return rows
