"""What the two PLS engines share: the solution at θ, the prepared response, θ's templates and
lme4's criterion from the factorization's pieces (Bates et al. 2015, eqs. 34-42).

The engines (:mod:`mixedref.engines.dense`, :mod:`mixedref.engines.sparse`) subclass
:class:`PLSEngine`; :mod:`mixedref.engines.factory` chooses between them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.linalg as sla
from scipy.linalg.lapack import dposv, dtrtrs

from mixedref.errors import DataError, MixedrefError
from mixedref.frontend import reterm
from mixedref.frontend.design import ModelFrame, ReTerm

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class PLSSolution:
    """Everything lme4 keeps at one theta: the objective and the pieces of the fit."""

    theta: np.ndarray
    REML: bool
    objective: float  # deviance (ML) or REML criterion, as lme4's devfun
    beta: np.ndarray
    sigma: float
    u: np.ndarray  # spherical conditional modes, terms stacked level-major as lme4's u
    b: np.ndarray  # conditional modes b = Lambda u, same layout
    pwrss: float
    ldL2: float  # log det L^2 (random-effects part)
    ldRX2: float  # log det R_X^2
    RX: np.ndarray  # upper-triangular R_X (lme4's RX): vcov(beta) = sigma^2 (R_X'R_X)^-1
    condvar: tuple[np.ndarray, ...]  # per term: (nlevels, q, q) conditional variances of b


class CriterionPieces(NamedTuple):
    """The parts of a PLSSolution the criterion and vcov(β) are made of, at one θ: what
    Satterthwaite's numerical derivatives read at each of their ~70 points
    (mixedref.inference.ddf), without the solve's β, u, b and fitted values."""

    ldL2: float  # log det L^2 (random-effects part)
    ldRX2: float  # log det R_X^2
    pwrss: float
    RX: np.ndarray  # upper-triangular R_X


@dataclass(frozen=True)
class Prepared:
    """The response and weights as both engines use them (offset removed, rows scaled)."""

    sw: np.ndarray | None  # sqrt of the prior weights, or None
    ldW: float  # sum of log weights
    Xw: np.ndarray  # weighted X
    yw: np.ndarray  # weighted y residualized on Xw (see _residualize)
    beta0: np.ndarray  # the least-squares coefficients removed from yw

    def scale(self, a: np.ndarray) -> np.ndarray:
        """Rows of ``a`` times sqrt(w)."""
        sw = self.sw
        return a if sw is None else a * (sw if a.ndim == 1 else sw[:, None])


def prepare_response(model: ModelFrame, REML: bool) -> Prepared:
    """Check the model for the PLS engines and weight/residualize its X and y."""
    if not model.reterms:
        raise MixedrefError("no random-effects terms: lmer needs at least one (expr | group)")
    n, p = model.n, model.p
    if REML and n <= p:
        raise DataError(f"REML needs more observations ({n}) than fixed effects ({p})")
    y = np.asarray(model.y, dtype=float)
    if model.offset is not None:
        y = y - np.asarray(model.offset, dtype=float)
    if model.weights is not None:
        w = np.asarray(model.weights, dtype=float)
        if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise DataError("weights must be finite, non-negative and one per observation")
        ldW, sw = float(np.sum(np.log(w))), np.sqrt(w)
    else:
        ldW, sw = 0.0, None
    Xw = np.asarray(model.X, dtype=float)
    if sw is not None:
        Xw = Xw * sw[:, None]
        y = y * sw
    # the rank check's QR of X (ModelFrame.x_qr) serves where the rows are not reweighted
    qr = getattr(model, "x_qr", None) if sw is None else None
    beta0, yw = _residualize(Xw, y, qr)
    return Prepared(sw, ldW, Xw, yw, beta0)


class PLSEngine:
    """lme4's profiled deviance / REML criterion as a function of θ, for one ModelFrame: the
    part both engines share. An engine sets the attributes below in its constructor and adds
    ``__call__``, ``value_and_grad``, ``solve`` and ``size``
    (mixedref.engines.objective.Objective)."""

    engine: str
    model: ModelFrame
    REML: bool
    terms: tuple[ReTerm, ...]
    ntheta: int
    n: int
    p: int
    ldW: float
    beta0: np.ndarray
    Xw: np.ndarray
    yw: np.ndarray

    def _prepare(self, model: ModelFrame, REML: bool) -> Prepared:
        """Check the model, weight and residualize its response (:func:`prepare_response`) and
        keep what every engine reads: the model, its sizes, terms and θ's layout."""
        prep = prepare_response(model, REML)
        self.model, self.REML = model, bool(REML)
        self.n, self.p = model.n, model.p
        self.ldW, self.beta0, self.Xw, self.yw = prep.ldW, prep.beta0, prep.Xw, prep.yw
        terms = model.reterms
        self.terms = terms
        self.q = [t.q for t in terms]
        self.nlev = [t.nlevels for t in terms]
        self._theta_slices = reterm.theta_slices(terms)
        self.ntheta = int(sum(t.ntheta for t in terms))
        return prep

    # -- theta handling ----------------------------------------------------------------
    def templates(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per term the lower-triangular template T_k built from theta (MixedrefError for a
        theta of another length)."""
        return reterm.templates(theta, self.terms, self._theta_slices)

    @property
    def lower(self) -> np.ndarray:
        return self.model.theta_lower

    def criterion_pieces(self, theta: np.ndarray) -> CriterionPieces:
        """(ldL2, ldRX2, pwrss, R_X) at θ, equal to :meth:`solve`'s; this default goes through
        solve(), an engine overrides it with its factorization alone."""
        sol = self.solve(theta)
        return CriterionPieces(sol.ldL2, sol.ldRX2, sol.pwrss, sol.RX)

    def _criterion(self, ldL2: float, ldRX2: float, pwrss: float) -> float:
        n = self.n
        if self.REML:
            nmp = n - self.p
            return ldL2 - self.ldW + ldRX2 + nmp * (1.0 + _LOG_2PI + math.log(pwrss / nmp))
        return ldL2 - self.ldW + n * (1.0 + _LOG_2PI + math.log(pwrss / n))


def not_positive_definite(theta: np.ndarray) -> MixedrefError:
    """The error of a θ at which the penalized system cannot be factored (both engines'
    solve)."""
    return MixedrefError(
        f"the penalized system is not positive definite at theta={np.asarray(theta).tolist()} "
        "(X may be rank deficient)")


def _residualize(X: np.ndarray, y: np.ndarray,
                 qr: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(b0, y - X b0) with b0 the least-squares fit of y on X: from X's reduced QR
    factorization ``qr`` = (Q, R) where given (X full rank), else by LAPACK's gelsd.

    The criterion is invariant under y -> y - X b0 (beta-hat absorbs b0, which solve() adds
    back), but pwrss is read off the augmented factor as y'y minus the explained part: for a
    response dominated by its fixed part (y = 1e9 + noise) that difference cancels beyond double
    precision. The residual's squared norm is of the size of pwrss itself. Columns are
    subtracted one at a time, largest contribution first, so that the dominant one (often the
    intercept) cancels exactly (Sterbenz) instead of being rounded inside a sum X @ b0.
    """
    if X.shape[1] == 0:
        return np.zeros(0), y
    if qr is None:
        b0 = sla.lstsq(X, y, lapack_driver="gelsd", check_finite=False)[0]
        return b0, _subtract(y, X, b0)
    Q, R = qr
    b0 = _solve_r(R, Q.T @ y)
    r = _subtract(y, X, b0)
    # one step of iterative refinement: b0 carries the rounding of |y| (1e9 + noise: 1e-7),
    # the residual's own fit only that of |r|; measured against 50-digit least squares, the
    # residual's error falls from 1.5e-4 to 3e-19 on NIST's SmLs07 (|r| = 1.9; gelsd alone
    # 1.5e-4) and from 3e-14 to 1e-14 on sleepstudy
    d = _solve_r(R, Q.T @ r)
    return b0 + d, _subtract(r, X, d)


def _solve_r(R: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with R x = b, R upper triangular: scipy's solve_triangular(R, b, lower=False) without
    its wrapper's checks; for a C-ordered R it calls LAPACK's trtrs on R' (lower, transposed),
    as scipy does, so the result is the same."""
    if R.flags.c_contiguous and not R.flags.f_contiguous:
        x, info = dtrtrs(R.T, b, lower=1, trans=1, unitdiag=0)
        if info == 0:
            return x
    return sla.solve_triangular(R, b, lower=False, check_finite=False)


def _subtract(y: np.ndarray, X: np.ndarray, b: np.ndarray) -> np.ndarray:
    """y - X b, the columns subtracted one at a time, largest contribution first: the rows of
    [y; (X[:, j] b[j])'s in that order] reduced by subtraction along the first axis, which
    numpy does one row after the other (the same operations as a loop over the columns, in
    one call)."""
    order = np.argsort(-np.abs(b) * np.abs(X).max(axis=0))
    A = np.empty((order.size + 1, y.shape[0]))
    A[0] = y
    np.multiply(X[:, order].T, b[order][:, None], out=A[1:])
    return np.subtract.reduce(A, axis=0)



# -- the weighted system PIRLS drives ------------------------------------------------------
class PIRLSError(MixedrefError):
    """PIRLS did not converge, step-halving could not reduce the penalized deviance, or its
    weighted system Lam'Z'WZ Lam + I could not be factored."""


class WeightedFactor:
    """The factor L L' = Lam'Z'WZ Lam + I of one PIRLS iteration, as a weighted system's
    :meth:`WeightedSystem.reweight` returns it. ``has_half``: L^-1 and L^-T apply separately
    (the joint solve then forms lme4's RZX = L^-1 Lam'Z'WX)."""

    has_half: bool = True
    size: int  # the order of L
    logdet: float  # log det L L'
    diag2: np.ndarray | None = None  # L L' itself when it is diagonal (one scalar term)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """(L L')^-1 rhs."""
        raise NotImplementedError

    def half(self, rhs: np.ndarray) -> np.ndarray:
        """L^-1 rhs (factors with ``has_half``)."""
        raise PIRLSError("internal: half solve on a factor without one")

    def half_t(self, rhs: np.ndarray) -> np.ndarray:
        """L^-T rhs (factors with ``has_half``)."""
        raise PIRLSError("internal: half solve on a factor without one")

    def inverse_diagonal(self) -> np.ndarray:
        """The diagonal of (L L')^-1."""
        return np.diag(self.solve(np.eye(self.size)))


class WeightedSystem:
    """PIRLS's penalized weighted least-squares system at one theta, for working weights that
    change every iteration (lme4's merPredD: updateXwts, updateDecomp, solveU and solve).

    Z Lambda has a fixed pattern: each row has sum(q_k) non-zeros at the columns ``cols``
    (n x K), their values ``V`` (n x K) set by theta. :meth:`reweight` accumulates
    Lam'Z'WZ Lam over that pattern for new weights and factors it (the engine subclass decides
    how: :class:`mixedref.engines.dense_weighted.DenseWeightedSystem`,
    :class:`mixedref.engines.sparse.SparseWeightedSystem`); :meth:`solve_u` is the u-only solve
    with beta fixed and :meth:`solve_joint` solves for u and beta together.
    """

    engine: str

    def __init__(self, terms: tuple[ReTerm, ...], X: np.ndarray) -> None:
        self.terms = tuple(terms)
        self.cols = reterm.z_columns(terms)  # n x K
        self.K = self.cols.shape[1]
        self.nre = int(sum(t.q * t.nlevels for t in terms))
        self.X = np.ascontiguousarray(X, dtype=float)
        self.p = self.X.shape[1]

    def reweight(self, V: np.ndarray, w: np.ndarray) -> WeightedFactor:
        """The factor of Lam'Z'WZ Lam + I at working weights ``w`` (PIRLSError where it is not
        positive definite). It may reuse the system's storage, as lme4's updateDecomp: use it
        before the next reweight."""
        raise NotImplementedError

    # -- products with Z Lambda over its fixed pattern ---------------------------------------
    def zlu(self, V: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Z Lambda u."""
        return np.einsum("nk,nk->n", V, u[self.cols])

    def ztw(self, V: np.ndarray, v: np.ndarray) -> np.ndarray:
        """(Z Lambda)' v."""
        return np.bincount(self.cols.ravel(), weights=(V * v[:, None]).ravel(),
                           minlength=self.nre)

    def ztwx(self, V: np.ndarray, w: np.ndarray) -> np.ndarray:
        """(Z Lambda)' W X, nre x p."""
        out = np.empty((self.nre, self.p))
        Vw = V * w[:, None]
        for j in range(self.p):
            out[:, j] = np.bincount(self.cols.ravel(), weights=(Vw * self.X[:, j:j + 1]).ravel(),
                                    minlength=self.nre)
        return out

    # -- solves ----------------------------------------------------------------------------
    def solve_u(self, fac: WeightedFactor, V: np.ndarray, wz: np.ndarray) -> np.ndarray:
        """u with beta fixed (lme4's solveU): (L L')^-1 (Z Lambda)' W z, ``wz`` = W z with z the
        working response less the fixed part."""
        return fac.solve(self.ztw(V, wz))

    def solve_joint(self, fac: WeightedFactor, V: np.ndarray, w: np.ndarray, wz: np.ndarray,
                    z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(u, beta) together (lme4's solve): beta from the Schur complement
        X'WX - RZX'RZX, RZX = L^-1 Lam'Z'WX, then u by back-substitution."""
        C = self.ztwx(V, w)
        Xw = self.X * w[:, None]
        if not fac.has_half:  # (L L')^-1 only: the same Schur complement as C'(L L')^-1 C
            AinvC = fac.solve(C)
            M = self.X.T @ Xw - C.T @ AinvC
            Ainv_ru = fac.solve(self.ztw(V, wz))
            b = sla.solve(M, Xw.T @ z - C.T @ Ainv_ru, assume_a="pos")
            return Ainv_ru - AinvC @ b, b
        RZX = fac.half(C)
        cu = fac.half(self.ztw(V, wz))
        M = self.X.T @ Xw - RZX.T @ RZX
        b = _solve_pos(M, Xw.T @ z - RZX.T @ cu)
        return fac.half_t(cu - RZX @ b), b

    def unscaled_vcov(self, fac: WeightedFactor, V: np.ndarray, w: np.ndarray) -> np.ndarray:
        """(R_X'R_X)^-1 at working weights w (lme4's pp$unsc())."""
        C = self.ztwx(V, w)
        Xw = self.X * w[:, None]
        if fac.has_half:
            RZX = fac.half(C)
            M = self.X.T @ Xw - RZX.T @ RZX
        else:
            M = self.X.T @ Xw - C.T @ fac.solve(C)
        return np.linalg.inv(M)


def _solve_pos(M: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """M^-1 rhs for symmetric positive definite M (LAPACK dposv; a general solve if the
    Cholesky factorization fails, as scipy's assume_a="pos" would raise)."""
    _, x, info = dposv(M, rhs, lower=1)
    if info != 0:
        return sla.solve(M, rhs, check_finite=False)
    return x
