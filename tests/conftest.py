"""Shared test setup: floating-point errors raise instead of producing silent NaNs (no global seeding).

Underflow is not an error: scaled Bessel weights and max-shifted exponentials underflow to 0 by design.
"""

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _raise_on_floating_point_errors():
    """Turn numpy division, overflow and invalid-operation warnings into errors for one test, then restore."""
    previous = np.seterr(divide="raise", over="raise", invalid="raise", under="ignore")
    try:
        yield
    finally:
        np.seterr(**previous)
