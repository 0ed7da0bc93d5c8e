"""One-point law: the mean density solves the heat equation, run by hand;
the same as `spde-tokens validate --case one_point_law`.

    python validation/one_point_law.py [--quick] [-o FOLDER]

Writes FOLDER/one_point_law.nc, FOLDER/one_point_law.png and FOLDER/report.md and prints the table rows.
"""

import sys

from spde_tokens.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", "--case", "one_point_law", *sys.argv[1:]]))
