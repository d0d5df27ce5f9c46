"""The report's registered disagreements, by finding: each finding of the divergence registry
(harness/core/divergences.py) that covered a run's rows, named once with its cause and the rows it
covered (case, quantity, difference, registered size), instead of the reason row by row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any


def collect(cases: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The findings that covered rows in the report's cases (each case's ``registered``:
    {impl: [{finding, cause, rows}]}, from harness.core.divergences.Judgement.findings), merged
    over cases in order of first appearance: [{finding, impl, cause, rows: [{case, name,
    difference, size}]}]."""
    out: dict[tuple[Any, str, str], dict[str, Any]] = {}
    for c in cases:
        case_id = (c.get("case") or {}).get("id")
        for impl, found in (c.get("registered") or {}).items():
            for f in found or []:
                entry = out.setdefault((f.get("finding"), impl, f.get("cause")), {
                    "finding": f.get("finding"), "impl": impl, "cause": f.get("cause"),
                    "rows": []})
                entry["rows"] += [{"case": case_id, **row} for row in f.get("rows") or []]
    return list(out.values())


def _name(f: Mapping[str, Any]) -> str:
    return str(f.get("finding") or "(a flat registry entry)")


def _rows_by_case(f: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{case: ["fixef_se[x] +0.0564 (size 0.057)", ...]}``."""
    by_case: dict[str, list[str]] = {}
    for r in f["rows"]:
        diff = r.get("difference")
        text = str(r.get("name")) + (f" {diff:+.3g}" if isinstance(diff, int | float) else "")
        by_case.setdefault(str(r.get("case")), []).append(f"{text} (size {r.get('size'):g})")
    return by_case


def _count(f: Mapping[str, Any]) -> str:
    n, k = len(f["rows"]), len({r.get("case") for r in f["rows"]})
    return f"{n} row{'s' * (n != 1)} on {k} case{'s' * (k != 1)}"


def markdown_lines(report: Mapping[str, Any]) -> list[str]:
    """The markdown section (empty without registered disagreements)."""
    found = report.get("findings") or []
    if not found:
        return []
    lines = ["", "## Registered disagreements, by finding", ""]
    for f in found:
        lines.append(f"- `{_name(f)}` [{f['impl']}] ({_count(f)}): {f.get('cause')}")
        lines += [f"  - `{case}`: " + ", ".join(rows)
                  for case, rows in _rows_by_case(f).items()]
    return lines


def html_section(report: Mapping[str, Any]) -> str:
    """The HTML section (empty without registered disagreements)."""
    found = report.get("findings") or []
    if not found:
        return ""
    items = []
    for f in found:
        rows = "".join(f"<li><code>{escape(case)}</code>: {escape(', '.join(r))}</li>"
                       for case, r in _rows_by_case(f).items())
        items.append(f"<li><p><b><code>{escape(_name(f))}</code></b> [{escape(f['impl'])}] "
                     f"({escape(_count(f))}): {escape(str(f.get('cause')))}</p>"
                     f"<ul>{rows}</ul></li>")
    return ("<h2>Registered disagreements, by finding</h2><ul class='findings'>"
            + "".join(items) + "</ul>")
