"""glmm (PyPI ``glmm``, a Rust kernel): ``glmm.fit(data, formula, reml=)`` takes an R-style
formula; its coefficient names are R's. What its engine refuses, by its own error messages:
``||`` ("the glmm kernel always fits the full RE correlation structure"), a random slope
without a random intercept, ``I(...)`` terms. Its parser takes no grouping of three factors
(``a/b/c``, ``a:b:c``): the adapter writes such a term out as lme4 expands it, the grouping of
three as a pasted column (:func:`glmm_formula`). It codes every factor with treatment contrasts
(no contr.poly for ordered factors). Its ``varcorr`` is one vech-packed covariance per grouping,
in ``re_groups`` order, and ``dispersion`` is σ².

GLMMs: ``glmm.fit(data, formula, family, link=, nagq=, weights=, wald_se=)``; families binomial
(logit, probit, cloglog), Poisson (log); the Laplace criterion, and for nagq > 1 adaptive
Gauss-Hermite quadrature on one grouping factor (it falls back to Laplace with a warning on
other shapes: the adapter then refuses the record). The response is passed as glmer reads it
(the proportion, weights = trials). Its default ``wald_se="hessian"`` is the Hessian-based SE
(lme4's default ``vcov(m)``): ``fixef_se``; a second fit with ``wald_se="rx"`` gives the
RX-based one (lme4's ``use.hessian = FALSE``): ``fixef_se_rx``. Its ``loglik`` includes the
binomial/Poisson normalizing constants (lme4's Laplace logLik)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from harness.adapters.peers import _formula as F
from harness.adapters.peers import _reported as R
from harness.adapters.peers import calls
from harness.adapters.peers._base import (
    Peer,
    complex_predictors,
    glmm_record,
    nagq_of,
    ordered_in_fixed,
    response_formula,
    response_frame,
)

GLMM_FAMILY = {"binomial": "binomial", "poisson": "poisson"}


class GlmmPeer(Peer):
    name = "glmm"
    module = "glmm"
    dist = "glmm"
    glmm_links = {"binomial": ("logit", "probit", "cloglog"), "poisson": ("log",)}
    glmm_unmapped = ("Gamma", "inverse.gaussian")
    glmm_agq = None  # one grouping factor (lme4: one scalar term), nagq odd and <= 25

    def check(self, parsed: F.Parsed, case: Any, data: Any = None) -> None:
        if any(b.double for b in parsed.bars):
            raise F.cannot("glmm", "'||' (uncorrelated terms)", "its kernel always fits the "
                           "full random-effects correlation structure (its own error message)")
        if any(not b.intercept for b in parsed.bars):
            raise F.cannot("glmm", "a random slope without a random intercept", "'0 +' in a "
                           "random-effects term is not supported by its engine")
        if "I(" in case.formula or complex_predictors(parsed):
            raise F.cannot("glmm", "I(...) terms", "its formula parser takes identifiers only")
        if data is not None and ordered_in_fixed(parsed, data):
            raise F.cannot("glmm", f"contr.poly for the ordered factor(s) "
                           f"{', '.join(ordered_in_fixed(parsed, data))}", "it codes every "
                           "factor with treatment contrasts and has no contrasts option")

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import glmm

        parsed, terms = self.prepare(case, data)
        if case.is_glmm:
            return self._fit_glmm(case, data, terms)
        REML = bool(case.REML)
        formula, columns = glmm_formula(parsed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = calls.glmm_fit(glmm, data, formula or case.formula, REML, columns)
        if not m.varcorr or not np.all(np.isfinite(m.beta)):
            raise RuntimeError(no_estimates(caught, m))
        sigma2 = float(m.dispersion)
        alias = dict(columns)  # a pasted column a__b__c is the grouping a:b:c
        blocks = {alias.get(grp, grp): (list(cols), F.unpack_vech(packed, len(cols)))
                  for (grp, cols), packed in zip(m.re_groups, m.varcorr, strict=True)}
        covs = [F.pick_block(blocks, t, "glmm") for t in terms]
        theta = F.theta_of(terms, covs, sigma2)
        names = list(m.names)
        messages = F.caught_messages(caught) + [str(w.get("message", w)) if isinstance(w, dict)
                                                else str(w) for w in (m.warnings or [])]
        if formula:
            messages.append(f"harness: fitted as {formula} (glmm's parser takes no grouping "
                            "of three factors; the same model, lme4's own expansion)")
        return {
            "fixef": dict(zip(names, map(float, m.beta), strict=True)),
            "fixef_se": dict(zip(names, map(float, m.se), strict=True)),
            "sigma": float(np.sqrt(sigma2)),
            "varcorr": F.varcorr_rows(terms, covs, sigma2),
            "theta": theta,
            "loglik": float(m.loglik),
            "objective": -2.0 * float(m.loglik),
            "REML": REML,
            "nobs": int(m.nobs),
            "ngroups": {t.group: t.nlevels for t in terms},
            "converged": bool(m.converged),
            "singular": bool(m.singular),
            "messages": messages,
            "nfev": int(m.n_eval),
            "versions": self.versions(),
            "ranef": ranef(m, terms),
            "coef_tests": coef_tests(m, names, REML),
        }


    def _fit_glmm(self, case: Any, data: Any, terms: list[F.Term]) -> dict[str, Any]:
        import glmm

        nagq = nagq_of(case)
        if nagq > 1 and nagq % 2 == 0:
            raise F.cannot("glmm", f"nAGQ = {nagq}", "its nagq must be odd")
        frame, resp = response_frame(case, data)
        formula = response_formula(case.formula)
        args = (GLMM_FAMILY[case.family], case.link_name, nagq, resp.weights)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = calls.glmm_fit_glmm(glmm, frame, formula, *args)
        if not m.varcorr or not np.all(np.isfinite(m.beta)):
            raise RuntimeError(no_estimates(caught, m))
        if int(m.nagq) != nagq:
            raise F.cannot("glmm", f"nAGQ = {nagq} for this model", f"it fell back to "
                           f"nagq = {m.nagq} (Laplace): " + " | ".join(F.caught_messages(caught)))
        se_rx = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:  # the same fit (deterministic), its SEs from the RX factor
                m_rx = calls.glmm_fit_glmm(glmm, frame, formula, *args, wald_se="rx")
                if np.allclose(m_rx.beta, m.beta, rtol=0, atol=1e-10):
                    se_rx = list(m_rx.se)
            except Exception:  # noqa: BLE001 - the Hessian SEs stand alone
                se_rx = None
        blocks = {grp: (list(cols), F.unpack_vech(packed, len(cols)))
                  for (grp, cols), packed in zip(m.re_groups, m.varcorr, strict=True)}
        covs = [F.pick_block(blocks, t, "glmm") for t in terms]
        messages = F.caught_messages(caught) + [str(w.get("message", w)) if isinstance(w, dict)
                                                else str(w) for w in (m.warnings or [])]
        mu = np.asarray(m.fitted, dtype=float)
        dev = (float(np.sum(F.unit_deviance(case.family, resp.y, mu, resp.weights)))
               if mu.size == resp.y.size else None)
        rec = glmm_record(case, terms, covs, names=list(m.names), beta=m.beta, se=m.se,
                          se_rx=se_rx, loglik=float(m.loglik), deviance=dev, nobs=int(m.nobs),
                          converged=bool(m.converged), singular=bool(m.singular),
                          messages=messages, nfev=int(m.n_eval))
        rec["versions"] = self.versions()
        rec["ranef"] = ranef(m, terms)
        return rec


def no_estimates(caught: list[Any], m: Any) -> str:
    """The failure of a fit for which glmm returned no estimates (NaN, no variance
    components), in its own words, its severe warnings first: its "Fit failed" is the cause,
    a "Satterthwaite df uncertain" caution that comes with it a consequence."""
    said = F.caught_messages(caught) or [str(w.get("message", w)) if isinstance(w, dict)
                                         else str(w) for w in m.warnings or []]
    said.sort(key=lambda text: "Severe" not in text)  # stable: the rest keep their order
    return "glmm returned no estimates: " + " | ".join(said)


def glmm_formula(parsed: F.Parsed) -> tuple[str | None, list[tuple[str, str]]]:
    """glmm's formula for lme4's, with the grouping columns it needs: its parser takes a
    grouping of one factor, ``a:b`` and ``a/b``, not one of three (``a/b/c``, ``a:b:c``:
    "formula syntax error"). Such a term is written out as lme4 expands it (``(1 | a/b/c)`` is
    ``(1 | a) + (1 | a:b) + (1 | a:b:c)``, the same model) and each grouping of three or more
    factors named by a column of its own, ``a__b__c`` (``columns``: (column, grouping), the
    labels pasted by :func:`calls.with_groups`). ``(None, [])`` when nothing needs it."""
    bars, columns, changed = [], [], False
    for b in parsed.bars:
        parts = [p.strip() for p in b.group.split("/")]
        groups = [":".join(parts[:k]) for k in range(1, len(parts) + 1)]
        if not any(len(g.split(":")) >= 3 for g in groups):
            bars.append(f"({b.expr} {'||' if b.double else '|'} {b.group})")
            continue
        changed = True
        for g in groups:
            factors = [f.strip() for f in g.split(":")]
            if len(factors) >= 3:
                col = "__".join(factors)
                if (col, ":".join(factors)) not in columns:
                    columns.append((col, ":".join(factors)))
                g = col
            bars.append(f"({b.expr} {'||' if b.double else '|'} {g})")
    if not changed:
        return None, []
    return f"{parsed.response} ~ {parsed.fixed} + {' + '.join(bars)}", columns


def ranef(m: Any, terms: list[F.Term]) -> list[dict[str, Any]] | None:
    """glmm's conditional modes, ``ranef_blocks`` (group, terms, levels, values: glmm/
    __init__.py, the fit's fields), in lme4's names. It gives no conditional variances:
    condsd is not reported."""
    blocks = [(str(b["group"]), list(b["levels"]), R.column_names(list(b["terms"]), terms),
               np.asarray(b["values"], dtype=float), None) for b in (m.ranef_blocks or [])]
    return R.ranef_of(blocks, terms)


def coef_tests(m: Any, names: list[str], REML: bool) -> list[dict[str, Any]] | None:
    """glmm's own t tests of a Gaussian mixed model: ``coef_df``, ``coef_p`` with ``se`` when
    its ``df_method`` is "satterthwaite" (glmm/__init__.py: computed by the kernel); it has
    no Kenward-Roger."""
    if m.df_method != "satterthwaite" or "Satterthwaite" not in R.wanted_ddf(int(m.nobs),
                                                                             REML):
        return None
    return R.coef_test_rows("Satterthwaite", names, m.se, m.coef_df, m.coef_p) or None
