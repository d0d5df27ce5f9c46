"""LmerFit: a fitted linear mixed model with lme4's quantities under lme4's names.

Only theta, the objective and the optimizer's report are stored at construction; everything a
user may ask for (fixef, vcov, ranef with conditional variances, VarCorr, summary) is computed
on first access from one PLS solve at theta-hat, and cached.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from mixedref.engines import PLSObjective, PLSSolution
from mixedref.errors import MixedrefError
from mixedref.fitting.optimize import OptResult
from mixedref.frontend.design import ModelFrame
from mixedref.frontend.fixed import STR_DTYPE
from mixedref.models.basefit import (  # noqa: F401 - the table helpers, re-exported from their home
    FitSummary,
    MixedModelFit,
    condvar_by_factor,
    make_names,
    make_unique,
    ranef_sd_frames,
    varcorr_frame,
    varcorr_groups,
    varcorr_rows,
)


@functools.lru_cache(maxsize=256)
def names_index(names: tuple[str, ...]) -> pd.Index:
    """The Index of these names (pandas' string dtype; empty: pandas' default), built once per
    tuple: building it was 70 us of a fresh small fit's tables (fit after fit of one model,
    as refits and the harness do), a view of it under 1 us. Callers take ``.view()``, so that
    setting a name on their Index leaves the kept one alone (the values are immutable)."""
    return pd.Index(list(names), dtype=STR_DTYPE) if names else pd.Index([])


class LmerFit(MixedModelFit):
    """The result of :func:`mixedref.lmer`: lme4's quantities, computed on demand (what
    it shares with GlmerFit in :class:`mixedref.models.basefit.MixedModelFit`)."""

    def __init__(self, model: ModelFrame, objective: PLSObjective, opt: OptResult,
                 seconds: float | None = None) -> None:
        self.model = model
        self._objective = objective
        self._opt = opt
        self.REML: bool = objective.REML
        self.theta: np.ndarray = np.asarray(opt.theta, dtype=float)
        self.objective: float = float(opt.fval)
        self.nfev: int = opt.nfev
        self.converged: bool = opt.converged
        self.singular: bool = opt.singular
        self.optimizer_code: int = opt.return_code
        self.optinfo = opt.log  # the fit log (mixedref.fitting.optsummary.OptSummary)
        self.seconds = seconds
        self.messages: list[str] = list(model.messages) + list(opt.messages)
        # lmer's arguments (formula, data, REML, ...) and lmer itself, set by mixedref.lmer: what
        # update() and anova's ML refits re-run; None for a fit made by fit_model() from a bare
        # ModelFrame (the fitter is carried, not imported: modular imports this module)
        self.call: dict[str, Any] | None = None
        self.fitter: Callable[..., LmerFit] | None = None

    def update(self, **changes: Any) -> LmerFit:
        """Refit with some of lmer's arguments changed, as R's ``update(m, REML = FALSE)``."""
        if self.call is None or self.fitter is None:
            raise MixedrefError("update() needs the fit's call: this fit was made by "
                                "fit_model() from a model frame, not by mixedref.lmer")
        unknown = sorted(set(changes) - set(self.call))
        if unknown:
            raise TypeError(f"update() got arguments lmer does not take: {unknown}; lmer's "
                            f"are {sorted(self.call)}")
        return self.fitter(**{**self.call, **changes})

    # -- the solution at theta-hat ------------------------------------------------------
    @cached_property
    def _sol(self) -> PLSSolution:
        return self._objective.solve(self.theta, condvar=False)

    @cached_property
    def _ddf_model(self) -> Any:
        """The fit at θ̂ as mixedref.inference.ddf sees it, kept so that its Satterthwaite
        derivatives and
        Kenward-Roger matrices are computed once for every table (coef_table, anova, contest)."""
        from mixedref.inference.ddf import DdfModel

        return DdfModel.from_fit(self)

    @cached_property
    def _condvar(self) -> tuple[np.ndarray, ...]:
        return self._objective.solve(self.theta, condvar=True).condvar

    @cached_property
    def sigma(self) -> float:
        return float(self._sol.sigma)

    @cached_property
    def _fixef_index(self) -> pd.Index:
        """The fixed effects' names as one Index, shared by fixef, vcov and se (of the dtype
        pandas infers for strings, given: its inference was a tenth of a small fit's tables):
        a view of the Index kept per tuple of names (:func:`names_index`)."""
        return names_index(tuple(self.model.fixef_names)).view()

    @cached_property
    def fixef(self) -> pd.Series:
        return pd.Series(self._sol.beta, index=self._fixef_index, name="fixef")

    @cached_property
    def _vcov_values(self) -> np.ndarray:
        """sigma^2 (R_X'R_X)^-1 as an array: se reads it without vcov's DataFrame."""
        RXinv = np.linalg.inv(self._sol.RX) if self.model.p else np.zeros((0, 0))
        return self.sigma**2 * RXinv @ RXinv.T

    @cached_property
    def vcov(self) -> pd.DataFrame:
        """sigma^2 (R_X'R_X)^-1, as lme4's vcov."""
        names = self._fixef_index
        return pd.DataFrame(self._vcov_values.copy(), index=names, columns=names)

    @property
    def df(self) -> int:
        """lme4's logLik df: fixed effects + theta + sigma."""
        return self.model.p + self.model.ntheta + 1

    @cached_property
    def _fitted_rows(self) -> np.ndarray:
        """X beta + Z b (+ offset) over the rows used in the fit."""
        m = self.model
        f = m.X @ self._sol.beta
        off = 0
        for t in m.reterms:
            bt = self._sol.b[off:off + t.q * t.nlevels].reshape(t.nlevels, t.q)
            f = f + np.einsum("nq,nq->n", t.X, bt[t.codes])
            off += t.q * t.nlevels
        if m.offset is not None:
            f = f + m.offset
        return f

    def _padded(self, values: np.ndarray) -> np.ndarray:
        """``values`` (one per row used) over the data's rows as R's naresid gives them: under
        na_action="na.exclude" NaN at the rows dropped for missing values; else as they are."""
        m = self.model
        if m.na_action != "na.exclude" or m.na_positions is None or not len(m.na_positions):
            return values
        out = np.full(len(m.padded_positions), np.nan)
        used = np.isin(m.padded_positions, m.row_positions if m.row_positions is not None
                       else np.arange(m.n))
        out[used] = values
        return out

    @cached_property
    def fitted(self) -> np.ndarray:
        """X beta + Z b (+ offset), on the response scale, as lme4's fitted (NaN at the rows
        dropped for missing values under na_action="na.exclude", as R's naresid)."""
        return self._padded(self._fitted_rows)

    @cached_property
    def _residual_rows(self) -> np.ndarray:
        return np.asarray(self.model.y, dtype=float) - self._fitted_rows

    @cached_property
    def residuals(self) -> np.ndarray:
        """y - fitted (lme4's default response residuals, unweighted; padded as ``fitted``)."""
        return self._padded(self._residual_rows)

    @property
    def _modes(self) -> np.ndarray:
        return self._sol.b

    @property
    def _condvar_blocks(self) -> Sequence[np.ndarray]:
        return self._condvar

    # -- after the fit -------------------------------------------------------------------

    def confint(self, parm: str | Sequence[str] | None = None, *, method: str = "profile",
                level: float = 0.95) -> pd.DataFrame:
        """lme4's confint(m, parm, level, method, oldNames = FALSE): profile-likelihood (the
        default) or Wald intervals, rows sd_.../cor_.../sigma then the fixed effects
        (mixedref.inference.profile)."""
        from mixedref.inference.profile import confint

        return confint(self, parm, method=method, level=level)

    def profile(self, which: str | Sequence[str] | None = None, **options: Any
                ) -> pd.DataFrame:
        """lme4's as.data.frame(profile(m)): ζ and every parameter along each parameter's
        profile (mixedref.inference.profile.profile; options alphamax, npoints, values)."""
        from mixedref.inference.profile import profile

        return profile(self, which, **options)

    def coef_table(self, ddf: str = "Satterthwaite") -> pd.DataFrame:
        """lmerTest's coefficient table (Estimate, Std. Error, df, t value, Pr(>|t|)) with
        Satterthwaite or Kenward-Roger degrees of freedom (mixedref.inference.ddf)."""
        from mixedref.inference.ddf import coef_table

        return coef_table(self, ddf=ddf)

    # -- reporting -----------------------------------------------------------------------
    def summary(self) -> FitSummary:
        """The blocks lme4's summary prints; shows itself at the prompt, ``str()`` is the text."""
        return FitSummary(_summary_text(self))

    def __repr__(self) -> str:
        kind = "REML" if self.REML else "ML"
        return (f"<LmerFit {self.formula!r} {kind} objective={self.objective:.4f} "
                f"nobs={self.nobs} theta={np.round(self.theta, 5).tolist()}>")


def r_format(values: Sequence[float], digits: int = 4) -> list[str]:
    """R's format() of a numeric vector with ``digits``: each value to at most ``digits``
    significant digits (trailing zeros dropped), all with the largest number of decimals
    that any of them then needs (fixed notation), as lme4's summary prints its tables."""
    decimals = 0
    for v in values:
        if not math.isfinite(v) or v == 0:
            continue
        text = f"{v:.{digits - 1}e}"  # d.ddde±x: digits significant digits
        mantissa, exp = text.split("e")
        sig = len(mantissa.replace("-", "").replace(".", "").rstrip("0")) or 1
        decimals = max(decimals, sig - 1 - int(exp))
    return [f"{v:.{decimals}f}" if math.isfinite(v) else str(v) for v in values]


def _summary_text(fit: LmerFit) -> str:
    lines = []
    kind = "REML" if fit.REML else "maximum likelihood "  # lme4 adds " (Laplace...)" for GLMMs
    lines.append(f"Linear mixed model fit by {kind} ['lmerMod']")
    lines.append(f"Formula: {fit.formula}")
    if fit.REML:
        lines.append(f"REML criterion at convergence: {fit.objective:.1f}")
    else:
        head = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
        vals = [f"{fit.aic:.1f}", f"{fit.bic:.1f}", f"{fit.loglik:.1f}", f"{fit.objective:.1f}",
                f"{fit.nobs - fit.df}"]
        w = [max(len(h), len(v)) + 1 for h, v in zip(head, vals, strict=True)]
        lines.append("".join(h.rjust(k) for h, k in zip(head, w, strict=True)))
        lines.append("".join(v.rjust(k) for v, k in zip(vals, w, strict=True)))
    lines.append("")
    lines.append("Scaled residuals: ")
    wts = fit.model.weights
    res = fit._residual_rows * (np.sqrt(wts) if wts is not None else 1.0) / fit.sigma
    qs = np.quantile(res, [0, 0.25, 0.5, 0.75, 1.0])
    mx = float(np.max(np.abs(qs)))  # R's zapsmall(qs, 5), then print(digits = 4), as lme4
    qs = np.round(qs, max(0, 5 - math.ceil(math.log10(mx))) if mx > 0 else 5)
    cells = r_format([float(v) for v in qs])
    w = max(len(c) for c in cells) + 1
    lines.append("".join(h.rjust(w) for h in ["Min", "1Q", "Median", "3Q", "Max"]))
    lines.append("".join(c.rjust(w) for c in cells))
    lines.append("")
    lines.append("Random effects:")
    vc = fit.varcorr
    table = [["Groups", "Name", "Variance", "Std.Dev.", "Corr"]]
    is_var = vc["var2"].isna().to_numpy()
    variances = dict(zip(vc.index[is_var], r_format(vc["vcov"][is_var].tolist()), strict=True))
    sds = dict(zip(vc.index[is_var], r_format(vc["sdcor"][is_var].tolist()), strict=True))
    for grp in dict.fromkeys(vc["grp"]):
        sub = vc[vc["grp"] == grp]
        var = sub[sub["var2"].isna()]
        cov = sub[sub["var2"].notna()]
        for k, (idx, row) in enumerate(zip(var.index, var.itertuples(index=False),
                                           strict=True)):
            corrs = [f"{c.sdcor:.2f}" for c in cov.itertuples(index=False) if c.var2 == row.var1]
            name = "" if pd.isna(row.var1) else str(row.var1)
            table.append([grp if k == 0 else "", name, variances[idx], sds[idx],
                          " ".join(corrs)])
    if not vc["var2"].notna().any():  # lme4 prints a Corr column only when it has entries
        table = [r[:4] for r in table]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        lines.append(" " + " ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    grp_txt = "; ".join(f"{g}, {n}" for g, n in fit.ngroups.items())
    lines.append(f"Number of obs: {fit.nobs}, groups:  {grp_txt}")
    lines.append("")
    lines.append("Fixed effects:")
    # printCoefmat(digits = 4): estimates and SEs rounded together, t values to 3 decimals
    est_se = np.concatenate([fit.fixef.to_numpy(), fit.se.to_numpy()])
    nz = np.abs(est_se[np.isfinite(est_se) & (est_se != 0)])
    dig = max(1, 4 - (1 + int(np.floor(np.log10(nz.min()))))) if nz.size else 1
    cells = r_format(np.round(est_se, dig).tolist())
    tvals = r_format(np.round((fit.fixef / fit.se).to_numpy(), 3).tolist())
    p_ = len(fit.fixef)
    fe = pd.DataFrame({"Estimate": cells[:p_], "Std. Error": cells[p_:], "t value": tvals},
                      index=fit.fixef.index)
    lines.append(fe.to_string())
    p = fit.model.p
    if p > 12:  # lme4 shows the correlation of fixed effects for p <= 12 only
        lines.append(f"Correlation matrix not shown by default, as p = {p} > 12.")
        lines.append("Use print(summary(m), correlation=TRUE)  or")
        lines.append("    vcov(summary(m))        if you need it")
    elif p > 1:
        lines.append("")
        lines.append("Correlation of Fixed Effects:")
        V = fit.vcov.to_numpy()
        sd = np.sqrt(np.diag(V))
        R = V / np.outer(sd, sd)
        names = list(fit.fixef.index)
        abbrev = [nm[:6] for nm in names]
        w = max(len(nm) for nm in names)
        lines.append(" " * (w + 1) + " ".join(a.rjust(6) for a in abbrev[:-1]))
        for i in range(1, p):
            cells = " ".join(f"{R[i, j]:.3f}".rjust(6) for j in range(i))
            lines.append(names[i].ljust(w) + " " + cells)
    if fit.messages:  # as lme4's .prt.warn: the optimizer's code, then the messages
        lines.append("")
        log = fit.optinfo
        name = "nloptwrap" if log is None or log.optimizer.startswith("bobyqa") else \
            log.optimizer
        code = 0 if fit.converged or fit.optimizer_code >= 0 else fit.optimizer_code
        lines.append(f"optimizer ({name}) convergence code: {code} "
                     f"({'OK' if code == 0 else log.return_name if log else code})")
        lines.extend(fit.messages)
    return "\n".join(lines)
