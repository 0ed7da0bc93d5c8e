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


# ---- the zero-temperature (hardmax) model: docs/mathematics.md, 'The zero-temperature equation' ----------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"beta": 4.0}, "beta"),  # a finite beta contradicts beta = ∞
        ({"beta": 0.0}, "beta"),
        ({"beta": "inf"}, "beta"),
        ({"Q": np.zeros((3, 3))}, "Qᵀ K ≠ 0"),
        ({"Q": np.eye(3), "K": np.zeros((3, 3))}, "Qᵀ K ≠ 0"),
    ],
)
def test_hardmax_refuses_what_has_no_zero_temperature_limit(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttentionModel(3, normalization="hardmax", **kwargs)


def test_hardmax_is_beta_infinity():
    assert AttentionModel(3, normalization="hardmax").beta == np.inf
    assert AttentionModel(3, beta=np.inf, normalization="hardmax").hardmax
    assert AttentionModel(3).beta == 1.0 and not AttentionModel(3).hardmax


def test_hardmax_output_refuses_the_kernel_of_a_transpose_and_bad_shapes():
    m = AttentionModel(3, Q=np.diag([1.0, 1.0, 0.0]), normalization="hardmax")  # Aᵀ e3 = 0
    assert np.allclose(m.hardmax_output(np.array([[1.0, 0.0, 0.0]])), [[1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="Aᵀx = 0"):
        m.hardmax_output(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\)"):
        m.hardmax_output(np.ones((4, 2)))


def test_hardmax_velocity_vanishes_where_the_theorem_says():
    """X_∞(x) = P_x V Aᵀx/|Aᵀx| is 0 for A = V = I everywhere (the static case), and for A = diag(1, .6, .3), V = I at
    the eigenvectors ±e_k (the fixed points of the flow)."""
    from spde_tokens.drift import drift_points

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    static = drift_points(AttentionModel(3, normalization="hardmax"), x)
    assert np.abs(static).max() <= 1e-15  # P_x x: a few roundings of unit-size numbers
    e = np.concatenate([np.eye(3), -np.eye(3)])
    moving = AttentionModel(3, Q=np.diag([1.0, 0.6, 0.3]), normalization="hardmax")
    assert np.abs(drift_points(moving, e)).max() == 0.0  # A e_k ∥ e_k exactly
    assert np.abs(drift_points(moving, x)).min() >= 0.0 and np.abs(drift_points(moving, x)).max() > 0.1


def test_hardmax_is_the_beta_limit_of_the_softmax_drift_of_a_full_measure():
    """For the uniform measure Z(v) = sinh|v|/|v|, so the softmax output is (coth r − 1/r) Aᵀx/|Aᵀx| with
    r = beta|Aᵀx| and X_β − X_∞ = (coth r − 1 − 1/r) P_x V ŷ: beta (X_β − X_∞) → −P_x V ŷ/|Aᵀx| up to
    2 beta e^{−2r}. The softmax drift is the code's weighted sums over a Gauss rule of the uniform measure (many
    weighted tokens); X_∞ the hardmax model's. A non-symmetric A tells Aᵀx from Ax, a general V checks P_x V."""
    from spde_tokens.drift import drift_points
    from spde_tokens.grids import grid_from_attrs

    rng = np.random.default_rng(3)
    q = np.array([[1.0, 0.3, 0.0], [0.0, 1.0, 0.2], [0.1, 0.0, 0.8]])
    k = np.array([[1.0, 0.0, 0.1], [0.2, 0.9, 0.0], [0.0, 0.0, 1.0]])
    v = np.array([[1.0, 0.2, 0.0], [0.0, 0.7, 0.3], [-0.2, 0.0, 0.5]])
    beta = 60.0
    hard = AttentionModel(3, Q=q, K=k, V=v, normalization="hardmax")
    soft = AttentionModel(3, beta=beta, Q=q, K=k, V=v)
    # kernel exp(beta (Aᵀx)·y), beta|Aᵀx| ≤ 100: Funk–Hecke weights below 1e-13 from degree ≈ 7.6 sqrt(100) = 76;
    # a Gauss rule of degree 63 integrates degree 127 exactly
    rule = grid_from_attrs({"grid": "sphere", "grid_lmax": 63, "grid_dealias": 0})
    nodes, weights = rule.points().reshape(-1, 3), rule.weights().ravel()
    assert np.linalg.norm(soft.A, 2) * beta <= 100
    x = rng.normal(size=(50, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    norm = np.linalg.norm(x @ soft.A, axis=1)
    assert norm.min() * beta >= 10  # e^{−2r} ≤ e^{−20}: the exponential remainder is negligible
    gap = drift_points(soft, x, nodes, weights) - drift_points(hard, x)
    y = (x @ soft.A) / norm[:, None]
    py = y @ v.T - np.sum(x * (y @ v.T), axis=1, keepdims=True) * x
    expected = -py / norm[:, None]
    # quadrature error ~1e-13 of |a| ≤ 1, times beta = 60: ≤ 1e-10
    np.testing.assert_allclose(beta * gap, expected, atol=1e-9)
    # the plain distance falls like 1/beta
    assert np.abs(gap).max() <= 2.0 / (beta * norm.min()) * np.abs(py).max() + 1e-9
