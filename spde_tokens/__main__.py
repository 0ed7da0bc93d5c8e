"""``python -m spde_tokens``: the ``spde-tokens`` command (docs/guide.md, 'Command line')."""

import sys

from spde_tokens.cli import main

sys.exit(main())
