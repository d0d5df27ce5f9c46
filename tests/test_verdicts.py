"""Verdicts another project can gate on: six faulty implementations, each failing its case alone
with a message that names what happened, within the case timeout + 10 s, while the run goes on
to its summary and a non-zero exit code. Also: no green without a reference.

The faults are built on lme4's recorded answers, so every expected message follows from how the
fault was made (a criterion 10 lower, the 2π constant left out, β one SE off), not from a run.
"""

from __future__ import annotations

import re

import pytest

# imported before pytester's in-process runs (see tests/test_plugin.py)
import harness.adapters  # noqa: F401
import harness.core.catalog  # noqa: F401
import harness.pytest_plugin.plugin  # noqa: F401

pytest_plugins = ["pytester"]

# the in-process sessions below judge with lme4's devfun in one R, started once (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("shared_r_lane")

XDIST_VARS = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")

FAULTS = '''
import copy, ctypes, math
import numpy as np
from harness.adapters import Lme4Recorded
from harness.core.catalog import load_catalog

_CASES = {(c.formula, c.REML): c for c in load_catalog()}

def _lme4(formula, REML):
    rec = copy.deepcopy(Lme4Recorded().fit(_CASES[(formula, bool(REML))], None))
    for key in ("impl", "case_id"):
        rec.pop(key)
    return rec

def minus10(formula, data, REML):          # reports a criterion 10 below its estimates'
    rec = _lme4(formula, REML)
    rec["objective"] -= 10.0
    return rec

def no2pi(formula, data, REML):            # the 2π constant left out of the log-likelihood
    rec = _lme4(formula, REML)
    k = len(data) - (len(rec["fixef"]) if REML else 0)
    rec["loglik"] += 0.5 * k * math.log(2 * math.pi)
    rec["objective"] -= k * math.log(2 * math.pi)
    return rec

def beta_off(formula, data, REML):         # lme4's θ, but β one standard error off
    rec = _lme4(formula, REML)
    rec["fixef"]["Days"] += rec["fixef_se"]["Days"]
    return rec

def csleep60(formula, data, REML):         # one C call that does not return for a minute
    ctypes.CDLL(None).sleep(60)             # (asleep, not burning a core; a busy LAPACK call
    return _lme4(formula, REML)             # is killed the same way: tests/test_isolation.py)

def segfault(formula, data, REML):
    ctypes.string_at(0)

def hog(formula, data, REML):              # allocates without bound (800 MB a step)
    keep = []
    while True:
        keep.append(np.empty(100_000_000))
'''

IMPLS = ("minus10", "no2pi", "beta_off", "csleep60", "segfault", "hog")
MESSAGES = {
    "minus10": r"reported REML criterion 1733\.628\d* but its estimates give 1743\.628\d* under "
               r"lme4's devfun|reported REML criterion 1733\.628\d* but its estimates give "
               r"1743\.628\d* under mixedref's objective",
    "no2pi": r"the 2π constant is left out of its likelihood",
    "beta_off": r"β is not the GLS solution at its own θ .*Days 12\.01\d* where β̂\(θ\) is "
                r"10\.467\d* \(\+1 SE\)",
    "csleep60": r"timeout: killed after 10\.\d s",
    "segfault": r"SIGSEGV",
    "hog": r"memory: ",
}


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in XDIST_VARS:  # when this suite runs under xdist, the child is no worker
        monkeypatch.delenv(var, raising=False)


def test_six_faults_each_fail_alone_named_within_the_timeout(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    pytester.makepyfile(faults_v=FAULTS)
    args = ["--pyargs", "harness", "--reference=recorded", "-p", "no:cacheprovider", "-v",
            "--case-timeout", "10", "--case-memory", "3G", "-k",
            "sleepstudy-slopes-REML and not test_fit"]
    for impl in IMPLS:
        args += ["--impl", f"faults_v:{impl}"]
    result = pytester.runpytest_subprocess(*args, timeout=300)  # a hang fails the test here
    out = result.stdout.str()
    result.assert_outcomes(failed=len(IMPLS))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in out
    lines = {impl: [ln for ln in out.splitlines() if f"faults_v:{impl} vs" in ln]
             for impl in IMPLS}  # the failure's headline: "<case>: <impl> vs <reference>: ..."
    for impl, pattern in MESSAGES.items():
        assert any(re.search(pattern, ln) for ln in lines[impl]), (impl, lines[impl])
    result.stdout.fnmatch_lines(["*mixedref harness summary*",
                                 "disagreements and failures (6):*"])
    # the C call was killed at the case's limit, as the harness measured it
    assert re.search(r"csleep60 vs lme4-recorded: failed: timeout: killed after 10\.\d s", out)


# A live reference without R is a usage error in one line: tests/test_r_failures.py
# (test_without_r_a_live_run_is_a_usage_error).


MISSING_CATALOG = """
cases:
  - spec: intercept
    dataset: Dyestuff
    formula: "Yield ~ 1 + (1 | Batch)"
    methods: [REML]
  - spec: unrecorded
    dataset: Dyestuff
    formula: "Yield ~ 1 + (1 | Batch)"
    methods: [ML]
"""


def test_an_item_without_a_reference_answer_is_no_verdict_and_fails_the_run(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    catalog = pytester.makefile(".yaml", cat_missing=MISSING_CATALOG)
    args = ["--pyargs", "harness", "--reference=recorded", "--catalog", str(catalog),
            "--impl", "mixedref", "-p", "no:cacheprovider", "-k", "not test_fit"]
    # in this process (pytester's in-process runs: the plugin's code without an interpreter
    # start; the candidate is fitted in its isolated worker as always)
    result = pytester.runpytest_inprocess(*args)
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*no verdict: reference lme4-recorded: no recorded lme4 answer for case "
        "'Dyestuff-unrecorded-ML'*",
        "*items without a verdict (no reference answer): 1*"])
    allowed = pytester.runpytest_inprocess(*args, "--allow-missing-reference", "-rs")
    allowed.assert_outcomes(passed=1, skipped=1)
    assert allowed.ret == pytest.ExitCode.OK
    allowed.stdout.fnmatch_lines(["*items without a verdict (no reference answer): 1*",
                                  "*no verdict: reference lme4-recorded*"
                                  "(--allow-missing-reference)*"])


# ----------------------------------------------------------------------------- registry, baseline

SHIFTED = '''
import copy, os
from harness.adapters import Lme4Recorded
from harness.core.catalog import load_catalog

_CASES = {(c.formula, c.REML): c for c in load_catalog()}

def fit(formula, data, REML):
    """lme4's answer, with the Days fixed effect moved by SHIFT_SE of its SE (SHIFT_SE_REML or
    SHIFT_SE_ML, where set, for that method's items) and, on REML items only, its SE scaled by
    SE_FACTOR."""
    case = _CASES[(formula, bool(REML))]
    rec = copy.deepcopy(Lme4Recorded().fit(case, None))
    for key in ("impl", "case_id", "coef_tests"):  # its t tests would follow the shifted Days
        rec.pop(key)
    se = rec["fixef_se"]["Days"]
    shift = os.environ.get("SHIFT_SE_" + ("REML" if REML else "ML"),
                           os.environ.get("SHIFT_SE", "0"))
    rec["fixef"]["Days"] += float(shift) * se
    if REML:
        rec["fixef_se"]["Days"] *= float(os.environ.get("SE_FACTOR", "1"))
    return rec
'''

SELECT_DAYS = "sleepstudy-intercept and not test_fit"


def _registry(pytester: pytest.Pytester, name: str, entries: list[dict]) -> str:
    import yaml

    path = pytester.path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"divergences": entries}))
    return str(path)


def _entry(**kw: object) -> dict:
    return {"case": "sleepstudy-intercept-REML", "impl": "shifted_r:fit",
            "quantity": "fixef_se[Days]", "direction": "higher",
            "reason": "the SE is deliberately 1% high", **kw}


#: three sleepstudy specs, REML and ML: six items, each with a Days fixed effect
SELECT_THREE = "(sleepstudy-intercept or sleepstudy-slopes or sleepstudy-uncorrelated) " \
               "and not test_fit"


def test_registered_divergences_expected_grown_stale_and_unknown(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """One run shows each state on its own item: with fixef_se[Days] 1% high on the REML items,
    an unregistered divergence fails, one registered with its size is an expected failure with
    the reason, one registered at a third of its size grew, and an entry on an ML item (which
    agrees) stopped firing. (That a run whose only divergence is registered exits 0 is
    tests/test_findings.py's summary test.)"""
    _clean_env(monkeypatch)
    monkeypatch.setenv("SE_FACTOR", "1.01")  # fixef_se[Days] 1% high: 5 x its 0.2% tolerance
    pytester.makepyfile(shifted_r=SHIFTED)
    from harness.adapters import Lme4Recorded
    from harness.core.catalog import load_catalog

    cases = {c.id: c for c in load_catalog()}

    def one_percent(case_id: str) -> float:  # the size of the 1% shift on that case
        return 0.01 * Lme4Recorded().fit(cases[case_id], None)["fixef_se"]["Days"]

    registry = _registry(pytester, "mixed", [
        _entry(size=round(one_percent("sleepstudy-intercept-REML"), 4)),  # registered
        _entry(case="sleepstudy-slopes-REML",  # registered at a third of its size: grew
               size=round(one_percent("sleepstudy-slopes-REML") / 3, 5)),
        _entry(case="sleepstudy-intercept-ML", size=1.0),  # agrees: stopped firing
    ])  # sleepstudy-uncorrelated-REML: unregistered
    pytester.syspathinsert()  # in this process, as the baseline test's sessions below
    result = pytester.runpytest_inprocess(
        "--pyargs", "harness", "--reference=recorded", "-p", "no:cacheprovider", "-rxf", "-v",
        "--impl", "shifted_r:fit", "-k", SELECT_THREE, "--divergences", registry)
    result.assert_outcomes(passed=2, failed=3, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    outcome = {case: re.search(rf"{re.escape(case)}\[shifted_r:fit-vs-lme4-recorded\] "
                               r"(PASSED|FAILED|XFAIL|XPASS)", out).group(1)
               for case in ("sleepstudy-intercept-REML", "sleepstudy-slopes-REML",
                            "sleepstudy-uncorrelated-REML", "sleepstudy-intercept-ML",
                            "sleepstudy-slopes-ML", "sleepstudy-uncorrelated-ML")}
    assert outcome == {"sleepstudy-intercept-REML": "XFAIL", "sleepstudy-slopes-REML": "FAILED",
                       "sleepstudy-uncorrelated-REML": "FAILED",
                       "sleepstudy-intercept-ML": "FAILED", "sleepstudy-slopes-ML": "PASSED",
                       "sleepstudy-uncorrelated-ML": "PASSED"}, outcome
    result.stdout.fnmatch_lines(["*registered divergence (1 quantities, e.g. fixef_se[[]Days[]]): "
                                 "the SE is deliberately 1% high*"])
    result.stdout.fnmatch_lines(["*fixef_se[[]Days[]]: registered divergence grew*"])
    result.stdout.fnmatch_lines(["*stopped firing: fixed? remove the entry*"])
    result.stdout.fnmatch_lines(["*sleepstudy-uncorrelated-REML: shifted_r:fit vs lme4-recorded: "
                                 "disagreed in fixef_se[[]Days[]]*"])


def test_a_registry_entry_naming_no_catalog_case_is_a_usage_error(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused at configure, before any collection or fit: run in this process."""
    _clean_env(monkeypatch)
    bad = _registry(pytester, "bad", [_entry(case="nosuch-*", size=1.0)])
    result = pytester.runpytest_inprocess("--pyargs", "harness", "--reference=recorded",
                                          "-p", "no:cacheprovider", "-k", SELECT_DAYS,
                                          "--divergences", bad)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "entry 0 (case 'nosuch-*'" in result.stderr.str()
    assert "matches no catalog case" in result.stderr.str()


def test_baseline_drift_within_lme4s_tolerance_fails_and_other_catalogs_are_refused(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _clean_env(monkeypatch)
    pytester.makepyfile(shifted_r=SHIFTED)
    base = ["--pyargs", "harness", "--reference=recorded", "-p", "no:cacheprovider", "-v",
            "--impl", "shifted_r:fit", "-k", SELECT_DAYS]
    saved = pytester.path / "baseline"
    # release 1: Days 0.008 SE low (lme4 allows 0.01 SE): agrees, saved
    monkeypatch.setenv("SHIFT_SE", "-0.008")
    # in this process (the fits run in the harness's worker processes, started anew by each
    # session with this environment): no interpreter start for the two sessions
    pytester.syspathinsert()
    result = pytester.runpytest_inprocess(*base, "--save-baseline", str(saved))
    result.assert_outcomes(passed=2)
    # release 2: on the REML item 0.008 SE high, still within lme4's tolerance, but 0.016 SE
    # from release 1: drift; the ML item unchanged: no drift
    monkeypatch.setenv("SHIFT_SE_REML", "0.008")
    result = pytester.runpytest_inprocess(*base, "--compare-baseline", str(saved))
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*sleepstudy-intercept-REML[[]shifted_r:fit-vs-lme4-recorded[]] FAILED*",
        "*sleepstudy-intercept-ML[[]shifted_r:fit-vs-lme4-recorded[]] PASSED*"])
    result.stdout.fnmatch_lines([
        "*drift since the baseline (1):*",
        "*sleepstudy-intercept-REML [[]shifted_r:fit[]]: fixef[[]Days[]] +*"])
    # a baseline of another catalog is refused at configure, naming both versions (in this
    # process: nothing is fitted)
    other = pytester.makefile(".yaml", other_catalog=MISSING_CATALOG)
    result = pytester.runpytest_inprocess(*base, "--catalog", str(other),
                                          "--compare-baseline", str(saved))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "catalog version" in result.stderr.str()
