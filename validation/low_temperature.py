"""Clustering at low temperature (DESIGN 5), run by hand.

    python validation/low_temperature.py [--quick] [-o FOLDER]

Writes FOLDER/low_temperature.nc and FOLDER/low_temperature.png and prints the table rows. The full run (five betas,
N = 1500 tokens, t_end = 200) takes about five minutes on one core; ``--quick`` (three betas, N = 1000, t_end = 60)
about a minute.
"""

from __future__ import annotations

import argparse
import sys
import time

from spde_tokens.validation import low_temperature


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three betas, N = 1000, t_end = 60 (about a minute)")
    parser.add_argument("-o", "--output", default="validation_output", help="output folder (default %(default)s)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = low_temperature.run(args.output, quick=args.quick, log=print)
    print(low_temperature.format_rows(rows))
    print(f"{sum(r['verdict'] == 'pass' for r in rows)} of {len(rows)} rows pass; wrote {args.output}/"
          f"{low_temperature.NAME}.nc and .png in {time.perf_counter() - start:.0f} s")
    return 0 if all(r["verdict"] == "pass" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
