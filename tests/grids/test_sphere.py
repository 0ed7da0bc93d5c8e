"""SphereGrid: transforms, calculus, quadrature, frame and point evaluation on S^2 against closed forms and scipy.

Convention under test (spde_tokens.grids): orthonormal Y_lm with Condon–Shortley phase (``scipy.special.sph_harm_y``),
f = Σ_{l, m≥0} w_m Re(f_lm Y_lm), w_0 = 1, w_m = 2. The identities that hold on the circle as well (round trip,
Parseval, div ∇ = Δ, …) are in test_identities.py.
"""

import functools

import numpy as np
import pytest
from scipy.special import sph_harm_y

from spde_tokens.grids import SphereGrid

LMAXS = [8, 16, 31]
#: the calculus identities also at lmax 63, where a tolerance that does not grow with lmax would break
CALCULUS_LMAXS = [*LMAXS, 63]
EPS = np.finfo(float).eps


@functools.cache
def _grid(lmax: int) -> SphereGrid:
    return SphereGrid(lmax)


def _index(grid: SphereGrid, ell: int, m: int) -> int:
    return int(np.flatnonzero((grid.degrees == ell) & (grid.orders == m))[0])


def _angles(grid: SphereGrid) -> tuple[np.ndarray, np.ndarray]:
    """Colatitude θ and longitude φ of the nodes, shape ``grid.shape``."""
    return np.meshgrid(grid.theta, grid.phi, indexing="ij")


def _random_unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _direct_synthesis(grid: SphereGrid, coeffs: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Σ w_m Re(f_lm Y_lm(x)) summed term by term with scipy's Y_lm."""
    theta = np.arccos(np.clip(pts[:, 2], -1.0, 1.0))
    phi = np.arctan2(pts[:, 1], pts[:, 0])
    y = sph_harm_y(grid.degrees[:, None], grid.orders[:, None], theta[None, :], phi[None, :])
    return ((grid.order_weight * coeffs)[:, None] * y).real.sum(axis=0)


# ---- transforms and the convention ----------------------------------------------------------------------------
@pytest.mark.parametrize("lmax", LMAXS)
def test_single_harmonic_matches_scipy(lmax, rounding):
    """synthesis of one coefficient c_lm is w_m Re(c_lm Y_lm) with scipy's orthonormal, Condon–Shortley phased Y_lm."""
    grid = _grid(lmax)
    theta, phi = _angles(grid)
    for ell, m in [(0, 0), (1, 0), (1, 1), (3, 2), (lmax, 0), (lmax, 1), (lmax, lmax // 2), (lmax, lmax)]:
        c = np.zeros(grid.n_coeff, dtype=complex)
        c[_index(grid, ell, m)] = 0.6 - 0.8j if m > 0 else 0.6
        w = 2.0 if m > 0 else 1.0
        expected = w * (c[_index(grid, ell, m)] * sph_harm_y(ell, m, theta, phi)).real
        # one term of size ≤ w sqrt((2l+1)/4π) ≤ 3.3, against scipy: twice the rounding bound (conftest._rounding)
        np.testing.assert_allclose(grid.synthesis(c), expected, rtol=0, atol=2 * rounding(grid, 3.3))


@pytest.mark.parametrize("lmax", LMAXS)
def test_coordinate_coefficients(lmax, rounding):
    """z = sqrt(4π/3) Y_10; x = -sqrt(2π/3)·2Re(Y_11); y = sqrt(2π/3)·2Re(i Y_11) (Y_11 = -sqrt(3/8π) sinθ e^{iφ})."""
    grid = _grid(lmax)
    expected = np.zeros((3, grid.n_coeff), dtype=complex)
    expected[0, _index(grid, 1, 1)] = -np.sqrt(2 * np.pi / 3)
    expected[1, _index(grid, 1, 1)] = 1j * np.sqrt(2 * np.pi / 3)
    expected[2, _index(grid, 1, 0)] = np.sqrt(4 * np.pi / 3)
    # the analysis' rounding bound on fields of size 1, for coefficients (conftest._rounding)
    atol = np.sqrt(grid.area) * rounding(grid)
    np.testing.assert_allclose(grid.coordinate_coefficients(), expected, rtol=0, atol=atol)


# ---- calculus -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("form", "eigenvalue"),
    [
        (lambda x, y, z: z, -2.0),
        (lambda x, y, z: x**2 - y**2, -6.0),
        (lambda x, y, z: x * y * z, -12.0),  # harmonic cubic polynomial: degree 3
        (lambda x, y, z: 5 * z**3 - 3 * z, -12.0),  # 2 P_3(z)
    ],
)
@pytest.mark.parametrize("lmax", CALCULUS_LMAXS)
def test_laplacian_of_closed_forms_on_the_grid(lmax, form, eigenvalue, rounding):
    """Restrictions of harmonic homogeneous polynomials of degree l are eigenfunctions with eigenvalue -l(l+1)."""
    grid = _grid(lmax)
    x, y, z = np.moveaxis(grid.points(), -1, 0)
    f = form(x, y, z)
    lap = grid.synthesis(grid.laplacian(grid.analysis(f)))
    # rounding noise in every coefficient, amplified by l(l+1) ≤ lmax(lmax+1) (conftest._rounding, derivative 2)
    np.testing.assert_allclose(lap, eigenvalue * f, rtol=0, atol=rounding(grid, np.abs(f).max(), derivative=2))


@pytest.mark.parametrize("lmax", CALCULUS_LMAXS)
def test_gradient_closed_forms(lmax, rounding):
    """∇z = (-sin θ, 0); ∇x = (cos θ cos φ, -sin φ) in (e_θ, e_φ)."""
    grid = _grid(lmax)
    theta, phi = _angles(grid)
    coords = grid.coordinate_coefficients()
    # one derivative of fields of size 1: the rounding bound times sqrt(lmax(lmax+1)) (conftest._rounding)
    tol = rounding(grid, 1.0, derivative=1)
    grad_z = grid.gradient(coords[2])
    np.testing.assert_allclose(grad_z[0], -np.sin(theta), rtol=0, atol=tol)
    np.testing.assert_allclose(grad_z[1], 0.0, rtol=0, atol=tol)
    grad_x = grid.gradient(coords[0])
    np.testing.assert_allclose(grad_x[0], np.cos(theta) * np.cos(phi), rtol=0, atol=tol)
    np.testing.assert_allclose(grad_x[1], -np.sin(phi), rtol=0, atol=tol)


@pytest.mark.parametrize("lmax", LMAXS)
def test_tangent_components_of_a_constant_vector(lmax):
    """P_x e_3 = ∇z has the components (e_θ·e_3, e_φ·e_3) = (-sin θ, 0)."""
    grid = _grid(lmax)
    theta, _ = _angles(grid)
    tangent = grid.to_tangent(np.broadcast_to([0.0, 0.0, 1.0], (*grid.shape, 3)))
    np.testing.assert_allclose(tangent[0], -np.sin(theta), rtol=0, atol=1e-15)  # one rounding
    np.testing.assert_allclose(tangent[1], 0.0, rtol=0, atol=0)


@pytest.mark.parametrize("lmax", LMAXS)
def test_divergence_is_blind_to_rotational_fields(lmax, random_coeffs, rounding, synthesis_scale):
    """The rotated gradient e_r × ∇f = (-∂_φ f / sin θ, ∂_θ f) is divergence free."""
    grid = _grid(lmax)
    c = random_coeffs(grid, np.random.default_rng(3 + lmax))
    grad = grid.gradient(c)
    rotated = np.stack([-grad[1], grad[0]])
    # two derivatives of f, on coefficients: as div ∇f = Δf in test_identities.py (conftest._rounding)
    atol = np.sqrt(grid.area) * rounding(grid, synthesis_scale(grid, c), derivative=2)
    np.testing.assert_allclose(grid.divergence(rotated), 0.0, rtol=0, atol=atol)


# ---- quadrature -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lmax", LMAXS)
def test_gauss_legendre_is_exact_for_polynomials_in_z(lmax):
    grid = _grid(lmax)
    z = grid.points()[..., 2]
    # Gauss–Legendre is exact for polynomials in z of degree ≤ 2 nlat - 1 ≥ 2 lmax: ∫ z^{2k} dA = 4π/(2k+1)
    # (z^{2k} amplifies the nodes' relative rounding by 2k: observed 1.1e-13 at k = 31, allow 1e-13 + 2k·1e-14)
    for k in (1, lmax // 2, lmax):
        expected = 4 * np.pi / (2 * k + 1)
        assert grid.integrate(z ** (2 * k)) == pytest.approx(expected, rel=1e-13 + 2 * k * 1e-14, abs=0)


# ---- points and frame -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("lmax", LMAXS)
def test_frame_orientation_and_latitude_order(lmax):
    grid = _grid(lmax)
    x = grid.points()
    t = grid.tangent_basis()
    # right-handed frame with outward normal: e_θ × e_φ = x (e_θ points south, e_φ east); a few roundings, 1e-15
    np.testing.assert_allclose(np.cross(t[0], t[1]), x, rtol=0, atol=1e-15)
    # latitudes are ordered from north to south
    assert np.all(np.diff(grid.cos_theta) < 0) and x[0, 0, 2] > 0 > x[-1, 0, 2]


# ---- point evaluation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("lmax", LMAXS)
def test_evaluate_matches_scipy(lmax, random_coeffs):
    grid = _grid(lmax)
    rng = np.random.default_rng(5 + lmax)
    c = random_coeffs(grid, rng)
    pts = _random_unit_vectors(rng, 300)
    direct = _direct_synthesis(grid, c, pts)
    # two independent Legendre recurrences summed over ≤ 528 terms of O(1/sqrt(n_coeff)): 1e-12 of the field's size
    np.testing.assert_allclose(grid.evaluate(c, pts), direct, rtol=0, atol=1e-12 * np.abs(direct).max())


@pytest.mark.parametrize("lmax", LMAXS)
def test_synthesis_matches_scipy_at_every_node(lmax, random_coeffs, rounding, synthesis_scale):
    grid = _grid(lmax)
    c = random_coeffs(grid, np.random.default_rng(12 + lmax))
    direct = _direct_synthesis(grid, c, grid.points().reshape(-1, 3)).reshape(grid.shape)
    # against scipy: twice the synthesis' rounding bound (conftest._rounding); shtns' polar optimization, off
    # here, would leave 6e-13 at lmax 31
    np.testing.assert_allclose(grid.synthesis(c), direct, rtol=0, atol=2 * rounding(grid, synthesis_scale(grid, c)))


@pytest.mark.parametrize("lmax", LMAXS)
def test_gradient_matches_scipy_at_every_node(lmax, random_coeffs, rounding, synthesis_scale):
    """∂_θ Y_lm = m cot θ Y_lm + sqrt((l-m)(l+m+1)) e^{-iφ} Y_l,m+1 and ∂_φ Y_lm / sin θ = i m Y_lm / sin θ."""
    grid = _grid(lmax)
    c = random_coeffs(grid, np.random.default_rng(13 + lmax))
    theta, phi = (a.ravel() for a in _angles(grid))
    ell, m = grid.degrees[:, None], grid.orders[:, None]
    y = sph_harm_y(ell, m, theta, phi)
    y_up = sph_harm_y(ell, np.minimum(m + 1, ell), theta, phi)  # its factor vanishes when m = l
    d_theta = m / np.tan(theta) * y + np.sqrt((ell - m) * (ell + m + 1)) * np.exp(-1j * phi) * y_up
    d_phi = 1j * m * y / np.sin(theta)
    wc = (grid.order_weight * c)[:, None]
    exact = np.stack([(wc * d_theta).real.sum(axis=0), (wc * d_phi).real.sum(axis=0)]).reshape(2, *grid.shape)
    # against scipy: twice the rounding bound of one derivative (conftest._rounding); with shtns' polar
    # optimization, off here, 1.3e-12 at lmax 31
    atol = 2 * rounding(grid, synthesis_scale(grid, c), derivative=1)
    np.testing.assert_allclose(grid.gradient(c), exact, rtol=0, atol=atol)


@pytest.mark.parametrize("z", [1.0, -1.0])
@pytest.mark.parametrize("lmax", LMAXS)
def test_evaluate_at_the_poles(lmax, z, random_coeffs):
    """Only m = 0 survives at the poles: f(±e_3) = Σ_l f_l0 sqrt((2l+1)/4π) (±1)^l."""
    grid = _grid(lmax)
    c = random_coeffs(grid, np.random.default_rng(7 + lmax))
    sel = grid.orders == 0
    ell = grid.degrees[sel]
    expected = np.sum(c[sel].real * np.sqrt((2 * ell + 1) / (4 * np.pi)) * z**ell)
    # a sum of lmax + 1 O(1) terms: round-off ~1e-15
    assert grid.evaluate(c, np.array([[0.0, 0.0, z]]))[0] == pytest.approx(expected, abs=1e-13)


@pytest.mark.parametrize("z", [1.0, -1.0])
def test_evaluate_next_to_the_pole(z, random_coeffs):
    """At θ = 1e-12 from a pole sin(θ)^m underflows in the sectoral recurrence; the value must still be the pole's."""
    grid = _grid(31)
    c = random_coeffs(grid, np.random.default_rng(8))
    s = np.sin(1e-12)
    value = grid.evaluate(c, np.array([[s, 0.0, z * np.sqrt(1 - s**2)]]))[0]
    expected = grid.evaluate(c, np.array([[0.0, 0.0, z]]))[0]
    # |∇f| = O(lmax) for an O(1) field, so a displacement of 1e-12 changes f by ≲ 1e-10
    assert value == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("lmax", LMAXS)
def test_empirical_coefficients_default_weights(lmax):
    """Equal weights 1/N: μ_lm = mean of conj(Y_lm(x_i)) (checked against scipy), μ_00 = 1/sqrt(4π) exactly."""
    grid = _grid(lmax)
    pts = _random_unit_vectors(np.random.default_rng(10 + lmax), 200)
    emp = grid.empirical_coefficients(pts)
    theta, phi = np.arccos(pts[:, 2]), np.arctan2(pts[:, 1], pts[:, 0])
    expected = np.conj(sph_harm_y(grid.degrees[:, None], grid.orders[:, None], theta, phi)).mean(axis=1)
    # means of O(1) basis values by two recurrences: ~1e-15
    np.testing.assert_allclose(emp, expected, rtol=0, atol=1e-13)
    assert emp[_index(grid, 0, 0)] == pytest.approx(1 / np.sqrt(4 * np.pi), rel=1e-14)


# ---- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"lmax": 2}, "lmax"), ({"lmax": 3.5}, "lmax"), ({"lmax": True}, "lmax"), ({"lmax": "8"}, "lmax"),
     ({"lmax": 8, "threads": 0}, "threads"), ({"lmax": 8, "threads": 1.5}, "threads")],
)
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        SphereGrid(**kwargs)



def test_huge_resolutions_are_refused_before_allocating():
    """lmax 100000 made shtns call exit() and 20000 crashed the process: both need far more memory than any machine
    here has (≥ 1.8e9 nodes × 64 B ≈ 115 GB for the grid alone), so the grid refuses them with the estimate."""
    for lmax in (20000, 100000):
        with pytest.raises(ValueError, match=rf"lmax = {lmax} is too large: .* GB .* more than the .* GB available"):
            SphereGrid(lmax)


def test_a_run_beyond_memory_is_refused_up_front(monkeypatch):
    """With 0.5 MB available a SphereGrid(16) (1400 nodes: 90 kB) builds, but a run (~512 B a node: 0.7 MB) does not."""
    import spde_tokens as st
    from spde_tokens.grids import base

    grid = SphereGrid(16)
    monkeypatch.setattr(base, "available_memory", lambda: 5 * 10**5)
    rho0 = st.initial.uniform(grid)
    with pytest.raises(ValueError, match="a density run needs about"):
        st.solve_density(st.AttentionModel(3, 1.0), None, rho0, t_end=0.1, dt=0.01)
    with pytest.raises(ValueError, match="lmax = 64 is too large"):
        SphereGrid(64)  # 97 × 193 nodes × 64 B ≈ 1.2 MB


@pytest.mark.parametrize("lmax", [4, 17, 40])
def test_degrees_and_orders_are_shtns_layout(lmax):
    """The grid (and a low-degree plan on it) builds shtns' l, m arrays from the layout, not by shtns' loop of idx()
    calls: every (l, m) must sit where shtns' own idx() puts it, and both plans must transform alike."""
    grid = SphereGrid(lmax)
    sh = grid._sh
    assert all(sh.idx(int(ell), int(m)) == i for i, (ell, m) in enumerate(zip(grid.degrees, grid.orders, strict=True)))
    band = grid.truncated(lmax - 2)
    pairs = zip(band._sh.l, band._sh.m, strict=True)
    assert all(band._sh.idx(int(ell), int(m)) == i for i, (ell, m) in enumerate(pairs))
    assert np.array_equal(grid.degrees[band.index], band._sh.l) and np.array_equal(grid.orders[band.index], band._sh.m)
    c = grid.analysis(np.random.default_rng(0).standard_normal(grid.shape))
    c[grid.degrees > lmax - 2] = 0.0
    # the same band-limited field by both plans: rounding of (lmax + 1)-term sums of O(1) coefficients
    np.testing.assert_allclose(band.synthesis(band.restrict(c)), grid.synthesis(c), rtol=0, atol=100 * lmax * EPS)
