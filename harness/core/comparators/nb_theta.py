"""The negative binomial's dispersion θ (lme4's ``getME(m, "glmer.nb.theta")``, glmmTMB's
``sigma(m)`` for nbinom2): relative, as lme4's own optimizers spread it (harness.core.tolerance)."""

from __future__ import annotations

from harness.core.comparators.base import Record, Row, row, rows_of
from harness.core.tolerance import Tolerance


class NegativeBinomialTheta:
    name = "nb_theta"
    reason = ("glmer.nb's θ minimises a profile (-2 logLik over log θ, Brent to 5e-5) whose "
              "every point is an inner GLMM fit stopping ~1e-6 relative short: θ moves with "
              "the inner optimizer, so relative, sized from lme4's own optimizers' spread")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        ref, cand = reference.get("nb_theta"), candidate.get("nb_theta")
        if ref is None and cand is None:
            return []
        if ref is not None and cand is None and candidate.get("fixef"):
            notes.append("the candidate reports no negative binomial θ (nb_theta)")
        return rows_of(row("nb_theta", ref, cand,
                           None if ref is None else tol.nb_theta_rel * abs(ref)))
