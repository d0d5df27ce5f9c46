"""index.html: one static page (no server, no network, no scripts): the summary table, then per
disagreement who reaches the better optimum, the parameter tables and the plots, then the
environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from html import escape
from typing import Any

from harness.commands.report import figures, status_map, truth_section
from harness.commands.report import findings as report_findings
from harness.commands.report.build import gap_summary

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;
max-width:1150px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:2em}h3{font-size:1em;margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.85em}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td{background:#fde8e8}.v-agreed{color:#1a7f37}
.v-disagreed,.v-failed,.v-reference-failed{color:#c0262d;
font-weight:600}.v-candidate-better{color:#9a6700;font-weight:600}
.finding{background:#fff8c5;border-left:4px solid #d4a72c;padding:.4em .8em;margin:.4em 0}
.note{color:#555;font-size:.85em}code{background:#f5f5f5;padding:0 .2em}
img{max-width:100%;display:block;margin:.4em 0 1em}
.partial{background:#fde8e8;border-left:4px solid #c0262d;padding:.5em .8em}
.counts span{margin-right:1em}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;
font-size:.8em}
"""


def anchor(case_id: Any) -> str:
    """The section id of a case (letters, digits, - and _ only)."""
    return "case-" + re.sub(r"[^A-Za-z0-9_-]", "_", str(case_id))


def _num(x: Any, fmt: str = "{:.6g}") -> str:
    if isinstance(x, bool) or x is None:
        return escape(str(x)) if x is not None else "–"
    if isinstance(x, int | float):
        return fmt.format(x)
    return escape(str(x))


def _img(b64: str | None, alt: str, kind: str) -> str:
    if not b64:
        return ""
    return (f'<img class="plot" data-plot="{escape(kind)}" alt="{escape(alt)}" '
            f'src="data:image/png;base64,{b64}">')


def _summary(report: Mapping[str, Any]) -> str:
    rows = []
    for c in report["cases"]:
        cid = c["case"].get("id")
        name = (f'<a href="#{anchor(cid)}">{escape(str(cid))}</a>' if c["disagreement"]
                else escape(str(cid)))
        impls = ", ".join(escape(k) for k in c["implementations"])
        for k, e in (c.get("errors") or {}).items():
            impls += (f'; <span class="v-failed">{escape(k)} '
                      f'({"crashed" if e.get("crashed") else escape(str(e.get("outcome")))})'
                      "</span>")
        v = c["verdict"]
        worst = c.get("worst_scaled")
        rows.append(f'<tr><td>{name}</td><td>{impls}</td><td class="num">'
                    f'{_num(worst, "{:.3g}")}</td><td class="v-{escape(v)}">{escape(v)}</td>'
                    f"<td>{escape(gap_summary(c))}</td></tr>")
    return ('<table id="summary"><tr><th>case</th><th>implementations</th>'
            "<th>worst scaled difference</th><th>verdict</th><th>objective gap</th></tr>"
            + "".join(rows) + "</table>")


def _cross_table(c: Mapping[str, Any]) -> str:
    cross = c.get("crosseval") or {}
    diag = (c.get("diagnostics") or {}).get("estimates", {})
    if not cross.get("estimates"):
        return f'<p class="note">Not cross-evaluated: {escape(str(cross.get("error")))}</p>'
    crit = escape(cross["criterion"])
    head = (f"<tr><th>implementation</th><th>{crit} at its θ (common objective)</th>"
            f"<th>{crit} it reported</th><th>gap to best</th><th>θ</th>"
            "<th>|gradient| (free coords)</th><th>boundary</th><th>seconds</th>"
            "<th>notes</th></tr>")
    rows = []
    tol = cross.get("tolerance") or 0
    for impl, e in cross["estimates"].items():
        d = diag.get(impl, {})
        gap = e.get("gap")
        bad = ' class="bad"' if gap is not None and gap > tol else ""
        best = " (best)" if impl == cross.get("best") else ""
        theta = ", ".join(f"{v:.5g}" for v in (e.get("theta") or e.get("theta_reported") or []))
        rows.append(
            f"<tr{bad}><td>{escape(impl)}{best}</td><td class='num'>"
            f"{_num(e.get('objective'), '{:.6f}')}</td><td class='num'>"
            f"{_num(e.get('objective_reported'), '{:.6f}')}</td><td class='num'>"
            f"{_num(gap, '{:.3g}')}</td><td>{theta}</td><td class='num'>"
            f"{_num(d.get('gradient_norm_free'), '{:.3g}')}</td><td>"
            f"{'<br>'.join(escape(b) for b in d.get('boundary', [])) or '–'}</td>"
            f"<td class='num'>{_num(c['seconds'].get(impl), '{:.4g}')}</td>"
            f"<td>{'<br>'.join(escape(n) for n in e.get('notes', []))}</td></tr>")
    names = ", ".join(escape(n) for n in cross.get("theta_names", []))
    return (f'<table class="crosseval">{head}{"".join(rows)}</table>'
            f'<p class="note">θ order: {names}. Gap tolerance {tol:.2g}.</p>')


def _status(row: Mapping[str, Any]) -> str:
    if row.get("ok") is None:
        return escape(str(row.get("note") or "not compared"))
    return "ok" if row["ok"] else "FAIL " + escape(str(row.get("note") or ""))


def _param_table(impl: str, comp: Mapping[str, Any]) -> str:
    rows = []
    for r in comp.get("rows", []):
        bad = ' class="bad"' if r.get("ok") is False else ""
        rows.append(f"<tr{bad}><td>{escape(str(r.get('name')))}</td>"
                    + "".join(f"<td class='num'>{_num(r.get(k))}</td>"
                              for k in ("reference", "candidate", "difference", "allowed",
                                        "scaled"))
                    + f"<td>{_status(r)}</td></tr>")
    return (f'<h3>{escape(impl)}: <span class="v-{escape(str(comp.get("verdict")))}">'
            f'{escape(str(comp.get("verdict")))}</span></h3>'
            f'<table class="param-table" data-impl="{escape(impl)}"><tr><th>name</th>'
            "<th>reference</th><th>candidate</th><th>difference</th><th>allowed</th>"
            "<th>|diff|/allowed</th><th></th></tr>" + "".join(rows) + "</table>")


def _allfit(af: Mapping[str, Any] | None) -> str:
    if not af:
        return ""
    if af.get("error") and not af.get("optimizers"):
        return f'<p class="note">lme4 allFit: not run ({escape(str(af["error"]))})</p>'
    rows = "".join(
        f"<tr><td>{escape(k)}</td><td class='num'>{_num(v.get('objective'), '{:.6f}')}</td>"
        f"<td>{escape('; '.join(v.get('messages') or []))}</td></tr>"
        for k, v in (af.get("optimizers") or {}).items())
    return ("<h3>lme4's second opinion (allFit)</h3>"
            f"<p>Best optimizer: <b>{escape(str(af.get('best')))}</b>, objective "
            f"{_num(af.get('objective'), '{:.6f}')}.</p>"
            "<table class='allfit'><tr><th>optimizer</th><th>objective</th><th>messages</th>"
            f"</tr>{rows}</table>")


def _details(c: Mapping[str, Any]) -> str:
    case = c["case"]
    cid = case.get("id")
    cross = c.get("crosseval") or {}
    diag = c.get("diagnostics") or {}
    parts = [f'<section class="disagreement" id="{anchor(cid)}" data-case="{escape(str(cid))}">',
             f"<h2>{escape(str(cid))} — <span class='v-{escape(c['verdict'])}'>"
             f"{escape(c['verdict'])}</span></h2>",
             f"<p><code>{escape(str(case.get('formula')))}</code>, "
             f"{'REML' if case.get('REML') else 'ML'}, dataset "
             f"{escape(str(case.get('dataset')))}. {escape(str(case.get('notes') or ''))}</p>"]
    for f in cross.get("findings", []):
        parts.append(f'<div class="finding">{escape(f)}</div>')
    for impl, reason in (case.get("xfail") or {}).items():
        parts.append(f'<p class="note"><b>Known disagreement for {escape(impl)}</b> '
                     f"(strict expected failure in the catalog): {escape(reason)}</p>")
    if cross.get("best"):
        parts.append(f"<p>Lowest {escape(cross['criterion'])}: <b>{escape(cross['best'])}</b>."
                     "</p>")
    parts.append("<h3>Who reaches the better optimum</h3>" + _cross_table(c))
    for note in c.get("notes", []):
        parts.append(f'<p class="note">{escape(note)}</p>')
    for impl, comp in (c.get("comparisons") or {}).items():
        if comp:
            parts.append(_param_table(impl, comp))
    parts.append(_img(figures.scaled_differences(c.get("comparisons") or {}),
                      "scaled differences per parameter", "scaled"))
    parts.append(_img(figures.caterpillar(c.get("records") or {}),
                      "conditional modes with 95% intervals", "caterpillar"))
    if cross.get("best"):
        parts.append(_img(figures.segment_profiles(diag.get("segments") or {}, cross),
                          "objective between estimates", "segment"))
        parts.append(_img(figures.coordinate_profiles(diag.get("coordinates") or {}, cross),
                          "objective along each θ coordinate", "coordinates"))
    parts.append(_img(figures.timings(c.get("seconds") or {}), "fit time", "timing"))
    heat = c.get("heatmap")
    if heat and heat.get("matrices"):
        parts.append(_img(figures.heatmaps(heat), "marginal covariance", "heatmap"))
    elif heat and heat.get("error"):
        parts.append(f'<p class="note">No covariance heat map: {escape(heat["error"])}</p>')
    parts.append(_allfit(c.get("allfit")))
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _environment(env: Mapping[str, Any]) -> str:
    rows = []
    for section, values in env.items():
        if isinstance(values, Mapping):
            for k, v in values.items():
                rows.append(f"<tr><td>{escape(section)}</td><td>{escape(str(k))}</td>"
                            f"<td>{escape(str(v))}</td></tr>")
    return ('<h2 id="environment">Environment</h2><table class="environment">'
            "<tr><th></th><th>component</th><th>version / value</th></tr>"
            + "".join(rows) + "</table>")


def _best_known(best: Mapping[str, Any]) -> str:
    from harness.commands.report.markdown import best_known_lines

    lines = best_known_lines(best)
    if not lines:
        return ""
    items = [ln.removeprefix("- ") for ln in lines[3:]]
    return (f"<h2>{escape(lines[1].removeprefix('## '))}</h2><ul>"
            + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>")


def _certified(column: Mapping[str, Any]) -> str:
    """The certified cases' section: each implementation's worst LRE, lme4's failures."""
    from harness.commands.certified_report import cell, lme4_failures

    if not column:
        return ""
    rows = "".join(f"<tr><td>{escape(impl)}</td><td>{e['cases']}</td><td>{escape(cell(e))}</td>"
                   f"<td>{escape(', '.join(e['failed']) or 'none')}</td></tr>"
                   for impl, e in column.items())
    failed = lme4_failures(column)
    return ("<h2>Certified cases (judged against their exact truth)</h2><table><tr>"
            "<th>implementation</th><th>cases</th><th>worst LRE (case)</th>"
            "<th>fails the truth on</th></tr>" + rows + "</table>"
            + (f"<p>lme4 itself fails the certified truth on {escape(', '.join(failed))}.</p>"
               if failed else ""))


def _completeness(comp: Mapping[str, Any] | None) -> str:
    if not comp or comp.get("complete", True):
        return ""
    return (f'<p id="completeness" class="partial"><b>PARTIAL REPORT: '
            f'{escape(str(comp.get("text")))}.</b> This report covers only the finished items; '
            "it is not the result of a complete run"
            + (f" (<code>{escape(str(comp['resume']))}</code> continues it)"
               if comp.get("resume") and (comp.get("interrupted") or comp.get("missing"))
               else "") + ".</p>")


def render(report: Mapping[str, Any]) -> str:
    """The whole page."""
    counts = "".join(f"<span><b>{v}</b> {escape(k)}</span>"
                     for k, v in sorted(report.get("counts", {}).items()))
    dis = [c for c in report["cases"] if c["disagreement"]]
    overview = _img(figures.timing_overview(report["cases"]), "fit times", "timing-overview")
    body = [
        "<h1>lme4 agreement report</h1>",
        _completeness(report.get("completeness")),
        f'<p class="counts">{counts}</p>',
        status_map.section(report),
        "<h2>Summary</h2>", _summary(report),
        f"<p>{len(dis)} case(s) with a disagreement, detailed below.</p>",
        "<h2>Fit times</h2>" + overview if overview else "",
        _best_known(report.get("best_known") or {}),
        truth_section.html_section(report),
        report_findings.html_section(report),
        _certified(report.get("certified") or {}),
        *[_details(c) for c in dis],
        _environment(report.get("environment") or {}),
    ]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<title>lme4 agreement report</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(b for b in body if b)
            + "\n</body></html>\n")
