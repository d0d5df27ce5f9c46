"""The sparse operators the dense engine builds once per model from A21's pattern: ``M``, which
maps the stacked per-level blocks of W1 to the lower triangle of A21 W1 A21' (the Schur
complement of :mod:`mixedref.engines.dense`), and, for scalar terms, the exact gradient's trace
operator ``G`` from the same pairs of A21's entries.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp

try:  # scipy's COO -> CSR counting sort
    from scipy.sparse._sparsetools import coo_tocsr as _coo_tocsr
except ImportError:  # pragma: no cover
    _coo_tocsr = None


def schur_operator(A21: sp.csc_matrix, q1: int, m1: int, r: int) -> sp.csc_matrix:
    """Sparse M with (M @ vec(W1)).reshape(r, r) = lower triangle of A21 W1 A21'.

    W1 is block diagonal (m1 blocks q1 x q1, flattened level-major, row-major within a block).
    Entry (i, j), i >= j, collects A21[i, (l,a)] W1[l,a,b] A21[j, (l,b)] over levels l and a, b.
    Held in CSC form (a column per W1 entry): its mat-vec is as fast as CSR's here, and for
    scalar first terms the columns come out of A21's columns already in order, with no sort.
    """
    indptr, rows, vals = A21.indptr, A21.indices, A21.data
    if q1 == 1:
        (indptr, flat, data), _ = _pair_arrays(A21, r)
        return sp.csc_matrix((data, flat, indptr), shape=(r * r, m1))
    start = indptr[0:m1 * q1:q1].astype(np.int64)
    k = (indptr[q1:m1 * q1 + 1:q1] - indptr[0:m1 * q1:q1]).astype(np.int64)
    entry_col = np.repeat(np.arange(m1 * q1), np.diff(indptr)) % q1
    k2 = k * k
    total = int(k2.sum())
    lvl = np.repeat(np.arange(m1, dtype=np.int64), k2)
    t = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(k2) - k2, k2)
    kk = k[lvl]
    e1 = start[lvl] + t // kk
    e2 = start[lvl] + t % kk
    del t, kk
    i, j = rows[e1], rows[e2]
    keep = i >= j
    e1, e2, lvl, i, j = e1[keep], e2[keep], lvl[keep], i[keep], j[keep]
    widx = lvl * (q1 * q1) + entry_col[e1] * q1 + entry_col[e2]
    data = vals[e1] * vals[e2]
    flat = i.astype(np.int64) * r + j
    Mt = _csr(widx, flat, data, (m1 * q1 * q1, r * r))  # CSR of M' is CSC of M
    return sp.csc_matrix((Mt.data, Mt.indices, Mt.indptr), shape=(r * r, m1 * q1 * q1))


def _pair_arrays(A: sp.csc_matrix, r: int, trace_m: int | None = None, gather: bool = False
                 ) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...] | None]:
    """(indptr, index, data) of the sparse matrix whose column c lists, for each pair of rows
    i >= j of A's column c (sorted indices), the value A[i, c] A[j, c] at index i * r + j;
    with ``trace_m`` also those of :func:`scalar_operators`' G, from the same pairs.

    The pairs come out column after column, increasing within a column, so no sort is needed;
    columns with the same number of entries share one pair pattern, so the loop runs over those
    counts (tril_indices is row-major: a length's pattern is a prefix of the longest one's).
    G's pairs are those with i < m, a prefix of each column's (its rows are sorted): they are
    taken from the finished arrays in whole-array passes, not group by group.
    """
    indptr, rows, vals = A.indptr, A.indices, A.data
    k = np.diff(indptr).astype(np.int64)
    colptr = np.zeros(k.size + 1, dtype=np.int64)
    np.cumsum(k * (k + 1) // 2, out=colptr[1:])
    total = int(colptr[-1])
    idx = np.int64 if max(r * r, total) >= 2**31 - 1 else np.int32  # int32: less traffic
    index, data = np.empty(total, dtype=idx), np.empty(total)
    kmax = int(k.max(initial=0))
    a_all, b_all = (_pairs_of if kmax <= CACHED_PAIRS else _pairs_of.__wrapped__)(kmax)
    # every column with the same number of entries (balanced designs): the entries are the
    # rows of one (columns, k) array and the pairs fill the outputs in order, with no gather
    # (``gather``: the general path always, for the tests)
    uniform = (not gather and kmax > 0 and indptr[0] == 0 and rows.size == k.size * kmax
               and bool(np.all(k == kmax)))
    for kv in ([kmax] if uniform else np.unique(k[k > 0])):
        npair = int(kv * (kv + 1) // 2)
        a, b = a_all[:npair], b_all[:npair]
        if uniform:
            rr, vv = rows.reshape(-1, kv).astype(idx), vals.reshape(-1, kv)
            pos: np.ndarray | slice = slice(None)
        else:
            cols = np.flatnonzero(k == kv)
            entries = indptr[cols][:, None] + np.arange(kv)
            rr, vv = rows[entries].astype(idx), vals[entries]
            pos = (colptr[cols][:, None] + np.arange(npair)).ravel()
        index[pos] = (rr[:, a] * idx(r) + rr[:, b]).ravel()
        data[pos] = (vv[:, a] * vv[:, b]).ravel()
    m = trace_m
    if m is None:
        return (colptr.astype(idx), index, data), None
    # off-diagonal pairs twice: all doubled, then the diagonal ones (i = j: entry a of a
    # column is its pair a (a + 3) / 2) set back
    gdata = data * 2.0
    a_in = np.arange(rows.size, dtype=np.int64) - np.repeat(indptr[:-1].astype(np.int64), k)
    diagonal = np.repeat(colptr[:-1], k) + a_in * (a_in + 3) // 2
    gdata[diagonal] = data[diagonal]
    if m == r:
        return (colptr.astype(idx), index, data), (colptr.astype(idx), index, gdata)
    # G keeps, per column, the pairs of its rows below m: a prefix
    below = np.concatenate([[0], np.cumsum(rows < m)])
    kk = (below[indptr[1:]] - below[indptr[:-1]]).astype(np.int64)
    gptr = np.zeros(k.size + 1, dtype=np.int64)
    np.cumsum(kk * (kk + 1) // 2, out=gptr[1:])
    keep = index < idx(m * r)  # i < m
    kept = index[keep]
    gindex = kept - (kept // idx(r)) * idx(r - m)  # i * m + j
    return (colptr.astype(idx), index, data), (gptr.astype(idx), gindex, gdata[keep])


#: :func:`_pairs_of` is kept for columns of at most this many entries (their pairs: 33k)
CACHED_PAIRS = 256


@functools.lru_cache(maxsize=64)
def _pairs_of(k: int) -> tuple[np.ndarray, np.ndarray]:
    """np.tril_indices(k), once per k and read-only: building it cost more than a small
    model's pairs."""
    a, b = np.tril_indices(k)
    for arr in (a, b):
        arr.setflags(write=False)
    return a, b


def scalar_operators(A21: sp.csc_matrix, m1: int, r: int, m: int
                      ) -> tuple[sp.csc_matrix, sp.csr_matrix]:
    """M (:func:`schur_operator`) and G for a scalar first term, built from the same pairs.

    G (m1 x m*m) has G @ vec_F(Pinv) = M' vec(P~), Pinv the m x m upper-triangular inverse
    dpotri returns (Fortran order) and P~ the symmetric P with off-diagonal entries doubled:
    M's entry for rows (i, j), i >= j, reads Pinv[j, i] at Fortran offset i * m + j, doubled
    when i != j. Rows i >= m (X and y in ML, whose trace covers the random-effects block only)
    drop out. G in CSR has M's CSC layout, so G @ p is a gather per level.
    """
    (indptr, index, data), (gptr, gindex, gdata) = _pair_arrays(A21, r, m)
    return (sp.csc_matrix((data, index, indptr), shape=(r * r, m1)),
            sp.csr_matrix((gdata, gindex, gptr), shape=(m1, m * m)))


def _csr(rows: np.ndarray, cols: np.ndarray, data: np.ndarray,
         shape: tuple[int, int]) -> sp.csr_matrix:
    """CSR from (row, col, value) triplets without duplicates, by one counting sort (column
    indices left unsorted within rows: the mat-vec products used here do not need them)."""
    if _coo_tocsr is None:  # pragma: no cover - scipy without the private kernel
        return sp.csr_matrix((data, (rows, cols)), shape=shape)
    nnz = data.size
    idx = np.int64 if max(shape) >= 2**31 - 1 or nnz >= 2**31 - 1 else np.int32
    indptr = np.empty(shape[0] + 1, dtype=idx)
    indices = np.empty(nnz, dtype=idx)
    out = np.empty(nnz, dtype=data.dtype)
    _coo_tocsr(shape[0], shape[1], nnz, rows.astype(idx, copy=False),
               cols.astype(idx, copy=False), data, indptr, indices, out)
    return sp.csr_matrix((out, indices, indptr), shape=shape)
