"""Spectral grids on the circle S^1 and the sphere S^2, and zonal densities on S^{d−1} in any dimension.

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

The zonal grid (``ZonalGrid(dim, lmax)``, fields f(s) of s = x·e_d on S^{d−1}, any d ≥ 2) takes the other
normalization: integrals are against the **normalized** surface measure σ (σ(S^{d−1}) = 1, ``area`` = 1), so the
uniform density is 1, and its real coefficients ``f_l = ∫ f Y_l dσ`` are those of the orthonormal Gegenbauer
polynomials Y_l(s) (Y_0 = 1, ``order_weight`` 1). For d = 3 a density on a ZonalGrid is 4π times the same density
on a SphereGrid, and f_l = sqrt(4π) f_l0 (docs/mathematics.md, 'The zonal grid (any dimension)').

Tangent vector fields on the grid are arrays of shape ``(k, *grid.shape)`` holding their components on the
orthonormal frame ``grid.tangent_basis()``: ``e_θ`` on S^1 (k = 1); ``e_θ`` (pointing south) and ``e_φ`` (east)
on S^2 (k = 2); u = (e_d − s x)/sqrt(1 − s²) (pointing to e_d) on the zonal grid (k = 1).
"""

import functools

from spde_tokens.grids.base import Grid, ResolutionWarning
from spde_tokens.grids.circle import CircleGrid
from spde_tokens.grids.funk_hecke import normalized_zonal_weights, resolving_degree, zonal_weights
from spde_tokens.grids.sphere import SphereGrid
from spde_tokens.grids.zonal import ZonalGrid

__all__ = ["CircleGrid", "Grid", "ResolutionWarning", "SphereGrid", "ZonalGrid", "grid_from_attrs",
           "normalized_zonal_weights", "resolving_degree", "zonal_weights"]


@functools.lru_cache(maxsize=16)
def _cached_grid(kind: str, size: int, extra: int, threads: int, dim: int = 0) -> Grid:
    if kind == "circle":
        return CircleGrid(size, dealias=bool(extra), threads=threads)
    if kind == "zonal":
        return ZonalGrid(dim, size, dealias=bool(extra), threads=threads)
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
        if kind == "zonal":
            return _cached_grid("zonal", int(attrs["grid_lmax"]), int(attrs["grid_dealias"]), threads,
                                int(attrs["grid_dim"]))
    except KeyError as exc:
        raise ValueError(f"the attributes do not identify a grid: missing {exc}") from None
    raise ValueError(f"the attributes do not identify a grid: 'grid' is {kind!r}, expected 'circle', 'sphere' or "
                     "'zonal'")
