"""Linear instability of the uniform state, run by hand;
the same as `spde-tokens validate --case linear_growth`.

    python validation/linear_growth.py [--quick] [-o FOLDER]

Writes FOLDER/linear_growth.nc, FOLDER/linear_growth.png and FOLDER/report.md and prints the table rows.
"""

import sys

from spde_tokens.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", "--case", "linear_growth", *sys.argv[1:]]))
