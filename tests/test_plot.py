"""Figures and animations (spde_tokens.plot): every figure is written, is a valid non-blank image with the expected
panels, ``plot_run`` picks the right figure, and Datasets missing what a figure needs are refused by name."""

import warnings

import numpy as np
import pytest
import xarray as xr
from PIL import Image

import spde_tokens as st
from spde_tokens import plot

NOISE = st.BiasNoise(0.3)


def _quiet(fn, *args, **kwargs):
    """Runs on coarse grids may report under-resolution; that is not what these tests are about."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", st.ResolutionWarning)
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def sphere_run():
    rho0 = st.initial.von_mises_fisher(st.SphereGrid(12), [0, 0, 1], 2.0)
    return _quiet(st.solve_density, st.AttentionModel(3, 2.0), NOISE, rho0, t_end=0.1, dt=0.02, seed=0)


@pytest.fixture(scope="module")
def circle_run():
    rho0 = st.initial.von_mises_fisher(st.CircleGrid(16), [1, 0], 2.0)
    return _quiet(st.solve_density, st.AttentionModel(2, 2.0), NOISE, rho0, t_end=0.1, dt=0.02, seed=0)


@pytest.fixture(scope="module")
def sphere_tokens(sphere_run):
    rho0 = st.initial.von_mises_fisher(st.SphereGrid(12), [0, 0, 1], 2.0)
    x0 = st.initial.sample(rho0, n=60, seed=1)
    return st.simulate_particles(st.AttentionModel(3, 2.0), NOISE, x0, t_end=0.1, dt=0.02, seed=0)


def _unit_vectors(n, dim, seed):
    x = np.random.default_rng(seed).standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def tokens_5d():
    return st.simulate_particles(st.AttentionModel(5, 1.0), NOISE, _unit_vectors(40, 5, 2), t_end=0.1, dt=0.02,
                                 seed=0)


@pytest.fixture(scope="module")
def tokens_2d():
    return st.simulate_particles(st.AttentionModel(2, 2.0), NOISE, _unit_vectors(80, 2, 3), t_end=0.1, dt=0.02,
                                 seed=0)


@pytest.fixture(scope="module")
def comparison(sphere_run, sphere_tokens):
    """A Dataset shaped like ``compare``'s output, built here so the figure does not wait on compare.py."""
    t = sphere_run["time"]
    return xr.Dataset(
        {"mmd": ("time", np.linspace(0.05, 0.08, t.size)), "mmd_sampling_floor": ("time", np.full(t.size, 0.06)),
         "energy_density": sphere_run["energy"], "energy_particles": sphere_tokens["energy"],
         "dispersion_density": sphere_run["dispersion"], "dispersion_particles": sphere_tokens["dispersion"],
         "dispersion_particles_unbiased": sphere_tokens["dispersion"] * 60 / 59},
        coords={"time": t.values}, attrs={**sphere_run.attrs, "n_tokens": 60, "mmd_scale": 2.0})


@pytest.fixture(scope="module")
def ensemble(circle_run):
    """Three realizations of energy and dispersion on a ``realization`` dimension."""
    runs = [circle_run[["energy", "dispersion"]] * (1 + 0.05 * r) for r in range(3)]
    return xr.concat(runs, dim="realization").assign_attrs(circle_run.attrs)


def _check_image(path, min_frames=1):
    """A valid image file, with more than ``min_frames - 1`` frames, and not blank (grey-level spread)."""
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        frames = getattr(im, "n_frames", 1)
        assert frames >= min_frames
        grey = np.asarray(im.convert("L"), dtype=float)
    assert grey.std() > 20, f"{path.name} looks blank (pixel std {grey.std():.1f})"
    return frames


def _panels(fig):
    """(data panels, colorbars); every data panel has something drawn on it."""
    colorbars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    for ax in panels:
        assert ax.lines or ax.collections or ax.patches or ax.images, f"empty panel {ax.get_title()!r}"
    return panels, colorbars


def _mollweide(fig):
    return [ax for ax in fig.axes if ax.name == "mollweide"]


# ---- figures ------------------------------------------------------------------------------------------------------
def test_density_on_the_sphere(sphere_run, tmp_path):
    fig = plot.plot_density(sphere_run, tmp_path / "dens.png", times=4)
    _check_image(tmp_path / "dens.png")
    panels, colorbars = _panels(fig)
    assert len(_mollweide(fig)) == 4 and len(colorbars) == 1 and len(panels) == 4 + 4
    assert colorbars[0].get_ylabel() == "density (per unit area)"
    labels = {ax.get_xlabel() for ax in panels} | {ax.get_ylabel() for ax in panels}
    assert {"depth t (dimensionless)", "degree l", "$P_l$", r"$E_\beta$", "1 − |m|²"} <= labels
    assert "seed 0" in fig._suptitle.get_text() and "β = 2" in fig._suptitle.get_text()
    with Image.open(tmp_path / "dens.png") as im:
        assert im.info["dpi"][0] == pytest.approx(plot.DPI, abs=1)


def test_density_on_the_circle_and_more_times_than_records(circle_run, tmp_path):
    fig = plot.plot_density(circle_run, tmp_path / "circle.png", times=50)  # 6 records: one curve each
    _check_image(tmp_path / "circle.png")
    panels, colorbars = _panels(fig)
    assert not colorbars and not _mollweide(fig) and len(panels) == 5
    assert len([line for line in panels[0].lines if line.get_label().startswith("t =")]) == circle_run.sizes["time"]


def test_figure_is_returned_without_a_file(sphere_run, tmp_path):
    fig = plot.plot_density(sphere_run, times=2)
    assert len(_mollweide(fig)) == 2 and not list(tmp_path.iterdir())


@pytest.mark.parametrize(("name", "times", "maps", "token_panels"), [("sphere_tokens", 4, 4, 4), ("tokens_5d", 2, 0, 2),
                                                                    ("tokens_2d", 3, 0, 1)])
def test_particles(name, times, maps, token_panels, request, tmp_path):
    ds = request.getfixturevalue(name)
    fig = plot.plot_particles(ds, tmp_path / "p.png", times=times)
    _check_image(tmp_path / "p.png")
    panels, colorbars = _panels(fig)
    assert len(_mollweide(fig)) == maps and not colorbars
    assert len(panels) == token_panels + 2  # plus energy and dispersion
    if name == "tokens_5d":
        assert panels[0].get_xlabel().startswith("principal coordinate 1")


def test_hardmax_tokens_without_energy(tmp_path):
    # beta = ∞ runs record no E_beta (it grows like e^beta/beta); the figure keeps its panels and says why
    model = st.AttentionModel(3, Q=np.diag([1.0, 0.6, 0.3]), normalization="hardmax")
    ds = st.simulate_particles(model, None, _unit_vectors(30, 3, 4), t_end=0.1, dt=0.05, seed=0)
    assert "energy" not in ds
    fig = plot.plot_particles(ds, tmp_path / "hardmax.png", times=2)
    _check_image(tmp_path / "hardmax.png")
    panels, _ = _panels(fig)
    assert len(panels) == 2 + 1 and panels[-1].get_title() == "dispersion"  # two token panels, no energy panel


def test_tokens_over_the_density(sphere_run, sphere_tokens, circle_run, tokens_2d, tmp_path):
    fig = plot.plot_particles(sphere_tokens, tmp_path / "over.png", times=3, density=sphere_run)
    _check_image(tmp_path / "over.png")
    panels, colorbars = _panels(fig)
    assert len(colorbars) == 1 and all(len(ax.collections) == 2 for ax in _mollweide(fig))  # density + tokens
    assert panels[-2].get_legend() is not None  # energies of both engines
    fig = plot.plot_particles(tokens_2d, times=2, density=circle_run)
    assert len(_panels(fig)[0]) == 3
    with pytest.raises(ValueError, match="density"):
        plot.plot_particles(tokens_2d, density=sphere_run)


def test_comparison(comparison, tmp_path):
    fig = plot.plot_comparison(comparison, tmp_path / "cmp.png")
    _check_image(tmp_path / "cmp.png")
    panels, _ = _panels(fig)
    assert len(panels) == 3 and panels[0].get_yscale() == "log"
    assert len(panels[0].lines) == 2  # mmd and its sampling floor
    assert len(plot.plot_comparison(comparison.drop_vars("mmd_sampling_floor")).axes[0].lines) == 1


def test_comparison_of_real_runs(sphere_run, sphere_tokens):
    compare = pytest.importorskip("spde_tokens.compare").compare
    fig = plot.plot_run(compare(sphere_run, sphere_tokens))  # the schema of compare's output is what plot expects
    assert fig.axes[0].get_title() == "maximum mean discrepancy" and len(_panels(fig)[0]) == 3


def test_ensemble_bands(ensemble, circle_run, tmp_path):
    """Three realizations cannot make a 5–95% band (0.05 R < 1): each is drawn; twenty give both bands."""
    fig = plot.plot_run(ensemble, tmp_path / "ens.png")
    _check_image(tmp_path / "ens.png")
    panels, _ = _panels(fig)
    assert len(panels) == 2 and all(len(ax.collections) == 0 for ax in panels)
    assert all(len(ax.lines) >= 3 for ax in panels)  # the three realizations (and the median)
    many = xr.concat([circle_run[["energy", "dispersion"]] * (1 + 0.01 * r) for r in range(20)], dim="realization")
    fig = plot.plot_run(many.assign_attrs(circle_run.attrs), tmp_path / "ens20.png")
    panels, _ = _panels(fig)
    assert all(len(ax.collections) == 2 for ax in panels)  # 25–75% and 5–95% bands


def _without_noise(attrs: dict) -> dict:
    return {k: v for k, v in attrs.items() if not k.startswith("noise")}


MLP = st.MLPNoise(0.25, "tanh", 64)


@pytest.mark.parametrize(("noise_attrs", "words"), [
    # the noise_<kind>_<parameter> attributes of NoiseModel.attrs(), as a run writes them
    ((MLP + NOISE).attrs(), "bias noise γ = 0.3 + MLP noise σ = 0.25, tanh, width 64"),
    (st.MLPNoise(0.5, "relu").attrs(), "MLP noise σ = 0.5, relu, infinite width"),
    ((st.QuadraticFormNoise(0.2) + st.IdiosyncraticNoise(0.01)).attrs(),
     "idiosyncratic noise ν = 0.01 + quadratic-form noise α = 0.2"),
    # fallbacks: only the models' repr (a comparison's attributes), no noise, nothing at all, an unknown text
    ({"noise": repr(MLP)}, "MLP noise σ = 0.25, tanh, width 64"),
    ({"noise": "none"}, "no noise"),
    ({}, "noise unknown"),
    ({"noise": "a custom field"}, "noise a custom field"),
])
def test_titles_describe_the_noise_in_words(ensemble, noise_attrs, words):
    """The issue: titles printed the noise object's repr, e.g. "noise MLPNoise(sigma=0.25, activation='tanh', ...)"."""
    ds = ensemble.copy()
    ds.attrs = {**_without_noise(ensemble.attrs), **noise_attrs}
    title = plot.plot_run(ds)._suptitle.get_text().replace("\n", " ")
    assert words in title and "Noise(" not in title, title


def test_the_title_of_a_run_names_its_noise(sphere_run, tmp_path):
    path = tmp_path / "run.nc"
    st.write_run(sphere_run, path)
    title = plot.plot_density(st.open_run(path), times=1)._suptitle.get_text()  # attributes read back from NetCDF
    assert "bias noise γ = 0.3" in title and "BiasNoise" not in title, title


@pytest.mark.parametrize("name", ["sphere_run", "circle_run"])
def test_animation(name, request, tmp_path):
    ds = request.getfixturevalue(name)
    out = plot.animate_density(ds, tmp_path / "movie.gif", fps=5)
    assert out == str(tmp_path / "movie.gif")
    assert _check_image(tmp_path / "movie.gif") == ds.sizes["time"]


# ---- dispatch and refusals ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "target"), [("sphere_run", "plot_density"), ("circle_run", "plot_density"),
                                              ("sphere_tokens", "plot_particles"), ("tokens_5d", "plot_particles"),
                                              ("comparison", "plot_comparison"), ("ensemble", "plot_ensemble")])
@pytest.mark.parametrize("engine_attr", [True, False])
def test_plot_run_dispatch(name, target, engine_attr, request, monkeypatch):
    ds = request.getfixturevalue(name)
    if not engine_attr:
        ds = ds.copy()
        ds.attrs.pop("engine", None)
    calls = []
    for fn in ("plot_density", "plot_particles", "plot_comparison", "plot_ensemble"):
        monkeypatch.setattr(plot, fn, lambda *args, _fn=fn, **kwargs: calls.append(_fn))
    plot.plot_run(ds, None)
    assert calls == [target]


def test_missing_variables_are_named(sphere_run, sphere_tokens, comparison):
    with pytest.raises(ValueError, match="power_spectrum"):
        plot.plot_density(sphere_run.drop_vars("power_spectrum"))
    with pytest.raises(ValueError, match="spectral_tail, energy|energy"):
        plot.plot_density(sphere_run.drop_vars("energy"))
    with pytest.raises(ValueError, match="positions"):
        plot.plot_particles(sphere_tokens.drop_vars("positions"))
    with pytest.raises(ValueError, match="dispersion_particles"):
        plot.plot_comparison(comparison.drop_vars("dispersion_particles"))
    with pytest.raises(ValueError, match="density"):
        plot.animate_density(sphere_tokens, "x.gif")
    with pytest.raises(ValueError, match="none of"):
        plot.plot_run(xr.Dataset({"foo": ("time", [1.0])}))
    with pytest.raises(ValueError, match="energy, dispersion"):
        plot.plot_run(xr.Dataset({"foo": (("realization", "time"), [[1.0]])}))


def test_bad_arguments(sphere_run, tmp_path):
    with pytest.raises(ValueError, match="times"):
        plot.plot_density(sphere_run, times=0)
    with pytest.raises(ValueError, match="gif"):
        plot.animate_density(sphere_run, tmp_path / "movie.png")
    with pytest.raises(ValueError, match="fps"):
        plot.animate_density(sphere_run, tmp_path / "movie.gif", fps=0)
    with pytest.raises(ValueError, match="no records"):
        plot.plot_density(sphere_run.isel(time=slice(0, 0)))
    with pytest.raises(ValueError, match="Dataset"):
        plot.plot_run(sphere_run["density"])


# ---- runs of the Lagrangian engine --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def collapsed_run():
    """Two vMF bumps under attention (beta = 4, lmax 12) carried by the nodes to t = 4, where they are two clusters."""
    grid = st.SphereGrid(12)
    rho0 = st.initial.mixture(grid, [0.7, 0.3], [[0, 0, 1], [1, 0, -0.2]], [6.0, 6.0])
    return _quiet(st.solve_density, st.AttentionModel(3, 4.0), None, rho0, t_end=4.0, dt=0.05, save_every=0.5)


def test_a_lagrangian_run_shows_its_clusters_and_the_handover(collapsed_run, tmp_path):
    from spde_tokens.diagnostics import clusters

    ds = collapsed_run
    assert ds.engine.values[-1] == "lagrangian" and float(ds.smoothing_time[-1]) > 0  # beyond the grid
    fig = plot.plot_density(ds, tmp_path / "lag.png", times=2)
    _check_image(tmp_path / "lag.png")
    last = _mollweide(fig)[-1]
    labels = sorted(float(t.get_text().rstrip("%")) for t in last.texts)
    expected = sorted(100 * m for _, m in clusters(ds.nodes.values[-1], ds.weights.values, min_mass=0.05))
    assert len(labels) == 2 and np.allclose(labels, np.round(expected))  # the two clusters and their masses
    assert sum(labels) >= 95  # nearly all the mass is in them (2% still in transit at t = 4)
    assert "Lagrangian" in last.get_title()
    handover = [line for ax in fig.axes for line in ax.lines if "hand-over" in str(line.get_label())]
    assert handover and handover[0].get_xdata()[0] == ds.attrs["handover_time"]


def test_a_lagrangian_run_animates(collapsed_run, tmp_path):
    plot.animate_density(collapsed_run, tmp_path / "lag.gif", fps=5)
    assert _check_image(tmp_path / "lag.gif") == collapsed_run.sizes["time"]
