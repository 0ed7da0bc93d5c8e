"""Synchronization by random MLP blocks (DESIGN 5): two-token rates against theory, run by hand.

    python validation/synchronization.py [--quick] [-o FOLDER]

Writes FOLDER/synchronization.nc and FOLDER/synchronization.png and prints the table rows
(about a minute with --quick, about six minutes in full, one core).
"""

from __future__ import annotations

import argparse
import sys
import time

from spde_tokens.validation import synchronization as case


def format_rows(rows: list[dict]) -> str:
    """The rows as a plain-text table: verdict, case, expected, measured, then the tolerance derivations."""
    lines = []
    for r in rows:
        lines.append(f"[{r['verdict']:4s}] {r['case']}: {r['quantity']}")
        lines.append(f"        expected: {r['expected']}")
        lines.append(f"        measured: {r['measured']}")
        lines.append(f"        tolerance: {r['tolerance']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick settings")
    parser.add_argument("-o", "--output", default="validation_out", help="output folder (default %(default)s)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = case.run(args.output, quick=args.quick)
    print(format_rows(rows))
    passed = sum(r["verdict"] == "pass" for r in rows)
    print(f"{case.TITLE}: {passed}/{len(rows)} rows pass; wrote {args.output}/{case.NAME}.nc and .png in "
          f"{time.perf_counter() - start:.0f} s")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
