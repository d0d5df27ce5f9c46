"""Negative binomial GLMMs as lme4's ``glmer.nb``: θ of the negative binomial estimated by
alternating with the GLMM fit.

As lme4 (R/nbinom.R): a Poisson glmer first; θ₀ from its fitted means by MASS's ``theta.ml``
(Newton's method on the profile score, at most 20 steps, to 2·tol); a glmer with
``negative_binomial(θ₀)``; then Brent's one-dimensional minimisation (R's ``optimize``, which
``scipy.optimize.minimize_scalar(method="bounded")`` implements alike) of -2 logLik over
log θ in log θ₀ ± 3 to ``tol``, each evaluation a glmer refitted at the new θ from the previous
fit's θ and β (lme4's refit), and the fit at the minimum returned. The fits of the search skip
glmer's derivative checks (finite-difference Hessian and gradient, about half of each fit's
criterion evaluations); the returned fit gets them afterwards, the numbers glmer gives. Its
family holds θ̂ (``fit.family.theta``, lme4's ``getME(m, "glmer.nb.theta")``); logLik's df
counts θ, as lme4's.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special

from mixedref.errors import MixedrefError, MixedrefWarning
from mixedref.fitting.control import Control
from mixedref.frontend.design import build_model
from mixedref.models.family import negative_binomial
from mixedref.models.glmer import (
    GlmerFit,
    _GlmerResponse,
    conclude_deferred,
    glmer_deferred,
)

__all__ = ["glmer_nb", "theta_ml"]


def theta_ml(y: np.ndarray, mu: np.ndarray, weights: np.ndarray | None = None,
             limit: int = 20, eps: float = 1e-4) -> float:
    """MASS's ``theta.ml``: the maximum-likelihood θ of negative binomial counts y with means
    mu held fixed, by Newton's method from n / Σ w (y/μ - 1)² (a warning when ``limit`` is hit,
    0 when the estimate goes negative, as MASS)."""
    y, mu = np.asarray(y, dtype=float), np.asarray(mu, dtype=float)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    t0 = np.sum(w) / np.sum(w * (y / mu - 1.0) ** 2)
    it, delta = 0, 1.0
    while True:
        it += 1
        if not (it < limit and abs(delta) > eps):
            break
        t0 = abs(t0)
        score = np.sum(w * (special.digamma(t0 + y) - special.digamma(t0) + np.log(t0) + 1.0
                            - np.log(t0 + mu) - (y + t0) / (mu + t0)))
        info = np.sum(w * (-special.polygamma(1, t0 + y) + special.polygamma(1, t0) - 1.0 / t0
                           + 2.0 / (mu + t0) - (y + t0) / (mu + t0) ** 2))
        delta = score / info
        t0 = t0 + delta
    if t0 < 0:
        warnings.warn("theta.ml: estimate truncated at zero", MixedrefWarning, stacklevel=2)
        t0 = 0.0
    if it == limit:
        warnings.warn("theta.ml: iteration limit reached", MixedrefWarning, stacklevel=2)
    return float(t0)


def _check_counts(formula: str, data: pd.DataFrame, weights: Any, offset: Any) -> None:
    """The response read as glmer reads it, checked to be counts before any fit (the error
    names the response and its first bad value)."""
    build_model(formula, data, weights=weights, offset=offset,
                response=_GlmerResponse(negative_binomial(1.0)).rule())


def glmer_nb(formula: str, data: pd.DataFrame, *, link: str = "log", nAGQ: int = 1,
             weights: Any = None, offset: Any = None,
             control: Control | Mapping[str, Any] | None = None,
             interval: tuple[float, float] | None = None, tol: float = 5e-5,
             theta: float | None = None) -> GlmerFit:
    """Fit a negative binomial GLMM as lme4's ``glmer.nb(formula, data)``.

    ``interval``: the log θ interval searched (default log θ₀ ± 3, lme4's); ``tol``: Brent's
    tolerance on log θ (lme4's 5e-5); ``theta``: a starting θ₀ instead of theta.ml's on a
    Poisson fit (lme4's ``initCtrl$theta``). The fit's ``family.theta`` is θ̂;
    ``fit.nb_evaluations`` the number of θ values tried.
    """
    _check_counts(formula, data, weights, offset)
    ctrl = Control.from_any(control)
    kwargs = {"nAGQ": nAGQ, "weights": weights, "offset": offset}
    if theta is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lme4 runs the Poisson fit in suppressMessages
            g0 = glmer_deferred(formula, data, "poisson", link=link, control=ctrl, **kwargs)
        theta = theta_ml(g0.model.y, g0.fitted, g0._obj.wt, limit=20, eps=2 * tol)
    if not np.isfinite(theta) or theta <= 0:
        raise MixedrefError(f"the starting theta must be a positive number, got {theta!r} "
                            "(the Poisson fit shows no overdispersion); give theta=")
    last = glmer_deferred(formula, data, negative_binomial(theta, link), link=None,
                          control=ctrl, **kwargs)
    lo, hi = (np.log(theta) - 3.0, np.log(theta) + 3.0) if interval is None else interval
    fits: dict[float, GlmerFit] = {}
    count = 0

    def deviance(log_theta: float) -> float:
        nonlocal last, count
        start = replace(ctrl, start=tuple(map(float, last.theta)),
                        start_fixef=tuple(map(float, last.fixef.to_numpy())))
        last = glmer_deferred(formula, data, negative_binomial(float(np.exp(log_theta)), link),
                              link=None, control=start, **kwargs)
        fits[log_theta] = last
        count += 1
        return -2.0 * last.loglik

    res = optimize.minimize_scalar(deviance, bounds=(lo, hi), method="bounded",
                                   options={"xatol": tol})
    best = fits.get(float(res.x))
    if best is None:
        deviance(float(res.x))  # R's optimize evaluates its minimum once more
        best = last
    # the derivative checks (Hessian for the SEs, checkConv) of the fit returned alone: the
    # search reads only each fit's criterion, theta and beta (as lme4's optTheta, which re-emits
    # only the last fit's warnings), and the checks cost 1 + 2k + 2k(k-1) evaluations a fit
    best = conclude_deferred(best)
    best.nb_evaluations = count  # type: ignore[attr-defined]
    return best
