"""glmm (PyPI ``glmm``, a Rust kernel): ``glmm.fit(data, formula, reml=)`` takes an R-style
formula; its coefficient names are R's. What its engine refuses, by its own error messages:
``||`` ("the glmm kernel always fits the full RE correlation structure"), a random slope
without a random intercept, ``I(...)`` terms; it codes every factor with treatment contrasts
(no contr.poly for ordered factors). Its ``varcorr`` is one vech-packed covariance per grouping,
in ``re_groups`` order, and ``dispersion`` is σ²."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from harness.adapters.peers import _formula as F
from harness.adapters.peers._base import Peer, complex_predictors, ordered_in_fixed


class GlmmPeer(Peer):
    name = "glmm"
    module = "glmm"
    dist = "glmm"

    def check(self, parsed: F.Parsed, case: Any, data: Any = None) -> None:
        if any(b.double for b in parsed.bars):
            raise F.cannot("glmm", "'||' (uncorrelated terms)", "its kernel always fits the "
                           "full random-effects correlation structure (its own error message)")
        if any(not b.intercept for b in parsed.bars):
            raise F.cannot("glmm", "a random slope without a random intercept", "'0 +' in a "
                           "random-effects term is not supported by its engine")
        if "I(" in case.formula or complex_predictors(parsed):
            raise F.cannot("glmm", "I(...) terms", "its formula parser takes identifiers only")
        if data is not None and ordered_in_fixed(parsed, data):
            raise F.cannot("glmm", f"contr.poly for the ordered factor(s) "
                           f"{', '.join(ordered_in_fixed(parsed, data))}", "it codes every "
                           "factor with treatment contrasts and has no contrasts option")

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import glmm

        parsed, terms = self.prepare(case, data)
        REML = bool(case.REML)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = glmm.fit(data, case.formula, reml=REML)
        if not m.varcorr or not np.all(np.isfinite(m.beta)):
            raise RuntimeError("glmm returned no estimates: " + " | ".join(
                F.caught_messages(caught) or [str(w) for w in m.warnings or []]))
        sigma2 = float(m.dispersion)
        blocks = {grp: (list(cols), F.unpack_vech(packed, len(cols)))
                  for (grp, cols), packed in zip(m.re_groups, m.varcorr, strict=True)}
        covs = [F.pick_block(blocks, t, "glmm") for t in terms]
        theta = F.theta_of(terms, covs, sigma2)
        names = list(m.names)
        messages = F.caught_messages(caught) + [str(w.get("message", w)) if isinstance(w, dict)
                                                else str(w) for w in (m.warnings or [])]
        return {
            "fixef": dict(zip(names, map(float, m.beta), strict=True)),
            "fixef_se": dict(zip(names, map(float, m.se), strict=True)),
            "sigma": float(np.sqrt(sigma2)),
            "varcorr": F.varcorr_rows(terms, covs, sigma2),
            "theta": theta,
            "loglik": float(m.loglik),
            "objective": -2.0 * float(m.loglik),
            "REML": REML,
            "nobs": int(m.nobs),
            "ngroups": {t.group: t.nlevels for t in terms},
            "converged": bool(m.converged),
            "singular": bool(m.singular),
            "messages": messages,
            "nfev": int(m.n_eval),
            "versions": self.versions(),
        }

