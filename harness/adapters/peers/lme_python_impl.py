"""lme-python (PyPI ``lme-python``, the Rust crate lme-rs): ``lme_python.lmer(formula, data,
reml=, factors=)`` takes lme4's formula and a polars frame. Factors go in as strings with their
levels declared (``FactorSpec(levels, coding="treatment")``), so the reference level is R's;
its codings are treatment and sum only, so ordered factors (lme4: contr.poly) cannot be
expressed. Its ``var_corr`` rows are (grp, var1, var2, vcov, sdcor) with the covariance row
written (slope, intercept) and no correlation: rebuilt into lme4's rows from the covariances.
Its names of a two-way interaction with a factor are not R's (``Diet:Time2:`` for
``Diet2:Time``, ``x:f:b`` for ``x:fb``; the columns' values are R's): renamed to R's
(:func:`calls.lme_python_r_names`), each renamed one noted in the record's messages.

GLMMs: ``lme_python.glmer_weighted(formula, frame, family_name, n_agq=, weights=,
link_name=)``; families binomial (logit, probit, cloglog) and Poisson (log). The response must
be one column name (no ``cbind``, no ``successes / trials``), so it is passed as glmer reads
it (the proportion, weights = trials). Its glmer takes no ``factors=``: factors go in as
strings, whose levels it sorts, so a factor whose R levels are not in sorted order cannot be
expressed. Its ``beta_se`` is from the inverse of the fixed-effects block of the penalized
system at the conditional modes (RX-based, lme4's ``vcov(m, use.hessian = FALSE)``):
``fixef_se_rx`` carries it (``fixef_se``, the
Hessian-based kind, is not reported). Its ``log_likelihood`` is relative to the
saturated model (it omits the saturated log-likelihood, a response-only constant that lme4's
Laplace logLik includes): reported as it is, the constant in the record's messages."""

from __future__ import annotations

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


class LmePythonPeer(Peer):
    name = "lme-python"
    module = "lme_python"
    dist = "lme-python"
    glmm_links = {"binomial": ("logit", "probit", "cloglog"), "poisson": ("log",)}
    glmm_agq = None  # n_agq > 1 accepted (one grouping factor)

    def check(self, parsed: F.Parsed, case: Any, data: Any = None) -> None:
        if data is not None and ordered_in_fixed(parsed, data):
            raise F.cannot("lme-python", "contr.poly for the ordered factor(s) "
                           f"{', '.join(ordered_in_fixed(parsed, data))}",
                           "FactorSpec's coding is treatment or sum only")

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import lme_python
        import polars as pl

        parsed, terms = self.prepare(case, data)
        if case.is_glmm:
            return self._fit_glmm(case, data, parsed, terms)
        REML = bool(case.REML)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m, frame = _declined(lambda: calls.lme_python_lmer(
                lme_python, pl, data, case.formula, REML, fixed_factors(parsed, data)),
                case.formula)
        sigma2 = float(m.sigma2)
        covs = _covariances(m, terms)
        theta = F.theta_of(terms, covs, sigma2)
        names, renamed = r_names(m, data)
        diag = dict(m.diagnostics or {})
        messages = F.caught_messages(caught) + [str(w) for w in diag.get("warnings") or []]
        messages += renamed
        if diag.get("termination") not in (None, "Converged"):
            messages.append(f"termination: {diag['termination']}")
        objective = m.reml_criterion if REML else m.deviance
        return {
            "fixef": dict(zip(names, map(float, m.coefficients), strict=True)),
            "fixef_se": dict(zip(names, map(float, m.beta_se or []), strict=True)),
            "sigma": float(np.sqrt(sigma2)),
            "varcorr": F.varcorr_rows(terms, covs, sigma2),
            "theta": theta,
            "loglik": float(m.log_likelihood),
            "objective": None if objective is None else float(objective),
            "REML": REML,
            "nobs": int(m.num_obs),
            "ngroups": {t.group: t.nlevels for t in terms},
            "converged": bool(m.converged),
            "singular": F.singular(theta, terms),
            "messages": messages,
            "nfev": None if m.iterations is None else int(m.iterations),
            "versions": self.versions(),
            "ranef": ranef(m, terms),
            "coef_tests": coef_tests(m, frame, names, REML),
        }

    def _fit_glmm(self, case: Any, data: Any, parsed: F.Parsed, terms: list[F.Term]
                  ) -> dict[str, Any]:
        import lme_python
        import polars as pl

        frame, resp = response_frame(case, data)
        for c in frame.columns:
            if str(frame[c].dtype) == "category":
                levels = [str(v) for v in frame[c].cat.categories]
                if F.uses(parsed.fixed, c) and levels != sorted(levels):
                    raise F.cannot("lme-python", f"R's level order of the factor {c} "
                                   f"({', '.join(levels)})", "its glmer takes no factors= "
                                   "and sorts a string column's levels")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = calls.lme_python_glmer(lme_python, pl, frame, response_formula(case.formula),
                                       case.family, nagq_of(case), resp.weights,
                                       case.link_name)
        covs = _covariances(m, terms)
        diag = dict(m.diagnostics or {})
        messages = F.caught_messages(caught) + [str(w) for w in diag.get("warnings") or []]
        if diag.get("termination") not in (None, "Converged"):
            messages.append(f"termination: {diag['termination']}")
        if diag.get("effective_n_agq") not in (None, nagq_of(case)):
            raise F.cannot("lme-python", f"nAGQ = {case.nAGQ} for this model", "it fell back "
                           f"to n_agq = {diag.get('effective_n_agq')}")
        sat = F.saturated_loglik(case.family, resp.y, resp.weights)
        if sat is not None and abs(sat) > 1e-9 and m.log_likelihood is not None:
            messages.append(f"harness: lme-python's logLik {float(m.log_likelihood):.6f} is "
                            "relative to the saturated model; with the saturated "
                            f"log-likelihood {sat:.6f} (a response-only constant, which "
                            f"lme4's Laplace logLik includes) it is "
                            f"{float(m.log_likelihood) + sat:.6f}")
        mu = np.asarray(m.fitted, dtype=float)
        dev = (float(np.sum(F.unit_deviance(case.family, resp.y, mu, resp.weights)))
               if mu.size == resp.y.size else None)
        names, renamed = r_names(m, frame)
        messages += renamed
        rec = glmm_record(case, terms, covs, names=names,
                          beta=m.coefficients, se=None, se_rx=m.beta_se or [],
                          loglik=m.log_likelihood, deviance=dev, nobs=int(m.num_obs),
                          converged=bool(m.converged), messages=messages,
                          nfev=None if m.iterations is None else int(m.iterations))
        rec["versions"] = self.versions()
        rec["ranef"] = ranef(m, terms)
        return rec


def _declined(call: Any, formula: str) -> Any:
    """Run ``call``; lme-python's own "not implemented: ..." (a ValueError from its formula
    parser: ``I(Days - 4.5)``, a three-way ``a * b * c``, ``a/b/c``) is what it cannot express,
    so it is raised as such with its words, not as a failed fit."""
    try:
        return call()
    except ValueError as exc:
        if str(exc).startswith("not implemented"):
            raise F.cannot("lme-python", formula, f"its lmer says {exc}") from None
        raise


def r_names(m: Any, data: Any) -> tuple[list[str], list[str]]:
    """lme-python's coefficient names in R's (:func:`calls.lme_python_r_names`: its names of a
    two-way interaction with a factor, ``Diet:Time2:`` for ``Diet2:Time``, are not R's; the
    values are), and a message naming each renamed one (what its users see)."""
    names = [str(n) for n in m.fixed_names or []]
    levels = {str(c): [str(v) for v in data[c].cat.categories] for c in data.columns
              if str(data[c].dtype) == "category"}
    levels.update({str(c): sorted({str(v) for v in data[c]}) for c in data.columns
                   if str(data[c].dtype) in ("object", "str", "string")})
    r = calls.lme_python_r_names(names, [str(c) for c in data.columns], levels)
    renamed = [f"{a} -> {b}" for a, b in zip(names, r, strict=True) if a != b]
    return r, ([f"harness: lme-python names these coefficients otherwise than R (its names "
                f"of a two-way interaction with a factor), renamed: {', '.join(renamed)}"]
               if renamed else [])


def ranef(m: Any, terms: list[F.Term]) -> list[dict[str, Any]] | None:
    """lme-python's conditional modes, its ``ranef`` rows (group, level, term, value), in
    lme4's names. It gives no conditional variances: condsd is not reported."""
    by_group: dict[str, dict[str, dict[str, float]]] = {}
    for grp, level, term, value in m.ranef or []:
        by_group.setdefault(str(grp), {}).setdefault(str(term), {})[str(level)] = float(value)
    blocks = []
    for grp, by_term in by_group.items():
        cols = list(by_term)
        levels = list(dict.fromkeys(lv for c in cols for lv in by_term[c]))
        values = np.array([[by_term[c].get(lv, np.nan) for c in cols] for lv in levels])
        blocks.append((grp, levels, R.column_names(cols, terms), values, None))
    return R.ranef_of(blocks, terms)


def coef_tests(m: Any, frame: Any, names: list[str], REML: bool
               ) -> list[dict[str, Any]] | None:
    """lme-python's t tests: ``with_satterthwaite`` and ``with_kenward_roger`` fill its
    ``satterthwaite_dfs``/``_p_values`` and ``kenward_roger_dfs``/``_p_values`` (lme_python/
    __init__.pyi). It exposes no Kenward-Roger adjusted SE (``beta_se`` is unchanged), so that
    se is not reported; Satterthwaite's se is ``beta_se``."""
    rows: list[dict[str, Any]] = []
    wanted = R.wanted_ddf(int(m.num_obs), REML)
    calls = (("Satterthwaite", "with_satterthwaite", "satterthwaite", m.beta_se),
             ("Kenward-Roger", "with_kenward_roger", "kenward_roger", None))
    for ddf, method, field, se in calls:
        if ddf not in wanted:
            continue
        try:
            getattr(m, method)(frame)
        except (RuntimeError, ValueError):
            continue
        df = getattr(m, f"{field}_dfs")
        if df is not None and len(df) == len(names):
            rows += R.coef_test_rows(ddf, names, se, df, getattr(m, f"{field}_p_values"))
    return rows or None


def fixed_factors(parsed: F.Parsed, data: Any) -> list[str]:
    """The factors the fixed part uses: declared to lme-python with R's levels."""
    return [c for c in data.columns if str(data[c].dtype) == "category"
            and F.uses(parsed.fixed, c)]


def _covariances(m: Any, terms: list[F.Term]) -> list[Any]:
    """Each term's covariance matrix, rebuilt from lme-python's var_corr rows (grp, var1, var2,
    vcov, sdcor; the Residual row left out)."""
    mats = calls.lme_python_blocks(m.var_corr)
    return [F.pick_block(mats, t, "lme-python") for t in terms]
