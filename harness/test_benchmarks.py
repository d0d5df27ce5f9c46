"""pytest-benchmark timings of each implementation on each catalog case (fit only).

Run with ``pytest harness/test_benchmarks.py --benchmark-only`` (``./dev bench``); in normal
runs these are skipped so ``pytest harness`` stays fast. Benchmarks are grouped by case id;
lme4 is timed on the R side, on data already converted to an R data.frame, so only the fit is
measured. Each installed PyPI peer (harness.adapters.peers.PEERS) is timed in the same run,
on the cases it can express. The plugin prints a line per case with each implementation's
median time as a ratio to lme4's and to mixedref's. Select with ``-k``, e.g.
``-k "sleepstudy and mixedref"``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from harness.adapters import PYTHON_CANDIDATES
from harness.adapters.peers import PEERS

#: lme4, then the league's candidates (mixedref, statsmodels, every registered peer)
BENCH_IMPLS = ("lme4", *PYTHON_CANDIDATES)
SKIP_REASON = "benchmarks run only with --benchmark-only"
TARGET_SECONDS = 2.0  # per benchmark: rounds = TARGET_SECONDS / (one fit), between 1 and 20
PEER_TIMEOUT = 60.0  # seconds: a peer's isolated trial fit (the catalog's default time limit)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bench_case" not in metafunc.fixturenames:
        return
    from harness.core.catalog import load_catalog

    if not metafunc.config.getoption("benchmark_only", False):
        # one placeholder instead of a skipped item per case and implementation
        metafunc.parametrize(("bench_case", "bench_impl"), [pytest.param(
            None, None, id="all", marks=pytest.mark.skip(reason=SKIP_REASON))])
        return
    path = metafunc.config.getoption("catalog", None)
    cases = load_catalog(path)
    params = [pytest.param(case, impl, id=f"{case.id}-{impl}") for case in cases
              for impl in BENCH_IMPLS if impl in _CORE or _installed(impl)]
    metafunc.parametrize(("bench_case", "bench_impl"), params)


_r_frames: dict[str, Any] = {}
_CORE = tuple(impl for impl in BENCH_IMPLS if impl not in PEERS)


def _installed(impl: str) -> bool:
    """A peer is benchmarked only where its package is installed (no skipped item per case)."""
    from harness.adapters import get_adapter

    return get_adapter(impl).unavailable() is None


def _fit_callable(case: Any, impl: str) -> Any:
    """A zero-argument callable doing one fit of ``case`` with ``impl`` (data prepared)."""
    from harness.adapters import get_adapter
    from harness.core import runner

    adapter = get_adapter(impl)
    reason = adapter.unavailable() or adapter.supports(case)
    if reason:
        pytest.skip(f"{impl}: {reason}")
    data = runner.case_data(case)
    if impl == "lme4":
        from harness.core import rbridge

        if case.dataset not in _r_frames:
            _r_frames[case.dataset] = rbridge.to_r_frame(data)
        rdata = _r_frames[case.dataset]
        if getattr(case, "family", None) is not None:
            return lambda: rbridge.glmer_fit_only(rdata, case)
        return lambda: rbridge.lmer_fit_only(rdata, case.formula, bool(case.REML))
    if impl == "mixedref":  # the fit alone, as lme4's (the record's post-fit extras aside)
        return lambda: adapter.fit_only(case, data.copy())
    if impl not in _CORE:  # a peer: one isolated fit first, so a hang or a crash only skips
        rec = runner.fit_case(adapter, case, timeout=PEER_TIMEOUT, use_cache=False)
        if rec["error"]:
            pytest.skip(f"{impl}: {rec['error'][:300]}")
    return lambda: adapter.fit(case, data.copy())


def test_fit(benchmark: Any, bench_case: Any, bench_impl: str) -> None:
    fit = _fit_callable(bench_case, bench_impl)
    t0 = time.perf_counter()
    try:
        fit()  # warm-up (imports, caches), and the size of one round
    except NotImplementedError as exc:
        pytest.skip(f"{bench_impl}: not supported: {exc}")
    one = time.perf_counter() - t0
    rounds = max(1, min(20, int(TARGET_SECONDS / max(one, 1e-6))))
    benchmark.group = bench_case.id
    benchmark.extra_info.update(impl=bench_impl, formula=bench_case.formula,
                                REML=bool(bench_case.REML))
    benchmark.pedantic(fit, rounds=rounds, iterations=1)
