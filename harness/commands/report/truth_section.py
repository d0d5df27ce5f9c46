"""The report's two sections on where lme4 is not the truth.

- *Distance from the truth*: for every simulated case whose model is the generating one, each
  implementation's distance from the true parameters next to its distance from lme4, per
  quantity, in the units of harness.core.truth.distances (fixed effects in lme4's SEs, variances and
  σ relative, correlations absolute).
- *Judged by the best known*: for the Gamma and inverse-Gaussian GLMMs, the best known optimum
  over lme4, glmmTMB and mixedref under the marginal likelihood (harness.core.judge.scale_family),
  which the verdicts of these cases follow.

The data come from harness.commands.report.build (``case["truth"]``, ``case["best_known_rule"]``);
this
module only formats them, for report.md and index.html alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any


def _num(x: Any, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _dist(x: Any, unit: str) -> str:
    if x is None:
        return "-"
    return f"{x:+.3f} SE" if unit == "SE" else (f"{100 * x:+.1f}%" if unit == "relative"
                                                 else f"{x:+.3f}")


def truth_rows(case: Mapping[str, Any]) -> list[list[str]]:
    """The table rows of one case: quantity, truth, implementation, estimate, distance from
    the truth, distance from lme4."""
    table = case.get("truth") or {}
    return [[r["quantity"], _num(r["truth"]), r["impl"], _num(r["estimate"]),
             _dist(r["from_truth"], r["unit"]), _dist(r["from_lme4"], r["unit"])]
            for r in sorted(table.get("rows") or [], key=lambda r: r["quantity"])]


HEADER = ["quantity", "truth", "implementation", "estimate", "from the truth", "from lme4"]
UNITS = ("fixed effects in lme4's standard errors, variances and σ relative (%), correlations "
         "absolute")


def _with_truth(cases: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [c for c in cases if (c.get("truth") or {}).get("rows")]


def markdown_lines(report: Mapping[str, Any]) -> list[str]:
    """Both sections as markdown (nothing for a report without such cases)."""
    lines: list[str] = []
    cases = _with_truth(report.get("cases") or [])
    if cases:
        lines += ["", "## Distance from the truth (simulated cases)", "",
                  f"Each estimate's distance from the true parameters next to its distance from "
                  f"lme4: {UNITS}.", ""]
        for c in cases:
            lines += [f"### {c['case'].get('id')}", "", "| " + " | ".join(HEADER) + " |",
                      "|---|---:|---|---:|---:|---:|"]
            lines += ["| " + " | ".join(r) + " |" for r in truth_rows(c)]
            lines.append("")
    rule = [(c["case"].get("id"), c["best_known_rule"]) for c in report.get("cases") or []
            if c.get("best_known_rule")]
    if rule:
        lines += ["", "## Gamma and inverse-Gaussian GLMMs: judged by the best known", "",
                  "lme4 is not the judge of these families; each verdict follows the best known "
                  "optimum over lme4, glmmTMB and mixedref under the marginal likelihood.", ""]
        lines += [f"- `{cid}`: {text}" for cid, text in rule]
    return lines


def html_section(report: Mapping[str, Any]) -> str:
    """Both sections as HTML ("" without such cases)."""
    out = []
    cases = _with_truth(report.get("cases") or [])
    if cases:
        out.append("<h2>Distance from the truth (simulated cases)</h2>"
                   f"<p>Each estimate's distance from the true parameters next to its distance "
                   f"from lme4: {escape(UNITS)}.</p>")
        head = "".join(f"<th>{escape(h)}</th>" for h in HEADER)
        for c in cases:
            body = "".join("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in r) + "</tr>"
                           for r in truth_rows(c))
            out.append(f"<h3>{escape(str(c['case'].get('id')))}</h3>"
                       f"<table class='truth'><tr>{head}</tr>{body}</table>")
    rule = [(c["case"].get("id"), c["best_known_rule"]) for c in report.get("cases") or []
            if c.get("best_known_rule")]
    if rule:
        out.append("<h2>Gamma and inverse-Gaussian GLMMs: judged by the best known</h2><ul>"
                   + "".join(f"<li><code>{escape(str(cid))}</code>: {escape(text)}</li>"
                             for cid, text in rule) + "</ul>")
    return "".join(out)
