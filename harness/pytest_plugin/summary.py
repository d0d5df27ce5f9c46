"""The session summary: cases x implementations with their verdicts, counts per implementation
(agreed / disagreed / candidate-better / failed / skipped / xfail) and the list of
disagreements. Built from test reports' user_properties, so it works under pytest-xdist
(the controller sees only reports). Also the benchmark ratio line per case."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from harness.core.compare import Comparison
from harness.core.outcome import BAD as OUTCOMES_BAD
from harness.core.outcome import OUTCOMES

#: the counts' columns: every outcome (harness.core.outcome.OUTCOMES) but "error", added when it
# occurs
COLUMNS = tuple(o for o in OUTCOMES if o != "error")
_SHORT = {"agreed": "ok", "disagreed": "DIS", "candidate-better": "BETTER", "failed": "FAIL",
          "reference-failed": "NO-REF", "no-verdict": "NO-REF", "judges-disagree": "JUDGES",
          "drift": "DRIFT", "incomplete": "INCOMPL",
          "skipped": "skip", "xfail": "xfail", "xpass": "XPASS",
          "error": "ERROR"}
#: outcomes that are failures of the run printed under "disagreements and failures" (those
#: without a verdict are listed on their own)
BAD = tuple(o for o in OUTCOMES_BAD if o != "no-verdict")


def record_report(entries: dict[str, dict[str, Any]], report: Any, props: dict[str, Any]) -> None:
    """Update the entry of ``report``'s item from one phase's report."""
    item = props["harness-item"]
    entry = entries.setdefault(report.nodeid, {**item, "outcome": None, "verdict": None,
                                               "headline": "", "data": None})
    data = props.get("harness")
    if data is not None:
        entry["data"] = data if "comparison" in data else entry.get("data")
        entry["verdict"] = data["verdict"]
        entry["headline"] = data["headline"]
        entry["no_verdict"] = bool(data.get("no_verdict"))
        entry["drift"] = data.get("drift") or []
    wasxfail = hasattr(report, "wasxfail")
    if report.when == "call" or report.outcome != "passed":
        if report.skipped and wasxfail:
            entry["outcome"] = "xfail"
            entry["headline"] = entry["headline"] or str(report.wasxfail)
        elif report.skipped:
            entry["outcome"] = "no-verdict" if entry.get("no_verdict") else "skipped"
            if not entry["headline"]:
                entry["headline"] = _skip_reason(report)
        elif report.passed and wasxfail:
            entry["outcome"] = "xpass"
        elif report.failed and report.when == "call" and wasxfail:
            entry["outcome"] = "xpass"  # strict xfail that passed
        elif report.failed:
            entry["outcome"] = _failed_outcome(entry, report)
            if not entry["headline"]:
                entry["headline"] = str(getattr(report, "longreprtext", ""))[:300]
        else:
            entry["outcome"] = entry["verdict"] or "agreed"


def _failed_outcome(entry: dict[str, Any], report: Any) -> str:
    if entry.get("no_verdict") or entry["verdict"] == "reference-failed":
        return "no-verdict"
    if entry.get("drift") and entry["verdict"] in ("agreed", "candidate-better"):
        return "drift"
    if entry["verdict"] in ("disagreed", "failed", "judges-disagree", "incomplete"):
        return entry["verdict"]
    return "failed" if report.when == "call" else "error"


def _skip_reason(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def write_summary(tr: Any, entries: dict[str, dict[str, Any]]) -> None:
    """Print the cases x implementations table, the counts and the disagreements."""
    done = [e for e in entries.values() if e["outcome"]]
    if not done:
        return
    impls = list(dict.fromkeys(e["impl"] for e in done))
    cases = list(dict.fromkeys(e["case"] for e in done))
    cell: dict[tuple[str, str], str] = {(e["case"], e["impl"]): _SHORT.get(e["outcome"], "?")
                                        for e in done}
    tr.write_sep("=", "mixedref harness summary")
    width = max(len(c) for c in cases)
    widths = [max(len(i), 8) for i in impls]
    tr.write_line("  ".join(["case".ljust(width)] + [i.ljust(w) for i, w in
                                                      zip(impls, widths, strict=True)]))
    for case in cases:
        tr.write_line("  ".join([case.ljust(width)] + [cell.get((case, i), "").ljust(w) for i, w in
                                                        zip(impls, widths, strict=True)]))
    tr.write_line("")
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for e in done:
        counts[e["impl"]][e["outcome"]] += 1
    cols = [c for c in COLUMNS if any(counts[i][c] for i in impls)] or ["agreed"]
    if any(counts[i]["error"] for i in impls):
        cols.append("error")
    iw = max(len(i) for i in impls + ["implementation"])
    tr.write_line("  ".join(["implementation".ljust(iw)] + [c.rjust(len(c)) for c in cols]))
    for i in impls:
        tr.write_line("  ".join([i.ljust(iw)] + [str(counts[i][c]).rjust(len(c)) for c in cols]))
    bad = [e for e in done if e["outcome"] in BAD]
    if bad:
        tr.write_line("")
        tr.write_line(f"disagreements and failures ({len(bad)}):", red=True)
        for e in bad:
            sep = " " if str(e["headline"]).startswith("in ") else ": "
            tr.write_line(f"  {e['case']} [{e['impl']}]: {e['outcome']}{sep}"
                          f"{_one_line(e['headline'])}")
    drifted = [e for e in done if e.get("drift")]
    if drifted:
        tr.write_line("")
        tr.write_line(f"drift since the baseline ({len(drifted)}):", red=True)
        for e in drifted:
            moved = ", ".join(f"{r['name']} {r['difference']:+.3g}" if r.get("difference")
                              is not None else r["name"] for r in e["drift"][:6])
            tr.write_line(f"  {e['case']} [{e['impl']}]: {moved}")
    missing = [e for e in done if e["outcome"] == "no-verdict"]
    if missing:
        tr.write_line("")
        tr.write_line(f"items without a verdict (no reference answer): {len(missing)}", red=True)
        for e in missing:
            tr.write_line(f"  {e['case']} [{e['impl']}]: {_one_line(e['headline'])}")
    _write_findings(tr, done)
    better = [e for e in done if e["outcome"] == "candidate-better"]
    if better:
        tr.write_line("")
        tr.write_line(f"findings about the reference: candidate reached a lower objective "
                      f"({len(better)}):", yellow=True)
        for e in better:
            tr.write_line(f"  {e['case']} [{e['impl']}]: {_one_line(e['headline'])}")


def _write_findings(tr: Any, done: list[dict[str, Any]]) -> None:
    """The registered disagreements, one finding at a time: its id and cause once, then the
    items and quantities it covered."""
    found: dict[tuple[Any, str, str], list[str]] = {}
    for e in done:
        if e["outcome"] != "xfail":
            continue
        for f in (e.get("data") or {}).get("findings") or []:
            names = [r["name"] for r in f["rows"]]
            shown = ", ".join(names[:6]) + (f" (+{len(names) - 6} more)" if len(names) > 6
                                            else "")
            found.setdefault((f["finding"], e["impl"], f["cause"]), []).append(
                f"{e['case']}: {shown}")
    if not found:
        return
    tr.write_line("")
    tr.write_line(f"registered disagreements, by finding ({len(found)}):")
    for (fid, impl, cause), items in found.items():
        tr.write_line(f"  {fid or '(flat entry)'} [{impl}], {len(items)} item(s): "
                      f"{_one_line(cause, 200)}")
        for item in items:
            tr.write_line(f"    {_one_line(item, 200)}")


def _one_line(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def results_for_report(entries: dict[str, dict[str, Any]],
                       cases: dict[str, Any]) -> list[dict[str, Any]]:
    """[{case, records: {impl: record}, comparisons: {impl: Comparison}, skipped: {impl: why},
    errors: {impl: {outcome, headline, crashed}}}] per case, for
    harness.commands.report.write_report.

    An item with a comparison brings its records; a skipped one its reason; one that ended
    without a comparison (a crashed xdist worker, an error, no reference answer) is listed
    under ``errors``, so the report shows it rather than leaving it out."""
    out: dict[str, dict[str, Any]] = {}
    for e in entries.values():
        if not e.get("outcome"):
            continue
        res = out.setdefault(e["case"], {"case": cases.get(e["case"], e["case"]), "records": {},
                                         "comparisons": {}, "skipped": {}, "errors": {}})
        data = e.get("data")
        if data and "comparison" in data:
            ref = data["reference_record"]
            res["records"].setdefault(ref["impl"], ref)
            res["records"][e["impl"]] = data["record"]
            comparison = dict(data["comparison"])
            comparison.pop("registered", None)  # outcome.Decision.props' mark, not a field
            res["comparisons"][e["impl"]] = Comparison.from_dict(comparison)
            if data.get("findings"):
                res.setdefault("registered", {})[e["impl"]] = data["findings"]
        elif e["outcome"] in ("skipped", "xfail"):
            res["skipped"][e["impl"]] = str(e.get("headline") or e["outcome"])
        else:
            res["errors"][e["impl"]] = {"outcome": e["outcome"], "crashed": bool(e.get("crashed")),
                                        "headline": _one_line(e.get("headline") or "")}
    return [r for r in out.values() if r["records"] or r["errors"]]


#: the benchmark table's first columns, in this order; other implementations follow by name
BENCH_FIRST = ("lme4", "mixedref", "glmm", "mixedlm")


def benchmark_medians(benches: Any) -> dict[str, dict[str, float]]:
    """Median seconds per case (the benchmark's group) and implementation."""
    medians: dict[str, dict[str, float]] = defaultdict(dict)
    for b in benches or []:
        stats = getattr(b, "stats", None)
        if stats is None or not b.group:
            continue
        impl = (getattr(b, "extra_info", None) or {}).get("impl") \
            or str(b.name).rsplit("-", 1)[-1].rstrip("]")
        medians[b.group][impl] = float(stats.median)
    return dict(medians)


def benchmark_table(medians: dict[str, dict[str, float]]) -> list[str]:
    """Cases x implementations side by side: each cell the median fit time in ms and its ratio
    to lme4's (lme4, mixedref, glmm and mixedlm first), then mixedref/lme4, and a last row with
    each implementation's geometric mean ratio to lme4 over the cases both fitted."""
    impls = [i for i in BENCH_FIRST if any(i in m for m in medians.values())]
    impls += sorted({i for m in medians.values() for i in m} - set(impls))
    head = ["case", *impls, "mixedref/lme4"]
    rows = []
    logs: dict[str, list[float]] = defaultdict(list)
    for case, m in medians.items():
        lme4 = m.get("lme4")
        cells = [case]
        for impl in impls:
            v = m.get(impl)
            if v is None:
                cells.append("-")
                continue
            cell = f"{v * 1e3:.1f} ms"
            if lme4 and impl != "lme4":
                cell += f" ({v / lme4:.2f}x)"
                logs[impl].append(math.log(v / lme4))
            cells.append(cell)
        mine = m.get("mixedref")
        cells.append(f"{mine / lme4:.2f}" if mine and lme4 else "n/a")
        rows.append(cells)
    geo = ["geometric mean x lme4"] + [
        f"{math.exp(sum(logs[i]) / len(logs[i])):.2f}x ({len(logs[i])})" if logs.get(i) else "-"
        for i in impls] + [""]
    widths = [max(len(r[k]) for r in [head, *rows, geo]) for k in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(head), *(line(r) for r in rows), line(geo)]


def write_benchmark_ratios(tr: Any, config: Any) -> None:
    """The benchmark table (benchmark_table): median fit times side by side, x lme4."""
    bs = getattr(config, "_benchmarksession", None)
    medians = benchmark_medians(getattr(bs, "benchmarks", None))
    if not medians:
        return
    tr.write_sep("-", "mixedref harness: median fit times, x lme4 (BLAS and OpenMP on 1 thread)")
    for text in benchmark_table(medians):
        tr.write_line(text)
