"""The general sparse PLS engine: CHOLMOD's supernodal Cholesky of Lam'Z'Z Lam + I.

As lme4 (update(L, Ut, mult = 1)): Ut = Lam'Z' has a pattern fixed by the design, so the
fill-reducing ordering and the symbolic analysis run once (CHOLMOD's analyze of Ut Ut'), and
each theta only recomputes Ut's values and refactors numerically (cholesky_AAt_inplace with
beta = 1). With L L' = P (Ut Ut' + I) P' and W = L^-1 P Ut [X y] (X and y weighted, y
residualized on X as in :mod:`mixedref.engines.base`), the fixed-effects block is the Cholesky
factor of [X y]'[X y] - W'W = [[R_X'R_X, .], [., .]], whose last diagonal element squared is
pwrss: the same quantities as the blocked dense engine, read off the same way.

The interface is :class:`mixedref.engines.base.PLSEngine`'s (``__call__``, ``solve``,
``templates``, ``lower``, ``size``); :mod:`mixedref.engines.factory` chooses between the two
engines by cost and memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.linalg.lapack import dpotrf

from mixedref.engines.base import (
    CriterionPieces,
    PIRLSError,
    PLSEngine,
    PLSSolution,
    WeightedFactor,
    WeightedSystem,
    not_positive_definite,
)
from mixedref.engines.supernodal import (
    _CHOLMOD_SUPERNODAL,
    _SUPERNODAL_OFFSET,
    SupernodalFactor,
    _Factor,
    _Sparse,
)
from mixedref.errors import MixedrefError
from mixedref.fitting import threads
from mixedref.frontend.design import ModelFrame, ReTerm

try:
    from sksparse import cholmod as _cholmod
except ImportError:  # pragma: no cover - scikit-sparse not installed
    _cholmod = None

#: Right-hand sides per CHOLMOD solve when the conditional variances are computed.
_CONDVAR_CHUNK = 256
#: The gradient reads the selected inverse at n w^2 pairs (w random effects per observation);
#: beyond this many the engine offers no gradient (their positions would take too much memory).
_MAX_PAIRS = 50_000_000


def available() -> bool:
    """True when scikit-sparse's CHOLMOD can be imported."""
    return _cholmod is not None


#: how to get the sparse engine: the extra that brings scikit-sparse (CHOLMOD)
INSTALL_HINT = ("pip install 'mixedref[sparse]' (scikit-sparse's CHOLMOD; it builds against "
                "SuiteSparse's headers: apt-get install libsuitesparse-dev on Debian)")


def require(why: str = "the sparse engine needs scikit-sparse (CHOLMOD)") -> None:
    """Raise MixedrefError saying why the sparse engine is needed and how to install it."""
    if _cholmod is None:
        raise MixedrefError(f"{why}: {INSTALL_HINT}")


@dataclass(frozen=True)
class SparsePattern:
    """Ut = Lam'Z' as a CSC pattern (random effects x observations) and its column layout."""

    indptr: np.ndarray
    indices: np.ndarray
    nre: int  # rows: all terms' random effects, lme4's order
    width: int  # entries per observation (sum of the terms' q)

    def matrix(self, data: np.ndarray) -> sp.csc_matrix:
        """The CSC matrix with this pattern and ``data`` (one value per entry)."""
        return sp.csc_matrix((data, self.indices, self.indptr),
                             shape=(self.nre, self.indptr.size - 1))


def ut_pattern(model: ModelFrame) -> SparsePattern:
    """The fixed pattern of Ut: per observation, each term's q rows of its level, in order."""
    n = model.n
    cols, off = [], 0
    for t in model.reterms:
        cols.append(off + np.asarray(t.codes, np.int64)[:, None] * t.q + np.arange(t.q))
        off += t.q * t.nlevels
    width = int(sum(t.q for t in model.reterms))
    idx = np.int32 if off < 2**31 - 1 and n * width < 2**31 - 1 else np.int64
    indices = np.hstack(cols).astype(idx).ravel()
    indptr = (np.arange(n + 1, dtype=np.int64) * width).astype(idx)
    return SparsePattern(indptr, indices, off, width)


@dataclass(frozen=True)
class Symbolic:
    """CHOLMOD's symbolic analysis of Ut Ut' + I: entries of L and flops of one factorization."""

    nnz_L: float
    flops: float


def symbolic(pattern: SparsePattern) -> Symbolic | None:
    """nnz(L) and the flop count of factoring Ut Ut' + I, from CHOLMOD's own analysis (ordering
    and supernodes, no numeric work) through its C interface: scikit-sparse does not expose
    the counts. None where the library or the call is not available."""
    lib = _libcholmod()
    if lib is None or pattern.indices.dtype != np.int32:
        return None
    common = ctypes.create_string_buffer(1 << 16)  # larger than any cholmod_common
    if not lib.cholmod_start(common):
        return None
    # Common->supernodal (after dbound, grow0, grow1, grow2, maxrank, supernodal_switch): the
    # engine factors supernodally, so analyse so too (L's numeric size is then L->xsize)
    mode = ctypes.c_int.from_buffer(common, _SUPERNODAL_OFFSET)
    switch = ctypes.c_double.from_buffer(common, _SUPERNODAL_OFFSET - 8).value
    if mode.value != 1 or switch != 40.0:  # not CHOLMOD's defaults (AUTO, 40): other layout
        lib.cholmod_finish(common)
        return None
    mode.value = _CHOLMOD_SUPERNODAL
    try:
        A = _Sparse(pattern.nre, pattern.indptr.size - 1, pattern.indices.size,
                           pattern.indptr.ctypes.data, pattern.indices.ctypes.data, None,
                           None, None, 0, 0, 0, 0, 1, 1)  # unsymmetric, int, pattern only
        L = lib.cholmod_analyze(ctypes.byref(A), common)
        if not L:
            return None
        try:
            f = ctypes.cast(L, ctypes.POINTER(_Factor)).contents
            cc = np.ctypeslib.as_array(ctypes.cast(f.ColCount, ctypes.POINTER(ctypes.c_int)),
                                       shape=(int(f.n),)).astype(float)
            nnz = float(f.xsize) if f.is_super else float(cc.sum())
            return Symbolic(nnz_L=nnz, flops=float(np.sum(cc * cc)))
        finally:
            Lp = ctypes.c_void_p(L)
            lib.cholmod_free_factor(ctypes.byref(Lp), common)
    finally:
        lib.cholmod_finish(common)


_lib_cache: list = []


def _libcholmod() -> ctypes.CDLL | None:
    """The CHOLMOD shared library scikit-sparse links (Debian: libcholmod.so.3), or None."""
    if _lib_cache:
        return _lib_cache[0]
    lib = None
    for name in ("libcholmod.so.3", ctypes.util.find_library("cholmod")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is not None:
        lib.cholmod_start.argtypes = [ctypes.c_void_p]
        lib.cholmod_finish.argtypes = [ctypes.c_void_p]
        lib.cholmod_analyze.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.cholmod_analyze.restype = ctypes.c_void_p
        lib.cholmod_free_factor.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    _lib_cache.append(lib)
    return lib


class _SkFactor:
    """scikit-sparse's CHOLMOD factor behind the interface of
    :class:`mixedref.engines.supernodal.SupernodalFactor` (no selected inverse): the fallback
    where CHOLMOD cannot be driven directly (64-bit indices, another cholmod_common layout)."""

    def __init__(self, Ut: sp.csc_matrix) -> None:
        self._chol = _cholmod.analyze_AAt(Ut, mode="supernodal")

    def factorize(self, Ut: sp.csc_matrix) -> bool:
        try:
            self._chol.cholesky_AAt_inplace(Ut, beta=1.0)
        except _cholmod.CholmodNotPositiveDefiniteError:
            return False
        return True

    def logdet(self) -> float:
        return float(self._chol.logdet())

    def half(self, B: np.ndarray) -> np.ndarray:
        return self._chol.solve_L(self._chol.apply_P(B), use_LDLt_decomposition=False)

    def half_t(self, B: np.ndarray) -> np.ndarray:
        return self._chol.apply_Pt(self._chol.solve_Lt(B, use_LDLt_decomposition=False))

    def solve_A(self, B: np.ndarray) -> np.ndarray:
        return self._chol.solve_A(B)


def _factor_of(Ut: sp.csc_matrix, nre: int) -> SupernodalFactor | _SkFactor:
    """CHOLMOD's supernodal factor of Ut Ut' + I, analysed once: held directly (ctypes) where
    the library and 32-bit indices allow, which gives the selected inverse and so the
    gradient; else scikit-sparse's."""
    lib = _libcholmod()
    if lib is not None and Ut.indices.dtype == np.int32 and Ut.indptr.dtype == np.int32:
        try:
            return SupernodalFactor(lib, Ut.indptr, Ut.indices, Ut.data, nre)
        except MixedrefError:
            pass
    return _SkFactor(Ut)


class SparsePLSObjective(PLSEngine):
    """lme4's profiled deviance / REML criterion by CHOLMOD, for any random-effects structure."""

    engine = "sparse"
    has_gradient = False
    #: a gradient's cost in criterion evaluations (set from the factor's structure)
    gradient_cost = 3.0

    def __init__(self, model: ModelFrame, REML: bool = True,
                 symbolic_analysis: Symbolic | None = None) -> None:
        """``symbolic_analysis``: CHOLMOD's counts of this model's pattern where the engine
        choice has made them already (else they are made here)."""
        require()
        prep = self._prepare(model, REML)
        terms = self.terms
        self._Xk = [prep.scale(np.asarray(t.X, dtype=float)) for t in terms]
        self.pattern = pat = ut_pattern(model)
        self.nre = pat.nre
        Zt = pat.matrix(np.hstack(self._Xk).ravel())
        XY = np.column_stack([self.Xw, self.yw])
        self._ZtXY = np.asarray(Zt @ XY)  # nre x (p + 1), Lam-free
        self._XYXY = XY.T @ XY
        self._offsets = np.concatenate([[0], np.cumsum([q * m for q, m in
                                                         zip(self.q, self.nlev, strict=True)])])
        self.symbolic = symbolic_analysis if symbolic_analysis is not None else symbolic(pat)
        flops = self.symbolic.flops if self.symbolic else float(pat.indices.size * pat.width)
        self._threads = threads.threads_for(flops)
        self._ut = Zt  # its data array is rewritten per theta (the pattern never changes)
        self._ut_data = Zt.data
        with threads.limit(self._threads):
            self._fac = _factor_of(Zt, pat.nre)
        threads.rescan()  # CHOLMOD's BLAS is loaded now
        #: the exact gradient needs the supernodal factor held here (its selected inverse)
        self.has_gradient = isinstance(self._fac, SupernodalFactor) and self._gradient_setup()

    @property
    def size(self) -> int:
        """The order of the sparse system (random effects), for the optimizer's method choice."""
        return int(self.nre)

    def _gradient_setup(self) -> bool:
        """Whether the exact gradient is offered (its memory within bounds: the selected
        inverse's gather positions and the n w^2 pairs it reads, w random effects per
        observation) and its cost in evaluations; what it needs is built on first use."""
        n, w = self.n, self.pattern.width
        if n * w * w > _MAX_PAIRS or not self._fac.selected_inverse_fits():
            return False
        self.gradient_cost = 1.0 + self._fac.selected_inverse_ratio()
        self._woff = np.concatenate([[0], np.cumsum(self.q)])  # each term's columns in a row
        self._pairs: tuple[np.ndarray, np.ndarray] | None = None
        return True

    def _gradient_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions in the selected inverse of every pair of random effects that share an
        observation (n x w x w, observation-major) and each observation's random-effect
        columns (n x w); made on the first gradient, as they take n w^2 integers."""
        if self._pairs is None:
            n, w = self.n, self.pattern.width
            cols = self.pattern.indices.reshape(n, w).astype(np.int64)
            pos = self._fac.pair_positions(np.repeat(cols, w, axis=1).ravel(),
                                           np.tile(cols, (1, w)).ravel())
            self._pairs = (pos, cols)
        return self._pairs

    def value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray | None]:
        """The criterion and its exact gradient at theta.

        With A = Lam'Z'Z Lam + I (Z weighted), r the weighted residual and u the spherical
        modes at the PLS solution, for theta_j the entry (a, b) of term k's template (so that
        Z dLam_j has X_k[i, a] at observation i's column (l_k(i), b)):

            d log det A / d theta_j = 2 tr(A^-1 Lam'Z' Z dLam_j)
                                    = 2 sum_i X_k[i, a] (A^-1 Lam'Z')[(l_k(i), b), i]
            d pwrss / d theta_j     = -2 sum_i r_i X_k[i, a] u[(l_k(i), b)]   (envelope)
            d log det R_X'R_X       = -2 sum_i X_k[i, a] V[(l_k(i), b)] . (Q M)[i]   (REML)

        with V = A^-1 Lam'Z'X, Q = X - Z Lam V, M = (R_X'R_X)^-1. The first needs A^-1 only at
        the pairs of random effects that share an observation: CHOLMOD's factor's selected
        inverse (Takahashi's equations, :mod:`mixedref.engines.supernodal`), read there.
        """
        if not self.has_gradient:
            raise MixedrefError("the sparse engine has no analytic gradient for this model")
        theta = np.asarray(theta, dtype=float)
        with threads.limit(self._threads):
            Ts, W, R, info = self._factorize(theta)
            if info != 0:
                return math.inf, None
            ldL2, ldRX2, pwrss = self._pieces(R)
            value = self._criterion(ldL2, ldRX2, pwrss)
            n, p, w = self.n, self.p, self.pattern.width
            RX = np.triu(R[:p, :p])
            delta = sla.solve_triangular(RX, R[:p, p], lower=False, check_finite=False) \
                if p else np.zeros(0)
            VU = self._fac.half_t(np.column_stack([W[:, :p], W[:, p] - W[:, :p] @ delta]))
            V, u = VU[:, :p], VU[:, p]
            Zinv = self._fac.selected_inverse()
        pos, cols = self._gradient_pairs()
        ut = self._ut_data.reshape(n, w)
        G = Zinv[pos].reshape(n, w, w)
        AU = np.einsum("icd,id->ic", G, ut)  # (A^-1 Lam'Z')[cols[i, c], i]
        r = self.yw - self.Xw @ delta - np.einsum("ic,ic->i", ut, u[cols])
        c_pw = float(n - p if self.REML else n)
        if self.REML and p:
            Q = self.Xw - np.einsum("ic,icp->ip", ut, V[cols])
            Rinv = sla.solve_triangular(RX, np.eye(p), lower=False, check_finite=False)
            QM = Q @ (Rinv @ Rinv.T)
        grad = np.empty(self.ntheta)
        for k, (X, sl) in enumerate(zip(self._Xk, self._theta_slices, strict=True)):
            a, b = self.terms[k].positions
            seg = slice(self._woff[k], self._woff[k + 1])
            d = 2.0 * (X.T @ AU[:, seg])  # (q, q): [a, b]
            d -= (2.0 * c_pw / pwrss) * ((X * r[:, None]).T @ u[cols[:, seg]])
            if self.REML and p:
                s = np.einsum("ibp,ip->ib", V[cols[:, seg]], QM)
                d -= 2.0 * (X.T @ s)
            grad[sl] = d[a, b]
        return value, grad

    def _factor(self, *args, **kwargs):
        """The dense engine's factor, which the likelihood profile reads
        (mixedref.inference.profile)."""
        raise MixedrefError("profile() reads the blocked dense engine's factor; this model is "
                            "fitted by the sparse engine (its dense block would be too large)")

    # -- the factorization ------------------------------------------------------------
    def _factorize(self, theta: np.ndarray):
        """Refactor at theta; (templates, W, R, info) with R the upper factor of the
        fixed-effects block (info != 0 where the system is not positive definite)."""
        Ts = self.templates(theta)
        np.copyto(self._ut_data.reshape(self.n, -1),
                  np.hstack([X @ T for X, T in zip(self._Xk, Ts, strict=True)]))
        if not self._fac.factorize(self._ut):
            return Ts, None, None, 1
        rhs = self._lam_t(Ts, self._ZtXY)
        W = self._fac.half(rhs)
        S = self._XYXY - W.T @ W
        R, info = dpotrf(S, lower=0, clean=1)
        return Ts, W, R, info

    def _lam_t(self, Ts: list[np.ndarray], B: np.ndarray) -> np.ndarray:
        """Lam' B for B with one row per random effect (level-major blocks per term)."""
        out = np.empty_like(B)
        c = B.shape[1]
        for T, q, m, a, b in zip(Ts, self.q, self.nlev, self._offsets[:-1], self._offsets[1:],
                                 strict=True):
            blk = B[a:b].reshape(m, q, c)
            out[a:b] = np.einsum("ab,lac->lbc", T, blk).reshape(m * q, c)
        return out

    def _pieces(self, R: np.ndarray) -> tuple[float, float, float]:
        p = self.p
        d = np.diagonal(R)
        ldL2 = float(self._fac.logdet())
        ldRX2 = 2.0 * float(np.sum(np.log(d[:p])))
        return ldL2, ldRX2, float(d[p]) ** 2

    def __call__(self, theta: np.ndarray) -> float:
        """The deviance (ML) or REML criterion at theta, as lme4's devfun returns it."""
        with threads.limit(self._threads):
            _, _, R, info = self._factorize(np.asarray(theta, dtype=float))
        if info != 0:
            return math.inf
        return self._criterion(*self._pieces(R))

    def solve(self, theta: np.ndarray, condvar: bool = False) -> PLSSolution:
        """All of lme4's quantities at theta (beta, sigma, u, b, R_X, optionally condVar)."""
        theta = np.asarray(theta, dtype=float).copy()
        with threads.limit(self._threads):
            Ts, W, R = self._factorize_or_raise(theta)
            p = self.p
            ldL2, ldRX2, pwrss = self._pieces(R)
            objective = self._criterion(ldL2, ldRX2, pwrss)
            RX = np.triu(R[:p, :p])
            delta = sla.solve_triangular(RX, R[:p, p], lower=False, check_finite=False) \
                if p else np.zeros(0)
            beta = self.beta0 + delta
            rhs = W[:, p] - W[:, :p] @ delta
            u = self._fac.half_t(rhs)
            b = self._lam(Ts, u)
            sigma = math.sqrt(pwrss / (self.n - p if self.REML else self.n))
            cv: tuple[np.ndarray, ...] = self._condvar(Ts, sigma) if condvar else ()
        return PLSSolution(theta=theta, REML=self.REML, objective=objective, beta=beta,
                           sigma=sigma, u=u, b=b, pwrss=pwrss, ldL2=ldL2, ldRX2=ldRX2, RX=RX,
                           condvar=cv)

    def criterion_pieces(self, theta: np.ndarray) -> CriterionPieces:
        """(ldL2, ldRX2, pwrss, R_X) at θ from the factorization alone, as :meth:`solve`
        computes them, without its β, u and b."""
        theta = np.asarray(theta, dtype=float)
        with threads.limit(self._threads):
            _, _, R = self._factorize_or_raise(theta)
            ldL2, ldRX2, pwrss = self._pieces(R)
        return CriterionPieces(ldL2, ldRX2, pwrss, np.triu(R[:self.p, :self.p]))

    def _factorize_or_raise(self, theta: np.ndarray):
        """:meth:`_factorize`'s (templates, W, R), or the error naming θ where the system is not
        positive definite."""
        Ts, W, R, info = self._factorize(theta)
        if info != 0:
            raise not_positive_definite(theta)
        return Ts, W, R

    def _lam(self, Ts: list[np.ndarray], u: np.ndarray) -> np.ndarray:
        """b = Lam u (level-major blocks per term)."""
        parts = []
        for T, q, m, a, b in zip(Ts, self.q, self.nlev, self._offsets[:-1], self._offsets[1:],
                                 strict=True):
            parts.append(np.einsum("ab,lb->la", T, u[a:b].reshape(m, q)).ravel())
        return np.concatenate(parts)

    def _condvar(self, Ts: list[np.ndarray], sigma: float) -> tuple[np.ndarray, ...]:
        """Per term and level sigma^2 T P_l T', P_l the level's diagonal block of
        (Lam'Z'Z Lam + I)^-1: read from the supernodal factor's selected inverse where it is
        held (a level's effects share its observations, so its block is in L's pattern; about
        the work of two factorizations), else from solves with chunks of identity columns (one
        per effect: O(nre nnz(L)) work, done only when conditional variances are asked for)."""
        f, nre = self._fac, self.nre
        if isinstance(f, SupernodalFactor) and f.selected_inverse_fits():
            inverse = f.selected_inverse()
            out = []
            for T, q, m, a in zip(Ts, self.q, self.nlev, self._offsets[:-1], strict=True):
                first = a + np.arange(m)[:, None, None] * q  # (level, row, column) of the block
                rows = np.broadcast_to(first + np.arange(q)[None, :, None], (m, q, q)).ravel()
                cols = np.broadcast_to(first + np.arange(q)[None, None, :], (m, q, q)).ravel()
                P = inverse[f.pair_positions(rows, cols)].reshape(m, q, q)
                out.append(sigma**2 * np.matmul(np.matmul(T, P), T.T))
            return tuple(out)
        out = []
        for T, q, m, a in zip(Ts, self.q, self.nlev, self._offsets[:-1], strict=True):
            P = np.empty((m, q, q))
            for j in range(q):
                for s in range(0, m, _CONDVAR_CHUNK):
                    lv = np.arange(s, min(m, s + _CONDVAR_CHUNK))
                    cols = a + lv * q + j
                    E = np.zeros((nre, lv.size))
                    E[cols, np.arange(lv.size)] = 1.0
                    X = f.solve_A(E)
                    rows = a + lv[:, None] * q + np.arange(q)  # (levels, q)
                    P[lv, :, j] = X[rows, np.arange(lv.size)[:, None]]
            out.append(sigma**2 * np.matmul(np.matmul(T, P), T.T))
        return tuple(out)


# -- the weighted system of PIRLS (mixedref.engines.pirls)
# ------------------------------------------
class SparseWeightedSystem(WeightedSystem):
    """PIRLS's weighted system as this engine factors Lam'Z'Z Lam + I, with the weights inside:
    Ut = Lam'Z' W^1/2 keeps the pattern of Lam'Z' (:func:`ut_pattern`), so, as lme4's
    updateXwts and updateDecomp, CHOLMOD analyses the pattern once and each :meth:`reweight`
    rewrites Ut's values and refactors numerically, in place (a factor it returned is valid
    until the next reweight). Without scikit-sparse the matrix is
    assembled from the pattern's row-wise pairs and factored by SuperLU with a symmetric
    ordering (no separate L^-1 and L^-T: the joint solve then takes the Schur complement)."""

    engine = "sparse"

    def __init__(self, terms: tuple[ReTerm, ...], X: np.ndarray, *,
                 use_cholmod: bool | None = None) -> None:
        """``use_cholmod``: CHOLMOD (True), SuperLU (False), or CHOLMOD where installed (None)."""
        super().__init__(terms, X)
        self.cholmod = available() if use_cholmod is None else bool(use_cholmod)
        if self.cholmod:
            require("the sparse weighted system with use_cholmod=True needs scikit-sparse")
            n = self.cols.shape[0]
            idx = np.int32 if self.nre < 2**31 - 1 and self.cols.size < 2**31 - 1 else np.int64
            self.pattern = pat = SparsePattern(
                (np.arange(n + 1, dtype=np.int64) * self.K).astype(idx),
                self.cols.astype(idx).ravel(), self.nre, self.K)
            self._ut = pat.matrix(np.ones(pat.indices.size))
            sym = symbolic(pat)
            self._threads = threads.threads_for(
                sym.flops if sym else float(pat.indices.size * pat.width))
            with threads.limit(self._threads):
                self._chol = _cholmod.analyze_AAt(self._ut, mode="supernodal")
        else:
            a, b = np.meshgrid(np.arange(self.K), np.arange(self.K), indexing="ij")
            self._pa, self._pb = a.ravel(), b.ravel()
            self._pair_rows = self.cols[:, self._pa].ravel()
            self._pair_cols = self.cols[:, self._pb].ravel()

    def reweight(self, V: np.ndarray, w: np.ndarray) -> WeightedFactor:
        """The factor of Lam'Z'WZ Lam + I at working weights ``w``, V Z Lambda's values."""
        if self.cholmod:
            np.multiply(V, np.sqrt(w)[:, None], out=self._ut.data.reshape(V.shape))
            with threads.limit(self._threads):
                try:
                    self._chol.cholesky_AAt_inplace(self._ut, beta=1.0)
                except _cholmod.CholmodNotPositiveDefiniteError as e:
                    raise PIRLSError("Lambda'Z'WZLambda + I is not positive definite") from e
            return _CholmodWeightedFactor(self._chol, self._threads, self.nre)
        q = self.nre
        vals = (V[:, self._pa] * V[:, self._pb] * w[:, None]).ravel()
        A = sp.csc_matrix((vals, (self._pair_rows, self._pair_cols)), shape=(q, q))
        A = (A + sp.identity(q, format="csc")).tocsc()
        lu = spla.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                       options={"SymmetricMode": True})
        return _SuperLUWeightedFactor(lu, q)


class _CholmodWeightedFactor(WeightedFactor):
    """CHOLMOD's L L' = P (Ut Ut' + I) P': L^-1 x = solve_L(P x), L^-T y = P' solve_Lt(y) (here
    L stands for P' L, the factor the joint solve reads)."""

    def __init__(self, f, nthreads: int, size: int) -> None:
        self.f, self._threads, self.size = f, nthreads, size
        self.logdet = float(f.logdet())

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        with threads.limit(self._threads):
            return self.f.solve_A(rhs)

    def half(self, rhs: np.ndarray) -> np.ndarray:
        with threads.limit(self._threads):
            return self.f.solve_L(self.f.apply_P(rhs), use_LDLt_decomposition=False)

    def half_t(self, rhs: np.ndarray) -> np.ndarray:
        with threads.limit(self._threads):
            return self.f.apply_Pt(self.f.solve_Lt(rhs, use_LDLt_decomposition=False))


class _SuperLUWeightedFactor(WeightedFactor):
    """SuperLU's LU of the symmetric system (diagonal pivots, symmetric ordering): its log
    determinant from U's diagonal, solves with L L' as a whole."""

    has_half = False

    def __init__(self, lu, size: int) -> None:
        self.lu, self.size = lu, size
        self.logdet = float(np.sum(np.log(np.abs(lu.U.diagonal()))))

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        return self.lu.solve(rhs)
