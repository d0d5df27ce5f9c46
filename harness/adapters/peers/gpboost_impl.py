"""gpboost (PyPI ``gpboost``, a C++ core): ``GPModel(group_data=, group_rand_coef_data=,
ind_effect_group_rand_coef=, drop_intercept_group_rand_effect=, likelihood=)`` then
``fit(y, X, offset=)`` on the fixed design patsy builds (R's column names).

What it fits: grouped random effects, one variance per random intercept (a column of
``group_data``: crossed and nested factors as separate columns) and per random coefficient; a
random coefficient is independent of its group's intercept (gpboost/basic.py
``group_rand_coef_data``: there is no covariance parameter between them). So lme4's ``||``
and single-column terms are expressible, a correlated term ``(x | g)`` is not. It maximizes
the likelihood (no REML option: REML cases are declined). GLMMs: the Laplace approximation
(lme4's nAGQ = 1) with ``bernoulli_logit``, ``bernoulli_probit`` (0/1 responses) and
``poisson`` (log link); the adapter maps those only (binomial trials, Gamma: not mapped).
``get_cov_pars`` is [error variance (Gaussian), intercept variances in ``group_data`` order,
coefficient variances in ``group_rand_coef_data`` order]; the log-likelihood is minus
``get_current_neg_log_likelihood()``.

The adapter asks for ``matrix_inversion_method="cholesky"``, the exact likelihood. gpboost's
default ("iterative methods where possible") uses iterative solvers with stochastic log-det
estimates once there is more than one grouped effect. Its likelihood is then an approximation:
on Penicillin (ML) it reports 332.728 at its own estimates, where the exact value at its
Cholesky optimum is 332.18835 (lme4: 332.18835)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.adapters.peers import _formula as F
from harness.adapters.peers import calls
from harness.adapters.peers._base import (
    Peer,
    complex_predictors,
    glmm_record,
    lmm_record,
    nagq_of,
    response_formula,
    response_frame,
)

LIKELIHOOD = {("binomial", "logit"): "bernoulli_logit", ("binomial", "probit"): "bernoulli_probit",
              ("poisson", "log"): "poisson"}


class GpboostPeer(Peer):
    name = "gpboost"
    module = "gpboost"
    dist = "gpboost"
    glmm_links = {"binomial": ("logit", "probit"), "poisson": ("log",), "Gamma": ("log",)}
    glmm_unmapped = ("Gamma",)

    def check(self, parsed: F.Parsed, case: Any, data: Any = None) -> None:
        if not getattr(case, "is_glmm", False) and case.REML:
            raise F.cannot(self.dist, "REML", "it maximizes the likelihood (ML); it has no "
                           "REML criterion")
        for b in parsed.bars:
            if not b.double and len(b.columns) > 1:
                raise F.cannot(self.dist, f"the correlated term ({b.expr} | {b.group})", "its "
                               "random coefficients are independent of the group's intercept "
                               "(no covariance parameter between them)")
        if complex_predictors(parsed):
            raise F.cannot(self.dist, "expressions in random-effects terms", "the adapter "
                           "passes random coefficients as data columns")

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import gpboost as gpb
        import patsy

        parsed, terms = self.prepare(case, data)
        call = gpboost_inputs(case, data, terms)
        y, X = calls.patsy_fixed(patsy, call.frame, call.fixed)
        names = F.r_powers([F.r_name(c) for c in X.columns])
        X = np.asarray(X, dtype=float)
        group_data = np.column_stack([calls.group_labels(data, g) for g in call.groups])
        rand_coef, ind_effect, drop_intercept = calls.gpboost_coefficients(
            patsy, data, call.groups, call.intercepts, call.slopes)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m, cov_pars, coef, loglik = calls.gpboost_fit(
                gpb, y, X, group_data, call.likelihood, call.offset, rand_coef, ind_effect,
                drop_intercept)
        sigma2, by_term = calls.gpboost_variances(cov_pars, call.intercepts, call.slopes,
                                                  not case.is_glmm)
        covs = [np.array([[by_term[(t.group, t.columns[0])]]]) for t in terms]
        beta, se = coef[0], coef[1]
        messages = F.caught_messages(caught)
        if case.is_glmm:
            offset = call.offset
            mu = _response_mean(case, X @ beta + (0 if offset is None else offset),
                                m, X, offset)
            resp = call.response
            dev = float(np.sum(F.unit_deviance(case.family, resp.y, mu, resp.weights)))
            rec = glmm_record(case, terms, covs, names=names, beta=beta, se=None,
                              loglik=loglik, deviance=dev, nobs=len(resp.y),
                              converged=True, messages=messages)
            rec["versions"] = self.versions()
            return rec
        rec = lmm_record(terms, covs, names=names, beta=beta, se=se, sigma2=sigma2,
                         loglik=loglik, REML=False, nobs=len(y),
                         converged=True,  # gpboost reports no convergence flag
                         messages=messages)
        rec["versions"] = self.versions()
        return rec


@dataclass
class GpboostInputs:
    """What gpboost's call is made of for one case: the ``frame`` with the response as
    ``gpboost_y_`` (a GLMM's as glmer reads it), the patsy ``fixed`` formula (R's ``I(x^k)`` as
    ``x**k``, R's contrasts), the grouping factors in lme4's first use (``group_data``'s
    columns), those with a random intercept, the random coefficients (group, column), the
    likelihood's name, the evaluated offset, a GLMM's response."""

    frame: Any
    fixed: str
    groups: list[str]
    intercepts: list[str]
    slopes: list[tuple[str, str]]
    likelihood: str
    offset: Any
    response: Any = None


def gpboost_inputs(case: Any, data: Any, terms: list[F.Term]) -> GpboostInputs:
    """The inputs of gpboost's call for ``case`` (the adapter's and the reproducer's)."""
    formula, offsets = F.split_offsets(case.formula)
    parsed = F.parse(formula)
    frame = data.copy()
    frame["gpboost_y_"] = data[parsed.response] if parsed.response in data else np.nan
    resp = None
    if case.is_glmm:
        if nagq_of(case) != 1:
            raise F.cannot("gpboost", f"nAGQ = {nagq_of(case)}", "its GLMMs use the "
                           "Laplace approximation only")
        frame, resp = response_frame(case, data, column="gpboost_y_")
        if resp.weights is not None and not np.allclose(resp.weights, 1.0):
            raise F.cannot("gpboost", "a binomial response with trials", "the adapter "
                           "maps gpboost's Bernoulli likelihoods (0/1 responses) only")
    # the response by a plain name (patsy cannot read total.fruits), R's I(x^k) as x**k
    fixed = F.parse(response_formula(F.python_powers(formula), "gpboost_y_"))
    groups = sorted({t.group for t in terms}, key=[t.group for t in terms].index)
    intercepts = [g for g in groups
                  if any(t.group == g and t.columns == ["(Intercept)"] for t in terms)]
    slopes = [(t.group, t.columns[0]) for t in terms if t.columns != ["(Intercept)"]]
    return GpboostInputs(
        frame=frame, fixed=f"gpboost_y_ ~ {F.patsy_formula(fixed.fixed, frame)}",
        groups=groups, intercepts=intercepts, slopes=slopes,
        likelihood=(LIKELIHOOD[(case.family, case.link_name)] if case.is_glmm
                    else "gaussian"),
        offset=F.offset_vector(offsets, data), response=resp)


def _response_mean(case: Any, eta_fixed: Any, m: Any, X: Any, offset: Any) -> Any:
    """The conditional mean at gpboost's predicted training random effects (its
    ``predict_training_data_random_effects``: the modes summed per row), through the link."""
    from scipy.stats import norm

    re = np.asarray(m.predict_training_data_random_effects(), dtype=float)
    eta = np.asarray(eta_fixed, dtype=float) + (re.sum(axis=1) if re.ndim == 2 else re)
    if case.family == "poisson":
        return np.exp(eta)
    return norm.cdf(eta) if case.link_name == "probit" else 1.0 / (1.0 + np.exp(-eta))
