"""Profile-likelihood intervals of a GLMM, as lme4's ``confint(m, method = "profile",
oldNames = FALSE)`` for a glmerMod with scalar random-effects terms and a family without a scale
(binomial, Poisson).

The profiled criterion is the fit's own (Laplace or adaptive quadrature) -2 log-likelihood over
(θ, β): ζ(v) = sign(v - v̂) √(d(v) - d̂), d(v) minimized over every other parameter with the
focal one fixed at v (warm-started BOBYQA). A scalar term's standard deviation is its θ (σ = 1).
As in :mod:`mixedref.inference.profile`, each endpoint is a root of ζ(v) = ±z (bracketed, then
:func:`scipy.optimize.brentq`), not lme4's spline through a grid; an endpoint beyond a standard
deviation's lower bound 0 is 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.stats import norm

from mixedref.engines.pirls import PIRLSError
from mixedref.errors import MixedrefError
from mixedref.fitting.optimize import Penalized, bobyqa

__all__ = ["GlmerProfiler", "profile_confint"]

#: inner optimizations: absolute tolerances on the parameters and on the criterion (ζ = √Δd, so
#: near ζ = 2 a criterion error ε moves ζ by ε/4)
_XTOL, _FTOL, _MAXEVAL = 1e-9, 1e-10, 5000


class GlmerProfiler:
    """The exact profile of one GLMM fit's criterion over (θ, β)."""

    def __init__(self, fit: Any) -> None:
        if fit.family.has_scale:
            raise MixedrefError(f"profile intervals of a glmer fit need a family without a "
                                f"scale (binomial, poisson), not {fit.family.name}")
        if any(t.q != 1 for t in fit.model.reterms):
            raise MixedrefError("profile intervals of a glmer fit are implemented for scalar "
                                "random-effects terms only, e.g. (1 | g); use method='Wald'")
        if fit.nAGQ < 1:
            raise MixedrefError("profile intervals need a fit by nAGQ >= 1 (theta and beta "
                                "optimized together)")
        from mixedref.inference.glmer_inference import parameter_names

        self.fit = fit
        self.obj = fit._obj
        self.nAGQ = int(fit.nAGQ)
        self.nth = self.obj.ntheta
        self.names = parameter_names(fit)
        self.estimate = np.concatenate([fit.theta, fit.fixef.to_numpy()])
        self.lower = np.concatenate([fit.model.theta_lower.astype(float),
                                     np.full(fit.model.p, -np.inf)])
        self.scale = np.concatenate([np.maximum(np.abs(fit.theta), 0.1), fit.se.to_numpy()])
        self.fn = Penalized(lambda x: self.obj.agq(x, self.nAGQ), (PIRLSError,))
        self.deviance = min(float(fit.objective), self.fn(self.estimate))
        self._start: dict[int, np.ndarray] = {}

    def criterion(self, k: int, value: float) -> float:
        """The criterion minimized over every parameter but the k-th, which is ``value``."""
        free = np.arange(self.estimate.size) != k
        x0 = self._start.get(k, self.estimate[free]).copy()
        x0 = np.maximum(x0, self.lower[free])

        def f(x: np.ndarray) -> float:
            pars = np.empty(self.estimate.size)
            pars[free], pars[k] = x, value
            return self.fn(pars)

        if not free.any():
            return f(np.empty(0))
        x, fx, _, _ = bobyqa(f, x0, self.lower[free], xtol_abs=_XTOL, ftol_abs=_FTOL,
                             maxeval=_MAXEVAL, initial_step=0.1 * self.scale[free])
        self._start[k] = x
        return float(fx)

    def zeta(self, k: int, value: float) -> float:
        d = self.criterion(k, value)
        return math.copysign(math.sqrt(max(d - self.deviance, 0.0)), value - self.estimate[k])

    def endpoint(self, k: int, target: float) -> float:
        """The value where ζ = target on the target's side of the estimate (the bound where ζ
        does not reach it before a standard deviation's lower bound)."""
        est, h = self.estimate[k], self.scale[k] * math.copysign(1.0, target)
        self._start.pop(k, None)
        prev = est
        step = 0.5
        for _ in range(40):
            v = est + step * h
            if v <= self.lower[k]:
                v = self.lower[k]
                z = self.zeta(k, v)
                if abs(z) < abs(target):
                    return float(v)
            else:
                z = self.zeta(k, v)
            if abs(z) >= abs(target):
                return float(brentq(lambda u: self.zeta(k, u) - target, prev, v,
                                    xtol=1e-7 * abs(h), rtol=1e-10))
            prev = v
            step *= 1.6
        raise MixedrefError(f"the profile of {self.names[k]} does not reach |zeta| = "
                            f"{abs(target):.3g}")


def profile_confint(fit: Any, parm: str | Sequence[str] | None = None,
                    level: float = 0.95) -> pd.DataFrame:
    """Profile-likelihood intervals of a GlmerFit (lme4's confint(m, method = "profile",
    oldNames = FALSE)): rows sd_<col>|<group> then the fixed effects (or those in ``parm``:
    names, "theta_" or "beta_"), columns as R names them ("2.5 %", "97.5 %")."""
    from mixedref.inference.glmer_inference import _level_names, check_level

    check_level(level)
    prof = GlmerProfiler(fit)
    names = prof.names
    if parm is None:
        ks = list(range(len(names)))
    else:
        if isinstance(parm, str):
            parm = {"theta_": names[:prof.nth], "beta_": names[prof.nth:]}.get(parm, [parm])
        unknown = [p for p in parm if p not in names]
        if unknown:
            raise MixedrefError(f"unknown parameters {unknown} in parm; the fit's are {names}")
        ks = [names.index(p) for p in parm]
    z = float(norm.ppf((1.0 + level) / 2.0))
    table = [[prof.endpoint(k, -z), prof.endpoint(k, z)] for k in ks]
    return pd.DataFrame(table, index=[names[k] for k in ks], columns=_level_names(level))
