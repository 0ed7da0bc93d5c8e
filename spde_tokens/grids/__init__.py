"""Spectral grids on the circle S^1 and the sphere S^2.

Coefficient convention (the one place it is defined)
----------------------------------------------------
Both grids expand real fields in **orthonormal** complex harmonics with respect to surface measure dA
(arc length dθ on S^1, area on S^2) and store only the non-negative orders:

* S^1: ``e_k(θ) = exp(i k θ) / sqrt(2π)``, ``f(θ) = Σ_{k=0}^{n} w_k Re(f_k e_k(θ))``,
  coefficients ``f_k = ∫ f conj(e_k) dθ`` stored as a complex vector indexed by ``k = 0 … n``.
* S^2: ``Y_lm(θ, φ) = P̄_l^m(cos θ) exp(i m φ)`` with ``∫ |Y_lm|² dA = 1`` and the Condon–Shortley phase
  (the convention of ``scipy.special.sph_harm_y`` and of shtns' ``sht_orthonormal``),
  ``f = Σ_{l, m≥0} w_m Re(f_lm Y_lm)``, coefficients ``f_lm = ∫ f conj(Y_lm) dA`` in shtns order
  (``grid.degrees`` and ``grid.orders`` give l and m of every entry).

Here ``w = 1`` for order 0 and ``w = 2`` for positive orders (``grid.order_weight``), so that for real fields
``∫ f g dA = Σ w Re(conj(f_lm) g_lm)`` (:meth:`Grid.inner`) and the power spectrum is
``P_l = Σ_m w_m |f_lm|²``.  The uniform probability density has ``f_00 = 1/sqrt(area)``.

Tangent vector fields on the grid are arrays of shape ``(k, *grid.shape)`` holding their components on the
orthonormal frame ``grid.tangent_basis()``: ``e_θ`` on S^1 (k = 1); ``e_θ`` (pointing south) and ``e_φ`` (east)
on S^2 (k = 2).
"""

import functools

from spde_tokens.grids.base import Grid, ResolutionWarning
from spde_tokens.grids.circle import CircleGrid
from spde_tokens.grids.funk_hecke import resolving_degree, zonal_weights
from spde_tokens.grids.sphere import SphereGrid

__all__ = ["CircleGrid", "Grid", "ResolutionWarning", "SphereGrid", "grid_from_attrs", "resolving_degree",
           "zonal_weights"]


@functools.lru_cache(maxsize=16)
def _cached_grid(kind: str, size: int, extra: int, threads: int) -> Grid:
    if kind == "circle":
        return CircleGrid(size, dealias=bool(extra), threads=threads)
    return SphereGrid(size, dealias=bool(extra), threads=threads)


def grid_from_attrs(attrs: dict, threads: int | None = None) -> Grid:
    """The grid identified by the attributes of a field or file (``Grid.attrs()``); grids are cached and shared.

    ``threads`` (transform threads) defaults to the recorded ``grid_threads``, else 1, so a density keeps the thread
    count of the grid it was built on.
    """
    kind = attrs.get("grid")
    if threads is None:
        threads = int(attrs.get("grid_threads", 1))
    try:
        if kind == "circle":
            return _cached_grid("circle", int(attrs["grid_n"]), int(attrs["grid_dealias"]), threads)
        if kind == "sphere":
            return _cached_grid("sphere", int(attrs["grid_lmax"]), int(attrs["grid_dealias"]), threads)
    except KeyError as exc:
        raise ValueError(f"the attributes do not identify a grid: missing {exc}") from None
    raise ValueError(f"the attributes do not identify a grid: 'grid' is {kind!r}, expected 'circle' or 'sphere'")
