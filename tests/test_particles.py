"""The particle engine: equiangular tokens, Ott–Antonsen (docs/mathematics.md, 'The published phenomena'), the
layer update written out, orders, shared paths, bad input."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import spde_tokens as st
from spde_tokens.noise import BiasNoise, IdiosyncraticNoise, MLPNoise, NoisePath, ValueNoise


def _equiangular(n, r0):
    """n unit vectors in R^n with all pairwise inner products r0: v_i = e_i + c 1, normalized."""
    # (2c + n c²)/(1 + 2c + n c²) = r0  ⇔  n(1 − r0) c² + 2(1 − r0) c − r0 = 0
    c = (-2 * (1 - r0) + np.sqrt(4 * (1 - r0) ** 2 + 4 * n * (1 - r0) * r0)) / (2 * n * (1 - r0))
    v = np.eye(n) + c
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _equiangular_rate(r, n, beta, normalization):
    """SA ṙ = 2e^{βr}(1−r)((n−1)r+1)/(e^β + (n−1)e^{βr}); USA ṙ = (2/n) e^{βr}(1−r)((n−1)r+1)
    (docs/mathematics.md, 'Equiangular tokens')."""
    common = 2 * np.exp(beta * r) * (1 - r) * ((n - 1) * r + 1)
    return common / (np.exp(beta) + (n - 1) * np.exp(beta * r)) if normalization == "softmax" else common / n


@pytest.mark.parametrize("normalization", ["softmax", "unnormalized"])
@pytest.mark.parametrize(("scheme", "order"), [("layer", 1), ("flow", 4)])
def test_equiangular_tokens_follow_the_scalar_ode(normalization, scheme, order):
    n, r0, beta, t_end = 4, -0.2, 1.5, 1.0
    x0 = _equiangular(n, r0)
    exact = solve_ivp(lambda t, r: _equiangular_rate(r, n, beta, normalization), (0, t_end), [r0], rtol=1e-13,
                      atol=1e-14).y[0, -1]
    model = st.AttentionModel(n, beta, normalization=normalization)
    errors = []
    for dt in (0.02, 0.01):
        ds = st.simulate_particles(model, None, x0, t_end=t_end, dt=dt, scheme=scheme, save_every=t_end)
        x = ds.positions[-1].values
        gram = x @ x.T
        off = gram[~np.eye(n, dtype=bool)]
        assert np.ptp(off) < 1e-12  # equiangular configurations stay equiangular (symmetry, up to rounding)
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-12)  # tokens on the sphere
        errors.append(abs(off.mean() - exact))
    observed = np.log2(errors[0] / errors[1])
    # the leading error term dominates at these steps: observed order within 0.3 of the claimed one
    assert abs(observed - order) < 0.3, (errors, observed)
    assert errors[1] < (1e-2 if order == 1 else 1e-8)  # measured: 5.4e-3 (layer, USA), ~1e-10 (flow)


def test_same_seed_same_tokens():
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((50, 3))
    x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
    noise = BiasNoise(0.3) + MLPNoise(0.4, "tanh", 8) + IdiosyncraticNoise(0.01)
    model = st.AttentionModel(3, 1.0)
    a = st.simulate_particles(model, noise, x0, t_end=0.1, dt=0.01, seed=5)
    b = st.simulate_particles(model, noise, x0, t_end=0.1, dt=0.01, path=NoisePath(noise, 3, 0.01, 10, seed=5))
    c = st.simulate_particles(model, noise, x0, t_end=0.1, dt=0.01, seed=6)
    np.testing.assert_array_equal(a.positions.values, b.positions.values)
    assert not np.array_equal(a.positions[-1].values, c.positions[-1].values)
    assert a.attrs["seed"] == 5


@pytest.mark.parametrize("normalization", ["softmax", "unnormalized"])
def test_layer_step_is_the_layer_update_written_out(normalization):
    """One step of ``scheme="layer"`` against the layer update evaluated here token by token (docs/mathematics.md,
    'Common noise'), with general Q, K, V and the path's increments:

        x_i ← normalize(x_i + dt P V a_i + P ΔN(x_i) + P ξ_i),   P = I − x_i x_iᵀ,
        a_i = Σ_j p_ij x_j, p_ij = softmax_j(β⟨Q x_i, K x_j⟩) (unnormalized: e^{β⟨Q x_i, K x_j⟩}/N),
        ΔN(x) = gamma ΔB + sigma W₂ tanh(W₁ x)/sqrt(width),   ξ_i the idiosyncratic displacement of token i.
    """
    rng = np.random.default_rng(3)
    n, dt, beta, gamma, sigma, width = 50, 0.01, 1.5, 0.3, 0.4, 8
    x0 = rng.standard_normal((n, 3))
    x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
    Q, K, V = (np.eye(3) + 0.4 * rng.standard_normal((3, 3)) for _ in range(3))
    noise = BiasNoise(gamma) + MLPNoise(sigma, "tanh", width) + IdiosyncraticNoise(0.01)
    model = st.AttentionModel(3, beta, Q=Q, K=K, V=V, normalization=normalization)
    path = NoisePath(noise, 3, dt, 1, seed=5)
    inc, xi = path.increments(0), path.token_increments(0, n)
    by_hand = np.empty_like(x0)
    for i, x in enumerate(x0):
        weights = np.array([np.exp(beta * (Q @ x) @ (K @ y)) for y in x0])
        a = weights @ x0 / (weights.sum() if normalization == "softmax" else n)
        field = gamma * inc["bias"] + sigma * inc["mlp_w2"] @ np.tanh(inc["mlp_w1"] @ x) / np.sqrt(width)
        move = dt * V @ a + field + xi[i]
        y = x + move - (x @ move) * x
        by_hand[i] = y / np.linalg.norm(y)
    one = st.simulate_particles(model, noise, x0, t_end=dt, dt=dt, path=path, attention="direct")
    # rounding: each a_i is a weighted sum of N unit vectors (|a| ≤ e^{β‖Q‖‖K‖} < 1e3 unnormalized), summed in
    # another order than here: |Δa| ≤ N ε |a|; it moves x by dt ‖V‖ |Δa|, and the rest is O(10 ε)
    scale = 1.0 + dt * np.linalg.norm(V, 2) * np.exp(beta * np.linalg.norm(Q, 2) * np.linalg.norm(K, 2))
    np.testing.assert_allclose(one.positions[-1].values, by_hand, rtol=0, atol=10 * n * np.finfo(float).eps * scale)
    assert np.abs(by_hand - x0).max() > 1e-3  # the step moves the tokens far beyond the tolerance


def test_value_noise_is_refused_by_the_flow_scheme():
    x0 = np.eye(3)
    with pytest.raises(ValueError, match="flow"):
        st.simulate_particles(st.AttentionModel(3, 1.0), ValueNoise(0.5), x0, t_end=0.1, dt=0.01, seed=0,
                           scheme="flow")


@pytest.mark.parametrize(
    ("x0", "name"),
    [
        (np.ones((4, 2)) / np.sqrt(2), "shape"),
        (np.ones(3) / np.sqrt(3), "shape"),
        (np.array([[1.0, 0, 0], [0, np.nan, 1]]), "finite"),
        (np.array([[1.0, 0, 0], [0, 2.0, 0]]), "unit vectors"),
        (np.zeros((0, 3)), "shape"),
    ],
)
def test_bad_tokens(x0, name):
    with pytest.raises(ValueError, match=name):
        st.simulate_particles(st.AttentionModel(3, 1.0), None, x0, t_end=0.1, dt=0.01)


def test_bad_scheme_and_seed():
    with pytest.raises(ValueError, match="scheme"):
        st.simulate_particles(st.AttentionModel(3, 1.0), None, np.eye(3), t_end=0.1, dt=0.01, scheme="euler")
    with pytest.raises(ValueError, match="seed"):
        st.simulate_particles(st.AttentionModel(3, 1.0), BiasNoise(0.1), np.eye(3), t_end=0.1, dt=0.01)
    with pytest.raises(ValueError, match="seed"):
        st.simulate_particles(st.AttentionModel(3, 1.0), IdiosyncraticNoise(0.1), np.eye(3), t_end=0.1, dt=0.01)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("normalization", ["softmax", "unnormalized"])
@pytest.mark.parametrize("beta", [0.5, 5.0, 20.0])
def test_harmonic_attention_matches_direct_sums(dim, normalization, beta):
    """Funk–Hecke attention at the default degree (weights below 1e-16 of λ_0) equals the direct sums."""
    from spde_tokens.drift import attention_output_harmonic, attention_output_points

    rng = np.random.default_rng(dim)
    x = rng.standard_normal((1500, dim)) + 2 * np.eye(dim)[-1]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    model = st.AttentionModel(dim, beta, normalization=normalization)
    direct = attention_output_points(model, x, x)
    # truncation below 1e-16 of λ_0 plus rounding of O(L²) sums: measured ≤ 2e-13 relative
    np.testing.assert_allclose(attention_output_harmonic(model, x), direct, rtol=0, atol=1e-12 * np.abs(direct).max())
    # a truncation at a low degree is visibly worse: the error is the omitted part of the kernel
    low = attention_output_harmonic(model, x, degree=3)
    assert np.abs(low - direct).max() > 1e-6 * np.abs(direct).max()


def test_harmonic_attention_runs_many_tokens_in_bounded_memory():
    """N = 50 000 tokens on S^2: the harmonic path needs O(N L²) memory and time per step."""
    import tracemalloc

    rng = np.random.default_rng(1)
    x = rng.standard_normal((50_000, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    tracemalloc.start()
    ds = st.simulate_particles(st.AttentionModel(3, 1.0), BiasNoise(0.1), x, t_end=0.02, dt=0.01, seed=0,
                            attention="harmonic", save_every=0.02)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert ds.attrs["attention"] == "harmonic" and np.all(np.isfinite(ds.positions.values))
    assert peak < 400 * 2**20  # an N × N matrix alone would take 20 GB


def _ott_antonsen_radius(t, r0=0.5):
    """r(t)² = r0² eᵗ / (1 − r0² + r0² eᵗ) solves ṙ = ½ r (1 − r²)."""
    return np.sqrt(r0**2 * np.exp(t) / (1 - r0**2 + r0**2 * np.exp(t)))


def test_ott_antonsen_for_tokens():
    """beta = 0 on S^1: tokens drawn from a Poisson kernel keep the Ott–Antonsen radius r(t) (docs/mathematics.md,
    'Ott–Antonsen') within the standard error of the mean over independent draws, measured from their spread.

    The one-draw formula sqrt((1 − r²)/(2N)) holds at t = 0 only: the sampling error of m̂ also drives the flow
    (ẋ = P_x m̂) and is propagated by it, so at t > 0 the spread is larger: 1.32 and 1.43 times the formula at
    t = 0.8 and 2 over 200 draws of N = 2000 (spde_tokens/validation/ott_antonsen.py); 1.4, 1.8, 1.7 times at
    t = 0, 1, 2 over the 24 draws here.
    """
    grid = st.CircleGrid(64)
    rho0 = st.initial.poisson_kernel(grid, [0.5, 0.0])
    n, draws = 2000, 24
    radius = []
    for seed in range(draws):
        x0 = st.initial.sample(rho0, n, seed=seed)
        ds = st.simulate_particles(st.AttentionModel(2, 0.0), None, x0, t_end=2.0, dt=0.02, scheme="flow",
                                   save_every=1.0)
        radius.append(np.linalg.norm(ds.mean_vector.values, axis=1))
    radius = np.array(radius)
    t = ds.time.values
    exact = _ott_antonsen_radius(t)
    se = radius.std(axis=0, ddof=1) / np.sqrt(draws)  # measured: 3e-3 … 4e-3
    # 4 standard errors (Student t with 23 degrees of freedom: P(|t| > 4) ≈ 6e-4 per time). The bias of |m̂| as an
    # estimate of |E m̂| is E|m̂_⊥|²/(2r) ≈ (1 − r²)/(4Nr) ≈ 2e-4 ≪ se, and RK4 at dt = 0.02 adds ~1e-8.
    assert np.all(np.abs(radius.mean(axis=0) - exact) < 4 * se), (radius.mean(axis=0) - exact) / se
    # power: the band is narrow enough to tell ṙ = ½ r (1 − r²) from half that rate (radius r(t/2))
    assert np.all(4 * se[1:] < np.abs(exact - _ott_antonsen_radius(t / 2))[1:])


@pytest.mark.parametrize("scheme", ["layer", "flow"])
def test_weak_order_one_on_the_heat_semigroup(scheme):
    """V = 0, IdiosyncraticNoise(nu): E x_z(T) = e^{−(d−1) nu T} x0_z on S^2; the bias falls like dt (order 1).

    Measured errors (N = 2·10⁵): layer 0.072, 0.039, 0.020; flow 0.023, 0.011, 0.005 at dt = 0.1, 0.05, 0.025;
    the standard error of the mean is 1e-3.
    """
    n, nu, t_end = 200_000, 0.5, 1.0
    x0 = np.tile([0.0, 0.0, 1.0], (n, 1))
    model = st.AttentionModel(3, 0.0, V=np.zeros((3, 3)))
    errors = []
    for dt in (0.1, 0.05, 0.025):
        ds = st.simulate_particles(model, IdiosyncraticNoise(nu), x0, t_end=t_end, dt=dt, seed=1, save_every=t_end,
                                scheme=scheme)
        errors.append(ds.positions[-1].values[:, 2].mean() - np.exp(-2 * nu * t_end))
    orders = np.log2(np.abs(errors[:-1]) / np.abs(errors[1:]))
    # order 1 with sampling error (1e-3 on errors of 5e-3 … 7e-2) and the pre-asymptotic regime: ±0.35
    assert np.all(np.abs(orders - 1.0) < 0.35), (errors, orders)


@pytest.mark.parametrize("scheme", ["layer", "flow"])
def test_strong_order_one_half_under_coarsening(scheme):
    """One path refined with ``coarsen`` (BiasNoise, beta = 1, 16 tokens): RMS error over 8 paths ∝ dt^{1/2}
    (measured slopes 0.46 layer, 0.44 flow, against a flow reference at dt = 0.5/1024)."""
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((16, 3))
    x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
    model, noise, t_end, n_fine, ks = st.AttentionModel(3, 1.0), BiasNoise(0.5), 0.5, 512, (4, 8, 16, 32)
    errors = np.zeros((8, len(ks)))
    for seed in range(8):
        path = NoisePath(noise, 3, t_end / n_fine, n_fine, seed=seed)
        ref = st.simulate_particles(model, noise, x0, t_end=t_end, dt=path.dt, path=path, save_every=t_end,
                                 scheme="flow").positions[-1].values
        for j, k in enumerate(ks):
            coarse = path.coarsen(k)
            x = st.simulate_particles(model, noise, x0, t_end=t_end, dt=coarse.dt, path=coarse, save_every=t_end,
                                   scheme=scheme).positions[-1].values
            errors[seed, j] = np.sqrt(np.mean(np.sum((x - ref) ** 2, axis=1)))
    slope = np.polyfit(np.log(ks), np.log(np.sqrt((errors**2).mean(0))), 1)[0]
    assert 0.3 < slope < 0.75, slope  # eight paths: slope uncertain by about ±0.1


def _hardmax_exact(x0, a_diag, t):
    """The zero-temperature flow ẋ = P_x A x/|A x| (V = I, A = diag) in closed form: in the time s with
    ds/dt = 1/|A x| it is Oja's flow dx/ds = A x − (xᵀA x) x, solved by x(s) = e^{sA}x0/|e^{sA}x0|, and
    t(s) = ∫_0^s |A x(u)| du (a monotone map, inverted by root finding)."""
    from scipy.integrate import quad
    from scipy.optimize import brentq

    a = np.asarray(a_diag)

    def x_of(s, x):
        y = np.exp(s * a) * x
        return y / np.linalg.norm(y)

    out = []
    for x in x0:
        def t_of(s, x=x):
            return quad(lambda u: np.linalg.norm(a * x_of(u, x)), 0.0, s, epsabs=1e-14, epsrel=1e-13)[0]

        # |A x| ≥ min a: t(s) ≥ s min a, so s ∈ [0, t/min a]
        s = brentq(lambda s, x=x: t_of(s, x) - t, 0.0, t / a.min(), xtol=1e-14)
        out.append(x_of(s, x))
    return np.array(out)


def test_hardmax_tokens_follow_the_closed_form_zero_temperature_flow():
    """A = diag(1, 0.6, 0.3), V = I: every token moves on its own by X_∞ and reaches ±e1 (sign of x·e1), at the RK4
    order of the flow scheme."""
    a_diag = (1.0, 0.6, 0.3)
    model = st.AttentionModel(3, Q=np.diag(a_diag), normalization="hardmax")
    rng = np.random.default_rng(5)
    x0 = rng.normal(size=(6, 3))
    x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
    t_end = 4.0
    exact = _hardmax_exact(x0, a_diag, t_end)
    errors = []
    for dt in (0.2, 0.1):
        ds = st.simulate_particles(model, None, x0, t_end=t_end, dt=dt, save_every=t_end, scheme="flow")
        assert "energy" not in ds and ds.attrs["beta"] == np.inf
        errors.append(np.abs(ds["positions"].values[-1] - exact).max())
    order = np.log2(errors[0] / errors[1])
    # RK4: order 4; the error constant at dt = 0.1 (rates ≤ 7/3 near e3) is ~1e-6, far above the 1e-12 of the root
    # finding and quadrature of the closed form
    assert 3.5 <= order <= 4.6 and errors[1] <= 1e-5, (errors, order)
    # long times: the projection map x ↦ sign(x·e1) e1; the slowest rate is 1 − 0.6 = 0.4
    late = _hardmax_exact(x0, a_diag, 40.0)
    ds = st.simulate_particles(model, None, x0, t_end=40.0, dt=0.1, save_every=40.0, scheme="flow")
    x = ds["positions"].values[-1]
    np.testing.assert_allclose(x, late, atol=1e-5)
    np.testing.assert_allclose(x, np.sign(x0[:, :1]) * np.eye(3)[0], atol=1e-4)  # e^{−0.4·40} ≈ 1e-7 from ±e1


def test_hardmax_is_for_tokens_only():
    model = st.AttentionModel(3, normalization="hardmax")
    x0 = np.eye(3)
    with pytest.raises(ValueError, match="hardmax"):
        st.simulate_particles(model, None, x0, t_end=1.0, dt=0.5, attention="harmonic")
    grid = st.SphereGrid(15)
    with pytest.raises(ValueError, match="hardmax.*simulate_particles"):
        st.solve_density(model, None, st.initial.uniform(grid), t_end=1.0, dt=0.5)
    singular = st.AttentionModel(3, Q=np.diag([1.0, 1.0, 0.0]), normalization="hardmax")
    with pytest.raises(ValueError, match="Aᵀx = 0"):
        st.simulate_particles(singular, None, np.array([[0.0, 0.0, 1.0]]), t_end=1.0, dt=0.5)
