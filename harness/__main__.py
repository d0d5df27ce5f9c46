"""Command line: ``python -m harness report --out DIR [--impl NAME ...] [--reference live|recorded]
[-k EXPR]`` runs the catalog through the reference (lme4) and the candidates, compares them and
writes the discrepancy report (report.json, report.md, index.html) to DIR, printing one
progress line per case to stderr. Each finished item is journaled in DIR.partial/ (see
harness.core.journal); an interrupted run (SIGINT, SIGTERM) writes a report marked partial and
exits non-zero, and ``python -m harness report --resume DIR`` continues it (also a
``pytest --report DIR`` run)."""

from __future__ import annotations

import argparse
import os
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


def item_id(case: Any, impl: str, reference: Any) -> str:
    """The journal's id of one (case, candidate) item of ``python -m harness report``."""
    return f"{case.id}[{impl}-vs-{reference.name}]"


def run_cases(cases: Sequence[Any], reference: Any, candidates: Sequence[Any],
              timeout: float | None = None, *, journal: Any = None,
              done: Any = (), registry: Any = None) -> list[dict[str, Any]]:
    """Take every (case, candidate) item down the one road to its outcome (harness.core.outcome,
    as the pytest items do: judged, compared, the registry applied).

    With a ``journal`` (harness.core.journal.Journal) each finished (case, candidate) item is
    appended to it as it finishes; items whose id (:func:`item_id`) is in ``done`` are not
    run again (a resumed run)."""
    from harness.core.outcome import decide
    from harness.core.runner import case_data

    def log(case: Any, impl: str, outcome: str, headline: str, data: Any = None,
            verdict: str | None = None) -> None:
        if journal is not None:
            journal.append(item_id(case, impl, reference), {
                "case": case.id, "impl": impl, "reference": reference.name, "outcome": outcome,
                "verdict": verdict, "headline": headline, "data": data})

    from harness.adapters.certified import certified_reference

    results = []
    lme4 = reference
    for i, case in enumerate(cases, 1):
        # a certified case is judged against its exact truth, lme4 one more candidate there
        reference = certified_reference(case) or lme4
        cands = [*candidates, lme4] if reference is not lme4 else candidates
        todo = [a for a in cands if item_id(case, a.name, reference) not in done]
        if not todo and candidates:
            continue
        t0 = time.perf_counter()
        try:
            data = case_data(case)
        except Exception as exc:  # noqa: BLE001 - one bad dataset must not stop the run
            print(f"[{i}/{len(cases)}] {case.id}: data unavailable: {exc}", file=sys.stderr)
            for a in todo:
                log(case, a.name, "error", f"data unavailable: {exc}")
            continue
        records: dict[str, Any] = {}
        comparisons: dict[str, Any] = {}
        skipped: dict[str, str] = {}
        outcomes: dict[str, str] = {}
        for adapter in todo:
            d = decide(case, adapter, reference, data=data, timeout=timeout, registry=registry)
            if d.reference_record is not None:
                records[reference.name] = d.reference_record
            if d.outcome == "skipped":
                skipped[adapter.name] = d.headline
                log(case, adapter.name, "skipped", d.headline)
                continue
            outcomes[adapter.name] = d.outcome
            if d.comparison is None:
                log(case, adapter.name, d.outcome, d.headline)
                continue
            records[adapter.name] = d.record
            comparisons[adapter.name] = d.comparison
            log(case, adapter.name, d.outcome, d.headline, verdict=d.comparison.verdict,
                data=d.props())
        results.append({"case": case, "records": records, "comparisons": comparisons,
                        "data": data, "skipped": skipped})
        times = ", ".join(f"{k} {r['seconds']:.3g}s" if r.get("seconds") is not None
                          else f"{k} failed" for k, r in records.items())
        verdicts = ", ".join(f"{k}: {o}" for k, o in outcomes.items())
        skip = f"; skipped {', '.join(skipped)}" if skipped else ""
        print(f"[{i}/{len(cases)}] {case.id}: {times} | {verdicts}{skip} "
              f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    return results


def _registry(catalog: str | None) -> Any:
    """The shipped divergence registry when the shipped catalog runs (as the pytest plugin
    does), else None."""
    from harness.core import divergences
    from harness.core.catalog import load_catalog
    from harness.core.comparators import BUILTIN, quantities_of

    path = divergences.registry_for(catalog)
    if path is None:
        return None
    return divergences.load_registry(path, [c.id for c in load_catalog()],
                                     quantities_of(BUILTIN))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness",
                                     description="mixedref harness: agreement with lme4")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="run the catalog and write the discrepancy report")
    rep.add_argument("--out", metavar="DIR", default=None,
                     help="folder for the report files (replaced as a whole at the end; the "
                          "finished items are journaled in DIR.partial/ meanwhile)")
    rep.add_argument("--resume", metavar="DIR", default=None,
                     help="continue the interrupted run (this command's or pytest --report's) "
                          "whose report folder is DIR: run only the items its journal "
                          "DIR.partial/records.jsonl lacks, then write the whole report")
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
                        "objective (lme4, allFit, glmmTMB, mixedref); see "
                        "harness/commands/best_known.py")
    bk.add_argument("--write", action="store_true",
                    help="write harness/references/best_known.json (with -k: replace only the "
                         "selected cases)")
    bk.add_argument("-k", dest="keyword", metavar="EXPR", default=None,
                    help="only cases whose id or tags match (pytest -k syntax; a substring)")
    bk.add_argument("--catalog", metavar="PATH", default=None, help="catalog file")
    bk.add_argument("--out", metavar="PATH", default=None, help="file to write instead")
    bk.add_argument("--allfit", choices=("auto", "always", "never"), default="auto",
                    help="run lme4's allFit: auto = except on cases tagged large")
    eco = sub.add_parser("ecosystem", help="the league table: the catalog through lme4, "
                         "mixedref, statsmodels and the installed PyPI peers "
                         "(harness/commands/ecosystem.py)")
    eco.add_argument("--out", metavar="DIR", default=None,
                     help="run, and write league.json and index.html to DIR")
    eco.add_argument("-k", dest="keyword", metavar="EXPR", default=None,
                     help="only items matching (pytest -k syntax)")
    eco.add_argument("--impl", action="append", metavar="NAME", default=None,
                     help="only these implementations (repeatable); default: the whole league")
    eco.add_argument("--readme", action="store_true",
                     help="rewrite README.md's ecosystem block from the table (the one just "
                          "written, else harness/references/league/league.json)")
    eco.add_argument("--env-dir", metavar="DIR", default=None,
                     help="where each PyPI peer's own virtual environment is built and kept "
                          "(default: $XDG_CACHE_HOME/mixedref-harness/envs)")
    eco.add_argument("--rebuild-envs", action="store_true",
                     help="build the peers' environments again even when they exist")
    eco.add_argument("--releases", type=int, metavar="N", default=None,
                     help="the version axis: run each PyPI peer (or --impl's) at its last N "
                          "releases that install here, one environment each, into --out DIR "
                          "(DIR/<peer>/<release>/), and compare consecutive releases case by "
                          "case (harness/commands/release_league.py)")
    eco.add_argument("--older-only", action="store_true",
                     help="with --releases: leave out the pinned release, whose verdicts come "
                          "from the committed league (compared by verdict only)")
    eco.add_argument("--compare-releases", metavar="DIR", default=None,
                     help="rewrite DIR/versions.json and DIR/index.html from the release runs "
                          "already in DIR, running nothing")
    eco.add_argument("--harness-env", action="store_true",
                     help="run the peers in the harness's own environment instead of one "
                          "environment each (they then see its packages, e.g. scikit-sparse)")
    div = sub.add_parser("divergences", help="the registry of findings: measure its rows' "
                         "sizes (harness/commands/divergences_measure.py)")
    div.add_argument("--measure", action="store_true", required=True,
                     help="fit each registered row's cases with its implementation and print "
                          "what changed (grown, shrunk, stopped firing)")
    div.add_argument("--write", action="store_true",
                     help="write the measured sizes into the registry file")
    div.add_argument("--impl", action="append", metavar="NAME", default=None,
                     help="only this implementation's rows (repeatable)")
    div.add_argument("-k", dest="keyword", metavar="EXPR", default=None,
                     help="only cases whose id or tags match (pytest -k syntax)")
    div.add_argument("--catalog", metavar="PATH", default=None, help="catalog file")
    div.add_argument("--divergences", metavar="FILE", default=None,
                     help="registry file (default: the shipped one for the shipped catalog)")
    div.add_argument("--reference", choices=("live", "recorded"), default="recorded",
                     help="lme4 fitted now or its recorded answers (default, as the registry's "
                          "sizes were measured)")
    div.add_argument("--impl-python", action="append", metavar="NAME=PYTHON", default=[],
                     help="fit NAME with this interpreter (a peer in its own environment)")
    rp = sub.add_parser("repro", help="a standalone reproducer of one case fitted by one Python "
                        "package, for its maintainers (harness/commands/repro.py)")
    rp.add_argument("case", nargs="?", metavar="CASE", help="a catalog case id")
    rp.add_argument("impl", nargs="?", metavar="IMPL",
                    help="statsmodels or a PyPI peer (python -m harness ecosystem's league)")
    rp.add_argument("--out", metavar="DIR", default=None,
                    help="the reproducer's folder (data.csv, repro.py, README.md)")
    rp.add_argument("--findings", action="store_true",
                    help="one reproducer per registered finding about a Python package, in "
                         "DIR/<finding id>/ (the finding's first row's case)")
    rp.add_argument("--catalog", metavar="PATH", default=None, help="catalog file")
    args = parser.parse_args(argv)

    if args.command == "repro":
        from harness.commands import repro

        return repro.main(args.case, args.impl, args.out, findings=args.findings,
                          catalog=args.catalog)
    if args.command == "divergences":
        return _divergences(args)
    if args.command == "ecosystem" and (args.releases or args.compare_releases):
        from harness.commands import release_league

        if args.compare_releases:
            return release_league.main(args.compare_releases, args.releases or 3,
                                       args.keyword, args.impl, older_only=args.older_only,
                                       env_dir=args.env_dir, run=False)
        if not args.out:
            print("harness ecosystem: --releases needs --out DIR", file=sys.stderr)
            return 2
        return release_league.main(args.out, args.releases, args.keyword, args.impl,
                                   older_only=args.older_only, env_dir=args.env_dir)
    if args.command == "ecosystem":
        from harness.commands import ecosystem

        return ecosystem.main(args.out, args.keyword, args.impl, readme=args.readme,
                              env_dir=args.env_dir, own_envs=not args.harness_env,
                              rebuild_envs=args.rebuild_envs)

    from harness.core.catalog import load_catalog

    if args.command == "best-known":
        from harness.commands import best_known

        cases = [c for c in load_catalog(args.catalog) if _matches(args.keyword, c)]
        if not cases:
            print(f"harness best-known: no case matches -k {args.keyword!r}", file=sys.stderr)
            return 2
        return best_known.main(cases, write_file=args.write, out=args.out,
                               merge=args.keyword is not None,
                               allfit={"auto": None, "always": True, "never": False}[args.allfit])

    return _report(args, list(sys.argv[1:] if argv is None else argv))


def _divergences(args: Any) -> int:
    """``python -m harness divergences --measure [--write]``: measure the registry's rows."""
    from harness.adapters import set_interpreters
    from harness.commands import divergences_measure as dm
    from harness.core import divergences
    from harness.core.catalog import load_catalog
    from harness.core.comparators import BUILTIN, quantities_of

    path = args.divergences or divergences.registry_for(args.catalog)
    if path is None:
        print("harness divergences: a catalog of your own needs --divergences FILE",
              file=sys.stderr)
        return 2
    try:
        set_interpreters(dm.parse_interpreters(args.impl_python))
        catalog = load_catalog(args.catalog)
        registry = divergences.load_registry(path, [c.id for c in catalog],
                                             quantities_of(BUILTIN))
    except (ValueError, divergences.RegistryError) as exc:
        print(f"harness divergences: {exc}", file=sys.stderr)
        return 2
    cases = [c for c in catalog if _matches(args.keyword, c)]
    measured = dm.measure(registry, cases, _reference(args.reference), impls=args.impl)
    print(measured.report())
    if args.write:
        try:
            unwritten = dm.write_sizes(path, measured)
        except ValueError as exc:
            print(f"harness divergences: {exc}", file=sys.stderr)
            return 2
        for label in unwritten:
            print(f"not written (not a one-line row): {label}")
        print(f"wrote {path}")
    return 1 if measured.needs_attention else 0


def _fail(message: str, code: int = 2) -> int:
    print(f"harness report: {message}", file=sys.stderr)
    return code


def _report(args: Any, argv: list[str]) -> int:
    """The ``report`` subcommand (fresh, or ``--resume DIR``)."""
    from harness.core import journal as jn

    if args.resume:
        return _resume(args.resume)
    if not args.out:
        return _fail("give --out DIR (or --resume DIR)")
    resume = os.environ.get(jn.RESUME_ENV) == os.path.abspath(args.out)
    from harness.core.catalog import load_catalog

    cases = [c for c in load_catalog(args.catalog) if _matches(args.keyword, c)]
    if not cases:
        return _fail(f"no case matches -k {args.keyword!r}")
    command = jn.command_line(["python -m harness", *argv])
    try:  # before any fit: the folder is writable and no other run uses it
        jn.check_writable(args.out, "--out")
        note = jn.acquire_lock(args.out, command, "--out")
    except jn.JournalError as exc:
        return _fail(str(exc))
    if note:
        print(f"harness report: {note}", file=sys.stderr)
    journal = jn.Journal(args.out, kind="report", command=command, argv=argv, resume=resume)
    try:
        return _run_report(args, cases, journal)
    finally:
        journal.close()
        jn.release_lock(args.out)


def _run_report(args: Any, cases: list[Any], journal: Any) -> int:
    from harness.commands.report import write_report
    from harness.core import isolation
    from harness.core import journal as jn
    from harness.pytest_plugin.summary import results_for_report

    restore_sigterm = jn.handle_sigterm()
    reason = None
    try:
        impls = [n for group in (args.impl or []) for n in group] or None
        reference = _reference(args.reference)
        candidates = _candidates(impls)
        journal.set_planned(len(cases) * len(candidates) - len(journal.previous))
        print(f"harness report: {len(cases)} case(s), reference {reference.name}, candidates "
              f"{[a.name for a in candidates]}"
              + (f"; resuming after {len(journal.previous)} finished item(s)"
                 if journal.previous else ""), file=sys.stderr)
        run_cases(cases, reference, candidates, args.case_timeout, journal=journal,
                  done=set(journal.previous), registry=_registry(args.catalog))
    except KeyboardInterrupt as exc:
        reason = str(exc) if str(exc).startswith("signal ") else "signal SIGINT"
        print(f"harness report: interrupted ({reason}); writing the partial report",
              file=sys.stderr)
    finally:
        restore_sigterm()
    restore = jn.shield_signals()  # a second signal must not lose the partial report
    try:
        if reason is not None:
            isolation.shutdown()  # the fit under way: its worker is killed
        entries = jn.read_records(args.out)
        comp = jn.completeness(entries, journal.state.get("planned"), reason is not None,
                               reason, args.out)
        by_id = {c.id: c for c in cases}
        paths = write_report(results_for_report(entries, by_id), args.out, progress=True,
                             completeness=comp, allfit=False if args.no_allfit else "auto")
        if comp["complete"]:
            journal.end("complete")
            journal.discard()
        else:
            journal.end("interrupted" if reason else "incomplete", comp["text"])
    finally:
        restore()
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    if comp["complete"]:
        return 0
    print(f"harness report: PARTIAL report: {comp['text']}; `python -m harness report "
          f"--resume {args.out}` continues it", file=sys.stderr)
    return 130 if reason else 1


def _resume(report_dir: str) -> int:
    """Continue the run whose journal is REPORT_DIR.partial: the same command again, told to
    append to the journal and skip the finished items."""
    import subprocess

    from harness.core import journal as jn

    state = jn.read_state(report_dir)
    if not state or state.get("argv") is None:
        return _fail(f"--resume {report_dir}: no journal of an interrupted run in "
                     f"{jn.staging(report_dir)}")
    held = jn.read_lock(report_dir)
    if held and held.get("pid") and jn._alive(int(held["pid"])):  # noqa: SLF001
        return _fail(f"--resume {report_dir}: report folder {report_dir} is in use by pid "
                     f"{held['pid']} ({held.get('command')})")
    done = jn.read_records(report_dir)
    env = {**os.environ, jn.RESUME_ENV: os.path.abspath(report_dir)}
    print(f"harness report: resuming {report_dir}: {len(done)} of "
          f"{state.get('planned') or '?'} items finished before", file=sys.stderr)
    if state.get("kind") == "report":
        os.environ[jn.RESUME_ENV] = os.path.abspath(report_dir)
        try:
            return main(state["argv"])
        finally:
            os.environ.pop(jn.RESUME_ENV, None)
    cmd = [sys.executable, "-m", "pytest", *state["argv"]]
    for nodeid in done:
        cmd += ["--deselect", nodeid]
    return subprocess.call(cmd, cwd=state.get("cwd") or None, env=env)


if __name__ == "__main__":
    sys.exit(main())
