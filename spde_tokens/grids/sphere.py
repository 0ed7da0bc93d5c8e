"""Gauss–Legendre grid on the sphere S^2 (shtns spherical-harmonic transforms)."""

from __future__ import annotations

import ctypes
import os
import sys

import numpy as np

from spde_tokens import checks
from spde_tokens.grids.base import GRID_BYTES_PER_NODE, BandLimited, Grid, check_memory


def _import_shtns():
    """Import shtns without letting its banner reach the package's standard output."""
    if "shtns" in sys.modules:
        return sys.modules["shtns"]
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        import shtns

        ctypes.CDLL(None).fflush(None)  # the banner sits in the C library's buffer until flushed
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    shtns.set_verbosity(0)
    return shtns


def _new_plan(shtns, lmax: int, nthreads: int):
    """``shtns.sht(lmax, lmax, norm=sht_orthonormal, nthreads=nthreads)`` without its Python loop over the modes.

    shtns' Python constructor fills the arrays ``l`` and ``m`` by one ``idx(l, m)`` call per coefficient (33 000 calls,
    about 30 ms, at lmax 255). Here the C object is made the same way and ``l``, ``m`` come from the layout shtns uses
    for mres = 1 (order-major: m = 0 … lmax, and l = m … lmax within each order); tests/grids/test_sphere.py checks them
    against ``idx``. Falls back to the plain constructor if this shtns build lacks the SWIG entry points.
    """
    low = getattr(shtns, "_shtns", None)
    if low is None or not hasattr(low, "sht_swiginit") or not hasattr(low, "new_sht"):
        return shtns.sht(lmax, lmax, norm=shtns.sht_orthonormal, nthreads=nthreads)
    plan = shtns.sht.__new__(shtns.sht)
    low.sht_swiginit(plan, low.new_sht(lmax, lmax, 1, shtns.sht_orthonormal, nthreads))
    orders = np.arange(lmax + 1)
    counts = lmax + 1 - orders
    m = np.repeat(orders, counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ell = m + np.arange(m.size) - starts[m]
    plan.l, plan.m = ell.astype(np.int32), m.astype(np.int32)
    plan.l.flags.writeable = plan.m.flags.writeable = False
    plan._cpu_synth_list = [plan.SH_to_spat, plan.SHsphtor_to_spat, plan.SHqst_to_spat]
    plan._cpu_analys_list = [plan.spat_to_SH, plan.spat_to_SHsphtor, plan.spat_to_SHqst]
    if getattr(shtns, "cupy", None) is not None:
        plan._gpu_synth_list = [plan.cu_SH_to_spat, plan.cu_SHsphtor_to_spat, plan.cu_SHqst_to_spat]
        plan._gpu_analys_list = [plan.cu_spat_to_SH, plan.cu_spat_to_SHsphtor, plan.cu_spat_to_SHqst]
    return plan


class _SphereBandLimited(BandLimited):
    """A second shtns plan of lmax = mmax = ``degree`` on the same Gauss grid (nlat, nlon) as ``grid``.

    shtns accepts a grid larger than its lmax needs; its Legendre sums then run over degree² instead of lmax² modes
    per latitude (the FFTs along the longitudes keep their length).
    """

    def __init__(self, grid: SphereGrid, degree: int):
        shtns = _import_shtns()
        self._sh = _new_plan(shtns, degree, grid.threads)
        self._sh.set_grid(grid.nlat, grid.nlon, flags=shtns.sht_gauss | shtns.SHT_PHI_CONTIGUOUS, polar_opt=0.0)
        rows = grid._cached("row_of_degree_order", grid._row_table)
        super().__init__(grid, degree, rows[np.asarray(self._sh.l), np.asarray(self._sh.m)])

    def synthesis(self, coeffs: np.ndarray) -> np.ndarray:
        out = np.empty(self.grid.shape)
        self._sh.SH_to_spat(np.ascontiguousarray(coeffs, dtype=complex), out)
        return out

    def gradient(self, coeffs: np.ndarray) -> np.ndarray:
        out = np.empty((2, *self.grid.shape))
        self._sh.SHsph_to_spat(np.ascontiguousarray(coeffs, dtype=complex), out[0], out[1])
        return out


class SphereGrid(Grid):
    """Gauss–Legendre grid on S^2 with spherical harmonics of degree ≤ lmax (shtns).

    Parameters
    ----------
    lmax : largest degree (≥ 4); mmax = lmax.
    dealias : if True (default) the grid has nlat ≥ 3(lmax+1)/2 latitudes and nlon ≥ 3 lmax + 1 longitudes, so
        products of two fields of degree ≤ lmax are analysed without aliasing (shtns ``nl_order=2``).
    threads : OpenMP threads of the transforms (1 by default: parallelism belongs to ensembles); recorded as
        ``grid_threads``. shtns uses at most four times the cores this process may run on, and so does the record.

    Coefficients are ``f_lm = ∫ f conj(Y_lm) dA`` with orthonormal, Condon–Shortley phased Y_lm, in shtns
    order (see :mod:`spde_tokens.grids`). Fields have shape (nlat, nlon), latitude from north to south.
    """

    dim = 3
    n_tangent = 2
    dims = ("lat", "lon")
    area = 4.0 * np.pi

    def __init__(self, lmax: int, dealias: bool = True, threads: int = 1):
        self.degree_max = self.lmax = checks.integer("lmax", lmax, 4)
        self.dealias = checks.boolean("dealias", dealias)
        # at least (3(L+1)/2) × (3L+1) Gauss nodes dealiased, (L+1) × (2L+2) otherwise: refuse before shtns allocates
        n_min = (3 * (self.lmax + 1) // 2) * (3 * self.lmax + 1) if self.dealias else 2 * (self.lmax + 1) ** 2
        check_memory(f"lmax = {self.lmax}", n_min, GRID_BYTES_PER_NODE, "the grid alone")
        # shtns_use_threads caps the count at 4 omp_get_num_procs() (the cores of the affinity mask): record what runs
        self.threads = min(checks.integer("threads", threads, 1), 4 * len(os.sched_getaffinity(0)))
        shtns = _import_shtns()
        self._sh = _new_plan(shtns, self.lmax, self.threads)
        self._band_plans: dict[int, BandLimited] = {}  # the plans of truncated(degree), built at first use
        self.nlat, self.nlon = self._sh.set_grid(flags=shtns.sht_gauss | shtns.SHT_PHI_CONTIGUOUS,
                                                 nl_order=2 if self.dealias else 1, polar_opt=0.0)
        self.shape = (self.nlat, self.nlon)
        self.degrees = np.asarray(self._sh.l, dtype=int)
        self.orders = np.asarray(self._sh.m, dtype=int)
        self.order_weight = np.where(self.orders == 0, 1.0, 2.0)
        self.cos_theta = np.asarray(self._sh.cos_theta)
        self.theta = np.arccos(self.cos_theta)
        self.phi = 2.0 * np.pi * np.arange(self.nlon) / self.nlon
        # shtns' Gauss weights of the northern latitudes (Σ over both hemispheres = 2); the south mirrors them.
        # numpy's leggauss would recompute them by an eigenvalue problem, O(nlat³): 0.1–1 s at lmax 255
        north = np.asarray(self._sh.gauss_wts())
        self._lat_weights = np.concatenate([north, north[::-1][self.nlat % 2:]])
        self._laplacian = self.laplacian_eigenvalues
        self._laplacian_inverse = np.zeros(self.n_coeff)
        nonzero = self.degrees > 0
        self._laplacian_inverse[nonzero] = -1.0 / (self.degrees[nonzero] * (self.degrees[nonzero] + 1.0))
        # recurrence coefficients of the normalized associated Legendre functions P̄_l^m
        ell = np.arange(self.lmax + 1, dtype=float)[:, None]
        em = np.arange(self.lmax + 1, dtype=float)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            self._rec_a = np.sqrt((4 * ell**2 - 1) / (ell**2 - em**2))
            self._rec_b = np.sqrt(((ell - 1) ** 2 - em**2) / (4 * (ell - 1) ** 2 - 1))

    def __repr__(self) -> str:
        return f"SphereGrid(lmax={self.lmax}, nlat={self.nlat}, nlon={self.nlon})"

    def analysis(self, field: np.ndarray) -> np.ndarray:
        return self._sh.analys(np.ascontiguousarray(field, dtype=float))

    def synthesis(self, coeffs: np.ndarray) -> np.ndarray:
        return self._sh.synth(np.ascontiguousarray(coeffs, dtype=complex))

    def gradient(self, coeffs: np.ndarray) -> np.ndarray:
        """(∂_θ f, ∂_φ f / sin θ) on the grid, a fresh array (2, nlat, nlon).

        shtns writes both components straight into the two halves of the output (no stacking copy).
        """
        slm = np.ascontiguousarray(coeffs, dtype=complex)
        if slm.size != self.n_coeff:
            raise RuntimeError("spectral array has wrong size.")
        out = np.empty((2, *self.shape))
        self._sh.SHsph_to_spat(slm.reshape(-1), out[0], out[1])
        return out

    def divergence(self, tangent: np.ndarray) -> np.ndarray:
        """div_S v = Δ_S S for the spheroidal potential S of v (v = ∇_S S + toroidal part), a new array."""
        s = self._sh.spec_array()  # zeros: shtns may leave the l = 0 entry of a vector analysis untouched
        t = self._sh.spec_array()  # toroidal potential, discarded
        self._sh.spat_to_SHsphtor(np.ascontiguousarray(tangent[0]), np.ascontiguousarray(tangent[1]), s, t)
        return s * self._laplacian

    def truncated(self, degree: int) -> BandLimited:
        """Synthesis and gradient of fields of degree ≤ ``degree`` by a second shtns plan of that lmax on this grid.

        Degrees below 2 use a plan of lmax 2; ``degree`` ≥ lmax gives this grid's own transforms. Plans are built
        once per degree and shared (every run with the same beta on this grid uses the same one).
        """
        degree = int(degree)
        if degree >= self.lmax:
            return super().truncated(degree)
        degree = max(degree, 2)
        if degree not in self._band_plans:
            self._band_plans[degree] = _SphereBandLimited(self, degree)
        return self._band_plans[degree]

    @property
    def basis_peak(self) -> np.ndarray:
        """sqrt(2l + 1): max|Y_lm| = sqrt((2l+1)/4π) (Y_l0 at the poles) and Y_00 = 1/sqrt(4π)."""
        return np.sqrt(2 * self.degrees + 1.0)

    def points(self) -> np.ndarray:
        """Unit vectors (sin θ cos φ, sin θ sin φ, cos θ) of the nodes, shape (nlat, nlon, 3); cached, read-only."""
        return self._cached("points", self._node_vectors)

    def tangent_basis(self) -> np.ndarray:
        """(e_θ, e_φ) at the nodes, shape (2, nlat, nlon, 3); cached, read-only.

        e_θ = (cos θ cos φ, cos θ sin φ, −sin θ) points south, e_φ = (−sin φ, cos φ, 0) east.
        """
        return self._cached("tangent_basis", self._node_frame)

    def _node_vectors(self) -> np.ndarray:
        st = np.sin(self.theta)[:, None]
        ct = self.cos_theta[:, None]
        return np.stack(np.broadcast_arrays(st * np.cos(self.phi), st * np.sin(self.phi), ct), axis=-1)

    def _node_frame(self) -> np.ndarray:
        st = np.sin(self.theta)[:, None]
        ct = self.cos_theta[:, None]
        cp, sp = np.cos(self.phi)[None, :], np.sin(self.phi)[None, :]
        e_theta = np.stack(np.broadcast_arrays(ct * cp, ct * sp, -st), axis=-1)
        e_phi = np.stack(np.broadcast_arrays(-sp + 0 * st, cp + 0 * st, 0 * st * cp), axis=-1)
        return np.stack([e_theta, e_phi])

    def weights(self) -> np.ndarray:
        return np.outer(self._lat_weights, np.full(self.nlon, 2.0 * np.pi / self.nlon))

    def coords(self) -> dict:
        lat = 90.0 - np.degrees(self.theta)
        lon = np.degrees(self.phi)
        return {
            "lat": ("lat", lat, {"units": "degrees_north", "long_name": "latitude (Gauss–Legendre nodes)",
                                 "standard_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "long_name": "longitude",
                                 "standard_name": "longitude"}),
        }

    def attrs(self) -> dict:
        return {"grid": "sphere", "grid_lmax": self.lmax, "grid_nlat": self.nlat, "grid_nlon": self.nlon,
                "grid_dealias": int(self.dealias), "grid_threads": self.threads}

    def _legendre_table(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P̄_l^m(cos θ_i) for all l, m ≤ lmax (array (lmax+1, lmax+1, N), zero for m > l) and e^{iφ_i}.

        The standard three-term recurrence with Condon–Shortley phase, vectorized over all points and all orders
        (a Python loop over degrees only).
        """
        x = np.clip(points[:, 2], -1.0, 1.0)
        s = np.hypot(points[:, 0], points[:, 1])
        lmax = self.lmax
        p = np.zeros((lmax + 1, lmax + 1, x.size))
        p[0, 0] = 1.0 / np.sqrt(4.0 * np.pi)
        for m in range(1, lmax + 1):  # sectoral terms
            p[m, m] = -np.sqrt((2 * m + 1) / (2.0 * m)) * s * p[m - 1, m - 1]
        for m in range(lmax):
            p[m + 1, m] = np.sqrt(2 * m + 3.0) * x * p[m, m]
        for ell in range(2, lmax + 1):  # vectorized over all orders m ≤ l - 2 and all points
            a = self._rec_a[ell, : ell - 1, None]
            b = self._rec_b[ell, : ell - 1, None]
            p[ell, : ell - 1] = a * (x * p[ell - 1, : ell - 1] - b * p[ell - 2, : ell - 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = np.where(s > 0, (points[:, 0] + 1j * points[:, 1]) / s, 1.0)
        return p, unit

    def _phases(self, unit: np.ndarray) -> np.ndarray:
        """e^{i m φ} for m = 0 … lmax, shape (lmax+1, N), by repeated multiplication."""
        out = np.empty((self.lmax + 1, unit.size), dtype=complex)
        out[0] = 1.0
        for m in range(1, self.lmax + 1):
            out[m] = out[m - 1] * unit
        return out

    def _bytes_per_point(self) -> int:
        return 8 * (self.lmax + 1) ** 2 + 48 * (self.lmax + 1)

    def _evaluate_block(self, weighted_coeffs, points):
        p, unit = self._legendre_table(points)
        table = np.zeros((weighted_coeffs.shape[0], self.lmax + 1, self.lmax + 1), dtype=complex)
        table[:, self.degrees, self.orders] = weighted_coeffs
        per_order = np.einsum("klm,lmn->kmn", table, p)  # Σ_l w_m f_lm P̄_l^m, shape (K, m, N)
        return np.einsum("kmn,mn->kn", per_order, self._phases(unit)).real

    def _basis_block(self, points: np.ndarray) -> np.ndarray:
        """Y_lm(x_i) = P̄_l^m(cos θ_i) e^{i m φ_i}, complex array (N, n_coeff)."""
        p, unit = self._legendre_table(points)
        return (p[self.degrees, self.orders] * self._phases(unit)[self.orders]).T

    def real_basis(self, points: np.ndarray) -> np.ndarray:
        """Re Y_lm(x_i) and Im Y_lm(x_i) in rows, shape (2 n_coeff, N), for unit vectors ``points`` (N, 3).

        The same values as :meth:`_basis_block` (P̄_l^m(cos θ) cos mφ and P̄_l^m(cos θ) sin mφ): the three-term
        recurrence advances all orders of one degree at once (a Python loop over degrees only, on contiguous (m, N)
        arrays), and cos mφ, sin mφ come from the powers of e^{iφ}; several times faster than :meth:`_basis_block`,
        which the Lagrangian engine would otherwise call at every stage. No checks: ``points`` must be unit vectors.
        """
        pts = np.asarray(points, dtype=float)
        n, lmax = pts.shape[0], self.lmax
        x = np.clip(pts[:, 2], -1.0, 1.0)
        s = np.hypot(pts[:, 0], pts[:, 1])
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = np.where(s > 0, (pts[:, 0] + 1j * pts[:, 1]) / s, 1.0)
        out = np.empty((2 * self.n_coeff, n))
        rows = self._cached("row_of_degree_order", self._row_table)  # (lmax+1, lmax+1): row of (l, m), -1 if m > l
        phases = self._phases(unit)
        cos, sin = np.ascontiguousarray(phases.real), np.ascontiguousarray(phases.imag)
        sectoral = np.empty((lmax + 1, n))
        sectoral[0] = 1.0 / np.sqrt(4.0 * np.pi)
        for m in range(1, lmax + 1):
            np.multiply(sectoral[m - 1], -np.sqrt((2 * m + 1) / (2.0 * m)) * s, out=sectoral[m])
        # P̄_{l-2}^m, P̄_{l-1}^m and P̄_l^m for all orders m ≤ l, in three buffers that rotate
        older, old, new = np.zeros((lmax + 1, n)), np.zeros((lmax + 1, n)), np.zeros((lmax + 1, n))
        for ell in range(lmax + 1):
            if ell >= 2:
                k = ell - 1  # orders 0 … l − 2 by the three-term recurrence
                np.multiply(x, old[:k], out=new[:k])
                new[:k] -= self._rec_b[ell, :k, None] * older[:k]
                new[:k] *= self._rec_a[ell, :k, None]
            if ell >= 1:
                np.multiply(np.sqrt(2 * ell + 1.0) * x, sectoral[ell - 1], out=new[ell - 1])
            new[ell] = sectoral[ell]
            row = rows[ell, : ell + 1]
            out[row] = new[: ell + 1] * cos[: ell + 1]
            out[self.n_coeff + row] = new[: ell + 1] * sin[: ell + 1]
            older, old, new = old, new, older
        return out

    def _row_table(self) -> np.ndarray:
        table = np.full((self.lmax + 1, self.lmax + 1), -1)
        table[self.degrees, self.orders] = np.arange(self.n_coeff)
        return table
