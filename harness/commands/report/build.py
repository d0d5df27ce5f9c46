"""The report's content as plain data: per case the records, the comparisons, the
cross-evaluation and (for disagreements) the diagnostics and lme4's allFit second opinion.

Everything the three outputs (json, md, html) show is computed here once; the writers only
format it.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from harness.commands.certified_report import report_summary
from harness.commands.report import findings as report_findings
from harness.core import crosseval as cx
from harness.core import diagnostics as dg
from harness.core import judge
from harness.core.compare import AGREED, SEVERITY  # the verdicts, worst first
from harness.core.judge.theta import TermLayout, sigma_of


def _plain(x: Any) -> Any:
    """JSON-ready copy: numpy scalars/arrays, dataclasses, tuples, non-finite floats -> None."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _plain(dataclasses.asdict(x))
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple | set):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        return _plain(x.item())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, str | int | bool):
        return x
    return str(x)


def case_dict(case: Any) -> dict[str, Any]:
    """The catalog case's fields (a Case dataclass, a mapping or any object with the names)."""
    if isinstance(case, Mapping):
        return _plain(case)
    if dataclasses.is_dataclass(case):
        return _plain(case)
    names = ("id", "dataset", "spec", "formula", "REML", "method", "notes", "expect", "xfail",
             "skip", "tags", "timeout")
    return _plain({n: getattr(case, n) for n in names if hasattr(case, n)})


def _row_dict(row: Any) -> dict[str, Any]:
    if isinstance(row, Mapping):
        d = dict(row)
    elif dataclasses.is_dataclass(row):
        d = dataclasses.asdict(row)
    elif hasattr(row, "_asdict"):
        d = row._asdict()
    else:
        d = {k: getattr(row, k, None)
             for k in ("name", "reference", "candidate", "difference", "allowed", "ok")}
    d = _plain(d)
    diff, allowed = d.get("difference"), d.get("allowed")
    if d.get("scaled") is None and isinstance(diff, int | float) and isinstance(
            allowed, int | float) and allowed > 0:
        d["scaled"] = abs(diff) / allowed
    return d


def comparison_dict(comp: Any) -> dict[str, Any] | None:
    """A Comparison (harness/core/compare.py) or a mapping with the same names, as plain data."""
    if comp is None:
        return None
    get = comp.get if isinstance(comp, Mapping) else (lambda k, d=None: getattr(comp, k, d))
    rows = [_row_dict(r) for r in (get("rows") or [])]
    worst = get("worst_scaled")
    if worst is None:
        scaled = [r["scaled"] for r in rows if r.get("scaled") is not None
                  and r.get("ok") is not None]
        worst = max(scaled) if scaled else None
    out = {"verdict": get("verdict"), "ok": get("ok"), "worst_scaled": worst, "rows": rows}
    fmt = get("format_table")
    out["table"] = fmt() if callable(fmt) else get("table")
    for extra in ("reference_impl", "candidate_impl", "error", "notes"):
        if get(extra) is not None:
            out[extra] = get(extra)
    return _plain(out)


def case_verdict(comparisons: Mapping[str, Mapping | None], cross: cx.CrossEval | None) -> str:
    """The worst comparison verdict; without comparisons, the cross-evaluation's."""
    verdicts = [c["verdict"] for c in comparisons.values() if c and c.get("verdict")]
    if verdicts:
        return min(verdicts, key=lambda v: SEVERITY.index(v) if v in SEVERITY else 0)
    if cross is None or cross.best is None:
        return "failed"
    return "disagreed" if cross.disagree() else AGREED


def _default_builder(formula: str, data: Any) -> Any:
    from mixedref.frontend.design import build_model

    return build_model(formula, data)


def _heatmaps(case: Any, data: Any, records: Mapping[str, Mapping], cross: cx.CrossEval,
              model_builder: Callable[[str, Any], Any]) -> dict[str, Any] | None:
    """Var(y_i) = σ²(Z_i Λ Λᵀ Z_iᵀ + I) for the first level of the first random-slope term,
    as each implementation's estimate implies it (None when the model has no slope term)."""
    try:
        frame = model_builder(case.formula, data)
    except Exception as exc:  # noqa: BLE001 - a missing heat map must not lose the report
        return {"error": f"model matrices unavailable: {type(exc).__name__}: {exc}"}
    layout = [TermLayout(t.group, tuple(t.columns)) for t in frame.reterms]
    slope = next((t for t in frame.reterms if t.q >= 2), None)
    if slope is None:
        return None
    rows = np.flatnonzero(slope.codes == 0)
    out: dict[str, Any] = {"group": slope.group, "level": str(slope.levels[0]),
                           "columns": list(slope.columns), "matrices": {}}
    for impl, est in cross.estimates.items():
        sigma = sigma_of(records[impl])
        th = est.theta if est.theta is not None else est.theta_reported
        if th is None or sigma is None:
            continue
        V = dg.marginal_covariance(th, sigma, layout, [t.X for t in frame.reterms],
                                   [t.codes for t in frame.reterms], rows)
        out["matrices"][impl] = V.tolist()
    return out


def build_case(
    entry: Mapping[str, Any],
    *,
    data_loader: Callable[[Any], Any] | None = None,
    objective_factory: cx.ObjectiveFactory = judge.objective_for,
    allfit: bool | str = "auto",
    model_builder: Callable[[str, Any], Any] | None = None,
    lme4_judge: bool | str = "auto",
) -> dict[str, Any]:
    """One case's section of the report from a results entry
    {"case": Case, "records": {impl: record}, "comparisons": {impl: Comparison}, "data"?}.

    ``model_builder`` (formula, data) -> ModelFrame defaults to
    mixedref.frontend.design.build_model;
    ``objective_factory`` (formula, data, REML) -> (θ -> criterion) to mixedref's objective;
    ``allfit``: True, False or "auto" (when R is usable) runs lme4's allFit on disagreements;
    ``lme4_judge`` likewise evaluates every estimate under lme4's devfun too (the second judge).
    """
    records = {k: dict(v) for k, v in (entry.get("records") or {}).items()}
    case = entry["case"]
    if isinstance(case, str):  # a case id the catalog no longer knows
        reml = next((r.get("REML") for r in records.values() if r.get("REML") is not None),
                    True)
        case = SimpleNamespace(id=case, formula=None, REML=reml, dataset=None)
    comparisons = {k: comparison_dict(v) for k, v in (entry.get("comparisons") or {}).items()}
    data = entry.get("data")
    notes: list[str] = []
    if data is None and data_loader is not None:
        try:
            data = data_loader(case)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"data could not be loaded: {type(exc).__name__}: {exc}")

    objective = None
    layout = None
    cross = None
    glmm = getattr(case, "family", None) is not None
    try:
        if data is None or case.formula is None:
            raise RuntimeError("no data or formula for this case")
        if not records:
            raise RuntimeError("no implementation finished this case")
        if not glmm:  # a GLMM's criterion is not profiled over β: cross_evaluate_glmm
            objective = objective_factory(case.formula, data, bool(case.REML))
        layout = cx._layout(case, data, records, model_builder)  # noqa: SLF001
    except Exception as exc:  # noqa: BLE001
        notes.append(f"common objective unavailable: {type(exc).__name__}: {exc}")
    if glmm and layout is not None:
        cross = cx.cross_evaluate_glmm(case, records, data, layout=layout)
    elif objective is not None and layout is not None:
        cross = cx.cross_evaluate(case, records, data, objective=objective, layout=layout,
                                  second=_lme4_judge(case, data, lme4_judge))
    else:
        cross = cx.CrossEval(case_id=str(case.id), theta_names=[], estimates={},
                             reference=None, error="; ".join(notes),
                             criterion="REML criterion" if case.REML else "deviance")

    verdict = case_verdict(comparisons, cross)
    if entry.get("errors"):  # an item that crashed or failed without a comparison
        verdict = "failed"
    disagreement = verdict != AGREED or cross.disagree()
    if (verdict in ("disagreed", "candidate-better") and cross.best is not None
            and cross.conclusive and not cross.disagree()):
        cross.findings.append(
            f"Every estimate reaches the same {cross.criterion} within {cross.tolerance:.2g}: "
            "the differing parameters lie along a flat direction of the objective (a weakly "
            "identified or boundary estimate), or are not the ones the estimate's θ implies "
            "(β and σ follow from θ); no optimizer stopped short.")
    out: dict[str, Any] = {
        "case": case_dict(case),
        "implementations": list(records),
        "skipped": dict(entry.get("skipped") or {}),
        "registered": _plain(dict(entry.get("registered") or {})),  # {impl: findings covered}
        "errors": _plain(dict(entry.get("errors") or {})),
        "verdict": verdict,
        "disagreement": disagreement,
        "records": records,
        "comparisons": comparisons,
        "crosseval": cross.to_dict(),
        "worst_scaled": _worst(comparisons),
        "seconds": {k: r.get("seconds") for k, r in records.items()},
        "notes": notes,
        "diagnostics": None,
        "allfit": None,
        "heatmap": None,
    }
    out["truth"], out["best_known_rule"] = _truth_and_rule(case, records)
    if objective is not None and layout is not None and cross.best is not None:
        out["diagnostics"] = dg.diagnose(cross, objective, layout, profiles=disagreement)
    if disagreement and data is not None and not glmm:  # θ-profile views: LMMs only
        if cross.estimates:
            out["heatmap"] = _heatmaps(case, data, records, cross,
                                       model_builder or _default_builder)
        if allfit is True or (allfit == "auto" and _r_usable()):
            out["allfit"] = cx.allfit_second_opinion(case, data)
    return _plain(out)


def _truth_and_rule(case: Any, records: Mapping[str, Any]) -> tuple[Any, str | None]:
    """The case's distances from the truth (harness.core.truth.truth_table; None without a truth)
    and, for a Gamma or inverse-Gaussian GLMM, the recorded best known in one line."""
    from harness.core.judge import scale_family
    from harness.core.truth import truth_table

    table = rule = entry = None
    if getattr(case, "family", None) in scale_family.FAMILIES:
        entry = scale_family.recorded(str(case.id))
        rule = scale_family.summary_line(entry) if entry else (
            "no best known recorded (python -m harness best-known -k <case> --write)")
    if getattr(case, "dataset", None) is not None:
        ref = next((k for k in ("lme4", "lme4-recorded") if k in records), None)
        named = dict(records) if ref in (None, "lme4") else {
            ("lme4" if k == ref else k): v for k, v in records.items()}
        if entry and ref is not None:  # the best-known run's other fitters (glmmTMB) too
            for name, c in (entry.get("candidates") or {}).items():
                if name not in named and c.get("estimate"):
                    named[f"{name} (best-known run)"] = scale_family.estimate_record(
                        c["estimate"], named["lme4"])
        table = truth_table(case, named)
    return table, rule


def _r_usable() -> bool:
    """True when the R worker lane has R and lme4 (R is never started in this process)."""
    from harness.core import isolation

    out = isolation.call("R", "harness.core.rbridge:unavailable", timeout=60)
    return out.error is None and out.value is None


def _lme4_judge(case: Any, data: Any, wanted: bool | str) -> cx.SecondObjective | None:
    """lme4's devfun at many θ for this case, or None when not wanted or R is unusable."""
    if wanted is False or (wanted == "auto" and not _r_usable()):
        return None
    return lambda thetas: judge.lme4_objective_at(case, data, thetas)


def _worst(comparisons: Mapping[str, Mapping | None]) -> float | None:
    vals = [c["worst_scaled"] for c in comparisons.values()
            if c and isinstance(c.get("worst_scaled"), int | float)]
    return max(vals) if vals else None


def build_report(results: Sequence[Mapping[str, Any]], *, progress: bool = False,
                 environment: Mapping[str, Any] | None = None,
                 completeness: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> dict[str, Any]:
    """The whole report: completeness, summary counts, the cases, the environment.

    ``completeness`` (harness.core.journal.completeness: planned, finished, crashed, interrupted,
    reason) says whether the run behind the report finished; without it the report counts its
    own items as a complete run (plus the crashed ones its results name)."""
    from harness.core import environment as env_mod

    cases = []
    for entry in results:
        cases.append(build_case(entry, **kwargs))
        if progress:
            print(f"report: cross-evaluated {cases[-1]['case'].get('id')}", file=sys.stderr)
    all_records = [r for c in cases for r in c["records"].values()]
    counts: dict[str, int] = {}
    for c in cases:
        counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
    if completeness is None:
        from harness.core.journal import completeness as _completeness

        items = {f"{c['case'].get('id')}[{impl}]": {"outcome": "done", "crashed": err.get(
            "crashed")} for c in cases for impl, err in
            [*((k, {}) for k in c["comparisons"]), *(c.get("errors") or {}).items()]}
        completeness = _completeness(items, None, False, None)
    return {
        "schema": 1,
        "completeness": _plain(completeness),
        "counts": counts,
        "cases": cases,
        "findings": report_findings.collect(cases),
        "best_known": best_known_summary([str(c["case"].get("id")) for c in cases]),
        "certified": report_summary(cases),  # worst LRE against the certified truth
        "environment": _plain(environment) if environment is not None
        else env_mod.collect(all_records),
    }


def best_known_summary(case_ids: Sequence[str]) -> dict[str, Any]:
    """The best known optimum of the report's cases (harness/references/best_known.json): how
    many were recorded, and a finding per case where lme4's default misses it."""
    from harness.commands import best_known as bk

    doc = bk.load_best_known()
    recorded = {k: v for k, v in doc.get("cases", {}).items() if k in set(case_ids)}
    return {"recorded": len(recorded), "date": doc.get("date"),
            "findings": bk.findings_of({"cases": recorded})}


def gap_summary(case: Mapping[str, Any]) -> str:
    """'best: lme4; mixedref +3.2e-04' — the objective gaps beyond the tolerance."""
    cross = case.get("crosseval") or {}
    best = cross.get("best")
    if best is None:
        return "n/a" if not cross.get("error") else "not evaluated"
    tol = cross.get("tolerance") or 0.0
    prefix = "" if cross.get("conclusive", True) else "INCONCLUSIVE (objective fails at some "\
        "estimate); "
    gaps = [(k, e["gap"]) for k, e in cross["estimates"].items()
            if e.get("gap") is not None and e["gap"] > tol]
    if not gaps:
        return prefix + f"none (all within {tol:.2g})"
    return prefix + f"best: {best}; " + ", ".join(f"{k} +{g:.3g}" for k, g in sorted(
        gaps, key=lambda kv: -kv[1]))
