"""Bad input, wherever a user types it — the Python API, a TOML configuration, the command line — is refused with
a message that names the parameter (docs/guide.md, 'Configuration files' and 'Command line').

Each case below is a distinct mistake; ``match`` is the parameter's name as the user wrote it (and, where it helps,
what is allowed). Strings standing for numbers are refused everywhere, with the same hint.
"""

import copy
import warnings

import numpy as np
import pytest
import xarray as xr

import spde_tokens as st
from spde_tokens import initial
from spde_tokens.cli import main
from spde_tokens.config import load_config, run_density
from spde_tokens.drift import GridAttention

S2 = st.SphereGrid(8)
S1 = st.CircleGrid(8)
CIRCLE_MODEL = st.AttentionModel(2, 1.0)
RHO1 = initial.uniform(S1)
QUOTES = "write numbers without quotes"


def _solve(**kw):
    args = {"model": CIRCLE_MODEL, "noise": None, "rho0": RHO1, "t_end": 0.1, "dt": 0.01, "progress": False}
    return st.solve_density(**{**args, **kw})


API = [
    # grids
    (lambda: st.SphereGrid("31"), "lmax.*" + QUOTES),
    (lambda: st.SphereGrid(2), "lmax must be an integer ≥ 4"),
    (lambda: st.SphereGrid(8, threads=0), "threads"),
    (lambda: st.CircleGrid(3.5), "n \\(largest wavenumber\\)"),
    # the issue: dealias="no" was taken as True (a non-empty string)
    (lambda: st.SphereGrid(63, dealias="no"), "dealias must be True or False, got 'no'"),
    (lambda: st.CircleGrid(64, dealias="no"), "dealias must be True or False, got 'no'"),
    # the model
    (lambda: st.AttentionModel(1), "dim"),
    (lambda: st.AttentionModel(3, "4"), "beta.*" + QUOTES),
    (lambda: st.AttentionModel(3, True), "beta must be a real number"),
    (lambda: st.AttentionModel(3, float("nan")), "beta must be finite"),
    (lambda: st.AttentionModel(3, 1.0, normalization="soft"), "normalization must be one of"),
    (lambda: st.AttentionModel(3, 1.0, Q=np.eye(2)), "Q must have shape \\(3, 3\\)"),
    (lambda: st.AttentionModel(3, 1.0, V=np.full((3, 3), np.inf)), "V must be finite"),
    # the issue: Q="abc" gave NumPy's "could not convert string to float", strings in lists were converted
    (lambda: st.AttentionModel(3, 1.0, Q="abc"), "Q must be a real 3×3 matrix .*got the string 'abc'"),
    (lambda: st.AttentionModel(2, 1.0, K=[["1", "0"], ["0", "1"]]), "K must be a real 2×2 matrix"),
    (lambda: st.AttentionModel(2, 1.0, V=[[True, False], [False, True]]), "V must be a real 2×2 matrix"),
    (lambda: st.AttentionModel(2, 1.0, Q=object()), "Q must be a real 2×2 matrix \\(an array"),
    # noise models
    (lambda: st.RotationNoise(-1.0), "sigma"),
    (lambda: st.BiasNoise("0.1"), "gamma.*" + QUOTES),
    (lambda: st.QuadraticFormNoise(float("nan")), "alpha"),
    (lambda: st.MLPNoise(0.1, "tanh", 0), "width"),
    (lambda: st.MLPNoise(0.1, "tanhh", 4), "activation must be one of"),
    (lambda: st.IdiosyncraticNoise(-1.0), "nu"),
    # initial densities and draws
    (lambda: initial.von_mises_fisher(S2, [0, 0, 1], "2"), "kappa.*" + QUOTES),
    (lambda: initial.von_mises_fisher(S2, ["0", "0", "1"], 2.0), "mean must be a non-empty list of real numbers"),
    (lambda: initial.mixture(S2, ["0.5", "0.5"], [[0, 0, 1], [1, 0, 0]], [1.0, 1.0]), "weights"),
    (lambda: initial.mixture(S2, [1.0], [[0, 1]], [1.0]), "means must be non-zero vectors of length 3"),
    (lambda: initial.mixture(S2, [1.0], [[0, 0, 1]], [-1.0]), "kappas must be ≥ 0"),
    (lambda: initial.poisson_kernel(S2, "0.1"), "center.*" + QUOTES),
    (lambda: initial.sample(RHO1, "10"), "n must be an integer.*" + QUOTES),
    (lambda: initial.sample(RHO1, 5, seed=1.5), "seed"),
    (lambda: initial.sample(RHO1, 5, batch=0), "batch"),
    # the solver
    (lambda: _solve(dt="0.01"), "dt.*" + QUOTES),
    (lambda: _solve(dt=0.0), "dt must be finite and > 0"),
    (lambda: _solve(t_end=-1.0), "t_end must be finite"),
    (lambda: _solve(t_end=0.105), "t_end must be a whole number of steps"),
    (lambda: _solve(save_every=0.015), "save_every must be a whole number of steps"),
    (lambda: _solve(scheme="rk5"), "scheme must be one of"),
    (lambda: _solve(cfl=2.0), "cfl"),
    (lambda: _solve(hyperviscosity=-1.0), "hyperviscosity"),
    (lambda: _solve(attention="fast"), "attention must be"),
    (lambda: _solve(noise=st.BiasNoise(0.1), seed=-1), "seed"),
    (lambda: _solve(rho0=RHO1.values), "rho0 must be an xarray.DataArray"),
    # the issue's case: a density of the wrong shape gave shtns' "spatial array has wrong shape"
    (lambda: _solve(rho0=RHO1.isel(theta=slice(0, 5))), "rho0 has shape \\(5,\\)"),
    (lambda: _solve(model=st.AttentionModel(3)), "model.dim = 3"),
    (lambda: _solve(checkpoint_every=0), "checkpoint_every"),
    # the issue: progress="yes" was taken as True, memory_budget=-1 passed on the zonal path
    (lambda: _solve(progress="yes"), "progress must be None .*True or False, got 'yes'"),
    (lambda: _solve(memory_budget=-1), "memory_budget must be a positive number of bytes"),
    (lambda: GridAttention(CIRCLE_MODEL, S1, "zonal", memory_budget="1e9"), "memory_budget.*" + QUOTES),
    (lambda: st.simulate_particles(CIRCLE_MODEL, None, [[1.0, 0.0]], 0.1, 0.01, lmax=-1), "lmax must be an integer"),
    (lambda: st.simulate_particles(CIRCLE_MODEL, None, np.ones((4, 2)), 0.1, 0.01), "x0 must be unit vectors"),
    (lambda: st.NoisePath(st.BiasNoise(0.1), 2, -0.01, 10, seed=1), "dt"),
]


@pytest.mark.parametrize(("call", "match"), API)
def test_api_names_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


#: the built-in configuration on a small S^1 grid, so that a configuration that passes its checks is cheap to build
SMALL = {"grid": {"n": 8}, "model": {"dim": 2, "beta": 1.0}, "initial": {"kind": "uniform"},
         "run": {"t_end": 0.02, "dt": 0.01}}


def _with(section: str, **keys) -> dict:
    config = copy.deepcopy(SMALL)
    config.setdefault(section, {}).update(keys)
    return config


TOML = [
    # the inconsistency: strings for numbers were accepted for beta and dt, refused for lmax
    (_with("model", beta="4"), "\\[model\\] beta must be a number, got the string '4'"),
    (_with("run", dt="0.01"), "\\[run\\] dt must be a number"),
    ({**SMALL, "grid": {"lmax": "31"}, "model": {"dim": 3}}, "\\[grid\\] lmax must be an integer"),
    (_with("run", t_end="1"), "\\[run\\] t_end"),
    (_with("run", save_every="0.1"), "\\[run\\] save_every"),
    (_with("run", seed="0"), "\\[run\\] seed must be an integer"),
    (_with("run", seed=1.5), "\\[run\\] seed must be an integer"),
    (_with("grid", dealias="no"), "\\[grid\\] dealias must be true or false"),
    (_with("grid", threads=True), "\\[grid\\] threads must be an integer"),
    (_with("model", Q=[["1", "0"], ["0", "1"]]), "\\[model\\] Q must be a list of lists of numbers"),
    (_with("model", normalization=1), "\\[model\\] normalization must be a string"),
    (_with("run", cfl=True), "\\[run\\] cfl must be a number"),
    # the issue: memory_budget = -1 was accepted
    (_with("run", memory_budget=-1), "\\[run\\] memory_budget must be a positive number"),
    (_with("initial", kind="uniform", mean=[1.0, 0.0]), "kind = 'uniform' takes no key 'mean'"),
    (_with("initial", kind="mixture", weights=[1.0]), "kind = 'mixture' needs the key 'kappas'"),
    (_with("initial", kind="von_mises_fisher", mean="north", kappa=1.0), "\\[initial\\] mean must be a list"),
    (_with("particles", n="100"), "\\[particles\\] n must be an integer"),
    (_with("noise", bias={"gamma": "0.1"}), "gamma.*" + QUOTES),
    (_with("noise", mlp={"sigma": 0.1, "width": 0}), "width"),
    (_with("noise", mlp={"sigma": 0.1, "activation": "tanhh"}), "activation"),
    (_with("grid", n=8, lmax=8), "\\[grid\\] needs 'n' and not 'lmax' for dim = 2"),
    ({"model": {"dim": 2}}, "the built-in \\[grid\\] is for S\\^2"),
    ({**SMALL, "model": 3}, "\\[model\\] must be a table"),
    (_with("model", beta=-1.0), "beta must be finite and ≥ 0"),
    (_with("run", scheme="euler"), "scheme must be one of"),
    (_with("run", attention="fast"), "attention must be"),
    (_with("initial", kind="von_mises_fisher", mean=[0.0, 0.0], kappa=1.0), "mean must be a finite non-zero"),
]


@pytest.mark.parametrize(("config", "match"), TOML)
def test_toml_names_the_key(config, match):
    """Types are refused when the configuration is read; ranges when the run is built (before any step)."""
    with pytest.raises(ValueError, match=match):
        run_density(load_config(config), progress=False)


def test_files_that_are_not_toml_are_named(tmp_path):
    ds = xr.Dataset({"x": ("t", np.arange(3.0))})
    ds.to_netcdf(tmp_path / "run.nc", engine="netcdf4")
    with pytest.raises(ValueError, match="run.nc' is a NetCDF file, not a TOML configuration"):
        load_config(tmp_path / "run.nc")  # the issue: a UTF-8 decode error
    (tmp_path / "blob.toml").write_bytes(bytes(range(128, 256)))
    with pytest.raises(ValueError, match="blob.toml' is not a text file"):
        load_config(tmp_path / "blob.toml")
    with pytest.raises(ValueError, match="is a folder"):
        load_config(tmp_path)


def test_renormalizations_are_said():
    """The issue: mixture weights summing to 1.4 and a rho0 of mass 2 were renormalized silently."""
    with pytest.warns(UserWarning, match="mixture weights sum to 1.4, not 1: the components get the masses "
                                         "\\[0.428571, 0.571429\\]"):
        rho = initial.mixture(S2, [0.6, 0.8], [[0, 0, 1], [1, 0, 0]], [1.0, 1.0])
    assert S2.integrate(rho.values) == pytest.approx(1.0, abs=1e-13)  # quadrature of the normalized mixture
    with pytest.warns(UserWarning, match="rho0 has mass ∫ρ dA = 2, not 1"):
        initial.sample(RHO1.copy(data=2 * RHO1.values), 5, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # weights that sum to 1 as typed, and a density of mass 1: no warning
        initial.mixture(S2, [0.4, 0.35, 0.25], [[0, 0, 1], [1, 0, 0], [0, 1, 0]], [1.0, 1.0, 1.0])
        initial.sample(RHO1, 5, seed=0)


CLI = [
    (["run", "--set", "model.beta"], "--set needs table.key=value"),
    (["run", "--set", "modle.beta=2"], "--set modle.beta=2: unknown key 'modle'.*did you mean 'model'"),
    (["run", "--set", "noise.bias.gama=0.3"], "unknown key 'gama' in \\[noise\\] bias; did you mean 'gamma'"),
    (["run", "--set", "run.dt=0.0.1"], "--set run.dt=0.0.1: '0.0.1' is not a TOML value"),
    (["run", "--set", 'model.beta="4"'], "\\[model\\] beta must be a number, got the string '4'"),
    (["run", "--set", "model.dim.x=2"], "too many parts"),
    (["ensemble", "c.toml", "--realizations", "0"], "argument --realizations: must be an integer ≥ 1"),
    (["ensemble", "c.toml", "--realizations", "2", "--workers", "many"], "argument --workers"),
    (["run", "-o", "no_such_folder/run.nc"], "-o no_such_folder/run.nc: the folder .* does not exist"),
    (["run", "--checkpoint", "no_such_folder/ck.nc"], "--checkpoint no_such_folder/ck.nc: the folder"),
    (["run", "-o", "same.nc", "--checkpoint", "same.nc"], "--checkpoint same.nc is also the output"),
    (["validate", "--case", "no_such_case"], "--case must be one of ott_antonsen"),
    (["animate", "in.nc", "-o", "movie.mp4"], "-o movie.mp4: an animation is written as a GIF"),
    (["run", "missing.toml"], "config file 'missing.toml' does not exist"),
    (["plot", "missing.nc"], "path 'missing.nc' does not exist"),
    (["run", "--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize(("argv", "match"), CLI)
def test_command_line_names_the_option(argv, match, tmp_path, monkeypatch, capsys):
    import re

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.nc").write_bytes(b"")  # an input for animate (its output is refused before it is read)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(match, err), err

