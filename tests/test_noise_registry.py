"""The noise registry: every registered model declares its field's surface divergence (checked against finite
differences), its drift correction, its configuration table and its export from ``spde_tokens``."""

import tomllib

import numpy as np
import pytest

import spde_tokens as st
from spde_tokens.config import DEFAULT_CONFIG, build_noise, load_config
from spde_tokens.noise import NOISE_MODELS, NoisePath, as_noise

#: one instance of every registered model (a new model must add one: test_every_model_has_an_example)
EXAMPLES = {
    "rotation": st.RotationNoise(0.7),
    "bias": st.BiasNoise(0.6),
    "quadratic_form": st.QuadraticFormNoise(0.5),
    "value": st.ValueNoise(0.8),
    "mlp": st.MLPNoise(0.9, "tanh", 16),
    "idiosyncratic": st.IdiosyncraticNoise(0.1),
}
#: the attention output used as ValueNoise's context: a(x) = A x + b, with Jacobian A
A = np.random.default_rng(11).uniform(-0.6, 0.6, (5, 5))
B = np.array([0.05, -0.1, 0.2, 0.0, 0.15])


def test_every_model_has_an_example():
    assert set(EXAMPLES) == set(NOISE_MODELS)


def _unit(rng, n, dim):
    x = rng.standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _tangent_field(model, increments, y, dim):
    """ṽ(y) = P_ŷ ΔN(ŷ), the 0-homogeneous extension of the tangential field (ŷ = y/|y|)."""
    x = y / np.linalg.norm(y, axis=-1, keepdims=True)
    context = x @ A[:dim, :dim].T + B[:dim] if model.needs_context else None
    f = model.field(x, increments, context)
    return f - np.sum(f * x, axis=-1, keepdims=True) * x


def _cases():
    for kind, model in sorted(EXAMPLES.items()):
        for dim in (2, 3, 5):
            yield pytest.param(model, dim, id=f"{kind}-d{dim}")
    for dim in (2, 3):
        yield pytest.param(st.MLPNoise(0.9, "erf", None), dim, id=f"mlp_infinite-d{dim}")


@pytest.mark.parametrize(("model", "dim"), list(_cases()))
def test_divergence_matches_finite_differences(model, dim):
    """div_S v = Σ_i ∂_i ṽ_i for the 0-homogeneous extension ṽ (its radial derivative vanishes), by central
    differences of step h, independent of the formula div_S(P_x F) = tr(P DF P) − (d − 1) x·F it checks."""
    rng = np.random.default_rng(dim)
    path = NoisePath(model, dim=dim, dt=0.01, n_steps=1, seed=3, lmax=10)
    increments = path.increments(0)
    x = _unit(rng, 40, dim)
    context = x @ A[:dim, :dim].T + B[:dim] if model.needs_context else None
    jacobian = np.broadcast_to(A[:dim, :dim], (len(x), dim, dim)) if model.needs_context else None
    div = model.divergence(x, increments, context, jacobian)
    h = 1e-5
    fd = sum((_tangent_field(model, increments, x + h * e, dim)[:, i]
              - _tangent_field(model, increments, x - h * e, dim)[:, i]) / (2 * h) for i, e in enumerate(np.eye(dim)))
    scale = np.abs(model.field(x, increments, context)).max() + 1e-300
    # central differences: truncation h² |ṽ'''|/6 ~ 1e-10 |F| for fields whose derivatives are O(|F|) (degree ≤ 12
    # harmonics: third derivatives ~ 10³ |F|, so ≲ 1e-7 |F|), rounding eps |F| / h ~ 2e-11 |F|: 1e-6 of the field
    np.testing.assert_allclose(div, fd, rtol=0, atol=1e-6 * scale)


def test_sums_add_divergences():
    noise = as_noise(EXAMPLES["bias"] + EXAMPLES["quadratic_form"] + EXAMPLES["idiosyncratic"])
    increments = NoisePath(noise, dim=3, dt=0.01, n_steps=1, seed=1).increments(0)
    x = _unit(np.random.default_rng(0), 10, 3)
    parts = EXAMPLES["bias"].divergence(x, increments) + EXAMPLES["quadratic_form"].divergence(x, increments)
    np.testing.assert_array_equal(noise.divergence(x, increments), parts)


def test_value_noise_owns_its_drift_correction():
    """−(σ²/4) ∇_S|a|² for a(x) = A x: ∇_S(xᵀAᵀA x) = 2 P_x AᵀA x, a closed form independent of the grid's gradient."""
    grid = st.SphereGrid(16)
    x = grid.points()
    a3 = A[:3, :3]
    a = x @ a3.T
    correction = EXAMPLES["value"].drift_correction(grid, a)
    exact = -0.25 * 0.8**2 * 2 * grid.to_tangent(x @ (a3.T @ a3).T)  # to_tangent projects on the tangent plane
    # |a|² has degree 2: one analysis and one gradient of an O(1) field, rounding ~1e-14 (lmax 16)
    np.testing.assert_allclose(correction, exact, rtol=0, atol=1e-12)
    for kind in sorted(set(EXAMPLES) - {"value"}):
        assert EXAMPLES[kind].drift_correction(grid, a) is None, kind
    assert st.ValueNoise(0.0).drift_correction(grid, a) is None


def _config(noise: dict) -> dict:
    data = tomllib.loads(DEFAULT_CONFIG)
    data["noise"] = noise
    return data


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_configuration_reads_the_registry(kind):
    model = EXAMPLES[kind]
    config = load_config(_config({kind: {k: v for k, v in model.parameters().items() if v is not None}}))
    assert build_noise(config) == as_noise(model)
    assert getattr(st, type(model).__name__) is type(model)  # exported by the package under its class name


def test_unknown_parameter_of_a_registered_model_is_named():
    with pytest.raises(ValueError, match="sigma"):
        load_config(_config({"bias": {"sigma": 0.1}}))
    with pytest.raises(ValueError, match="biass"):
        load_config(_config({"biass": {"gamma": 0.1}}))
