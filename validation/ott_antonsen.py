"""Ott–Antonsen reduction on S^1, run by hand: the same as `spde-tokens validate --case ott_antonsen`.

    python validation/ott_antonsen.py [--quick] [-o FOLDER]

Writes FOLDER/ott_antonsen.nc, FOLDER/ott_antonsen.png and FOLDER/report.md and prints the table rows.
"""

import sys

from spde_tokens.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", "--case", "ott_antonsen", *sys.argv[1:]]))
