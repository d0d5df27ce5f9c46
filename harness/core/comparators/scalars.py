"""σ, the log-likelihood and the optimized criterion: scalars with a relative (σ) or an absolute
plus relative (criteria) allowance; GLMMs' deviance. θ has its own module (theta.py)."""

from __future__ import annotations

from harness.core.comparators.base import Record, Row, row, rows_of
from harness.core.tolerance import Tolerance


class Sigma:
    name = "sigma"
    reason = "σ̂ is profiled from θ: relative, as θ agrees to ~1e-3 between optimizers"

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        ref = reference.get("sigma")
        return rows_of(row("sigma", ref, candidate.get("sigma"),
                           None if ref is None else tol.sigma_rel * abs(ref)))


class Criteria:
    name = "criterion"
    quantities = ("loglik", "objective")
    reason = ("lme4's optimizer stops when the criterion changes by ~1e-6 relative: 2e-3 + "
              "1e-6·|value| separates two correct optima from a wrong one")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        out = []
        for key in ("loglik", "objective"):
            ref = reference.get(key)
            out.append(row(key, ref, candidate.get(key),
                           None if ref is None else tol.objective_allowed(ref)))
        return rows_of(*out)


class Deviance:
    name = "deviance"
    reason = ("GLMMs: deviance(m), the sum of squared deviance residuals at the conditional "
              "modes, compared where both report it: absolute plus relative, as the criterion")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        ref, cand = reference.get("deviance"), candidate.get("deviance")
        if ref is None or cand is None:
            return []
        return rows_of(row("deviance", ref, cand, tol.deviance_abs + tol.deviance_rel * abs(ref)))
