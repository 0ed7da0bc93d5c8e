"""Fourier grid on the circle S^1 (pyfftw, plans built once and reused).

pyfftw is imported when the first CircleGrid is built, not with the package: its interfaces pull in dask.array and
pandas, about 0.6 s that runs on the sphere never need.
"""

from __future__ import annotations

import numpy as np

from spde_tokens import checks
from spde_tokens.grids.base import GRID_BYTES_PER_NODE, BandLimited, Grid, check_memory


def _fast_size(minimum: int) -> int:
    """Smallest 2^a 3^b 5^c ≥ minimum (sizes FFTW transforms fastest)."""
    size = minimum
    while True:
        rest = size
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return size
        size += 1


class CircleGrid(Grid):
    """Fourier modes k = 0 … n on an equispaced grid θ_j = 2π j / N of S^1.

    Parameters
    ----------
    n : largest wavenumber kept (≥ 4), the analogue of lmax on the sphere.
    dealias : if True (default) the grid has N ≥ 3n + 1 nodes, so products of two fields of wavenumber ≤ n are
        analysed without aliasing (the 3/2 rule); otherwise N ≥ 2n + 2. N is rounded up to a 2^a 3^b 5^c size.
    threads : FFTW threads (1 by default: parallelism belongs to ensembles); recorded as ``grid_threads``.

    Coefficients are ``f_k = ∫ f e^{-ikθ} dθ / sqrt(2π)`` (see :mod:`spde_tokens.grids`).
    """

    dim = 2
    n_tangent = 1
    dims = ("theta",)
    area = 2.0 * np.pi

    def __init__(self, n: int, dealias: bool = True, threads: int = 1):
        import pyfftw

        self.n = self.degree_max = checks.integer("n (largest wavenumber)", n, 4)
        self.dealias = checks.boolean("dealias", dealias)
        self.threads = checks.integer("threads", threads, 1)
        check_memory(f"n = {self.n}", 3 * self.n + 1, GRID_BYTES_PER_NODE, "the grid alone")
        self.nodes = _fast_size(3 * self.n + 1 if self.dealias else 2 * self.n + 2)
        self.shape = (self.nodes,)
        self.degrees = np.arange(self.degree_max + 1)
        self.order_weight = np.where(self.degrees == 0, 1.0, 2.0)
        self.theta = 2.0 * np.pi * np.arange(self.nodes) / self.nodes
        self._wavenumber = 1j * self.degrees
        self._real = pyfftw.empty_aligned(self.nodes, dtype="float64")
        self._spec = pyfftw.empty_aligned(self.nodes // 2 + 1, dtype="complex128")
        # FFTW_ESTIMATE: a plan chosen by timing (FFTW_MEASURE) can differ between processes and change the last bit
        # of results, which would break bit-for-bit reproducibility across workers
        flags = ("FFTW_ESTIMATE", "FFTW_DESTROY_INPUT")
        self._forward = pyfftw.FFTW(self._real, self._spec, direction="FFTW_FORWARD", flags=flags,
                                    threads=self.threads)
        self._backward = pyfftw.FFTW(self._spec, self._real, direction="FFTW_BACKWARD", flags=flags,
                                     threads=self.threads)
        self._to_coeff = np.sqrt(2.0 * np.pi) / self.nodes

    def __repr__(self) -> str:
        return f"CircleGrid(n={self.n}, nodes={self.nodes})"

    def analysis(self, field: np.ndarray) -> np.ndarray:
        self._real[:] = field
        self._forward.execute()
        return self._spec[: self.degree_max + 1] * self._to_coeff

    def synthesis(self, coeffs: np.ndarray) -> np.ndarray:
        """The field Σ_k w_k Re(f_k e_k) on the nodes; coefficients k = 0 … K for any K ≤ n (the rest are zero)."""
        kept = np.shape(coeffs)[-1]
        self._spec[:kept] = coeffs
        self._spec[:kept] *= 1.0 / (self._to_coeff * self.nodes)  # the unnormalized c2r transform sums n terms
        self._spec[kept:] = 0.0
        self._backward.execute()
        return self._real.copy()

    def gradient(self, coeffs: np.ndarray) -> np.ndarray:
        """∂_θ f on the nodes, shape (1, nodes); coefficients k = 0 … K for any K ≤ n, as :meth:`synthesis`."""
        return self.synthesis(self._wavenumber[: np.shape(coeffs)[-1]] * coeffs)[None, :]

    def truncated(self, degree: int) -> BandLimited:
        """Fields of wavenumber ≤ ``degree``: the same FFT, zero-padded, on the first ``degree`` + 1 coefficients.

        The c2r FFT keeps its length (the nodes must stay the same); what is saved is the work on the dropped
        coefficients (weights, the gradient's wavenumbers).
        """
        degree = min(int(degree), self.degree_max)
        return BandLimited(self, degree, np.arange(degree + 1))

    def divergence(self, tangent: np.ndarray) -> np.ndarray:
        return self._wavenumber * self.analysis(tangent[0])

    @property
    def basis_peak(self) -> np.ndarray:
        """1: every e^{inθ}/sqrt(2π) has modulus Y_0 = 1/sqrt(2π)."""
        return np.ones(self.n_coeff)

    def points(self) -> np.ndarray:
        """Unit vectors (cos θ, sin θ) of the nodes, shape (nodes, 2); cached, read-only."""
        return self._cached("points", lambda: np.stack([np.cos(self.theta), np.sin(self.theta)], axis=-1))

    def tangent_basis(self) -> np.ndarray:
        """e_θ = (−sin θ, cos θ) at the nodes, shape (1, nodes, 2); cached, read-only."""
        return self._cached("tangent_basis",
                            lambda: np.stack([-np.sin(self.theta), np.cos(self.theta)], axis=-1)[None])

    def weights(self) -> np.ndarray:
        return np.full(self.nodes, 2.0 * np.pi / self.nodes)

    def coords(self) -> dict:
        return {"theta": ("theta", self.theta, {"units": "radian", "long_name": "angle on the circle"})}

    def attrs(self) -> dict:
        return {"grid": "circle", "grid_n": self.n, "grid_nodes": self.nodes, "grid_dealias": int(self.dealias),
                "grid_threads": self.threads}

    def _basis_block(self, points: np.ndarray) -> np.ndarray:
        theta = np.arctan2(points[:, 1], points[:, 0])
        return np.exp(1j * np.outer(theta, self.degrees)) / np.sqrt(2.0 * np.pi)

    def real_basis(self, points: np.ndarray) -> np.ndarray:
        """Re e_k(x_i) and Im e_k(x_i) in rows, shape (2 (n + 1), N): cos(kθ_i)/sqrt(2π) and sin(kθ_i)/sqrt(2π)."""
        pts = np.asarray(points, dtype=float)
        angles = np.outer(self.degrees, np.arctan2(pts[:, 1], pts[:, 0]))
        return np.concatenate([np.cos(angles), np.sin(angles)]) / np.sqrt(2.0 * np.pi)
