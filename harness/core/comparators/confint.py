"""Confidence intervals (lme4's ``confint(m, method, oldNames = FALSE)``): the Wald intervals of
the fixed effects for every LMM case, the profile-likelihood intervals of every parameter for
the cases tagged ``intervals`` (profiling refits the model dozens of times on each side)."""

from __future__ import annotations

from typing import Any

from harness.core.comparators.base import Record, Row, nested, row, rows_of
from harness.core.tolerance import Tolerance

#: the catalog tag that asks for profile intervals (r_scripts/lmer_record.R's `intervals`)
INTERVALS_TAG = "intervals"

#: lme4's method names and the short ones in the row names
METHODS = {"Wald": "ci_wald", "profile": "ci_profile"}


def wants_intervals(case: Any) -> bool:
    """Whether a case's records carry profile intervals (its catalog tags name them)."""
    return INTERVALS_TAG in tuple(getattr(case, "tags", None) or ())


def glmm_wald_allowed(lower: float, upper: float, se_rx: float, tol: Tolerance) -> float:
    """Allowed move of a GLMM's Wald limit β ± z·SE, from its parts' allowances: β within
    fixef_se_units of its RX-based SE (as the fixed effects), z·SE within fixef_se_rel of itself
    (half the width; as the Hessian-based SEs). No size of its own: where lme4's Hessian SE
    collapses (sim_glmm_olre, z = 1180) the width is no measure of β's uncertainty."""
    return tol.fixef_se_units * abs(se_rx) + tol.fixef_se_rel * abs(upper - lower) / 2.0


class Intervals:
    name = "confint"
    quantities = tuple(METHODS.values())
    reason = ("each limit within a fraction of the reference interval's width: a Wald limit "
              "moves with β (0.01 SE) and its SE (0.2 %), 0.5 % of the width (3.92 SE) covers "
              "both; lme4's profile limits come from a spline over a coarse grid and move by "
              "up to 2.6e-4 of the width when the grid is refined (Dyestuff's sd lower limit, "
              "0.023 of 72), well inside the same 0.5 %. A GLMM's Wald limit: β's allowance "
              "(0.01 RX SE) plus the Hessian SE's (2 %) times z (glmm_wald_allowed)")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        ref = nested(reference.get("confint"), "method", "parm")
        se_rx = dict(reference.get("fixef_se_rx") or {})  # GLMMs
        cand = nested(candidate.get("confint"), "method", "parm")
        out: list[Row | None] = []
        for method, parms in ref.items():
            prefix = METHODS.get(method, f"ci_{method}")
            theirs = cand.get(method, {})
            for parm, r in parms.items():
                lo, hi = r.get("lower"), r.get("upper")
                if lo is None or hi is None:
                    continue
                allowed = tol.ci_width_rel * abs(hi - lo)
                if method == "Wald" and parm in se_rx:
                    allowed = glmm_wald_allowed(lo, hi, se_rx[parm], tol)
                c = theirs.get(parm, {})
                out.append(row(f"{prefix}[{parm},lower]", lo, c.get("lower"), allowed))
                out.append(row(f"{prefix}[{parm},upper]", hi, c.get("upper"), allowed))
        return rows_of(*out)
