"""The fitted-model base LmerFit and GlmerFit share (as MixedModels.jl's MixedModel): what a
fit is made of (the model frame, θ, the criterion, the fit log) and what follows from it the same
way for both (VarCorr rows, conditional modes and variances by factor, logLik, AIC, BIC,
standard errors, predict, simulate), plus the helpers that build lme4's tables."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from mixedref.fitting.optsummary import OptSummary
from mixedref.frontend.design import ModelFrame
from mixedref.frontend.fixed import STR_DTYPE
from mixedref.frontend.reterm import split_theta


def make_unique(names: list[str]) -> list[str]:
    """R's make.unique: later duplicates get ".1", ".2", ... (first occurrence unchanged)."""
    seen: dict[str, int] = {}
    taken = set(names)
    out = []
    for nm in names:
        if nm not in seen:
            seen[nm] = 0
            out.append(nm)
            continue
        k = seen[nm]
        while True:
            k += 1
            cand = f"{nm}.{k}"
            if cand not in taken:
                break
        seen[nm] = k
        taken.add(cand)
        out.append(cand)
    return out


_R_RESERVED = frozenset(
    "if else repeat while function for next break TRUE FALSE NULL Inf NaN NA NA_integer_ "
    "NA_real_ NA_character_ NA_complex_ in".split())


def make_names(names: Sequence[str]) -> list[str]:
    """R's ``make.names(names, unique = TRUE)``: characters other than letters, digits, "." and
    "_" become ".", an invalid start gets "X" prepended, reserved words get a trailing ".",
    then :func:`make_unique`."""
    out = []
    for nm in names:
        nm = re.sub(r"[^0-9A-Za-z._]", ".", nm)
        if not nm or re.match(r"[0-9_]|\.[0-9]", nm):
            nm = "X" + nm
        out.append(nm + "." if nm in _R_RESERVED else nm)
    return make_unique(out)


def varcorr_groups(groups: Sequence[str]) -> list[str]:
    """The group names lme4's VarCorr writes for the terms' grouping factors: unchanged when
    all differ, else ``make.names(unique = TRUE)`` on all of them (a ``||`` term on
    ``Wafer:Site`` gives ``Wafer.Site`` and ``Wafer.Site.1``)."""
    groups = list(groups)
    return groups if len(set(groups)) == len(groups) else make_names(groups)


VARCORR_COLUMNS = ("grp", "var1", "var2", "vcov", "sdcor")


def varcorr_rows(terms: Sequence[tuple[str, Sequence[str], Any]], sigma: float | None
                 ) -> list[dict[str, Any]]:
    """The rows of R's as.data.frame(VarCorr(m)), the one builder of them (fits, records):
    per term (group name as lme4 prints it, its columns, its covariance matrix) the variances,
    then the covariances of the lower triangle in column-major order with their correlations
    (NaN for a zero standard deviation, as lme4), then the residual row unless ``sigma`` is
    None (families without a scale)."""
    rows: list[dict[str, Any]] = []
    for grp, cols, cov in terms:
        V = np.atleast_2d(np.asarray(cov, dtype=float))
        sd = np.sqrt(np.clip(np.diag(V), 0.0, None))
        rows += [dict(zip(VARCORR_COLUMNS, (grp, c, None, float(V[i, i]), float(sd[i])),
                          strict=True)) for i, c in enumerate(cols)]
        for j in range(len(cols)):
            for i in range(j + 1, len(cols)):
                denom = sd[i] * sd[j]
                rows.append(dict(zip(VARCORR_COLUMNS, (
                    grp, cols[j], cols[i], float(V[i, j]),
                    float(V[i, j] / denom) if denom > 0 else float("nan")), strict=True)))
    if sigma is not None:
        rows.append(dict(zip(VARCORR_COLUMNS, ("Residual", None, None, float(sigma) ** 2,
                                                float(sigma)), strict=True)))
    return rows


def varcorr_frame(terms: Sequence[Any], theta: np.ndarray, sigma: float,
                  residual: bool = True) -> pd.DataFrame:
    """R's as.data.frame(VarCorr(m)) of a fit: :func:`varcorr_rows` of its terms at θ (lme4's
    group names, :func:`varcorr_groups`; covariances σ² T Tᵀ), the residual row if
    ``residual``."""
    pieces = split_theta(theta, terms)
    covs = [(grp, t.columns, sigma**2 * t.covariance(th)) for grp, t, th in
            zip(varcorr_groups([t.group for t in terms]), terms, pieces, strict=True)]
    rows = varcorr_rows(covs, sigma if residual else None)
    # by columns, each of the dtype pandas infers from the rows (strings: pandas' str dtype,
    # NaN where missing; a column of None only: object; numbers float64), without the
    # inference from dicts, which was half of the table
    cols: list[Any] = []
    for c in VARCORR_COLUMNS:
        vals = [r[c] for r in rows]
        if c in ("vcov", "sdcor"):
            cols.append(np.array(vals, dtype=float))
        elif any(v is not None for v in vals):
            cols.append(pd.array(np.array(vals, dtype=object), dtype=STR_DTYPE))
        else:
            cols.append(np.array(vals, dtype=object))
    return frame_of_columns(cols, VARCORR_COLUMNS)


def frame_of_columns(arrays: Sequence[Any], names: tuple[str, ...]) -> pd.DataFrame:
    """The DataFrame of these columns (1-d numpy or pandas arrays of one length, not copied)
    under these names: the arrays' dtypes are taken as given, not inferred from rows. The
    index (R's row numbers from 0, what pandas would infer) is given too: inferring it from the
    arrays was a third of the constructor (0.10 -> 0.07 ms)."""
    n = len(arrays[0]) if len(arrays) else 0
    return pd.DataFrame(dict(zip(names, arrays, strict=True)), index=pd.RangeIndex(n),
                        copy=False)


def condvar_by_factor(terms: Sequence[Any], condvars: Sequence[np.ndarray]
                      ) -> dict[str, np.ndarray]:
    """Per grouping factor its conditional covariance blocks (levels, q, q); several terms on
    one factor are joined block diagonally, side by side as in ranef."""
    out: dict[str, np.ndarray] = {}
    for t, cv in zip(terms, condvars, strict=True):
        if t.group not in out:
            out[t.group] = cv
            continue
        prev = out[t.group]
        m, a, b = prev.shape[0], prev.shape[1], cv.shape[1]
        joined = np.zeros((m, a + b, a + b))
        joined[:, :a, :a] = prev
        joined[:, a:, a:] = cv
        out[t.group] = joined
    return out


def ranef_sd_frames(ranef: dict[str, pd.DataFrame], condvar: dict[str, np.ndarray]
                    ) -> dict[str, pd.DataFrame]:
    """Conditional standard deviations in ranef's shape (per factor: levels x columns), the
    square roots of the conditional variances' diagonals (lme4's condsd)."""
    out = {}
    for grp, modes in ranef.items():
        diag = np.diagonal(condvar[grp], axis1=1, axis2=2)
        out[grp] = pd.DataFrame(np.sqrt(np.clip(diag, 0.0, None)), index=modes.index,
                                columns=modes.columns)
    return out


class FitSummary(str):
    """lme4's summary text: a str that displays as the text itself (as R prints a summary)."""

    def __repr__(self) -> str:
        return str(self)


class MixedModelFit:
    """What LmerFit and GlmerFit have in common. A subclass sets the attributes below in its
    constructor and provides the conditional modes b (``_modes``, level-major per term as
    lme4's Zt rows), their conditional covariance blocks per term (``_condvar_blocks``),
    ``sigma``, ``vcov``, ``fixef``, ``df`` and whether VarCorr has a residual row."""

    model: ModelFrame
    theta: np.ndarray  # lme4's θ, in lme4's order
    objective: float  # the optimized criterion (REML criterion or deviance, -2 logLik)
    nfev: int
    converged: bool
    singular: bool
    optimizer_code: int
    optinfo: OptSummary | None  # the fit log (lme4's m@optinfo)
    messages: list[str]
    seconds: float | None

    # -- provided by the subclass ---------------------------------------------------------
    sigma: float
    vcov: pd.DataFrame
    fixef: pd.Series
    df: int

    @property
    def _modes(self) -> np.ndarray:
        raise NotImplementedError

    @property
    def _condvar_blocks(self) -> Sequence[np.ndarray]:
        raise NotImplementedError

    @property
    def _residual_row(self) -> bool:
        """Whether VarCorr ends with a Residual row (lme4: LMMs and families with a scale)."""
        return True

    # -- the data -------------------------------------------------------------------------
    @property
    def formula(self) -> str:
        return self.model.formula

    @property
    def nobs(self) -> int:
        return self.model.n

    @property
    def ngroups(self) -> dict[str, int]:
        return self.model.ngroups

    # -- likelihood ---------------------------------------------------------------------
    @cached_property
    def loglik(self) -> float:
        """lme4's logLik: -objective/2 (the REML log-likelihood for REML fits)."""
        return -0.5 * self.objective

    @cached_property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.df

    @cached_property
    def bic(self) -> float:
        return -2.0 * self.loglik + math.log(self.nobs) * self.df

    @property
    def _vcov_values(self) -> np.ndarray:
        """vcov's values as an array (a subclass may give them without the DataFrame)."""
        return self.vcov.to_numpy()

    @cached_property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self._vcov_values)), index=self.fixef.index,
                         name="se")

    # -- random effects -----------------------------------------------------------------
    @cached_property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes b by grouping factor: rows = levels, columns = term columns
        (terms on the same factor, as from ``||``, side by side as lme4 shows them)."""
        out: dict[str, pd.DataFrame] = {}
        off = 0
        for t in self.model.reterms:
            bt = self._modes[off:off + t.q * t.nlevels].reshape(t.nlevels, t.q)
            off += t.q * t.nlevels
            df = pd.DataFrame(bt, index=pd.Index(np.asarray(t.levels), name=t.group),
                              columns=list(t.columns))
            out[t.group] = df if t.group not in out else pd.concat([out[t.group], df], axis=1)
        return out

    @cached_property
    def ranef_condvar(self) -> dict[str, np.ndarray]:
        """Conditional covariances of b (lme4's condVar / postVar): per factor an array
        (levels, q, q); for several terms on one factor, block diagonal over the terms."""
        return condvar_by_factor(self.model.reterms, self._condvar_blocks)

    @cached_property
    def ranef_sd(self) -> dict[str, pd.DataFrame]:
        """Conditional standard deviations of the modes, in ranef's shape (lme4's condsd of
        as.data.frame(ranef(m, condVar = TRUE)))."""
        return ranef_sd_frames(self.ranef, self.ranef_condvar)

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """R's as.data.frame(VarCorr(m)): grp, var1, var2, vcov, sdcor; a Residual row last
        for LMMs and families with a scale, as lme4."""
        return varcorr_frame(self.model.reterms, self.theta, self.sigma,
                             residual=self._residual_row)

    def theta_by_term(self) -> list[np.ndarray]:
        """θ cut into the terms' pieces (reterm.split_theta)."""
        return split_theta(self.theta, self.model.reterms)

    # -- after the fit ------------------------------------------------------------------
    def predict(self, newdata: pd.DataFrame | None = None, re_form: str | None = None,
                allow_new_levels: bool = False, type: str = "link") -> np.ndarray:  # noqa: A002
        """lme4's predict(m, newdata, re.form, allow.new.levels, type): "link" the linear
        predictor, "response" its inverse link (GLMMs only; mixedref.inference.predict)."""
        from mixedref.inference.predict import predict

        return predict(self, newdata, re_form=re_form, allow_new_levels=allow_new_levels,
                       type=type)

    def simulate(self, nsim: int = 1, seed: int | np.random.Generator | None = None,
                 use_u: bool = False) -> pd.DataFrame:
        """lme4's simulate(m, nsim, seed, use.u): responses from the fitted model, new random
        effects unless ``use_u`` (mixedref.inference.simulate; numpy's generator, not R's)."""
        from mixedref.inference.simulate import simulate

        return simulate(self, nsim, seed=seed, use_u=use_u)
