"""Clustering at low temperature, run by hand: the same as `spde-tokens validate --case low_temperature`.

    python validation/low_temperature.py [--quick] [-o FOLDER]

Writes FOLDER/low_temperature.nc, FOLDER/low_temperature.png and FOLDER/report.md and prints the table rows.
"""

import sys

from spde_tokens.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", "--case", "low_temperature", *sys.argv[1:]]))
