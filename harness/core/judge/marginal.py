"""An independent criterion for GLMMs with a scale parameter: the marginal likelihood itself.

lme4 1.1-31 fits Gamma and inverse-Gaussian GLMMs by a Laplace criterion in which the dispersion
is the plug-in deviance / n and the penalty on the random effects is not scaled by it, and its
VarCorr multiplies θ by σ (lme4 issues #557, #643, #852); glmmTMB maximizes the Laplace
likelihood with the shape estimated. Neither criterion can judge the other's estimates, so this
module evaluates every estimate as its record reports it (fixed effects, the random-intercept
SD on the linear-predictor scale, σ) under the model's actual marginal likelihood:

    -2 log L = -2 sum_g log ∫ prod_{i in g} f(y_i | mu_i(x_i'β + s z)) φ(z) dz

with f the Gamma density of shape 1/σ² (σ the coefficient of variation, as lme4 and glmmTMB
report it) or the inverse-Gaussian density of dispersion σ², each group's integral by adaptive
Gauss-Hermite quadrature (:data:`NODES` nodes at the mode of the integrand). It is written from
the densities, in numpy alone: no fitter's code (lme4's, glmmTMB's, mixedref's) is involved,
and tests/test_marginal_criterion.py holds it to R's ``integrate``
(r_scripts/marginal_references.R).

Scope: one random intercept ``(1 | g)`` and a fixed part that is a sum of numeric columns (the
catalog's Gamma and inverse-Gaussian cases); anything else raises :class:`NotEvaluable`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import gammaln

#: families whose GLMM this criterion judges (R's names)
FAMILIES = ("Gamma", "inverse.gaussian")
#: Gauss-Hermite nodes per group: within 1e-9 of R's integrate() on the catalog's cases (25 nodes
#: are 6e-6 off under Gamma's inverse link, where part of the real line gives no valid mean)
NODES = 40
CRITERION = f"marginal -2 log-likelihood (adaptive Gauss-Hermite, {NODES} nodes)"

_FORMULA = re.compile(r"^\s*(\w+)\s*~\s*(.+?)\s*\+\s*\(\s*1\s*\|\s*(\w+)\s*\)\s*$")


class NotEvaluable(ValueError):
    """The model is outside this criterion's scope, or the estimate lacks a parameter."""


def _mu(eta: np.ndarray, link: str) -> np.ndarray:
    """The mean from the linear predictor; NaN where the link gives no valid (positive) mean."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if link == "log":
            mu = np.exp(eta)
        elif link == "inverse":
            mu = 1.0 / eta
        elif link == "identity":
            mu = eta.copy()
        elif link == "1/mu^2":
            mu = 1.0 / np.sqrt(eta)
        else:
            raise NotEvaluable(f"link {link!r} is not supported")
    return np.where(np.isfinite(mu) & (mu > 0), mu, np.nan)


def log_density(family: str, y: np.ndarray, mu: np.ndarray, sigma: float) -> np.ndarray:
    """log f(y | mu) elementwise: Gamma with shape 1/σ² and mean mu, or inverse Gaussian with
    mean mu and dispersion σ² (Var y = σ² mu³); -inf where mu is not a valid mean."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if family == "Gamma":
            nu = 1.0 / sigma**2
            out = (nu * math.log(nu) - gammaln(nu) + (nu - 1.0) * np.log(y) - nu * np.log(mu)
                   - nu * y / mu)
        elif family == "inverse.gaussian":
            phi = sigma**2
            out = (-0.5 * np.log(2.0 * math.pi * phi * y**3)
                   - (y - mu) ** 2 / (2.0 * phi * mu**2 * y))
        else:
            raise NotEvaluable(f"family {family!r} is not one of {', '.join(FAMILIES)}")
    return np.where(np.isnan(out), -np.inf, out)


def parse(formula: str) -> tuple[str, list[str], str]:
    """(response, fixed-effect terms, grouping factor) of ``y ~ a + b + (1 | g)``."""
    m = _FORMULA.match(formula)
    if m is None:
        raise NotEvaluable(f"formula {formula!r}: only `y ~ <numeric columns> + (1 | g)` is "
                           "evaluated by the marginal criterion")
    terms = [t.strip() for t in m.group(2).split("+")]
    return m.group(1), terms, m.group(3)


def _design(formula: str, data: Any) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """y, the fixed-effect columns by R's names, and the group codes."""
    import pandas as pd

    resp, terms, group = parse(formula)
    cols: dict[str, np.ndarray] = {}
    if "0" not in terms and "-1" not in terms:
        cols["(Intercept)"] = np.ones(len(data))
    for t in terms:
        if t in ("1", "0", "-1"):
            continue
        if t not in data or not pd.api.types.is_numeric_dtype(data[t]):
            raise NotEvaluable(f"fixed term {t!r} is not a numeric column of the data")
        cols[t] = np.asarray(data[t], dtype=float)
    codes = pd.Categorical(data[group]).codes
    return np.asarray(data[resp], dtype=float), cols, np.asarray(codes)


def _group_integral(h: Any) -> float:
    """log ∫ exp(h(z)) dz by adaptive Gauss-Hermite quadrature (h includes log φ(z))."""
    opt = minimize_scalar(lambda z: min(-h(np.array([z]))[0], 1e300), bracket=(-1.0, 1.0),
                          options={"xtol": 1e-10})
    zhat = float(opt.x)
    step = 1e-4 * max(1.0, abs(zhat))
    vals = h(np.array([zhat - step, zhat, zhat + step]))
    curv = -(vals[0] - 2.0 * vals[1] + vals[2]) / step**2
    if not math.isfinite(curv) or curv <= 0:
        raise NotEvaluable("the integrand has no interior mode in a group")
    tau = 1.0 / math.sqrt(curv)
    x, w = np.polynomial.hermite.hermgauss(NODES)
    z = zhat + math.sqrt(2.0) * tau * x
    terms = h(z) + x**2 + np.log(w)
    top = float(np.max(terms))
    return math.log(math.sqrt(2.0) * tau) + top + math.log(float(np.sum(np.exp(terms - top))))


def marginal_deviance(formula: str, data: Any, family: str, link: str,
                      fixef: Mapping[str, float], sd: float, sigma: float) -> float:
    """-2 log L of the GLMM ``formula`` (``y ~ ... + (1 | g)``) at the fixed effects ``fixef``
    (R's column names), random-intercept SD ``sd`` and σ (module docstring); +inf where the
    estimate gives data zero likelihood."""
    if family not in FAMILIES:
        raise NotEvaluable(f"family {family!r} is not one of {', '.join(FAMILIES)}")
    if not (sigma > 0 and math.isfinite(sigma)) or not (sd >= 0 and math.isfinite(sd)):
        raise NotEvaluable(f"σ {sigma} and the SD {sd} must be finite, σ positive")
    y, cols, codes = _design(formula, data)
    if set(cols) != set(fixef):
        raise NotEvaluable(f"fixed effects {sorted(fixef)} are not the model's columns "
                           f"{sorted(cols)}")
    eta0 = sum(float(fixef[k]) * v for k, v in cols.items())
    total = 0.0
    log_phi0 = -0.5 * math.log(2.0 * math.pi)
    for g in np.unique(codes):
        yg, eg = y[codes == g], eta0[codes == g]
        if sd == 0.0:
            total += float(np.sum(log_density(family, yg, _mu(eg, link), sigma)))
            continue

        def h(z: np.ndarray, yg: np.ndarray = yg, eg: np.ndarray = eg) -> np.ndarray:
            eta = eg[None, :] + sd * z[:, None]
            ll = log_density(family, yg[None, :], _mu(eta, link), sigma).sum(axis=1)
            return ll + log_phi0 - 0.5 * z**2

        total += _group_integral(h)
    return -2.0 * total if math.isfinite(total) else math.inf


def evaluate_record(case: Any, data: Any, record: Mapping[str, Any]) -> float:
    """:func:`marginal_deviance` at a FitRecord's reported estimate: its fixed effects, the SD
    of its one random-intercept row and its σ (raises :class:`NotEvaluable` when it lacks
    one)."""
    rows = [r for r in record.get("varcorr") or [] if r.get("grp") != "Residual"]
    if len(rows) != 1 or rows[0].get("var2") is not None or rows[0].get("sdcor") is None:
        raise NotEvaluable("the record does not report one random-intercept SD")
    if record.get("sigma") is None or not record.get("fixef"):
        raise NotEvaluable("the record does not report σ and the fixed effects")
    return marginal_deviance(case.formula, data, case.family, case.link_name,
                             dict(record["fixef"]), float(rows[0]["sdcor"]),
                             float(record["sigma"]))
