"""Synchronization by random MLP blocks, run by hand;
the same as `spde-tokens validate --case synchronization`.

    python validation/synchronization.py [--quick] [-o FOLDER]

Writes FOLDER/synchronization.nc, FOLDER/synchronization.png and FOLDER/report.md and prints the table rows.
"""

import sys

from spde_tokens.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", "--case", "synchronization", *sys.argv[1:]]))
