"""glmmTMB as a second engine: fitted live through the embedded R (harness.core.rbridge), or its
answers recorded by r_scripts/record_glmmtmb.R in harness/references/glmmtmb.json.

glmmTMB maximizes the (restricted) likelihood by TMB's Laplace approximation, exact for a
Gaussian model, with nlminb over log-SDs and correlation parameters: a different
parametrization and optimizer from lme4's, on the same model. Its records are stated in lme4's
terms by r_scripts/glmmtmb_record.R: varcorr rows named exactly as lme4's
``as.data.frame(VarCorr(m))`` names them, θ in lme4's parametrization (the lower Cholesky factor
of Σ/σ² per term, lme4's term order), objective = -2 logLik (on lme4's scale, REML included).
Where glmmTMB's model differs from lme4's for a formula (``(f || g)`` with a factor ``f``:
glmmTMB's ``diag()`` against lme4's correlated factor block) the record is an error saying so.

Of the GLMMs, the negative binomial is fitted (live): glmmTMB's ``nbinom2`` is lme4's glmer.nb
model (variance μ + μ²/θ), its θ (``sigma(m)``) the record's ``nb_theta``, σ 1 and Σ itself as
θ (lme4's GLMM convention). Its criterion is TMB's Laplace approximation, optimised jointly over
every parameter, θ included; at the negative binomial's log link (not canonical) TMB's Laplace
uses the observed Hessian of the conditional log-likelihood where lme4's PIRLS uses the
expected (Fisher) weights, so the two criteria, and their optima, differ a little. Other GLMM
families are declined (``supports``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from harness import HOME
from harness.adapters.lme4 import R_START_TIMEOUT, Lme4Live, Lme4Recorded
from harness.core import isolation, rbridge
from harness.core.errors import RBridgeError
from harness.core.record import normalize_record

RECORDED_PATH = HOME / "references" / "glmmtmb.json"
RECORD_SCRIPT = "r_scripts/record_glmmtmb.R"


class GlmmTMBLive(Lme4Live):
    """glmmTMB fitted now, in the embedded R of the "R" lane (the worker process lme4 live
    uses: R starts once). As for lme4, the case's timeout is enforced inside R first
    (``handles_timeout``); the runner kills the worker only when R does not stop."""

    name = "glmmTMB"
    lane = "R"
    handles_timeout = True

    def unavailable(self) -> str | None:
        """None when R, lme4 and glmmTMB load in the R lane, else the reason (asked once per
        process and lane)."""
        why = super().unavailable()
        if why:
            return why
        key = (os.getpid(), self.lane)
        if key not in _why_not:
            out = isolation.call(self.lane, "harness.adapters.glmmtmb:unavailable_here",
                                 timeout=R_START_TIMEOUT)
            _why_not[key] = out.value if out.kind == "ok" else (
                f"glmmTMB could not be checked in a worker process: {out.error}")
        return _why_not[key]

    def supports(self, case: Any) -> str | None:
        """None for a linear mixed model or a negative binomial GLMM (glmmTMB's nbinom2, the
        model of lme4's glmer.nb), else why not: the record is not wired for glmmTMB's other
        families (their dispersion and σ are not yet stated in lme4's terms)."""
        family = getattr(case, "family", None)
        if family is None or family == "negative.binomial":
            return None
        return (f"glmmTMB's record (r_scripts/glmmtmb_record.R) is wired for Gaussian models "
                f"and the negative binomial (nbinom2), not a {family} GLMM")

    def fit(self, case: Any, data: Any, timeout: float | None = None) -> dict[str, Any]:
        import rpy2.robjects as ro

        rdata = rbridge.to_r_frame(data, case.formula) if isinstance(data, pd.DataFrame) else data
        limit = ro.NULL if timeout is None or not timeout > 0 else float(timeout)
        family = getattr(case, "family", None)
        why = self.supports(case)
        if why:
            raise NotImplementedError(why)
        glmm = () if family is None else (family, case.link or ro.NULL)
        try:
            text = rbridge.call("glmmtmb_record_json", rdata, case.formula, bool(case.REML),
                                case.id, self.name, limit, *glmm)[0]
        except Exception as exc:  # an R error outside glmmTMB's own handling
            msg = " ".join(str(exc).split()) or type(exc).__name__
            raise RBridgeError(f"R failed in glmmtmb_record_json: {msg}") from None
        return normalize_record(json.loads(str(text)), self.name, case.id)


_why_not: dict[tuple[int, str], str | None] = {}  # (pid, lane) -> unavailable()'s answer


def unavailable_here() -> str | None:
    """None when glmmTMB can be used by this process's embedded R, else the reason (what the R
    lane answers for :meth:`GlmmTMBLive.unavailable`; starts R here if needed)."""
    why = rbridge.unavailable()
    if why:
        return why
    try:
        import rpy2.robjects as ro

        reason = str(rbridge.call("glmmtmb_unavailable", ro.NULL)[0])
    except Exception as exc:  # the R scripts without glmmtmb_record.R, or R failing
        reason = f"glmmTMB check failed in R: {' '.join(str(exc).split())}"
    return reason or None


class GlmmTMBRecorded(Lme4Recorded):
    """glmmTMB's answers as recorded (no R needed); the recording logic is lme4-recorded's, with
    glmmTMB's file and re-recording script."""

    name = "glmmTMB-recorded"
    extras = False  # glmmTMB's record is the fit alone: no anova partner, no prediction grid

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__(path or RECORDED_PATH)

    def _load(self) -> dict[str, Any] | None:
        if self._doc is None and self._reason is None:
            super()._load()
            self._reason = _ours(self._reason)
        return self._doc

    def describe(self) -> str:
        """Where the recording comes from: file, glmmTMB, TMB and R versions, date."""
        doc = self._load() or {}
        v = doc.get("versions", {})
        return (f"{self.path.name} (glmmTMB {v.get('glmmTMB', '?')}, TMB {v.get('TMB', '?')}, "
                f"{v.get('R', 'R ?')}, recorded {doc.get('date', '?')})")

    def supports(self, case: Any) -> str | None:
        if getattr(case, "family", None) is not None:
            return (f"glmmTMB's recording ({RECORD_SCRIPT}) holds the linear mixed models "
                    "only; GLMM cases are not recorded")
        return _ours(super().supports(case))


def _ours(reason: str | None) -> str | None:
    """lme4-recorded's wording of a reason, about glmmTMB's recording instead."""
    if reason is None:
        return None
    return (reason.replace("r_scripts/record_references.R", RECORD_SCRIPT)
            .replace("recorded lme4 answer", "recorded glmmTMB answer")
            .replace("lme4 answer", "glmmTMB answer"))
