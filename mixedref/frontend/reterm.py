"""One random-effects term, as MixedModels.jl's ReMat: its model matrix, grouping levels and
the relative covariance factor's template, with everything that maps θ to Λ and back (positions,
lower bounds, start, template, θ from a covariance), so no other module re-derives them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import scipy.sparse as sp

from mixedref.errors import MixedrefError


def theta_positions(q: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a term's theta elements in its q x q lower-triangular template: the
    lower triangle in column-major order, as lme4 orders theta."""
    rows, cols = np.tril_indices(q)
    order = np.lexsort((rows, cols))
    return rows[order], cols[order]


@lru_cache(maxsize=64)
def _bounds_of(q: int) -> tuple[np.ndarray, np.ndarray]:
    """lme4's lower bounds and starting θ of a q-column term, once per q, read-only (the
    optimizer asks for them several times per fit: a where per term each time)."""
    rows, cols = theta_positions(q)
    lower = np.where(rows == cols, 0.0, -np.inf)
    start = np.where(np.isfinite(lower), 1.0, 0.0)
    lower.setflags(write=False)
    start.setflags(write=False)
    return lower, start


#: A variance (relative to the scale of the covariance) below this is treated as zero when a
#: covariance is factored back into θ (a singular fit: zero variance, or |ρ| = 1).
ZERO_VARIANCE = 1e-14


def psd_cholesky(S: np.ndarray, zero: float = ZERO_VARIANCE) -> np.ndarray:
    """Lower L with L Lᵀ = S for a positive *semi*-definite S, with L's column zeroed where its
    pivot vanishes. numpy refuses singular matrices; the criterion depends on θ only through
    Λ Λᵀ, so any factor gives the same criterion, and this one is as lme4 reports it. Small
    negative pivots from rounding (|ρ| printed as 1.00) are treated as zero. "Small" is relative
    to the column's own variance, not the term's largest: columns on scales 1e-4 and 1e4 in one
    term (sim_badscale3) have variances 1e16 apart, and a genuine pivot of the small one must
    survive."""
    S = np.asarray(S, dtype=float)
    q = S.shape[0]
    L = np.zeros_like(S)
    for j in range(q):
        d = S[j, j] - L[j, :j] @ L[j, :j]
        if d <= zero * max(float(S[j, j]), 0.0):
            continue  # column j stays zero
        L[j, j] = np.sqrt(d)
        for i in range(j + 1, q):
            L[i, j] = (S[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
    return L


@dataclass(frozen=True)
class TermShape:
    """What θ sees of a random-effects term: its grouping factor and columns. It owns the θ ↔ Λ
    mapping of the term (MixedModels.jl's ReMat: λ, inds, lowerbd, setθ!, getθ)."""

    group: str  # grouping factor's name as lme4 prints it: "Subject", "cask:batch"
    columns: tuple[str, ...]  # "(Intercept)", "Days", "fA", ...

    @property
    def q(self) -> int:
        return len(self.columns)

    @property
    def ntheta(self) -> int:
        return self.q * (self.q + 1) // 2

    @cached_property
    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of θ's elements in the q x q template (theta_positions)."""
        return theta_positions(self.q)

    def theta_index(self) -> list[tuple[int, int]]:
        """(row, col) of each θ element in the template, in θ's order."""
        rows, cols = self.positions
        return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True)]

    @property
    def theta_lower(self) -> np.ndarray:
        """lme4's bounds: 0 for diagonal elements of the Cholesky template, -inf elsewhere,
        in the template's column-major lower-triangle order."""
        return _bounds_of(self.q)[0].copy()

    @property
    def theta_start(self) -> np.ndarray:
        """lme4's starting value: the identity template."""
        return _bounds_of(self.q)[1].copy()

    def template(self, theta_k: np.ndarray) -> np.ndarray:
        """The q x q lower-triangular template T (Λ's block) with this term's θ filled in."""
        T = np.zeros((self.q, self.q))
        T[self.positions] = theta_k
        return T

    def theta_of(self, T: np.ndarray) -> np.ndarray:
        """θ of a lower-triangular template (the inverse of :meth:`template`)."""
        return np.asarray(T, dtype=float)[self.positions]

    def theta_from_covariance(self, S: np.ndarray) -> np.ndarray:
        """θ whose template T has T Tᵀ = S, for S the term's covariance in units of σ²
        (positive semi-definite: boundary estimates included)."""
        return self.theta_of(psd_cholesky(S))

    def covariance(self, theta_k: np.ndarray) -> np.ndarray:
        """T Tᵀ: the term's covariance in units of σ² at θ."""
        T = self.template(theta_k)
        return T @ T.T

    def theta_names(self) -> list[str]:
        """lme4's names (as getME(m, "theta")): group.col for a diagonal, group.row.col else."""
        return [f"{self.group}.{self.columns[i]}" if i == j else
                f"{self.group}.{self.columns[i]}.{self.columns[j]}"
                for i, j in self.theta_index()]


def theta_slices(terms: Sequence[TermShape]) -> tuple[slice, ...]:
    """Each term's slice of θ, in the terms' order: :func:`split_theta`'s cuts, for callers that
    split many θ of one model (the PLS engines, once per evaluation) to compute once."""
    ends = np.cumsum([t.ntheta for t in terms], dtype=np.int64).tolist()
    return tuple(slice(a, b) for a, b in zip([0, *ends[:-1]], ends, strict=True))


def split_theta(theta: np.ndarray, terms: Sequence[TermShape],
                slices: Sequence[slice] | None = None) -> list[np.ndarray]:
    """θ cut into the per-term pieces (views), in the terms' order; ``slices`` are
    :func:`theta_slices` of the terms where the caller keeps them. A θ of another length is
    refused (MixedrefError, a ValueError)."""
    if slices is None:
        slices = theta_slices(terms)
    theta = _of_length(theta, slices[-1].stop if slices else 0)
    return [theta[s] for s in slices]


def templates(theta: np.ndarray, terms: Sequence[TermShape],
              slices: Sequence[slice] | None = None) -> list[np.ndarray]:
    """Per term its lower-triangular template T_k (Λ's block) from its piece of θ
    (:func:`split_theta`'s, cut in the same pass: the engines call this per evaluation)."""
    if slices is None:
        slices = theta_slices(terms)
    theta = _of_length(theta, slices[-1].stop if slices else 0)
    return [t.template(theta[s]) for t, s in zip(terms, slices, strict=True)]


def _of_length(theta: np.ndarray, total: int) -> np.ndarray:
    """θ as a float array, refused (MixedrefError) unless it has ``total`` elements."""
    theta = np.asarray(theta, dtype=float)
    if theta.shape != (total,):
        raise MixedrefError(f"theta must have {total} elements, got {theta.shape}")
    return theta


@dataclass(frozen=True, eq=False)
class ReTerm(TermShape):
    """One random-effects term ``(expr | group)`` after expansion (``||`` and ``/`` split).

    ``X`` is the term's own model matrix (n x q, columns named as R names them), ``codes`` the
    level index of each row in ``levels``. The term's random effects are ordered level-major
    (all q effects of level 1, then level 2, ...), as lme4's Zt rows, so that Lambda is
    block diagonal with one q x q lower-triangular template per level.
    """

    X: np.ndarray  # n x q float64
    codes: np.ndarray  # n int64, in [0, nlevels)
    levels: tuple[str, ...]

    __eq__ = object.__eq__  # a term is itself: two terms on one factor are different terms
    __hash__ = object.__hash__

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @cached_property
    def Z(self) -> sp.csc_matrix:
        """n x (nlevels*q) sparse design, level-major columns."""
        return term_z(self.X, self.codes, self.q, self.nlevels)


def term_z(X: np.ndarray, codes: np.ndarray, q: int, m: int) -> sp.csc_matrix:
    """A term's n x (m*q) sparse design from its model matrix X (n x q, rows weighted as given)
    and level codes: level-major columns, as lme4's Zt rows."""
    X = np.asarray(X, dtype=float)
    codes = np.asarray(codes)
    n = X.shape[0]
    # built in CSC form directly (as the COO conversion orders it: each column's rows
    # ascending, explicit zeros kept): column l*q + a holds the rows of level l, values X[:, a]
    idx = np.int32 if max(n * q, n, m * q) < 2**31 - 1 else np.int64
    order = np.argsort(codes, kind="stable").astype(idx, copy=False)
    counts = np.bincount(codes, minlength=m)
    if q == 1:
        indptr = np.zeros(m + 1, dtype=idx)
        np.cumsum(counts, out=indptr[1:])
        return sp.csc_matrix((X[order, 0], order, indptr), shape=(n, m))
    per_col = np.repeat(counts, q)
    indptr = np.zeros(m * q + 1, dtype=idx)
    np.cumsum(per_col, out=indptr[1:])
    col = np.repeat(np.arange(m * q), per_col)
    level, a = col // q, col % q
    start = np.cumsum(counts) - counts
    rows = order[start[level] + (np.arange(col.size) - indptr[col])]
    return sp.csc_matrix((X[rows, a], rows, indptr), shape=(n, m * q))


def z_columns(terms: Sequence[ReTerm]) -> np.ndarray:
    """Z's layout row by row for the terms stacked (n x sum of q): the column of each of a row's
    non-zeros, term after term, level-major within a term as :func:`term_z` and lme4's Zt
    rows (term k's value a of the row's level l sits at the term's offset + l q + a)."""
    cols, off = [], 0
    for t in terms:
        cols.append(off + np.asarray(t.codes, dtype=np.int64)[:, None] * t.q
                    + np.arange(t.q)[None, :])
        off += t.q * t.nlevels
    return np.ascontiguousarray(np.hstack(cols))
