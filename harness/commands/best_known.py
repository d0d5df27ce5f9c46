"""The best known optimum of every catalog case, judged by lme4's own objective.

lme4's default optimizer (nloptwrap's BOBYQA) sometimes stops short of the optimum. For each
case this module collects estimates from several fitters, turns each into θ in lme4's
parametrization, and evaluates every θ under lme4's deviance function (``mkLmerDevfun`` on
``lFormula(...)``: the REML criterion or the deviance, as the case says; r_scripts/allfit.R's
``devfun_at``). The lowest value is the case's *best known* optimum. The candidates:

- ``lme4``: lmer with its defaults (r_scripts/lmer_record.R), θ = ``getME(m, "theta")``;
- ``allFit:<optimizer>``: every optimizer of lme4's ``allFit`` (r_scripts/allfit.R's
  ``allfit_best``), each its own θ; skipped for cases tagged ``large`` (InstEval: seven refits
  of ~10 s to minutes each), which the file says (``"allFit": "skipped: large case"``);
- ``glmmTMB``: glmmTMB's fit (r_scripts/glmmtmb_record.R), θ computed from its Σ and σ;
- ``mixedref``: ``mixedref.lmer(formula, data, REML=...)``, θ = ``fit.theta``.

Where lme4's default misses the best known by more than the objective tolerance
(``harness.core.tolerance.DEFAULT.objective_allowed(best)``), that is a finding about lme4.

``python -m harness best-known [--write] [-k EXPR]`` computes it (one embedded R in this
process, through harness.core.rbridge) and prints a table; ``--write`` stores it in
harness/references/best_known.json (with ``-k``, only the selected cases are replaced).
The report and the plugin read it through :func:`load_best_known`, :func:`best_known` and
:func:`lme4_findings`, which need neither R nor the fitters.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness import HOME
from harness.core.tolerance import DEFAULT, Tolerance

BEST_KNOWN_PATH = HOME / "references" / "best_known.json"
GENERATOR = "python -m harness best-known --write"

_cache: dict[str, dict[str, Any]] = {}


# ----------------------------------------------------------------------------- reading


def load_best_known(path: str | Path | None = None) -> dict[str, Any]:
    """The recorded best-known document (``{"versions", "date", "cases": {...}}``); an empty
    document (``{"cases": {}}``) when the file does not exist. Cached per path."""
    p = Path(path) if path else BEST_KNOWN_PATH
    key = str(p.resolve())
    if key not in _cache:
        try:
            _cache[key] = json.loads(p.read_text())
        except FileNotFoundError:
            return {"cases": {}}
    return _cache[key]


def best_known(case_id: str, path: str | Path | None = None) -> dict[str, Any] | None:
    """The recorded entry of ``case_id`` (criterion, best, candidates, lme4_default_gap,
    lme4_default_misses), or None when the case was not recorded."""
    return load_best_known(path).get("cases", {}).get(case_id)


def lme4_findings(path: str | Path | None = None) -> list[str]:
    """One sentence per case where lme4's default misses the best known optimum by more than
    the tolerance, e.g. "sim_corr3-corr3-ML: lme4's default deviance 1671.6 is 0.012 above the
    best known 1671.58 (allFit:nlminbwrap)"."""
    return findings_of(load_best_known(path))


def findings_of(doc: dict[str, Any]) -> list[str]:
    """:func:`lme4_findings` of a best-known document in memory."""
    out = []
    for case_id, entry in doc.get("cases", {}).items():
        if not entry.get("lme4_default_misses"):
            continue
        best = entry.get("best") or {}
        lme4 = (entry.get("candidates") or {}).get("lme4") or {}
        if lme4.get("objective") is None:
            out.append(f"{case_id}: lme4's default gave no {entry.get('criterion')} "
                       f"({lme4.get('error')}); the best known is {_num(best.get('objective'))} "
                       f"({best.get('source')})")
            continue
        out.append(f"{case_id}: lme4's default {entry.get('criterion')} "
                   f"{_num(lme4['objective'])} is {entry['lme4_default_gap']:.3g} above the best "
                   f"known {_num(best.get('objective'))} ({best.get('source')})")
    return out


def _num(x: Any) -> str:
    return "?" if x is None else f"{float(x):.10g}"


# ----------------------------------------------------------------------------- computing


def criterion_name(REML: bool) -> str:
    """lme4's name of the optimized criterion."""
    return "REML criterion" if REML else "deviance"


def summarize(candidates: dict[str, dict[str, Any]], tol: Tolerance = DEFAULT) -> dict[str, Any]:
    """best, lme4_default_gap and lme4_default_misses from the candidates' objectives under
    lme4's devfun. The best is the lowest objective (on a tie, the first candidate listed)."""
    finite = [(name, c) for name, c in candidates.items()
              if c.get("objective") is not None and math.isfinite(c["objective"])]
    if not finite:
        return {"best": None, "lme4_default_gap": None, "lme4_default_misses": None}
    name, c = min(finite, key=lambda kv: kv[1]["objective"])
    best = {"source": name, "objective": c["objective"], "theta": c.get("theta")}
    lme4 = candidates.get("lme4", {}).get("objective")
    if lme4 is None:
        return {"best": best, "lme4_default_gap": None, "lme4_default_misses": True}
    gap = float(lme4 - best["objective"])
    return {"best": best, "lme4_default_gap": gap,
            "lme4_default_misses": bool(gap > tol.objective_allowed(best["objective"]))}


def _candidate(theta: Sequence[float] | None = None, error: str | None = None,
               reported: float | None = None, seconds: float | None = None) -> dict[str, Any]:
    if theta is not None and not isinstance(theta, (list, tuple)):
        theta = [theta]  # R's one-element vector, unboxed by jsonlite
    return {"objective": None, "theta": None if theta is None else [float(t) for t in theta],
            "error": error, "reported_objective": reported, "seconds": seconds}


def evaluate_case(case: Any, *, allfit: bool | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fit ``case`` with every candidate and judge every θ by lme4's devfun (needs R).
    ``allfit``: run allFit (default: unless the case is tagged ``large``)."""
    import rpy2.robjects as ro

    from harness.adapters import get_adapter
    from harness.adapters.glmmtmb import GlmmTMBLive, unavailable_here
    from harness.core import rbridge
    from harness.core.runner import case_data, fit_case

    say = progress or (lambda s: None)
    REML = bool(case.REML)
    data = case_data(case)
    rdata = rbridge.to_r_frame(data, case.formula)
    timeout = getattr(case, "timeout", None)
    candidates: dict[str, dict[str, Any]] = {}

    t0 = time.perf_counter()
    rec = rbridge.lmer_record(rdata, case.formula, REML, case.id, timeout=timeout)
    candidates["lme4"] = _candidate(rec.get("theta"), rec.get("error"), rec.get("objective"),
                                    rec.get("seconds"))
    say(f"lme4 {time.perf_counter() - t0:.1f} s")

    large = "large" in (getattr(case, "tags", ()) or ())
    run_allfit = (not large) if allfit is None else allfit
    if run_allfit:
        t0 = time.perf_counter()
        af = json.loads(str(rbridge.call("allfit_best_json", rdata, case.formula, REML)[0]))
        if af.get("error"):
            allfit_status = f"failed: {af['error']}"
        else:
            opts = af.get("optimizers") or {}
            allfit_status = f"ran: {len(opts)} optimizers"
            for opt, r in opts.items():
                err = None
                if r.get("error"):
                    err = " ".join(str(m) for m in (r.get("messages") or [])) or "failed"
                candidates[f"allFit:{opt}"] = _candidate(
                    r.get("theta") if not r.get("error") else None, err, r.get("objective"),
                    r.get("seconds"))
        say(f"allFit {time.perf_counter() - t0:.1f} s")
    else:
        allfit_status = "skipped: large case" if large and allfit is None else "skipped: not asked"

    t0 = time.perf_counter()
    why = unavailable_here()
    if why:
        candidates["glmmTMB"] = _candidate(error=f"unavailable: {why}")
    else:
        rec = GlmmTMBLive().fit(case, rdata, timeout=timeout)  # here, on the converted data
        candidates["glmmTMB"] = _candidate(rec.get("theta"), rec.get("error"),
                                           rec.get("objective"), rec.get("seconds"))
    say(f"glmmTMB {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    rec = fit_case(get_adapter("mixedref"), case, data, timeout=timeout, use_cache=False)
    candidates["mixedref"] = _candidate(rec.get("theta"), rec.get("error"),
                                        rec.get("objective"), rec.get("seconds"))
    say(f"mixedref {time.perf_counter() - t0:.1f} s")

    named = [(k, c["theta"]) for k, c in candidates.items() if c["theta"] is not None]
    if named:
        thetas = ro.r["list"](*[ro.FloatVector(th) for _, th in named])
        values = list(rbridge.call("devfun_at", rdata, case.formula, REML, thetas))
        for (k, _), v in zip(named, values, strict=True):
            v = float(v)
            if math.isfinite(v):
                candidates[k]["objective"] = v
            elif candidates[k]["error"] is None:
                candidates[k]["error"] = "lme4's devfun gave no value at this θ"
    for c in candidates.values():
        if c["theta"] is None and c["error"] is None:
            c["error"] = "no θ reported"

    entry = {"dataset": case.dataset, "formula": case.formula, "REML": REML,
             "criterion": criterion_name(REML), "allFit": allfit_status}
    entry.update(summarize(candidates))
    entry["candidates"] = candidates
    return entry


def versions() -> dict[str, Any]:
    """R, lme4, Matrix, BLAS (the embedded R), glmmTMB, TMB, mixedref, Python, numpy, scipy."""
    import numpy
    import scipy

    import mixedref
    from harness.core import rbridge

    v: dict[str, Any] = dict(rbridge.versions())
    try:
        import rpy2.robjects as ro

        for pkg in ("glmmTMB", "TMB", "optimx", "dfoptim"):
            v[pkg] = str(ro.r(f'tryCatch(as.character(packageVersion("{pkg}")), '
                              'error = function(e) NA_character_)')[0])
    except Exception:  # noqa: BLE001 - versions are informative only
        pass
    v.update(mixedref=mixedref.__version__, python=platform.python_version(),
             numpy=numpy.__version__, scipy=scipy.__version__)
    return v


def compute(cases: Sequence[Any], *, allfit: bool | None = None,
            log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The best-known document for ``cases`` (needs R, lme4, glmmTMB)."""
    say = log or (lambda s: None)
    out: dict[str, Any] = {}
    t_all = time.perf_counter()
    for i, case in enumerate(cases, 1):
        t0 = time.perf_counter()
        steps: list[str] = []
        entry = evaluate_case(case, allfit=allfit, progress=steps.append)
        entry["seconds"] = time.perf_counter() - t0
        out[case.id] = entry
        best = entry.get("best") or {}
        flag = "  MISSES" if entry.get("lme4_default_misses") else ""
        say(f"[{i}/{len(cases)}] {case.id}: best {best.get('source')} "
            f"{_num(best.get('objective'))}, lme4 gap {_gap(entry)} ({', '.join(steps)})"
            f"{flag}")
    return {"generator": GENERATOR,
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "seconds": time.perf_counter() - t_all,
            "tolerance": "lme4_default_misses = lme4_default_gap > "
                         f"{DEFAULT.objective_abs} + {DEFAULT.objective_rel} * |best objective|",
            "versions": versions(),
            "cases": out}


def _gap(entry: dict[str, Any]) -> str:
    g = entry.get("lme4_default_gap")
    return "?" if g is None else f"{g:.3g}"


def table(doc: dict[str, Any]) -> str:
    """A plain-text table: case, lme4's default criterion, best source and criterion, gap."""
    rows = [("case", "criterion", "lme4 default", "best source", "best", "gap", "misses")]
    for case_id, e in doc.get("cases", {}).items():
        best = e.get("best") or {}
        lme4 = (e.get("candidates") or {}).get("lme4") or {}
        rows.append((case_id, e.get("criterion", ""), _num(lme4.get("objective")),
                     str(best.get("source")), _num(best.get("objective")), _gap(e),
                     "yes" if e.get("lme4_default_misses") else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def write(doc: dict[str, Any], path: str | Path | None = None, *, merge: bool = False) -> Path:
    """Write ``doc``; with ``merge``, its cases replace those of the file and the rest stay."""
    p = Path(path) if path else BEST_KNOWN_PATH
    if merge and p.exists():
        old = json.loads(p.read_text())
        cases = dict(old.get("cases", {}))
        cases.update(doc["cases"])
        doc = {**doc, "cases": cases}
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    _cache.pop(str(p.resolve()), None)
    return p


def main(cases: Sequence[Any], *, write_file: bool = False, out: str | Path | None = None,
         merge: bool = False, allfit: bool | None = None) -> int:
    """The ``best-known`` subcommand on already selected ``cases``."""
    from harness.adapters.glmmtmb import unavailable_here
    from harness.core import rbridge

    why = rbridge.unavailable()
    if why:
        print(f"harness best-known: needs R and lme4: {why}", file=sys.stderr)
        return 2
    why = unavailable_here()
    if why:
        print(f"harness best-known: glmmTMB unavailable ({why}); its candidate is left out",
              file=sys.stderr)
    doc = compute(cases, allfit=allfit, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(table(doc))
    findings = findings_of(doc)
    print(f"\n{len(findings)} case(s) where lme4's default misses the best known optimum "
          "by more than the tolerance" + (":" if findings else ""))
    for f in findings:
        print("  " + f)
    print(f"({doc['seconds']:.0f} s)")
    if write_file:
        path = write(doc, out, merge=merge)
        print(f"wrote {len(doc['cases'])} case(s) to {path}")
    return 0

