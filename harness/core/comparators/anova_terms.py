"""lmerTest's F tests of a fit's model terms (``anova(m, type=, ddf=)``: Satterthwaite's Types
I, II and III, Kenward-Roger's Type III) and lme4's own ``anova(m)`` table of one fit."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from scipy import stats

from harness.core.comparators.base import Record, Row, row, rows_of
from harness.core.comparators.coef_tests import (
    KENWARD_ROGER_MAX_NOBS,
    SATTERTHWAITE_MAX_NOBS,
    SINGULAR_SATTERTHWAITE,
)
from harness.core.comparators.theta import singular_in_vector_term
from harness.core.tolerance import Tolerance

#: the (ddf, type) tables recorded per fit, as r_scripts/lmer_record.R's ANOVA_TERMS_TABLES;
#: lme4's own table (ddf "lme4", type "") is recorded with them
TABLES = (("Satterthwaite", "1"), ("Satterthwaite", "2"), ("Satterthwaite", "3"),
          ("Kenward-Roger", "3"))


def wanted_tables(nobs: int, REML: bool) -> list[tuple[str, str]]:
    """The tables lme4's record has for a fit of ``nobs`` rows (the coefficient tests' limits:
    Satterthwaite up to 100,000 rows, Kenward-Roger for REML fits up to 2,000), then lme4's."""
    if nobs > SATTERTHWAITE_MAX_NOBS:
        return []
    out = [t for t in TABLES if t[0] == "Satterthwaite"
           or (REML and nobs <= KENWARD_ROGER_MAX_NOBS)]
    return [*out, ("lme4", "")]


def f_allowed(F: float, tol: Tolerance) -> float:
    """What an F statistic may differ by when β is within ``fixef_se_units`` of its SE and the
    SEs within ``fixef_se_rel``: qF = Σ t_m² over q orthogonal directions, each t_m moving by
    u + r|t_m|, so δF <= 2u√F + 2rF (by Cauchy–Schwarz, for any q)."""
    F = abs(F)
    return 2 * tol.fixef_se_units * math.sqrt(F) + 2 * tol.fixef_se_rel * F


def _key(r: Mapping[str, Any]) -> str:
    """A table row's name: method and type, then the term (``sat3|Diet:Time``, ``lme4|Diet``)."""
    short = {"Satterthwaite": "sat", "Kenward-Roger": "kr"}.get(str(r["ddf"]), str(r["ddf"]))
    return f"{short}{r['type']}|{r['term']}"


class TermFTests:
    name = "anova_terms"
    quantities = ("anova_terms_F", "anova_terms_ms", "anova_terms_numdf", "anova_terms_dendf",
                  "anova_terms_p")
    reason = ("an F statistic is a mean of squared t statistics of β̂ (lme4's: of R_X β̂ / σ): "
              "with β within fixef_se_units of its SE and the SEs within fixef_se_rel it moves "
              "by at most 2u√F + 2rF (Kenward-Roger's scaled F also by df_rel); Mean Sq = "
              "F σ², so that allowance times σ² plus Mean Sq's 2 sigma_rel; NumDF exactly; "
              "DenDF as the coefficient tests' df (relative, not compared at a fit singular in "
              "a vector-valued term); Pr(>F) against the F distribution at the candidate's own "
              "F, NumDF and DenDF")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        ref = {_key(r): r for r in reference.get("anova_terms") or ()}
        cand = {_key(r): r for r in candidate.get("anova_terms") or ()}
        if not ref:
            return []
        singular = singular_in_vector_term(reference)
        sigma = reference.get("sigma")
        out: list[Row | None] = []
        for key, r in ref.items():
            c = cand.get(key, {})
            kr = r["ddf"] == "Kenward-Roger"
            F = r.get("F")
            if F is not None:
                allowed = f_allowed(F, tol) + (tol.df_rel * abs(F) if kr else 0.0)
                out.append(row(f"anova_terms_F[{key}]", F, c.get("F"), allowed))
            ms = r.get("MeanSq")
            if ms is not None and sigma:
                s2 = float(sigma) ** 2
                allowed = s2 * f_allowed(ms / s2, tol) + 2 * tol.sigma_rel * abs(ms)
                out.append(row(f"anova_terms_ms[{key}]", ms, c.get("MeanSq"), allowed))
            if r.get("NumDF") is not None:
                out.append(row(f"anova_terms_numdf[{key}]", r["NumDF"], c.get("NumDF"), 0.0))
            out.append(self._dendf_row(f"anova_terms_dendf[{key}]", r, c, singular, tol))
            out.append(self._p_row(f"anova_terms_p[{key}]", c, tol))
        return rows_of(*out)

    @staticmethod
    def _dendf_row(name: str, r: Mapping[str, Any], c: Mapping[str, Any], singular: bool,
                   tol: Tolerance) -> Row | None:
        ref, df = r.get("DenDF"), c.get("DenDF")
        if ref is None:
            return None
        if r["ddf"] != "Satterthwaite":
            return row(name, ref, df, tol.df_rel * abs(ref))
        allowed = tol.satterthwaite_allowed(ref, singular)
        if allowed is not None or df is None:
            return row(name, ref, df, allowed)
        return Row(name, ref, df, df - ref, None, None, SINGULAR_SATTERTHWAITE)

    @staticmethod
    def _p_row(name: str, c: Mapping[str, Any], tol: Tolerance) -> Row | None:
        """The candidate's Pr(>F) against the F distribution at its own F, NumDF, DenDF."""
        p, F, ndf, ddf = c.get("p"), c.get("F"), c.get("NumDF"), c.get("DenDF")
        if p is None or F is None or not ndf or not ddf:
            return None
        expected = float(stats.f.sf(float(F), float(ndf), float(ddf)))
        r = row(name, expected, p, tol.p_rel * abs(expected))
        if r is not None:
            r.note = "from its own F, NumDF and DenDF"
        return r
