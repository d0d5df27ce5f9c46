"""The benchmark table (harness.pytest_plugin.summary.benchmark_table): implementations side by
side, lme4, mixedref, glmm and mixedlm first, each time with its ratio to lme4."""

from __future__ import annotations

import math
from types import SimpleNamespace

from harness.pytest_plugin.summary import benchmark_medians, benchmark_table


def _bench(case: str, impl: str, median: float) -> SimpleNamespace:
    return SimpleNamespace(group=case, name=f"test_fit[{case}-{impl}]", extra_info={"impl": impl},
                           stats=SimpleNamespace(median=median))


def test_columns_side_by_side_with_ratios_and_geometric_mean() -> None:
    medians = benchmark_medians([
        _bench("cake", "statsmodels", 0.050), _bench("cake", "mixedref", 0.004),
        _bench("cake", "lme4", 0.010), _bench("cake", "glmm", 0.001),
        _bench("sleep", "lme4", 0.020), _bench("sleep", "mixedref", 0.005),
        _bench("sleep", "mixedlm", 0.040),
        SimpleNamespace(group="nostats", name="x", extra_info={}, stats=None)])
    lines = benchmark_table(medians)
    head = lines[0].split()
    assert head == ["case", "lme4", "mixedref", "glmm", "mixedlm", "statsmodels", "mixedref/lme4"]
    cake = lines[1]
    assert cake.startswith("cake") and "10.0 ms" in cake and "4.0 ms (0.40x)" in cake
    assert "1.0 ms (0.10x)" in cake and "50.0 ms (5.00x)" in cake and cake.endswith("0.40")
    sleep = lines[2]
    assert "5.0 ms (0.25x)  -  " in sleep and "40.0 ms (2.00x)" in sleep  # glmm: no fit
    geo = lines[-1]
    assert geo.startswith("geometric mean x lme4")
    assert f"{math.sqrt(0.4 * 0.25):.2f}x (2)" in geo  # mixedref over both cases


def test_a_case_without_lme4_has_times_but_no_ratio() -> None:
    lines = benchmark_table({"c": {"mixedref": 0.002}})
    assert "2.0 ms" in lines[1] and "x)" not in lines[1] and lines[1].endswith("n/a")
