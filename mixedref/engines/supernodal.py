"""CHOLMOD's supernodal factor held directly (ctypes), and the selected inverse on its pattern.

The sparse engine's gradient (:mod:`mixedref.engines.sparse`) needs entries of
A^-1 = (Lam'Z'Z Lam + I)^-1 at the pairs of random effects that share an observation. Those
pairs are in A's pattern, hence in L's (L L' = P A P'), and Takahashi's equations give
Z = (L L')^-1 on L's whole pattern from L alone, supernode by supernode from the last:

    Y    = L_RJ L_JJ^-1
    Z_RJ = -Z_RR Y
    Z_JJ = (L_JJ L_JJ')^-1 - Y' Z_RJ

with J a supernode's columns and R the rows below them (all in later supernodes, whose Z is
done). The flops are of the factorization's order (about twice those of its dense root block,
which dominates on the crossed designs), the loop runs once per supernode with dense BLAS
inside. scikit-sparse does not expose the supernodal arrays, so this module runs CHOLMOD's
analysis and numeric factorization itself (``cholmod_analyze``, ``cholmod_factorize_p``) and
reads L's supernodal arrays in place (no copy); solves go through ``cholmod_solve``.

Everything that depends only on the pattern (the gather positions of each supernode's Z_RR,
the positions of the requested pairs) is computed once, at construction.
"""

from __future__ import annotations

import ctypes

import numpy as np
from scipy.linalg.blas import dgemm
from scipy.linalg.lapack import dpotri, dtrtrs

from mixedref.errors import MixedrefError

_CHOLMOD_L, _CHOLMOD_LT = 4, 5
_CHOLMOD_SUPERNODAL = 2
#: offset of cholmod_common's ``supernodal`` field (CHOLMOD 3-5; checked against its default)
_SUPERNODAL_OFFSET = 48
#: Gather positions of all supernodes' Z_RR blocks held at most (entries, int32): beyond this
#: the selected inverse is not offered (the memory would be the factor's several times over).
MAX_GATHER = 60_000_000
#: Leaves of the supernodal tree with at most this many columns are done together, per shape
#: (one numpy call per batch instead of several per supernode).
BATCH_MAX_COLUMNS = 8


class _Sparse(ctypes.Structure):
    _fields_ = [("nrow", ctypes.c_size_t), ("ncol", ctypes.c_size_t),
                ("nzmax", ctypes.c_size_t), ("p", ctypes.c_void_p), ("i", ctypes.c_void_p),
                ("nz", ctypes.c_void_p), ("x", ctypes.c_void_p), ("z", ctypes.c_void_p),
                ("stype", ctypes.c_int), ("itype", ctypes.c_int), ("xtype", ctypes.c_int),
                ("dtype", ctypes.c_int), ("sorted", ctypes.c_int), ("packed", ctypes.c_int)]


class _Dense(ctypes.Structure):
    _fields_ = [("nrow", ctypes.c_size_t), ("ncol", ctypes.c_size_t),
                ("nzmax", ctypes.c_size_t), ("d", ctypes.c_size_t), ("x", ctypes.c_void_p),
                ("z", ctypes.c_void_p), ("xtype", ctypes.c_int), ("dtype", ctypes.c_int)]


class _Factor(ctypes.Structure):  # the leading fields of cholmod_factor (CHOLMOD 3-5)
    _fields_ = [("n", ctypes.c_size_t), ("minor", ctypes.c_size_t),
                ("Perm", ctypes.c_void_p), ("ColCount", ctypes.c_void_p),
                ("IPerm", ctypes.c_void_p), ("nzmax", ctypes.c_size_t),
                ("p", ctypes.c_void_p), ("i", ctypes.c_void_p), ("x", ctypes.c_void_p),
                ("z", ctypes.c_void_p), ("nz", ctypes.c_void_p), ("next", ctypes.c_void_p),
                ("prev", ctypes.c_void_p), ("nsuper", ctypes.c_size_t),
                ("ssize", ctypes.c_size_t), ("xsize", ctypes.c_size_t),
                ("maxcsize", ctypes.c_size_t), ("maxesize", ctypes.c_size_t),
                ("super_", ctypes.c_void_p), ("pi", ctypes.c_void_p), ("px", ctypes.c_void_p),
                ("s", ctypes.c_void_p), ("ordering", ctypes.c_int), ("is_ll", ctypes.c_int),
                ("is_super", ctypes.c_int), ("is_monotonic", ctypes.c_int)]


def _bind(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Declare the CHOLMOD calls this module makes (idempotent)."""
    vp = ctypes.c_void_p
    lib.cholmod_start.argtypes = [vp]
    lib.cholmod_finish.argtypes = [vp]
    lib.cholmod_analyze.argtypes = [vp, vp]
    lib.cholmod_analyze.restype = vp
    lib.cholmod_factorize_p.argtypes = [vp, vp, vp, ctypes.c_size_t, vp, vp]
    lib.cholmod_factorize_p.restype = ctypes.c_int
    lib.cholmod_solve.argtypes = [ctypes.c_int, vp, vp, vp]
    lib.cholmod_solve.restype = vp
    lib.cholmod_free_dense.argtypes = [vp, vp]
    lib.cholmod_free_factor.argtypes = [vp, vp]
    return lib


def _ints(ptr: int, size: int) -> np.ndarray:
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_int)), shape=(size,))


class SupernodalFactor:
    """L L' = P (Ut Ut' + I) P' for a CSC ``Ut`` (int32 indices) whose values change in place
    (the pattern is analysed once); CHOLMOD's supernodal L read as numpy arrays."""

    def __init__(self, lib: ctypes.CDLL, indptr: np.ndarray, indices: np.ndarray,
                 data: np.ndarray, nrow: int) -> None:
        if indices.dtype != np.int32 or indptr.dtype != np.int32:
            raise MixedrefError("the supernodal factor needs int32 indices")
        self._lib = _bind(lib)
        self._common = ctypes.create_string_buffer(1 << 16)  # larger than any cholmod_common
        if not lib.cholmod_start(self._common):
            raise MixedrefError("cholmod_start failed")
        self._L = None
        mode = ctypes.c_int.from_buffer(self._common, _SUPERNODAL_OFFSET)
        switch = ctypes.c_double.from_buffer(self._common, _SUPERNODAL_OFFSET - 8).value
        if mode.value != 1 or switch != 40.0:  # not CHOLMOD's defaults: another layout
            raise MixedrefError("unexpected cholmod_common layout")
        mode.value = _CHOLMOD_SUPERNODAL
        self._keep = (indptr, indices, data)  # CHOLMOD reads these buffers in place
        self._A = _Sparse(nrow, indptr.size - 1, indices.size, indptr.ctypes.data,
                          indices.ctypes.data, None, data.ctypes.data, None, 0, 0, 1, 0, 1, 1)
        L = lib.cholmod_analyze(ctypes.byref(self._A), self._common)
        if not L:
            raise MixedrefError("cholmod_analyze failed")
        self._L = L
        self._beta = (ctypes.c_double * 2)(1.0, 0.0)
        self.n = nrow
        self._selinv: _SelectedInverse | None = None
        self.x = np.zeros(0)  # L's values, mapped by the first factorization (which allocates)
        self._map()  # the symbolic supernodal structure, which analyze has made
        nsc = np.diff(self.super)
        nsrow = np.diff(self.pi)
        first = self.px[:-1].astype(np.int64)
        # positions of L's diagonal in x: per supernode, column c at row c
        local = np.arange(int(nsc.sum())) - np.repeat(self.super[:-1], nsc)
        self._diag = np.repeat(first, nsc) + local * np.repeat(nsrow + 1, nsc)
        self.nsc, self.nsrow = nsc, nsrow

    def _map(self) -> None:
        """Read L's arrays in place (the integer structure after the analysis; the values once
        a numeric factorization has allocated them: the same buffer is refilled after)."""
        f = ctypes.cast(self._L, ctypes.POINTER(_Factor)).contents
        if not f.is_super:
            raise MixedrefError("CHOLMOD did not make a supernodal factor")
        ns, n = int(f.nsuper), self.n
        self.super = _ints(f.super_, ns + 1)
        self.pi = _ints(f.pi, ns + 1)
        self.px = _ints(f.px, ns + 1)
        self.s = _ints(f.s, int(f.ssize))
        self.perm = _ints(f.Perm, n).astype(np.int64)
        self.iperm = np.empty(n, dtype=np.int64)
        self.iperm[self.perm] = np.arange(n)
        if f.x:
            self.x = np.ctypeslib.as_array(ctypes.cast(f.x, ctypes.POINTER(ctypes.c_double)),
                                           shape=(int(f.xsize),))

    def __del__(self) -> None:
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        if self._L:
            Lp = ctypes.c_void_p(self._L)
            lib.cholmod_free_factor(ctypes.byref(Lp), self._common)
            self._L = None
        lib.cholmod_finish(self._common)

    def factorize(self, Ut: object = None) -> bool:
        """Refactor with Ut's current values (the buffers given at construction, rewritten in
        place; ``Ut`` is accepted for the interface's sake); False where Ut Ut' + I is not
        positive definite (numerically)."""
        self._lib.cholmod_factorize_p(ctypes.byref(self._A), self._beta, None, 0, self._L,
                                      self._common)
        f = ctypes.cast(self._L, ctypes.POINTER(_Factor)).contents
        if self.x.size != int(f.xsize):  # the first numeric factorization
            self._map()
        return int(f.minor) >= self.n

    def logdet(self) -> float:
        """log det (Ut Ut' + I)."""
        return 2.0 * float(np.sum(np.log(self.x[self._diag])))

    # -- solves ------------------------------------------------------------------------------
    def _solve(self, system: int, B: np.ndarray) -> np.ndarray:
        B = np.asfortranarray(B, dtype=float)
        two = B.ndim == 2
        nc = B.shape[1] if two else 1
        D = _Dense(self.n, nc, self.n * nc, self.n, B.ctypes.data, None, 1, 0)
        X = self._lib.cholmod_solve(system, self._L, ctypes.byref(D), self._common)
        if not X:
            raise MixedrefError("cholmod_solve failed")
        try:
            d = ctypes.cast(X, ctypes.POINTER(_Dense)).contents
            out = np.ctypeslib.as_array(ctypes.cast(d.x, ctypes.POINTER(ctypes.c_double)),
                                        shape=(nc, self.n)).T.copy()
        finally:
            Xp = ctypes.c_void_p(X)
            self._lib.cholmod_free_dense(ctypes.byref(Xp), self._common)
        return out if two else out[:, 0]

    def half(self, B: np.ndarray) -> np.ndarray:
        """L^-1 P B."""
        return self._solve(_CHOLMOD_L, B[self.perm])

    def half_t(self, B: np.ndarray) -> np.ndarray:
        """P' L^-T B."""
        out = np.empty_like(B, dtype=float)
        out[self.perm] = self._solve(_CHOLMOD_LT, B)
        return out

    def solve_A(self, B: np.ndarray) -> np.ndarray:
        """(Ut Ut' + I)^-1 B."""
        return self.half_t(self.half(B))

    # -- the selected inverse ------------------------------------------------------------------
    def pair_positions(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Where (A^-1)[rows, cols] (original order, pairs in A's pattern) sits in the array
        :meth:`selected_inverse` returns."""
        a, b = self.iperm[rows], self.iperm[cols]
        return self.position(np.maximum(a, b), np.minimum(a, b))

    def selected_inverse_fits(self) -> bool:
        """Whether the selected inverse's gather positions stay within MAX_GATHER entries."""
        r = (self.nsrow - self.nsc).astype(np.float64)
        return float(np.sum(r * r)) <= MAX_GATHER

    def selected_inverse_ratio(self) -> float:
        """The selected inverse's flops over the factorization's, from the supernodes' sizes
        (c columns, r rows below): factor c^3/3 + c^2 r + c r^2, inverse 2c^3/3 + c^2 r +
        2 c r^2 + 2 c^2 r (dpotri, the triangular solve and the two products)."""
        c = self.nsc.astype(float)
        r = (self.nsrow - self.nsc).astype(float)
        fac = np.sum(c**3 / 3 + c * c * r + c * r * r)
        inv = np.sum(2 * c**3 / 3 + 3 * c * c * r + 2 * c * r * r)
        return float(inv / max(fac, 1.0))

    def selected_inverse(self) -> np.ndarray:
        """(L L')^-1 on L's pattern, in L's supernodal layout (the factor must be current)."""
        if self._selinv is None:
            self._selinv = _SelectedInverse(self)
        return self._selinv.run()

    def position(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Positions in the supernodal layout of the entries (i, j) of the permuted factor,
        i >= j, (i, j) in L's pattern (checked)."""
        t = np.searchsorted(self.super, j, side="right") - 1
        keys = self._row_keys()
        want = t.astype(np.int64) * self.n + i
        k = np.searchsorted(keys, want)
        k = np.minimum(k, keys.size - 1)
        if not np.array_equal(keys[k], want):
            raise MixedrefError("internal: a requested entry is outside the factor's pattern")
        rowpos = k - self.pi[t]
        return (self.px[t].astype(np.int64) + rowpos
                + (j - self.super[t]).astype(np.int64) * self.nsrow[t])

    def _row_keys(self) -> np.ndarray:
        if not hasattr(self, "_keys"):
            owner = np.repeat(np.arange(self.nsrow.size, dtype=np.int64), self.nsrow)
            self._keys = owner * self.n + self.s
            if np.any(np.diff(self._keys) <= 0):
                raise MixedrefError("internal: supernodal row indices are not sorted")
        return self._keys


class _SelectedInverse:
    """Takahashi's recurrence over CHOLMOD's supernodes (see the module's docstring), with the
    gather positions of every supernode's Z_RR computed once."""

    def __init__(self, f: SupernodalFactor) -> None:
        self.f = f
        nsc, nsrow = f.nsc, f.nsrow
        nr = (nsrow - nsc).astype(np.int64)
        if float(np.sum(nr * nr)) > MAX_GATHER:
            raise MixedrefError("the selected inverse would need too many gather positions")
        self.gather: list[np.ndarray | None] = []
        for k in range(nsc.size):
            r = int(nr[k])
            if r == 0:
                self.gather.append(None)
                continue
            R = f.s[f.pi[k] + nsc[k]:f.pi[k + 1]].astype(np.int64)
            ia, ib = np.tril_indices(r)
            pos = f.position(R[ia], R[ib])
            full = np.empty((r, r), dtype=np.int64)
            full[ia, ib] = pos
            full[ib, ia] = pos
            self.gather.append(full.astype(np.int32).ravel())
        self.Z = np.empty_like(f.x)
        # small leaves of the supernodal tree (no other supernode's rows reach into them, so
        # they depend on others only): done last, batched by shape (c columns, r rows below)
        parent_of = np.full(nsc.size, -1)
        for k in range(nsc.size):
            if nr[k]:
                parent_of[k] = np.searchsorted(f.super, f.s[f.pi[k] + nsc[k]], side="right") - 1
        leaf = np.ones(nsc.size, dtype=bool)
        leaf[parent_of[parent_of >= 0]] = False
        batched = leaf & (nr > 0) & (nsc <= BATCH_MAX_COLUMNS)
        self.serial = np.flatnonzero(~batched)[::-1]
        self.batches = []
        keys = nsc[batched].astype(np.int64) * (int(nr.max(initial=0)) + 1) + nr[batched]
        members = np.flatnonzero(batched)
        for key in np.unique(keys):
            ks = members[keys == key]
            c, m = int(nsc[ks[0]]), int(nsrow[ks[0]])
            pos = (f.px[ks].astype(np.int64)[:, None] + np.arange(c * m)).ravel()
            gat = np.concatenate([self.gather[k] for k in ks])
            self.batches.append((c, m - c, ks.size, pos, gat))

    def run(self) -> np.ndarray:
        f, Z, x = self.f, self.Z, self.f.x
        px, nsc, nsrow = f.px, f.nsc, f.nsrow
        for k in self.serial:
            c, m = int(nsc[k]), int(nsrow[k])
            a, b = int(px[k]), int(px[k + 1])
            blk = x[a:b].reshape(c, m)  # row j: column j of the supernode (rows down)
            out = Z[a:b].reshape(c, m)
            g = self.gather[k]
            if c == 1:
                d = blk[0, 0]
                if g is None:
                    out[0, 0] = 1.0 / (d * d)
                    continue
                y = blk[0, 1:] / d
                r = y.size
                zr = -(Z[g].reshape(r, r) @ y)
                out[0, 1:] = zr
                out[0, 0] = 1.0 / (d * d) - float(y @ zr)
                continue
            # blk[:, :c] holds L_JJ' (its transpose L_JJ is Fortran-ordered, lower valid).
            # Only lower-triangle entries of Z are ever read (gathers map (i, j) to i >= j), so
            # (L_JJ L_JJ')^-1 stays as dpotri leaves it: lower triangle valid, upper not
            Ljj = np.array(blk[:, :c].T, order="F")  # a copy: dpotri overwrites it
            inv, info = dpotri(Ljj, lower=1, overwrite_c=1)
            if info != 0:
                raise MixedrefError("internal: the selected inverse met a singular block")
            if g is None:
                out[:, :c] = inv.T  # out[j, i] = Z[J_i, J_j]
                continue
            r = m - c
            # Y' = L_JJ^-T L_RJ' (c x r): L_JJ' Y' = L_RJ', with L_RJ' = blk[:, c:]
            Yt, info = dtrtrs(np.asfortranarray(blk[:, :c].T), blk[:, c:], lower=1, trans=1)
            Zrr = Z[g].reshape(r, r)
            Zjr = -dgemm(1.0, Yt, Zrr)  # (Z_RJ)' = -Y' Z_RR (Z_RR symmetric)
            out[:, c:] = Zjr
            # Z_JJ = inv - Y' Z_RJ, stored transposed (out[j, i] = Z[J_i, J_j]): its lower
            # triangle from inv's lower triangle
            out[:, :c] = inv.T
            out[:, :c] -= dgemm(1.0, Zjr, Yt, trans_b=1)
        for c, r, nb, pos, gat in self.batches:
            blk = x[pos].reshape(nb, c, c + r)
            Lt = np.triu(blk[:, :, :c])  # L_JJ' per member
            Linv = np.linalg.inv(np.swapaxes(Lt, 1, 2))  # L_JJ^-1
            Yt = np.matmul(np.swapaxes(Linv, 1, 2), blk[:, :, c:])  # Y' = L_JJ^-T L_RJ'
            Zjr = -np.matmul(Yt, Z[gat].reshape(nb, r, r))
            inv = np.matmul(np.swapaxes(Linv, 1, 2), Linv)  # (L_JJ L_JJ')^-1
            Zjj = inv - np.matmul(Zjr, np.swapaxes(Yt, 1, 2))
            Z[pos] = np.concatenate([Zjj, Zjr], axis=2).ravel()
        return Z
