"""Responses simulated from a fitted model, as lme4's ``simulate(m, nsim, seed, use.u)``.

With ``use_u=False`` (lme4's default, ``re.form = NA``) each simulation draws new random
effects b ~ N(0, σ²ΛΛᵀ) and new noise; with ``use_u=True`` the conditional modes are kept and
only the noise is new. Linear mixed models add ε ~ N(0, σ²/w); GLMMs draw from the family at
μ = g⁻¹(η): binomial (0/1, or proportions of the prior weights' trials), Poisson, Gamma (shape
1/σ²) and inverse Gaussian (dispersion σ²). numpy's generator is not R's, so the numbers differ
from R's for the same seed; the distribution is the same (tests check the moments).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mixedref.errors import MixedrefError
from mixedref.frontend.reterm import split_theta

__all__ = ["simulate"]


def simulate(fit: Any, nsim: int = 1, seed: int | np.random.Generator | None = None,
             use_u: bool = False) -> pd.DataFrame:
    """``nsim`` simulated responses of an LmerFit or GlmerFit: a DataFrame with one column per
    simulation (``sim_1``, ``sim_2``, ... as lme4) and one row per observation used."""
    if isinstance(nsim, bool) or not isinstance(nsim, int | np.integer) or nsim < 1:
        raise MixedrefError(f"nsim must be a positive whole number, got {nsim!r}")
    rng = np.random.default_rng(seed)
    eta = _linear_predictor(fit, int(nsim), rng, bool(use_u))
    family = getattr(fit, "family", None)
    weights = fit.model.weights
    if family is None:
        scale = fit.sigma if weights is None else fit.sigma / np.sqrt(weights)[:, None]
        y = eta + scale * rng.standard_normal(eta.shape)
    else:
        y = family.simulate(family.linkinv(eta), weights, fit.sigma, rng)
    return pd.DataFrame(y, columns=[f"sim_{i + 1}" for i in range(nsim)])


def _linear_predictor(fit: Any, nsim: int, rng: np.random.Generator, use_u: bool) -> np.ndarray:
    """η for each simulation (n x nsim): Xβ + offset plus Zb, b the modes or new draws."""
    model = fit.model
    if use_u:
        base = fit._fitted_rows if hasattr(fit, "_fitted_rows") else \
            fit.family.linkfun(np.asarray(fit.fitted, dtype=float))
        return np.repeat(np.asarray(base, dtype=float)[:, None], nsim, axis=1)
    eta = model.X @ np.asarray(fit.fixef, dtype=float)
    if model.offset is not None:
        eta = eta + model.offset
    eta = np.repeat(eta[:, None], nsim, axis=1)
    for term, th in zip(model.reterms, split_theta(fit.theta, model.reterms), strict=True):
        T = fit.sigma * term.template(th)  # b_j = σ T u_j, u_j ~ N(0, I)
        b = rng.standard_normal((nsim, term.nlevels, term.q)) @ T.T
        eta += np.einsum("nq,snq->ns", term.X, b[:, term.codes, :])
    return eta
