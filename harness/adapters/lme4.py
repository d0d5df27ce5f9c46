"""lme4 as the reference: live through the embedded R (harness.core.rbridge) in the "R" worker
process (harness.core.isolation), or its answers recorded by r_scripts/record_references.R in
harness/references/lme4.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from harness import HOME
from harness.adapters.base import Adapter
from harness.core import isolation, rbridge
from harness.core.catalog import grid_label
from harness.core.comparators.confint import wants_intervals
from harness.core.record import normalize_record

RECORDED_PATH = HOME / "references" / "lme4.json"


class Lme4Live(Adapter):
    """lme4 fitted now, with lmer's defaults, in the embedded R of the "R" lane: one worker
    process per pytest(-xdist) worker that everything needing R shares, so R starts once and
    the harness process never loads it. The case's timeout is enforced inside R first
    (``handles_timeout``: R stops the fit and stays usable); the runner kills the worker only
    when R does not stop."""

    name = "lme4"
    lane = "R"
    handles_timeout = True

    def unavailable(self) -> str | None:
        """None when R and lme4 load in the R lane, else the reason (asked once per process;
        a lane that crashes or hangs starting R is the reason then)."""
        key = (os.getpid(), self.lane)
        if key not in _why_not_r:
            out = isolation.call(self.lane, "harness.core.rbridge:unavailable",
                                 timeout=R_START_TIMEOUT)
            _why_not_r[key] = out.value if out.kind == "ok" else (
                f"R could not be started in a worker process: {out.error}")
        return _why_not_r[key]

    def versions(self) -> dict[str, str]:
        """R, lme4, Matrix and BLAS versions of the R lane's R (empty when unavailable), with
        its OpenBLAS kernel and thread count (BLAS_core, BLAS_threads: harness.core.rbridge),
        which
        at singular fits decide lmerTest's last digits; informative, never compared."""
        out = isolation.call(self.lane, "harness.core.rbridge:versions",
                             timeout=R_START_TIMEOUT)
        return dict(out.value or {}) if out.kind == "ok" else {}

    def fit(self, case: Any, data: Any, timeout: float | None = None) -> dict[str, Any]:
        if getattr(case, "family", None) is not None:
            return rbridge.glmer_record(data, case, impl=self.name, timeout=timeout,
                                        intervals=wants_intervals(case))
        return rbridge.lmer_record(data, case.formula, bool(case.REML), case.id, impl=self.name,
                                   timeout=timeout, intervals=wants_intervals(case),
                                   anova=getattr(case, "anova_formula", None),
                                   grid=getattr(case, "predict_grid", None))


R_START_TIMEOUT = 60.0  # seconds for R to start with lme4 in the R lane (about 2 s here)
_why_not_r: dict[tuple[int, str], str | None] = {}  # (pid, lane) -> unavailable()'s answer


class Lme4Recorded(Adapter):
    """lme4's answers as recorded (no R needed); a case without a recording is unsupported."""

    name = "lme4-recorded"
    runs_code = False  # reads a JSON file: nothing to isolate
    extras = True  # the recording holds anova rows and grid predictions (fitted_as)

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else RECORDED_PATH
        self._doc: dict[str, Any] | None = None
        self._reason: str | None = None

    def _load(self) -> dict[str, Any] | None:
        if self._doc is None and self._reason is None:
            try:
                self._doc = json.loads(self.path.read_text())
            except FileNotFoundError:
                self._reason = (f"no recorded lme4 answers at {self.path} "
                                "(run: Rscript r_scripts/record_references.R)")
            except (OSError, ValueError) as exc:
                self._reason = f"recorded lme4 answers at {self.path} unreadable: {exc}"
        return self._doc

    def unavailable(self) -> str | None:
        self._load()
        return self._reason

    def describe(self) -> str:
        """Where the recording comes from: file, lme4 and R versions, date."""
        doc = self._load() or {}
        v = doc.get("versions", {})
        return (f"{self.path.name} (lme4 {v.get('lme4', '?')}, {v.get('R', 'R ?')}, "
                f"recorded {doc.get('date', '?')})")

    def supports(self, case: Any) -> str | None:
        doc = self._load()
        if doc is None:
            return self._reason
        if case.id not in doc.get("records", {}):
            return (f"no recorded lme4 answer for case {case.id!r} in {self.path.name} "
                    "(re-run r_scripts/record_references.R)")
        fitted = doc.get("cases", {}).get(case.id)
        if fitted is not None:
            now = fitted_as(case, self.extras)
            stale = {k: (fitted.get(k), v) for k, v in now.items() if fitted.get(k) != v}
            if stale:
                diff = "; ".join(f"{k} recorded {a!r}, catalog {b!r}"
                                 for k, (a, b) in stale.items())
                return (f"recorded lme4 answer for {case.id!r} is stale ({diff}); "
                        "re-run r_scripts/record_references.R")
        return None

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        reason = self.supports(case)
        if reason:
            raise NotImplementedError(reason)
        raw = dict(self._doc["records"][case.id])  # type: ignore[index]
        return normalize_record(raw, self.name, case.id)


def fitted_as(case: Any, extras: bool = True) -> dict[str, Any]:
    """What a recording says was fitted for a case (r_scripts/record_references.R writes the
    same): a recording made for another model is stale. GLMM fields only for GLMMs, the anova
    partner's formula and the prediction grid only for cases with them, and only for a
    recording that computes them (``extras``: lme4's does, glmmTMB's fits the model alone)."""
    now: dict[str, Any] = {"dataset": case.dataset, "formula": case.formula,
                           "REML": bool(case.REML)}
    if getattr(case, "family", None) is not None:
        now.update(family=case.family, link=case.link_name, nAGQ=int(case.nAGQ),
                   weights=case.weights)
    if extras and getattr(case, "anova_formula", None) is not None:
        now["anova"] = case.anova_formula
    if extras and getattr(case, "predict_grid", None):
        now["predict_grid"] = grid_label(case.predict_grid)
    return now
