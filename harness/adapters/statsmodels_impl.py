"""statsmodels' MixedLM on the cases it can express: one grouping factor, with a correlated
term ``(1 + x | g)``, an intercept-only or slope-only term, or uncorrelated terms
``(1 + x || g)`` (a diagonal covariance, through MixedLM's ``free`` pattern).

An independent peer: the design comes from patsy, statsmodels' own formula engine, through
harness.adapters.peers (which maps patsy's column names to R's and writes the answer as lme4's
quantities: varcorr rows as R orders them, θ as the Cholesky factor of the covariance / σ²,
objective = -2 logLik). Nothing of mixedref is used.

GLMMs: statsmodels' only mixed GLMs, BinomialBayesMixedGLM and PoissonBayesMixedGLM, are fitted
by variational Bayes (fit_vb) or a Laplace posterior mode (fit_map) with priors on the
variance parameters, not by maximum likelihood: they estimate something else than glmer, so
every GLMM case is skipped with that reason (never reported as a disagreement).
"""

from __future__ import annotations

from typing import Any

from harness.adapters.base import Adapter
from harness.adapters.peers import _formula as F
from harness.adapters.peers._base import fit_mixedlm_api, single_factor_reason

GLMM_REASON = ("statsmodels cannot fit a GLMM by maximum likelihood: its "
               "BinomialBayesMixedGLM/PoissonBayesMixedGLM are variational Bayes (fit_vb; "
               "fit_map a posterior mode under priors), not maximum likelihood as lme4's glmer")


def bar_terms(formula: str) -> list[tuple[str, str, str]]:
    """The random-effects terms of a formula as (expression, bar, grouping) strings."""
    return [(b.expr, "||" if b.double else "|", b.group) for b in F.parse(formula).bars]


class Statsmodels(Adapter):
    """statsmodels.MixedLM, fitted with its defaults (REML or ML as the case says)."""

    name = "statsmodels"

    def unavailable(self) -> str | None:
        try:
            import patsy  # noqa: F401
            import statsmodels.regression.mixed_linear_model  # noqa: F401
        except Exception as exc:
            return f"statsmodels import failed: {type(exc).__name__}: {exc}"
        return None

    def supports(self, case: Any) -> str | None:
        if getattr(case, "is_glmm", False):
            return GLMM_REASON
        return single_factor_reason(case.formula, "statsmodels.MixedLM")

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import statsmodels
        from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

        why = self.supports(case)
        if why:
            raise NotImplementedError(why)
        rec = fit_mixedlm_api(MixedLM, MixedLMParams, case, data)
        rec["versions"] = {"statsmodels": statsmodels.__version__}
        return rec
