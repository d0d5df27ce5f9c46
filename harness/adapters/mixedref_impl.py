"""mixedref's two engines as implementations: ``mixedref.lmer`` (penalized least squares) and
the dense oracle ``mixedref.literal`` (for small data; cases it cannot express are reported as
unsupported). The records are built here, from each fit's own quantities: the library knows
nothing of the harness."""

from __future__ import annotations

import math
import platform
from typing import Any

from harness.adapters.base import Adapter
from harness.record import ranef_rows, varcorr_rows


class Mixedref(Adapter):
    """mixedref.lmer with its defaults."""

    name = "mixedref"

    def unavailable(self) -> str | None:
        try:
            import mixedref
        except Exception as exc:
            return f"mixedref import failed: {type(exc).__name__}: {exc}"
        if not hasattr(mixedref, "lmer"):
            return "mixedref.lmer is not available (mixedref has no lmer yet)"
        return None

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import mixedref

        if getattr(case, "family", None) is not None:
            return glmer_record(mixedref.glmer(case.formula, data, case.family, link=case.link,
                                               nAGQ=case.nAGQ,
                                               weights=case.prior_weights(data)))
        return lmer_record(mixedref.lmer(case.formula, data, REML=bool(case.REML)))


def _common_record(fit: Any) -> dict[str, Any]:
    """The record fields an LmerFit and a GlmerFit give the same way."""
    import numpy as np

    import mixedref

    vc = [{"grp": str(r.grp), "var1": _text(r.var1), "var2": _text(r.var2),
           "vcov": float(r.vcov), "sdcor": _number(r.sdcor)}
          for r in fit.varcorr.itertuples(index=False)]
    return {
        "fixef": {k: float(v) for k, v in fit.fixef.items()},
        "fixef_se": {k: float(v) for k, v in fit.se.items()},
        "sigma": float(fit.sigma),
        "varcorr": vc,
        "ranef": ranef_rows(fit.ranef, fit.ranef_sd),
        "theta": [float(v) for v in fit.theta],
        "loglik": float(fit.loglik),
        "objective": float(fit.objective),
        "REML": bool(fit.REML),
        "nobs": int(fit.nobs),
        "ngroups": {k: int(v) for k, v in fit.ngroups.items()},
        "converged": bool(fit.converged),
        "singular": bool(fit.singular),
        "messages": [str(m) for m in fit.messages],
        "seconds": None if fit.seconds is None else float(fit.seconds),
        "nfev": int(fit.nfev),
        "versions": {"mixedref": mixedref.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    }


def lmer_record(fit: Any) -> dict[str, Any]:
    """The record fields of an LmerFit (harness/record.py), as plain JSON values."""
    log = getattr(fit, "optinfo", None)
    return {**_common_record(fit), "optinfo": None if log is None else log.to_dict()}


def glmer_record(fit: Any) -> dict[str, Any]:
    """The record fields of a GlmerFit: the LMM's, the family and link, deviance(m), and both
    SE variants (``fixef_se`` Hessian-based as lme4's vcov(m), ``fixef_se_rx`` from RX)."""
    return {**_common_record(fit), "family": fit.family.name, "link": fit.family.link,
            "nAGQ": int(fit.nAGQ), "deviance": float(fit.deviance),
            "fixef_se_rx": {k: float(v) for k, v in fit.se_rx.items()}}


def _text(x: Any) -> str | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)


def _number(x: Any) -> float | None:
    """A number, or None for lme4's NaN (the correlation of a zero standard deviation)."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


class MixedrefLiteral(Adapter):
    """mixedref.literal.fit_formula(formula, data, REML): the textbook dense equations.

    Each evaluation inverts n x n matrices (O(n^3)), so the harness runs the oracle only on
    cases of at most :attr:`max_rows` rows, where a fit takes seconds, not minutes.
    """

    name = "mixedref-literal"
    max_rows = 800

    def supports(self, case: Any) -> str | None:
        from harness.catalog import load_data

        if getattr(case, "family", None) is not None:
            return "the dense oracle implements linear mixed models only (no GLMM criterion)"
        n = len(load_data(case))
        if n > self.max_rows:
            return (f"too large for the dense oracle in the harness: {n} rows > {self.max_rows} "
                    "(O(n^3) per evaluation)")
        return None

    def unavailable(self) -> str | None:
        try:
            from mixedref.literal import fit_formula  # noqa: F401
        except Exception as exc:
            return f"mixedref.literal.fit_formula not available: {type(exc).__name__}: {exc}"
        return None

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        import numpy as np

        import mixedref
        from mixedref.literal import fit_formula
        from mixedref.optimize import is_singular

        model, fit, seconds = fit_formula(case.formula, data, bool(case.REML))
        term = model.reterms[0]
        sd_a, sd_e = math.sqrt(fit.sigma2_alpha), math.sqrt(fit.sigma2_eta)
        cov = [[fit.sigma2_alpha, fit.rho * sd_a * sd_e], [fit.rho * sd_a * sd_e, fit.sigma2_eta]]
        theta = [float(v) for v in fit.lme4_theta]
        names = list(model.fixef_names)
        return {
            "fixef": dict(zip(names, map(float, fit.beta), strict=True)),
            "fixef_se": dict(zip(names, map(float, np.sqrt(np.diag(fit.vcov_beta))),
                                 strict=True)),
            "sigma": math.sqrt(fit.sigma2),
            "varcorr": varcorr_rows([(term.group, term.columns, cov)], math.sqrt(fit.sigma2)),
            "theta": theta,
            "loglik": fit.loglik,
            "objective": fit.objective,
            "REML": bool(case.REML),
            "nobs": model.n,
            "ngroups": model.ngroups,
            "converged": fit.converged,
            "singular": is_singular(np.asarray(theta), model.theta_lower),
            "messages": [] if fit.converged else [fit.message],
            "seconds": seconds,
            "nfev": fit.nfev,
            "versions": {"mixedref": mixedref.__version__, "optimizer": "scipy L-BFGS-B"},
        }
