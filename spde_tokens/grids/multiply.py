"""Multiplication by the coordinates x_i in spectral space, and the transport operators of linear noise fields.

docs/mathematics.md, 'Spectral transport of linear noise fields'.

A real field f of degree ≤ L, given by its complex coefficients of non-negative order (the convention of
:mod:`spde_tokens.grids`), times a coordinate x_i is a field of degree ≤ L + 1 whose coefficients follow from those
of f by closed-form recurrence coefficients (each couples degree l to l ± 1):

* S²: cos θ Y_lm = a_{l+1,m} Y_{l+1,m} + a_{l,m} Y_{l−1,m}, a_{l,m} = sqrt((l² − m²)/((2l − 1)(2l + 1)));
  e^{±iφ} sin θ Y_lm = ∓ sqrt((l ± m + 1)(l ± m + 2)/((2l + 1)(2l + 3))) Y_{l+1,m±1}
  ± sqrt((l ∓ m)(l ∓ m − 1)/((2l − 1)(2l + 1))) Y_{l−1,m±1}, with x = (x₊ + x₋)/2, y = (x₊ − x₋)/(2i),
  x_± = e^{±iφ} sin θ, and f_{l,−m} = (−1)^m conj(f_lm) for the negative orders of a real field;
* S¹: e^{±iθ} e_k = e_{k±1}, x = cos θ, y = sin θ, f_{−k} = conj(f_k).

The operators act on the real view of a complex coefficient vector (``coeffs.view(float)``: Re and Im of each
coefficient side by side), since the fold of the negative orders makes them real-linear, not complex-linear; the
imaginary parts of the order-0 coefficients of a real field are 0 and are neither read nor written.

The transport of ρ by u = P_x(M x + b) (rotation, bias, quadratic-form noise, and their sums) is
−div_S(ρ u) = Σ_i K_i h_i with h_i = Σ_j M_ij x_j ρ + b_i ρ and, from Δ_S x_i = −(d − 1) x_i,

    K_i g = −div_S(g ∇_S x_i) = −½ Δ_S(x_i g) + ½ x_i Δ_S g + ((d − 1)/2) x_i g.

h lives at degree ≤ L + 1 exactly (no truncation), K_i h is truncated to degree ≤ L: the result is the orthogonal
projection P_L(−div_S(ρ u)), which is also what the dealiased grid's sub-step computes (the product ρ u, a
polynomial of degree L + 2, is integrated exactly by its quadrature) — the same truncation, to rounding.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from spde_tokens.grids.base import Grid
from spde_tokens.grids.circle import CircleGrid
from spde_tokens.grids.sphere import SphereGrid

if TYPE_CHECKING:
    import scipy.sparse as sp

#: size below which an entry of a rotation generator is a rounding residue of the couplings l → l ± 2 that cancel
#: between K_i x_j and K_j x_i (a rotation keeps the degree): the residues are ~eps l⁴ (1e-14 at lmax 31, 1e-12 at
#: 255), the true entries, those of the angular momentum ½ sqrt((l ∓ m)(l ± m + 1)) and m, are ≥ ½√2
_PRUNE = 1e-6


class _Space:
    """Coefficients of degree ≤ ``degree`` on S¹ (k = 0 … degree) or S² (l ≥ m ≥ 0, order-major as shtns)."""

    def __init__(self, dim: int, degree: int) -> None:
        self.dim, self.degree = dim, degree
        if dim == 3:
            m, ell = np.divmod(np.arange((degree + 1) ** 2), degree + 1)
            keep = ell >= m
            self.degrees, self.orders = ell[keep], m[keep]
        else:
            self.degrees = np.arange(degree + 1)
            self.orders = self.degrees.copy()
        self.size = self.degrees.size
        self._table = np.full((degree + 1, degree + 1), -1)
        self._table[self.degrees, self.orders] = np.arange(self.size)

    def index(self, degrees: np.ndarray, orders: np.ndarray) -> np.ndarray:
        """Row of (l, m), m ≥ 0 (S¹: l = m = k); −1 outside the space."""
        inside = (degrees >= 0) & (degrees <= self.degree) & (orders >= 0) & (orders <= degrees)
        out = np.full(degrees.shape, -1)
        out[inside] = self._table[degrees[inside], orders[inside]]
        return out

    @property
    def laplacian(self) -> np.ndarray:
        ell = self.degrees.astype(float)
        return -ell * (ell + 1.0) if self.dim == 3 else -(ell**2)

    def real_laplacian(self) -> np.ndarray:
        """Eigenvalues of Δ_S on the real view (each repeated for Re and Im)."""
        return np.repeat(self.laplacian, 2)


def _full_orders(space: _Space) -> tuple[np.ndarray, np.ndarray]:
    """Every (l, m) with −l ≤ m ≤ l (S²) or every k, −n ≤ k ≤ n (S¹) of the space."""
    if space.dim == 3:
        ell = np.repeat(np.arange(space.degree + 1), 2 * np.arange(space.degree + 1) + 1)
        m = np.concatenate([np.arange(-l_, l_ + 1) for l_ in range(space.degree + 1)])
        return ell, m
    k = np.arange(-space.degree, space.degree + 1)
    return np.abs(k), k


def _ladder(space: _Space) -> dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]]:
    """Images of every full-order basis function under x_d (``"z"``), x₊ and x₋: lists of (input l, input m,
    output l, output m, coefficient)."""
    ell, m = _full_orders(space)
    if space.dim == 2:
        one = np.ones(ell.size)
        return {"z": [], "+": [(ell, m, np.abs(m + 1), m + 1, one)], "-": [(ell, m, np.abs(m - 1), m - 1, one)]}
    lf, mf = ell.astype(float), m.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        def a(l_: np.ndarray, m_: np.ndarray) -> np.ndarray:
            return np.sqrt(np.maximum(l_**2 - m_**2, 0.0) / ((2 * l_ - 1) * (2 * l_ + 1)))

        up_plus = -np.sqrt((lf + mf + 1) * (lf + mf + 2) / ((2 * lf + 1) * (2 * lf + 3)))
        down_plus = np.sqrt(np.maximum((lf - mf) * (lf - mf - 1), 0.0) / ((2 * lf - 1) * (2 * lf + 1)))
        up_minus = np.sqrt((lf - mf + 1) * (lf - mf + 2) / ((2 * lf + 1) * (2 * lf + 3)))
        down_minus = -np.sqrt(np.maximum((lf + mf) * (lf + mf - 1), 0.0) / ((2 * lf - 1) * (2 * lf + 1)))
        return {
            "z": [(ell, m, ell + 1, m, a(lf + 1, mf)), (ell, m, ell - 1, m, np.nan_to_num(a(lf, mf)))],
            "+": [(ell, m, ell + 1, m + 1, up_plus), (ell, m, ell - 1, m + 1, np.nan_to_num(down_plus))],
            "-": [(ell, m, ell + 1, m - 1, up_minus), (ell, m, ell - 1, m - 1, np.nan_to_num(down_minus))],
        }


def _real_matrix(out_space: _Space, in_space: _Space, terms: list[tuple[np.ndarray, ...]]) -> sp.csr_matrix:
    """The real (2 n_out, 2 n_in) matrix of f ↦ Σ α f_{l,m} over the couplings ``terms`` = (input l, input m (signed),
    output row, α complex): a negative input order reads (−1)^m conj(f_{l,|m|}) (S²) or conj(f_{|k|}) (S¹)."""
    import scipy.sparse as sp  # deferred: scipy.sparse costs 0.1–0.2 s of import spde_tokens
    rows, cols, vals = [], [], []
    for in_l, in_m, out_row, alpha in terms:
        keep = (out_row >= 0) & (alpha != 0)
        in_l, in_m, out_row, alpha = in_l[keep], in_m[keep], out_row[keep], alpha[keep]
        negative = in_m < 0
        if in_space.dim == 3:
            alpha = np.where(negative & (np.abs(in_m) % 2 == 1), -alpha, alpha)
        col = in_space.index(in_l, np.abs(in_m))
        keep = col >= 0
        col, out_row, alpha, negative = col[keep], out_row[keep], alpha[keep], negative[keep]
        conj = np.where(negative, -1.0, 1.0)  # α conj(f): Im f enters with the opposite sign
        re, im = alpha.real, alpha.imag
        # Re out += Re α Re f − (±) Im α Im f;  Im out += Im α Re f + (±) Re α Im f
        rows += [2 * out_row, 2 * out_row, 2 * out_row + 1, 2 * out_row + 1]
        cols += [2 * col, 2 * col + 1, 2 * col, 2 * col + 1]
        vals += [re, -conj * im, im, conj * re]
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    # a real field: the order-0 imaginary parts are 0, neither read nor written
    r_order0 = out_space.orders[r // 2] == 0
    c_order0 = in_space.orders[c // 2] == 0
    keep = (v != 0) & ~(r_order0 & (r % 2 == 1)) & ~(c_order0 & (c % 2 == 1))
    out = sp.csr_matrix((v[keep], (r[keep], c[keep])), shape=(2 * out_space.size, 2 * in_space.size))
    out.sum_duplicates()
    return out


def coordinate_matrices(dim: int, out_degree: int, in_degree: int) -> list[sp.csr_matrix]:
    """The d matrices of f ↦ x_i f from degree ≤ ``in_degree`` to degree ≤ ``out_degree`` (truncated there), on the
    real views of the coefficient vectors of :class:`_Space` (order-major; not the grid's own order on S²)."""
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 (S¹) or 3 (S²), got {dim}")
    out_space, in_space = _Space(dim, out_degree), _Space(dim, in_degree)
    ladder = _ladder(in_space)

    def terms(name: str, factor: complex) -> list[tuple[np.ndarray, ...]]:
        return [(l_in, m_in, out_space.index(l_out, m_out), factor * c)
                for l_in, m_in, l_out, m_out, c in ladder[name]]

    x = _real_matrix(out_space, in_space, terms("+", 0.5) + terms("-", 0.5))
    y = _real_matrix(out_space, in_space, terms("+", -0.5j) + terms("-", 0.5j))
    if dim == 2:
        return [x, y]
    return [x, y, _real_matrix(out_space, in_space, terms("z", 1.0))]


def _grid_rows(grid: Grid, space: _Space) -> np.ndarray:
    """Rows of ``space`` of the grid's coefficients, in the grid's order."""
    if isinstance(grid, SphereGrid):
        return space.index(grid.degrees, grid.orders)
    return space.index(grid.degrees, grid.degrees)


def _selection(rows: np.ndarray, size: int) -> sp.csr_matrix:
    """Real (2 size, 2 len(rows)) matrix placing coefficient j of a vector at row rows[j] of a space of ``size``."""
    import scipy.sparse as sp  # deferred: scipy.sparse costs 0.1–0.2 s of import spde_tokens
    real_rows = np.stack([2 * rows, 2 * rows + 1], axis=1).ravel()
    n = real_rows.size
    return sp.csr_matrix((np.ones(n), (real_rows, np.arange(n))), shape=(2 * size, n))


class CoordinateProducts:
    """Multiplication by x_i for the coefficients of one grid (degree L), in the grid's coefficient order.

    ``x[i]`` maps the real view of a coefficient vector of degree ≤ L + 1 to that of x_i f, truncated at degree
    L + 1 (order-major: ``space.degrees``, ``space.orders``, ``space.index``); ``embed`` places the grid's
    coefficients (degree ≤ L) in that space, ``restrict`` keeps degree ≤ L in the grid's order.
    ``restrict @ x[i] @ embed`` is P_L(x_i f).
    """

    def __init__(self, grid: Grid) -> None:
        if not isinstance(grid, (SphereGrid, CircleGrid)):
            raise ValueError(f"grid must be a SphereGrid or a CircleGrid, got {type(grid).__name__}")
        self.grid, self.dim = grid, grid.dim
        self.space = _Space(grid.dim, grid.degree_max + 1)
        self.x = coordinate_matrices(grid.dim, grid.degree_max + 1, grid.degree_max + 1)
        self.embed = _selection(_grid_rows(grid, self.space), self.space.size)
        self.restrict = self.embed.T.tocsr()

    def multiply(self, i: int, coeffs: np.ndarray) -> np.ndarray:
        """Coefficients (extended space, degree ≤ L + 1) of x_i f for the grid's coefficients of f: exact."""
        real = self.x[i] @ (self.embed @ np.ascontiguousarray(coeffs, dtype=complex).view(float))
        return real.view(complex)


class SpectralTransport:
    """ρ ↦ P_L(−div_S(ρ u)), u = P_x(M x + b), as a function of the grid's coefficients of ρ, with ``speed`` =
    an upper bound of max|u| over the sphere (|b| + ‖(M − Mᵀ)/2‖₂ + (λ_max − λ_min)((M + Mᵀ)/2)/2, the maximum
    itself for each model alone).

    No transform: one or two sparse products on the real view per call (docs/mathematics.md, 'Spectral transport
    of linear noise fields').
    """

    def __init__(self, apply: Callable[[np.ndarray], np.ndarray], speed: float) -> None:
        self._apply, self.speed = apply, speed

    def __call__(self, coeffs: np.ndarray) -> np.ndarray:
        return self._apply(np.ascontiguousarray(coeffs, dtype=complex).view(float)).view(complex)


class LinearTransport:
    """The sparse operators of the transport by linear fields on one grid, built once (see the module docstring).

    ``bias`` = [P_L K_i E] side by side (ρ ↦ Σ_i K_i (b_i ρ)), ``general`` = ([P_L K_i] side by side, [x_j E]
    stacked), ``rotation`` = [P_L (K_i x_j − K_j x_i) E] for i < j side by side (pruned of the cancelling l ± 2
    residues): each is built on first use.
    """

    def __init__(self, grid: Grid) -> None:
        self.products = CoordinateProducts(grid)
        self.dim = grid.dim
        self._cache: dict[str, tuple[sp.csr_matrix, ...]] = {}

    def _k(self) -> list[sp.csr_matrix]:
        """K_i = −½ Δ x_i + x_i (½ Δ + (d − 1)/2) on the extended space."""
        import scipy.sparse as sp  # deferred: scipy.sparse costs 0.1–0.2 s of import spde_tokens
        lap = sp.diags(self.products.space.real_laplacian())
        shift = sp.diags(0.5 * self.products.space.real_laplacian() + 0.5 * (self.dim - 1))
        return [(-0.5 * lap @ x + x @ shift).tocsr() for x in self.products.x]

    def _operators(self, name: str) -> tuple[sp.csr_matrix, ...]:
        import scipy.sparse as sp  # deferred: scipy.sparse costs 0.1–0.2 s of import spde_tokens
        if name not in self._cache:
            p, k = self.products, self._k()
            if name == "bias":
                self._cache[name] = (sp.hstack([p.restrict @ ki @ p.embed for ki in k]).tocsr(),)
            elif name == "general":
                self._cache[name] = (sp.hstack([p.restrict @ ki for ki in k]).tocsr(),
                                     sp.vstack([x @ p.embed for x in p.x]).tocsr())
            else:
                pairs = [(i, j) for i in range(self.dim) for j in range(i + 1, self.dim)]
                gens = []
                for i, j in pairs:
                    g = (p.restrict @ (k[i] @ p.x[j] - k[j] @ p.x[i]) @ p.embed).tocsr()
                    g.data[np.abs(g.data) < _PRUNE] = 0.0
                    g.eliminate_zeros()
                    gens.append(g)
                self._cache[name] = (sp.hstack(gens).tocsr(),)
        return self._cache[name]

    def operator(self, matrix: np.ndarray | None, vector: np.ndarray | None) -> SpectralTransport:
        """The transport by u = P_x(matrix · x + vector) (either may be None)."""
        d = self.dim
        m = np.zeros((d, d)) if matrix is None else np.asarray(matrix, dtype=float)
        b = np.zeros(d) if vector is None else np.asarray(vector, dtype=float)
        anti, sym = 0.5 * (m - m.T), 0.5 * (m + m.T)
        eig = np.linalg.eigvalsh(sym)
        speed = float(np.linalg.norm(b) + np.linalg.norm(anti, 2) + 0.5 * (eig[-1] - eig[0]))
        parts: list[Callable[[np.ndarray], np.ndarray]] = []
        if np.any(sym):  # the general composition Σ_i K_i Σ_j M_ij x_j ρ (+ b ρ)
            kx, xe = self._operators("general")
            embed, n_ext = self.products.embed, self.products.space.size

            def general(r: np.ndarray) -> np.ndarray:
                h = m @ (xe @ r).reshape(d, 2 * n_ext)
                if np.any(b):
                    h += np.multiply.outer(b, embed @ r)
                return kx @ h.ravel()

            parts.append(general)
        else:
            if np.any(anti):
                (rot,) = self._operators("rotation")
                omega = np.array([m[i, j] for i in range(d) for j in range(i + 1, d)])
                parts.append(lambda r: rot @ np.multiply.outer(omega, r).ravel())
            if np.any(b):
                (bias,) = self._operators("bias")
                parts.append(lambda r: bias @ np.multiply.outer(b, r).ravel())
        if not parts:
            return SpectralTransport(lambda r: np.zeros_like(r), speed)
        if len(parts) == 1:
            return SpectralTransport(parts[0], speed)
        return SpectralTransport(lambda r: parts[0](r) + parts[1](r), speed)


_TRANSPORTS: weakref.WeakKeyDictionary[Grid, LinearTransport] = weakref.WeakKeyDictionary()


def linear_transport(grid: Grid) -> LinearTransport | None:
    """The :class:`LinearTransport` of ``grid`` (built once per grid), or None for a grid without it (ZonalGrid)."""
    if not isinstance(grid, (SphereGrid, CircleGrid)):
        return None
    if grid not in _TRANSPORTS:
        _TRANSPORTS[grid] = LinearTransport(grid)
    return _TRANSPORTS[grid]
