"""pymixef (PyPI ``pymixef``): ``pymixef.fit(formula, data=, method="reml"|"ml", family=)``
takes lme4's formula (``||``, ``a/b``, crossed terms). Its Gaussian engine
(pymixef/backends/lmm.py) evaluates the exact marginal and restricted likelihoods with dense
n x n covariance matrices ("a correctness/reference engine rather than a sparse high-scale
production engine"), so it is slow: sleepstudy's correlated slopes take about two minutes by
REML, and cases past the harness's time limit fail as time-outs. Its GLMM engine
(backends/glmm.py) is the Laplace approximation with beta and the covariance optimized jointly
(lme4's nAGQ = 1 criterion), constants kept; canonical links only (Bernoulli and binomial
logit, Poisson log), no quadrature.

Its ``parameters`` name the fixed effects ``Intercept`` and ``f[b]`` (R's ``(Intercept)``,
``fb``), the random effects ``sd(group:column)`` and ``corr(group:a,b)``, the residual
``residual_sd``; ``extra["fixed_effect_covariance"]`` is the fixed effects' covariance. It has
no ``offset()`` and codes every factor with treatment contrasts (no contr.poly): both
declined."""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np

from harness.adapters.peers import _formula as F
from harness.adapters.peers import calls
from harness.adapters.peers._base import (
    Peer,
    glmm_record,
    lmm_record,
    ordered_in_fixed,
    response_formula,
    response_frame,
)

#: pymixef's error code for syntax its formula parser does not accept (pymixef/formula.py:
#: "Unsupported or unsafe syntax in predictor expression"), e.g. I(age^2): not expressible
UNSUPPORTED_SYNTAX = "FORMULA-UNSAFE-001"
#: R's name of a pymixef fixed-effect column (calls.pymixef_name: ``Intercept`` is
#: ``(Intercept)``, ``f[b]`` is ``fb``)
r_fixed_name = calls.pymixef_name


class PymixefPeer(Peer):
    name = "pymixef"
    module = "pymixef"
    dist = "pymixef"
    glmm_links = {"binomial": ("logit",), "poisson": ("log",)}

    def check(self, parsed: F.Parsed, case: Any, data: Any = None) -> None:
        if "offset(" in case.formula:
            raise F.cannot(self.dist, "offset(...)", "its formulas and fit() take no offset")
        if data is not None and ordered_in_fixed(parsed, data):
            raise F.cannot(self.dist, f"contr.poly for the ordered factor(s) "
                           f"{', '.join(ordered_in_fixed(parsed, data))}", "it codes every "
                           "factor with treatment contrasts")

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import pymixef
        from pymixef import families

        parsed, terms = self.prepare(case, data)
        frame, formula, family = data, case.formula, None
        if case.is_glmm:
            frame, resp = response_frame(case, data)
            formula = response_formula(case.formula)
            if case.family == "poisson":
                family = families.Poisson()
            elif resp.weights is None or np.allclose(resp.weights, 1.0):
                family = families.Bernoulli()
            else:  # successes out of trials
                frame["glmm_y_"] = np.rint(resp.y * resp.weights)
                family = families.Binomial(trials=np.asarray(resp.weights, dtype=float))
        REML = bool(getattr(case, "REML", False)) and not case.is_glmm
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                r = calls.pymixef_fit(pymixef, frame, formula, "laplace" if case.is_glmm
                                      else "reml" if REML else "ml", family)
            except Exception as exc:  # its FormulaError: declined syntax, not a failed fit
                if getattr(exc, "code", None) == UNSUPPORTED_SYNTAX:
                    raise F.cannot(self.dist, formula, f"its formula parser says {exc} "
                                   f"({UNSUPPORTED_SYNTAX})") from None
                raise
        params = dict(r.parameters)
        names = list(r.extra.get("fixed_effect_names") or [  # its GLMM extra has none
            k for k in params if not k.startswith(("sd(", "corr(")) and k != "residual_sd"])
        beta = [float(params[n]) for n in names]
        r_names = [r_fixed_name(n) for n in names]
        covs = [_term_covariance(params, t) for t in terms]
        messages = F.caught_messages(caught) + [f"pymixef: {w.code}: {w.message}"
                                                for w in (r.warnings or ())]
        converged = r.convergence.status == "converged"
        loglik = float(r.log_likelihood)
        if case.is_glmm:
            rec = glmm_record(case, terms, covs, names=r_names, beta=beta, se=None,
                              loglik=loglik, deviance=None, nobs=int(r.n_observations),
                              converged=converged, messages=messages)
            rec["versions"] = self.versions()
            return rec
        sigma2 = float(params["residual_sd"]) ** 2
        se = np.sqrt(np.diag(np.asarray(r.extra["fixed_effect_covariance"], dtype=float)))
        rec = lmm_record(terms, covs, names=r_names, beta=beta, se=se, sigma2=sigma2,
                         loglik=loglik, REML=REML, nobs=r.n_observations, converged=converged,
                         messages=messages)
        rec["versions"] = self.versions()
        return rec


def _term_covariance(params: dict[str, Any], term: F.Term) -> np.ndarray:
    """The term's covariance from pymixef's ``sd(group:column)`` and ``corr(group:a,b)``
    parameters (its group may name an interaction's parts in the other order)."""
    sds: dict[tuple[str, str], float] = {}
    corrs: dict[tuple[str, frozenset[str]], float] = {}
    for key, value in params.items():
        m = re.fullmatch(r"sd\((.+):([^:]+)\)", key)
        if m and F.same_factor(m[1], term.group):
            sds[(term.group, r_fixed_name(m[2]))] = float(value)
        m = re.fullmatch(r"corr\((.+):([^,:]+),([^,:]+)\)", key)
        if m and F.same_factor(m[1], term.group):
            corrs[(term.group, frozenset((r_fixed_name(m[2]), r_fixed_name(m[3]))))] = \
                float(value)
    cols = term.columns
    missing = [c for c in cols if (term.group, c) not in sds]
    if missing:
        raise RuntimeError(f"pymixef reports no SD for lme4's term {term.group} {missing}: "
                           f"it has {sorted(params)}")
    sd = np.array([sds[(term.group, c)] for c in cols])
    corr = np.eye(len(cols))
    for i in range(len(cols)):
        for j in range(i):
            c = corrs.get((term.group, frozenset((cols[i], cols[j]))), 0.0)
            corr[i, j] = corr[j, i] = c
    return corr * np.outer(sd, sd)
