"""mixedlm-rs (PyPI ``mixedlm-rs``, a Rust core behind statsmodels' MixedLM interface):
``MixedLM(endog, exog, groups, exog_re).fit(reml=)`` on the design patsy builds, as for
statsmodels. One grouping factor; its ``fit`` refuses ``free=`` in this release, so ``||``
(a diagonal covariance) cannot be expressed. Linear mixed models only: no GLMM fitter."""

from __future__ import annotations

from typing import Any

from harness.adapters.peers._base import Peer, fit_mixedlm_api, single_factor_reason


class MixedlmRsPeer(Peer):
    name = "mixedlm-rs"
    module = "mixedlm_rs"
    dist = "mixedlm-rs"

    def supports(self, case: Any) -> str | None:
        try:
            self.check_glmm(case)
        except NotImplementedError as exc:
            return str(exc)
        return single_factor_reason(case.formula, "mixedlm-rs", double_bar=False)

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        from mixedlm_rs import MixedLM, MixedLMParams

        why = self.supports(case)
        if why:
            raise NotImplementedError(why)
        from harness.adapters.statsmodels_impl import capturing, mixedlm_api_ranef

        results: list[Any] = []
        rec = fit_mixedlm_api(capturing(MixedLM, results), MixedLMParams, case, data)
        rec["versions"] = self.versions()
        # its random_effects and random_effects_cov (Var(b_i | y_i), mixed_linear_model.py)
        rec["ranef"] = mixedlm_api_ranef(results[-1], case, data)
        return rec
