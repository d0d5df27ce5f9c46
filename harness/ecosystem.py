"""The Python mixed-model ecosystem under the harness: a league table.

``python -m harness ecosystem --out DIR [-k EXPR]`` runs the catalog through lme4 and every
installed implementation (mixedref, statsmodels and the PyPI peers of harness.adapters.peers)
by running the harness itself under pytest (``python -m pytest --pyargs harness -n 2 --impl
...``), so every fit is isolated, judged under lme4's devfun and mixedref's objective and held
to the divergence registry exactly as in any harness run. This module is also loaded into that
pytest run as a plugin (``-p harness.ecosystem``), where it keeps each item's outcome, the
plugin's comparison (with the judge's criterion values) and the fit times, and writes them to
``DIR/results.json``. From those it writes ``DIR/league.json`` and ``DIR/index.html``.

``--readme`` rewrites the block between ``<!-- ecosystem:start -->`` and
``<!-- ecosystem:end -->`` in README.md from the committed table
(harness/references/league/league.json), or from the table just written.
"""

from __future__ import annotations

import html
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LEAGUE_DIR = HERE / "references" / "league"
README = HERE.parent / "README.md"
START, END = "<!-- ecosystem:start -->", "<!-- ecosystem:end -->"

#: the league, in the order it is listed: mixedref, statsmodels, then the PyPI peers
LEAGUE = ("mixedref", "statsmodels", "mixedlm", "mixedlm-rs", "lme-python", "interlace-lme",
          "glmm", "pyreml")
#: per-candidate time limit of the run: the catalog's default (its large cases allow lme4
#: 600 s; a candidate gets the default, so one slow package cannot stall the league)
CASE_TIMEOUT = 60.0

# league column <- harness summary outcome
_COLUMN = {"agreed": "agreed", "disagreed": "disagreed", "xfail": "disagreed",
           "candidate-better": "candidate_better", "failed": "failed", "error": "failed",
           "judges-disagree": "failed", "no-verdict": "failed", "xpass": "failed",
           "drift": "failed", "skipped": "not_expressible"}
COLUMNS = ("agreed", "disagreed", "candidate_better", "failed", "not_expressible")
COLOURS = {"agreed": "#cdeccd", "disagreed": "#f6c6c6", "candidate_better": "#c6dcf6",
           "failed": "#e0b0e8", "not_expressible": "#eeeeee"}


# ----------------------------------------------------------------------------- pytest plugin


def pytest_addoption(parser: Any) -> None:
    parser.getgroup("mixedref-harness").addoption(
        "--ecosystem-results", default=None, metavar="FILE",
        help="(harness ecosystem) write every harness item's outcome, comparison and times "
             "to FILE")


_items: dict[str, dict[str, Any]] = {}


def pytest_runtest_logreport(report: Any) -> None:
    """Keep each harness item's outcome (on the xdist controller: from user_properties)."""
    props = dict(report.user_properties or ())
    item = props.get("harness-item")
    if item is None:
        return
    from harness import summary

    entries: dict[str, dict[str, Any]] = {}
    prev = _items.get(report.nodeid)
    if prev is not None:
        entries[report.nodeid] = prev
    summary.record_report(entries, report, props)
    entry = entries[report.nodeid]
    data = props.get("harness") or {}
    if data.get("comparison") is not None:
        entry["comparison"] = data["comparison"]
        entry["seconds"] = (data.get("record") or {}).get("seconds")
        entry["reference_seconds"] = (data.get("reference_record") or {}).get("seconds")
        entry["versions"] = (data.get("record") or {}).get("versions") or {}
        entry["divergence"] = data.get("divergence")
    if getattr(report, "wasxfail", None):
        entry["xfail_reason"] = str(report.wasxfail)
    entry.pop("data", None)
    _items[report.nodeid] = entry


def pytest_sessionfinish(session: Any) -> None:
    path = session.config.getoption("ecosystem_results", None)
    if not path or getattr(session.config, "workerinput", None) is not None:
        return
    Path(path).write_text(json.dumps(list(_items.values()), indent=1, default=str) + "\n")


# ----------------------------------------------------------------------------- the run


def installed(names: Sequence[str] = LEAGUE) -> tuple[list[str], dict[str, str]]:
    """(the implementations that load here, {name: why not} for the others)."""
    from harness.adapters import get_adapter

    ok, missing = [], {}
    for name in names:
        why = get_adapter(name).unavailable()
        if why:
            missing[name] = why
        else:
            ok.append(name)
    return ok, missing


def run(out: str | Path, keyword: str | None = None, impls: Sequence[str] | None = None,
        workers: int = 2, timeout: float = CASE_TIMEOUT) -> dict[str, Any]:
    """Run the harness over the league under pytest; write results.json, league.json and
    index.html into ``out``; return the league."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names, missing = installed(impls or LEAGUE)
    for name, why in missing.items():
        print(f"harness ecosystem: {name} left out: {why}", file=sys.stderr)
    results = out / "results.json"
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "harness", "-p", "harness.ecosystem",
           "-p", "no:cacheprovider", "-q", "--no-header", "-rN",
           "--ecosystem-results", str(results), "--case-timeout", str(timeout)]
    if workers > 1:
        cmd += ["-n", str(workers)]
    for name in names:
        cmd += ["--impl", name]
    if keyword:
        cmd += ["-k", keyword]
    print("harness ecosystem: " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)
    wall = time.perf_counter() - t0
    if not results.is_file():
        raise RuntimeError(f"the harness run wrote no results (pytest exit code "
                           f"{proc.returncode})")
    items = json.loads(results.read_text())
    league = build_league(items, names, wall_seconds=wall, missing=missing)
    write_league(league, out)
    print(f"harness ecosystem: {len(items)} items in {wall:.0f} s (pytest exit code "
          f"{proc.returncode}); league written to {out}", file=sys.stderr)
    return league


# ----------------------------------------------------------------------------- the table


def _verdict(item: Mapping[str, Any]) -> str:
    return _COLUMN.get(str(item.get("outcome")), "failed")


def _judged(comparison: Mapping[str, Any] | None) -> dict[str, Any]:
    """The judge's criterion values: who reaches the lower criterion under each judge."""
    j = (comparison or {}).get("judgement") or {}
    out: dict[str, Any] = {"criterion": j.get("criterion")}
    for judge in ("lme4", "mixedref"):
        ref = (((j.get("reference") or {}).get("by") or {}).get(judge) or {}).get("objective")
        cand = (((j.get("candidate") or {}).get("by") or {}).get(judge) or {}).get("objective")
        if ref is None or cand is None:
            continue
        out[judge] = {"lme4": ref, "candidate": cand, "candidate_minus_lme4": cand - ref,
                      "lower": "candidate" if cand < ref else "lme4"}
    return out


def build_league(items: Sequence[Mapping[str, Any]], impls: Sequence[str] | None = None, *,
                 wall_seconds: float | None = None,
                 missing: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The league from the plugin's per-item results (see :func:`pytest_runtest_logreport`).

    ``items``: dicts with case, impl, outcome (the harness summary's: agreed, disagreed, xfail,
    candidate-better, failed, error, judges-disagree, no-verdict, skipped, ...), headline, and
    where the item was judged: comparison (harness.compare.Comparison.to_dict()), seconds,
    reference_seconds, versions, divergence, xfail_reason."""
    order = list(impls or [])
    for it in items:
        if it["impl"] not in order and it["impl"] != "lme4":
            order.append(it["impl"])
    cases: dict[str, dict[str, str]] = {}
    per: dict[str, dict[str, Any]] = {n: {"name": n, "version": None, **{c: 0 for c in COLUMNS},
                                          "registered": 0, "ratios": {}, "findings": []}
                                      for n in order}
    for it in items:
        impl, case = it["impl"], it["case"]
        if impl not in per:
            continue
        verdict = _verdict(it)
        cases.setdefault(case, {})[impl] = verdict
        row = per[impl]
        row[verdict] += 1
        if it.get("outcome") == "xfail":
            row["registered"] += 1
        versions = it.get("versions") or {}
        if row["version"] is None and versions:
            row["version"] = _version(impl, versions)
        sec, ref = it.get("seconds"), it.get("reference_seconds")
        if verdict in ("agreed", "disagreed", "candidate_better") and sec and ref:
            row["ratios"][case] = sec / ref
        if verdict != "agreed" and verdict != "not_expressible":
            row["findings"].append({
                "case": case, "verdict": verdict, "outcome": it.get("outcome"),
                "headline": " ".join(str(it.get("headline") or "").split())[:600],
                "registered": it.get("xfail_reason"),
                "judge": _judged(it.get("comparison")),
            })
        elif verdict == "not_expressible":
            row.setdefault("not_expressible_reasons", {})[case] = str(it.get("headline"))[:300]
    table = []
    for n in order:
        row = per[n]
        ratios = list(row["ratios"].values())
        row["median_time_ratio_to_lme4"] = statistics.median(ratios) if ratios else None
        row["time_ratio_to_lme4"] = row.pop("ratios")
        table.append(row)
    league: dict[str, Any] = {"implementations": table,
                              "cases": {c: cases[c] for c in sorted(cases, key=_case_order(items))}}
    if wall_seconds is not None:
        league["wall_seconds"] = round(wall_seconds, 1)
    if missing:
        league["left_out"] = dict(missing)
    return league


def _case_order(items: Sequence[Mapping[str, Any]]) -> Any:
    first = {}
    for i, it in enumerate(items):
        first.setdefault(it["case"], i)
    try:
        from harness.catalog import load_catalog

        ids = [c.id for c in load_catalog(None)]
        pos = {c: i for i, c in enumerate(ids)}
        return lambda c: (pos.get(c, len(pos) + first.get(c, 0)))
    except Exception:  # noqa: BLE001 - order of appearance then
        return lambda c: first.get(c, 0)


def _version(impl: str, versions: Mapping[str, str]) -> str:
    for key in (impl, impl.replace("-", "_"), impl.split("-")[0]):
        if key in versions:
            return str(versions[key])
    return str(next(iter(versions.values())))


def write_league(league: Mapping[str, Any], out: str | Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "league.json", "html": out / "index.html"}
    paths["json"].write_text(json.dumps(league, indent=1, allow_nan=False) + "\n")
    paths["html"].write_text(render_html(league))
    return paths


# ----------------------------------------------------------------------------- renderings


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def league_markdown(league: Mapping[str, Any]) -> str:
    """The league as a markdown table, one row per implementation."""
    head = ("| implementation | version | agreed | disagreed (registered) | candidate better | "
            "failed | not expressible | median time / lme4 |")
    lines = [head, "|" + "---|" * 8]
    for r in league["implementations"]:
        lines.append(f"| {r['name']} | {r.get('version') or '?'} | {r['agreed']} | "
                     f"{r['disagreed']} ({r.get('registered', 0)}) | {r['candidate_better']} | "
                     f"{r['failed']} | {r['not_expressible']} | "
                     f"{_ratio(r.get('median_time_ratio_to_lme4'))} |")
    return "\n".join(lines)


def _judge_text(j: Mapping[str, Any]) -> str:
    """'lme4's devfun +127, mixedref's +127': the candidate's criterion minus lme4's."""
    parts = []
    for judge, label in (("lme4", "lme4's devfun"), ("mixedref", "mixedref's")):
        v = j.get(judge)
        if v:
            parts.append(f"{label} {v['candidate_minus_lme4']:+.3g}")
    return ", ".join(parts)


def _what(finding: Mapping[str, Any]) -> str:
    """The finding in one phrase: the registry's reason, or the headline without the source
    location."""
    text = str(finding.get("registered") or finding.get("headline") or "")
    text = re.sub(r"^registered divergence(?: \(.*?\]\))?:\s*", "", text)
    text = re.sub(r" \(at [^)]*\)", "", text)
    return _short(text, 260)


def readme_block(league: Mapping[str, Any]) -> str:
    """The README section "What the harness found in the ecosystem", from the table."""
    n = len(league.get("cases") or {})
    wall = league.get("wall_seconds")
    lines = [START, "## What the harness found in the ecosystem", "",
             f"`python -m harness ecosystem --out DIR` runs the catalog ({n} cases) through lme4 "
             "and each implementation below under the harness (isolated fits, the judge, the "
             "registry)" + (f"; the committed run took {wall / 60:.0f} min with `-n 2`" if wall
                            else "") + ". The table and its page are in "
             "`harness/references/league/`; this section is generated from it "
             "(`python -m harness ecosystem --readme`). Registered disagreements are explained "
             "in `harness/divergences.yaml`; the time ratio is the median over the cases it "
             "fitted of its fit time / lme4's.", "", league_markdown(league), "",
             "Who is right, by the criterion each estimate reaches when re-evaluated (the "
             "candidate's minus lme4's; positive: lme4 reaches the lower criterion):", ""]
    for r in league["implementations"]:
        found = r.get("findings") or []
        if not found:
            continue
        groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
        for f in found:
            groups.setdefault((f["verdict"], _what(f)), []).append(f)
        lines.append(f"- **{r['name']}**:")
        for (verdict, what), fs in groups.items():
            cases = ", ".join(f"{f['case']}" + (f" ({_judge_text(f['judge'])})"
                                                 if _judge_text(f.get("judge") or {}) else "")
                              for f in fs)
            lines.append(f"  - {verdict.replace('_', ' ')}: {what} — {cases}")
    lines.append(END)
    return "\n".join(lines)


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def rewrite_readme(league: Mapping[str, Any], readme: str | Path = README) -> None:
    """Replace the block between the ecosystem markers of ``readme`` (which must exist)."""
    path = Path(readme)
    text = path.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{path} has no {START} ... {END} block")
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    path.write_text(pattern.sub(lambda _: readme_block(league), text, count=1))


def render_html(league: Mapping[str, Any]) -> str:
    """One static page: the table, the cases x implementations matrix coloured by verdict,
    per implementation its disagreements with the judge's verdict, and its speed ratios."""
    impls = [r["name"] for r in league["implementations"]]
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>mixedref harness: the "
           "Python mixed-model ecosystem</title><style>body{font-family:sans-serif;margin:2em}"
           "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;"
           "padding:3px 6px;font-size:13px}th{background:#f4f4f4}td.n{text-align:right}"
           "</style></head><body><h1>The Python mixed-model ecosystem against lme4</h1>"]
    if league.get("wall_seconds") is not None:
        out.append(f"<p>Run wall time: {league['wall_seconds']:.0f} s.</p>")
    out.append("<h2>League</h2><table><tr><th>implementation</th><th>version</th>"
               + "".join(f"<th>{c.replace('_', ' ')}</th>" for c in COLUMNS)
               + "<th>registered</th><th>median time / lme4</th></tr>")
    for r in league["implementations"]:
        out.append(f"<tr><td>{e(r['name'])}</td><td>{e(str(r.get('version')))}</td>"
                   + "".join(f"<td class=n style='background:{COLOURS[c]}'>{r[c]}</td>"
                             for c in COLUMNS)
                   + f"<td class=n>{r.get('registered', 0)}</td>"
                   f"<td class=n>{_ratio(r.get('median_time_ratio_to_lme4'))}</td></tr>")
    out.append("</table><h2>Cases x implementations</h2><table><tr><th>case</th>"
               + "".join(f"<th>{e(i)}</th>" for i in impls) + "</tr>")
    ratios = {r["name"]: r.get("time_ratio_to_lme4") or {} for r in league["implementations"]}
    for case, row in league["cases"].items():
        cells = []
        for i in impls:
            v = row.get(i)
            if v is None:
                cells.append("<td></td>")
                continue
            t = ratios[i].get(case)
            extra = f" ({t:.2f}x)" if t is not None else ""
            cells.append(f"<td style='background:{COLOURS.get(v, '#fff')}'>"
                         f"{e(v.replace('_', ' '))}{extra}</td>")
        out.append(f"<tr><td>{e(case)}</td>{''.join(cells)}</tr>")
    out.append("</table><p>In brackets: the candidate's fit time / lme4's fit time on the case."
               "</p><h2>Disagreements and failures, with the judge's verdict</h2>")
    for r in league["implementations"]:
        found = r.get("findings") or []
        out.append(f"<h3>{e(r['name'])} ({len(found)})</h3>")
        if not found:
            out.append("<p>none</p>")
            continue
        out.append("<table><tr><th>case</th><th>verdict</th><th>what</th><th>criterion "
                   "under lme4's devfun (candidate / lme4)</th><th>under mixedref's "
                   "objective</th><th>lower</th></tr>")
        for f in found:
            j = f.get("judge") or {}
            cols = []
            for judge in ("lme4", "mixedref"):
                v = j.get(judge)
                cols.append(f"{v['candidate']:.10g} / {v['lme4']:.10g} "
                            f"({v['candidate_minus_lme4']:+.3g})" if v else "-")
            lower = (j.get("lme4") or j.get("mixedref") or {}).get("lower", "-")
            what = f.get("registered") or f.get("headline") or ""
            out.append(f"<tr><td>{e(f['case'])}</td><td>{e(f['verdict'])}</td>"
                       f"<td>{e(_short(what, 400))}</td><td>{cols[0]}</td><td>{cols[1]}</td>"
                       f"<td>{e(lower)}</td></tr>")
        out.append("</table>")
    if league.get("left_out"):
        out.append("<h2>Not installed</h2><ul>" + "".join(
            f"<li>{e(k)}: {e(v)}</li>" for k, v in league["left_out"].items()) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- command line


def main(out: str | None, keyword: str | None = None, impls: Sequence[str] | None = None,
         readme: bool = False) -> int:
    league = None
    if out:
        league = run(out, keyword, impls)
        print(league_markdown(league))
    if readme:
        if league is None:
            path = LEAGUE_DIR / "league.json"
            if not path.is_file():
                print(f"harness ecosystem: no league table at {path}; run with --out first",
                      file=sys.stderr)
                return 2
            league = json.loads(path.read_text())
        rewrite_readme(league)
        print(f"harness ecosystem: rewrote the ecosystem block of {README}", file=sys.stderr)
    if league is None:
        print("harness ecosystem: give --out DIR (run) and/or --readme", file=sys.stderr)
        return 2
    return 0
