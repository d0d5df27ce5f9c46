"""lme4 as the reference: live through the embedded R (harness.rbridge), or its answers
recorded by r_scripts/record_references.R in harness/references/lme4.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import rbridge
from harness.adapters.base import Adapter
from harness.record import normalize_record

RECORDED_PATH = Path(__file__).resolve().parent.parent / "references" / "lme4.json"


class Lme4Live(Adapter):
    """lme4 fitted now, in this process's embedded R, with lmer's defaults. SIGALRM must not
    interrupt R, so the case's timeout is enforced inside R (``handles_timeout``)."""

    name = "lme4"
    interruptible = False
    handles_timeout = True

    def unavailable(self) -> str | None:
        return rbridge.unavailable()

    def fit(self, case: Any, data: Any, timeout: float | None = None) -> dict[str, Any]:
        return rbridge.lmer_record(data, case.formula, bool(case.REML), case.id, impl=self.name,
                                   timeout=timeout)


class Lme4Recorded(Adapter):
    """lme4's answers as recorded (no R needed); a case without a recording is unsupported."""

    name = "lme4-recorded"

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
            now = {"dataset": case.dataset, "formula": case.formula, "REML": bool(case.REML)}
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
