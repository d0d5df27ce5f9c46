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

The factorizations are the PLS engines': a weighted system
(:class:`mixedref.engines.base.WeightedSystem`) over Z Lambda's fixed pattern takes each
iteration's working weights (``reweight``, lme4's updateXwts and updateDecomp) and solves for u
with beta fixed (``solve_u``, lme4's solveU) or for u and beta together (``solve_joint``). It is
the dense engine's blocked layout (:class:`mixedref.engines.dense_weighted.DenseWeightedSystem`)
for up to DENSE_MAX random effects after the first term, the sparse engine's
(:class:`mixedref.engines.sparse.SparseWeightedSystem`: CHOLMOD, else SuperLU) beyond.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mixedref.engines.base import PIRLSError, WeightedFactor, WeightedSystem
from mixedref.engines.dense_weighted import DenseWeightedSystem
from mixedref.engines.sparse import SparseWeightedSystem
from mixedref.errors import MixedrefError
from mixedref.frontend.design import ModelFrame
from mixedref.frontend.reterm import split_theta
from mixedref.models.family import Family

#: Largest number of random effects factored as a dense matrix.
DENSE_MAX = 3000

#: lme4's PIRLS settings: tolPwrss, the iteration limit and the step-halvings per iteration.
TOL_PWRSS = 1e-7
MAXIT = 100
MAX_HALVINGS = 20


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
        self.nre = sum(t.q * t.nlevels for t in terms)
        # the engines' weighted system: dense blocked unless the terms after the first have
        # more than DENSE_MAX random effects
        self.dense = self.nre - terms[0].q * terms[0].nlevels <= DENSE_MAX
        self.system: WeightedSystem = (DenseWeightedSystem(terms, self.X) if self.dense
                                       else SparseWeightedSystem(terms, self.X))
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
    @property
    def cols(self) -> np.ndarray:
        """The columns of Z Lambda's non-zeros, row by row (n x K; the weighted system's)."""
        return self.system.cols

    def zlambda(self, theta: np.ndarray) -> np.ndarray:
        """The n x K values of Z Lambda's non-zeros (columns :attr:`cols`)."""
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.ntheta,):
            raise MixedrefError(f"theta must have {self.ntheta} elements, got {theta.shape}")
        return np.hstack([np.asarray(t.X, dtype=float) @ t.template(th)
                          for t, th in zip(self.terms, split_theta(theta, self.terms),
                                           strict=True)])

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
        fam, y, wt, system = self.family, self.y, self.wt, self.system
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
            fac = system.reweight(V, w)
            wz = w * z
            if u_only:
                u_new, b_new = system.solve_u(fac, V, wz), b
            else:
                u_new, b_new = system.solve_joint(fac, V, w, wz, z)
            base = fixed_off if u_only else self.offset + self.X @ b_new
            eta_new = base + system.zlu(V, u_new)
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
                    eta_new = base + system.zlu(V, u_new)
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
        # log det L L' of the last solve only: the factors' logdet is a sum of logs over the
        # diagonal (~20 us on grouseticks' 584 effects), not needed for the iterations before
        ldL2, d = fac.logdet, fac.diag2
        sqrL = float(u @ u)
        dsum = float(np.sum(devres))
        aic = (dsum + self._aic_offset if self._aic_offset is not None
               else fam.aic(y, self.ntrials, mu, wt, dsum))
        st = PirlsState(theta=theta, beta=np.asarray(b, dtype=float), u=u, eta=eta, mu=mu,
                        devres=devres, ldL2=ldL2, sqrL=sqrL, aic=aic,
                        laplace=ldL2 + sqrL + aic, weights=w, Ldiag2=d, iterations=it)
        return st

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

    def _factor_at(self, st: PirlsState) -> tuple[np.ndarray, WeightedFactor]:
        """Z Lambda's values and the factor at a state's theta and working weights."""
        V = self.zlambda(st.theta)
        return V, self.system.reweight(V, st.weights)

    def unscaled_vcov(self, st: PirlsState) -> np.ndarray:
        """(R_X'R_X)^-1 at the state's working weights (lme4's pp$unsc())."""
        V, fac = self._factor_at(st)
        return self.system.unscaled_vcov(fac, V, st.weights)

    def condvar_blocks(self, st: PirlsState) -> list[np.ndarray]:
        """Per term, the (nlevels, q, q) diagonal blocks of (L L')^-1: the conditional
        covariances of u given y at the mode (lme4's condVar before the Lambda and sigma^2
        scaling)."""
        _, fac = self._factor_at(st)
        S = fac.solve(np.eye(self.nre))
        out, off = [], 0
        for t in self.terms:
            idx = off + np.arange(t.nlevels)[:, None] * t.q + np.arange(t.q)[None, :]
            out.append(S[idx[:, :, None], idx[:, None, :]])
            off += t.q * t.nlevels
        return out

    def condvar(self, st: PirlsState) -> np.ndarray:
        """Diagonal of (L L')^-1 scaled back to b: conditional variances of the random effects
        per effect (as lme4's condVar for scalar terms, times sigma^2 = 1)."""
        return self._factor_at(st)[1].inverse_diagonal()


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
