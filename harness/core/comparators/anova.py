"""Likelihood-ratio tests (lme4's ``anova(m0, m1)``) between a case's model and its catalog
partner: the deviances, AIC and BIC of both models (REML fits refitted with ML), their numbers
of parameters, the χ² statistic and its degrees of freedom, and the p-value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scipy import stats

from harness.core.comparators.base import Record, Row, row, rows_of
from harness.core.tolerance import Tolerance


def _by_model(rows: Any) -> dict[str, Mapping[str, Any]]:
    return {str(r["model"]): r for r in rows or ()}


def _count(name: str, ref: Any, cand: Any) -> Row | None:
    """An integer both must give exactly (npar, Df)."""
    return row(name, None if ref is None else float(ref), None if cand is None else float(cand),
               0.0)


class LikelihoodRatio:
    name = "anova"
    quantities = ("anova_deviance", "anova_aic", "anova_bic", "anova_npar", "anova_chisq",
                  "anova_df", "anova_p")
    reason = ("each model's ML deviance (and AIC, BIC: the deviance plus a penalty both count "
              "alike) as the objective, χ² = the difference of two deviances within the sum of "
              "their allowances, npar and Df exactly; a p-value is a function of χ² and Df, "
              "each compared, so it is checked against that function at the candidate's own "
              "numbers")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        ref, cand = _by_model(reference.get("anova")), _by_model(candidate.get("anova"))
        chisq_allowed = sum(tol.objective_allowed(r["deviance"]) for r in ref.values()
                            if r.get("deviance") is not None)
        out: list[Row | None] = []
        for model, r in ref.items():
            c = cand.get(model, {})
            out.append(_count(f"anova_npar[{model}]", r.get("npar"), c.get("npar")))
            for key, short in (("deviance", "deviance"), ("AIC", "aic"), ("BIC", "bic")):
                value = r.get(key)
                out.append(row(f"anova_{short}[{model}]", value, c.get(key),
                               None if value is None else tol.objective_allowed(value)))
            if r.get("Chisq") is not None:
                out.append(_count(f"anova_df[{model}]", r.get("Df"), c.get("Df")))
                out.append(row(f"anova_chisq[{model}]", r["Chisq"], c.get("Chisq"),
                               chisq_allowed))
                out.append(self._p_row(f"anova_p[{model}]", c, tol))
        return rows_of(*out)

    @staticmethod
    def _p_row(name: str, c: Mapping[str, Any], tol: Tolerance) -> Row | None:
        """The candidate's p against Pr(>Chisq) of its own χ² and Df."""
        p, chisq, df = c.get("p"), c.get("Chisq"), c.get("Df")
        if p is None or chisq is None or not df:
            return None
        expected = float(stats.chi2.sf(float(chisq), int(df)))
        r = row(name, expected, p, tol.p_rel * abs(expected))
        if r is not None:
            r.note = "from its own Chisq and Df"
        return r
