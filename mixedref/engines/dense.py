"""The blocked dense PLS engine: lme4's criterion (Bates et al. 2015, eqs. 34-42), fast.

For a ModelFrame and a theta, factor the blocked system

    [ L1   0  ] [ L1'  L21' ]   [ Lam1'A11 Lam1 + I      Lam1' A12 Lam2          ]
    [ L21  L22] [ 0    L22' ] = [ Lam2' A21 Lam1          Lam2' A22 Lam2 + I_re   ]

where block 1 is the first random-effects term (the one with most levels: block diagonal, one
q x q block per level, factored as a batched stack) and block 2 is everything else, stacked as
[later terms' effects, X, y] and held dense (later terms have few levels). The y column makes the
last diagonal element of L22 equal sqrt(pwrss); the X block of L22 is R_X'. Everything that does
not depend on theta (A11 per level, A22, and the Schur-complement operator ``M`` below) is
computed once; per evaluation only Lambda rescales, one batched and one dense Cholesky run.

The Schur complement L21 L21' = Lam2' A21 W1 A21' Lam2 with W1 = Lam1 (Lam1'A11 Lam1 + I)^-1 Lam1'
block diagonal is linear in W1's entries, so ``M`` (a sparse matrix precomputed from A21's pattern)
maps the stacked per-level W1 blocks straight to the dense lower triangle of A21 W1 A21'.
(:mod:`mixedref.engines.schur` builds it.)

It is one of the two engines :class:`mixedref.engines.factory.PLSObjective` chooses from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg.lapack import dpotrf, dpotri
from scipy.linalg.lapack import dtrtrs as _dtrtrs

from mixedref.engines.base import (
    CriterionPieces,
    PLSEngine,
    PLSSolution,
    not_positive_definite,
)
from mixedref.engines.schur import scalar_operators, schur_operator
from mixedref.errors import MixedrefError
from mixedref.fitting import threads
from mixedref.frontend.design import ModelFrame
from mixedref.frontend.fixed import strict_lower
from mixedref.frontend.reterm import term_z

#: Largest dense second block (later terms' effects + p + 1) the engine will allocate.
MAX_DENSE_BLOCK = 8000
#: Largest A21 (entries) held dense for the Schur product of a vector-valued first term.
DENSE_A21_MAX = 4_000_000

#: Below this value of a later scalar term's theta the objective uses the plain rescaling
#: instead of the diagonal shortcut (which adds theta^-2 to the diagonal).
_SHORTCUT_MIN = 1e-3

#: Largest dense block (entries) whose Schur complement criterion_pieces keeps (a second
#: r x r array, 32 MB here) for the next point at the same first-term θ (see _schur).
SCHUR_KEEP_MAX = 4_000_000

#: Below this many entries (r x first term's effects) solve() forms L21 densely.
DENSE_L21 = 200_000

#: Dense blocks of lower order are factored without BLAS threads (see DensePLSObjective).
SMALL_BLOCK = 64

#: The general (vector-valued terms) gradient forms r x (first term's effects) dense arrays a
#: few times per call: offered up to this many entries (see _general_value_and_grad).
GENERAL_GRADIENT_MAX = 1_000_000

try:  # scipy's kernels: CSC mat-vec accumulating y += A x in place; CSR mat-vec
    from scipy.sparse._sparsetools import csc_matvec as _csc_matvec
    from scipy.sparse._sparsetools import csr_matvec as _csr_matvec
except ImportError:  # pragma: no cover
    _csc_matvec = _csr_matvec = None


class _GradientPieces(NamedTuple):
    """What the scalar gradient at one θ leaves for the exact Hessian there
    (:meth:`DensePLSObjective._scalar_hessian`): valid until the work buffer is reused."""

    key: bytes  # θ's bytes
    value: float
    grad: np.ndarray
    U: np.ndarray  # the Schur factor (the work buffer; in REML dpotri overwrote it)
    Pinv: np.ndarray  # upper triangle of K_sub^-1 (order m)
    m: int
    traces: np.ndarray | None  # a_l' P a_l of A21's columns
    v: np.ndarray  # K^-1 e_y
    Bv: np.ndarray  # A21' v
    pwrss: float
    c_pw: float
    d1: np.ndarray  # t1^2 A11 + 1 per first-term level
    dw: np.ndarray  # d W1 / d t1


class DensePLSObjective(PLSEngine):
    """The blocked dense engine: the first term block diagonal, the rest one dense block."""

    engine = "dense"

    def __init__(self, model: ModelFrame, REML: bool = True) -> None:
        prep = self._prepare(model, REML)
        p = model.p
        terms = self.terms
        scale = prep.scale

        # block 1: the first term, block diagonal
        t1 = terms[0]
        q1, m1 = t1.q, t1.nlevels
        X1 = scale(np.asarray(t1.X, dtype=float))
        A11 = np.empty((m1, q1, q1))
        for a in range(q1):
            for c in range(a, q1):
                s = np.bincount(t1.codes, weights=X1[:, a] * X1[:, c], minlength=m1)
                A11[:, a, c] = s
                A11[:, c, a] = s
        self.A11 = A11

        # block 2: later terms, then X, then y (residualized on X: see _residualize)
        Xw, yw = prep.Xw, prep.yw
        self.re2 = int(sum(t.q * t.nlevels for t in terms[1:]))
        r = self.re2 + p + 1
        if r > MAX_DENSE_BLOCK:
            raise MixedrefError(
                f"the random-effects terms after the first have {self.re2} effects in all; "
                f"the dense engine handles at most {MAX_DENSE_BLOCK - p - 1}"
            )
        self.r = r
        products = None
        if self.n * r * r <= DENSE_PRODUCTS_MAX:  # small: dense products
            Zrest_dense = [_dense_z(scale(np.asarray(t.X, dtype=float)), t.codes, t.q,
                                    t.nlevels) for t in terms[1:]]
            B = np.column_stack([*Zrest_dense, Xw, yw])
            products = _dense_products(B, X1, t1.codes, m1)
        if products is not None:
            self.A22, A21 = products
        else:
            Z1 = term_z(X1, t1.codes, q1, m1)
            Zrest = [term_z(scale(np.asarray(t.X, dtype=float)), t.codes, t.q, t.nlevels)
                     for t in terms[1:]]
            Z2 = sp.hstack(Zrest + [sp.csc_matrix(np.column_stack([Xw, yw]))], format="csc")
            self.A22 = np.ascontiguousarray((Z2.T @ Z2).toarray())
            A21 = (Z2.T @ Z1).tocsc()
            A21.sort_indices()
        self.A21 = A21
        self._scalar_rest = all(q == 1 for q in self.q[1:])
        #: True when :meth:`value_and_grad` applies (every term a scalar: one theta per term)
        self.has_gradient = q1 == 1 and self._scalar_rest
        #: the scalar gradient above (its trace operator G); else the general one, where its
        #: dense r x (first term's effects) work stays small (_general_value_and_grad)
        self._scalar_gradient = self.has_gradient
        #: True when :meth:`value_grad_hess` gives the exact Hessian (every term scalar); the
        #: optimizer reads it (its Newton finish, lme4's checks) only then
        self.has_hessian = self._scalar_gradient
        self.has_gradient = self.has_gradient or r * m1 * q1 <= GENERAL_GRADIENT_MAX
        self._A21_cube: np.ndarray | None = None
        self._A21_array: np.ndarray | None = None  # A21.toarray(), for _l21_dense
        #: what value_and_grad costs in criterion evaluations (measured on the small catalog:
        #: the scalar gradient about 2.5, the general one 2.5 to 5), for the optimizer's choice
        self.gradient_cost = 2.5 if self._scalar_gradient else 5.0
        self._trace_op: sp.csr_matrix | None = None  # G of engines.schur.scalar_operators
        #: A21 per level (m1, r, q1) and flat (r, m1 q1) when the Schur product is dense
        self._A21_levels: np.ndarray | None = None
        self._A21_flat: np.ndarray | None = None
        if self._scalar_gradient:  # G shares M's pairs: build both at once
            self.M, self._trace_op = scalar_operators(A21, m1, r, self._trace_m())
            schur_flops = 2.0 * self.M.nnz
        else:
            self.M, schur_flops = self._schur_choice(A21, q1, m1, r)
        self._M_neg = None if self.M is None else (self.M.indptr, self.M.indices, -self.M.data)
        #: BLAS threads per evaluation, from its flops (the dense Cholesky and the Schur product)
        self._threads = threads.threads_for(r**3 / 3.0 + schur_flops)
        self._re_diag = np.arange(self.re2) * (r + 1)
        self._buf = np.empty((r, r))
        #: the last scalar gradient's pieces for the Hessian at its θ (_scalar_derivatives)
        self._last_derivs: _GradientPieces | None = None
        #: (W1, Schur complement) of the last criterion_pieces call (see _schur)
        self._schur_kept: tuple[np.ndarray, np.ndarray] | None = None
        self._rest_sizes = np.array(self.nlev[1:], dtype=np.int64)
        #: A11's entries (0,0), (1,0), (1,1) as contiguous per-level vectors, which the closed
        #: forms of _block1 and _fast_value read once per evaluation
        self._a11 = [np.ascontiguousarray(A11[:, i, j]) for i, j in ((0, 0), (1, 0), (1, 1))
                     if i < q1]
        #: a criterion evaluation reads theta directly, without per-term templates, when the
        #: first term has q <= 2 and the later ones are scalar (_fast_value)
        self._fast = q1 <= 2 and self._scalar_rest
        self._diag1 = np.arange(q1)
        self._ntheta1 = t1.ntheta
        #: below this order the dense block is too small for BLAS threads: evaluations skip
        #: threads.limit (its per-call library queries cost more than such an evaluation)
        self._unthreaded = self._threads == 1 and r < SMALL_BLOCK

    @property
    def size(self) -> int:
        """The order of the dense block factored per evaluation (mixedref.engines.objective)."""
        return int(self.r)

    # -- the factorization -------------------------------------------------------------
    def _block1(self, T1: np.ndarray, need_factor: bool = True
                ) -> tuple[np.ndarray | None, float, np.ndarray]:
        """Factor block 1; return (L1 stack or None if scalar, log det L1^2, W1 stack flat).

        W1 = T1 D^-1 T1' per level, with D = T1' A11 T1 + I (= L1 L1'). Without
        ``need_factor`` (the criterion alone) 2 x 2 blocks take the closed-form inverse instead
        of a batched Cholesky: numpy's per-call overhead dominates such tiny stacks, and
        D >= I keeps det D >= 1, so the closed form is as stable as the factorization.
        """
        if T1.shape == (1, 1):
            t2 = T1[0, 0] ** 2
            d = t2 * self.A11[:, 0, 0] + 1.0
            return None, float(np.sum(np.log(d))), t2 / d
        if T1.shape == (2, 2) and not need_factor:
            ld, w = self._closed2(T1[0, 0], T1[1, 0], T1[1, 1])
            return None, ld, w
        D = np.matmul(np.matmul(T1.T, self.A11), T1)
        diag = self._diag1
        D[:, diag, diag] += 1.0
        L1 = np.linalg.cholesky(D)
        ld = 2.0 * float(np.log(np.diagonal(L1, axis1=1, axis2=2)).sum())
        V = np.linalg.solve(L1, np.broadcast_to(T1.T, L1.shape))
        W = np.matmul(np.swapaxes(V, 1, 2), V)
        return L1, ld, W.ravel()

    def _closed2(self, t11: float, t21: float, t22: float) -> tuple[float, np.ndarray]:
        """(log det D, W1 stack flat) of a 2 x 2 first term with template
        T = [[t11, 0], [t21, t22]], in closed form (see :meth:`_block1`)."""
        a, b, c = self._a11
        # D = T'AT + I
        d11 = t11 * (t11 * a + 2.0 * t21 * b) + t21 * t21 * c + 1.0
        d21 = t22 * (t11 * b + t21 * c)
        d22 = t22 * t22 * c + 1.0
        det = d11 * d22 - d21 * d21
        # W = T D^-1 T' with D^-1 = [[d22, -d21], [-d21, d11]] / det
        w11 = t11 * t11 * d22 / det
        w21 = t11 * (t21 * d22 - t22 * d21) / det
        w22 = (t21 * (t21 * d22 - 2.0 * t22 * d21) + t22 * t22 * d11) / det
        out = np.empty((det.size, 4))  # np.stack((w11, w21, w21, w22), axis=1) without its
        out[:, 0] = w11  # per-call overhead
        out[:, 1] = w21
        out[:, 2] = w21
        out[:, 3] = w22
        return float(np.log(det).sum()), out.ravel()

    def _lambda2(self, S: np.ndarray, Ts: list[np.ndarray]) -> np.ndarray:
        """Lam2' S Lam2 for the dense block (later terms rescaled; X and y columns untouched)."""
        r = self.r
        if self._scalar_rest and not self.re2:  # one term: Lam2 = I, nothing to scale
            return S
        if self._scalar_rest:
            d = np.ones(r)
            off = 0
            for T, m in zip(Ts[1:], self.nlev[1:], strict=True):
                d[off:off + m] = T[0, 0]
                off += m
            S *= d[:, None]
            S *= d[None, :]
            return S
        off = 0
        for T, q, m in zip(Ts[1:], self.q[1:], self.nlev[1:], strict=True):
            seg = slice(off, off + q * m)
            S[seg, :] = np.matmul(T.T, S[seg, :].reshape(m, q, r)).reshape(q * m, r)
            S[:, seg] = np.matmul(S[:, seg].reshape(r, m, q), T).reshape(r, q * m)
            off += q * m
        return S

    def _schur_choice(self, A21: sp.csc_matrix, q1: int, m1: int, r: int
                      ) -> tuple[sp.csc_matrix | None, float]:
        """The Schur product's form for a vector-valued first term, by its cost per evaluation:
        the sparse operator M (one multiply-add per pair of A21's entries within a level), or,
        where A21 is dense within levels (every level of the first term meets most later
        effects: kb07's subjects see every item), two dense products through A21 itself,
        A21 (W1 A21'), of 2 r² m1 q1 flops, then held in ``_A21_levels`` and ``_A21_flat``.
        Returns (M or None, flops)."""
        per_level = np.diff(A21.indptr[0:m1 * q1 + 1:q1]).astype(np.float64)
        pairs = float(np.sum(per_level * (per_level + 1.0) / 2.0))
        dense_flops = 2.0 * r * r * m1 * q1 + 2.0 * r * m1 * q1 * q1
        if dense_flops < 2.0 * pairs and r * m1 * q1 <= DENSE_A21_MAX:
            D = A21.toarray().reshape(r, m1, q1)
            self._A21_levels = np.ascontiguousarray(D.transpose(1, 0, 2))  # (m1, r, q1)
            self._A21_flat = np.ascontiguousarray(D.reshape(r, m1 * q1))
            return None, dense_flops
        return schur_operator(A21, q1, m1, r), 2.0 * pairs

    def _schur(self, w: np.ndarray, keep: bool = False) -> np.ndarray:
        """The work buffer set to A22 - A21 W1 A21' (lower triangle valid).

        With ``keep`` (and the block within SCHUR_KEEP_MAX entries) the result is also kept
        with its W1, and copied back while W1 stays the same: it depends on the first term's
        θ alone, which Satterthwaite's derivative points share in groups
        (:meth:`criterion_pieces`). The copy holds the same bits as the product."""
        self._last_derivs = None  # the buffer held the last gradient's factor (and REML's P)
        S = self._buf
        keep = keep and self.r * self.r <= SCHUR_KEEP_MAX
        kept = self._schur_kept
        if keep and kept is not None and np.array_equal(kept[0], w):
            np.copyto(S, kept[1])
            return S
        np.copyto(S, self.A22)
        if self._M_neg is None:  # dense within levels: A21 (W1 A21') by two matrix products
            q1 = self._A21_levels.shape[2]
            B = np.matmul(self._A21_levels, w.reshape(-1, q1, q1))  # (m1, r, q1): A21_l W_l
            S -= B.transpose(1, 0, 2).reshape(self.r, -1) @ self._A21_flat.T
        else:
            indptr, indices, neg = self._M_neg
            if _csc_matvec is not None:
                _csc_matvec(self.r * self.r, w.size, indptr, indices, neg, w, S.reshape(-1))
            else:  # pragma: no cover - scipy without the private kernel
                S -= (self.M @ w).reshape(self.r, self.r)
        if keep:
            if kept is None:
                kept = (np.empty_like(w), np.empty_like(S))
            if kept[0].shape != w.shape:
                kept = (np.empty_like(w), kept[1])
            np.copyto(kept[0], w)
            np.copyto(kept[1], S)
            self._schur_kept = kept
        return S

    def _factor(self, theta: np.ndarray, shortcut: bool = False, need_L1: bool = True,
                keep_schur: bool = False):
        """Factor at theta. With ``shortcut`` (scalar later terms, none near 0), Lam2 = D is
        diagonal and chol(D S D + I_re) = D chol(S + D^-2 I_re): only the diagonal changes, and
        the returned ``extra`` log det D^2 must be added to the random-effects log det.
        ``keep_schur``: see :meth:`_schur`."""
        Ts = self.templates(theta)
        L1, ld1, w = self._block1(Ts[0], need_L1)
        S = self._schur(w, keep_schur)
        extra = 0.0
        rest = np.array([T[0, 0] for T in Ts[1:]]) if self._scalar_rest else None
        if shortcut and rest is not None and (rest.size == 0 or rest.min() >= _SHORTCUT_MIN):
            S.flat[self._re_diag] += np.repeat(rest ** -2.0, self._rest_sizes)
            extra = float(np.sum(self._rest_sizes * np.log(rest**2)))
        else:
            if not self._scalar_rest:  # block products mix triangles: make S symmetric first
                S = np.tril(S)
                S += np.tril(S, -1).T
            S = self._lambda2(S, Ts)
            S.flat[self._re_diag] += 1.0
        # S is C-ordered with its lower triangle valid: S.T is Fortran-ordered, upper valid
        U, info = dpotrf(S.T, lower=0, clean=0, overwrite_a=1)
        return Ts, L1, ld1 + extra, w, U, info

    def _log_dets(self, ld1: float, diag: np.ndarray) -> tuple[float, float, float]:
        """log|L|² (block 1's ``ld1`` plus the Schur factor's random-effects part), log|R_X|²
        and the penalized RSS, from the diagonal of the Schur factor (its last entry √pwrss)."""
        re2, p = self.re2, self.p
        logs = np.log(diag[:re2 + p])  # one log for both sums (each over its own slice)
        # one term (no dense random-effects block): the empty sum is 0.0, added as before
        ldL2 = ld1 + (2.0 * float(logs[:re2].sum()) if re2 else 0.0)
        ldRX2 = 2.0 * float(logs[re2:].sum())
        return ldL2, ldRX2, float(diag[-1]) ** 2

    def __call__(self, theta: np.ndarray) -> float:
        """The deviance (ML) or REML criterion at theta, as lme4's devfun returns it."""
        return self._limited(self._fast_value if self._fast else self._value, theta)

    def _fast_value(self, theta: np.ndarray) -> float:
        """:meth:`_value` for a first term with q <= 2 and scalar later terms, the same
        arithmetic without templates: theta's entries are read directly."""
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.ntheta,):
            raise MixedrefError(f"theta must have {self.ntheta} elements, got {theta.shape}")
        ld1, U, info = self._fast_factor(theta)
        if info != 0:
            return math.inf
        diag = U.diagonal()
        ldL2, ldRX2, pwrss = self._log_dets(ld1, diag)
        return self._criterion(ldL2, ldRX2, pwrss)

    def _fast_factor(self, theta: np.ndarray) -> tuple[float, np.ndarray, int]:
        """:meth:`_factor` with the shortcut for :meth:`_fast_value`'s models (first term
        q <= 2, later ones scalar), theta read directly: (log det of block 1 plus the
        shortcut's log det D^2, the Schur factor U, dpotrf's info)."""
        k1 = self._ntheta1
        if k1 == 1:
            t2 = theta[0] ** 2
            d = t2 * self._a11[0] + 1.0
            ld1 = float(np.log(d).sum())
            w = t2 / d
        else:
            ld1, w = self._closed2(theta[0], theta[1], theta[2])
        S = self._schur(w)
        rest = theta[k1:]
        if rest.size == 0 or rest.min() >= _SHORTCUT_MIN:
            if rest.size:  # the diagonal of S's random-effects block as a strided view
                diag = S.reshape(-1)[:self.re2 * (self.r + 1):self.r + 1]
                diag += np.repeat(rest ** -2.0, self._rest_sizes)
                ld1 += float((self._rest_sizes * np.log(rest**2)).sum())
        else:
            S = self._lambda2(S, [None, *(np.reshape(t, (1, 1)) for t in rest)])
            S.flat[self._re_diag] += 1.0
        U, info = dpotrf(S.T, lower=0, clean=0, overwrite_a=1)
        return ld1, U, info

    def value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray | None]:
        """The criterion and its exact gradient (:meth:`_value_and_grad` where every term is
        scalar, else :meth:`_general_value_and_grad`)."""
        if not self._scalar_gradient:
            if not self.has_gradient:
                raise MixedrefError(
                    f"no exact gradient for this design: its vector-valued terms need dense "
                    f"{self.r} x {self.q[0] * self.nlev[0]} arrays, above "
                    f"GENERAL_GRADIENT_MAX = {GENERAL_GRADIENT_MAX} entries")
            return self._limited(self._general_value_and_grad, self._checked_theta(theta))
        return self._limited(self._value_and_grad, theta)

    def _limited(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` with BLAS held to the engine's thread count, except where the block is
        too small for threads (_unthreaded: the limit's per-call library queries would cost
        more than such an evaluation)."""
        if self._unthreaded:
            return fn(*args)
        with threads.limit(self._threads):
            return fn(*args)

    def _checked_theta(self, theta: np.ndarray) -> np.ndarray:
        """θ as floats, refused (MixedrefError) unless of this model's length."""
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.ntheta,):
            raise MixedrefError(f"theta must have {self.ntheta} elements, got {theta.shape}")
        return theta

    def solve(self, theta: np.ndarray, condvar: bool = False) -> PLSSolution:
        """All of lme4's quantities at theta (beta, sigma, u, b, R_X, optionally condVar)."""
        return self._limited(self._solve, theta, condvar)

    def criterion_pieces(self, theta: np.ndarray) -> CriterionPieces:
        """(ldL2, ldRX2, pwrss, R_X) at θ from the factorization alone: :meth:`solve`'s own
        arithmetic (the same _factor call, so equal to its values bit for bit) without its
        copy of the factor, L21, u, b and β (a quarter of a solve on InstEval). The Schur
        complement is kept for the next call at the same first-term θ (:meth:`_schur`), which
        Satterthwaite's derivative points share in groups
        (:func:`mixedref.inference.ddf.richardson_derivatives`)."""
        return self._limited(self._criterion_pieces, theta)

    def _criterion_pieces(self, theta: np.ndarray) -> CriterionPieces:
        theta = np.asarray(theta, dtype=float)
        _, _, ld1, _, U, info = self._factor(theta, keep_schur=True)
        if info != 0:
            raise not_positive_definite(theta)
        re2, p = self.re2, self.p
        ldL2, ldRX2, pwrss = self._log_dets(ld1, np.diagonal(U))
        return CriterionPieces(ldL2, ldRX2, pwrss, np.triu(U[re2:re2 + p, re2:re2 + p]))

    def _value(self, theta: np.ndarray) -> float:
        _, _, ld1, _, U, info = self._factor(theta, shortcut=True, need_L1=False)
        if info != 0:
            return math.inf
        diag = U.diagonal()  # U = L22' (as the C-ordered lower factor's transpose view)
        ldL2, ldRX2, pwrss = self._log_dets(ld1, diag)
        return self._criterion(ldL2, ldRX2, pwrss)

    def value_grad_hess(self, theta: np.ndarray
                        ) -> tuple[float, np.ndarray, np.ndarray] | None:
        """The criterion, its exact gradient and its exact Hessian in θ (every term scalar), or
        None where they do not apply (a vector-valued term, a later θ below 1e-3, a system
        that cannot be factored): what lme4's checks approximate by finite differences, for
        about two gradients' work (one dense product beyond the gradient) rather than the 2k + 1
        gradients of their central differences (:meth:`_scalar_derivatives`)."""
        if not self._scalar_gradient:
            return None
        theta = self._checked_theta(theta)
        last = self._last_derivs
        if last is not None and last.key == theta.tobytes():  # the gradient's pieces, kept
            return last.value, last.grad.copy(), self._limited(self._scalar_hessian, theta)
        out = self._limited(self._scalar_derivatives, theta, True)
        return None if out[1] is None or out[2] is None else out

    def _value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray | None]:
        """The criterion and its exact gradient in theta, for models whose terms are all scalar
        (:meth:`_scalar_derivatives`)."""
        value, grad, _ = self._scalar_derivatives(theta, hessian=False)
        return value, grad

    def _scalar_derivatives(self, theta: np.ndarray, hessian: bool
                            ) -> tuple[float, np.ndarray | None, np.ndarray | None]:
        """The criterion, its exact gradient and (with ``hessian``) its exact Hessian in theta,
        for models whose terms are all scalar.

        With K = S(t1) + diag(theta_k^-2) the matrix factored by the diagonal shortcut (t1 the
        first term's theta, W1 = t1^2 / (t1^2 A11 + 1) per level) the criterion is
        ld1 + sum_k m_k log theta_k^2 + log det K_sub + c log pwrss (ML: K_sub the random-effects
        block, c = n; REML: K_sub all of K, c = n - p - 1), and pwrss = 1 / (K^-1)_yy. So
        d log det K_sub = tr(K_sub^-1 dK) (one dpotri) and d pwrss = pwrss^2 v' dK v with
        v = K^-1 e_y; dK/dt1 = -A21 diag(dW1) A21' is contracted through the Schur operator.

        The Hessian differentiates once more (K_i = dK/dθ_i, K_ij its second derivatives:
        -A21 diag(d²W1) A21' and 6 θ_k^-4 on term k's diagonal, 0 across terms; P = K_sub^-1):

            d² log det K_sub = tr(P K_ij) - tr(P K_i P K_j)
            d² log pwrss     = pwrss (v'K_ij v - 2 (K_i v)' K^-1 (K_j v)) + φ_i φ_j

        (φ_i = pwrss v'K_i v the first derivative of log pwrss). The later terms' K_k are
        diagonal, so their traces read P's entries; the first term's needs the dense
        K_1 = -A21 diag(dW1) A21' (the Schur operator applied to dW1) and one product P K_1.
        Gradient and Hessian are None where the shortcut does not apply (a later theta below
        1e-3).
        """
        if not self.has_gradient:
            raise MixedrefError("the analytic gradient needs every random-effects term scalar")
        theta = np.asarray(theta, dtype=float)
        rest = theta[1:]
        if rest.size and rest.min() < _SHORTCUT_MIN:
            return self._value(theta), None, None
        if theta.shape != (self.ntheta,):
            raise MixedrefError(f"theta must have {self.ntheta} elements, got {theta.shape}")
        # _factor(theta, shortcut=True)'s arithmetic without templates (a scalar first term)
        ld1, U, info = self._fast_factor(theta)
        if info != 0:
            return math.inf, None, None
        n, p, r, re2 = self.n, self.p, self.r, self.re2
        diag = U.diagonal()
        ldL2, ldRX2, pwrss = self._log_dets(ld1, diag)
        value = self._criterion(ldL2, ldRX2, pwrss)
        # v = K^-1 e_y: U'U = K and U' z = e_y gives z = e_y / U_yy
        e = np.zeros(r)
        e[-1] = 1.0 / diag[-1]
        v = _solve_upper(U, e)
        t1 = theta[0]
        a = self.A11[:, 0, 0]
        d1 = t1 * t1 * a + 1.0
        dw = 2.0 * t1 / d1**2  # d W1 / d t1
        Bv = _csr_times(self.A21, v, transposed=True)
        if self.REML:
            Pinv, info = dpotri(U, lower=0, overwrite_c=1)
            c_pw, m = n - p - 1.0, r
        elif re2:
            Pinv, info = dpotri(U[:re2, :re2], lower=0)
            c_pw, m = float(n), re2
        else:  # ML with one term: no dense random-effects block
            Pinv, info, c_pw, m = np.zeros((0, 0)), 0, float(n), 0
        if info != 0:
            return value, None, None
        pflat = Pinv.reshape(-1, order="F")  # a view: dpotri returns a Fortran array
        pdiag = np.diagonal(Pinv)
        grad = np.empty(theta.size)
        traces = _csr_times(self._trace_operator(), pflat) if m else None  # a_l' P a_l
        dlogdet = -float(dw @ traces) if m else 0.0
        dpw = -pwrss**2 * float(dw @ (Bv * Bv))
        grad[0] = float(np.sum(2.0 * t1 * a / d1)) + dlogdet + c_pw * dpw / pwrss
        off = 0
        for k, (th, mk) in enumerate(zip(rest, self.nlev[1:], strict=True), start=1):
            seg = slice(off, off + mk)
            dc = -2.0 * th**-3.0  # d theta^-2 / d theta
            dpw = pwrss**2 * float(v[seg] @ v[seg]) * dc
            grad[k] = 2.0 * mk / th + float(np.sum(pdiag[seg])) * dc + c_pw * dpw / pwrss
            off += mk
        # kept for the Hessian at this θ (value_grad_hess where L-BFGS-B stopped: its last
        # evaluation) until the work buffer, which holds U and in REML P, is reused (_schur)
        self._last_derivs = _GradientPieces(theta.tobytes(), value, grad, U, Pinv, m, traces, v,
                                            Bv, pwrss, c_pw, d1, dw)
        if not hessian:
            return value, grad, None
        return value, grad, self._scalar_hessian(theta)

    def _scalar_hessian(self, theta: np.ndarray) -> np.ndarray:
        """The Hessian of :meth:`_scalar_derivatives` at θ from the pieces its gradient kept
        there (``_last_derivs``): the factor U (in ML; in REML dpotri overwrote it), P =
        K_sub^-1's upper triangle ``Pinv`` (order m), the trace vector a_l' P a_l of A21's
        columns, v = K^-1 e_y and A21' v. Uses the work buffer (ML) and P's storage."""
        _, _, _, U, Pinv, m, traces, v, Bv, pwrss, c_pw, d1, dw = self._last_derivs
        self._last_derivs = None  # P is symmetrized, the work buffer reused, below
        k = theta.size
        t1 = theta[0]
        a = self.A11[:, 0, 0]
        d2w = (2.0 - 6.0 * t1 * t1 * a) / d1**3  # d² W1 / d t1²
        # K_i v, and K^-1 K_i v: in REML P = K^-1; in ML by the factor U, still in the work
        # buffer (P then inverts the random-effects block only)
        Kv = np.zeros((self.r, k))
        Kv[:, 0] = -(self.A21 @ (dw * Bv))
        off = 0
        for j, (th, mk) in enumerate(zip(theta[1:], self.nlev[1:], strict=True), start=1):
            Kv[off:off + mk, j] = -2.0 * th**-3.0 * v[off:off + mk]
            off += mk
        P = _symmetrize_upper(Pinv) if m else Pinv  # the gradient has read P already
        if self.REML:
            KiKv = P @ Kv
        else:
            KiKv = _solve_upper(U, _solve_upper(U, Kv, trans=1))
        H = np.zeros((k, k))
        # ld1 + sum_k m_k log theta_k^2
        H[0, 0] = float(np.sum(2.0 * a * (1.0 - t1 * t1 * a) / d1**2))
        # c log pwrss: pwrss (v'K_ij v - 2 (K_i v)' K^-1 (K_j v)) + phi_i phi_j
        phi = pwrss * (Kv.T @ v)
        vKv2 = np.zeros(k)  # v'K_ii v (K_ij = 0 across terms)
        vKv2[0] = -float(d2w @ (Bv * Bv))
        off = 0
        segs = []
        for j, (th, mk) in enumerate(zip(theta[1:], self.nlev[1:], strict=True), start=1):
            seg = slice(off, off + mk)
            segs.append(seg)
            H[j, j] = -2.0 * mk / th**2
            vKv2[j] = 6.0 * th**-4.0 * float(v[seg] @ v[seg])
            off += mk
        Hpw = pwrss * (np.diag(vKv2) - 2.0 * (Kv.T @ KiKv)) + np.outer(phi, phi)
        H += c_pw * 0.5 * (Hpw + Hpw.T)
        if m:  # log det K_sub: tr(P K_ij) - tr(P K_i P K_j)
            pdiag = np.diagonal(P)
            # A21 diag(dW1) A21' = -K_1: the Schur operator writes its lower triangle (C
            # order), the upper one of its Fortran view; in ML into the work buffer, free
            # now (dpotri worked on a copy of its block, K^-1 K_i v is solved)
            r2 = self.r * self.r
            if self.REML:
                K1 = np.zeros(r2)
            else:
                K1 = self._buf.reshape(-1)
                K1.fill(0.0)
            M = self.M
            _csc_matvec(r2, dw.size, M.indptr, M.indices, M.data, dw, K1)
            K1 = _symmetrize_upper(K1.reshape(self.r, self.r).T[:m, :m])
            X = P @ K1  # -P K_1
            H[0, 0] -= float(d2w @ traces) + float(np.einsum("ij,ji->", X, X))
            dd = np.einsum("ij,ij->i", X, P)  # diag(P (-K_1) P)
            for j, (th, seg) in enumerate(zip(theta[1:], segs, strict=True), start=1):
                cj = -2.0 * th**-3.0
                H[j, j] += 6.0 * th**-4.0 * float(np.sum(pdiag[seg]))
                H[0, j] += cj * float(np.sum(dd[seg]))  # -tr(P K_1 P K_j)
                H[j, 0] = H[0, j]
                for i, (ti, segi) in enumerate(zip(theta[1:j], segs[:j - 1], strict=True),
                                               start=1):
                    ci = -2.0 * ti**-3.0
                    H[i, j] -= ci * cj * float(np.sum(P[segi, seg] ** 2))
                    H[j, i] = H[i, j]
                H[j, j] -= cj * cj * float(np.sum(P[seg, seg] ** 2))
        return H

    def _general_value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray | None]:
        """The criterion and its exact gradient for any terms (vector-valued ones included).

        With K = Λ̃'AΛ̃ + diag(I_q, 0) the full augmented system (A the cross-products of
        [Z, X, y], Λ̃ = diag(Λ, I)), the criterion is log det K_S + c log pwrss + const, with
        S the random effects and c = n (ML), or S everything and c = n - p - 1 (REML), and
        pwrss = 1 / (K^-1)_yy. For θ_j, the entry (a, b) of term k's template, dΛ̃ repeats the
        unit matrix E_ab over the term's levels and dK = dΛ̃'AΛ̃ + Λ̃'A dΛ̃, so

            d log det K_S = tr(P dK) = 2 Σ_l (AΛ̃P)[(l,a), (l,b)]   (P = K_S^-1, zero-padded)
            d log pwrss   = pwrss w'dK w = 2 pwrss Σ_l (AΛ̃w)_(l,a) w_(l,b)   (w = K^-1 e_y)

        (the second the envelope theorem at the PLS solution: w is -(u, β, -1)/pwrss). The
        blocks of P and w come from the same blocked factor (block 1's per-level Cholesky and
        the dense Schur factor U) by the partitioned inverse; only the level-diagonal blocks of
        AΛ̃P are formed. The work is dense in r x (first term's effects): see has_gradient.
        """
        Ts, L1, ld1, _, U, info = self._factor(theta, shortcut=False)
        if info != 0:
            return math.inf, None
        n, p, r, re2 = self.n, self.p, self.r, self.re2
        diag = np.diagonal(U)
        ldL2, ldRX2, pwrss = self._log_dets(ld1, diag)
        value = self._criterion(ldL2, ldRX2, pwrss)
        T1 = Ts[0]
        q1, m1 = self.q[0], self.nlev[0]
        # level-major (m1, r, q1) stacks: per level l, the r x q1 column block of A21 etc.
        if L1 is None:
            K11inv = (1.0 / (T1[0, 0] ** 2 * self.A11 + 1.0))
        else:
            L1inv = np.linalg.inv(L1)
            K11inv = np.matmul(np.swapaxes(L1inv, 1, 2), L1inv)  # (m1, q1, q1)
        A21c = self._A21_dense()
        AL1 = np.matmul(A21c, T1)  # A21 Λ1
        GA = self._lambda2_rows(A21c, Ts)  # Λ2'A21
        Y = np.matmul(np.matmul(GA, T1), K11inv)  # K21 K11^-1, K21 = Λ2'A21Λ1
        # w = K^-1 e_y: its block-2 part solves U'U w2 = e_y, then w1 = -K11^-1 K12 w2
        e = np.zeros(r)
        e[-1] = 1.0 / diag[-1]
        w2 = _solve_upper(U, e)
        w1 = -np.matmul(w2, Y)  # (m1, q1)
        m = r if self.REML else re2
        c_pw = n - p - 1.0 if self.REML else float(n)
        if m:
            P22, info = dpotri(U[:m, :m], lower=0)
            if info != 0:
                return value, None
            _symmetrize_upper(P22)  # the lower triangle from the upper one dpotri wrote
            P21 = -np.matmul(P22, Y[:, :m])  # (m1, m, q1): rows of P = K_S^-1, block 2 x 1
            P11 = K11inv - np.matmul(np.swapaxes(Y[:, :m], 1, 2), P21)
        else:
            P22, P21, P11 = np.zeros((0, 0)), np.zeros((m1, 0, q1)), K11inv
        # term 1's level blocks of AΛ̃P and its rows of AΛ̃w (A12 Λ2 = (Λ2'A21)')
        AT = np.matmul(self.A11, T1)
        H1 = np.matmul(AT, P11) + np.matmul(np.swapaxes(GA[:, :m], 1, 2), P21)
        g1 = np.matmul(AT, w1[:, :, None])[:, :, 0] + np.matmul(w2, GA)
        grad = np.empty(self.ntheta)
        rows, cols = self.terms[0].positions
        s1 = self._theta_slices[0]
        grad[s1] = (2.0 * H1[:, rows, cols].sum(axis=0)
                    + 2.0 * c_pw * pwrss * (g1.T @ w1)[rows, cols])
        if re2:
            A22L = self._lambda2_cols(self.A22.copy(), Ts)  # A22 Λ2
            AL1u = AL1[:, :re2]
            H2 = (np.tensordot(AL1u, P21, axes=([0, 2], [0, 2]))
                  + A22L[:re2, :m] @ P22)
            g2 = np.tensordot(AL1u, w1, axes=([0, 2], [0, 1])) + A22L[:re2] @ w2
            off = 0
            for t, s in zip(self.terms[1:], self._theta_slices[1:], strict=True):
                q, mk = t.q, t.nlevels
                seg = slice(off, off + q * mk)
                rows, cols = t.positions
                if q == 1:
                    grad[s] = (2.0 * np.trace(H2[seg, seg])
                               + 2.0 * c_pw * pwrss * float(g2[seg] @ w2[seg]))
                else:
                    blocks = H2[seg, seg].reshape(mk, q, mk, q)
                    lv = np.arange(mk)
                    Hk = blocks[lv, :, lv, :]  # (mk, q, q)
                    gw = g2[seg].reshape(mk, q).T @ w2[seg].reshape(mk, q)
                    grad[s] = (2.0 * Hk[:, rows, cols].sum(axis=0)
                               + 2.0 * c_pw * pwrss * gw[rows, cols])
                off += q * mk
        return value, grad

    def _trace_m(self) -> int:
        """The order of the block whose log det the scalar gradient differentiates."""
        return self.r if self.REML else self.re2

    def _trace_operator(self) -> sp.csr_matrix | None:
        """G of :func:`mixedref.engines.schur.scalar_operators` (None unless every term is
        scalar), built with M from the same pairs: the Newton polish asks for the gradient on
        every small fit, and a second pass over A21's pairs cost a fifth of cake's fit."""
        return self._trace_op

    def _A21_dense(self) -> np.ndarray:
        """A21 as a dense level-major (m1, r, q1) stack, kept after the first call (the
        general gradient)."""
        if self._A21_cube is None:
            r, m1, q1 = self.r, self.nlev[0], self.q[0]
            cube = self.A21.toarray().reshape(r, m1, q1).transpose(1, 0, 2)
            self._A21_cube = np.ascontiguousarray(cube)
        return self._A21_cube

    def _lambda2_rows(self, B: np.ndarray, Ts: list[np.ndarray]) -> np.ndarray:
        """Λ2' B for a stack B (m1, r, q1): later terms' rows mixed by T_k'; X, y rows kept
        (B itself, not a copy, for one term: Λ2 = I)."""
        if self._scalar_rest and not self.re2:
            return B
        if self._scalar_rest:
            d = np.ones(self.r)
            d[:self.re2] = np.repeat([T[0, 0] for T in Ts[1:]], self.nlev[1:])
            return B * d[:, None]
        B = B.copy()
        m1, q1 = B.shape[0], B.shape[2]
        off = 0
        for T, q, m in zip(Ts[1:], self.q[1:], self.nlev[1:], strict=True):
            seg = slice(off, off + q * m)
            part = B[:, seg].reshape(m1, m, q, q1)
            B[:, seg] = np.matmul(T.T, part).reshape(m1, q * m, q1)
            off += q * m
        return B

    def _lambda2_cols(self, B: np.ndarray, Ts: list[np.ndarray]) -> np.ndarray:
        """B Λ2 (in place) for a dense B with r columns."""
        off = 0
        nr = B.shape[0]
        for T, q, m in zip(Ts[1:], self.q[1:], self.nlev[1:], strict=True):
            seg = slice(off, off + q * m)
            B[:, seg] = np.matmul(B[:, seg].reshape(nr, m, q), T).reshape(nr, q * m)
            off += q * m
        return B

    def _solve(self, theta: np.ndarray, condvar: bool = False) -> PLSSolution:
        theta = np.asarray(theta, dtype=float).copy()
        Ts, L1, ld1, _, U, info = self._factor(theta)
        U = U.copy()  # the factor lives in a work buffer reused by the next evaluation
        if info != 0:
            raise not_positive_definite(theta)
        # lower factor of the dense block as U's transpose view: only its lower triangle is
        # read below (triangular solves reference one triangle), so no masked copy is needed
        L22 = U.T
        re2, p, r = self.re2, self.p, self.r
        d = np.diagonal(L22)
        ldL2, ldRX2, pwrss = self._log_dets(ld1, d)
        objective = self._criterion(ldL2, ldRX2, pwrss)
        T1 = Ts[0]
        q1, m1 = self.q[0], self.nlev[0]
        if L1 is None:
            L1 = np.sqrt(T1[0, 0] ** 2 * self.A11 + 1.0)  # (m1, 1, 1)
        L1inv = np.linalg.inv(L1)  # (m1, q1, q1) lower
        # L21 = Lam2' A21 Lam1 L1^-T, sparse with A21's level-block pattern
        if r * m1 * q1 <= DENSE_L21:  # small: dense products, no sparse-matrix overhead
            L21 = self._l21_dense(Ts, L1inv)
            ell1 = L21[r - 1]
        else:
            lam2 = self._lambda2_sparse(Ts)
            B = lam2.T @ self.A21 @ sp.kron(sp.identity(m1, format="csr"), sp.csr_matrix(T1))
            L21 = (B @ _block_diag_stack(np.swapaxes(L1inv, 1, 2))).tocsr()
            ell1 = np.asarray(L21[r - 1].todense()).ravel()  # y row of L21: L1^-1 Lam1'Z1'y
        Lrr = L22[: r - 1, : r - 1]
        # x2 solves Lrr' x2 = ell2 (ell2 the y row of L22). With U = L22' = [[Lrr', ell2],
        # [0, d_y]], U z = d_y e_y gives z = (-x2, 1): one solve on the contiguous U, no copy
        e = np.zeros(r)
        e[-1] = d[-1]
        x2 = -sla.solve_triangular(U, e, lower=False, check_finite=False)[: r - 1]
        u2, beta = x2[:re2], x2[re2:] + self.beta0
        rhs1 = ell1 - L21[: r - 1].T @ x2
        u1 = np.einsum("lba,lb->la", L1inv, rhs1.reshape(m1, q1)).ravel()
        u = np.concatenate([u1, u2])
        b_parts = [np.einsum("ab,lb->la", T1, u1.reshape(m1, q1)).ravel()]
        off = 0
        for T, q, m in zip(Ts[1:], self.q[1:], self.nlev[1:], strict=True):
            b_parts.append(np.einsum("ab,lb->la", T, u2[off:off + q * m].reshape(m, q)).ravel())
            off += q * m
        b = np.concatenate(b_parts)
        n = self.n
        sigma = math.sqrt(pwrss / (n - p if self.REML else n))
        RX = np.triu(U[re2:re2 + p, re2:re2 + p])
        cv: tuple[np.ndarray, ...] = ()
        if condvar:
            cv = self._condvar(Ts, L1inv, L21, Lrr, sigma)
        return PLSSolution(theta=theta, REML=self.REML, objective=objective, beta=beta,
                           sigma=sigma, u=u, b=b, pwrss=pwrss, ldL2=ldL2, ldRX2=ldRX2, RX=RX,
                           condvar=cv)

    def _l21_dense(self, Ts: list[np.ndarray], L1inv: np.ndarray) -> np.ndarray:
        """L21 = Lam2' A21 Lam1 L1^-T as a dense r x (m1 q1) array (for small systems)."""
        r, q1, m1 = self.r, self.q[0], self.nlev[0]
        if self._A21_array is None:  # kept: solve() at every θ̂ and profile point reads it
            self._A21_array = self.A21.toarray()
        B = self._A21_array.copy(order="K") if self.re2 else self._A21_array
        off = 0
        for T, q, m in zip(Ts[1:], self.q[1:], self.nlev[1:], strict=True):
            seg = slice(off, off + q * m)  # rows of a later term: Lam2' = kron(I, T') there
            B[seg] = np.matmul(T.T, B[seg].reshape(m, q, -1)).reshape(q * m, -1)
            off += q * m
        C = np.matmul(B.reshape(r, m1, q1), Ts[0])  # times Lam1 = kron(I, T1)
        return np.einsum("rlb,lcb->rlc", C, L1inv).reshape(r, m1 * q1)

    def _lambda2_sparse(self, Ts: list[np.ndarray]) -> sp.csr_matrix:
        """Lam2 (later terms' Lambda, identity on X and y) as a sparse r x r matrix."""
        blocks = [sp.kron(sp.identity(m, format="csr"), sp.csr_matrix(T))
                  for T, m in zip(Ts[1:], self.nlev[1:], strict=True)]
        blocks.append(sp.identity(self.p + 1, format="csr"))
        return sp.block_diag(blocks, format="csr")

    def _condvar(self, Ts, L1inv, L21, Lrr, sigma) -> tuple[np.ndarray, ...]:
        """Per term and level sigma^2 Lam (L L')^-1 Lam' diagonal blocks (lme4's condVar)."""
        re2 = self.re2
        q1, m1 = self.q[0], self.nlev[0]
        Luu = Lrr[:re2, :re2]
        # block 1: (LL')^-1_11 = L1^-T L1^-1 + G'G,  G = L22u^-1 L21u L1^-1
        P = np.matmul(np.swapaxes(L1inv, 1, 2), L1inv)
        if re2:
            L21u = L21[:re2].toarray() if sp.issparse(L21) else L21[:re2]
            Linv1 = _block_diag_stack(L1inv)
            G = sla.solve_triangular(Luu, (Linv1.T @ L21u.T).T, lower=True, check_finite=False)
            Gr = G.reshape(re2, m1, q1)
            P = P + np.einsum("kla,klb->lab", Gr, Gr)
        T1 = Ts[0]
        out = [sigma**2 * np.matmul(np.matmul(T1, P), T1.T)]
        if re2:
            Linv = sla.solve_triangular(Luu, np.eye(re2), lower=True, check_finite=False)
            off = 0
            for T, q, m in zip(Ts[1:], self.q[1:], self.nlev[1:], strict=True):
                Lk = Linv[:, off:off + q * m].reshape(re2, m, q)
                Pk = np.einsum("kla,klb->lab", Lk, Lk)
                out.append(sigma**2 * np.matmul(np.matmul(T, Pk), T.T))
                off += q * m
        return tuple(out)


#: Largest dense temporaries (entries) of _dense_products; beyond them scipy's sparse
#: products, whose per-call overhead no longer matters.
DENSE_PRODUCTS_MAX = 400_000


def _dense_z(X: np.ndarray, codes: np.ndarray, q: int, m: int) -> np.ndarray:
    """A term's n x (m*q) design as a dense array (term_z's layout: level-major columns)."""
    n = X.shape[0]
    Z = np.zeros((n, m * q))
    for a in range(q):
        Z[np.arange(n), codes * q + a] = X[:, a]
    return Z


def _dense_products(B: np.ndarray, X1: np.ndarray, codes: np.ndarray, m1: int
                    ) -> tuple[np.ndarray, sp.csc_matrix] | None:
    """(A22 = B'B, A21 = B'Z1 in CSC) of a small model (B = [later terms' Z, X, y] dense, Z1
    the first term's design from its columns X1 and level codes), or None where the dense
    temporaries would exceed DENSE_PRODUCTS_MAX entries.

    Two BLAS products on dense arrays, without the dozen sparse-matrix constructions of scipy's
    products Z2'Z2 and Z2'Z1 (a sixth of a small fit) and without summing (rows, r, r)
    temporaries (cake: 0.7 -> 0.2 ms). The entries equal scipy's to rounding (BLAS sums in its
    own order); entries that are exactly 0 are dropped from A21, as the sparse product drops
    them.
    """
    n, r = B.shape
    q1 = X1.shape[1]
    if n * r * r > DENSE_PRODUCTS_MAX or n * m1 * q1 > DENSE_PRODUCTS_MAX:
        return None
    A22 = B.T @ B
    return np.ascontiguousarray(A22), _csc_of_dense(B.T @ _dense_z(X1, codes, q1, m1))


def _csc_of_dense(D: np.ndarray) -> sp.csc_matrix:
    """``sp.csc_matrix(D)`` with sorted indices (the nonzero entries of D, exact zeros
    dropped) in one construction: scipy's goes through COO, a conversion and a sort (three
    sparse-matrix objects, a tenth of a small model's engine set-up). The nonzeros of D'
    come out column by column of D, rows increasing: already CSC's order."""
    cols, rows = np.nonzero(D.T)
    indptr = np.zeros(D.shape[1] + 1, dtype=np.int64)
    np.cumsum(np.bincount(cols, minlength=D.shape[1]), out=indptr[1:])
    A = sp.csc_matrix((D[rows, cols], rows, indptr), shape=D.shape)
    A.has_sorted_indices = True
    return A


#: column blocks of _symmetrize_upper
_SYM_BLOCK = 256


def _symmetrize_upper(A: np.ndarray) -> np.ndarray:
    """A (square) made symmetric in place from its upper triangle, block by block (no
    temporaries of A's size: np.where or triu + triu' would allocate two or three); returns
    A."""
    m = A.shape[0]
    for j0 in range(0, m, _SYM_BLOCK):
        j1 = min(j0 + _SYM_BLOCK, m)
        D = A[j0:j1, j0:j1]
        lo = strict_lower(j1 - j0)
        D[lo] = D.T[lo]
        A[j1:, j0:j1] = A[j0:j1, j1:].T
    return A


def _solve_upper(U: np.ndarray, e: np.ndarray, trans: int = 0) -> np.ndarray:
    """x with U x = e (U' x = e with ``trans``) for upper-triangular U: scipy's
    solve_triangular(U, e) without its wrapper's checks (the same LAPACK call, trtrs, for a
    Fortran-ordered U)."""
    if not U.flags.f_contiguous:
        return sla.solve_triangular(U, e, trans=trans, lower=False, check_finite=False)
    x, info = _dtrtrs(U, e, lower=0, trans=trans, unitdiag=0)
    if info != 0:
        raise np.linalg.LinAlgError(f"singular matrix: resolution failed at diagonal {info - 1}")
    return x


def _csr_times(A: sp.spmatrix, x: np.ndarray, transposed: bool = False) -> np.ndarray:
    """A @ x (or A.T @ x for a CSC A) by scipy's own CSR kernel, without building the
    transposed matrix object or the operator's dispatch."""
    if _csr_matvec is None:  # pragma: no cover - scipy without the private kernel
        return (A.T if transposed else A) @ x
    nrow, ncol = A.shape[::-1] if transposed else A.shape
    out = np.zeros(nrow)
    _csr_matvec(nrow, ncol, A.indptr, A.indices, A.data, np.ascontiguousarray(x), out)
    return out


def _block_diag_stack(blocks: np.ndarray) -> sp.csr_matrix:
    """The block-diagonal CSR matrix of a stack of m q x q blocks (as scipy's block_diag of
    the list, without its per-block Python overhead: m is a factor's number of levels)."""
    m, q, _ = blocks.shape
    return sp.bsr_matrix((np.ascontiguousarray(blocks), np.arange(m), np.arange(m + 1)),
                         shape=(m * q, m * q)).tocsr()
