"""report.md: the summary a CI job posts (one table row per case, then the findings)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.commands.certified_report import report_lines
from harness.commands.report import findings as report_findings
from harness.commands.report import truth_section
from harness.commands.report.build import gap_summary


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _worst(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def render(report: Mapping[str, Any]) -> str:
    """The markdown text of the report."""
    counts = report.get("counts", {})
    lines = ["# lme4 agreement report", ""]
    lines += completeness_lines(report.get("completeness"))
    lines.append(", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no cases")
    lines += ["", "| case | implementations | worst scaled difference | verdict | objective gap |",
              "|---|---|---:|---|---|"]
    for c in report["cases"]:
        impls = ", ".join(
            f"{k} ({(c['comparisons'].get(k) or {}).get('verdict') or 'reference'})"
            for k in c["implementations"])
        if c.get("skipped"):
            impls += "; skipped: " + ", ".join(c["skipped"])
        if c.get("errors"):
            impls += "; " + ", ".join(f"{k} ({'crashed' if e.get('crashed') else e.get('outcome')})"
                                      for k, e in c["errors"].items())
        verdict = c["verdict"] if c["verdict"] == "agreed" else f"**{c['verdict']}**"
        lines.append(f"| {_cell(c['case'].get('id'))} | {_cell(impls)} | "
                     f"{_worst(c.get('worst_scaled'))} | {verdict} | {_cell(gap_summary(c))} |")
    findings = [(c["case"].get("id"), f) for c in report["cases"]
                for f in (c.get("crosseval") or {}).get("findings", [])]
    if findings:
        lines += ["", "## Findings", ""]
        lines += [f"- `{cid}`: {f}" for cid, f in findings]
    lines += best_known_lines(report.get("best_known") or {})
    lines += truth_section.markdown_lines(report)
    lines += report_findings.markdown_lines(report)
    lines += report_lines(report.get("certified") or {})
    known = [(c["case"].get("id"), impl, reason) for c in report["cases"] if c["disagreement"]
             for impl, reason in (c["case"].get("xfail") or {}).items()]
    if known:
        lines += ["", "## Known disagreements (strict expected failures in the catalog)", ""]
        lines += [f"- `{cid}` [{impl}]: {reason}" for cid, impl, reason in known]
    env = report.get("environment") or {}
    r = env.get("r") or {}
    py = env.get("python") or {}
    lines += ["", f"Environment: Python {py.get('python')}, numpy {py.get('numpy')}, "
              f"mixedref {py.get('mixedref')}; R {r.get('R', 'n/a')}, lme4 {r.get('lme4', 'n/a')};"
              f" {(env.get('machine') or {}).get('cpu')}", ""]
    return "\n".join(lines)


def best_known_lines(best: Mapping[str, Any]) -> list[str]:
    """The best-known-optimum section: lme4's default against the lowest criterion known."""
    if not best.get("recorded"):
        return []
    lines = ["", "## Best known optimum (LMMs: lme4's devfun over lme4, allFit, glmmTMB, "
             "mixedref; Gamma, inverse Gaussian: the marginal likelihood over lme4, glmmTMB, "
             "mixedref)", ""]
    if best["findings"]:
        lines += [f"- Finding about lme4: {f}" for f in best["findings"]]
    else:
        lines.append(f"lme4's default reaches the best known optimum within the tolerance on all "
                     f"{best['recorded']} recorded cases (recorded {best.get('date')}).")
    return lines


def completeness_lines(comp: Mapping[str, Any] | None) -> list[str]:
    """The header line of a partial or incomplete report (nothing for a complete one)."""
    if not comp or comp.get("complete", True):
        return []
    return [f"**PARTIAL REPORT: {comp.get('text')}.** This report covers only the finished "
            "items; it is not the result of a complete run"
            + (f" (`{comp.get('resume') or 'python -m harness report --resume DIR'}` "
               "continues it)." if comp.get("interrupted") or comp.get("missing") else "."), ""]
