"""Provenance (docs/guide.md, 'Output files'): every file says how it was made (configuration, initial condition,
particle draw seed, history), and ``compare`` accepts only two runs of one noise path, with a verdict."""

import re
import tomllib

import numpy as np
import pytest

import spde_tokens as st
from spde_tokens.cli import main
from spde_tokens.compare import VERDICT_BAND, compare, verdict
from spde_tokens.config import build_grid, build_initial, load_config

# small grids: the runs are about files and attributes, not converged solutions
pytestmark = pytest.mark.filterwarnings("ignore::spde_tokens.grids.ResolutionWarning")

CONFIG = """\
[grid]
lmax = 10

[model]
dim = 3
beta = 1.0

[initial]
kind = "von_mises_fisher"
mean = [0.0, 0.6, 0.8]
kappa = 2.0

[noise]
bias = { gamma = 0.3 }

[run]
t_end = 0.1
dt = 0.01
save_every = 0.05
seed = 5

[particles]
n = 60
seed = 7
"""


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """A density run, a particle run and their comparison, made with the command line from one file."""
    folder = tmp_path_factory.mktemp("cli")
    config = folder / "small.toml"
    config.write_text(CONFIG)
    files = {name: folder / f"{name}.nc" for name in ("run", "particles", "compare")}
    assert main(["run", str(config), "-o", str(files["run"]), "--no-progress"]) == 0
    assert main(["particles", str(config), "-o", str(files["particles"]), "--no-progress"]) == 0
    assert main(["compare", str(files["run"]), str(files["particles"]), "-o", str(files["compare"])]) == 0
    return config, files


def test_run_files_hold_the_configuration_as_run(cli_runs):
    config, files = cli_runs
    expected = load_config(str(config))
    for name in ("run", "particles"):
        attrs = st.open_run(files[name]).attrs
        assert tomllib.loads(attrs["configuration"]) == expected
        assert tomllib.loads(f"x = {attrs['initial_condition']}")["x"] == expected["initial"]


def test_the_stored_configuration_reproduces_the_run_bit_for_bit(cli_runs, tmp_path):
    _, files = cli_runs
    first = st.open_run(files["run"])
    again = tmp_path / "again.toml"
    again.write_text(first.attrs["configuration"])
    assert main(["run", str(again), "-o", str(tmp_path / "again.nc"), "--no-progress"]) == 0
    np.testing.assert_array_equal(st.open_run(tmp_path / "again.nc").density.values, first.density.values)


def test_the_particle_file_names_the_seed_of_its_draw(cli_runs):
    config, files = cli_runs
    parts = st.open_run(files["particles"])
    assert parts.attrs["particles_seed"] == 7
    # the first record is the draw of [particles] n tokens with that seed from the initial density
    cfg = load_config(str(config))
    x0 = st.initial.sample(build_initial(cfg, build_grid(cfg)), 60, seed=int(parts.attrs["particles_seed"]))
    # (the engine re-normalizes the tokens to the sphere: 1e-15 is a few roundings; another seed differs by O(1))
    np.testing.assert_allclose(parts.positions.values[0], x0, rtol=0, atol=1e-15)


def test_the_comparison_names_its_inputs_and_their_provenance(cli_runs):
    _, files = cli_runs
    cmp = st.open_run(files["compare"])
    assert re.search(rf"compare\(\) of the density run '{re.escape(str(files['run']))}' and the particle run "
                     rf"'{re.escape(str(files['particles']))}'", cmp.attrs["history"])
    run, parts = st.open_run(files["run"]), st.open_run(files["particles"])
    assert cmp.attrs["density_configuration"] == run.attrs["configuration"]
    assert cmp.attrs["particles_configuration"] == parts.attrs["configuration"]
    assert cmp.attrs["particles_seed"] == 7 and cmp.attrs["initial_condition"] == run.attrs["initial_condition"]
    assert cmp.attrs["verdict"].startswith(("agree", "differ")) and cmp.attrs["verdict_band"] == VERDICT_BAND


# ---- compare refuses two different noise paths -------------------------------------------------------------------
def test_compare_command_refuses_infinite_width_mlp_runs_of_different_truncations(tmp_path, capsys):
    """The infinite-width MLP field is drawn degree by degree up to the density grid's lmax: runs at lmax 12 and 8
    are two different fields (the reported case: MMD 0.85 at lmax 31 and 24, no complaint)."""
    files = []
    for lmax in (12, 8):
        config = tmp_path / f"l{lmax}.toml"
        config.write_text(CONFIG.replace("lmax = 10", f"lmax = {lmax}")
                          .replace("bias = { gamma = 0.3 }", 'mlp = { sigma = 0.3, activation = "tanh" }'))
        files.append(tmp_path / f"{'run' if lmax == 12 else 'particles'}.nc")
        assert main(["run" if lmax == 12 else "particles", str(config), "-o", str(files[-1]), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["compare", str(files[0]), str(files[1]), "-o", str(tmp_path / "c.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "path_lmax = 12" in err and "path_lmax = 8" in err
    assert not (tmp_path / "c.nc").exists()


def _pair(**change):
    """A density run and a particle run on S^1 (40 tokens), the same realization unless ``change`` says otherwise:
    keys dens_/parts_ + noise, seed, dt, model, x0_mean."""
    grid = st.CircleGrid(16)
    out = []
    for who in ("dens", "parts"):
        noise = change.get(f"{who}_noise", st.BiasNoise(0.3))
        model = change.get(f"{who}_model", st.AttentionModel(2, 1.0))
        seed, dt = change.get(f"{who}_seed", 3), change.get(f"{who}_dt", 0.01)
        rho0 = st.initial.von_mises_fisher(grid, change.get(f"{who}_mean", [1.0, 0.0]), 2.0)
        if who == "dens":
            out.append(st.solve_density(model, noise, rho0, 0.04, dt, seed=seed, save_every=0.02, progress=False))
        else:
            out.append(st.simulate_particles(model, noise, st.initial.sample(rho0, 40, seed=1), 0.04, dt, seed=seed,
                                             save_every=0.02, progress=False))
    return out


@pytest.mark.parametrize(("change", "name"), [
    ({"parts_seed": 4}, "seed"),
    ({"parts_noise": st.BiasNoise(0.4)}, "noise"),
    ({"parts_noise": st.RotationNoise(0.3)}, "noise"),
    ({"parts_dt": 0.02}, "path_dt"),
    ({"parts_model": st.AttentionModel(2, 2.0)}, "beta"),
    ({"parts_model": st.AttentionModel(2, 1.0, Q=[[1.0, 0.0], [0.0, 2.0]])}, "Q"),
])
def test_compare_refuses_runs_of_another_path_or_model(change, name):
    dens, parts = _pair(**change)
    with pytest.raises(ValueError, match=rf"^{name}: "):
        compare(dens, parts)


def test_compare_refuses_runs_of_different_initial_conditions():
    dens, parts = _pair()
    dens.attrs["initial_condition"] = '{ kind = "uniform" }'
    parts.attrs["initial_condition"] = '{ kind = "von_mises_fisher", mean = [1.0, 0.0], kappa = 2.0 }'
    with pytest.raises(ValueError, match="^initial_condition: "):
        compare(dens, parts)


def test_compare_accepts_the_same_path_at_another_run_step():
    """A density at dt = 0.02 on the path coarsened ×2 and tokens at dt = 0.01 on the path itself: one realization
    (the same base step 0.01), so compared without complaint."""
    grid = st.CircleGrid(16)
    model, noise = st.AttentionModel(2, 1.0), st.BiasNoise(0.3)
    path = st.NoisePath(noise, 2, 0.01, 4, seed=3)
    rho0 = st.initial.von_mises_fisher(grid, [1.0, 0.0], 2.0)
    dens = st.solve_density(model, noise, rho0, 0.04, 0.02, path=path.coarsen(2), save_every=0.02, progress=False)
    parts = st.simulate_particles(model, noise, st.initial.sample(rho0, 40, seed=1), 0.04, 0.01, path=path,
                                  save_every=0.02, progress=False)
    assert compare(dens, parts).sizes["time"] == 3


# ---- the verdict ------------------------------------------------------------------------------------------------
def test_verdict_against_the_band():
    t = np.array([0.0, 0.1, 0.2])
    text, worst = verdict([0.1, 0.3, 0.2], [0.1, 0.1, 0.1], t)
    # 0.3 / 0.1 is 2.9999999999999996 in floating point: inside the band of 3
    assert text.startswith("agree up to sampling") and worst == pytest.approx(3.0, rel=1e-15)
    text, worst = verdict([0.1, 0.31, 0.2], [0.1, 0.1, 0.1], t)
    assert text.startswith("differ beyond sampling") and "t = 0.1" in text and worst == pytest.approx(3.1)
    assert verdict([0.0], [0.0], [0.0])[0].startswith("agree")  # a point mass and tokens on it
    assert verdict([0.1], [0.0], [0.0])[1] == np.inf  # no sampling error, yet a distance


def test_verdict_of_samples_of_the_density_and_of_another_density():
    """Tokens drawn from ρ0 itself agree with it; tokens drawn from a vMF density about another axis do not."""
    grid = st.SphereGrid(12)
    model = st.AttentionModel(3, 1.0)
    rho0 = st.initial.von_mises_fisher(grid, [0.0, 0.0, 1.0], 2.0)
    dens = st.solve_density(model, None, rho0, 0.0, 0.01, progress=False)
    same = st.simulate_particles(model, None, st.initial.sample(rho0, 400, seed=3), 0.0, 0.01, progress=False)
    other = st.initial.von_mises_fisher(grid, [1.0, 0.0, 0.0], 2.0)
    moved = st.simulate_particles(model, None, st.initial.sample(other, 400, seed=3), 0.0, 0.01, progress=False)
    assert compare(dens, same).attrs["verdict"].startswith("agree")
    cmp = compare(dens, moved)
    assert cmp.attrs["verdict"].startswith("differ") and cmp.attrs["mmd_floor_ratio_max"] > VERDICT_BAND
