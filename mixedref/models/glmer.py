"""``glmer``: generalized linear mixed models as lme4 1.1-31's glmer, with its quantities.

The stages follow lme4's: the response is prepared as R's family ``initialize`` does (a factor's
first level is failure, ``cbind(successes, failures)`` becomes proportions with the trials as
prior weights, proportions take ``weights=`` as trials), the matrices come from
:func:`mixedref.frontend.design.build_model`, the criterion from :mod:`mixedref.engines.pirls`, and
the
optimization is lme4's two stages:

1. theta alone, beta estimated inside PIRLS (lme4's nAGQ = 0 criterion, ``nAGQ0initStep``),
   from lme4's start (identity templates);
2. theta and beta together under the Laplace (nAGQ = 1) or adaptive Gauss-Hermite criterion,
   from stage 1's estimate, with lme4's stage-2 initial steps (0.02 for theta, 0.2 SE for beta,
   SE capped at 10), then lme4's boundary check.

Both stages use lmer's optimizer pieces under lmer's one :class:`mixedref.fitting.control.Control`:
NLopt's BOBYQA (:func:`mixedref.fitting.optimize.bobyqa_run`; lme4's defaults are minqa's bobyqa,
then
Nelder-Mead), lme4's check.boundary and checkConv (:mod:`mixedref.fitting.convergence`). The
Hessian of
the stage-2 criterion by lme4's central differences (deriv12, step 1e-4, in
:func:`mixedref.fitting.convergence.derivatives`) gives lme4's default ``vcov``; the R_X-based one
is
``vcov_rx``. The fit log is ``optinfo`` (:class:`mixedref.fitting.optsummary.OptSummary`), as
lmer's.

:func:`glmer_devfun` is lme4's ``glmer(..., devFunOnly = TRUE)``: the criterion at any
(theta, beta), for cross-evaluation.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from mixedref.engines.pirls import GlmmObjective, PIRLSError, PirlsState
from mixedref.errors import (
    ConvergenceWarning,
    FormulaError,
    MixedrefError,
    ResponseError,
    SingularFitWarning,
)
from mixedref.fitting.control import GLMER_STAGE1_STEP, Control
from mixedref.fitting.convergence import check, derivatives, snap_to_boundary
from mixedref.fitting.optimize import Penalized, bobyqa_run, is_singular
from mixedref.fitting.optsummary import NLOPT_CODES, OptSummary
from mixedref.frontend.design import ModelFrame, ResponseRule, build_model
from mixedref.frontend.fixed import evaluate
from mixedref.frontend.formula import Call, Name, Node, deparse
from mixedref.models.basefit import FitSummary, MixedModelFit
from mixedref.models.family import Family, FamilyError, get_family

__all__ = ["FamilyError", "GlmerFit", "ResponseError", "glmer", "glmer_devfun"]

VectorArg = str | np.ndarray | Sequence[float] | None



# --------------------------------------------------------------------------- the response


def _numeric(raw: object, what: str) -> np.ndarray:
    if isinstance(raw, pd.Categorical):
        raise ResponseError(f"{what} must be numeric, got a factor")
    return np.asarray(raw, dtype=float)


class _GlmerResponse:
    """glmer's response rule for :func:`mixedref.frontend.design.build_model` (R's family
    initialize):
    a factor's first level is failure, ``cbind(successes, failures)`` becomes proportions with
    the trials joining the prior weights, then the family's checks on the rows kept."""

    def __init__(self, family: Family) -> None:
        self.family = family
        self.name = ""  # the response as R deparses it
        self.counts = False  # the response came as cbind() counts (trials in the weights)

    def rule(self) -> ResponseRule:
        return ResponseRule(read=self.read, check=self.check)

    def read(self, resp: Node, data: pd.DataFrame, cache: dict[str, Any],
             weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The response and the prior weights (times the trials of a cbind response) on every
        row of the data, NaN where missing."""
        family = self.family
        self.name = resp.id if isinstance(resp, Name) else deparse(resp)
        w = np.ones(data.shape[0]) if weights is None else np.asarray(weights, dtype=float)
        if np.any(w[np.isfinite(w)] < 0):
            raise ResponseError("negative weights not allowed")
        if isinstance(resp, Call) and resp.fn == "cbind":
            if len(resp.args) != 2:
                raise FormulaError(f"cbind() response needs two columns (successes, failures), "
                                   f"got {len(resp.args)}: {deparse(resp)}")
            if not family.takes_trials:
                raise ResponseError(f"a cbind(successes, failures) response needs the binomial "
                                    f"family, not {family.name}")
            s = _numeric(evaluate(resp.args[0], data, cache), deparse(resp.args[0]))
            f = _numeric(evaluate(resp.args[1], data, cache), deparse(resp.args[1]))
            ok = np.isfinite(s) & np.isfinite(f)
            if np.any((s[ok] < 0) | (f[ok] < 0)):
                raise ResponseError(f"counts in {deparse(resp)} must be non-negative")
            if np.any(np.abs(s[ok] - np.round(s[ok])) > 1e-3) or np.any(
                    np.abs(f[ok] - np.round(f[ok])) > 1e-3):
                raise ResponseError(f"non-integer counts in a binomial response {deparse(resp)}")
            tot = s + f
            with np.errstate(invalid="ignore", divide="ignore"):
                y = np.where(tot > 0, s / np.where(tot > 0, tot, 1.0), 0.0)
            y[~ok] = np.nan
            self.counts = True
            return y, w * tot
        raw = evaluate(resp, data, cache)
        if isinstance(raw, pd.Categorical):
            if not family.takes_trials:
                raise ResponseError(f"response {deparse(resp)!r} is a factor: only the binomial "
                                    f"family takes one (got {family.name})")
            codes = raw.codes.astype(float)
            return np.where(codes < 0, np.nan, (codes > 0).astype(float)), w
        return np.asarray(raw, dtype=float), w

    def check(self, y: np.ndarray, w: np.ndarray | None) -> None:
        self.family.validate(y, np.ones(y.shape[0]) if w is None else w, self.name,
                             counts=self.counts)


def _objective(formula: str, data: pd.DataFrame, family: str | Family, link: str | None,
               weights: VectorArg, offset: VectorArg, control: Control
               ) -> tuple[ModelFrame, Family, GlmmObjective, str]:
    fam = get_family(family, link)
    response = _GlmerResponse(fam)
    model = build_model(formula, data, weights=weights, offset=offset, response=response.rule())
    y = np.asarray(model.y, dtype=float)
    w = np.ones(model.n) if model.weights is None else np.asarray(model.weights, dtype=float)
    if response.counts:  # cbind(): only the binomial takes it
        ntrials = w.copy()  # R: n = successes + failures; weights = prior weights * n
    else:
        ntrials = np.ones(model.n)
    obj = GlmmObjective(model, fam, y, w, ntrials, model.offset, fam.initialize(y, w),
                        tol=control.tol_pwrss, maxit=control.pirls_maxit)
    # lme4's mkGlmerDevfun: one PIRLS (beta inside) at the start theta from the family's start,
    # whose linear predictor is the restart point lp0 of every later evaluation
    obj.set_lp0(obj.pirls(model.theta_start.astype(float), None))
    return model, fam, obj, model.response


# --------------------------------------------------------------------------- optimizing


@dataclass
class _Stage:
    """One BOBYQA stage of glmer: its estimate, criterion, NLopt code and evaluations, the
    criterion at its start and how many evaluations failed (given a penalty instead)."""

    pars: np.ndarray
    fval: float
    code: int
    nfev: int
    start: np.ndarray | None = None
    finitial: float = float("nan")
    nonfinite: int = 0


def _bobyqa_stage(fn, x0: np.ndarray, lower: np.ndarray, ctrl: Control,
                  step: np.ndarray | float, snap: bool) -> _Stage:
    """BOBYQA (mixedref.fitting.optimize) on glmer's criterion with failed PIRLS penalized, then
    lme4's
    check.boundary (mixedref.fitting.convergence) when ``snap``."""
    safe = Penalized(fn, (PIRLSError,))
    x, fx, code, nfev = bobyqa_run(safe, x0, lower, ctrl, initial_step=step)
    if snap:
        x, fx = snap_to_boundary(safe, x, fx, lower, ctrl.boundary_tol)
    first = safe.first if safe.first is not None else float("nan")
    return _Stage(x, fx, code, nfev, x0.copy(), first, safe.count)


# --------------------------------------------------------------------------- the fit


class GlmerFit(MixedModelFit):
    """The result of :func:`glmer`: lme4's quantities for a glmerMod, computed on demand (what
    it shares with LmerFit in :class:`mixedref.models.basefit.MixedModelFit`)."""

    def __init__(self, model: ModelFrame, family: Family, objective: GlmmObjective,
                 response: str, nAGQ: int, stage1: _Stage, stage2: _Stage | None,
                 state: PirlsState, criterion: float, hessian: np.ndarray | None,
                 gradient: np.ndarray | None, messages: list[str], seconds: float | None,
                 optinfo: OptSummary | None = None) -> None:
        self.model = model
        self.family = family
        self._obj = objective
        self.response = response
        self.nAGQ = nAGQ
        self.stage1, self.stage2 = stage1, stage2
        self._state = state
        nth = objective.ntheta
        final = stage2 if stage2 is not None else stage1
        self.theta: np.ndarray = np.asarray(final.pars[:nth], dtype=float)
        self.objective: float = float(criterion)  # -2 logLik (lme4's devcomp$cmp["dev"])
        self.hessian = hessian
        self.gradient = gradient
        self.nfev = stage1.nfev + (stage2.nfev if stage2 is not None else 0)
        code = final.code
        self.optimizer_code = code
        self.converged: bool = not (code < 0 or code == 5)
        self.singular: bool = is_singular(self.theta, model.theta_lower)
        # the fit log (mixedref.fitting.optsummary.OptSummary), lme4's optinfo
        self.optinfo = optinfo
        self.messages = list(messages)
        if not self.converged:
            self.messages.append(f"convergence code {code} from BOBYQA")
        if self.singular:
            self.messages.append("boundary (singular) fit: see help('isSingular')")
        self.seconds = seconds

    # -- basic quantities --------------------------------------------------------------
    @property
    def REML(self) -> bool:  # noqa: N802
        return False

    @cached_property
    def fixef(self) -> pd.Series:
        return pd.Series(self._state.beta, index=list(self.model.fixef_names), name="fixef")

    @cached_property
    def sigma(self) -> float:
        """1 for binomial and Poisson; for families with a scale, lme4's sqrt(pwrss / n)."""
        if not self.family.has_scale:
            return 1.0
        st = self._state
        wrss = float(np.sum(self._pearson_raw ** 2))
        return math.sqrt((wrss + st.sqrL) / self.nobs)

    @cached_property
    def _pearson_raw(self) -> np.ndarray:
        st = self._state
        o = self._obj
        return (o.y - st.mu) * np.sqrt(o.wt / self.family.variance(st.mu))

    @cached_property
    def vcov_rx(self) -> pd.DataFrame:
        """sigma^2 (R_X'R_X)^-1: lme4's vcov(m, use.hessian = FALSE)."""
        names = list(self.model.fixef_names)
        V = self.sigma**2 * self._obj.unscaled_vcov(self._state)
        return pd.DataFrame(V, index=names, columns=names)

    @cached_property
    def vcov_hessian(self) -> pd.DataFrame | None:
        """The beta block of 2 H^-1, H the stage-2 criterion's finite-difference Hessian in
        (theta, beta): lme4's default vcov for glmer. None without a usable Hessian."""
        if self.hessian is None:
            return None
        nth = self._obj.ntheta
        try:
            Hi = np.linalg.inv(self.hessian)
        except np.linalg.LinAlgError:
            return None
        V = Hi[nth:, nth:]
        V = V + V.T
        if not np.all(np.isfinite(V)) or np.min(np.linalg.eigvalsh(V)) <= 0:
            return None
        names = list(self.model.fixef_names)
        return pd.DataFrame(V, index=names, columns=names)

    @cached_property
    def vcov(self) -> pd.DataFrame:
        """lme4's default vcov: from the Hessian when available and positive definite, else
        from R_X (lme4 warns and falls back likewise)."""
        Vh = self.vcov_hessian
        if Vh is None:
            if self.hessian is not None:
                self.messages.append("variance-covariance matrix computed from finite-difference "
                                     "Hessian is not positive definite or contains NA values: "
                                     "falling back to var-cov estimated from RX")
            return self.vcov_rx
        return Vh

    @cached_property
    def se_rx(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.vcov_rx.to_numpy())), index=self.fixef.index,
                         name="se_rx")

    @property
    def df(self) -> int:
        """logLik's df: fixed effects + theta (+ the scale for Gamma / inverse Gaussian, + θ of a
        negative binomial, as lme4's npar)."""
        return (self.model.p + self.model.ntheta + int(self.family.has_scale)
                + int(self.family.theta is not None))  # lme4 counts a negative binomial's θ

    @cached_property
    def deviance(self) -> float:
        """lme4's deviance(m) for a GLMM: the sum of squared deviance residuals."""
        return float(np.sum(self._state.devres))

    @property
    def df_resid(self) -> int:
        return self.nobs - self.df

    @cached_property
    def fitted(self) -> np.ndarray:
        """mu, the conditional mean on the response scale (lme4's fitted)."""
        return self._state.mu.copy()

    @cached_property
    def linear_predictor(self) -> np.ndarray:
        return self._state.eta.copy()

    def residuals_of(self, type: str = "deviance") -> np.ndarray:  # noqa: A002 - R's name
        """lme4's residuals(m, type): "deviance" (default), "pearson", "response"."""
        st, y = self._state, self._obj.y
        if type == "deviance":
            return np.sign(y - st.mu) * np.sqrt(np.maximum(st.devres, 0.0))
        if type == "pearson":
            return self._pearson_raw.copy()
        if type == "response":
            return y - st.mu
        raise MixedrefError(f"unknown residual type {type!r}; use 'deviance', 'pearson' or "
                            "'response'")

    @property
    def residuals(self) -> np.ndarray:
        return self.residuals_of("deviance")

    @property
    def residuals_pearson(self) -> np.ndarray:
        return self.residuals_of("pearson")

    @property
    def residuals_response(self) -> np.ndarray:
        return self.residuals_of("response")

    @property
    def residuals_deviance(self) -> np.ndarray:
        return self.residuals_of("deviance")

    # -- random effects ----------------------------------------------------------------
    @cached_property
    def _templates(self) -> list[np.ndarray]:
        return [t.template(th) for t, th in zip(self.model.reterms, self.theta_by_term(),
                                                strict=True)]

    @cached_property
    def _modes(self) -> np.ndarray:
        """b = Lambda u, level-major per term (the modes u of PIRLS scaled by the templates)."""
        parts, off = [], 0
        for t, T in zip(self.model.reterms, self._templates, strict=True):
            ut = self._state.u[off:off + t.q * t.nlevels].reshape(t.nlevels, t.q)
            off += t.q * t.nlevels
            parts.append((ut @ T.T).ravel())
        return np.concatenate(parts)

    @cached_property
    def _condvar_blocks(self) -> list[np.ndarray]:
        """sigma^2 Lambda (L L')^-1 Lambda' blocks per term at the final PIRLS weights (lme4's
        ranef(m, condVar = TRUE) "postVar")."""
        blocks = self._obj.condvar_blocks(self._state)
        s2 = self.sigma**2
        return [s2 * np.matmul(np.matmul(T, B), T.T)
                for T, B in zip(self._templates, blocks, strict=True)]

    @property
    def _residual_row(self) -> bool:
        return self.family.has_scale

    # -- after the fit -------------------------------------------------------------------
    def coef_table(self) -> pd.DataFrame:
        """lme4's summary(m)$coefficients: Estimate, Std. Error, z value (t value for a family
        with a scale), Pr(>|z|) (mixedref.inference.glmer_inference)."""
        from mixedref.inference.glmer_inference import coef_table

        return coef_table(self)

    def confint(self, parm: str | Sequence[str] | None = None, *, method: str = "Wald",
                level: float = 0.95) -> pd.DataFrame:
        """lme4's confint(m, parm, level, method, oldNames = FALSE): "Wald" (NaN rows for the
        variance parameters, beta +- z SE for the fixed effects) or "profile" (scalar terms,
        families without a scale: mixedref.inference.glmer_profile)."""
        if method == "profile":
            from mixedref.inference.glmer_profile import profile_confint

            return profile_confint(self, parm, level)
        from mixedref.inference.glmer_inference import confint

        return confint(self, parm, method=method, level=level)

    # -- reporting -----------------------------------------------------------------------
    @property
    def method(self) -> str:
        if self.nAGQ <= 1:
            return "Laplace Approximation"
        return f"Adaptive Gauss-Hermite Quadrature, nAGQ = {self.nAGQ}"

    def summary(self) -> FitSummary:
        return FitSummary(_summary_text(self))

    def __repr__(self) -> str:
        return (f"<GlmerFit {self.formula!r} {self.family.name}({self.family.link}) "
                f"{self.method} -2logLik={self.objective:.4f} nobs={self.nobs} "
                f"theta={np.round(self.theta, 5).tolist()}>")


def _summary_text(fit: GlmerFit) -> str:
    lines = [f"Generalized linear mixed model fit by maximum likelihood ({fit.method}) "
             "[glmerMod]",
             f" Family: {fit.family.name}  ( {fit.family.link} )",
             f"Formula: {fit.formula}", ""]
    head = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    vals = [f"{fit.aic:.1f}", f"{fit.bic:.1f}", f"{fit.loglik:.1f}", f"{fit.objective:.1f}",
            f"{fit.df_resid}"]
    w = [max(len(h), len(v)) + 1 for h, v in zip(head, vals, strict=True)]
    lines.append("".join(h.rjust(k) for h, k in zip(head, w, strict=True)))
    lines.append("".join(v.rjust(k) for v, k in zip(vals, w, strict=True)))
    lines += ["", "Scaled residuals: "]
    res = fit.residuals_pearson / (fit.sigma if fit.family.has_scale else 1.0)
    qs = np.quantile(res, [0, 0.25, 0.5, 0.75, 1.0])
    lines.append("".join(h.rjust(9) for h in ["Min", "1Q", "Median", "3Q", "Max"]))
    lines.append("".join(f"{v:.4f}".rjust(9) for v in qs))
    lines += ["", "Random effects:"]
    vc = fit.varcorr
    table = [["Groups", "Name", "Variance", "Std.Dev.", "Corr"]]
    for grp in dict.fromkeys(vc["grp"]):
        sub = vc[vc["grp"] == grp]
        var = sub[sub["var2"].isna()]
        cov = sub[sub["var2"].notna()]
        for k, row in enumerate(var.itertuples(index=False)):
            corrs = [f"{c.sdcor:.2f}" for c in cov.itertuples(index=False) if c.var2 == row.var1]
            name = "" if row.var1 is None or pd.isna(row.var1) else str(row.var1)
            table.append([grp if k == 0 else "", name, f"{row.vcov:.4g}", f"{row.sdcor:.4g}",
                          " ".join(corrs)])
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for r in table:
        lines.append(" " + " ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)).rstrip())
    grp_txt = ", ".join(f"{g}, {n}" for g, n in fit.ngroups.items())
    lines += [f"Number of obs: {fit.nobs}, groups:  {grp_txt}", "", "Fixed effects:"]
    est = fit.fixef
    fe = fit.coef_table()
    lines.append(fe.to_string(float_format=lambda v: f"{v:.4g}"))
    p = fit.model.p
    if p > 1:
        lines += ["", "Correlation of Fixed Effects:"]
        V = fit.vcov.to_numpy()
        sd = np.sqrt(np.diag(V))
        R = V / np.outer(sd, sd)
        names = list(est.index)
        wn = max(len(nm) for nm in names)
        lines.append(" " * (wn + 1) + " ".join(nm[:6].rjust(6) for nm in names[:-1]))
        for i in range(1, p):
            lines.append(names[i].ljust(wn) + " " + " ".join(f"{R[i, j]:.3f}".rjust(6)
                                                             for j in range(i)))
    if fit.messages:
        lines += [""] + list(dict.fromkeys(fit.messages))
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry points


def _check_nagq(nAGQ: int, model: ModelFrame) -> int:
    if isinstance(nAGQ, bool) or int(nAGQ) != nAGQ or not 0 <= int(nAGQ) <= 25:
        raise MixedrefError(f"nAGQ must be an integer between 0 and 25, got {nAGQ!r}")
    nAGQ = int(nAGQ)
    if nAGQ > 1 and (len(model.reterms) != 1 or model.reterms[0].q != 1):
        raise MixedrefError("nAGQ > 1 is only available for models with a single, scalar "
                            "random-effects term")
    return nAGQ


class GlmerDevfun:
    """lme4's glmer(..., devFunOnly = TRUE): the criterion at pars = (theta, beta) (nAGQ >= 1),
    or at theta (nAGQ = 0, beta inside PIRLS)."""

    def __init__(self, model: ModelFrame, family: Family, objective: GlmmObjective, nAGQ: int
                 ) -> None:
        self.model, self.family, self.objective, self.nAGQ = model, family, objective, nAGQ

    def __call__(self, pars: Sequence[float] | np.ndarray) -> float:
        with threadpool_limits(limits=1, user_api="blas"):
            return self._value(np.asarray(pars, dtype=float))

    def _value(self, pars: np.ndarray) -> float:
        if self.nAGQ == 0:
            return self.objective.laplace_theta(pars)
        nth, p = self.objective.ntheta, self.model.p
        if pars.shape != (nth + p,):
            raise MixedrefError(f"pars must hold {nth} theta and {p} fixed effects, got "
                                f"{pars.shape}")
        return self.objective.agq(pars, self.nAGQ)


def _stage1(obj: GlmmObjective, model: ModelFrame, ctrl: Control, nAGQ: int) -> _Stage:
    """glmer's stage 1: theta alone under the nAGQ = 0 criterion (beta inside PIRLS)."""
    nth = obj.ntheta
    lower_t = model.theta_lower.astype(float)
    th0 = (np.asarray(ctrl.start, dtype=float) if ctrl.start is not None
           else model.theta_start.astype(float))
    if th0.shape != (nth,):
        raise MixedrefError(f"start theta must have {nth} elements, got {th0.size}")
    if np.all(th0 == 0):
        th0 = th0 + 1e-3
    if ctrl.nAGQ0initStep or nAGQ == 0:
        step = GLMER_STAGE1_STEP if ctrl.initial_step is None else ctrl.initial_step
        return _bobyqa_stage(obj.laplace_theta, th0, lower_t, ctrl, step, snap=nAGQ == 0)
    f0 = obj.laplace_theta(th0)
    return _Stage(th0, f0, 0, 1, th0.copy(), f0)


def glmer_devfun(formula: str, data: pd.DataFrame, family: str | Family = "binomial", *,
                 link: str | None = None, nAGQ: int = 1, weights: VectorArg = None,
                 offset: VectorArg = None, control: Control | Mapping[str, Any] | None = None
                 ) -> GlmerDevfun:
    """The criterion glmer optimizes, without optimizing (lme4's devFunOnly = TRUE)."""
    ctrl = Control.from_any(control)
    with threadpool_limits(limits=1, user_api="blas"):
        model, fam, obj, _ = _objective(formula, data, family, link, weights, offset, ctrl)
        nAGQ = _check_nagq(nAGQ, model)
        if nAGQ > 0 and ctrl.nAGQ0initStep:  # as lme4: stage 1 runs, its end is lp0
            stage1 = _stage1(obj, model, ctrl, nAGQ)
            obj.set_lp0(obj.state(stage1.pars, None))
    return GlmerDevfun(model, fam, obj, nAGQ)


def glmer(formula: str, data: pd.DataFrame, family: str | Family = "binomial", *,
          link: str | None = None, nAGQ: int = 1, weights: VectorArg = None,
          offset: VectorArg = None, control: Control | Mapping[str, Any] | None = None
          ) -> GlmerFit:
    """Fit a generalized linear mixed model by maximum likelihood as lme4's glmer.

    ``family``: "binomial", "poisson", "Gamma", "inverse.gaussian" (as R spells them) or a
    :class:`mixedref.models.family.Family`; ``link`` one of the family's links (None: its default).
    ``nAGQ``: 1 Laplace, 0 lme4's fast criterion (beta inside PIRLS), > 1 adaptive
    Gauss-Hermite quadrature (one scalar random-effects term only). ``weights``: prior weights
    (for a binomial proportion, the trials); ``offset``: on the linear-predictor scale.
    """
    t0 = time.perf_counter()
    # the matrices are small: BLAS threads only contend (tens of times slower on a busy machine)
    with threadpool_limits(limits=1, user_api="blas"):
        fit = _glmer(formula, data, family, link, nAGQ, weights, offset, control)
    fit.seconds = time.perf_counter() - t0
    return fit


def _glmer(formula: str, data: pd.DataFrame, family: str | Family, link: str | None, nAGQ: int,
           weights: VectorArg, offset: VectorArg,
           control: Control | Mapping[str, Any] | None, defer_derivs: bool = False
           ) -> GlmerFit:
    """glmer's fit; ``defer_derivs``: without lme4's derivative checks (the Hessian, gradient,
    checkConv), which :func:`conclude_deferred` adds later, the same as glmer would have
    (glmer_nb's theta search reads only the criterion, theta and beta of all fits but one)."""
    t0 = time.perf_counter()
    ctrl = Control.from_any(control)
    model, fam, obj, response = _objective(formula, data, family, link, weights, offset, ctrl)
    nAGQ = _check_nagq(nAGQ, model)
    nth, p = obj.ntheta, model.p
    lower_t = model.theta_lower.astype(float)
    messages = list(model.messages)

    stage1 = _stage1(obj, model, ctrl, nAGQ)
    x1 = stage1.pars
    st1 = obj.state(x1, None)
    if nAGQ == 0:
        log = _optinfo(ctrl, stage1, None, st1.laplace, nth)
        fit = GlmerFit(model, fam, obj, response, nAGQ, stage1, None, st1, st1.laplace, None,
                       None, messages, None, log)
        fit.seconds = log.seconds = time.perf_counter() - t0
        return fit

    # stage 2: theta and beta under the Laplace / AGQ criterion
    beta1 = (np.asarray(ctrl.start_fixef, dtype=float) if ctrl.start_fixef is not None
             else st1.beta)
    se1 = np.sqrt(np.diag(obj.unscaled_vcov(st1)))
    obj.set_lp0(st1)  # updateGlmerDevfun: lp0 from the end of stage 1
    x0 = np.concatenate([x1, beta1])
    step = 0.2 * np.concatenate([np.full(nth, 0.1), np.minimum(se1, 10.0)])
    lower = np.concatenate([lower_t, np.full(p, -np.inf)])

    def f2(pars: np.ndarray) -> float:
        return obj.agq(pars, nAGQ)

    stage2 = _bobyqa_stage(f2, x0, lower, ctrl, step, snap=True)
    staged = _Staged(model, fam, obj, response, nAGQ, ctrl, stage1, stage2, lower, messages,
                     time.perf_counter() - t0)
    return _conclude(staged, ctrl.calc_derivs and not defer_derivs)


@dataclass
class _Staged:
    """A glmer fit at the end of its stage 2, before lme4's derivative checks: what
    :func:`_conclude` makes the fit from (kept on a fit whose checks were deferred)."""

    model: ModelFrame
    family: Family
    obj: GlmmObjective
    response: str
    nAGQ: int
    ctrl: Control
    stage1: _Stage
    stage2: _Stage
    lower: np.ndarray
    messages: list[str]
    seconds: float  # the stages' time


def _conclude(staged: _Staged, calc_derivs: bool, warn_singular: bool = True,
              stacklevel: int = 4) -> GlmerFit:
    """The fit from its stages: lme4's derivative checks at the estimate when ``calc_derivs``
    (the Hessian, the gradient, checkConv's messages and warnings), the final PIRLS state and
    criterion, the fit log. The stages are not changed: concluding again gives the same fit."""
    t0 = time.perf_counter()
    model, obj, nAGQ, ctrl = staged.model, staged.obj, staged.nAGQ, staged.ctrl
    stage2 = replace(staged.stage2)
    nth, lower = obj.ntheta, staged.lower

    def f2(pars: np.ndarray) -> float:
        return obj.agq(pars, nAGQ)

    x2 = stage2.pars
    grad = hess = None
    checks: list[str] = []
    eigenvalues: list[float] | None = None
    free = ~(np.isfinite(lower) & (x2 <= lower))
    if calc_derivs:
        # lme4's deriv12 over all of (theta, beta) (the Hessian gives vcov), then its checkConv
        # on the parameters off their bounds (a variance at zero is excluded)
        _, grad, hess = derivatives(f2, x2, lower, boundary=-np.inf)
        stage2.nfev += 1 + 2 * x2.size + 2 * x2.size * (x2.size - 1)
        checks, eigenvalues = check(grad[free], hess[np.ix_(free, free)], ctrl.check_conv_grad,
                                    ctrl.check_conv_hess)
    final = obj.state(x2[:nth], x2[nth:])
    crit = obj.agq_value(final, nAGQ)
    log = _optinfo(ctrl, staged.stage1, stage2, crit, nth)
    log.checks, log.hessian_eigenvalues = checks, eigenvalues
    log.gradient = None if grad is None else [float(g) for g in grad[free]]
    fit = GlmerFit(model, staged.family, obj, staged.response, nAGQ, staged.stage1, stage2,
                   final, crit, hess, grad, staged.messages + checks, None, log)
    fit.converged = fit.converged and not checks
    for msg in checks:
        warnings.warn(msg, ConvergenceWarning, stacklevel=stacklevel)
    if fit.singular and warn_singular:
        warnings.warn("boundary (singular) fit: see help('isSingular')", SingularFitWarning,
                      stacklevel=stacklevel)
    fit.seconds = staged.seconds + time.perf_counter() - t0
    log.seconds = fit.seconds
    if ctrl.calc_derivs and not calc_derivs:
        fit._staged = staged  # type: ignore[attr-defined]  # checks deferred: see glmer_nb
    return fit


def glmer_deferred(formula: str, data: pd.DataFrame, family: str | Family, *,
                   link: str | None = None, nAGQ: int = 1, weights: VectorArg = None,
                   offset: VectorArg = None, control: Control | Mapping[str, Any] | None = None
                   ) -> GlmerFit:
    """:func:`glmer` without lme4's derivative checks at the end (the finite-difference
    Hessian and gradient, 1 + 2k + 2k(k-1) criterion evaluations for k = ntheta + p, and
    checkConv): a fit read only for its criterion and estimates, whose checks
    :func:`conclude_deferred` can add later."""
    with threadpool_limits(limits=1, user_api="blas"):
        return _glmer(formula, data, family, link, nAGQ, weights, offset, control,
                      defer_derivs=True)


def conclude_deferred(fit: GlmerFit) -> GlmerFit:
    """The fit :func:`glmer` would have returned for a :func:`glmer_deferred` fit: the
    derivative checks run at its estimate, on its criterion (the same numbers, the same
    convergence warnings; its singular-fit warning is not repeated). A fit without deferred
    checks is returned as it is."""
    staged = getattr(fit, "_staged", None)
    if staged is None:
        return fit
    with threadpool_limits(limits=1, user_api="blas"):
        return _conclude(staged, True, warn_singular=False, stacklevel=3)


def _optinfo(ctrl: Control, stage1: _Stage, stage2: _Stage | None, crit: float, nth: int
             ) -> OptSummary:
    """The fit log of glmer (lme4's m@optinfo) from its last stage; stage 1, when stage 2
    followed, is one line of ``strategies``."""
    last = stage2 if stage2 is not None else stage1
    start = np.asarray(last.start if last.start is not None else last.pars, dtype=float)
    name, meaning = NLOPT_CODES.get(last.code, (str(last.code), "unknown code"))
    log = OptSummary(optimizer="bobyqa", settings=asdict(ctrl), start=start[:nth].tolist(),
                     finitial=float(last.finitial), theta=last.pars[:nth].tolist(),
                     fmin=float(crit), nfev=stage1.nfev + (stage2.nfev if stage2 else 0),
                     return_code=last.code, return_name=name, return_meaning=meaning,
                     nonfinite=stage1.nonfinite + (stage2.nonfinite if stage2 else 0))
    if stage2 is not None:
        log.fixef_start = start[nth:].tolist()
        log.fixef = stage2.pars[nth:].tolist()
        log.strategies.append(f"stage 1 (theta alone, nAGQ = 0 criterion): {stage1.nfev} "
                              f"evaluations to {stage1.fval:.10g}, NLopt code {stage1.code}")
    return log
