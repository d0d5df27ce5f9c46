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
from typing import Any

import numpy as np

from harness.adapters.peers import _formula as F
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

        parsed, terms = self.prepare(case, data)
        formula, offsets = F.split_offsets(case.formula)
        offset = F.offset_vector(offsets, data)
        frame = data.copy()
        frame["gpboost_y_"] = data[parsed.response] if parsed.response in data else np.nan
        if case.is_glmm:
            if nagq_of(case) != 1:
                raise F.cannot(self.dist, f"nAGQ = {nagq_of(case)}", "its GLMMs use the "
                               "Laplace approximation only")
            frame, resp = response_frame(case, data, column="gpboost_y_")
            if resp.weights is not None and not np.allclose(resp.weights, 1.0):
                raise F.cannot(self.dist, "a binomial response with trials", "the adapter "
                               "maps gpboost's Bernoulli likelihoods (0/1 responses) only")
        # the response by a plain name (patsy cannot read total.fruits), R's I(x^k) as x**k
        fixed = F.parse(response_formula(F.python_powers(formula), "gpboost_y_"))
        y, X, names = F.fixed_design(fixed, frame)
        names = F.r_powers(names)
        groups = sorted({t.group for t in terms}, key=[t.group for t in terms].index)
        group_data = np.column_stack([F.group_labels(data, g) for g in groups])
        intercept_of = {t.group for t in terms if t.columns == ["(Intercept)"]}
        slopes = [t for t in terms if t.columns != ["(Intercept)"]]
        kwargs: dict[str, Any] = {"group_data": group_data}
        if slopes:
            kwargs["group_rand_coef_data"] = np.column_stack(
                [F.re_design(t.columns, data) for t in slopes])
            kwargs["ind_effect_group_rand_coef"] = [groups.index(t.group) + 1 for t in slopes]
            kwargs["drop_intercept_group_rand_effect"] = [g not in intercept_of for g in groups]
        likelihood = (LIKELIHOOD[(case.family, case.link_name)] if case.is_glmm
                      else "gaussian")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = gpb.GPModel(likelihood=likelihood, matrix_inversion_method="cholesky",
                            **kwargs)
            m.fit(y=np.asarray(y, dtype=float).ravel(), X=X, offset=offset)
            cov_pars = np.asarray(m.get_cov_pars(std_err=False, format_pandas=False),
                                  dtype=float).ravel()
            coef = np.asarray(m.get_coef(std_err=True, format_pandas=False), dtype=float)
            loglik = -float(m.get_current_neg_log_likelihood())
        sigma2 = float(cov_pars[0]) if not case.is_glmm else 1.0
        variances = list(cov_pars[1:] if not case.is_glmm else cov_pars)
        by_term = {}
        kept = [g for g in groups if g in intercept_of]
        for g, v in zip(kept, variances[:len(kept)], strict=True):
            by_term[(g, "(Intercept)")] = v
        for t, v in zip(slopes, variances[len(kept):], strict=True):
            by_term[(t.group, t.columns[0])] = v
        covs = [np.array([[by_term[(t.group, t.columns[0])]]]) for t in terms]
        beta, se = coef[0], coef[1]
        messages = F.caught_messages(caught)
        if case.is_glmm:
            mu = _response_mean(case, X @ beta + (0 if offset is None else offset),
                                m, X, offset)
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


def _response_mean(case: Any, eta_fixed: Any, m: Any, X: Any, offset: Any) -> Any:
    """The conditional mean at gpboost's predicted training random effects (its
    ``predict_training_data_random_effects``: the modes summed per row), through the link."""
    from scipy.stats import norm

    re = np.asarray(m.predict_training_data_random_effects(), dtype=float)
    eta = np.asarray(eta_fixed, dtype=float) + (re.sum(axis=1) if re.ndim == 2 else re)
    if case.family == "poisson":
        return np.exp(eta)
    return norm.cdf(eta) if case.link_name == "probit" else 1.0 / (1.0 + np.exp(-eta))
