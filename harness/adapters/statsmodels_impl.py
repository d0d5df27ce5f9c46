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
        results: list[Any] = []
        rec = fit_mixedlm_api(capturing(MixedLM, results), MixedLMParams, case, data)
        rec["versions"] = {"statsmodels": statsmodels.__version__}
        rec["ranef"] = mixedlm_api_ranef(results[-1], case, data)
        rec["predictions"] = mixedlm_api_predictions(results[-1], data)
        return rec


def capturing(MixedLM: Any, results: list[Any]) -> Any:
    """``MixedLM`` whose ``fit`` also appends its result to ``results`` (the record builder,
    harness.adapters.peers._base.fit_mixedlm_api, keeps only the record)."""

    class Capturing(MixedLM):  # type: ignore[misc, valid-type]
        def fit(self, *args: Any, **kwargs: Any) -> Any:
            res = super().fit(*args, **kwargs)
            results.append(res)
            return res

    return Capturing


def mixedlm_api_predictions(res: Any, data: Any) -> list[dict[str, Any]] | None:
    """Its predictions on the data's first rows, the rows lme4's record predicts at
    (harness.adapters.mixedref_impl.PREDICTION_ROWS): ``predict()`` (X β, lme4's re.form = NA)
    and ``fittedvalues`` (X β + Z b, re.form = NULL); none when it dropped rows (then its rows
    are not the data's)."""
    import numpy as np

    from harness.adapters.mixedref_impl import PREDICTION_ROWS

    population = np.asarray(res.predict(), dtype=float)
    conditional = np.asarray(res.fittedvalues, dtype=float)
    if len(population) != len(data) or len(conditional) != len(data):
        return None
    rows = []
    for label, values in (("NA", population), ("NULL", conditional)):
        rows += [{"re_form": label, "row": i, "new_levels": False,
                  "value": float(v) if np.isfinite(v) else None}
                 for i, v in enumerate(values[:PREDICTION_ROWS])]
    return rows


def mixedlm_api_ranef(res: Any, case: Any, data: Any) -> list[dict[str, Any]] | None:
    """The conditional modes of a statsmodels-style MixedLM result (``random_effects``: one
    Series per group over the exog_re columns) and their conditional SDs (sqrt of the diagonal
    of ``random_effects_cov``, Var(b_i | y), statsmodels' mixed_linear_model.py
    random_effects_cov), as ranef rows in lme4's names: the columns are the lme4 terms'
    columns in the order the adapter built exog_re (its one grouping factor)."""
    import numpy as np

    from harness.adapters.peers import _reported as R

    terms = F.lme4_terms(F.parse(case.formula), data)
    cols = [c for t in terms for c in t.columns]
    modes = res.random_effects
    try:
        covs = res.random_effects_cov
    except (np.linalg.LinAlgError, ValueError):
        covs = None
    levels = list(modes)
    values = np.array([np.asarray(modes[g], dtype=float) for g in levels])
    sd = None
    if covs is not None:
        sd = np.sqrt(np.clip(np.array([np.diag(np.asarray(covs[g], dtype=float))
                                       for g in levels]), 0.0, None))
    return R.ranef_of([(terms[0].group, levels, cols, values, sd)], terms)
