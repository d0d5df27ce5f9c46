"""PIRLS's weighted system in the dense engine's blocked layout (mixedref.engines.pirls drives it):
the
first term's per-level blocks factored as a batched stack, the later terms dense, joined by the
Schur complement; the cross-products re-formed from new working weights at fixed positions."""

from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dpotrf
from scipy.linalg.lapack import dtrtrs as _dtrtrs

from mixedref.engines.base import PIRLSError, WeightedFactor, WeightedSystem
from mixedref.frontend.design import ReTerm


class DenseWeightedSystem(WeightedSystem):
    """PIRLS's weighted system in this engine's blocked layout: block 1 the first term (one
    q1 x q1 block per level, factored as a batched stack), block 2 the later terms dense, joined
    by the Schur complement W'W with W = L1^-1 A12.

    Unlike :class:`DensePLSObjective`, whose cross-products are fixed and rescaled by theta,
    here the weights change every iteration: the cross-products are sums over Z Lambda's
    row-wise pairs of non-zeros, whose positions are fixed, so :meth:`reweight` forms each block
    by one bincount over positions precomputed here; for a scalar first term A21's entries are
    unique positions too, and W'W is a sum over the pairs of A21 entries sharing a first-term
    level (the pairs this engine's Schur operator is built from), when that is cheaper than the
    dense product.
    """

    engine = "dense"

    def __init__(self, terms: tuple[ReTerm, ...], X: np.ndarray) -> None:
        super().__init__(terms, X)
        K = self.K
        t1 = self.terms[0]
        q1, m1 = t1.q, t1.nlevels
        self.q1, self.m1, self.n1 = q1, m1, q1 * m1
        self.r2 = self.nre - self.n1
        self._diag_only = K == 1  # one scalar term: L L' is diagonal
        self._w_pairs = False
        # block 1 (the first term, block diagonal) and the dense rest, as pairs of Z Lambda's
        # row-wise non-zeros: A11 per level, A21 (rest x block 1) and A22 (rest x rest)
        c1 = self.cols[:, :q1]
        cr = self.cols[:, q1:] - self.n1
        i1, j1 = np.meshgrid(np.arange(q1), np.arange(q1), indexing="ij")
        self._p11 = (i1.ravel(), j1.ravel())
        self._f11 = (t1.codes[:, None] * (q1 * q1) + (i1 * q1 + j1).ravel()[None, :]).ravel()
        kr = K - q1
        ir, jr = np.meshgrid(np.arange(kr), np.arange(q1), indexing="ij")
        self._p21 = (q1 + ir.ravel(), jr.ravel())
        self._f21 = (cr[:, ir.ravel()] * self.n1 + c1[:, jr.ravel()]).ravel()
        if q1 == 1 and self.r2 > 0:
            # A21's pattern (rest x first-term levels) is fixed: its unique entries, and the
            # pairs of entries sharing a first-term level, whose products make W'W
            r21, c21 = cr[:, ir.ravel()].ravel(), c1[:, jr.ravel()].ravel()
            key, inv = np.unique(c21 * self.r2 + r21, return_inverse=True)
            self._u21 = inv.reshape(-1)
            self._e_rows, self._e_cols = key % self.r2, key // self.r2
            order = np.argsort(self._e_cols, kind="stable")  # key sorted by column already
            counts = np.bincount(self._e_cols, minlength=self.n1)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            e1, e2 = [], []
            for k in np.unique(counts[counts > 0]):
                cols_k = np.flatnonzero(counts == k)
                base = starts[cols_k][:, None] + np.arange(k)[None, :]
                e1.append(np.repeat(base, k, axis=1).ravel())
                e2.append(np.tile(base, (1, k)).ravel())
            self._pe1 = order[np.concatenate(e1)]
            self._pe2 = order[np.concatenate(e2)]
            self._pflat = self._e_rows[self._pe1] * self.r2 + self._e_rows[self._pe2]
            # W'W by the pairs costs ~20 operations a pair, dense W'W r2^2 n1 flops
            self._w_pairs = 20 * self._pflat.size < self.r2 * self.r2 * self.n1
        ia, ib = np.meshgrid(np.arange(kr), np.arange(kr), indexing="ij")
        self._p22 = (q1 + ia.ravel(), q1 + ib.ravel())
        self._f22 = (cr[:, ia.ravel()] * self.r2 + cr[:, ib.ravel()]).ravel()

    def reweight(self, V: np.ndarray, w: np.ndarray) -> WeightedFactor:
        """The factor of Lam'Z'WZ Lam + I at working weights ``w``, V Z Lambda's values."""
        if self._diag_only:
            d = np.bincount(self.cols[:, 0], weights=V[:, 0] ** 2 * w, minlength=self.nre) + 1.0
            return _DiagWeightedFactor(d)
        q1, m1, n1, r2 = self.q1, self.m1, self.n1, self.r2
        a, b = self._p11
        A11 = np.bincount(self._f11, weights=(V[:, a] * V[:, b] * w[:, None]).ravel(),
                          minlength=m1 * q1 * q1).reshape(m1, q1, q1)
        A11[:, np.arange(q1), np.arange(q1)] += 1.0
        if q1 == 1:
            L1 = np.sqrt(A11[:, 0, 0])
        else:
            L1 = np.linalg.cholesky(A11)
        if r2 == 0:
            return _BlockWeightedFactor(q1, m1, L1, _DenseW(np.zeros((n1, 0))), np.zeros((0, 0)))
        a, b = self._p21
        v21 = (V[:, a] * V[:, b] * w[:, None]).ravel()
        if q1 == 1 and self._w_pairs:  # A21 sparse (a row of Z meets one first-term level)
            vals = np.bincount(self._u21, weights=v21, minlength=self._e_rows.size)
            wv = vals / L1[self._e_cols]
            W = _CooW(self._e_cols, self._e_rows, wv, (n1, r2))
            WtW = np.bincount(self._pflat, weights=wv[self._pe1] * wv[self._pe2],
                              minlength=r2 * r2).reshape(r2, r2)
        else:
            A21 = np.bincount(self._f21, weights=v21, minlength=r2 * n1).reshape(r2, n1)
            if q1 == 1:
                Wd = A21.T / L1[:, None]
            else:
                F0 = _BlockWeightedFactor(q1, m1, L1, _DenseW(np.zeros((n1, r2))),
                                          np.zeros((r2, r2)))
                Wd = F0.half1(np.ascontiguousarray(A21.T))
            W, WtW = _DenseW(Wd), Wd.T @ Wd
        a, b = self._p22
        A22 = np.bincount(self._f22, weights=(V[:, a] * V[:, b] * w[:, None]).ravel(),
                          minlength=r2 * r2).reshape(r2, r2)
        A22.flat[::r2 + 1] += 1.0
        L2, info = dpotrf(A22 - WtW, lower=1, clean=1, overwrite_a=1)
        if info != 0:
            raise PIRLSError("Lambda'Z'WZLambda + I is not positive definite")
        return _BlockWeightedFactor(q1, m1, L1, W, L2)


class _DiagWeightedFactor(WeightedFactor):
    """L L' diagonal (one scalar term): d its diagonal."""

    def __init__(self, d: np.ndarray) -> None:
        self.diag2, self.size = d, d.size

    @property
    def logdet(self) -> float:
        return float(np.sum(np.log(self.diag2)))

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        d = self.diag2
        return rhs / (d if rhs.ndim == 1 else d[:, None])

    def half(self, rhs: np.ndarray) -> np.ndarray:
        s = np.sqrt(self.diag2)
        return rhs / (s if rhs.ndim == 1 else s[:, None])

    def half_t(self, rhs: np.ndarray) -> np.ndarray:
        return rhs / np.sqrt(self.diag2)

    def inverse_diagonal(self) -> np.ndarray:
        return 1.0 / self.diag2


class _DenseW:
    """W as a dense matrix: W x and W' y."""

    def __init__(self, W: np.ndarray) -> None:
        self.W = W

    def dot(self, x: np.ndarray) -> np.ndarray:
        return self.W @ x

    def tdot(self, y: np.ndarray) -> np.ndarray:
        return self.W.T @ y


class _CooW:
    """W as unique (row, col, value) triplets: W x and W' y by bincount (no scipy.sparse
    construction per PIRLS iteration)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray,
                 shape: tuple[int, int]) -> None:
        self.rows, self.cols, self.vals, self.shape = rows, cols, vals, shape

    def dot(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 1:
            return np.bincount(self.rows, weights=self.vals * x[self.cols],
                               minlength=self.shape[0])
        return np.column_stack([self.dot(x[:, j]) for j in range(x.shape[1])]) if x.shape[1] \
            else np.zeros((self.shape[0], 0))

    def tdot(self, y: np.ndarray) -> np.ndarray:
        if y.ndim == 1:
            return np.bincount(self.cols, weights=self.vals * y[self.rows],
                               minlength=self.shape[1])
        return np.column_stack([self.tdot(y[:, j]) for j in range(y.shape[1])]) if y.shape[1] \
            else np.zeros((self.shape[1], 0))


class _BlockWeightedFactor(WeightedFactor):
    """L = [[L1, 0], [W', L2]] with L1 block diagonal (one q1 x q1 lower factor per level of
    the first term; q1 = 1: a vector, and W sparse) and L2 dense: the Cholesky factor of
    [[A11, A12], [A21, A22]] with A11 = L1 L1', W = L1^-1 A12, L2 L2' = A22 - W'W."""

    def __init__(self, q1: int, m1: int, L1: np.ndarray, W, L2: np.ndarray) -> None:
        self.q1, self.m1, self.n1 = q1, m1, q1 * m1
        self.L1, self.W, self.L2 = L1, W, L2
        self.size = self.n1 + L2.shape[0]

    @property
    def logdet(self) -> float:
        d1 = self.L1 if self.q1 == 1 else np.diagonal(self.L1, axis1=1, axis2=2)
        return 2.0 * float(np.sum(np.log(d1)) + np.sum(np.log(np.diagonal(self.L2))))

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        return self.half_t(self.half(rhs))

    def inverse_diagonal(self) -> np.ndarray:
        Linv = self.half(np.eye(self.size))
        return np.sum(Linv * Linv, axis=0)

    def half1(self, x: np.ndarray, trans: bool = False) -> np.ndarray:
        """L1^-1 x (or L1^-T x) for x with n1 rows."""
        if self.q1 == 1:
            return x / (self.L1 if x.ndim == 1 else self.L1[:, None])
        L = np.swapaxes(self.L1, 1, 2) if trans else self.L1
        shape = x.shape
        xb = x.reshape(self.m1, self.q1, -1)
        return np.linalg.solve(L, xb).reshape(shape)

    def half(self, x: np.ndarray) -> np.ndarray:
        n1 = self.n1
        y1 = self.half1(x[:n1])
        if self.L2.shape[0] == 0:
            return y1
        y2 = _lower_solve(self.L2, x[n1:] - self.W.tdot(y1), trans=0)
        return np.concatenate([y1, y2])

    def half_t(self, y: np.ndarray) -> np.ndarray:
        n1 = self.n1
        if self.L2.shape[0] == 0:
            return self.half1(y, trans=True)
        x2 = _lower_solve(self.L2, y[n1:], trans=1)
        x1 = self.half1(y[:n1] - self.W.dot(x2), trans=True)
        return np.concatenate([x1, x2])


def _lower_solve(L: np.ndarray, rhs: np.ndarray, trans: int) -> np.ndarray:
    """L^-1 rhs (trans 0) or L^-T rhs (trans 1) for lower-triangular L, by LAPACK's dtrtrs
    directly: scipy's solve_triangular costs ~60 µs of checks per call, and PIRLS calls it
    several times per iteration on small systems."""
    if L.shape[0] == 0:
        return np.array(rhs, dtype=float)
    x, info = _dtrtrs(L, rhs, lower=1, trans=trans)
    if info != 0:
        raise PIRLSError(f"singular triangular factor (LAPACK dtrtrs info {info})")
    return x
