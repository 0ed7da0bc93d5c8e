"""spde_tokens: tokens of deep Transformers as interacting particles on the sphere, and their density SPDE.

Quick start::

    import spde_tokens as st
    grid = st.SphereGrid(lmax=31)
    model = st.AttentionModel(dim=3, beta=4.0)
    rho0 = st.initial.von_mises_fisher(grid, mean=[0, 0, 1], kappa=2.0)
    ds = st.solve_density(model, None, rho0, t_end=1.0, dt=0.01)
    st.write_run(ds, "run.nc")

``import spde_tokens`` loads neither dask (imported by ``run_ensemble`` when it runs), POT, matplotlib, pyfftw
(imported by the first ``CircleGrid``), shtns (the first ``SphereGrid``), scipy.special (the first Bessel weight),
tqdm nor threadpoolctl (the first run); see docs/guide.md, 'Install', and docs/numerics.md, 'Start-up and fixed costs'.
"""

from spde_tokens import diagnostics, initial, io
from spde_tokens._version import __version__
from spde_tokens.compare import compare
from spde_tokens.density import solve_density
from spde_tokens.ensemble import run_ensemble
from spde_tokens.grids import CircleGrid, ResolutionWarning, SphereGrid, ZonalGrid
from spde_tokens.io import open_run, write_run
from spde_tokens.model import AttentionModel
from spde_tokens.noise import NOISE_MODELS, NoisePath
from spde_tokens.particles import simulate_particles
from spde_tokens.records import BlowUpError

# every registered noise model under its class name (st.BiasNoise, st.MLPNoise, …): a new model is exported by
# registering it in spde_tokens.noise, nothing else
globals().update({cls.__name__: cls for cls in NOISE_MODELS.values()})

__all__ = ["AttentionModel", "BlowUpError", "CircleGrid", "NoisePath", "ResolutionWarning", "SphereGrid", "ZonalGrid",
           "__version__",
           *sorted(cls.__name__ for cls in NOISE_MODELS.values()),
           "compare", "diagnostics", "initial", "io", "open_run", "run_ensemble", "simulate_particles", "solve_density",
           "write_run"]
