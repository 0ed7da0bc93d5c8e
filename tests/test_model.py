"""AttentionModel: parameters, derived quantities and refusal of bad input."""

import numpy as np
import pytest

from spde_tokens.model import AttentionModel


def test_defaults_and_zonal_factor():
    m = AttentionModel(3, beta=2.0)
    np.testing.assert_array_equal(m.A, np.eye(3))
    assert m.zonal_factor == 1.0 and m.value_factor == 1.0 and m.softmax
    q = np.diag([2.0, 2.0, 2.0])
    assert AttentionModel(3, 1.0, Q=q, K=-np.eye(3)).zonal_factor == -2.0
    assert AttentionModel(3, 1.0, Q=np.diag([1.0, 2.0, 1.0])).zonal_factor is None
    assert AttentionModel(4, 1.0, V=np.zeros((4, 4))).value_factor == 0.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"dim": 1}, "dim"),
        ({"dim": 2.5}, "dim"),
        ({"dim": True}, "dim"),
        ({"dim": 3, "beta": -1.0}, "beta"),
        ({"dim": 3, "beta": float("nan")}, "beta"),
        ({"dim": 3, "beta": float("inf")}, "beta"),
        ({"dim": 3, "beta": "hot"}, "beta"),
        ({"dim": 3, "Q": np.eye(2)}, "Q"),
        ({"dim": 3, "K": np.full((3, 3), np.nan)}, "K"),
        ({"dim": 3, "V": [[1, 2], [3, 4], [5, 6]]}, "V"),
        ({"dim": 3, "V": "identity"}, "V"),
        ({"dim": 3, "normalization": "sparsemax"}, "normalization"),
    ],
)
def test_bad_input_names_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        AttentionModel(**kwargs)
