"""The version axis's table of releases as HTML, shared by the league's page and the axis's
own page (harness/commands/ecosystem.py and harness/commands/release_league.py; it imports neither,
so that the
league can show the table without importing the axis)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any


def counts_text(counts: Mapping[str, int] | None) -> str:
    """"2 fixed, 1 regressed": a pair of releases' change counts in one phrase."""
    if counts is None:
        return ""
    return ", ".join(f"{n} {k}" for k, n in counts.items()) or "no case expressible in both"


def short(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def releases_table_html(summary: Mapping[str, Any], columns: Sequence[str],
                        colours: Mapping[str, str]) -> str:
    """The table of (peer, release) rows of a version axis (harness/commands/release_league.py's
    versions.json): the league's ``columns`` coloured by ``colours``, where the verdicts come
    from, and what changed since the release before."""
    COLUMNS, COLOURS = columns, colours  # noqa: N806 - the league's names
    e = html.escape
    out = ["<table><tr><th>implementation</th><th>release</th>"
           + "".join(f"<th>{c.replace('_', ' ')}</th>" for c in COLUMNS)
           + "<th>registered</th><th>run</th><th>since the release before</th></tr>"]
    for peer, p in summary["peers"].items():
        since = {c["to"]: c["counts"] for c in p["changes"]}
        for version in p["releases"]:
            run = p["runs"][version]
            if run.get("error"):
                out.append(f"<tr><td>{e(peer)}</td><td>{e(version)}</td><td colspan="
                           f"{len(COLUMNS) + 3}>run failed: {e(short(run['error'], 300))}"
                           "</td></tr>")
                continue
            c = run["counts"]
            where = run.get("source") or (f"{run['wall_seconds']:.0f} s"
                                          if run.get("wall_seconds") else "")
            out.append(f"<tr><td>{e(peer)}</td><td>{e(version)}</td>"
                       + "".join(f"<td class=n style='background:{COLOURS[k]}'>{c[k]}</td>"
                                 for k in COLUMNS)
                       + f"<td class=n>{c['registered']}</td><td>{e(where)}</td>"
                       f"<td>{e(counts_text(since.get(version)))}</td></tr>")
    out.append("</table>")
    return "".join(out)
