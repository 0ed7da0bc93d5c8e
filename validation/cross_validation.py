"""Pathwise cross-validation, run by hand: the same as `spde-tokens validate --case cross_validation`.

    python validation/cross_validation.py [--quick] [-o FOLDER]

Writes FOLDER/cross_validation.nc, FOLDER/cross_validation.png and FOLDER/report.md and prints the table rows.
"""

import sys

from spde_tokens.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", "--case", "cross_validation", *sys.argv[1:]]))
