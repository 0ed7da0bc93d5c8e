"""Antipodal phase transition under random value matrices, run by hand;
the same as `spde-tokens validate --case antipodal`.

    python validation/antipodal.py [--quick] [-o FOLDER]

Writes FOLDER/antipodal.nc, FOLDER/antipodal.png and FOLDER/report.md and prints the table rows.
"""

import sys

from spde_tokens.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", "--case", "antipodal", *sys.argv[1:]]))
