"""Equiangular tokens, run by hand: the same as `spde-tokens validate --case equiangular`.

    python validation/equiangular.py [--quick] [-o FOLDER]

Writes FOLDER/equiangular.nc, FOLDER/equiangular.png and FOLDER/report.md and prints the table rows.
"""

import sys

from spde_tokens.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", "--case", "equiangular", *sys.argv[1:]]))
