"""Coefficient tests: lmerTest's denominator degrees of freedom (Satterthwaite, Kenward-Roger),
Kenward-Roger's adjusted SEs, and the p-values, as ``summary(m, ddf = ...)$coefficients``; for a
GLMM lme4's Wald z tests (``summary(m)$coefficients``: z value, Pr(>|z|))."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scipy import stats

from harness.core.comparators.base import Record, Row, nested, row, rows_of
from harness.core.comparators.theta import singular_in_vector_term
from harness.core.tolerance import Tolerance

#: the largest fits whose coefficient tests lme4's records carry (r_scripts/lmer_record.R):
#: Satterthwaite up to 100,000 rows, InstEval's 73,421 included (lmerTest's numDeriv Hessian
#: is of (θ, σ), a few dozen evaluations of the sparse deviance: tests/test_ddf_large.py's
#: references took it 1-2 minutes there); Kenward-Roger for REML fits up to 2,000 rows
#: (pbkrtest holds dense n x n matrices: several minutes and GBs at 6,500). The adapters
#: compute or report theirs within the same limits.
SATTERTHWAITE_MAX_NOBS = 100_000
KENWARD_ROGER_MAX_NOBS = 2000


def wanted_ddf(nobs: int, REML: bool) -> list[str]:
    """The ddf methods lme4's record has for a fit of ``nobs`` rows (Kenward-Roger: REML)."""
    out = ["Satterthwaite"] if nobs <= SATTERTHWAITE_MAX_NOBS else []
    if REML and nobs <= KENWARD_ROGER_MAX_NOBS:
        out.append("Kenward-Roger")
    return out


#: the note of a Satterthwaite df left out at a fit singular in a vector-valued term
#: (harness/core/tolerance.py says why)
SINGULAR_SATTERTHWAITE = ("not compared at a fit singular in a vector-valued term: lmerTest's "
                          "numerical Hessian there moves with the BLAS kernel")

#: lmerTest's method names and the short ones in the row names; "Wald": a GLMM's z tests
METHODS = {"Satterthwaite": "satterthwaite", "Kenward-Roger": "kr", "Wald": "wald"}


def two_sided_p(estimate: float, se: float, df: float) -> float | None:
    """Pr(>|t|) of estimate / se on df degrees of freedom (None where undefined)."""
    if not se or se <= 0 or not df or df <= 0:
        return None
    return float(2.0 * stats.t.sf(abs(estimate / se), df))


def two_sided_p_normal(estimate: float, se: float) -> float | None:
    """Pr(>|z|) of z = estimate / se under the normal distribution (None where undefined)."""
    if not se or se <= 0:
        return None
    return float(2.0 * stats.norm.sf(abs(estimate / se)))


def z_allowed(z: float, se: float | None, se_rx: float | None, tol: Tolerance) -> float:
    """Allowed |Δz| of a Wald statistic z = β/SE, from the allowances of its parts: β within
    fixef_se_units of its RX-based SE (GLMMs; the SE where there is none), the SE within
    fixef_se_rel relative, so Δz = Δβ/SE - z ΔSE/SE to first order."""
    ratio = se_rx / se if se and se_rx else 1.0
    return tol.fixef_se_units * ratio + tol.fixef_se_rel * abs(z)


class CoefficientTests:
    name = "coef_tests"
    quantities = ("df_satterthwaite", "df_kr", "se_kr", "p_satterthwaite", "p_kr", "z_wald",
                  "p_wald")
    reason = ("the df are smooth functions of θ (and σ), which two correct optimizers agree on "
              "to ~1e-3 relative: relative, as the SEs; Kenward-Roger's adjusted SE as the SEs; "
              "a p-value is a function of β, its SE and df, each compared above, so it is "
              "checked against that function at the candidate's own numbers. At a fit singular in "
              "a vector-valued term lmerTest's Satterthwaite df (a numerical Hessian at the "
              "boundary) move with the BLAS kernel, by up to a factor of three with θ "
              "unchanged: not compared there (harness/core/tolerance.py, BLAS_SPREAD_AT_SINGULAR). "
              "A GLMM's Wald z = β/SE within the allowance its parts give it (β in units of the "
              "RX SE, the SE relative: z_allowed), its p against Pr(>|z|) of its own β and SE")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        ref = nested(reference.get("coef_tests"), "ddf", "term")
        cand = nested(candidate.get("coef_tests"), "ddf", "term")
        if not ref:
            return []
        fixef = dict(candidate.get("fixef") or {})
        singular = singular_in_vector_term(reference)
        out: list[Row | None] = []
        for method, terms in ref.items():
            short = METHODS.get(method, method)
            theirs = cand.get(method, {})
            if method == "Wald":
                out += self._wald_rows(reference, terms, theirs, fixef, tol)
                continue
            for term, r in terms.items():
                c = theirs.get(term, {})
                out.append(self._df_row(f"df_{short}[{term}]", method, r.get("df"),
                                        c.get("df"), singular, tol))
                if method == "Kenward-Roger":
                    se_ref = r.get("se")
                    out.append(row(f"se_kr[{term}]", se_ref, c.get("se"),
                                   None if se_ref is None else tol.fixef_se_rel * abs(se_ref)))
                out.append(self._p_row(f"p_{short}[{term}]", c, fixef.get(term), tol))
        return rows_of(*out)

    @staticmethod
    def _wald_rows(reference: Record, terms: Mapping[str, Mapping[str, Any]],
                   theirs: Mapping[str, Mapping[str, Any]], fixef: Mapping[str, float],
                   tol: Tolerance) -> list[Row | None]:
        """A GLMM's Wald tests: z against the reference's (z_allowed), p against Pr(>|z|) of
        the candidate's own estimate and SE."""
        se_rx = dict(reference.get("fixef_se_rx") or {})
        out: list[Row | None] = []
        for term, r in terms.items():
            c = theirs.get(term, {})
            z = r.get("statistic")
            out.append(row(f"z_wald[{term}]", z, c.get("statistic"),
                           None if z is None else z_allowed(z, r.get("se"), se_rx.get(term),
                                                            tol)))
            p, est, se = c.get("p"), fixef.get(term), c.get("se")
            expected = (None if p is None or est is None or se is None
                        else two_sided_p_normal(float(est), float(se)))
            if expected is not None:
                pr = row(f"p_wald[{term}]", expected, p, tol.p_rel * abs(expected))
                if pr is not None:
                    pr.note = "from its own estimate and SE"
                out.append(pr)
        return out

    @staticmethod
    def _df_row(name: str, method: str, df_ref: float | None, df: float | None,
                singular: bool, tol: Tolerance) -> Row | None:
        """A denominator df against the reference's: relative; Satterthwaite's where the
        reference fit is singular in a vector-valued term as the policy says
        (Tolerance.satterthwaite_allowed): a row with the reason and no verdict when it is not
        compared there."""
        if method != "Satterthwaite" or df_ref is None:
            return row(name, df_ref, df, None if df_ref is None else tol.df_rel * abs(df_ref))
        allowed = tol.satterthwaite_allowed(df_ref, singular)
        if allowed is not None or df is None:
            return row(name, df_ref, df, allowed)
        return Row(name, df_ref, df, df - df_ref, None, None, SINGULAR_SATTERTHWAITE)

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
