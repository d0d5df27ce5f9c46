"""Likelihood-ratio tests between nested mixed models, as lme4's ``anova(m0, m1, ...)``.

As lme4's anova.merMod: REML fits are refitted with ML first (lme4's refitML; REML criteria of
models with different fixed effects are not comparable), the models are ordered by their number
of parameters, and each row tests the model against the one above it:
χ² = 2·max(0, Δ logLik) on Δ npar degrees of freedom.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2

from mixedref.errors import MixedrefError, MixedrefWarning
from mixedref.inference.anova_terms import anova_terms
from mixedref.models.fit import LmerFit
from mixedref.models.glmer import GlmerFit

__all__ = ["REFIT_MESSAGE", "anova"]

#: lme4's message when it refits REML models with ML.
REFIT_MESSAGE = "refitting model(s) with ML (instead of REML)"

COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]


def _check_kinds(fits: Sequence[Any]) -> None:
    """All LmerFit or all GlmerFit: lme4 compares likelihoods of one kind of model."""
    kinds = {type(f) for f in fits}
    for f in fits:
        if not isinstance(f, LmerFit | GlmerFit):
            raise MixedrefError(f"anova compares LmerFit or GlmerFit objects, got "
                                f"{type(f).__name__}")
    if len(kinds) > 1:
        raise MixedrefError("anova cannot compare an lmer fit with a glmer fit: their "
                            "likelihoods are of different models; fit them alike")


def _check_same_data(fits: Sequence[Any], names: Sequence[str]) -> None:
    """Same number of observations and the same response, as lme4 checks."""
    nobs = [f.nobs for f in fits]
    if len(set(nobs)) > 1:
        raise MixedrefError("models were not all fitted to the same size of dataset: nobs "
                            + ", ".join(f"{n}={k}" for n, k in zip(names, nobs, strict=True)))
    y0 = np.asarray(fits[0].model.y, dtype=float)
    for name, f in zip(names[1:], fits[1:], strict=True):
        if not np.array_equal(np.asarray(f.model.y, dtype=float), y0, equal_nan=True):
            raise MixedrefError(f"all models must be fit to the same data and response: "
                                f"{name}'s response differs from {names[0]}'s")


def _refit_ml(fits: list[Any], refit: bool) -> tuple[list[Any], bool]:
    """REML fits refitted with ML (as lme4's refitML), with lme4's message as a warning."""
    reml = [isinstance(f, LmerFit) and f.REML for f in fits]
    if not any(reml):
        return fits, False
    if not refit:
        if not all(reml):
            warnings.warn("some models fit with REML = TRUE, some not", MixedrefWarning,
                          stacklevel=3)
        return fits, False
    warnings.warn(REFIT_MESSAGE, MixedrefWarning, stacklevel=3)
    return [f.update(REML=False) if r else f for f, r in zip(fits, reml, strict=True)], True


def anova(*fits: Any, names: Sequence[str] | None = None, refit: bool = True,
          type: int | str = 3, ddf: str = "Satterthwaite") -> pd.DataFrame:
    """lme4's anova table of two or more fits to the same data; of one lmer fit, lmerTest's
    F tests of its terms (``type`` 1, 2, 3; ``ddf`` "Satterthwaite", "Kenward-Roger" or
    "lme4": :func:`mixedref.inference.anova_terms.anova_terms`), as R dispatches ``anova(m)``.

    Columns npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq) (the first row's last
    three NaN), rows the model names ("m0", "m1", ... or ``names``) ordered by npar. REML fits
    are refitted with ML unless ``refit=False`` (lme4's ``refit``); the table's
    ``attrs["refitted"]`` says whether that happened and ``attrs["messages"]`` holds lme4's
    message "refitting model(s) with ML (instead of REML)", also issued as a warning.
    """
    if len(fits) == 1 and isinstance(fits[0], LmerFit):
        return anova_terms(fits[0], type=type, ddf=ddf)
    if len(fits) < 2:
        raise MixedrefError(f"anova needs an lmer fit (F tests of its terms) or at least two "
                            f"fits to compare, got {len(fits)} "
                            f"{fits[0].__class__.__name__ if fits else 'fits'}")
    names = [f"m{i}" for i in range(len(fits))] if names is None else list(names)
    if len(names) != len(fits) or len(set(names)) != len(names):
        raise MixedrefError(f"names must be {len(fits)} distinct names, got {names}")
    _check_kinds(fits)
    _check_same_data(fits, names)
    models, refitted = _refit_ml(list(fits), refit)
    order = sorted(range(len(models)), key=lambda i: models[i].df)  # stable, as R's order
    models = [models[i] for i in order]
    llk = np.array([m.loglik for m in models], dtype=float)
    npar = np.array([m.df for m in models], dtype=float)
    dfs = np.r_[np.nan, np.diff(npar)]
    chisq = np.r_[np.nan, 2.0 * np.maximum(0.0, np.diff(llk))]
    with np.errstate(invalid="ignore"):
        pval = np.where(dfs == 0, np.nan, chi2.sf(chisq, dfs))
    table = pd.DataFrame({"npar": npar.astype(int), "AIC": [m.aic for m in models],
                          "BIC": [m.bic for m in models], "logLik": llk,
                          "deviance": -2.0 * llk, "Chisq": chisq, "Df": dfs,
                          "Pr(>Chisq)": pval}, index=[names[i] for i in order])
    table.attrs["refitted"] = refitted
    table.attrs["messages"] = [REFIT_MESSAGE] if refitted else []
    return table[COLUMNS]
