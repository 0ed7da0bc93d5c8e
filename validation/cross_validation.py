"""Pathwise cross-validation of the density solver and the particles (DESIGN 5), run by hand.

    python validation/cross_validation.py [--quick] [-o FOLDER]

Writes FOLDER/cross_validation.nc and FOLDER/cross_validation.png and prints the table rows. The full run
(N ≤ 4096, 8 draws per N) takes about an hour on two cores; ``--quick`` (N ≤ 1024, 4 draws) a few minutes.
"""

from __future__ import annotations

import argparse
import sys
import time

from spde_tokens.validation import cross_validation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N ≤ 1024 and 4 draws per N (minutes)")
    parser.add_argument("-o", "--output", default="validation_output", help="output folder (default %(default)s)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = cross_validation.run(args.output, quick=args.quick, log=print)
    print(cross_validation.format_rows(rows))
    print(f"wrote {args.output}/cross_validation.nc and .png in {time.perf_counter() - start:.0f} s")
    return 0 if all(row["verdict"] == "pass" for row in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
