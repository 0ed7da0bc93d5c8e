"""Ott–Antonsen reduction on S^1 (DESIGN 5), run by hand.

    python validation/ott_antonsen.py [--quick] [-o FOLDER]

Writes FOLDER/ott_antonsen.nc and FOLDER/ott_antonsen.png, prints the table rows with how each tolerance was
derived and exits with status 1 when a row fails. Takes a few seconds (quick: 2000 tokens, full: 10⁴).
"""

from __future__ import annotations

import argparse
import sys
import time

from spde_tokens.validation import ott_antonsen as case
from spde_tokens.validation.report import format_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2000 tokens instead of 10⁴")
    parser.add_argument("-o", "--output", default="validation_out", help="output folder (default %(default)s)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = case.run(args.output, quick=args.quick)
    seconds = time.perf_counter() - start
    print(format_table(rows))
    print("\ntolerances:")
    for i, row in enumerate(rows, 1):
        print(f"  {i:2d}. {row['tolerance']}")
    print(f"\n{case.NAME}: {sum(r['verdict'] == 'pass' for r in rows)}/{len(rows)} rows pass; wrote "
          f"{args.output}/{case.NAME}.nc and .png in {seconds:.1f} s")
    return 0 if all(row["verdict"] == "pass" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
