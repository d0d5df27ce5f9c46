"""R-side failures in the harness: nothing is lost and the run goes on.

lme4's own errors on bad input come back as the record's ``error`` (its warnings as
``messages``), never as an rpy2 traceback; what the DataFrame -> R conversion cannot carry is a
DataError naming the column; a case's timeout stops lme4 inside R (setTimeLimit) and R stays
usable; an R (or any fit) that kills its process costs only its case (fits run in worker
processes, harness.core.isolation; R lives in the "R" lane, never in the test process); and R or
lme4 missing gives one clear reason, the run falling back to the recorded answers.

Expected error texts are lme4's (and base R's) own messages: those in
tests/references/edge/refused.json were recorded by r_scripts/edge_references.R; the others
are fixed strings of lme4 1.1-31 / R 4.2 (lFormula's "response must be numeric", model.frame's
"NA/NaN/Inf in 'y'", lm.fit's "0 (non-NA) cases", eval's "object 'z' not found").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FakeCase

from harness.adapters import Lme4Live, Lme4Recorded
from harness.core import isolation, rbridge, runner
from harness.core.catalog import load_catalog
from harness.core.compare import AGREED, compare_records
from harness.core.errors import DataConversionError

pytest_plugins = ["pytester"]

CASES = {c.id: c for c in load_catalog()}
REFUSED = json.loads((Path(__file__).parent / "references" / "edge" / "refused.json")
                     .read_text())["fits"]
XDIST_VARS = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")




@pytest.fixture(scope="module")
def live() -> Lme4Live:
    reason = Lme4Live().unavailable()  # asks the R lane: R is not started in this process
    if reason:
        pytest.skip(f"needs R and lme4 through rpy2: {reason}")
    return Lme4Live()


def in_r(function: str, *args: object, timeout: float = 120) -> object:
    """Run one of this module's functions below in the R lane (where lme4's fits run) and
    return its value (fails the test with the worker's error)."""
    out = isolation.call(Lme4Live.lane, f"{__name__}:{function}", *args, timeout=timeout)
    assert out.kind == "ok", out.error
    return out.value


def r_frame_error(data: pd.DataFrame) -> str | None:
    """(In the R lane) rbridge.to_r_frame's DataError text for ``data``, None if converted."""
    try:
        rbridge.to_r_frame(data)
    except DataConversionError as exc:
        return str(exc)
    return None


def r_column_kinds(data: pd.DataFrame) -> list[str]:
    """(In the R lane) per column R's class, then NAs in s, n, b, then n's second value."""
    import rpy2.robjects as ro

    kinds = ro.r("function(d) c(sapply(d, class), sum(is.na(d$s)), sum(is.na(d$n)), "
                 "sum(is.na(d$b)), d$n[2])")
    return list(kinds(rbridge.to_r_frame(data)))


def r_sleep(seconds: float) -> int:
    """(In the R lane) Sys.sleep in R, an interrupt point: raises if a time limit is left set;
    returns the process id."""
    import os

    import rpy2.robjects as ro

    ro.r(f"Sys.sleep({seconds})")
    return os.getpid()




def _set(df: pd.DataFrame, column: str, value: float) -> pd.DataFrame:
    out = df.copy()
    out.loc[3, column] = value
    return out


def _re_ge_n(df: pd.DataFrame) -> pd.DataFrame:
    out = df.iloc[:24].copy()
    out["g"] = pd.Categorical([f"p{k:02d}" for k in np.repeat(np.arange(12), 2)])
    return out


# name -> (make data from df, formula, lme4's error text)
REFUSED_INPUTS = {
    "inf_response": (lambda d: _set(d, "y", np.inf), "y ~ x + (1 | g)", "NA/NaN/Inf in 'y'"),
    "inf_predictor": (lambda d: _set(d, "x", -np.inf), "y ~ x + (1 | g)",
                      "NA/NaN/Inf in foreign function call (arg 1)"),
    "nan_response_only": (lambda d: d.assign(y=np.nan), "y ~ x + (1 | g)", "0 (non-NA) cases"),
    "one_level": (lambda d: d.assign(g=pd.Categorical(["a"] * len(d))), "y ~ x + (1 | g)",
                  REFUSED["one_level"]["error"]),
    "string_response": (lambda d: d.assign(y=np.where(d["y"] > 1, "high", "low")),
                        "y ~ x + (1 | g)", "response must be numeric"),
    "missing_column": (lambda d: d, "y ~ z + (1 | g)", "object 'z' not found"),
    "re_ge_n": (_re_ge_n, "y ~ x + (x | g)", REFUSED["re_ge_n"]["error"]),
    "levels_eq_n": (lambda d: d.assign(g=pd.Categorical([f"r{i}" for i in range(len(d))])),
                    "y ~ x + (1 | g)", REFUSED["levels_eq_n"]["error"]),
    "empty_frame": (lambda d: d.iloc[:0], "y ~ x + (1 | g)", "0 (non-NA) cases"),
}


# ----------------------------------------------------------------------------- 1. bad input


@pytest.mark.needs_r
@pytest.mark.parametrize("name", list(REFUSED_INPUTS))
def test_lme4s_error_text_is_the_record_error(live: Lme4Live, df: pd.DataFrame,
                                              name: str) -> None:
    make, formula, expected = REFUSED_INPUTS[name]
    rec = runner.fit_case(live, FakeCase(f"bad-{name}", formula), make(df), use_cache=False)
    assert rec["error"] == expected
    assert rec["impl"] == "lme4" and rec["fixef"] == {} and rec["objective"] is None
    assert rec["versions"]["lme4"]  # the record is a whole record, from R


@pytest.mark.needs_r
def test_lme4s_accepted_oddities_give_records_with_its_messages(live: Lme4Live,
                                                                df: pd.DataFrame) -> None:
    # a NaN in the response: lme4 drops the row (na.omit), no error
    rec = runner.fit_case(live, FakeCase("nan-y", "y ~ x + (1 | g)"), _set(df, "y", np.nan),
                          use_cache=False)
    assert rec["error"] is None and rec["nobs"] == 39
    # a constant predictor: lme4's message lands in messages, the fit goes on
    rec = runner.fit_case(live, FakeCase("const-x", "y ~ x + (1 | g)"), df.assign(x=2.0),
                          use_cache=False)
    assert rec["error"] is None and list(rec["fixef"]) == ["(Intercept)"]
    assert rec["messages"] == ["fixed-effect model matrix is rank deficient so dropping "
                               "1 column / coefficient"]
    # and after all the refused inputs above, R still fits a real case right
    case = CASES["sleepstudy-slopes-REML"]
    good = runner.fit_case(live, case, use_cache=False)
    assert compare_records(Lme4Recorded().fit(case, None), good).verdict == AGREED


# name -> (make data from df, words the DataError must contain)
UNCONVERTIBLE = {
    "mixed_object": (lambda d: d.assign(x=pd.Series([1.5, "a"] * 20, dtype=object)),
                     "column 'x' is an object column of mixed values (types float, str"),
    "duplicate_names": (lambda d: pd.concat([d, d[["x"]]], axis=1),
                        "duplicate column names: x"),
    "complex": (lambda d: d.assign(x=d["x"] + 1j), "column 'x' is complex"),
    "datetime": (lambda d: d.assign(x=pd.date_range("2020-01-01", periods=len(d))),
                 "column 'x' has dtype datetime64"),
    "multiindex": (lambda d: d.set_axis(pd.MultiIndex.from_tuples(
        [("a", "y"), ("a", "x"), ("b", "g")]), axis=1), "multi-level column names"),
}


@pytest.mark.needs_r
@pytest.mark.parametrize("name", list(UNCONVERTIBLE))
def test_what_r_cannot_be_given_is_a_data_error_naming_the_column(
        live: Lme4Live, df: pd.DataFrame, name: str) -> None:
    make, words = UNCONVERTIBLE[name]
    data = make(df)
    error = in_r("r_frame_error", data)
    assert error is not None and words in error
    # through the runner: a failed record with that text, not a traceback
    rec = runner.fit_case(live, FakeCase(f"conv-{name}", "y ~ x + (1 | g)"), data,
                          use_cache=False)
    assert rec["error"].startswith("DataConversionError: ") and words in rec["error"]


@pytest.mark.needs_r
def test_conversion_keeps_what_r_can_take_and_ignores_unusable_unused_columns(
        live: Lme4Live, df: pd.DataFrame) -> None:
    data = pd.DataFrame({
        "s": pd.Series(["a", None, "b", "a"], dtype=object),
        "n": pd.Series([1, 2.5, None, 4], dtype=object),
        "b": pd.array([True, None, False, True], dtype="boolean"),
        "e": pd.Series([None] * 4, dtype=object),
    })
    assert in_r("r_column_kinds", data) == ["character", "numeric", "logical", "logical", "1",
                                            "1", "1", "2.5"]
    # a column the formula does not name is left out rather than refusing the fit
    odd = df.assign(when=pd.date_range("2020-01-01", periods=len(df)),
                    junk=pd.Series([1.5, "a"] * 20, dtype=object))
    rec = runner.fit_case(live, FakeCase("unused-odd", "y ~ x + (1 | g)"), odd,
                          use_cache=False)
    plain = runner.fit_case(live, FakeCase("plain", "y ~ x + (1 | g)"), df, use_cache=False)
    assert rec["error"] is None and rec["objective"] == plain["objective"]


# ----------------------------------------------------------------------------- 2. timeout


@pytest.mark.needs_r
def test_case_timeout_stops_lme4_inside_r_and_r_goes_on(live: Lme4Live) -> None:
    big = CASES["InstEval-service-ML"]  # lme4 about 10 s here
    r_process = in_r("r_sleep", 0)
    rec = runner.fit_case(live, big, timeout=0.5, use_cache=False)  # the R lane loads the data
    assert rec["error"] == "timeout: lme4 did not finish within 0.5 s"
    # the fit was stopped, not finished late: the record carries no estimates
    assert rec["objective"] is None and rec["theta"] is None and not rec["fixef"]
    # R stopped itself (setTimeLimit): the same R process goes on, the worker was not killed
    assert in_r("r_sleep", 0) == r_process
    # the limit was lifted (the next fits start after it would have expired): they run to the
    # end and are right
    case = CASES["sleepstudy-slopes-ML"]
    again = runner.fit_case(live, case, use_cache=False)
    assert again["error"] is None
    assert compare_records(Lme4Recorded().fit(case, None), again).verdict == AGREED
    # longer than the limit, at an interrupt point: would raise if the limit were kept
    assert in_r("r_sleep", 0.6) == r_process


@pytest.mark.needs_r
def test_an_r_that_does_not_stop_itself_is_killed_and_restarted(live: Lme4Live) -> None:
    # R's setTimeLimit is checked at R's interrupt points only; a call that never reaches one
    # (here a sleep outside R) is killed at the hard limit, and the lane's next call starts R
    # anew in a new worker, which fits right
    r_process = in_r("r_sleep", 0)
    out = isolation.call(Lme4Live.lane, "time:sleep", 60, timeout=1)
    assert out.kind == "timeout" and out.value is None
    assert out.error.startswith("timeout: killed after ") and "limit is 1 s" in out.error
    assert in_r("r_sleep", 0) != r_process
    case = CASES["sleepstudy-slopes-REML"]
    assert compare_records(Lme4Recorded().fit(case, None),
                           runner.fit_case(live, case, use_cache=False)).verdict == AGREED


# ----------------------------------------------------------------------------- 3. a dying R

CRASH_IMPL = '''
import copy, os, resource
from harness.adapters import Lme4Recorded
from harness.core.catalog import load_catalog

_CASES = {(c.formula, c.REML): c for c in load_catalog() if c.dataset in ("sleepstudy",
                                                                            "Dyestuff")}

def fit(formula, data, REML):
    case = _CASES[(formula, bool(REML))]
    if case.id == "Dyestuff-intercept-REML":  # dies as an embedded R calling abort() would
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.abort()
    rec = copy.deepcopy(Lme4Recorded().fit(case, None))
    for key in ("impl", "case_id"):
        rec.pop(key)
    return rec
'''


def test_a_process_killed_in_a_fit_costs_only_its_case(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Also the session summary under pytest-xdist (the run is one: formerly
    tests/test_plugin.py::test_summary_under_xdist, with wrongimpl_d, its own run)."""
    pytest.importorskip("xdist")
    from test_plugin import WRONG_IMPL

    for var in XDIST_VARS:  # when this suite runs under xdist, the child is no worker
        monkeypatch.delenv(var, raising=False)
    pytester.makepyfile(crashimpl_f=CRASH_IMPL, wrongimpl_d=WRONG_IMPL)
    result = pytester.runpytest_subprocess(
        "--pyargs", "harness", "--reference=recorded", "-n", "2", "-p", "no:cacheprovider",
        "--impl", "crashimpl_f:fit", "--impl", "statsmodels", "--impl", "wrongimpl_d:fit",
        "-k", "(sleepstudy-intercept or Dyestuff-intercept) and not test_fit", timeout=300)
    # the summary under xdist: wrongimpl_d (sleepstudy's fixed effects 10% off) disagrees on
    # the two sleepstudy items and agrees on the two Dyestuff ones
    result.stdout.fnmatch_lines([
        "*mixedref harness summary*",
        "wrongimpl_d:fit*2*2*",
        "*sleepstudy-intercept-*[[]wrongimpl_d:fit[]]: disagreed in fixef*",
    ])
    # the fit died in its own worker process (its lane): the crashed case is one ordinary
    # failed item naming the signal, the pytest-xdist workers live on, everything else ran
    result.assert_outcomes(passed=7 + 2, failed=1 + 2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "Dyestuff-intercept-REML: crashimpl_f:fit vs lme4-recorded: failed: crashed: the worker "
        "process was killed by signal SIGABRT (6)",
        "*mixedref harness summary*",
        "Dyestuff-intercept-REML*FAIL*ok*",
        "crashimpl_f:fit*3*1*",
        "  Dyestuff-intercept-REML [[]crashimpl_f:fit[]]: failed: crashed: the worker process "
        "was killed by signal SIGABRT (6)",
        "FAILED *Dyestuff-intercept-REML[[]crashimpl_f:fit-vs-lme4-recorded[]]*"])
    assert "crashed while running" not in result.stdout.str()  # no xdist worker was lost
    assert "INTERNALERROR" not in result.stdout.str()


# ----------------------------------------------------------------------------- 4. no R


NO_R = {"R_HOME": "/nonexistent", "PATH": "/nonexistent-bin:/bin"}


def _run_without(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                 env: dict[str, str], *args: str) -> pytest.RunResult:
    for var in XDIST_VARS:
        monkeypatch.delenv(var, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return pytester.runpytest_subprocess(
        "--pyargs", "harness", "-p", "no:cacheprovider", "-rs",
        "-k", "Dyestuff-intercept-REML and not test_fit", "--impl", "statsmodels", *args)


def test_without_r_the_run_uses_the_recording_and_says_why_once(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run_without(pytester, monkeypatch, NO_R)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "mixedref harness: reference = recorded lme4 answers lme4.json (*); live lme4 not "
        "used: R not available: rpy2 import failed: OSError: cannot load library "
        "'/nonexistent/lib/libR.so'*"])
    assert result.stdout.str().count("R not available") == 1
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_without_r_a_live_run_is_a_usage_error_with_the_reason(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # --reference=live is a promise the run cannot keep without R: it stops before collection
    # (also what tests/test_verdicts.py's test_live_reference_without_r_is_a_usage_error
    # checked in a run of its own: one line, naming the way out)
    result = _run_without(pytester, monkeypatch, NO_R, "--reference=live")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = [ln for ln in result.stderr.lines if ln.strip()]
    assert len(err) == 1 and "--reference=recorded" in err[0], err
    result.stderr.fnmatch_lines([
        "ERROR: --reference=live: lme4 cannot be used here (R not available: rpy2 import "
        "failed: OSError: cannot load library '/nonexistent/lib/libR.so'*); install R and lme4*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.needs_r
def test_without_lme4_the_reason_names_the_missing_package(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, live: Lme4Live) -> None:
    # Debian's R takes its site library from R_LIBS_SITE, where lme4 is installed
    result = _run_without(pytester, monkeypatch, {"R_LIBS_SITE": str(pytester.path)})
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*reference = recorded lme4 answers lme4.json (*); live lme4 not used: R started "
        "but lme4/jsonlite failed to load: Error in library(lme4) : there is no package "
        "called *lme4*"])
    assert result.stdout.str().count("failed to load") == 1
