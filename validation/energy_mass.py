"""Energy and mass along the deterministic flow, run by hand;
the same as `spde-tokens validate --case energy_mass`.

    python validation/energy_mass.py [--quick] [-o FOLDER]

Writes FOLDER/energy_mass.nc, FOLDER/energy_mass.png and FOLDER/report.md and prints the table rows.
"""

import sys

from spde_tokens.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", "--case", "energy_mass", *sys.argv[1:]]))
