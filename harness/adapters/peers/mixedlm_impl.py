"""mixedlm (PyPI ``mixedlm``, a Rust core with lme4's interface): ``mixedlm.lmer(formula, data,
REML=)`` takes lme4's formula as written; ordered factors get ``contrasts={x: "poly"}`` (lme4's
contr.poly; mixedlm's default is treatment for every factor). mixedlm names a factor's contrast
columns ``x.1, x.2, ...``: mapped to R's (``xB``, ``x.L``). Its VarCorr groups are matched to
lme4's terms by their factors (it writes ``batch:cask`` where lme4 writes ``cask:batch`` and keeps
a ``||`` pair as one group with a diagonal covariance).

GLMMs: ``mixedlm.glmer(formula, data, family=Binomial(link)|Poisson(link), nAGQ=, weights=)``,
lme4's two-stage fit (nAGQ0initStep, then theta and beta jointly under the Laplace or, for one
scalar term, the adaptive Gauss-Hermite criterion); its links are all of lme4's binomial and
Poisson links. The response is passed as glmer reads it (the proportion, weights = trials).
Its ``vcov()`` is the inverse of the Fisher information of beta at the conditional modes
(X'WX minus the random-effects part: lme4's RX, ``vcov(m, use.hessian = FALSE)``), not
lme4's default Hessian-based one: ``fixef_se_rx`` carries it (``fixef_se``, the
Hessian-based kind, is not reported). Its
``logLik`` includes the binomial/Poisson normalizing constants (as lme4's Laplace logLik).

Its parser refuses ``offset(...)`` in a formula (mixedlm.formula.parser: "Expected '+' or '-'
between terms"), and glmer/lmer take ``offset=`` (a vector on the link scale,
models/glmer_fit.py): the adapter strips every ``offset(expr)`` term from the formula and
passes the sum of the evaluated expressions (``_formula.split_offsets``,
``_formula.offset_vector``).
mixedlm names R's ``I(x^k)``, which the adapter writes ``I(x**k)`` for it, ``I(x**k)``: mapped
back to R's name (R's parser reads ``**`` as ``^`` and names the column ``I(x^k)``)."""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np

from harness.adapters.peers import _formula as F
from harness.adapters.peers import _reported as R
from harness.adapters.peers import calls
from harness.adapters.peers._base import (
    Peer,
    glmm_record,
    nagq_of,
    ordered_in_fixed,
    response_formula,
    response_frame,
)
from harness.core.comparators.confint import wants_intervals


class MixedlmPeer(Peer):
    name = "mixedlm"
    module = "mixedlm"
    dist = "mixedlm"
    glmm_links = {"binomial": ("logit", "probit", "cloglog", "cauchit", "log"),
                  "poisson": ("log", "identity", "sqrt")}
    glmm_unmapped = ("Gamma", "inverse.gaussian")
    glmm_agq = None  # nAGQ > 1 for one scalar term, as lme4 (estimation/laplace.py)
    glmm_nagq0 = True  # nAGQ = 0: theta alone, beta inside PIRLS, as lme4

    def check(self, parsed: F.Parsed, case: Any, data: Any = None) -> None:
        for expr in re.findall(r"I\(([^()]*)\)", case.formula):
            if not re.fullmatch(r"\s*\w+\s*(\^|\*\*)\s*\d+\s*", expr):
                raise F.cannot("mixedlm", f"I({expr})", "its formula parser takes only a "
                               "variable or I(variable**exponent) (mixedlm.formula.parser)")

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import mixedlm

        parsed, terms = self.prepare(case, data)
        contrasts = {v: "poly" for v in ordered_in_fixed(parsed, data)}
        if case.is_glmm:
            return self._fit_glmm(case, data, terms, contrasts)
        REML = bool(case.REML)
        formula, offsets = F.split_offsets(case.formula)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = calls.mixedlm_lmer(mixedlm, data, F.python_powers(formula), REML,
                                   contrasts or None, F.offset_vector(offsets, data))
            vc = m.VarCorr()
            se = np.sqrt(np.diag(np.asarray(m.vcov(), dtype=float)))
            singular = bool(m.isSingular())
        fixef = m.fixef()
        names = F.r_powers(F.map_names(list(fixef), data, "index"))
        sigma2 = float(vc.residual)
        blocks = {g: (list(v.term_names), np.asarray(v.cov, dtype=float))
                  for g, v in vc.groups.items()}
        covs = [F.pick_block(blocks, t, "mixedlm") for t in terms]
        theta = F.theta_of(terms, covs, sigma2)
        loglik = float(m.logLik())
        messages = F.caught_messages(caught)
        msg = getattr(m, "message", None)
        if msg:
            messages.append(str(msg))
        return {
            "fixef": dict(zip(names, map(float, fixef.values()), strict=True)),
            "fixef_se": dict(zip(names, map(float, se), strict=True)),
            "sigma": float(np.sqrt(sigma2)),
            "varcorr": F.varcorr_rows(terms, covs, sigma2),
            "theta": theta,
            "loglik": loglik,
            "objective": float(m.REMLcrit()),
            "REML": REML,
            "nobs": int(m.nobs() if callable(m.nobs) else m.nobs),
            "ngroups": {t.group: t.nlevels for t in terms},
            "converged": bool(m.converged),
            "singular": singular,
            "messages": messages,
            "nfev": _int(getattr(m, "function_evals", None)),
            "versions": self.versions(),
            "ranef": ranef(m, terms),
            "coef_tests": coef_tests(m, names, REML),
            "confint": confint(m, dict(zip(list(fixef), names, strict=True)),
                               wants_intervals(case)),
        }

    def _fit_glmm(self, case: Any, data: Any, terms: list[F.Term],
                  contrasts: dict[str, str]) -> dict[str, Any]:
        import mixedlm
        from mixedlm import families

        family = {"binomial": families.Binomial, "poisson": families.Poisson}[case.family](
            link=case.link_name)
        frame, resp = response_frame(case, data)
        formula, offsets = F.split_offsets(case.formula)
        formula = response_formula(F.python_powers(formula))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = mixedlm.glmer(formula, frame, family=family, nAGQ=nagq_of(case),
                              weights=resp.weights, contrasts=contrasts or None,
                              offset=F.offset_vector(offsets, data))
            vc = m.VarCorr()
            se = np.sqrt(np.diag(np.asarray(m.vcov(), dtype=float)))
            singular = bool(m.isSingular())
            loglik = float(m.logLik().value)
            mu = np.asarray(m.fitted(type="response", na_expand=False), dtype=float)
        fixef = m.fixef()
        names = F.r_powers(F.map_names(list(fixef), data, "index"))
        blocks = {g: (list(v.term_names), np.asarray(v.cov, dtype=float))
                  for g, v in vc.groups.items()}
        covs = [F.pick_block(blocks, t, "mixedlm") for t in terms]
        messages = F.caught_messages(caught)
        if getattr(m, "message", None):
            messages.append(str(m.message))
        if not getattr(m, "pirls_converged", True):
            messages.append("mixedlm: PIRLS did not converge")
        dev = float(np.sum(F.unit_deviance(case.family, resp.y, mu, resp.weights)))
        rec = glmm_record(case, terms, covs, names=names, beta=list(fixef.values()), se=None,
                          se_rx=se, loglik=loglik, deviance=dev, nobs=len(resp.y),
                          converged=bool(m.converged) and bool(getattr(m, "pirls_converged",
                                                                       True)),
                          singular=singular, messages=messages,
                          nfev=_int(getattr(m, "function_evals", None)))
        rec["versions"] = self.versions()
        rec["ranef"] = ranef(m, terms)
        return rec


def ranef(m: Any, terms: list[F.Term]) -> list[dict[str, Any]] | None:
    """mixedlm's conditional modes and conditional SDs, ``m.ranef(condVar=True)``
    (models/result_mixin.py ranef; utils/variance.py _conditional_variance_blocks: the
    diagonal of sigma^2 Lambda (L L')^-1 Lambda' per level, lme4's condVar), in lme4's names.
    Levels come from its random structures' ``level_map``."""
    res = m.ranef(condVar=True)
    levels: dict[str, list[str]] = {}
    for struct in m.matrices.random_structures:
        lm = struct.level_map
        levels.setdefault(struct.grouping_factor, sorted(lm, key=lm.__getitem__))
    blocks = []
    for grp, by_term in res.values.items():
        cols = [c for c in by_term if not c.startswith("_")]
        var = (res.condVar or {}).get(grp, {})
        values = np.column_stack([by_term[c] for c in cols])
        sd = (np.sqrt(np.clip(np.column_stack([var[c] for c in cols]), 0.0, None))
              if all(c in var for c in cols) else None)
        blocks.append((grp, levels[grp], R.column_names(cols, terms), values, sd))
    return R.ranef_of(blocks, terms)


def coef_tests(m: Any, names: list[str], REML: bool) -> list[dict[str, Any]] | None:
    """mixedlm's t tests of the fixed effects, ``m.tidy(ddf_method=...)`` (inference/
    reporting.py; df from inference/ddf.py satterthwaite_df and kenward_roger_df), for the
    methods lme4's record has at this size. Its Kenward-Roger SE is the unadjusted one (it
    scales Satterthwaite's df and keeps vcov(), ddf.py kenward_roger_df): reported as given."""
    rows: list[dict[str, Any]] = []
    for ddf in R.wanted_ddf(int(m.matrices.n_obs), REML):
        try:
            table = m.tidy(effects="fixed", ddf_method=ddf)
        except (ValueError, np.linalg.LinAlgError, RuntimeError):
            continue
        if len(table) != len(names):
            continue
        rows += R.coef_test_rows(ddf, names, table["std.error"], table["df"],
                                 table["p.value"])
    return rows or None


def confint(m: Any, names: dict[str, str], profile: bool) -> list[dict[str, Any]] | None:
    """mixedlm's ``m.confint(method=...)`` of the fixed effects: Wald always, profile for the
    cases whose lme4 record has profile intervals (the ``intervals`` tag); mixedlm profiles
    the fixed effects only, so the variance parameters' profile intervals are not reported."""
    rows: list[dict[str, Any]] = []
    for method in ("Wald", "profile") if profile else ("Wald",):
        try:
            rows += R.confint_rows(method, m.confint(method=method), names)
        except (ValueError, np.linalg.LinAlgError, RuntimeError):
            continue
    return rows or None


def _int(x: Any) -> int | None:
    try:
        return int(x() if callable(x) else x)
    except (TypeError, ValueError):
        return None
