"""Penalized iteratively reweighted least squares (PIRLS) and glmer's criteria, vectorized.

For a GLMM with linear predictor eta = offset + X beta + Z Lambda(theta) u, u ~ N(0, I), the
conditional mode of u (and, for lme4's nAGQ = 0 criterion, beta with it) minimizes the
penalized deviance  pdev = sum(dev_resids(y, mu, wt)) + |u|^2.  Each PIRLS iteration takes the
working weights w = wt mu_eta^2 / V(mu) and working response at the current iterate, solves the
penalized weighted least squares problem with

    L L' = Lambda' Z' W Z Lambda + I

and moves to its solution; when pdev rises, the step is halved towards the previous iterate up
to 20 times (lme4's pwrssUpdate). It stops when |pdev_old - pdev| / pdev < tol (lme4's
tolPwrss, 1e-7). At the mode the Laplace approximation to -2 log-likelihood is, as lme4's
glmerLaplace,

    aic(y, mu) + |u|^2 + log det(L L'),

with L the factor of the last PIRLS solve and aic the family's -2 log-likelihood (R's
``family$aic``). Adaptive Gauss-Hermite quadrature (one scalar random-effects term) replaces
each group's Laplace factor by a K-point rule centred at the mode, scaled by the conditional
standard deviation 1/L_ii.

Lambda' Z' W Z Lambda is accumulated straight from Z Lambda's fixed pattern: each row of
Z Lambda has sum(q_k) non-zeros at known columns, so the matrix is one bincount over the
row-wise pairs; it is factored dense (LAPACK) for up to DENSE_MAX random effects, sparse (SuperLU
with a symmetric ordering) beyond.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.linalg.lapack import dposv, dpotrf, dtrtrs

from mixedref.design import ModelFrame
from mixedref.errors import MixedrefError
from mixedref.family import Family
from mixedref.reterm import split_theta, z_columns

#: Largest number of random effects factored as a dense matrix.
DENSE_MAX = 3000

#: lme4's PIRLS settings: tolPwrss, the iteration limit and the step-halvings per iteration.
TOL_PWRSS = 1e-7
MAXIT = 100
MAX_HALVINGS = 20


class PIRLSError(MixedrefError):
    """PIRLS did not converge, or step-halving could not reduce the penalized deviance."""


@dataclass
class PirlsState:
    """The conditional mode at one (theta, beta) and what lme4 keeps with it."""

    theta: np.ndarray
    beta: np.ndarray
    u: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    devres: np.ndarray  # unit deviances with prior weights
    ldL2: float  # log det L L' (the factor of the last solve)
    sqrL: float  # |u|^2
    aic: float  # the family's -2 log-likelihood at mu
    laplace: float
    weights: np.ndarray  # working weights of the last solve
    Ldiag2: np.ndarray | None  # diagonal of L L' when it is diagonal (one scalar term)
    iterations: int

    @property
    def pdev(self) -> float:
        return float(np.sum(self.devres) + self.sqrL)


class GlmmObjective:
    """lme4's glmer criteria for one model: PIRLS at (theta, beta) or at theta with beta."""

    def __init__(self, model: ModelFrame, family: Family, y: np.ndarray, wt: np.ndarray,
                 ntrials: np.ndarray, offset: np.ndarray | None, mustart: np.ndarray,
                 tol: float = TOL_PWRSS, maxit: int = MAXIT) -> None:
        if not model.reterms:
            raise MixedrefError("no random-effects terms: glmer needs at least one (expr | group)")
        self.model, self.family = model, family
        self.y = np.asarray(y, dtype=float)
        self.wt = np.asarray(wt, dtype=float)
        self.ntrials = np.asarray(ntrials, dtype=float)
        n = self.y.shape[0]
        self.offset = np.zeros(n) if offset is None else np.asarray(offset, dtype=float)
        self.X = np.ascontiguousarray(model.X, dtype=float)
        self.n, self.p = n, model.p
        self.tol, self.maxit = tol, maxit
        terms = model.reterms
        self.terms = terms
        self.theta_sizes = [t.ntheta for t in terms]
        self.ntheta = int(sum(self.theta_sizes))
        # columns of Z Lambda's non-zeros per row: for term k, q_k of them at its level's block
        self.nre = sum(t.q * t.nlevels for t in terms)
        self.cols = z_columns(terms)  # n x K
        K = self.cols.shape[1]
        self.K = K
        t1 = terms[0]
        q1, m1 = t1.q, t1.nlevels
        self._w_pairs = False
        self.q1, self.m1, self.n1 = q1, m1, q1 * m1
        self.r2 = self.nre - self.n1
        self.dense = self.r2 <= DENSE_MAX
        a, b = np.meshgrid(np.arange(K), np.arange(K), indexing="ij")
        self._pa, self._pb = a.ravel(), b.ravel()
        if self.dense:
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
        else:
            self._pair_rows = self.cols[:, self._pa].ravel()
            self._pair_cols = self.cols[:, self._pb].ravel()
        self._diag_only = K == 1  # one scalar term: L L' is diagonal
        self.mustart = np.asarray(mustart, dtype=float)
        self.eta_start = family.linkfun(self.mustart)
        self.lp0: np.ndarray | None = None
        self._group_sum: sp.csr_matrix | None = None  # AGQ: sums over the groups of one term
        # without a scale parameter, aic(mu) - sum(dev_resids(mu)) is the saturated model's
        # -2 log-likelihood, the same for every mu: computed once, aic = sum(devres) + it
        self._aic_offset: float | None = None
        if not family.has_scale:
            dev0 = family.dev_resids(self.y, self.mustart, self.wt)
            self._aic_offset = (family.aic(self.y, self.ntrials, self.mustart, self.wt,
                                           float(np.sum(dev0))) - float(np.sum(dev0)))

    # -- Z Lambda ----------------------------------------------------------------------
    def zlambda(self, theta: np.ndarray) -> np.ndarray:
        """The n x K values of Z Lambda's non-zeros (columns ``self.cols``)."""
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.ntheta,):
            raise MixedrefError(f"theta must have {self.ntheta} elements, got {theta.shape}")
        return np.hstack([np.asarray(t.X, dtype=float) @ t.template(th)
                          for t, th in zip(self.terms, split_theta(theta, self.terms),
                                           strict=True)])

    def _zlu(self, V: np.ndarray, u: np.ndarray) -> np.ndarray:
        return np.einsum("nk,nk->n", V, u[self.cols])

    def _ztw(self, V: np.ndarray, v: np.ndarray) -> np.ndarray:
        """(Z Lambda)' v."""
        return np.bincount(self.cols.ravel(), weights=(V * v[:, None]).ravel(),
                           minlength=self.nre)

    def _ztwx(self, V: np.ndarray, w: np.ndarray) -> np.ndarray:
        """(Z Lambda)' W X, nre x p."""
        out = np.empty((self.nre, self.p))
        Vw = V * w[:, None]
        for j in range(self.p):
            out[:, j] = np.bincount(self.cols.ravel(), weights=(Vw * self.X[:, j:j + 1]).ravel(),
                                    minlength=self.nre)
        return out

    # -- the factor of Lambda' Z' W Z Lambda + I ------------------------------------------
    def _factor(self, V: np.ndarray, w: np.ndarray):
        """Factor Lambda'Z'WZLambda + I at working weights w: (factor, log det, diagonal of
        L L' when it is diagonal)."""
        q = self.nre
        if self._diag_only:
            d = np.bincount(self.cols[:, 0], weights=V[:, 0] ** 2 * w, minlength=q) + 1.0
            return ("diag", d), float(np.sum(np.log(d))), d
        if self.dense:
            F = self._block_factor(V, w)
            return ("block", F), F.logdet, None
        vals = (V[:, self._pa] * V[:, self._pb] * w[:, None]).ravel()
        A = sp.csc_matrix((vals, (self._pair_rows, self._pair_cols)), shape=(q, q))
        A = (A + sp.identity(q, format="csc")).tocsc()
        lu = spla.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                       options={"SymmetricMode": True})
        ld = float(np.sum(np.log(np.abs(lu.U.diagonal()))))
        return ("sparse", lu), ld, None

    def _block_factor(self, V: np.ndarray, w: np.ndarray) -> _BlockFactor:
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
            return _BlockFactor(q1, m1, L1, _Dense(np.zeros((n1, 0))), np.zeros((0, 0)))
        a, b = self._p21
        v21 = (V[:, a] * V[:, b] * w[:, None]).ravel()
        if q1 == 1 and self._w_pairs:  # A21 sparse (a row of Z meets one first-term level)
            vals = np.bincount(self._u21, weights=v21, minlength=self._e_rows.size)
            wv = vals / L1[self._e_cols]
            W = _Coo(self._e_cols, self._e_rows, wv, (n1, r2))
            WtW = np.bincount(self._pflat, weights=wv[self._pe1] * wv[self._pe2],
                              minlength=r2 * r2).reshape(r2, r2)
        else:
            A21 = np.bincount(self._f21, weights=v21, minlength=r2 * n1).reshape(r2, n1)
            if q1 == 1:
                Wd = A21.T / L1[:, None]
            else:
                F0 = _BlockFactor(q1, m1, L1, _Dense(np.zeros((n1, r2))), np.zeros((r2, r2)))
                Wd = F0.half1(np.ascontiguousarray(A21.T))
            W, WtW = _Dense(Wd), Wd.T @ Wd
        a, b = self._p22
        A22 = np.bincount(self._f22, weights=(V[:, a] * V[:, b] * w[:, None]).ravel(),
                          minlength=r2 * r2).reshape(r2, r2)
        A22.flat[::r2 + 1] += 1.0
        L2, info = dpotrf(A22 - WtW, lower=1, clean=1, overwrite_a=1)
        if info != 0:
            raise PIRLSError("Lambda'Z'WZLambda + I is not positive definite")
        return _BlockFactor(q1, m1, L1, W, L2)

    @staticmethod
    def _solve(fac, rhs: np.ndarray) -> np.ndarray:
        kind, F = fac
        if kind == "diag":
            return rhs / (F if rhs.ndim == 1 else F[:, None])
        if kind == "block":
            return F.half_t(F.half(rhs))
        return F.solve(rhs)

    @staticmethod
    def _half_solve(fac, rhs: np.ndarray) -> np.ndarray:
        """L^-1 rhs (diagonal and blocked factors only)."""
        kind, F = fac
        if kind == "diag":
            s = np.sqrt(F)
            return rhs / (s if rhs.ndim == 1 else s[:, None])
        if kind == "block":
            return F.half(rhs)
        raise PIRLSError("internal: half solve on a sparse factor")

    @staticmethod
    def _half_solve_t(fac, rhs: np.ndarray) -> np.ndarray:
        kind, F = fac
        if kind == "diag":
            return rhs / np.sqrt(F)
        return F.half_t(rhs)

    # -- PIRLS -------------------------------------------------------------------------
    def _mu_dev(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu = self.family.linkinv(eta)
        return mu, self.family.dev_resids(self.y, mu, self.wt)

    def pirls(self, theta: np.ndarray, beta: np.ndarray | None = None, *,
              eta0: np.ndarray | None = None) -> PirlsState:
        """The conditional mode at theta, with beta fixed (given) or estimated with u (None:
        lme4's nAGQ = 0 PIRLS, beta updated in each iteration).

        The iteration starts from the linear predictor ``eta0`` (the first working weights and
        response are taken there), by default the family's start linkfun(mustart); u and beta
        enter only through it, as in lme4, where every evaluation restarts from ``lp0``."""
        theta = np.asarray(theta, dtype=float)
        V = self.zlambda(theta)
        fam, y, wt = self.family, self.y, self.wt
        u_only = beta is not None
        if u_only:
            beta = np.asarray(beta, dtype=float)
            fixed_off = self.offset + self.X @ beta
        u = np.zeros(self.nre)
        b = beta if u_only else np.zeros(self.p)
        eta = (self.eta_start if eta0 is None else np.asarray(eta0, dtype=float)).copy()
        mu, devres = self._mu_dev(eta)
        oldpdev = np.finfo(float).max
        converged = False
        it = 0
        for it in range(1, self.maxit + 1):  # noqa: B007
            mu_eta = fam.mu_eta(eta)
            w = wt * mu_eta * mu_eta / fam.variance(mu)
            z = (eta - (fixed_off if u_only else self.offset)) + (y - mu) / mu_eta
            fac, ldL2, d = self._factor(V, w)
            wz = w * z
            if u_only:
                u_new, b_new = self._solve(fac, self._ztw(V, wz)), b
            else:
                if fac[0] == "sparse":
                    u_new, b_new = self._solve_joint_sparse(fac, V, w, wz, z)
                else:
                    C = self._ztwx(V, w)
                    RZX = self._half_solve(fac, C)
                    cu = self._half_solve(fac, self._ztw(V, wz))
                    Xw = self.X * w[:, None]
                    M = self.X.T @ Xw - RZX.T @ RZX
                    rhs = Xw.T @ z - RZX.T @ cu
                    b_new = _solve_pos(M, rhs)
                    u_new = self._half_solve_t(fac, cu - RZX @ b_new)
            base = fixed_off if u_only else self.offset + self.X @ b_new
            eta_new = base + self._zlu(V, u_new)
            mu_new, dev_new = self._mu_dev(eta_new)
            pdev = float(np.sum(dev_new) + u_new @ u_new)
            if abs((oldpdev - pdev) / pdev) < self.tol:
                u, b, eta, mu, devres = u_new, b_new, eta_new, mu_new, dev_new
                converged = True
                break
            if not math.isfinite(pdev) or pdev > oldpdev:
                for _ in range(MAX_HALVINGS):
                    u_new = 0.5 * (u + u_new)
                    b_new = b_new if u_only else 0.5 * (b + b_new)
                    base = fixed_off if u_only else self.offset + self.X @ b_new
                    eta_new = base + self._zlu(V, u_new)
                    mu_new, dev_new = self._mu_dev(eta_new)
                    pdev = float(np.sum(dev_new) + u_new @ u_new)
                    if math.isfinite(pdev) and pdev <= oldpdev:
                        break
                if not math.isfinite(pdev):
                    raise PIRLSError("PIRLS loop resulted in NaN value")
                if pdev - oldpdev > self.tol:  # lme4's test after its step-halvings
                    raise PIRLSError("(maxstephalfit) PIRLS step-halvings failed to reduce "
                                     "deviance in pwrssUpdate")
            u, b, eta, mu, devres = u_new, b_new, eta_new, mu_new, dev_new
            oldpdev = pdev
        if not converged:
            raise PIRLSError(f"pwrssUpdate did not converge in ({self.maxit}) iterations")
        if not fam.validmu(mu):
            raise PIRLSError("PIRLS reached an invalid mean (mu outside the family's range)")
        sqrL = float(u @ u)
        dsum = float(np.sum(devres))
        aic = (dsum + self._aic_offset if self._aic_offset is not None
               else fam.aic(y, self.ntrials, mu, wt, dsum))
        st = PirlsState(theta=theta, beta=np.asarray(b, dtype=float), u=u, eta=eta, mu=mu,
                        devres=devres, ldL2=ldL2, sqrL=sqrL, aic=aic,
                        laplace=ldL2 + sqrL + aic, weights=w, Ldiag2=d, iterations=it)
        return st

    def _solve_joint_sparse(self, fac, V, w, wz, z):
        """The joint (u, beta) solution with a sparse factor: Schur complement on beta."""
        C = self._ztwx(V, w)
        AinvC = self._solve(fac, C)
        Xw = self.X * w[:, None]
        M = self.X.T @ Xw - C.T @ AinvC
        ru = self._ztw(V, wz)
        Ainv_ru = self._solve(fac, ru)
        b = sla.solve(M, Xw.T @ z - C.T @ Ainv_ru, assume_a="pos")
        u = Ainv_ru - AinvC @ b
        return u, b

    # -- criteria ----------------------------------------------------------------------
    def state(self, theta: np.ndarray, beta: np.ndarray | None = None) -> PirlsState:
        """PIRLS at (theta, beta) from lme4's restart point: offset + lp0 once :meth:`set_lp0`
        has run, else the family's start."""
        eta0 = None if self.lp0 is None else self.offset + self.lp0
        return self.pirls(theta, beta, eta0=eta0)

    def set_lp0(self, st: PirlsState) -> None:
        """Make a state's linear predictor (without the offset) the restart point, as lme4's
        ``lp0 <- pp$linPred(1)`` (after its initial PIRLS and after glmer's stage 1)."""
        self.lp0 = st.eta - self.offset

    def laplace_theta(self, theta: np.ndarray) -> float:
        """lme4's nAGQ = 0 criterion (glmer's stage 1): beta estimated inside PIRLS."""
        return self.state(theta, None).laplace

    def laplace(self, pars: np.ndarray) -> float:
        """lme4's Laplace criterion at pars = (theta, beta) (glmer's stage 2, nAGQ = 1)."""
        pars = np.asarray(pars, dtype=float)
        return self.state(pars[:self.ntheta], pars[self.ntheta:]).laplace

    def agq(self, pars: np.ndarray, nAGQ: int) -> float:
        """Adaptive Gauss-Hermite approximation to -2 log-likelihood at (theta, beta), one
        scalar random-effects term; nAGQ = 1 is the Laplace approximation."""
        pars = np.asarray(pars, dtype=float)
        st = self.state(pars[:self.ntheta], pars[self.ntheta:])
        return self.agq_value(st, nAGQ)

    def agq_value(self, st: PirlsState, nAGQ: int) -> float:
        """The AGQ criterion at a PIRLS state, as lme4 defines it (see the note below)."""
        if nAGQ <= 1:
            return st.laplace
        if len(self.terms) != 1 or self.terms[0].q != 1 or st.Ldiag2 is None:
            raise MixedrefError("nAGQ > 1 is only available for models with a single, scalar "
                                "random-effects term")
        z, wq = gh_rule(nAGQ)
        t = self.terms[0]
        codes, m = t.codes, t.nlevels
        V = self.zlambda(st.theta)[:, 0]
        sd = 1.0 / np.sqrt(st.Ldiag2)
        base = st.eta - V * st.u[codes]
        D0 = np.bincount(codes, weights=st.devres, minlength=m) + st.u ** 2
        # all nodes at once: U (m x K) the nodes per group, dev (n x K) the unit deviances there
        U = st.u[:, None] + sd[:, None] * z[None, :]
        mu = self.family.linkinv(base[:, None] + V[:, None] * U[codes])
        dev = self.family.dev_resids(self.y[:, None], mu, self.wt[:, None])
        if self._group_sum is None:
            self._group_sum = sp.csr_matrix((np.ones(self.n), (codes, np.arange(self.n))),
                                            shape=(m, self.n))
        D = self._group_sum @ dev + U * U
        acc = np.exp(-0.5 * (D - D0[:, None]) + 0.5 * z[None, :] ** 2) @ wq
        # lme4's glmerAGQ sums the groups' deviance-residual terms alone: unlike its Laplace
        # value (aic + |u|^2 + log det), the family's saturated constant aic - sum(devres) is
        # left out, so nAGQ > 1 criteria are not on the nAGQ = 1 scale (kept as lme4 has it)
        return float(np.sum(D0 + np.log(st.Ldiag2) - 2.0 * np.log(acc)))

    def unscaled_vcov(self, st: PirlsState) -> np.ndarray:
        """(R_X'R_X)^-1 at the state's working weights (lme4's pp$unsc())."""
        V = self.zlambda(st.theta)
        w = st.weights
        fac, _, _ = self._factor(V, w)
        C = self._ztwx(V, w)
        Xw = self.X * w[:, None]
        if fac[0] == "sparse":
            M = self.X.T @ Xw - C.T @ self._solve(fac, C)
        else:
            RZX = self._half_solve(fac, C)
            M = self.X.T @ Xw - RZX.T @ RZX
        return np.linalg.inv(M)

    def condvar_blocks(self, st: PirlsState) -> list[np.ndarray]:
        """Per term, the (nlevels, q, q) diagonal blocks of (L L')^-1: the conditional
        covariances of u given y at the mode (lme4's condVar before the Lambda and sigma^2
        scaling)."""
        V = self.zlambda(st.theta)
        fac, _, _ = self._factor(V, st.weights)
        S = self._solve(fac, np.eye(self.nre))
        out, off = [], 0
        for t in self.terms:
            idx = off + np.arange(t.nlevels)[:, None] * t.q + np.arange(t.q)[None, :]
            out.append(S[idx[:, :, None], idx[:, None, :]])
            off += t.q * t.nlevels
        return out

    def condvar(self, st: PirlsState) -> np.ndarray:
        """Diagonal of (L L')^-1 scaled back to b: conditional variances of the random effects
        per effect (as lme4's condVar for scalar terms, times sigma^2 = 1)."""
        V = self.zlambda(st.theta)
        fac, _, _ = self._factor(V, st.weights)
        kind, F = fac
        if kind == "diag":
            return 1.0 / F
        if kind == "block":
            Linv = F.half(np.eye(self.nre))
            return np.sum(Linv * Linv, axis=0)
        return np.diag(F.solve(np.eye(self.nre)))


class _Dense:
    """W as a dense matrix: W x and W' y."""

    def __init__(self, W: np.ndarray) -> None:
        self.W = W

    def dot(self, x: np.ndarray) -> np.ndarray:
        return self.W @ x

    def tdot(self, y: np.ndarray) -> np.ndarray:
        return self.W.T @ y


class _Coo:
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


class _BlockFactor:
    """L = [[L1, 0], [W', L2]] with L1 block diagonal (one q1 x q1 lower factor per level of
    the first term; q1 = 1: a vector, and W sparse) and L2 dense: the Cholesky factor of
    [[A11, A12], [A21, A22]] with A11 = L1 L1', W = L1^-1 A12, L2 L2' = A22 - W'W."""

    def __init__(self, q1: int, m1: int, L1: np.ndarray, W: np.ndarray, L2: np.ndarray) -> None:
        self.q1, self.m1, self.n1 = q1, m1, q1 * m1
        self.L1, self.W, self.L2 = L1, W, L2

    @property
    def logdet(self) -> float:
        d1 = self.L1 if self.q1 == 1 else np.diagonal(self.L1, axis1=1, axis2=2)
        return 2.0 * float(np.sum(np.log(d1)) + np.sum(np.log(np.diagonal(self.L2))))

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
        y2 = _triangular(self.L2, x[n1:] - self.W.tdot(y1), trans=0)
        return np.concatenate([y1, y2])

    def half_t(self, y: np.ndarray) -> np.ndarray:
        n1 = self.n1
        if self.L2.shape[0] == 0:
            return self.half1(y, trans=True)
        x2 = _triangular(self.L2, y[n1:], trans=1)
        x1 = self.half1(y[:n1] - self.W.dot(x2), trans=True)
        return np.concatenate([x1, x2])


def _triangular(L: np.ndarray, rhs: np.ndarray, trans: int) -> np.ndarray:
    """L^-1 rhs (trans 0) or L^-T rhs (trans 1) for lower-triangular L, by LAPACK's dtrtrs
    directly: scipy's solve_triangular costs ~60 µs of checks per call, and PIRLS calls it
    several times per iteration on small systems."""
    if L.shape[0] == 0:
        return np.array(rhs, dtype=float)
    x, info = dtrtrs(L, rhs, lower=1, trans=trans)
    if info != 0:
        raise PIRLSError(f"singular triangular factor (LAPACK dtrtrs info {info})")
    return x


def _solve_pos(M: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """M^-1 rhs for symmetric positive definite M (LAPACK dposv; a general solve if the
    Cholesky factorization fails, as scipy's assume_a="pos" would raise)."""
    _, x, info = dposv(M, rhs, lower=1)
    if info != 0:
        return sla.solve(M, rhs, check_finite=False)
    return x


@functools.lru_cache(maxsize=32)
def gh_rule(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes and weights for the standard normal density (weights sum to 1), as
    lme4's GHrule (cached: the arrays are shared, do not modify them)."""
    if k < 1 or k > 100:
        raise MixedrefError(f"nAGQ must be between 1 and 100, got {k}")
    x, w = np.polynomial.hermite_e.hermegauss(k)
    x.setflags(write=False)
    w = w / math.sqrt(2.0 * math.pi)
    w.setflags(write=False)
    return x, w
