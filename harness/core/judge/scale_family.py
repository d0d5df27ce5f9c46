"""The best-known rule for GLMMs with a scale parameter (Gamma, inverse Gaussian).

For these families lme4 is not the truth (harness.commands.best_known_scale says why), so an item's
verdict is judged against the case's best known optimum over lme4, glmmTMB and mixedref under
one independent criterion (harness.core.judge.marginal), not against lme4 alone:

- :func:`judgement` evaluates the reference's and the candidate's estimates now under that
  criterion and takes the recorded candidates (harness/references/best_known.json); the best
  known is the lowest of all of them;
- :func:`assess` says what it means for the verdict (harness.core.compare applies it): a candidate
  more than the objective tolerance above the best known *disagrees* (whatever its agreement
  with lme4), one that reaches it while lme4 does not is *candidate-better* (its differences
  from lme4 are lme4's), otherwise the verdict against lme4 stands. Either way the comparison
  says "judged by best known over lme4, glmmTMB, mixedref" and which one is best.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import HOME
from harness.core.comparators.base import Row
from harness.core.judge import marginal

FAMILIES = marginal.FAMILIES
SOURCES = ("lme4", "glmmTMB", "mixedref")
ROW = "best_known.criterion"
BEST_KNOWN_PATH = HOME / "references" / "best_known.json"


def recorded(case_id: str, path: str | Path | None = None) -> dict[str, Any] | None:
    """The case's recorded entry in best_known.json (written by harness.commands.best_known_scale),
    or
    None."""
    try:
        doc = json.loads(Path(path or BEST_KNOWN_PATH).read_text())
    except FileNotFoundError:
        return None
    entry = (doc.get("cases") or {}).get(case_id)
    return entry if entry and entry.get("criterion") == marginal.CRITERION else None


def summary_line(entry: Mapping[str, Any]) -> str:
    """A recorded entry in one line: "judged by best known over lme4, glmmTMB, mixedref
    (criterion): best is glmmTMB (1344.618021); lme4 +10.94, mixedref +10.95; glmmTMB: why"."""
    cands = entry.get("candidates") or {}
    best = entry.get("best") or {}
    head = (f"judged by best known over {', '.join(SOURCES)} ({entry.get('criterion')}): "
            f"best is {best.get('source')} ({float(best.get('objective', math.nan)):.10g})")
    parts = []
    for name in SOURCES:
        c = cands.get(name) or {}
        if name == best.get("source"):
            continue
        if c.get("objective") is None:
            parts.append(f"{name}: no value ({c.get('error') or 'not recorded'})")
        else:
            parts.append(f"{name} {c['objective'] - best['objective']:+.4g}")
    return head + ("; " + ", ".join(parts) if parts else "")


def estimate_record(estimate: Mapping[str, Any], like: Mapping[str, Any]) -> dict[str, Any]:
    """A record of a recorded estimate (fixed effects, random-intercept SD, σ), its VarCorr
    rows named as in ``like`` (lme4's record of the case)."""
    rows = []
    for r in like.get("varcorr") or []:
        sd = estimate["sigma"] if r.get("grp") == "Residual" else estimate["sd"]
        rows.append({**r, "vcov": None if sd is None else sd * sd, "sdcor": sd})
    return {"fixef": dict(estimate["fixef"]), "sigma": estimate["sigma"], "varcorr": rows}


def _value(case: Any, data: Any, record: Mapping[str, Any]) -> tuple[float | None, str | None]:
    try:
        v = marginal.evaluate_record(case, data, record)
    except marginal.NotEvaluable as exc:
        return None, str(exc)
    return (v, None) if math.isfinite(v) else (None, "zero likelihood at its estimate")


def judgement(case: Any, data: Any, reference: Mapping[str, Any],
              candidate: Mapping[str, Any], entry: Mapping[str, Any] | None = None
              ) -> dict[str, Any] | None:
    """The best-known part of a judgement: the criterion, every source's value (the recorded
    ones and the two records judged now), the best and the reference's and candidate's values.
    ``entry`` defaults to the recorded one; None when the case is not of these families."""
    if getattr(case, "family", None) not in FAMILIES:
        return None
    if entry is None:
        entry = recorded(case.id)
    values: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    for name, c in ((entry or {}).get("candidates") or {}).items():
        if c.get("objective") is not None:
            values[name] = float(c["objective"])
        else:
            unavailable[name] = str(c.get("error") or "no value")
    if entry is None:
        unavailable["recorded"] = "no best-known entry for this case (python -m harness " \
                                  "best-known -k <case> --write)"
    ref, ref_err = _value(case, data, reference)
    cand, cand_err = _value(case, data, candidate)
    now = {f"{reference.get('impl')} (this run)": ref, f"{candidate.get('impl')} (this run)": cand}
    pool = {**values, **{k: v for k, v in now.items() if v is not None}}
    best = min(pool.items(), key=lambda kv: kv[1]) if pool else None
    return {"criterion": marginal.CRITERION, "sources": list(SOURCES), "values": values,
            "unavailable": unavailable, "reference": ref, "reference_error": ref_err,
            "candidate": cand, "candidate_error": cand_err,
            "best": None if best is None else {"source": best[0], "objective": best[1]}}


def headline(bk: Mapping[str, Any]) -> str:
    """"judged by best known over lme4, glmmTMB, mixedref (criterion): best is X (value)"."""
    best = bk.get("best") or {}
    missing = [s for s in bk.get("sources", SOURCES) if s in (bk.get("unavailable") or {})]
    text = (f"judged by best known over {', '.join(bk.get('sources', SOURCES))} "
            f"({bk.get('criterion')}): best is {best.get('source')}"
            f" ({best.get('objective', float('nan')):.10g})")
    if missing:
        text += f"; no value from {', '.join(missing)}"
    return text


@dataclass
class Assessment:
    """What the rule says of one item: ``outcome`` "misses" (more than the tolerance above the
    best known: the candidate disagrees), "beats-reference" (it reaches the best known and lme4
    does not: candidate-better), "reaches" (the verdict against lme4 stands) or "none" (no best
    known: nothing to say beyond ``text``); ``row`` the parameter-table row, ``text`` why."""

    outcome: str
    text: str
    row: Row | None = None


def assess(bk: Mapping[str, Any] | None, tol: Any) -> Assessment:
    """The best-known rule (module docstring) on a judgement's best-known part; the row
    ``best_known.criterion`` holds the best known, the candidate's value and the allowed
    excess."""
    if not bk or (bk.get("best") or {}).get("objective") is None:
        why = "; ".join(f"{k}: {v}" for k, v in ((bk or {}).get("unavailable") or {}).items())
        return Assessment("none", f"no best known optimum under the marginal criterion: {why}")
    best = float(bk["best"]["objective"])
    allowed = tol.objective_allowed(best)
    cand, ref = bk.get("candidate"), bk.get("reference")
    what = headline(bk)
    if cand is None:
        return Assessment("misses", f"{what}; the candidate's estimates cannot be evaluated: "
                          f"{bk.get('candidate_error')}",
                          Row(ROW, best, None, None, allowed, False, "not evaluable"))
    row = Row(ROW, best, cand, cand - best, allowed, cand - best <= allowed,
              f"best: {bk['best']['source']}")
    if not row.ok:
        return Assessment("misses", f"{what}; the candidate's estimates give {cand:.10g}, "
                          f"{cand - best:.4g} above it (allowed {allowed:.3g})", row)
    if ref is not None and ref - best > allowed:
        return Assessment("beats-reference", f"{what}; the candidate reaches it ({cand:.10g}) "
                          f"and the reference's estimates are {ref - best:.4g} above it: the "
                          "reference is not the best known optimum", row)
    return Assessment("reaches", f"{what}; the candidate reaches it ({cand:.10g})", row)
