"""lmerTest's coefficient tests: denominator degrees of freedom (Satterthwaite, Kenward-Roger),
Kenward-Roger's adjusted SEs, and the p-values, as ``summary(m, ddf = ...)$coefficients``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scipy import stats

from harness.comparators.base import Record, Row, nested, row, rows_of
from harness.tolerance import Tolerance

#: the largest fits whose coefficient tests lme4's records carry (r_scripts/lmer_record.R:
#: Satterthwaite's numDeriv Hessian; Kenward-Roger's dense n x n matrices, REML fits only):
#: the adapters compute or report theirs within the same limits
SATTERTHWAITE_MAX_NOBS = 6000
KENWARD_ROGER_MAX_NOBS = 2000


def wanted_ddf(nobs: int, REML: bool) -> list[str]:
    """The ddf methods lme4's record has for a fit of ``nobs`` rows (Kenward-Roger: REML)."""
    out = ["Satterthwaite"] if nobs <= SATTERTHWAITE_MAX_NOBS else []
    if REML and nobs <= KENWARD_ROGER_MAX_NOBS:
        out.append("Kenward-Roger")
    return out


#: lmerTest's method names and the short ones in the row names
METHODS = {"Satterthwaite": "satterthwaite", "Kenward-Roger": "kr"}


def two_sided_p(estimate: float, se: float, df: float) -> float | None:
    """Pr(>|t|) of estimate / se on df degrees of freedom (None where undefined)."""
    if not se or se <= 0 or not df or df <= 0:
        return None
    return float(2.0 * stats.t.sf(abs(estimate / se), df))


class CoefficientTests:
    name = "coef_tests"
    quantities = ("df_satterthwaite", "df_kr", "se_kr", "p_satterthwaite", "p_kr")
    reason = ("the df are smooth functions of θ (and σ), which two correct optimizers agree on "
              "to ~1e-3 relative: relative, as the SEs; Kenward-Roger's adjusted SE as the SEs; "
              "a p-value is a function of β, its SE and df, each compared above, so it is "
              "checked against that function at the candidate's own numbers")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        ref = nested(reference.get("coef_tests"), "ddf", "term")
        cand = nested(candidate.get("coef_tests"), "ddf", "term")
        if not ref:
            return []
        fixef = dict(candidate.get("fixef") or {})
        out: list[Row | None] = []
        for method, terms in ref.items():
            short = METHODS.get(method, method)
            theirs = cand.get(method, {})
            for term, r in terms.items():
                c = theirs.get(term, {})
                df_ref = r.get("df")
                out.append(row(f"df_{short}[{term}]", df_ref, c.get("df"),
                               None if df_ref is None else tol.df_rel * abs(df_ref)))
                if method == "Kenward-Roger":
                    se_ref = r.get("se")
                    out.append(row(f"se_kr[{term}]", se_ref, c.get("se"),
                                   None if se_ref is None else tol.fixef_se_rel * abs(se_ref)))
                out.append(self._p_row(f"p_{short}[{term}]", c, fixef.get(term), tol))
        return rows_of(*out)

    @staticmethod
    def _p_row(name: str, c: Mapping[str, Any], estimate: float | None,
               tol: Tolerance) -> Row | None:
        """The candidate's p against Pr(>|t|) of its own estimate, SE and df."""
        p = c.get("p")
        if p is None or estimate is None or c.get("se") is None or c.get("df") is None:
            return None
        expected = two_sided_p(float(estimate), float(c["se"]), float(c["df"]))
        if expected is None:
            return None
        r = row(name, expected, p, tol.p_rel * abs(expected))
        if r is not None:
            r.note = "from its own estimate, SE and df"
        return r
