"""TOML configuration: the built-in default, omitted tables, --set overrides, building a run, and errors that name
the key."""

import tomllib

import numpy as np
import pytest
from scipy.special import hyp2f1

import spde_tokens as st
from spde_tokens.config import DEFAULT_CONFIG, build_grid, build_initial, build_noise, load_config, run_density


def test_default_configuration_builds_a_noisy_sphere_run():
    config = load_config(None)
    assert config["model"]["dim"] == 3 and "mlp" in config["noise"]
    grid = build_grid(config)
    assert grid.lmax == config["grid"]["lmax"]
    noise = build_noise(config)
    assert noise.models["mlp"].width == 64
    assert build_initial(config, grid).name == "density"


def test_toml_file_and_dict_give_the_same_run(tmp_path):
    text = DEFAULT_CONFIG.replace("lmax = 31", "lmax = 12").replace("t_end = 10.0", "t_end = 0.04")
    path = tmp_path / "run.toml"
    path.write_text(text)
    from_file = load_config(path)
    ds1 = run_density(from_file, progress=False)
    ds2 = run_density(load_config(dict(from_file)), progress=False)
    np.testing.assert_array_equal(ds1.density.values, ds2.density.values)
    assert ds1.attrs["seed"] == 0 and ds1.attrs["noise_mlp_width"] == 64


def _config(**sections):
    base = {"grid": {"n": 16}, "model": {"dim": 2, "beta": 1.0}, "initial": {"kind": "uniform"},
            "run": {"t_end": 0.1, "dt": 0.01}}
    for section, body in sections.items():
        base[section] = body
    return base


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (_config(grdi={"n": 16}), "'grdi'.*did you mean 'grid'"),
        (_config(model={"dim": 2, "bta": 1.0}), "'bta'.*did you mean 'beta'"),
        (_config(run={"t_end": 0.1, "dt": 0.01, "sede": 1}), "'sede'.*did you mean 'seed'"),
        (_config(noise={"bais": {"gamma": 0.1}}), "'bais'.*did you mean 'bias'"),
        (_config(noise={"mlp": {"sigma": 0.1, "widht": 4}}), "'widht'.*did you mean 'width'"),
        (_config(noise={"bias": 0.1}), "bias must be a table"),
        (_config(initial={"kind": "gaussian"}), "kind must be one of"),
        (_config(initial={"kind": "von_mises_fisher", "mean": [1, 0]}), "needs the key 'kappa'"),
        (_config(grid={"lmax": 16}), "needs 'n'"),
        (_config(model={"dim": 4}), "dim must be 2 or 3"),
        (_config(run={"dt": 0.01}), "needs the key 't_end'"),
        ({"grid": {"n": 16}}, "needs 'lmax' and not 'n' for dim = 3"),  # [model] from the built-in run: dim 3
    ],
)
def test_bad_configuration_names_the_key(config, message):
    with pytest.raises(ValueError, match=message):
        load_config(config)


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\nlmax = 3")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)


def test_values_are_checked_by_the_objects_they_build():
    with pytest.raises(ValueError, match="beta"):
        run_density(load_config(_config(model={"dim": 2, "beta": -1.0})), progress=False)
    with pytest.raises(ValueError, match="gamma"):
        run_density(load_config(_config(noise={"bias": {"gamma": -0.1}}, run={"t_end": 0.1, "dt": 0.01, "seed": 0})),
                    progress=False)


def test_omitted_tables_are_the_built_in_ones_except_noise_and_particles(tmp_path):
    built_in = tomllib.loads(DEFAULT_CONFIG)
    path = tmp_path / "beta.toml"
    path.write_text("[model]\ndim = 3\nbeta = 8.0\nnormalization = \"unnormalized\"\n")
    for config in (load_config(path), load_config({"model": {"dim": 3, "beta": 8.0,
                                                             "normalization": "unnormalized"}})):
        assert config["model"] == {"dim": 3, "beta": 8.0, "normalization": "unnormalized"}  # a table is taken whole
        assert all(config[k] == built_in[k] for k in ("grid", "initial", "run"))
        assert "noise" not in config and "particles" not in config and build_noise(config) is None
    assert load_config(None) == built_in  # no configuration at all: the built-in run, noise and tokens included


def test_settings_are_toml_values_applied_last():
    config = load_config(None, ["model.beta=2", "noise.bias.gamma=0.3", "model.normalization=unnormalized",
                                "initial={ kind = \"von_mises_fisher\", mean = [0, 0, 1], kappa = 2.0 }",
                                "run.save_every = 0.1"])
    assert config["model"]["beta"] == 2 and config["model"]["normalization"] == "unnormalized"  # a bare word
    assert config["noise"]["bias"] == {"gamma": 0.3} and config["noise"]["mlp"]["width"] == 64  # added to the sum
    assert config["initial"] == {"kind": "von_mises_fisher", "mean": [0, 0, 1], "kappa": 2.0}
    assert config["run"]["save_every"] == 0.1
    assert build_noise(load_config(None, ["noise={}"])) is None  # an empty [noise]: deterministic
    with pytest.raises(ValueError, match="kind = 'uniform' takes no key 'kappas'"):  # the first, alphabetically
        load_config(None, ["initial.kind=uniform"])  # a setting is checked like a file


# ---- the zonal grid (docs/guide.md, 'Configuration files') ------------------------------------------------------
ZONAL = {"grid": {"kind": "zonal", "dim": 16, "lmax": 24}, "model": {"dim": 16, "beta": 2.0},
         "initial": {"kind": "mobius", "center": [0.2]}, "run": {"t_end": 0.2, "dt": 0.02, "mean_density": False}}


def test_zonal_configuration_builds_a_zonal_run():
    """[grid] kind = "zonal": ZonalGrid(dim, lmax); [r] stands for r e_d; the run is the density's on that grid."""
    config = load_config(ZONAL)
    grid = build_grid(config)
    assert isinstance(grid, st.ZonalGrid) and (grid.dim, grid.lmax) == (16, 24)
    ds = run_density(config, progress=False)
    assert ds.attrs["grid"] == "zonal" and ds.density.dims == ("time", "s") and "law_s" in ds
    # the Möbius density of w = 0.2 e_d: mean h_16(0.2) along e_d (docs/mathematics.md), 0 off the axis
    z = 0.4 / 1.04
    h = 1.04 / 0.4 - 0.96**2 / (0.4 * 1.04) * hyp2f1(1.0, 0.5, 8.0, z * z)
    np.testing.assert_allclose(ds.mean_vector.values[0], [0.0] * 15 + [h], atol=1e-13)


@pytest.mark.parametrize(("change", "message"), [
    ({"grid": {"kind": "zonal", "dim": 8, "lmax": 24}}, r"\[grid\] dim = 8 must equal \[model\] dim = 16"),
    ({"grid": {"kind": "zonal", "lmax": 24}}, "needs the key 'dim'"),
    ({"grid": {"kind": "zonal", "dim": 16, "n": 24}}, "needs 'lmax' and not 'n'"),
    ({"grid": {"kind": "cube", "lmax": 24}}, "kind must be one of"),
    ({"grid": {"kind": "sphere", "dim": 16, "lmax": 24}}, "dim is a key of kind = 'zonal' only"),
    ({"grid": {"lmax": 24}}, "dim must be 2 or 3 for the circle grid.*kind = 'zonal'"),
    ({"grid": {"kind": "zonal", "dim": 16, "lmax": 24}, "run": {"t_end": 0.1, "dt": 0.02, "mean_density": 1}},
     "mean_density must be true or false"),
])
def test_bad_zonal_configuration_names_the_key(change, message):
    with pytest.raises(ValueError, match=message):
        load_config({**ZONAL, **change})
