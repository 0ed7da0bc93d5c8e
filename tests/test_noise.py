"""Noise models and NoisePath (docs/mathematics.md, 'Common noise'): covariances, reproducibility, coarsening, input."""

import numpy as np
import pytest

from spde_tokens.activations import dual_kernel
from spde_tokens.noise import (
    BiasNoise,
    IdiosyncraticNoise,
    MLPNoise,
    NoisePath,
    NoiseSum,
    QuadraticFormNoise,
    RotationNoise,
    ValueNoise,
    as_noise,
)

RNG = np.random.default_rng(12)


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _pairs(dim):
    x = _unit(RNG.standard_normal(dim))
    y = _unit(x + 0.8 * RNG.standard_normal(dim))
    return [(x, x), (x, y), (x, -x)]


MODELS = [RotationNoise(0.7), BiasNoise(0.6), QuadraticFormNoise(0.5), ValueNoise(0.9), MLPNoise(0.8, "tanh", 16),
          MLPNoise(0.8, "erf", None), MLPNoise(1.1, "relu", 8)]


@pytest.mark.parametrize("model", MODELS, ids=repr)
@pytest.mark.parametrize("dim", [2, 3, 5])
def test_two_point_covariance_matches_design(model, dim):
    """E[ΔN(x) ΔN(y)ᵀ]/dt from 3000 independent steps agrees with the formula within 4.5 standard errors."""
    if isinstance(model, MLPNoise) and model.width is None and dim > 3:
        pytest.skip("the infinite-width field exists on S^1 and S^2 only")
    n, dt, lmax = 3000, 0.01, 24
    path = NoisePath(model, dim, dt, n, seed=5, lmax=lmax if dim <= 3 else None)
    pairs = _pairs(dim)
    pts = np.array([p for pair in pairs for p in pair])
    context = RNG.standard_normal(pts.shape) * 0.5 if model.needs_context else None
    fields = np.array([model.field(pts, path.increments(s), context) for s in range(n)])  # (n, 2 pairs, d)
    for i in range(len(pairs)):
        fx, fy = fields[:, 2 * i], fields[:, 2 * i + 1]
        prod = fx[:, :, None] * fy[:, None, :] / dt  # samples of ΔN(x) ΔN(y)ᵀ / dt
        mean, se = prod.mean(0), prod.std(0, ddof=1) / np.sqrt(n)
        cx = context[2 * i] if context is not None else None
        cy = context[2 * i + 1] if context is not None else None
        expected = model.covariance(pairs[i][0], pairs[i][1], cx, cy)
        if isinstance(model, MLPNoise) and model.width is None:
            # the spectral field has the truncated covariance Σ_{l ≤ L} c_l P_l(x·y); for erf at L = 24 the
            # truncation (≤ 1e-12) is far below the sampling error
            assert abs(model.one_point_rate(dim, lmax) - model.one_point_rate(dim)) < 1e-10
        # 4.5 standard errors per entry: with ~9 × 3 entries per case a false alarm has probability < 2e-4;
        # 1e-12 absolute for entries whose samples are exactly zero
        assert np.all(np.abs(mean - expected) <= 4.5 * se + 1e-12), (mean, expected, se)


def test_idiosyncratic_increments_are_independent_per_token():
    model = IdiosyncraticNoise(0.3)
    dt, n = 0.01, 4000
    path = NoisePath(model, 3, dt, n, seed=1)
    xi = np.array([path.token_increments(s, 2) for s in range(n)])  # (n, 2 tokens, 3)
    same = (xi[:, 0, :, None] * xi[:, 0, None, :] / dt)
    cross = (xi[:, 0, :, None] * xi[:, 1, None, :] / dt)
    for prod, expected in ((same, 2 * 0.3 * np.eye(3)), (cross, np.zeros((3, 3)))):
        mean, se = prod.mean(0), prod.std(0, ddof=1) / np.sqrt(n)
        assert np.all(np.abs(mean - expected) <= 4.5 * se)


def test_increment_layout_and_variance():
    noise = RotationNoise(1) + BiasNoise(1) + QuadraticFormNoise(1) + ValueNoise(1) + MLPNoise(1, "sin", 7)
    dt, n, d = 0.04, 400, 4
    path = NoisePath(noise, d, dt, n, seed=2)
    dw = path.dW
    assert sorted(dw) == ["bias", "mlp_w1", "mlp_w2", "quadratic_form", "rotation", "value"]
    assert dw["rotation"].shape == (n, d, d) and dw["bias"].shape == (n, d) and dw["value"].shape == (n, d, d)
    assert dw["mlp_w1"].shape == (n, 7, d) and dw["mlp_w2"].shape == (n, d, 7)
    np.testing.assert_array_equal(dw["rotation"], -dw["rotation"].transpose(0, 2, 1))
    np.testing.assert_array_equal(dw["quadratic_form"], dw["quadratic_form"].transpose(0, 2, 1))
    # Brownian entries have variance dt, W₁ entries variance 1: sample variances within 5 standard errors
    # (the standard error of a Gaussian sample variance is var·sqrt(2/(n-1)))
    for key, var in (("bias", dt), ("value", dt), ("mlp_w2", dt), ("mlp_w1", 1.0)):
        v = dw[key].ravel()
        assert abs(v.var() - var) <= 5 * var * np.sqrt(2 / (v.size - 1))
    upper = dw["rotation"][:, np.triu_indices(d, 1)[0], np.triu_indices(d, 1)[1]].ravel()
    assert abs(upper.var() - dt) <= 5 * dt * np.sqrt(2 / (upper.size - 1))
    coeff = NoisePath(MLPNoise(1.0, "tanh"), 3, dt, 5, seed=0, lmax=10).dW["mlp_coeff"]
    assert coeff.shape == (5, 3, 121)  # (L+1)² real coefficients per component on S^2
    assert NoisePath(MLPNoise(1.0, "tanh"), 2, dt, 5, seed=0, lmax=10).dW["mlp_coeff"].shape == (5, 2, 21)


def test_paths_are_reproducible_extendable_and_keyed_by_kind():
    a = NoisePath(BiasNoise(0.3), 3, 0.01, 10, seed=7)
    b = NoisePath(BiasNoise(0.3), 3, 0.01, 25, seed=7)
    np.testing.assert_array_equal(a.dW["bias"], b.dW["bias"][:10])  # a longer path extends a shorter one
    np.testing.assert_array_equal(a.dW["bias"], NoisePath(BiasNoise(0.3), 3, 0.01, 10, seed=7).dW["bias"])
    c = NoisePath(BiasNoise(0.3) + RotationNoise(1.0), 3, 0.01, 10, seed=7)
    np.testing.assert_array_equal(a.dW["bias"], c.dW["bias"])  # adding a model leaves the others' streams alone
    assert not np.array_equal(a.dW["bias"], NoisePath(BiasNoise(0.3), 3, 0.01, 10, seed=8).dW["bias"])


def test_coarsen_sums_brownian_increments_and_keeps_mlp_features():
    noise = BiasNoise(0.5) + MLPNoise(0.7, "gelu", 5) + RotationNoise(0.2)
    fine = NoisePath(noise, 3, 0.01, 12, seed=4)
    coarse = fine.coarsen(4)
    assert coarse.n_steps == 3 and coarse.dt == pytest.approx(0.04)
    np.testing.assert_allclose(coarse.dW["bias"], fine.dW["bias"].reshape(3, 4, 3).sum(1), rtol=1e-15)
    assert coarse.dW["mlp_w1"].shape == (3, 20, 3)
    # the coarse MLP field is the sum of the 4 fine fields (features side by side, 1/sqrt(width) of the model)
    x = np.array([_unit([1, 2, 3]), _unit([-1, 0, 2])])
    mlp = noise.models["mlp"]
    fine_sum = sum(mlp.field(x, fine.increments(s)) for s in range(4, 8))
    np.testing.assert_allclose(mlp.field(x, coarse.increments(1)), fine_sum, rtol=1e-13)
    np.testing.assert_allclose(coarse.coarsen(3).dW["bias"][0], fine.dW["bias"].sum(0), rtol=1e-14)
    with pytest.raises(ValueError, match="k must"):
        fine.coarsen(5)


def test_noise_sums():
    s = BiasNoise(0.3) + MLPNoise(0.5, "tanh", 16)
    assert s == MLPNoise(0.5, "tanh", 16) + BiasNoise(0.3)  # the order of a sum does not matter
    assert isinstance(s, NoiseSum) and sorted(s.models) == ["bias", "mlp"]
    with pytest.raises(ValueError, match="two BiasNoise"):
        BiasNoise(0.3) + MLPNoise(0.5) + BiasNoise(0.1)
    assert as_noise(None) is None and as_noise(NoiseSum()) is None
    x = np.array([_unit([0.3, -1, 2])])
    path = NoisePath(s, 3, 0.01, 1, seed=0)
    inc = path.increments(0)
    np.testing.assert_allclose(s.field(x, inc), sum(m.field(x, inc) for m in s), rtol=1e-15)
    assert sum([BiasNoise(0.1), RotationNoise(0.2)]) == BiasNoise(0.1) + RotationNoise(0.2)


def test_one_point_rates():
    assert RotationNoise(0.5).one_point_rate(3) == 0.25 and BiasNoise(0.5).one_point_rate(7) == 0.25
    assert QuadraticFormNoise(2.0).one_point_rate(3) == 4.0
    assert MLPNoise(2.0, "erf", 8).one_point_rate(3) == pytest.approx(4 * float(dual_kernel("erf", 1.0)))
    # infinite width at degree L: the truncated rate sigma² Σ_{l ≤ L} a_l (relu converges like L^-3)
    full, trunc = MLPNoise(1.0, "relu").one_point_rate(3), MLPNoise(1.0, "relu").one_point_rate(3, 16)
    assert 0 < full - trunc < 1e-3 and full == pytest.approx(0.5)
    with pytest.raises(ValueError, match="ValueNoise"):
        ValueNoise(1.0).one_point_rate(3)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: BiasNoise(-0.1), "gamma"),
        (lambda: RotationNoise(float("nan")), "sigma"),
        (lambda: QuadraticFormNoise(float("inf")), "alpha"),
        (lambda: ValueNoise("big"), "sigma"),
        (lambda: IdiosyncraticNoise(-1e-3), "nu"),
        (lambda: MLPNoise(0.5, "swish", 8), "activation"),
        (lambda: MLPNoise(0.5, "tanh", 0), "width"),
        (lambda: MLPNoise(0.5, "tanh", 2.5), "width"),
        (lambda: NoisePath(BiasNoise(0.1), 3, 0.01, 0, seed=0), "n_steps"),
        (lambda: NoisePath(BiasNoise(0.1), 3, -0.01, 5, seed=0), "dt"),
        (lambda: NoisePath(BiasNoise(0.1), 1, 0.01, 5, seed=0), "dim"),
        (lambda: NoisePath(BiasNoise(0.1), 3, 0.01, 5, seed=-2), "seed"),
        (lambda: NoisePath(None, 3, 0.01, 5, seed=0), "noise"),
        (lambda: NoisePath(MLPNoise(0.5), 4, 0.01, 5, seed=0, lmax=8), "dim 2 and 3"),
        (lambda: NoisePath(MLPNoise(0.5), 3, 0.01, 5, seed=0), "lmax"),
        (lambda: NoisePath(BiasNoise(0.1), 3, 0.01, 5, seed=0).check(BiasNoise(0.2), 3, 0.01, 5), "noise"),
        (lambda: NoisePath(BiasNoise(0.1), 3, 0.01, 5, seed=0).check(BiasNoise(0.1), 2, 0.01, 5), "dim"),
        (lambda: NoisePath(BiasNoise(0.1), 3, 0.01, 5, seed=0).check(BiasNoise(0.1), 3, 0.02, 5), "dt"),
        (lambda: NoisePath(BiasNoise(0.1), 3, 0.01, 5, seed=0).check(BiasNoise(0.1), 3, 0.01, 6), "n_steps"),
        (lambda: as_noise("bias"), "noise"),
    ],
)
def test_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call()
