"""E_beta nondecreasing and mass conserved along the deterministic flow (DESIGN 5), run by hand.

    python validation/energy_mass.py [--quick] [-o FOLDER]

Writes FOLDER/energy_mass.nc and FOLDER/energy_mass.png, prints the table rows with how each tolerance was
derived and exits with status 1 when a row fails. Takes about 5 s (quick: lmax 24 / n 48 to t = 2)
or 10 s (full: lmax 48 / n 96 to t = 5).
"""

from __future__ import annotations

import argparse
import sys
import time

from spde_tokens.validation import energy_mass as case
from spde_tokens.validation.report import format_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="lmax 24 / n 48 to t = 2 (full: lmax 48 / n 96 to t = 5)")
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
