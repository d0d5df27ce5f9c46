"""The certified column of the league and the report: each implementation's worst log relative
error on the certified cases, and where lme4 itself fails the truth.

Read from the items' comparisons (harness.core.compare.Comparison as dicts): a certified case's
rows ``certified[...]`` hold the truth (the limit of the input) and the candidate's value, so
the LRE is recomputed here (harness.adapters.certified.worst_lre), never taken on trust.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from harness.adapters.certified import IMPL, worst_lre

#: the implementations that are lme4 on a certified case (live and recorded): candidates there
LME4 = ("lme4", "lme4-recorded")


def is_certified_item(item: Mapping[str, Any]) -> bool:
    """True for an item judged against a certified truth."""
    comp = item.get("comparison") or {}
    return comp.get("reference_impl") == IMPL or str(item.get("reference")) == IMPL


def item_lre(item: Mapping[str, Any]) -> float | None:
    """The item's worst LRE against the limit of the input (None: not judged)."""
    comp = item.get("comparison") or {}
    return worst_lre(comp.get("rows") or [])


def certified_column(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per implementation: cases judged, worst LRE (and on which case), the cases it failed;
    lme4's entry (live, else recorded) says where lme4 itself fails the truth."""
    out: dict[str, dict[str, Any]] = {}
    for it in items:
        if not is_certified_item(it):
            continue
        impl = str(it["impl"])
        e = out.setdefault(impl, {"cases": 0, "worst_lre": None, "worst_case": None,
                                  "failed": [], "lre": {}})
        lre = item_lre(it)
        if lre is None:
            if it.get("outcome") not in ("skipped",):
                e["failed"].append(str(it["case"]))
            continue
        e["cases"] += 1
        e["lre"][str(it["case"])] = round(lre, 2)
        if e["worst_lre"] is None or lre < e["worst_lre"]:
            e["worst_lre"], e["worst_case"] = round(lre, 2), str(it["case"])
        if it.get("outcome") not in ("agreed",):
            e["failed"].append(str(it["case"]))
    return out


def lme4_failures(column: Mapping[str, Any]) -> list[str]:
    """The certified cases lme4 fails (live if it ran, else the recorded answers)."""
    for name in LME4:
        if name in column:
            return list(column[name]["failed"])
    return []


def cell(entry: Mapping[str, Any] | None) -> str:
    """'9.3 (SmLs06-oneway-REML)' for a table: worst LRE and where; '-' when none."""
    if not entry or entry.get("worst_lre") is None:
        return "-"
    return f"{entry['worst_lre']:.1f} ({entry['worst_case']})"


def lre_table(column: Mapping[str, Any], impls: Iterable[str]) -> str:
    """Markdown: one row per certified case, one column per implementation, its worst LRE."""
    names = [n for n in impls if n in column]
    cases: list[str] = []
    for n in names:
        cases += [c for c in column[n]["lre"] if c not in cases]
    lines = ["| case | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for c in cases:
        cells = []
        for n in names:
            v = column[n]["lre"].get(c)
            mark = "" if c not in column[n]["failed"] else " ✗"
            cells.append("failed" if v is None and c in column[n]["failed"]
                         else ("-" if v is None else f"{v:.1f}{mark}"))
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_summary(cases: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The certified column of a report (harness.commands.report.build's cases): as
    :func:`certified_column`, from each case's comparisons against the truth."""
    items = [{"impl": impl, "case": (c.get("case") or {}).get("id"), "comparison": comp,
              "outcome": comp.get("verdict")}
             for c in cases for impl, comp in (c.get("comparisons") or {}).items()
             if comp and comp.get("reference_impl") == IMPL]
    return certified_column(items)


def report_lines(column: Mapping[str, Any]) -> list[str]:
    """The report's markdown section: each implementation's worst LRE, lme4's failures."""
    if not column:
        return []
    lines = ["", "## Certified cases (judged against their exact truth, docs/certified.md)", "",
             "| implementation | cases | worst LRE (case) | fails the truth on |",
             "|---|---:|---|---|"]
    for impl, e in column.items():
        lines.append(f"| {impl} | {e['cases']} | {cell(e)} | "
                     f"{', '.join(e['failed']) or 'none'} |")
    failed = lme4_failures(column)
    if failed:
        lines += ["", f"lme4 itself fails the certified truth on {', '.join(failed)}."]
    return lines
