"""spde_tokens: tokens of deep Transformers as interacting particles on the sphere, and their density SPDE.

Quick start::

    import spde_tokens as st
    grid = st.SphereGrid(lmax=31)
    model = st.AttentionModel(dim=3, beta=4.0)
    rho0 = st.initial.von_mises_fisher(grid, mean=[0, 0, 1], kappa=2.0)
    ds = st.solve_density(model, None, rho0, t_end=1.0, dt=0.01)
"""

__version__ = "0.1.0"

from spde_tokens import diagnostics, initial
from spde_tokens.compare import compare
from spde_tokens.density import solve_density
from spde_tokens.grids import CircleGrid, ResolutionWarning, SphereGrid
from spde_tokens.io import open_run
from spde_tokens.model import AttentionModel
from spde_tokens.noise import (
    BiasNoise,
    IdiosyncraticNoise,
    MLPNoise,
    NoisePath,
    QuadraticFormNoise,
    RotationNoise,
    ValueNoise,
)
from spde_tokens.particles import simulate_particles
from spde_tokens.records import BlowUpError

__all__ = ["AttentionModel", "BiasNoise", "BlowUpError", "CircleGrid", "IdiosyncraticNoise", "MLPNoise", "NoisePath",
           "QuadraticFormNoise", "ResolutionWarning", "RotationNoise", "SphereGrid", "ValueNoise", "__version__",
           "compare", "diagnostics", "initial", "open_run", "simulate_particles", "solve_density"]
