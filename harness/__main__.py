"""Command line: ``python -m harness report --out DIR [--impl NAME ...] [--reference live|recorded]
[-k EXPR]`` runs the catalog through the reference (lme4) and the candidates, compares them and
writes the discrepancy report (report.json, report.md, index.html) to DIR, printing one
progress line per case to stderr."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any


def _matches(expr: str | None, case: Any) -> bool:
    """pytest's ``-k`` semantics on the case id and tags (substring, and/or/not)."""
    if not expr:
        return True
    names = [str(case.id), *map(str, getattr(case, "tags", ()) or ())]

    def match(sub: str, **_: Any) -> bool:
        return any(sub.lower() in n.lower() for n in names)

    try:
        from _pytest.mark.expression import Expression

        return bool(Expression.compile(expr).evaluate(match))
    except ImportError:  # pragma: no cover - pytest is a dependency
        return match(expr)


def _reference(mode: str | None) -> Any:
    from harness.adapters import Lme4Live, get_adapter

    if mode == "recorded":
        return get_adapter("lme4-recorded")
    if mode == "live" or Lme4Live().unavailable() is None:
        return get_adapter("lme4")
    print("harness report: live lme4 unavailable "
          f"({Lme4Live().unavailable()}); using recorded answers", file=sys.stderr)
    return get_adapter("lme4-recorded")


def _candidates(names: Sequence[str] | None) -> list[Any]:
    from harness.adapters import DEFAULT_IMPLS, get_adapter

    out = []
    for name in list(dict.fromkeys(names or DEFAULT_IMPLS)):
        adapter = get_adapter(name)
        reason = adapter.unavailable()
        if reason:
            print(f"harness report: {name} unavailable: {reason}", file=sys.stderr)
            continue
        out.append(adapter)
    return out


def run_cases(cases: Sequence[Any], reference: Any, candidates: Sequence[Any],
              timeout: float | None = None) -> list[dict[str, Any]]:
    """Fit every case with the reference and every candidate that can express it; compare."""
    from harness.compare import compare_records
    from harness.runner import case_data, fit_case, is_not_supported

    results = []
    for i, case in enumerate(cases, 1):
        t0 = time.perf_counter()
        try:
            data = case_data(case)
        except Exception as exc:  # noqa: BLE001 - one bad dataset must not stop the run
            print(f"[{i}/{len(cases)}] {case.id}: data unavailable: {exc}", file=sys.stderr)
            continue
        records: dict[str, Any] = {}
        comparisons: dict[str, Any] = {}
        skipped: dict[str, str] = {}
        ref_why = reference.supports(case)
        if ref_why:
            print(f"[{i}/{len(cases)}] {case.id}: reference skipped: {ref_why}", file=sys.stderr)
            continue
        ref = fit_case(reference, case, data, timeout=timeout)
        records[reference.name] = ref
        for adapter in candidates:
            why = (getattr(case, "skip", {}) or {}).get(adapter.name) or adapter.supports(case)
            if why:
                skipped[adapter.name] = str(why)
                continue
            rec = fit_case(adapter, case, data, timeout=timeout)
            if is_not_supported(rec):  # declined at fit time: a skip, not a failure
                skipped[adapter.name] = str(rec["error"])
                continue
            records[adapter.name] = rec
            comparisons[adapter.name] = compare_records(ref, rec, case)
        results.append({"case": case, "records": records, "comparisons": comparisons,
                        "data": data, "skipped": skipped})
        times = ", ".join(f"{k} {r['seconds']:.3g}s" if r.get("seconds") is not None
                          else f"{k} failed" for k, r in records.items())
        verdicts = ", ".join(f"{k}: {c.verdict}" for k, c in comparisons.items())
        skip = f"; skipped {', '.join(skipped)}" if skipped else ""
        print(f"[{i}/{len(cases)}] {case.id}: {times} | {verdicts}{skip} "
              f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness",
                                     description="mixedref harness: agreement with lme4")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="run the catalog and write the discrepancy report")
    rep.add_argument("--out", required=True, metavar="DIR", help="folder for the report files")
    rep.add_argument("--impl", action="append", metavar="NAME", nargs="+",
                     help="candidate implementation(s) (repeatable); default: the built-in "
                          "ones that load here")
    rep.add_argument("--reference", choices=("live", "recorded"), default=None,
                     help="lme4 fitted now (live) or its recorded answers; default live if R "
                          "and lme4 load, else recorded")
    rep.add_argument("-k", dest="keyword", metavar="EXPR", default=None,
                     help="only cases whose id or tags match (pytest -k syntax)")
    rep.add_argument("--catalog", metavar="PATH", default=None, help="catalog file")
    rep.add_argument("--case-timeout", type=float, default=None, metavar="SECONDS")
    rep.add_argument("--no-allfit", action="store_true",
                     help="do not ask lme4's allFit for a second opinion on disagreements")
    bk = sub.add_parser("best-known", help="the best known optimum of every case under lme4's "
                        "objective (lme4, allFit, glmmTMB, mixedref); see harness/best_known.py")
    bk.add_argument("--write", action="store_true",
                    help="write harness/references/best_known.json (with -k: replace only the "
                         "selected cases)")
    bk.add_argument("-k", dest="keyword", metavar="EXPR", default=None,
                    help="only cases whose id or tags match (pytest -k syntax; a substring)")
    bk.add_argument("--catalog", metavar="PATH", default=None, help="catalog file")
    bk.add_argument("--out", metavar="PATH", default=None, help="file to write instead")
    bk.add_argument("--allfit", choices=("auto", "always", "never"), default="auto",
                    help="run lme4's allFit: auto = except on cases tagged large")
    args = parser.parse_args(argv)

    from harness.catalog import load_catalog

    if args.command == "best-known":
        from harness import best_known

        cases = [c for c in load_catalog(args.catalog) if _matches(args.keyword, c)]
        if not cases:
            print(f"harness best-known: no case matches -k {args.keyword!r}", file=sys.stderr)
            return 2
        return best_known.main(cases, write_file=args.write, out=args.out,
                               merge=args.keyword is not None,
                               allfit={"auto": None, "always": True, "never": False}[args.allfit])

    from harness.report import write_report

    cases = [c for c in load_catalog(args.catalog) if _matches(args.keyword, c)]
    if not cases:
        print(f"harness report: no case matches -k {args.keyword!r}", file=sys.stderr)
        return 2
    impls = [n for group in (args.impl or []) for n in group] or None
    reference = _reference(args.reference)
    candidates = _candidates(impls)
    print(f"harness report: {len(cases)} case(s), reference {reference.name}, candidates "
          f"{[a.name for a in candidates]}", file=sys.stderr)
    results = run_cases(cases, reference, candidates, args.case_timeout)
    paths = write_report(results, args.out, progress=True,
                         allfit=False if args.no_allfit else "auto")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
