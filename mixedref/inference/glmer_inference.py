"""Wald inference of a GLMM's fixed effects, as lme4 gives it for a glmerMod: the coefficient
table of ``summary(m)$coefficients`` (z tests on lme4's default, Hessian-based vcov) and
``confint(m, method = "Wald", oldNames = FALSE)``.

lme4 names the statistic "z value" for families without a scale (binomial, Poisson) and
"t value" for those with one (Gamma, inverse Gaussian), and takes the p-value from the normal
distribution in both cases (column "Pr(>|z|)"); the same here. Profile intervals are
:mod:`mixedref.inference.glmer_profile`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from mixedref.errors import MixedrefError
from mixedref.inference.profile import wald_table

__all__ = ["coef_table", "confint", "parameter_names"]


def coef_table(fit: Any) -> pd.DataFrame:
    """lme4's ``summary(m)$coefficients`` of a GLMM: Estimate, Std. Error, z value (t value for
    a family with a scale) and Pr(>|z|) = 2 Φ(-|z|), rows the fixed effects."""
    est = fit.fixef.to_numpy()
    se = fit.se.to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = est / se
    label = "t value" if fit.family.has_scale else "z value"
    return pd.DataFrame({"Estimate": est, "Std. Error": se, label: stat,
                         "Pr(>|z|)": 2.0 * norm.sf(np.abs(stat))}, index=fit.fixef.index)


def parameter_names(fit: Any) -> list[str]:
    """confint's row names for a GLMM (lme4's ``oldNames = FALSE``): per random-effects term its
    standard deviations ``sd_<col>|<group>`` and correlations ``cor_<row>.<col>|<group>`` in
    θ's order, ``sigma`` for a family with a scale, then the fixed effects."""
    names = []
    for t in fit.model.reterms:
        for i, j in t.theta_index():
            names.append(f"sd_{t.columns[i]}|{t.group}" if i == j
                         else f"cor_{t.columns[i]}.{t.columns[j]}|{t.group}")
    if fit.family.has_scale:
        names.append("sigma")
    return names + list(fit.fixef.index)


def check_level(level: float) -> None:
    """A confidence level must lie strictly between 0 and 1."""
    if not 0.0 < level < 1.0:
        raise MixedrefError(f"level must be in (0, 1), got {level}")


def _level_names(level: float) -> list[str]:
    """R's column names of a confint ("2.5 %", "97.5 %")."""
    a = (1.0 - level) / 2.0
    return [f"{100 * p:.3g} %" for p in (a, 1.0 - a)]


def confint(fit: Any, parm: str | Sequence[str] | None = None, *, method: str = "Wald",
            level: float = 0.95) -> pd.DataFrame:
    """lme4's ``confint(m, parm, level, method = "Wald", oldNames = FALSE)`` of a GLMM: NaN for
    the variance parameters (and sigma), β̂ ± z·SE for the fixed effects, SE from lme4's default
    vcov. ``parm``: None (all), "theta_", "beta_" or a list of names. (``method="profile"`` is
    mixedref.inference.glmer_profile's; GlmerFit.confint dispatches.)"""
    if method != "Wald":
        raise MixedrefError(f'method must be "Wald" or "profile" for a glmer fit, got '
                            f'{method!r} (lme4\'s "boot" is not implemented; "profile" is '
                            'mixedref.inference.glmer_profile\'s, GlmerFit.confint dispatches '
                            'to it)')
    check_level(level)
    z = float(norm.ppf((1.0 + level) / 2.0))
    return wald_table(fit, parameter_names(fit), parm, z, _level_names(level))
