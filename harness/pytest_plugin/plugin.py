"""The harness's pytest plugin (registered through the ``pytest11`` entry point).

Collecting ``harness/catalog.yaml`` (or ``--catalog PATH``) yields one item per case and
implementation, named ``<case-id>[<impl>-vs-<reference>]`` (``-k sleepstudy``, ``-k statsmodels``
select), plus ``<case-id>[lme4-vs-recorded]`` checking live lme4 against its recording. An item
fits the case with the implementation (harness.core.runner), compares with the reference under the
tolerance policy (harness.core.compare) and fails with the parameter table when they disagree.

Options: ``--impl NAME`` (repeatable; built-in names, entry points of the group
``mixedref_harness.impls``, or ``module:callable``), ``--reference live|recorded``,
``--catalog PATH``, ``--case-timeout SECONDS``, ``--case-memory SIZE``, ``--report DIR``,
``--recorded PATH``, ``--divergences FILE``, ``--save-baseline DIR``, ``--compare-baseline DIR``,
``--allow-missing-reference``.

Verdicts rest on the judge (harness.core.judge): both estimates re-evaluated under lme4's devfun and
mixedref's objective. Every fit runs in a killable worker process (harness.core.isolation), so a
candidate that hangs, crashes or allocates without bound fails its case alone. An item without
a reference answer fails (or, with ``--allow-missing-reference``, is skipped and counted). The
plugin is inert in a session that collects no catalog and passes none of its options.

Parallel runs: with ``-n N`` (and no explicit ``--dist``) the plugin schedules each case's
items on one worker, so the lme4 reference for a case is fitted once, and each other test module
on one worker, heaviest first by the durations the ini option ``harness_durations`` names
(harness.pytest_plugin.schedule); the items also carry an ``xdist_group`` mark per case.
Across CI jobs, pytest-split works on these items as on any: ``pytest harness
--store-durations`` once, then ``pytest harness --splits 4 --group 1`` etc.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from harness import HOME

# Nothing heavy at import: the plugin loads in every pytest session of a machine that has the
# package installed, and must leave sessions that do not ask for it as they were (no numpy).

HARNESS_DIR = HOME
CATALOG_DEFAULT = HARNESS_DIR / "catalog.yaml"
_KEY = pytest.StashKey["HarnessSession"]()
_ACTIVE = pytest.StashKey[bool]()
_BLAS_LIMIT = pytest.StashKey[Any]()
#: the worker lanes (harness.core.isolation) this process had when the session was configured:
#: those of an outer session when this one runs inside it (pytester's in-process runs), which
#: its end leaves running
_OUTER_LANES = pytest.StashKey[frozenset]()


# ----------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mixedref-harness", "mixedref harness: agreement with lme4")
    group.addoption("--impl", action="append", default=None, metavar="NAME",
                    help="implementation to compare with lme4 (repeatable): mixedref, "
                         "statsmodels, mixedref-literal, lme4, an entry point of the group "
                         "mixedref_harness.impls, or module:callable. Default: mixedref, "
                         "statsmodels and mixedref-literal (where it can be loaded).")
    group.addoption("--reference", choices=("live", "recorded"), default=None,
                    help="lme4 fitted now through rpy2 (live), or its recorded answers "
                         "(recorded). Default: live where R and lme4 load, else recorded.")
    group.addoption("--catalog", default=None, metavar="PATH",
                    help="catalog file to run instead of harness/catalog.yaml")
    group.addoption("--recorded", default=None, metavar="PATH",
                    help="recorded lme4 answers (default harness/references/lme4.json)")
    group.addoption("--case-timeout", type=float, default=None, metavar="SECONDS",
                    help="fail a candidate's fit that takes longer (overrides the catalog's)")
    group.addoption("--case-memory", default=None, metavar="SIZE",
                    help="memory limit of one fit, e.g. 4G or 512M (default: "
                         "harness.core.isolation.DEFAULT_MEMORY); over it the case fails")
    group.addoption("--report", default=None, metavar="DIR",
                    help="write discrepancy reports (json, md, html) to DIR, replaced as a "
                         "whole at the end; finished items are journaled in DIR.partial/ "
                         "as they finish, so an interrupted run (Ctrl-C, SIGTERM) writes a "
                         "report marked partial, which `python -m harness report --resume "
                         "DIR` completes; one run at a time per DIR (DIR.partial/lock)")
    group.addoption("--divergences", default=None, metavar="FILE",
                    help="registry of known divergences (YAML; default harness/divergences.yaml)")
    group.addoption("--save-baseline", default=None, metavar="DIR",
                    help="keep every candidate record of this run in DIR")
    group.addoption("--compare-baseline", default=None, metavar="DIR",
                    help="also fail quantities that moved beyond tolerance since the records "
                         "saved in DIR (--save-baseline)")
    group.addoption("--allow-missing-reference", action="store_true", default=None,
                    help="skip (instead of fail) items whose reference has no answer")
    group.addoption("--impl-python", action="append", default=None, metavar="NAME=PYTHON",
                    help="run implementation NAME's fits with the interpreter PYTHON (e.g. "
                         "the python of the candidate's own virtual environment), so that it "
                         "sees only what that environment holds (repeatable)")
    group.addoption("--allow-empty", action="store_true", default=None,
                    help="let a run pass in which a candidate was compared on no case "
                         "(by default that gated nothing, and the run fails saying so)")
    parser.addini("harness_durations", default="",
                  help="JSON file (relative to the rootdir) of recorded test durations, "
                       "{node id: seconds} as pytest-split's --store-durations writes it: "
                       "with -n N the heaviest work units start first")


#: The plugin's own options (dest names): passing any of them asks for the harness.
OPTIONS = ("impl", "reference", "catalog", "recorded", "case_timeout", "case_memory", "report",
           "divergences", "save_baseline", "compare_baseline", "allow_missing_reference",
           "allow_empty", "impl_python")


class HarnessSession:
    """The plugin's per-process state: options, the reference adapter, collected results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        opt = config.getoption
        self.catalog_path = Path(opt("catalog")).resolve() if opt("catalog") else CATALOG_DEFAULT
        self.recorded_path = opt("recorded")
        self.timeout = opt("case_timeout")
        self.memory = _parse_size(opt("case_memory")) if opt("case_memory") else None
        self.allow_missing = bool(opt("allow_missing_reference"))
        self.allow_empty = bool(opt("allow_empty"))
        self.save_baseline: str | None = opt("save_baseline")
        self.registry: Any = None
        self.baseline: Any = None
        self._comparators: Any = None
        self.requested_impls: list[str] | None = opt("impl")
        self.requested_reference: str | None = opt("reference")
        self._reference: tuple[str, Any, str] | None = None
        self.collected = False
        self.entries: dict[str, dict[str, Any]] = {}  # nodeid -> summary entry

    # The reference is decided once per process (R is started here when it is needed).
    def reference(self) -> tuple[str, Any, str]:
        """(mode, adapter, description) of the reference."""
        if self._reference is None:
            from harness.adapters import Lme4Live, Lme4Recorded

            recorded = Lme4Recorded(self.recorded_path)
            mode = self.requested_reference
            why_not_live = None
            if mode != "recorded":
                why_not_live = Lme4Live().unavailable()
            if mode == "live" and why_not_live is not None:
                raise pytest.UsageError(
                    f"--reference=live: lme4 cannot be used here ({why_not_live}); install R "
                    "and lme4 (./dev setup does on Debian) or run with --reference=recorded")
            if mode == "live" or (mode is None and why_not_live is None):
                from harness.core import isolation

                out = isolation.call("R", "harness.core.rbridge:versions", timeout=60)
                v = out.value or {}
                desc = (f"live lme4 {v.get('lme4', '?')} via rpy2 ({v.get('R', 'R ?')}, "
                        f"BLAS {v.get('BLAS', '?')})")
                self._reference = ("live", Lme4Live(), desc)
            else:
                desc = f"recorded lme4 answers {recorded.describe()}"
                if mode is None:
                    desc += f"; live lme4 not used: {why_not_live}"
                self._reference = ("recorded", recorded, desc)
        return self._reference

    def comparators(self) -> Any:
        """The compared quantities: built in, plus what ``pytest_harness_comparators`` hooks
        return (asked once, after every plugin and conftest has registered)."""
        if self._comparators is None:
            from harness.core.comparators import registered

            extra = self.config.hook.pytest_harness_comparators(config=self.config)
            try:
                self._comparators = registered(extra)
            except TypeError as exc:
                raise pytest.UsageError(f"pytest_harness_comparators: {exc}") from None
        return self._comparators

    def impls(self) -> list[str]:
        """The candidate implementations: as requested, or the defaults that can be loaded."""
        from harness.adapters import DEFAULT_IMPLS, get_adapter

        if self.requested_impls:
            return list(dict.fromkeys(self.requested_impls))
        out = []
        for name in DEFAULT_IMPLS:
            if name == "mixedref-literal" and get_adapter(name).unavailable():
                continue
            out.append(name)
        return out

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep what the summary needs (works on the xdist controller: user_properties)."""
        props = dict(report.user_properties or ())
        if "harness-item" in props:
            from harness.pytest_plugin import summary

            summary.record_report(self.entries, report, props)
            entry = self.entries[report.nodeid]
            if report.when == "???":  # xdist's report of an item whose worker died
                entry["crashed"] = True
                entry["outcome"] = entry["outcome"] or "error"
            journal = getattr(self, "journal", None)
            if journal is not None and report.when in ("teardown", "???"):
                journal.append(report.nodeid, entry)


def _session(config: pytest.Config) -> HarnessSession:
    if _KEY not in config.stash:
        hs = HarnessSession(config)
        config.stash[_KEY] = hs
        config.pluginmanager.register(hs, "mixedref-harness-session")
    return config.stash[_KEY]


def session_entries(config: pytest.Config) -> dict[str, dict[str, Any]]:
    """This session's items' summary entries (nodeid -> entry; empty when the harness did not
    run): what another plugin reads to summarize the run (harness.pytest_plugin.grid_hook's
    status map)."""
    hs = config.stash.get(_KEY, None)
    return {} if hs is None else hs.entries


def _active(config: pytest.Config) -> bool:
    """True when this session asked for the harness: one of its options, or the catalog (or
    the harness package holding it) among the paths to collect. Otherwise every hook of the
    plugin does nothing, so a project that merely has the package installed sees no change."""
    if _ACTIVE not in config.stash:
        opts = any(config.getoption(o, None) not in (None, False) for o in OPTIONS)
        config.stash[_ACTIVE] = opts or _collects_catalog(config)
    return config.stash[_ACTIVE]


def _collects_catalog(config: pytest.Config) -> bool:
    catalog = Path(config.getoption("catalog") or CATALOG_DEFAULT).resolve()
    pyargs = config.getoption("pyargs", False)
    for arg in config.args:
        base = str(arg).split("::")[0]
        if pyargs and (base == "harness" or base.startswith("harness.")):
            return True
        path = Path(config.invocation_params.dir, base).resolve()
        if path == catalog or path in catalog.parents or HARNESS_DIR in path.parents:
            return True
    return False


def _set_interpreters(pairs: Any) -> None:
    """--impl-python NAME=PYTHON: the interpreter each named implementation fits with."""
    from harness.adapters import set_interpreters

    mapping = {}
    for pair in pairs:
        name, sep, python = str(pair).partition("=")
        if not sep or not name or not python:
            raise pytest.UsageError(f"--impl-python {pair!r}: give NAME=PYTHON, e.g. "
                                    "mypkg:fit=/path/to/venv/bin/python")
        if not os.access(python, os.X_OK):
            raise pytest.UsageError(f"--impl-python {pair!r}: {python} is not an executable")
        mapping[name] = python
    set_interpreters(mapping)


def _parse_size(text: str) -> int:
    """Bytes from '4G', '512M', '2.5GiB' or a plain number of bytes (a usage error else)."""
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(i?B)?\s*", str(text), re.IGNORECASE)
    if not m or float(m.group(1)) <= 0:
        raise pytest.UsageError(f"--case-memory {text!r}: give a size such as 4G, 512M or a "
                                "number of bytes")
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * 1024 ** power)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """The harness's own hooks (harness.pytest_plugin.hookspecs): extra comparators from other
    plugins."""
    from harness.pytest_plugin import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if not _active(config):
        return
    from harness.core import isolation

    config.stash[_OUTER_LANES] = isolation.lanes()
    _limit_blas_threads_in_workers(config)
    if config.getoption("benchmark_only", False):
        _pin_threads_for_benchmarks(config)
    hs = _session(config)
    _set_interpreters(config.getoption("impl_python") or ())
    if config.getoption("report") and getattr(config, "workerinput", None) is None:
        _start_journal(config, hs, config.getoption("report"))
    _load_registry_and_baseline(hs)
    if hs.requested_reference == "live":
        hs.reference()  # a usage error now, before any collection, when lme4 cannot run
    if hs.requested_impls and getattr(config, "workerinput", None) is None:
        from harness.pytest_plugin.gate import GateError, check_requested

        try:  # a typo in --impl is a usage error (exit 4), never a run of skips
            check_requested(dict.fromkeys(hs.requested_impls))
        except GateError as exc:
            raise pytest.UsageError(str(exc)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    if _ACTIVE in config.stash and config.stash[_ACTIVE]:
        from harness.core import isolation

        isolation.shutdown(keep=config.stash.get(_OUTER_LANES, frozenset()))
        _clear_caches()  # a nested session's fits (its --recorded file, its adapters) end here


def _clear_caches() -> None:
    """Empty this process's fit, adapter and judge caches: each session starts with them empty
    and leaves them empty, so a session run inside another (pytester's in-process runs) never
    hands the outer one a record made under its own options."""
    from harness import adapters
    from harness.core import judge, runner

    runner.clear_cache()
    adapters.clear_instances()
    judge.clear_cache()


def _limit_blas_threads_in_workers(config: pytest.Config) -> None:
    """Give each pytest-xdist worker its share of the cores for BLAS: two workers with two
    OpenBLAS threads each oversubscribe a 2-core machine, and a dense Cholesky then takes up to
    ten times longer. numpy's OpenBLAS is already loaded (threadpoolctl limits it). R's BLAS
    is pinned to one thread by harness.core.rbridge whatever this says (lme4's references were
    recorded so, and its answers at singular fits depend on the thread count)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    workers = int(workerinput.get("workercount", 1))
    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    from threadpoolctl import threadpool_limits

    config.stash[_BLAS_LIMIT] = threadpool_limits(threads, user_api="blas")


def _pin_threads_for_benchmarks(config: pytest.Config) -> None:
    """Time every implementation on one thread, as lme4's R is (harness.core.rbridge): the
    variables before any peer's library loads, threadpoolctl for the BLAS and OpenMP already
    loaded (numpy's). A ratio of a 2-thread fit to a 1-thread one would measure the machine."""
    from threadpoolctl import threadpool_limits

    from harness.core.isolation import THREAD_VARIABLES

    for name in THREAD_VARIABLES:  # OpenBLAS, OpenMP (gpboost, edi-kernels), MKL, rayon
        os.environ[name] = "1"

    config.stash[_BLAS_LIMIT] = threadpool_limits(1)


def _quantities_now(config: pytest.Config) -> tuple[str, ...]:
    """The quantities the comparators known at configure time write (built in, plugins and
    the initial conftests'), for the registry; not cached, so a later conftest's comparator
    still joins the comparison."""
    from harness.core.comparators import quantities_of, registered

    try:
        return quantities_of(registered(config.hook.pytest_harness_comparators(config=config)))
    except TypeError as exc:
        raise pytest.UsageError(f"pytest_harness_comparators: {exc}") from None


def _load_registry_and_baseline(hs: HarnessSession) -> None:
    """The divergence registry (default harness/divergences.yaml) and the baseline, checked
    against the catalog now: a bad entry or a mismatched baseline is a usage error."""
    from harness.core import baseline, divergences
    from harness.core.catalog import CatalogError, load_catalog

    opt = hs.config.getoption
    try:
        cases = load_catalog(hs.catalog_path)
    except CatalogError as exc:
        raise pytest.UsageError(str(exc)) from None
    ids = [c.id for c in cases]
    path = opt("divergences") or divergences.registry_for(hs.catalog_path)
    if path is not None:
        try:
            hs.registry = divergences.load_registry(path, ids, _quantities_now(hs.config))
        except divergences.RegistryError as exc:
            raise pytest.UsageError(str(exc)) from None
    version = baseline.catalog_version(cases)
    if opt("compare_baseline"):
        try:
            hs.baseline = baseline.open_baseline(opt("compare_baseline"), version)
        except baseline.BaselineError as exc:
            raise pytest.UsageError(f"--compare-baseline: {exc}") from None
    if opt("save_baseline") and getattr(hs.config, "workerinput", None) is None:
        baseline.write_manifest(opt("save_baseline"), version, str(hs.catalog_path))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``-n N`` and no explicit ``--dist``: each catalog case's items on one worker (so its
    lme4 reference is fitted once), each other module on one worker, heaviest first by the
    durations the ini option ``harness_durations`` names (harness.pytest_plugin.schedule).

    (xdist's own ``--dist loadgroup`` would group through the xdist_group marks the items
    carry, but pytest-xdist 3.8 cannot rename node ids under pytest 9, so it does not group.)
    """
    if not _active(config):
        return None
    explicit = any(a == "--dist" or a.startswith("--dist=") or a == "-d"
                   for a in config.invocation_params.args)
    if explicit or config.getoption("dist") != "load":
        return None
    from harness.pytest_plugin.schedule import case_scheduling, load_durations

    return case_scheduling(config, log, load_durations(config))


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: Any) -> None:
    """A catalog item whose xdist worker died: count it in the harness summary (as an error
    with xdist's "worker ... crashed while running ..." text) instead of leaving it out."""
    path, _, name = crashitem.rpartition("::")
    if not path.endswith((".yaml", ".yml")) or "[" not in name:
        return
    case, _, label = name.partition("[")
    impl, _, reference = label.removesuffix("]").rpartition("-vs-")
    report.user_properties = [("harness-item", {"case": case, "impl": impl,
                                                "reference": reference})]


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not _active(config):
        return None
    hs = _session(config)
    mode, _, desc = hs.reference()
    return [f"mixedref harness: reference = {desc}",
            f"mixedref harness: implementations = {', '.join(hs.impls())}; "
            f"catalog = {hs.catalog_path}"]


# ----------------------------------------------------------------------------- collection


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if not _active(parent.config):
        return None
    hs = _session(parent.config)
    path = Path(file_path).resolve()
    if path != hs.catalog_path and path != CATALOG_DEFAULT:
        return None
    if hs.collected:  # the default catalog's place and --catalog both seen: collect once
        return None
    hs.collected = True
    return CatalogFile.from_parent(parent, path=file_path)


class CatalogFile(pytest.File):
    """The catalog: one item per (case, implementation), and one live-vs-recorded per case."""

    def collect(self) -> Any:
        from harness.adapters import Lme4Recorded, get_adapter
        from harness.adapters.certified import certified_reference
        from harness.core.catalog import load_catalog

        hs = _session(self.config)
        mode, ref_adapter, _ = hs.reference()
        ref_label = "lme4" if mode == "live" else "lme4-recorded"
        cases = load_catalog(hs.catalog_path)
        # one recording for every case (each instance parses the 4.8 MB file on first use)
        recorded = Lme4Recorded(hs.recorded_path)
        for case in cases:
            # a certified case is judged against its exact truth; lme4 (live and recorded)
            # are candidates there, which replaces lme4-vs-recorded
            truth = certified_reference(case)
            ref, label = (truth, truth.name) if truth else (ref_adapter, ref_label)
            lme4s = {ref_label: ref_adapter, "lme4-recorded": recorded}
            for impl in dict.fromkeys(hs.impls() + (list(lme4s) if truth else [])):
                try:
                    adapter = lme4s[impl] if truth and impl in lme4s else get_adapter(impl)
                except ValueError as exc:
                    raise pytest.UsageError(str(exc)) from None
                item = CaseItem.from_parent(self, name=f"{case.id}[{impl}-vs-{label}]",
                                            case=case, adapter=adapter, reference=ref)
                _mark(item, case, impl, adapter, ref)
                yield item
            if mode == "live" and not truth:
                item = CaseItem.from_parent(self, name=f"{case.id}[lme4-vs-recorded]",
                                            case=case, adapter=ref_adapter, reference=recorded)
                _mark(item, case, "lme4", ref_adapter, recorded)
                yield item


def _mark(item: pytest.Item, case: Any, impl: str, adapter: Any, reference: Any) -> None:
    """Group by case (xdist), and skip or xfail as the catalog and the adapters say. A reference
    without an answer is not a skip: the item fails when it runs (no green without a
    reference), unless --allow-missing-reference."""
    item.add_marker(pytest.mark.xdist_group(case.id))
    item.extra_keyword_matches.update(getattr(case, "tags", ()))  # pytest -k glmm, -k large
    from harness.core.outcome import not_expressible

    reason = not_expressible(case, adapter)
    if reason:
        item.add_marker(pytest.mark.skip(reason=f"{impl}: {reason}"))
    xfail = (getattr(case, "xfail", None) or {}).get(impl)
    if xfail:
        item.add_marker(pytest.mark.xfail(reason=xfail, strict=True))
    item.user_properties.append(("harness-item", {"case": case.id, "impl": impl,
                                                  "reference": reference.name}))


class HarnessDisagreement(Exception):
    """Raised by an item whose candidate disagrees with (or failed against) the reference."""

    def __init__(self, comparison: Any, extra: str = "") -> None:
        super().__init__(comparison.headline())
        self.comparison = comparison
        self.extra = extra


class NoReference(Exception):
    """Raised by an item whose reference has no answer: no verdict is possible."""


def _skip(reason: str) -> None:
    """Skip the running item, reported at the catalog's location rather than this file's."""
    try:
        raise pytest.skip.Exception(reason, _use_item_location=True)
    except TypeError:  # a pytest without the keyword
        pytest.skip(reason)


class CaseItem(pytest.Item):
    """One case fitted by one implementation, judged, and compared with the reference."""

    def __init__(self, *, case: Any, adapter: Any, reference: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case, self.adapter, self.reference = case, adapter, reference

    def runtest(self) -> None:
        from harness.core import outcome

        hs = _session(self.config)
        d = outcome.decide(self.case, self.adapter, self.reference, timeout=hs.timeout,
                           memory=hs.memory, registry=hs.registry, baseline=hs.baseline,
                           save_baseline=hs.save_baseline, comparators=hs.comparators())
        if d.outcome == "skipped":
            _skip(d.headline)
        self.user_properties.append(("harness", d.props()))
        if d.outcome == "no-verdict":
            if hs.allow_missing:
                _skip(f"{d.headline} (--allow-missing-reference)")
            raise NoReference(d.headline)
        if d.registry_problem:
            raise HarnessDisagreement(d.comparison, d.registry_problem)
        if d.drift:
            raise HarnessDisagreement(d.comparison, _drift_table(d.drift))
        if d.outcome == "xfail":
            pytest.xfail(d.headline)
        if not d.comparison.ok:
            raise HarnessDisagreement(d.comparison)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        if isinstance(excinfo.value, HarnessDisagreement):
            text = excinfo.value.comparison.format_table()
            return text + ("\n" + excinfo.value.extra if excinfo.value.extra else "")
        if isinstance(excinfo.value, NoReference):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.name} ({self.case.formula}, REML={self.case.REML})"


def _drift_table(rows: list[Any]) -> str:
    """The drift rows as the parameter table's lines."""
    lines = [f"drift since the baseline ({len(rows)} quantities moved beyond tolerance):"]
    for r in rows:
        lines.append(f"  {r.name}: baseline {r.reference:.7g}, now {r.candidate:.7g}, "
                     f"moved {r.difference:+.3g} (allowed {r.allowed:.3g})"
                     if r.difference is not None else f"  {r.name}: {r.note}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- summary


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start each session with fresh caches (matters only for nested in-process runs)."""
    if not _active(session.config):
        return
    _clear_caches()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    if not _active(config):
        return
    from harness.pytest_plugin import summary

    hs = _session(config)
    if hs.entries:
        summary.write_summary(terminalreporter, hs.entries)
    _gate_summary(terminalreporter, hs)
    report_dir = config.getoption("report")
    if report_dir and (hs.entries or getattr(hs, "journal", None) is not None):
        _write_report(terminalreporter, hs, report_dir, exitstatus)
    summary.write_benchmark_ratios(terminalreporter, config)


def _gate_summary(terminalreporter: Any, hs: HarnessSession) -> None:
    """Per candidate "compared k of n"; a candidate named with --impl that was compared on no
    case fails the run (unless --allow-empty): a gate that compared nothing must not be green."""
    from harness.pytest_plugin import gate

    if getattr(hs.config, "workerinput", None) is not None:
        return
    per = gate.counts(hs.entries)
    if per:
        terminalreporter.write_line("gate: " + "; ".join(gate.line(i, c) for i, c in per.items()))
    empty = gate.empty(hs.entries, hs.requested_impls or ())
    for message in empty:
        terminalreporter.write_line(
            f"mixedref harness: {message}" + (" (--allow-empty)" if hs.allow_empty else
                                               "; the run fails (--allow-empty permits it)"),
            yellow=hs.allow_empty, red=not hs.allow_empty)
    if empty and not hs.allow_empty:
        _fail_session(terminalreporter)


def _start_journal(config: pytest.Config, hs: HarnessSession, report_dir: str) -> None:
    """--report DIR on the controller: the folder is checked writable and locked now, before
    any fit (a usage error naming it otherwise), the journal DIR.partial/records.jsonl is
    opened (appended to when resuming), and SIGTERM is made to interrupt as SIGINT does."""
    from harness.core import journal as jn

    try:
        jn.check_writable(report_dir)
        note = jn.acquire_lock(report_dir, jn.command_line(
            ["pytest", *map(str, config.invocation_params.args)]))
    except jn.JournalError as exc:
        raise pytest.UsageError(str(exc)) from None
    if note:
        import sys

        print(f"mixedref harness: {note}", file=sys.stderr)
    resume = os.environ.get(jn.RESUME_ENV) == str(Path(os.path.abspath(report_dir)))
    journal = jn.Journal(report_dir, kind="pytest", resume=resume,
                         command=jn.command_line(["pytest",
                                                  *map(str, config.invocation_params.args)]),
                         argv=[str(a) for a in config.invocation_params.args],
                         cwd=str(config.invocation_params.dir))
    hs.entries.update(journal.previous)  # a resumed run reports the earlier items too
    hs.journal = journal  # type: ignore[attr-defined]
    hs.journal_plugin = jn.PytestJournal(journal)  # type: ignore[attr-defined]
    config.pluginmanager.register(hs.journal_plugin, "mixedref-harness-journal")  # SIGTERM too


def _write_report(terminalreporter: Any, hs: HarnessSession, report_dir: str,
                  exitstatus: int = 0) -> None:
    """The report from the session's entries (the journal's, on an interrupt), replaced as a
    whole; a partial or incomplete run says so in every format and exits non-zero."""
    try:
        from harness.commands.report import write_report
    except ImportError as exc:
        terminalreporter.write_line(
            f"mixedref harness: --report needs harness.commands.report ({exc})")
        return
    from harness.core import isolation
    from harness.core import journal as jn
    from harness.pytest_plugin import summary

    journal = getattr(hs, "journal", None)
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    restore = jn.shield_signals()  # a second Ctrl-C must not lose the partial report
    try:
        if interrupted:
            isolation.shutdown()  # the fit under way when the signal came: its worker too
        try:
            from harness.core.catalog import load_catalog

            cases = {c.id: c for c in load_catalog(hs.catalog_path)}
        except Exception:
            cases = {}
        entries = jn.read_records(report_dir) if journal is not None else {}
        entries.update({k: v for k, v in hs.entries.items() if v.get("outcome")})
        planned = journal.state.get("planned") if journal is not None else None
        plugin = getattr(hs, "journal_plugin", None)
        reason = (getattr(plugin, "interrupt_reason", None) or "signal SIGINT") \
            if interrupted else None
        comp = jn.completeness(entries, planned, interrupted, reason, report_dir)
        results = summary.results_for_report(entries, cases)
        try:
            write_report(results, report_dir, completeness=comp)
        except Exception as exc:  # noqa: BLE001 - one line, and the journal is kept
            terminalreporter.write_line(
                f"mixedref harness: the report could not be written to {report_dir}: "
                f"{type(exc).__name__}: {exc}; the finished items are kept in "
                f"{jn.staging(report_dir)}", red=True)
            _fail_session(terminalreporter)
            return
        if journal is not None:
            if comp["complete"]:
                journal.end("complete")
                journal.discard()
            else:
                journal.end("interrupted" if interrupted else "incomplete", comp["text"])
                journal.close()
                jn.release_lock(report_dir)
        if comp["complete"]:
            terminalreporter.write_line(f"mixedref harness: report written to {report_dir}")
        else:
            terminalreporter.write_line(
                f"mixedref harness: PARTIAL report written to {report_dir}: {comp['text']}; "
                f"`python -m harness report --resume {report_dir}` continues the run",
                red=True)
            _fail_session(terminalreporter)
    finally:
        restore()


def _fail_session(terminalreporter: Any) -> None:
    """Make a run that would exit 0 exit non-zero (its report is partial)."""
    session = getattr(terminalreporter, "_session", None)
    if session is not None and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
