"""The shared two-token simulation of the synchronization and antipodal cases: the batches of MLP blocks and of
random value matrices against the package's own noise paths and particles. Fast (a second)."""

import numpy as np
import pytest

from spde_tokens.model import AttentionModel
from spde_tokens.noise import MLPNoise, NoisePath, ValueNoise
from spde_tokens.validation.mlp_pairs import MLPBatch
from spde_tokens.validation.two_tokens import faithfulness, pair_distance, simulate, simulate_coupled, tight_pairs
from spde_tokens.validation.value_pairs import ValueBatch

DT = 0.01
BATCHES = {
    "mlp, softmax V = I": MLPBatch(AttentionModel(3, 1.0), MLPNoise(1.0, "tanh", 8)),
    "mlp, V = 0": MLPBatch(AttentionModel(4, 0.0, V=np.zeros((4, 4))), MLPNoise(0.5, "sin", 8)),
    "value, V = 0": ValueBatch(AttentionModel(3, 1.0, V=np.zeros((3, 3))), ValueNoise(1.0)),
}


@pytest.fixture(params=list(BATCHES), ids=list(BATCHES))
def batch(request):
    return BATCHES[request.param]


def test_one_step_is_the_layer_update_of_simulate_particles(batch):
    """Rounding only: the batch and simulate_particles evaluate the same formulas on the same increments (100 steps,
    each adding about 1e-16 to numbers of size 1)."""
    x0 = tight_pairs(np.random.default_rng(0), 2, batch.model.dim, 1e-3)
    assert faithfulness(batch, x0, DT) <= 1e-12


def test_a_double_step_merges_the_increments_like_a_coarsened_path(batch):
    """combine(two steps of dt) is the increment of the path coarsened ×2 (NoisePath.coarsen): the double steps agree
    to rounding."""
    r, dim = 3, batch.model.dim
    x = tight_pairs(np.random.default_rng(1), r, dim, 1e-2)
    fine = [NoisePath(batch.noise, dim, DT, 4, seed=s) for s in range(r)]
    coarse = [p.coarsen(2) for p in fine]
    for k in range(2):
        merged = batch.combine(batch.from_path([p.increments(2 * k) for p in fine]),
                               batch.from_path([p.increments(2 * k + 1) for p in fine]))
        by_path = batch.from_path([p.increments(k) for p in coarse])
        np.testing.assert_allclose(batch.step(x, 2 * DT, merged), batch.step(x, 2 * DT, by_path), rtol=0, atol=1e-14)


def test_the_coupled_fine_chain_is_the_plain_chain(batch):
    """simulate_coupled draws two steps' increments per double step: its step-dt chain is simulate's, to the bit,
    and its step-2dt chain starts equal and departs at O(dt)."""
    x0 = tight_pairs(np.random.default_rng(2), 5, batch.model.dim, 1e-2)
    both = simulate_coupled(batch, x0, DT, 10, np.random.default_rng(3), pair_distance)
    plain = simulate(batch, x0, DT, 20, np.random.default_rng(3), pair_distance)
    np.testing.assert_array_equal(both[:, 0], plain[::2])
    assert np.array_equal(both[0, 1], both[0, 0]) and not np.array_equal(both[-1, 1], both[-1, 0])


def test_batches_refuse_what_they_do_not_implement():
    with pytest.raises(ValueError, match="model"):
        ValueBatch(AttentionModel(3, 1.0), ValueNoise(1.0))  # V = I: the value batch has no drift
    with pytest.raises(ValueError, match="noise"):
        MLPBatch(AttentionModel(3, 1.0), MLPNoise(1.0, "tanh", None))  # infinite width
