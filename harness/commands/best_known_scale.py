"""The best known optimum of a GLMM with a scale parameter (Gamma, inverse Gaussian).

For these families lme4's own criterion cannot be the judge: lme4 1.1-31's Laplace criterion
plugs in the dispersion and does not scale the random effects' penalty by it, and its VarCorr
multiplies θ by σ (lme4 issues #557, #643, #852). So the case's best known optimum is the lowest
value, under one independent criterion (harness.core.judge.marginal: the marginal -2 log-likelihood
at each estimate as its record reports it), among the estimates of

- ``lme4``: glmer with its defaults (r_scripts/glmer_record.R);
- ``glmmTMB``: glmmTMB with its defaults (r_scripts/glmmtmb_glmm.R; its error, e.g. "Family not
  implemented!" for the inverse Gaussian, is kept as the candidate's error);
- ``mixedref``: ``mixedref.glmer``, through the harness's adapter.

``python -m harness best-known -k gamma --write`` computes the entries (harness.commands.best_known
dispatches the cases of these families here) into harness/references/best_known.json, in the
shape of the LMM entries (criterion, candidates, best, lme4_default_gap, lme4_default_misses);
the judge (harness.core.judge.scale_family) reads them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from harness.core.judge import marginal

FAMILIES = marginal.FAMILIES
SOURCES = ("lme4", "glmmTMB", "mixedref")


def applies(case: Any) -> bool:
    """True for a case this module (and the judge's best-known rule) handles."""
    return getattr(case, "family", None) in FAMILIES


def estimate_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """What the criterion reads from a record: fixed effects, the random-intercept SD, σ."""
    sd = [r.get("sdcor") for r in record.get("varcorr") or [] if r.get("grp") != "Residual"]
    return {"fixef": dict(record.get("fixef") or {}), "sd": sd[0] if len(sd) == 1 else None,
            "sigma": record.get("sigma")}


def candidate(case: Any, data: Any, record: Mapping[str, Any]) -> dict[str, Any]:
    """One candidate's entry: its estimate, its value under the criterion (or why none), what
    it reported about itself (``reported_loglik``) and its fit's seconds."""
    out: dict[str, Any] = {"objective": None, "error": record.get("error"),
                           "estimate": None, "reported_loglik": record.get("loglik"),
                           "seconds": record.get("seconds")}
    if out["error"]:
        return out
    out["estimate"] = estimate_of(record)
    try:
        value = marginal.evaluate_record(case, data, record)
    except marginal.NotEvaluable as exc:
        out["error"] = f"not evaluable: {exc}"
        return out
    if math.isfinite(value):
        out["objective"] = value
    else:
        out["error"] = "its estimate gives the data zero likelihood"
    return out


def evaluate_case(case: Any, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit ``case`` with lme4, glmmTMB and mixedref and judge each estimate by the marginal
    criterion (needs R with lme4; glmmTMB's absence is its candidate's error). The entry's
    candidates; harness.commands.best_known.compute adds the best and lme4's gap (its summarize)."""
    from harness.adapters import get_adapter
    from harness.core import rbridge
    from harness.core.runner import case_data, fit_case

    say = progress or (lambda s: None)
    data = case_data(case)
    rdata = rbridge.to_r_frame(data, case.formula)
    records: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    records["lme4"] = rbridge.glmer_record(rdata, case, timeout=case.timeout)
    say(f"lme4 {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    records["glmmTMB"] = json.loads(str(rbridge.call("glmmtmb_glmm_json", rdata,
                                                     *rbridge.glmm_args(case))[0]))
    say(f"glmmTMB {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    records["mixedref"] = fit_case(get_adapter("mixedref"), case, data, timeout=case.timeout,
                                   use_cache=False)
    say(f"mixedref {time.perf_counter() - t0:.1f} s")
    candidates = {name: candidate(case, data, records[name]) for name in SOURCES}
    entry = {"dataset": case.dataset, "formula": case.formula, "REML": False,
             "family": case.family, "link": case.link_name, "criterion": marginal.CRITERION,
             "allFit": "skipped: judged by the marginal likelihood, not lme4's criterion"}
    entry["candidates"] = candidates  # harness.commands.best_known adds best and lme4's gap
    return entry
