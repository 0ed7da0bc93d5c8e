"""The run driver (spde_tokens.runner) through both engines: checkpoints that continue, stream and refuse."""

import logging
import os
import warnings

import numpy as np
import pytest

import spde_tokens as st

MODEL = st.AttentionModel(3, 1.0)
NOISE = st.BiasNoise(0.3)


def _tokens() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _particles(t_end, checkpoint=None, **kw):
    return st.simulate_particles(MODEL, NOISE, _tokens(), t_end=t_end, dt=0.01, seed=4, save_every=0.05,
                                 progress=False, checkpoint=checkpoint, **kw)


def test_a_later_t_end_continues_a_finished_checkpoint(tmp_path, caplog):
    full = _particles(1.0)
    ck = tmp_path / "ck.nc"
    first = _particles(0.5, ck)
    np.testing.assert_array_equal(first.positions.values, full.positions.values[:11])
    with caplog.at_level(logging.INFO, logger="spde_tokens"):
        longer = _particles(1.0, ck)
    assert "resuming" in caplog.text and "step 50 of 100" in caplog.text
    # the same path continued: the state at t = 1 is bit-identical to the uninterrupted run's
    np.testing.assert_array_equal(longer.positions.values[-1], full.positions.values[-1])
    np.testing.assert_array_equal(longer.time.values, full.time.values)


def test_a_checkpoint_beyond_the_run_is_refused(tmp_path):
    ck = tmp_path / "ck.nc"
    _particles(0.5, ck)
    with pytest.raises(ValueError, match="t_end"):
        _particles(0.3, ck)


def test_each_record_is_written_once(tmp_path):
    """Checkpoint parts hold disjoint records (O(records) writing): their times add up to the run's."""
    ck = tmp_path / "ck.nc"
    ds = _particles(0.5, ck, checkpoint_every=3)
    parts = sorted(os.listdir(str(ck) + ".records"))
    times = np.concatenate([st.open_run(os.path.join(str(ck) + ".records", p)).time.values for p in parts])
    np.testing.assert_array_equal(times, ds.time.values)
    assert len(parts) == 4  # 11 records in parts of 3, 3, 3 and the final 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_checkpoint_every_must_be_a_positive_integer(tmp_path, bad):
    with pytest.raises(ValueError, match="checkpoint_every"):
        _particles(0.1, tmp_path / "ck.nc", checkpoint_every=bad)


def test_records_sit_on_the_time_grid():
    """Record times are k·dt rounded to 12 digits, so selecting a record by its time finds it."""
    ds = _particles(0.5)
    assert float(ds.sel(time=0.35).time) == 0.35


class _CountingEngine:
    """A stand-in engine whose state counts steps and which warns at every step (t in the message)."""

    name, label = "counting", "counting"

    def step(self, state, step):
        warnings.warn(f"something at t = {step * 0.1:g}", UserWarning, stacklevel=2)
        return {"n": state["n"] + 1}

    def check(self, state):
        return None

    def record(self, state):
        return {"n": float(state["n"][0])}

    def after_record(self, t, values):
        pass

    def last_good(self, state):
        return state

    def final_attrs(self, state):
        return {}


def test_warnings_are_shown_once_per_kind_with_a_count():
    from spde_tokens.records import Recorder, TimeGrid
    from spde_tokens.runner import run

    times = TimeGrid.build(1.0, 0.1, 0.5)
    recorder = Recorder({"n": ((), {"units": "1", "long_name": "steps"})}, {}, {}, MODEL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = run(_CountingEngine(), {"n": np.zeros(1)}, times, recorder, fingerprint={}, progress=False)
    assert ds.n.values.tolist() == [0.0, 5.0, 10.0]
    assert len(caught) == 1  # ten warnings of one kind (they differ only by their numbers)
    assert "something at t = 0.1" in str(caught[0].message) and "[10 times during the run]" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller, not at the package's internals


def test_a_blow_up_says_its_reason_apart(monkeypatch):
    """BlowUpError.reason is the engine's one-line problem, without the step and the records' whereabouts."""
    from spde_tokens import particles

    original = particles.TokenDynamics.layer_step
    calls = {"n": 0}

    def diverging(self, *args):
        calls["n"] += 1
        x = original(self, *args)
        return np.full_like(x, np.nan) if calls["n"] == 7 else x

    monkeypatch.setattr(particles.TokenDynamics, "layer_step", diverging)
    with pytest.raises(st.BlowUpError) as info:
        _particles(0.5)
    assert info.value.reason == "tokens became non-finite"
    assert str(info.value).startswith("tokens became non-finite at step 7 (t = 0.07); the records up to t = 0.05")
    np.testing.assert_array_equal(info.value.dataset.time.values, [0.0, 0.05])


@pytest.mark.parametrize("threads", [1, 2])
def test_blas_threads_are_limited_during_each_run(monkeypatch, threads):
    """Inside the stepping loop every BLAS library runs ``threads`` threads (the controller is scanned once per
    process and reused by the second run), and the limit is lifted after each run."""
    from threadpoolctl import threadpool_info

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    seen = []
    step = st.density.SpectralEngine.step

    def observed(self, state, n):
        seen.append(blas_threads())
        return step(self, state, n)

    monkeypatch.setattr(st.density.SpectralEngine, "step", observed)
    before = blas_threads()
    rho0 = st.initial.von_mises_fisher(st.SphereGrid(8), [0, 0, 1], 1.0)
    for _ in range(2):
        st.solve_density(MODEL, None, rho0, 0.02, 0.01, progress=False, threads=threads, engine="spectral")
        assert blas_threads() == before
    assert before and len(seen) == 4 and all(s == {threads} for s in seen)
