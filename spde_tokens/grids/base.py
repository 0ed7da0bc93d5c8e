"""What every spectral grid offers; the coefficient convention is stated in :mod:`spde_tokens.grids`."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from spde_tokens.grids.funk_hecke import ZonalWeights, zonal_weights

if TYPE_CHECKING:
    import xarray as xr

#: bytes of the complex basis block formed at once by point evaluation
_POINT_CHUNK_BYTES = 32 * 2**20


class ResolutionWarning(UserWarning):
    """The grid or the time step does not resolve the run (kernel, spectrum or transport CFL number)."""


#: bytes per grid node of building a grid (shtns' tables and the grid's own arrays): measured 49–57 at lmax 255–1023
GRID_BYTES_PER_NODE = 64
#: bytes per grid node of a density run (RK4 stages, velocities, noise field, records): measured 390–490 at lmax
#: 255–511 with BiasNoise
RUN_BYTES_PER_NODE = 512


def available_memory() -> int:
    """Bytes of memory available to this process (MemAvailable of /proc/meminfo, else physical pages)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def check_memory(parameter: str, nodes: int, bytes_per_node: int, what: str) -> None:
    """Refuse, before allocating anything, a resolution whose estimated memory exceeds what is available.

    A grid of 20000 degrees made shtns crash the process, one of 100000 made it call exit(): a ValueError with the
    estimate and the limit is what a user (or a notebook) can act on.
    """
    need, limit = nodes * bytes_per_node, available_memory()
    if need > limit:
        raise ValueError(f"{parameter} is too large: {what} needs about {need / 1e9:.3g} GB ({nodes:.3g} grid nodes × "
                         f"~{bytes_per_node} B), more than the {limit / 1e9:.3g} GB available; lower it")


class BandLimited:
    """Synthesis and gradient, on the nodes of ``grid``, of fields of degree ≤ ``degree`` only.

    A field ``f = Σ_{l ≤ degree} w_m Re(f_lm Y_lm)`` is given by its coefficients of degree ≤ ``degree``, in the order
    of :attr:`index` (``restrict(coeffs) = coeffs[index]``, the entries of a full coefficient array that it keeps):
    the attention kernel exp(κ x·y) resolves only degrees up to about 8.7 sqrt(κ) on S^2, so the fields G̃ρ and
    ∇G̃ρ of the drift need only those (docs/numerics.md, 'Cheaper right-hand sides'). This base version keeps every
    coefficient and uses the grid's own transforms; :class:`~spde_tokens.grids.SphereGrid` and
    :class:`~spde_tokens.grids.CircleGrid` return cheaper ones from :meth:`Grid.truncated`.
    """

    def __init__(self, grid: Grid, degree: int, index: np.ndarray | None = None):
        self.grid, self.degree = grid, int(degree)
        #: positions of the kept coefficients in a full coefficient array (None: all of them, in order)
        self.index = index
        #: degree of every kept coefficient
        self.degrees = grid.degrees if index is None else grid.degrees[index]

    def restrict(self, coeffs: np.ndarray) -> np.ndarray:
        """The coefficients of degree ≤ ``degree`` of a full coefficient array, in the order this object expects."""
        return coeffs if self.index is None else coeffs[..., self.index]

    def per_degree(self, values: np.ndarray) -> np.ndarray:
        """A per-degree array (degree_max + 1,) expanded to one value per kept coefficient."""
        return np.asarray(values)[self.degrees]

    def synthesis(self, coeffs: np.ndarray) -> np.ndarray:
        """The field Σ w_m Re(f_lm Y_lm) on the grid's nodes, a new array of shape ``grid.shape``."""
        return self.grid.synthesis(coeffs)

    def gradient(self, coeffs: np.ndarray) -> np.ndarray:
        """The tangent components of ∇_S f on the grid's nodes, a new array (k, *grid.shape)."""
        return self.grid.gradient(coeffs)


class Grid(ABC):
    """A spectral grid on S^{dim-1}: transforms, calculus, quadrature and point evaluation.

    Subclasses define the transforms; this class holds what follows from the coefficient convention.
    """

    dim: int
    #: number of tangent components (1 on S^1, 2 on S^2)
    n_tangent: int
    #: largest degree kept (lmax on S^2, kmax on S^1)
    degree_max: int
    #: shape of a field on the grid
    shape: tuple[int, ...]
    #: xarray dimension names of a field
    dims: tuple[str, ...]
    #: degree of every coefficient (shape (n_coeff,))
    degrees: np.ndarray
    #: 1 for order 0, 2 for positive orders (real-field sums over m ≥ 0)
    order_weight: np.ndarray
    #: surface area: 2π on S^1, 4π on S^2
    area: float
    #: the measure the densities on this grid are taken against (∫ ρ d(measure) = 1), named in their long_name
    measure = "surface measure"

    # ---- transforms and calculus (grid specific) ------------------------------------------------------------
    @abstractmethod
    def analysis(self, field: np.ndarray) -> np.ndarray:
        """Coefficients f_lm = ∫ f conj(Y_lm) dA of a real field on the grid."""

    @abstractmethod
    def synthesis(self, coeffs: np.ndarray) -> np.ndarray:
        """The real field f = Σ w_m Re(f_lm Y_lm) on the grid."""

    @abstractmethod
    def gradient(self, coeffs: np.ndarray) -> np.ndarray:
        """Surface gradient ∇_S f as tangent components, shape (k, *shape)."""

    @abstractmethod
    def divergence(self, tangent: np.ndarray) -> np.ndarray:
        """Coefficients of div_S v for a tangent field given by its components (k, *shape)."""

    @abstractmethod
    def points(self) -> np.ndarray:
        """Unit vectors of the grid nodes, shape (*shape, dim).

        Implementations compute them once (:meth:`_cached`) and return the same read-only array on every call.
        """

    @abstractmethod
    def tangent_basis(self) -> np.ndarray:
        """Orthonormal tangent frame at the nodes, shape (k, *shape, dim).

        Implementations compute it once (:meth:`_cached`) and return the same read-only array on every call.
        """

    @abstractmethod
    def weights(self) -> np.ndarray:
        """Quadrature weights of the nodes (shape ``shape``): ∫ f dA ≈ Σ weights · f."""

    @abstractmethod
    def coords(self) -> dict:
        """xarray coordinates of a field: name -> (dim, values, attrs)."""

    @abstractmethod
    def attrs(self) -> dict:
        """Attributes that identify the grid (rebuilt by :func:`grid_from_attrs`)."""

    def coordinates(self) -> xr.Coordinates:
        """The coordinates of :meth:`coords` as ``xarray.Coordinates`` with their indexes, built on the first call only.

        Building the pandas indexes is most of the cost of a DataArray or Dataset on the grid (docs/numerics.md,
        'Start-up and fixed costs'); passed to a constructor, these are reused as they are. xarray copies each
        coordinate variable, and its attributes, into the object it builds, and their values are read-only, so the
        objects handed to users share nothing mutable with this one. Do not modify it.
        """
        coordinates = self.__dict__.get("_coordinates")
        if coordinates is None:
            import xarray as xr

            coordinates = xr.Coordinates({name: xr.Variable(*spec) for name, spec in self.coords().items()})
            self.__dict__["_coordinates"] = coordinates
        return coordinates

    @property
    @abstractmethod
    def basis_peak(self) -> np.ndarray:
        """max_x |Y_c(x)| / |Y_0| for the basis function of every coefficient c (Y_0 the constant one), shape
        (n_coeff,): since ρ_c = ∫ ρ conj(Y_c) and ρ_0 = Y_0 ∫ρ, |ρ_c| ≤ basis_peak_c |ρ_0| ∫|ρ| / ∫ρ (the blow-up
        test of :func:`spde_tokens.solve_density`)."""

    @abstractmethod
    def _basis_block(self, points: np.ndarray) -> np.ndarray:
        """Y_lm(x_i) for unit vectors ``points`` (N, dim): complex array (N, n_coeff)."""

    def real_basis(self, points: np.ndarray) -> np.ndarray:
        """Re Y_lm(x_i) and Im Y_lm(x_i) in rows, shape (2 n_coeff, N); grids override it with a faster recurrence."""
        basis = self._basis_block(np.asarray(points, dtype=float))
        return np.concatenate([basis.real.T, basis.imag.T])

    # ---- derived from the convention -----------------------------------------------------------------------
    def _cached(self, name: str, build) -> np.ndarray:
        """The array ``build()``, computed on the first call only, C-contiguous and read-only.

        Node geometry (points, tangent frame) is fixed for the life of a grid; building it costs several
        milliseconds at lmax 255, far more than the elementwise work that uses it. Callers must copy before
        writing (``flags.writeable`` is False, so an in-place write raises instead of corrupting the cache).
        """
        cache = self.__dict__.setdefault("_array_cache", {})
        value = cache.get(name)
        if value is None:
            value = np.ascontiguousarray(build())
            value.flags.writeable = False
            cache[name] = value
        return value

    def _tangent_frame(self) -> np.ndarray:
        """The frame of :meth:`tangent_basis` component first: ``frame[i, c] = (e_i)_c``, shape (k, dim, *shape)."""
        return self._cached("tangent_frame", lambda: np.moveaxis(self.tangent_basis(), -1, 1))

    def _point_components(self) -> np.ndarray:
        """The nodes of :meth:`points` component first: ``x_c``, shape (dim, *shape)."""
        return self._cached("point_components", lambda: np.moveaxis(self.points(), -1, 0))

    @property
    def n_coeff(self) -> int:
        return self.degrees.size

    @property
    def laplacian_eigenvalues(self) -> np.ndarray:
        """Eigenvalue of Δ_S for every coefficient: −l(l+1) on S^2, −k² on S^1."""
        ell = self.degrees.astype(float)
        return -ell * (ell + 1.0) if self.dim == 3 else -(ell**2)

    def laplacian(self, coeffs: np.ndarray) -> np.ndarray:
        """Laplace–Beltrami operator Δ_S in spectral space."""
        return coeffs * self.laplacian_eigenvalues

    def per_degree(self, values: np.ndarray) -> np.ndarray:
        """Expand a per-degree array (degree_max + 1,) to one value per coefficient."""
        return np.asarray(values)[self.degrees]

    def integrate(self, field: np.ndarray) -> float:
        """∫ f dA by the grid's quadrature (exact for band-limited f of degree ≤ the grid's exactness)."""
        return float(np.sum(self.weights() * field))

    def inner(self, a: np.ndarray, b: np.ndarray) -> float:
        """∫ f g dA = Σ w_m Re(conj(f_lm) g_lm) for real fields f, g given by coefficients."""
        return float(np.sum(self.order_weight * (a.conj() * b).real))

    def power_spectrum(self, coeffs: np.ndarray) -> np.ndarray:
        """P_l = Σ_m w_m |f_lm|², shape (degree_max + 1,)."""
        return np.bincount(self.degrees, weights=self.order_weight * np.abs(coeffs) ** 2,
                           minlength=self.degree_max + 1)

    def zonal_weights(self, kappa: float) -> ZonalWeights:
        """Scaled Funk–Hecke weights of exp(κ x·y) for the degrees of this grid."""
        return zonal_weights(self.dim, kappa, self.degree_max)

    def truncated(self, degree: int) -> BandLimited:
        """Transforms of the fields of degree ≤ ``degree`` on this grid's nodes (:class:`BandLimited`).

        Grids with a cheaper transform for low degrees override this; here every coefficient is kept.
        """
        return BandLimited(self, min(int(degree), self.degree_max))

    def to_tangent(self, vectors: np.ndarray) -> np.ndarray:
        """Tangent components (k, *shape) of Cartesian vectors (*shape, dim): the projection P_x.

        ``v_i = e_i · v = Σ_c (e_i)_c v_c`` for the frame e_i of :meth:`tangent_basis`; leading axes of ``vectors``
        broadcast against the grid shape. Computed component by component on contiguous frame arrays (an einsum over
        the short last axis is several times slower).
        """
        vectors = np.asarray(vectors)
        if vectors.ndim < 1 or vectors.shape[-1] != self.dim:
            raise ValueError(f"vectors must have a last axis of length {self.dim}, got shape {vectors.shape}")
        frame = self._tangent_frame()
        shape = np.broadcast_shapes(self.shape, vectors.shape[:-1])
        out = np.empty((self.n_tangent, *shape), dtype=np.result_type(frame, vectors))
        tmp = np.empty(shape, dtype=out.dtype)
        for i in range(self.n_tangent):
            np.multiply(frame[i, 0], vectors[..., 0], out=out[i])
            for c in range(1, self.dim):
                out[i] += np.multiply(frame[i, c], vectors[..., c], out=tmp)
        return out

    def from_tangent(self, tangent: np.ndarray) -> np.ndarray:
        """Cartesian vectors (*shape, dim) of a tangent field given by components (k, *shape).

        ``v_c = Σ_i v_i (e_i)_c`` for the frame e_i of :meth:`tangent_basis`.
        """
        tangent = np.asarray(tangent)
        if tangent.ndim < 1 or tangent.shape[0] != self.n_tangent:
            raise ValueError(f"tangent must have a first axis of length {self.n_tangent}, got shape {tangent.shape}")
        frame = self._tangent_frame()
        shape = np.broadcast_shapes(self.shape, tangent.shape[1:])
        out = np.empty((*shape, self.dim), dtype=np.result_type(frame, tangent))
        tmp = np.empty(shape, dtype=out.dtype)
        for c in range(self.dim):
            dest = out[..., c]
            np.multiply(frame[0, c], tangent[0], out=dest)
            for i in range(1, self.n_tangent):
                dest += np.multiply(frame[i, c], tangent[i], out=tmp)
        return out

    def coordinate_coefficients(self) -> np.ndarray:
        """Coefficients of the coordinate functions x ↦ x_i, shape (dim, n_coeff); computed once (``dim`` analyses,
        which every run's set-up and every record's mean vector need), read-only."""
        pts = self.points()
        return self._cached("coordinate_coefficients", lambda: np.stack(
            [self.analysis(np.ascontiguousarray(pts[..., i])) for i in range(self.dim)]))

    # ---- point evaluation ----------------------------------------------------------------------------------
    def _check_points(self, points: np.ndarray) -> np.ndarray:
        pts = np.asarray(points, dtype=float)
        if pts.ndim != 2 or pts.shape[1] != self.dim:
            raise ValueError(f"points must have shape (N, {self.dim}), got {pts.shape}")
        if not np.all(np.isfinite(pts)):
            raise ValueError("points must be finite")
        if pts.size and np.max(np.abs(np.linalg.norm(pts, axis=1) - 1.0)) > 1e-8:
            raise ValueError("points must be unit vectors (|x| = 1 within 1e-8)")
        return pts

    def _bytes_per_point(self) -> int:
        """Memory one point takes in a block of point evaluation."""
        return 16 * max(self.n_coeff, 1)

    def _chunks(self, n: int):
        size = max(1, _POINT_CHUNK_BYTES // self._bytes_per_point())
        for start in range(0, n, size):
            yield slice(start, min(n, start + size))

    def _evaluate_block(self, weighted_coeffs: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Re Σ (w_m f_lm) Y_lm(x_i) for one block of points; coefficients (K, n_coeff) give (K, N)."""
        return (weighted_coeffs @ self._basis_block(points).T).real

    def _empirical_block(self, weights: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Σ_i ω_i conj(Y_lm(x_i)) for one block of points; weights (K, N) give (K, n_coeff), as two real products
        with :meth:`real_basis`: Σ ω Re Y − i Σ ω Im Y."""
        basis = self.real_basis(points)
        return weights @ basis[: self.n_coeff].T - 1j * (weights @ basis[self.n_coeff:].T)

    def evaluate(self, coeffs: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Band-limited field f = Σ w_m Re(f_lm Y_lm) at arbitrary unit vectors ``points`` (N, dim).

        Vectorized over the points (Legendre recurrences on S^2, exponentials on S^1), in blocks of bounded memory.
        Several fields at once: coefficients (K, n_coeff) give values (K, N).
        """
        pts = self._check_points(points)
        wc = np.atleast_2d(self.order_weight * coeffs)
        out = np.empty((wc.shape[0], pts.shape[0]))
        for sl in self._chunks(pts.shape[0]):
            out[:, sl] = self._evaluate_block(wc, pts[sl])
        return out if np.ndim(coeffs) > 1 else out[0]

    def empirical_coefficients(self, points: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Coefficients of the measure Σ_i ω_i δ_{x_i}: μ_lm = Σ_i ω_i conj(Y_lm(x_i)) (ω_i = 1/N by default).

        Several weightings at once: weights (K, N) give coefficients (K, n_coeff).
        """
        pts = self._check_points(points)
        n = pts.shape[0]
        om = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=float)
        om2 = np.atleast_2d(om)
        out = np.zeros((om2.shape[0], self.n_coeff), dtype=complex)
        for sl in self._chunks(n):
            out += self._empirical_block(om2[:, sl], pts[sl])
        return out if om.ndim > 1 else out[0]
