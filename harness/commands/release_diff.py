"""What changed between two releases of one peer, case by case.

Each release's league run gives a verdict per case against lme4 (the league's columns) and,
run with ``--save-baseline``, the release's records. Two consecutive releases are compared as
a later run is compared with a saved baseline (harness.core.baseline.drift, the tolerance policy
with the older release's record in the place of the reference), and each case is named by
one change:

- ``fixed``: wrong against lme4 (disagreed or failed) before, right now (agreed, or reaches a
  lower criterion than lme4);
- ``regressed``: right before, wrong now;
- ``newly expressible`` / ``no longer expressible``: the adapter declined on one side only;
- ``changed verdict``: right on both or wrong on both, by another verdict (failed, e.g. an
  error, then disagreed; agreed, then a lower criterion than lme4's);
- ``moved beyond tolerance``: the same verdict on both, but some quantity moved more than its
  tolerance between the releases (the baseline's drift);
- ``moved within tolerance``: the estimates differ, by less than the tolerance;
- ``unchanged``: the compared quantities are equal;
- ``same verdict``: a side kept no records (e.g. the pinned release taken from the committed
  league), so only the verdicts were compared.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from harness.core.baseline import Baseline, compare_with_baseline, drift

#: league verdicts that are right against lme4
RIGHT = ("agreed", "candidate_better")
NOT_EXPRESSIBLE = "not_expressible"
#: every change, in the order they are listed
CHANGES = ("fixed", "regressed", "newly expressible", "no longer expressible",
           "changed verdict", "moved beyond tolerance", "moved within tolerance", "unchanged",
           "same verdict")


def classify(old: str | None, new: str | None, *, drifted: bool | None = None,
             moved: bool | None = None) -> str | None:
    """The change from verdict ``old`` to ``new`` (league columns: agreed, disagreed,
    candidate_better, failed, not_expressible; None: the case was not run). ``drifted``
    / ``moved``: whether some quantity moved beyond / at all between the records (None when
    the records were not compared). None when the case is in neither release's run or
    expressible in neither."""
    if old is None or new is None:
        return None
    if old == NOT_EXPRESSIBLE and new == NOT_EXPRESSIBLE:
        return None
    if old == NOT_EXPRESSIBLE:
        return "newly expressible"
    if new == NOT_EXPRESSIBLE:
        return "no longer expressible"
    if (old in RIGHT) != (new in RIGHT):
        return "fixed" if new in RIGHT else "regressed"
    if old != new:
        return "changed verdict"
    if drifted is None or moved is None:
        return "same verdict"
    if drifted:
        return "moved beyond tolerance"
    return "moved within tolerance" if moved else "unchanged"


def largest_move(baseline_record: Mapping[str, Any], record: Mapping[str, Any]
                 ) -> dict[str, Any] | None:
    """The compared quantity that moved most between the records, as a share of its
    tolerance (|new - old| / allowed): {name, old, new, share}; None when nothing moved."""
    comp = compare_with_baseline(baseline_record, record)
    moved = [r for r in comp.rows if r.difference is not None and r.difference != 0
             and r.allowed]
    if not moved:
        return None
    top = max(moved, key=lambda r: abs(r.difference) / r.allowed)
    return {"name": top.name, "old": top.reference, "new": top.candidate,
            "share": abs(top.difference) / top.allowed}


def compare_case(case: str, impl: str, old_verdict: str | None, new_verdict: str | None,
                 old_records: Baseline | None, new_records: Baseline | None
                 ) -> dict[str, Any] | None:
    """One case's change between two releases of ``impl``, with the quantities that moved
    beyond tolerance (name, older value, newer value, allowed) and the one that moved most
    (its share of its tolerance); None when the case is in neither. A fit that failed on
    either side leaves only the verdicts to compare."""
    old_rec = old_records.record(impl, case) if old_records is not None else None
    new_rec = new_records.record(impl, case) if new_records is not None else None
    rows: list[Any] = []
    drifted = moved = None
    top = None
    if (old_rec is not None and new_rec is not None and not old_rec.get("error")
            and not new_rec.get("error")):
        rows = drift(old_rec, new_rec)
        top = largest_move(old_rec, new_rec)
        drifted, moved = bool(rows), bool(rows) or top is not None
    change = classify(old_verdict, new_verdict, drifted=drifted, moved=moved)
    if change is None:
        return None
    out: dict[str, Any] = {"case": case, "change": change, "old": old_verdict,
                           "new": new_verdict}
    if top is not None:
        out["largest_move"] = top
    if rows:
        out["moved"] = [{"name": r.name, "old": r.reference, "new": r.candidate,
                         "allowed": r.allowed} for r in rows]
    return out


def compare_releases(impl: str, old: Mapping[str, Any], new: Mapping[str, Any]
                     ) -> dict[str, Any]:
    """The changes from release run ``old`` to ``new`` of ``impl``: each a mapping with
    ``version``, ``cases`` ({case: league verdict}) and ``records`` (a harness.core.baseline
    Baseline, or None when the run kept none). Only cases that both runs ran are compared."""
    old_cases, new_cases = old.get("cases") or {}, new.get("cases") or {}
    changes = []
    for case in [c for c in new_cases if c in old_cases]:
        found = compare_case(case, impl, old_cases[case], new_cases[case],
                             old.get("records"), new.get("records"))
        if found is not None:
            changes.append(found)
    counts = Counter(c["change"] for c in changes)
    return {"from": old["version"], "to": new["version"],
            "counts": {k: counts[k] for k in CHANGES if counts[k]},
            "only_in_one": sorted(set(old_cases) ^ set(new_cases)),
            "cases": changes}
