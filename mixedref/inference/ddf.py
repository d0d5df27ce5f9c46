"""Denominator degrees of freedom for fixed-effects tests, as lmerTest and pbkrtest give them.

Satterthwaite (lmerTest): the variance parameters are lmerTest's varpar, (θ, σ). Their
asymptotic covariance is 2 H⁻¹, H the Hessian of the fit's criterion (REML criterion or
deviance, β profiled out, σ *not* profiled) at (θ̂, σ̂); the df of a contrast l is
2 (l'Vl)² / (g' 2H⁻¹ g), g the gradient of l'V(θ, σ)l, V = σ²(R_X'R_X)⁻¹.

Derivatives: the criterion is a(θ) + b(θ)/σ² + c log(2πσ²) (a = log det terms, b = pwrss,
c = n or n - p) and V = σ² C(θ), so every σ derivative is exact and only θ derivatives are
numerical: central differences with Richardson extrapolation (4 step halvings from 10 % of
|θ_i|, as numDeriv's defaults), which are accurate to about 1e-9 relative here. An analytic
Hessian would need second derivatives of the sparse Cholesky factor; the extrapolated
differences reuse the PLS engine as it is and are as accurate as lmerTest's own numDeriv. Each
of the 1 + 4 (2k + 2k(k-1)) points reads the engine's factorization alone
(``criterion_pieces``: solve()'s values bit for bit, without β, u and b); on InstEval the dense
Cholesky of each point is then nearly all of the cost. (The dense engine's exact Hessian of the
profiled criterion, ``value_grad_hess``, costs a tenth of the 73 points there but differs from
the extrapolated one by up to 8e-9 relative, the extrapolation's own error, and Satterthwaite
also needs the derivatives of b(θ) and C(θ) apart: not used, so the df stay numDeriv's.)

Kenward–Roger (pbkrtest): the covariance parameters are each term's variances/covariances and
σ², each with its G_r = ∂Σ/∂γ_r. Its P, Q and trace matrices are computed by Woodbury's
identity in the random effects' space (:mod:`mixedref.inference.ddf_kr`: q x q, nothing n x n),
refused
beyond :data:`mixedref.inference.ddf_kr.MAX_KR_EFFECTS` random effects; pbkrtest's own dense n x n
algebra
is kept as ``kr_parts(model, method="dense")``, the oracle on small fits (up to
:data:`MAX_KR_NOBS` observations).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

from mixedref.engines import PLSObjective
from mixedref.errors import MixedrefError
from mixedref.frontend.reterm import split_theta
from mixedref.inference.ddf_kr import KRPieces, kr_pieces_woodbury

__all__ = ["DDF_METHODS", "KR_METHODS", "MAX_KR_NOBS", "DdfModel", "coef_table", "contest",
           "ddf_model", "kr_parts", "vcov_kr"]

#: lmerTest's names of the methods this module implements.
DDF_METHODS = ("Satterthwaite", "Kenward-Roger")

#: Largest number of observations for the dense Kenward–Roger path (the oracle): it holds
#: (covariance parameters + 2) dense n x n matrices, 4 GB at n = 8000 for a random-slope model.
#: The default path (mixedref.inference.ddf_kr) is bounded by the random effects instead.
MAX_KR_NOBS = 6000

#: lmerTest's tolerance on the eigenvalues of the varpar Hessian (smaller ones are dropped).
_HESSIAN_TOL = 1e-8


# -- the model quantities at one θ ------------------------------------------------------------

@dataclass
class DdfModel:
    """What both methods need of a fit at one θ: the PLS objective, θ, and the solution there.
    Build it with :meth:`from_fit`; ``theta=`` evaluates another estimate (say lme4's) under the
    same model, to tell a df difference from an estimate difference."""

    objective: PLSObjective
    theta: np.ndarray
    names: tuple[str, ...]

    @classmethod
    def from_fit(cls, fit: Any, theta: np.ndarray | None = None) -> DdfModel:
        th = fit.theta if theta is None else np.atleast_1d(np.asarray(theta, dtype=float))
        return cls(fit._objective, np.asarray(th, dtype=float), tuple(fit.model.fixef_names))

    @property
    def REML(self) -> bool:
        return self.objective.REML

    @cached_property
    def _sol(self):
        return self.objective.solve(self.theta)

    @cached_property
    def beta(self) -> np.ndarray:
        return np.asarray(self._sol.beta, dtype=float)

    @cached_property
    def sigma(self) -> float:
        return float(self._sol.sigma)

    @cached_property
    def vcov(self) -> np.ndarray:
        return self.sigma**2 * _unscaled_vcov(self.objective, self.theta)

    @cached_property
    def satterthwaite(self) -> SatterthwaiteParts:
        return satterthwaite_parts(self)

    @cached_property
    def kr(self) -> KRParts:
        return kr_parts(self)


def ddf_model(fit: Any) -> DdfModel:
    """A DdfModel as it is, or the fit's own (kept on an LmerFit: derivatives computed once)."""
    if isinstance(fit, DdfModel):
        return fit
    kept = getattr(fit, "_ddf_model", None)
    return kept if isinstance(kept, DdfModel) else DdfModel.from_fit(fit)


def _unscaled_vcov(objective: PLSObjective, theta: np.ndarray) -> np.ndarray:
    """C(θ) = (R_X'R_X)⁻¹, so that vcov(β̂) = σ² C(θ)."""
    RXinv = np.linalg.inv(objective.criterion_pieces(theta).RX)
    return RXinv @ RXinv.T


# -- Satterthwaite ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SatterthwaiteParts:
    """lmerTest's vcov_varpar (2 H⁻¹ over (θ, σ)) and Jac_list (∂V/∂varpar, one p x p each)."""

    vcov_varpar: np.ndarray
    jacobian: np.ndarray  # (nvarpar, p, p)
    hessian: np.ndarray


def _theta_pieces(objective: PLSObjective, theta: np.ndarray) -> np.ndarray:
    """[a(θ), b(θ), C(θ) flattened]: the θ-dependent pieces of the criterion and of vcov
    (from the engine's factorization alone:
    :meth:`mixedref.engines.base.PLSEngine.criterion_pieces`)."""
    sol = objective.criterion_pieces(theta)
    a = sol.ldL2 + (sol.ldRX2 if objective.REML else 0.0)
    RXinv = np.linalg.inv(sol.RX)
    return np.concatenate([[a, sol.pwrss], (RXinv @ RXinv.T).ravel()])


def richardson_derivatives(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
                           rel_step: float = 0.1, levels: int = 4, zero_step: float = 1e-4,
                           f0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Jacobian (m, k) and Hessian (m, k, k) of a vector function f: R^k -> R^m at x, by
    central differences extrapolated (Richardson) over ``levels`` halvings of the step
    (``f0``: f(x) where the caller has it already).

    f is evaluated at all points first, in lexicographic order of the point, so that points
    sharing their leading coordinates come one after another: the dense engine keeps the
    Schur complement of its first term's θ for the next point (``criterion_pieces``), and
    with k scalar terms only 2 levels + 1 of the 1 + levels (2k + 2k(k-1)) points need it
    recomputed. The differences themselves are the same expressions in the same order."""
    x = np.asarray(x, dtype=float)
    k = x.size
    h0 = np.where(np.abs(x) > 1e-6, rel_step * np.abs(x), zero_step)
    f0 = np.asarray(f(x) if f0 is None else f0, dtype=float)
    points: dict[tuple[int, ...], np.ndarray] = {}
    for lev in range(levels):
        h = h0 / 2**lev
        for i in range(k):
            points[lev, i, 1] = x + h[i] * np.eye(k)[i]
            points[lev, i, -1] = x - h[i] * np.eye(k)[i]
            for j in range(i + 1, k):
                ei, ej = h[i] * np.eye(k)[i], h[j] * np.eye(k)[j]
                points[lev, i, j, 1, 1] = x + ei + ej
                points[lev, i, j, 1, -1] = x + ei - ej
                points[lev, i, j, -1, 1] = x - ei + ej
                points[lev, i, j, -1, -1] = x - ei - ej
    order = sorted(points, key=lambda key: tuple(points[key].tolist()))
    fx = {key: np.asarray(f(points[key])) for key in order}
    jac_levels, hess_levels = [], []
    for lev in range(levels):
        h = h0 / 2**lev
        plus = [fx[lev, i, 1] for i in range(k)]
        minus = [fx[lev, i, -1] for i in range(k)]
        J = np.stack([(plus[i] - minus[i]) / (2 * h[i]) for i in range(k)], axis=-1)
        H = np.empty((f0.size, k, k))
        for i in range(k):
            H[:, i, i] = (plus[i] - 2 * f0 + minus[i]) / h[i] ** 2
            for j in range(i + 1, k):
                d = (fx[lev, i, j, 1, 1] - fx[lev, i, j, 1, -1] - fx[lev, i, j, -1, 1]
                     + fx[lev, i, j, -1, -1])
                H[:, i, j] = H[:, j, i] = np.asarray(d) / (4 * h[i] * h[j])
        jac_levels.append(J)
        hess_levels.append(H)
    return _extrapolate(jac_levels), _extrapolate(hess_levels)


def _extrapolate(estimates: list[np.ndarray]) -> np.ndarray:
    """Richardson's table for estimates at steps h, h/2, h/4, ... with errors in even powers
    of h: each column removes the next power."""
    table = list(estimates)
    for m in range(1, len(table)):
        factor = 4.0**m
        table = [(factor * table[i + 1] - table[i]) / (factor - 1) for i in range(len(table) - 1)]
    return table[0]


def satterthwaite_parts(model: DdfModel) -> SatterthwaiteParts:
    """Hessian of the criterion over (θ, σ) and the Jacobian of vcov(β) over them (θ numerical,
    σ exact), and the varpar covariance 2 H⁻¹ (eigenvalues above 1e-8 of the Hessian in units
    of σ: see :func:`_pseudo_inverse_times2`)."""
    obj, theta, s = model.objective, model.theta, model.sigma
    p, k = len(model.names), theta.size
    pieces = _theta_pieces(obj, theta)
    J, H = richardson_derivatives(lambda th: _theta_pieces(obj, th), theta, f0=pieces)
    b, C = pieces[1], pieces[2:].reshape(p, p)
    c = obj.n - (obj.p if obj.REML else 0)  # coefficient of log(2 pi sigma^2)
    hess = np.empty((k + 1, k + 1))
    hess[:k, :k] = H[0] + H[1] / s**2
    hess[:k, k] = hess[k, :k] = -2.0 * J[1] / s**3
    hess[k, k] = 6.0 * b / s**4 - 2.0 * c / s**2
    jac = np.empty((k + 1, p, p))
    jac[:k] = s**2 * np.moveaxis(J[2:].reshape(p, p, k), -1, 0)
    jac[k] = 2.0 * s * C
    return SatterthwaiteParts(_pseudo_inverse_times2(hess, s), jac, hess)


def _pseudo_inverse_times2(h: np.ndarray, sigma: float) -> np.ndarray:
    """2 H⁻¹ restricted to the eigenvalues above the tolerance, the Hessian taken over (θ, σ/σ̂)
    so that the cut is scale-free. lmerTest cuts H's eigenvalues over (θ, σ) at 1e-8 as they
    are: its ∂²/∂σ² is about 2n/σ², below 1e-8 once σ is above ~3e5 (sim_scale_large: σ 6.4e5),
    and dropping that direction makes σ look exactly known (x's df 1.17e6 there, 271.6 with the
    response rescaled). θ is already in units of σ, so only σ's row and column are scaled."""
    k = h.shape[0]
    scale = np.ones(k)
    scale[-1] = sigma
    hs = h * np.outer(scale, scale)
    vals, vecs = np.linalg.eigh((hs + hs.T) / 2)
    pos = vals > _HESSIAN_TOL
    inv = 2.0 * (vecs[:, pos] / vals[pos]) @ vecs[:, pos].T
    return inv * np.outer(scale, scale)


def _satterthwaite_df(parts: SatterthwaiteParts, V: np.ndarray, lvec: np.ndarray) -> float:
    """2 (l'Vl)² / (g' A g), g_i = l' ∂V/∂varpar_i l, A the varpar covariance."""
    g = np.einsum("i,kij,j->k", lvec, parts.jacobian, lvec)
    return float(2.0 * (lvec @ V @ lvec) ** 2 / (g @ parts.vcov_varpar @ g))


# -- Kenward–Roger ------------------------------------------------------------------------------

@dataclass(frozen=True)
class KRParts:
    """pbkrtest's vcovAdj with its attributes: Φ_A, the P_r matrices and W = 2 IE2⁻¹."""

    vcov_adj: np.ndarray
    vcov: np.ndarray  # Φ = vcov(β̂), lme4's
    P: tuple[np.ndarray, ...]
    W: np.ndarray


def _covariance_parameters(model: DdfModel) -> tuple[np.ndarray, list[sp.csr_matrix]]:
    """γ (per term its σ²TT' lower triangle in column-major order, then σ²) and G_r = ∂Σ/∂γ_r
    (Z_t (I ⊗ E_ij) Z_t' per term parameter, I for σ²), as pbkrtest orders them."""
    terms = model.objective.terms
    gammas: list[float] = []
    G: list[sp.csr_matrix] = []
    s2 = model.sigma**2
    for t, th in zip(terms, split_theta(model.theta, terms), strict=True):
        cov = s2 * t.covariance(th)
        Z = t.Z.tocsc()
        for i, j in t.theta_index():
            gammas.append(float(cov[i, j]))
            Zi, Zj = Z[:, i::t.q], Z[:, j::t.q]
            Gr = Zi @ Zj.T
            G.append((Gr + Gr.T).tocsr() if i != j else Gr.tocsr())
    n = model.objective.n
    gammas.append(s2)
    G.append(sp.identity(n, format="csr"))
    return np.array(gammas), G


def _check_kr(model: DdfModel) -> None:
    """Kenward–Roger needs a REML fit (as lmerTest) and no prior weights."""
    obj = model.objective
    if not obj.REML:
        raise MixedrefError(
            "Kenward-Roger's method is only available for REML model fits (as lmerTest); "
            "refit with REML=True, e.g. fit.update(REML=True)")
    if obj.model.weights is not None:
        raise MixedrefError("Kenward-Roger with prior weights is not implemented (pbkrtest "
                            "ignores the weights); use ddf='Satterthwaite'")


def _kr_pieces_dense(model: DdfModel) -> KRPieces:
    """P, Q and K with Σ, Σ⁻¹ and G_rΣ⁻¹ held dense (n x n), as pbkrtest computes them: the
    oracle for :func:`mixedref.inference.ddf_kr.kr_pieces_woodbury`, refused beyond
    :data:`MAX_KR_NOBS` observations."""
    n = model.objective.n
    if n > MAX_KR_NOBS:
        raise MixedrefError(
            f"the dense Kenward-Roger path holds n x n matrices and n = {n} observations "
            f"exceeds MAX_KR_NOBS = {MAX_KR_NOBS} (about {8 * n**2 / 1e9:.1f} GB per matrix); "
            "use method='woodbury'")
    X = np.asarray(model.objective.model.X, dtype=float)
    gam, G = _covariance_parameters(model)
    Sigma = sum(g * Gr for g, Gr in zip(gam, G, strict=True)).toarray()
    Sinv = np.linalg.inv(Sigma)
    Sinv = (Sinv + Sinv.T) / 2
    TT = Sinv @ X
    HH = [np.asarray(Gr @ Sinv) for Gr in G]  # G_r Σ⁻¹
    OO = [np.asarray(Gr @ TT) for Gr in G]  # G_r Σ⁻¹ X
    P = tuple((-(Or.T @ TT) - (Or.T @ TT).T) / 2 for Or in OO)
    m = len(G)
    SO = [Sinv @ Or for Or in OO]
    Q = tuple(tuple(OO[r].T @ SO[s] for s in range(m)) for r in range(m))
    K = np.empty((m, m))
    for r in range(m):
        for s in range(r, m):
            K[r, s] = K[s, r] = float(np.sum(HH[r].T * HH[s]))
    return KRPieces(P, Q, K)


#: the ways of computing Kenward–Roger's pieces: "woodbury" (q x q, the default) and "dense"
#: (n x n, pbkrtest's own algebra; kept as the oracle for small fits)
KR_METHODS = ("woodbury", "dense")


def kr_parts(model: DdfModel, method: str = "woodbury") -> KRParts:
    """Kenward & Roger (1997) adjusted covariance of β̂ for a linear covariance structure
    Σ = Σ_r γ_r G_r (the second-derivative terms vanish), as pbkrtest's vcovAdj; ``method``
    chooses how P, Q and the traces K are computed (:data:`KR_METHODS`)."""
    _check_kr(model)
    if method == "woodbury":
        pieces = kr_pieces_woodbury(model.objective.terms, model.theta, model.sigma,
                                    model.objective.model.X)
    elif method == "dense":
        pieces = _kr_pieces_dense(model)
    else:
        raise MixedrefError(f"unknown Kenward-Roger method {method!r}; use "
                            f"{' or '.join(map(repr, KR_METHODS))}")
    Phi = model.vcov
    P, Q, m = pieces.P, pieces.Q, len(pieces.P)
    IE2 = np.empty((m, m))
    for r in range(m):
        for s in range(r, m):
            IE2[r, s] = IE2[s, r] = (pieces.K[r, s] - 2 * np.sum(Phi * Q[r][s])
                                     + np.trace(Phi @ P[r] @ Phi @ P[s]))
    cond = np.min(np.abs(np.linalg.eigvalsh(IE2)))
    W = 2 * (np.linalg.inv(IE2) if cond > 1e-10 else np.linalg.pinv(IE2))
    W = (W + W.T) / 2
    U = sum(W[r, s] * (Q[r][s] - P[r] @ Phi @ P[s]) for r in range(m) for s in range(m))
    return KRParts(Phi + 2 * Phi @ U @ Phi, Phi, P, W)


def _kr_statistics(parts: KRParts, L: np.ndarray) -> dict[str, float]:
    """Kenward–Roger's A1, A2 and from them the denominator df and the F scaling for the
    hypothesis Lβ = 0 with q = rank(L) (Kenward & Roger 1997, section 4)."""
    Phi = parts.vcov
    q = int(np.linalg.matrix_rank(L))
    Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
    u = [Theta @ Phi @ Pr @ Phi for Pr in parts.P]
    tr = np.array([np.trace(ui) for ui in u])
    A1 = float(tr @ parts.W @ tr)
    A2 = float(sum(parts.W[i, j] * np.sum(u[i] * u[j].T)
                   for i in range(len(u)) for j in range(len(u))))
    B = (A1 + 6 * A2) / (2 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    denom = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / denom, (q - g) / denom, (q + 2 - g) / denom
    V0 = 1 + c1 * B
    V0 = 0.0 if abs(V0) < 1e-10 else V0
    V1, V2 = 1 - c2 * B, 1 - c3 * B
    ratio = 1.0 if abs(1 - A2 / q) < 1e-14 and abs(V1) < 1e-14 else (1 - A2 / q) / V1
    with np.errstate(divide="ignore", invalid="ignore"):  # R's x/0 = Inf, as pbkrtest's:
        rho = np.float64(ratio)**2 * V0 / V2 / q        # V2 = 0 (balanced one-way) gives df 4
        df = float(4 + (q + 2) / (q * rho - 1))
    scaling = 1.0 if abs(df - 2) < 0.01 else df * (1 - A2 / q) / (df - 2)
    return {"q": q, "df": df, "F.scaling": scaling, "A1": A1, "A2": A2}


# -- the public functions -----------------------------------------------------------------------

def _check_ddf(ddf: str) -> str:
    if ddf not in DDF_METHODS:
        raise MixedrefError(f"unknown ddf {ddf!r}; the methods are {', '.join(DDF_METHODS)}")
    return ddf


def _contrast_matrix(L: Any, names: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """L as a 2-D float array with one column per fixed effect, and its row names (a
    DataFrame's columns are matched to the fixed effects by name)."""
    p = len(names)
    rows = None
    if isinstance(L, pd.DataFrame):
        if set(map(str, L.columns)) == set(names):
            L = L[list(names)]
        rows = [str(r) for r in L.index]
    elif isinstance(L, pd.Series):
        L = L.to_numpy()[None, :] if set(map(str, L.index)) != set(names) else \
            L[list(names)].to_numpy()[None, :]
    arr = np.atleast_2d(np.asarray(L, dtype=float))
    if arr.ndim != 2 or arr.shape[1] != p:
        raise MixedrefError(f"L has {arr.shape[-1]} columns but the model has {p} fixed "
                            f"effects ({', '.join(names)}): L needs one column per fixed effect")
    if not np.all(np.isfinite(arr)):
        raise MixedrefError("L must be finite")
    return arr, rows if rows is not None else [str(i + 1) for i in range(arr.shape[0])]


def _t_row(model: DdfModel, lvec: np.ndarray, ddf: str) -> dict[str, float]:
    """One contrast's t test: Estimate, Std. Error, df, t value, Pr(>|t|), as contest1D."""
    est = float(lvec @ model.beta)
    if ddf == "Kenward-Roger":
        parts = model.kr
        var = float(lvec @ parts.vcov_adj @ lvec)
        df = _kr_statistics(parts, lvec[None, :])["df"]
    else:
        var = float(lvec @ model.vcov @ lvec)
        df = _satterthwaite_df(model.satterthwaite, model.vcov, lvec)
    se = math.sqrt(var)
    t = est / se
    return {"Estimate": est, "Std. Error": se, "df": df, "t value": t,
            "Pr(>|t|)": float(2 * stats.t.sf(abs(t), df))}


def coef_table(fit: Any, ddf: str = "Satterthwaite") -> pd.DataFrame:
    """lmerTest's ``summary(m, ddf=)$coefficients``: per fixed effect Estimate, Std. Error
    (Kenward–Roger: the adjusted one, from vcovAdj), df, t value, Pr(>|t|)."""
    ddf = _check_ddf(ddf)
    model = ddf_model(fit)
    eye = np.eye(len(model.names))
    rows = [_t_row(model, eye[i], ddf) for i in range(len(model.names))]
    return pd.DataFrame(rows, index=list(model.names),
                        columns=["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"])


def _f_table(F: float, ndf: int, df: float, sigma: float, scaling: float = 1.0
             ) -> pd.DataFrame:
    """lmerTest's F table: Mean Sq = F σ² (F before scaling), Sum Sq = ndf Mean Sq."""
    ms = F * sigma**2
    Fs = F * scaling
    return pd.DataFrame({"Sum Sq": [ms * ndf], "Mean Sq": [ms], "NumDF": [ndf], "DenDF": [df],
                         "F value": [Fs], "Pr(>F)": [float(stats.f.sf(Fs, ndf, df))]})


def _get_fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """The F statistic's df from the per-direction t dfs (lmerTest's get_Fstat_ddf): the
    common value when they agree, else from the expectation of a sum of F(1, nu_m)."""
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2)))
    return 2 * E / (E - nu.size)


def _joint_satterthwaite(model: DdfModel, L: np.ndarray) -> pd.DataFrame:
    """The multi-df Satterthwaite F test: L is rotated to the eigenvectors of L V L' (dropping
    null directions), each direction gets its t df, and they are combined (lmerTest)."""
    if L.shape[0] == 1:
        r = _t_row(model, L[0], "Satterthwaite")
        return _f_table(r["t value"] ** 2, 1, r["df"], model.sigma)
    d, P = np.linalg.eigh(L @ model.vcov @ L.T)
    d, P = d[::-1], P[:, ::-1]
    pos = d > max(math.sqrt(np.finfo(float).eps) * d[0], 0)
    q = int(pos.sum())
    PtL = (P.T @ L)[:q]
    if q == 1:
        r = _t_row(model, PtL[0], "Satterthwaite")
        return _f_table(r["t value"] ** 2, 1, r["df"], model.sigma)
    F = float(np.sum((PtL @ model.beta) ** 2 / d[:q]) / q)
    parts = model.satterthwaite
    nu = np.array([_satterthwaite_df(parts, model.vcov, PtL[m]) for m in range(q)])
    return _f_table(F, q, _get_fstat_ddf(nu), model.sigma)


def _joint_kr(model: DdfModel, L: np.ndarray) -> pd.DataFrame:
    """pbkrtest's KRmodcomp F test of Lβ = 0 as lmerTest reports it: Wald statistic on the
    adjusted covariance over q, multiplied by KR's F scaling, on (q, KR df) degrees of freedom."""
    parts = model.kr
    st = _kr_statistics(parts, L)
    Lb = L @ model.beta
    F = float(Lb @ np.linalg.solve(L @ parts.vcov_adj @ L.T, Lb)) / st["q"]
    return _f_table(F, st["q"], st["df"], model.sigma, st["F.scaling"])


def contest(fit: Any, L: Any, ddf: str = "Satterthwaite", joint: bool = True
            ) -> pd.DataFrame:
    """lmerTest's ``contest(m, L, joint=, ddf=)`` for Lβ = 0: joint=False a t test per row of L
    (Estimate, Std. Error, df, t value, Pr(>|t|)); joint=True one F test (Sum Sq, Mean Sq,
    NumDF, DenDF, F value, Pr(>F)). L: rows x fixed effects (array, or DataFrame by name)."""
    ddf = _check_ddf(ddf)
    model = ddf_model(fit)
    Lm, rows = _contrast_matrix(L, model.names)
    if joint:
        if ddf == "Kenward-Roger":
            return _joint_kr(model, Lm)
        return _joint_satterthwaite(model, Lm)
    out = [_t_row(model, Lm[i], ddf) for i in range(Lm.shape[0])]
    return pd.DataFrame(out, index=rows,
                        columns=["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"])


def vcov_kr(fit: Any) -> pd.DataFrame:
    """pbkrtest's ``vcovAdj(m)``: the Kenward–Roger adjusted covariance of β̂. An ML fit is
    first refitted by REML, as pbkrtest does (lmerTest's KR tests refuse ML fits instead)."""
    if not isinstance(fit, DdfModel) and not fit.REML:
        fit = fit.update(REML=True)
    model = ddf_model(fit)
    names = list(model.names)
    return pd.DataFrame(model.kr.vcov_adj, index=names, columns=names)
