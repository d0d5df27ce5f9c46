"""The pytest plugin, run through pytester against the recorded lme4 answers (no R needed):
user implementations plugged in with --impl, failures with their parameter table, the
session going on after a raising or NaN implementation, exit codes, skips, strict xfails,
the summary (also under pytest-xdist)."""

from __future__ import annotations

import textwrap

# statsmodels and harness are imported here, before pytester's in-process runs: modules first
# imported inside such a run are unloaded after it, and numpy's extension modules cannot be
# loaded twice per process.
import pytest
import statsmodels.regression.mixed_linear_model  # noqa: F401

import harness.adapters  # noqa: F401
import harness.core.catalog  # noqa: F401
import harness.pytest_plugin.plugin  # noqa: F401

pytest_plugins = ["pytester"]

# the sessions below judge with lme4's devfun in one R, started once (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("shared_r_lane")

# A user implementation that returns lme4's recorded answer, with the fixed effects of the
# sleepstudy cases 10% off: deliberately wrong there and right everywhere else.
WRONG_IMPL = '''
import copy
from harness.adapters import Lme4Recorded
from harness.core.catalog import load_catalog

_CASES = {(c.formula, c.REML): c for c in load_catalog() if c.dataset in ("sleepstudy",
                                                                            "Dyestuff")}

def fit(formula, data, REML):
    case = _CASES[(formula, bool(REML))]
    rec = copy.deepcopy(Lme4Recorded().fit(case, None))
    for key in ("impl", "case_id"):
        rec.pop(key)
    if case.dataset == "sleepstudy":
        rec["fixef"] = {k: 1.1 * v for k, v in rec["fixef"].items()}
    return rec
'''

BAD_IMPLS = '''
def raising(formula, data, REML):
    raise ValueError("boom in my fit")

def nan(formula, data, REML):
    return {"fixef": {"(Intercept)": float("nan")}, "sigma": 1.0}
'''

SELECT = "(sleepstudy-intercept or Dyestuff-intercept) and not test_fit"


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--pyargs", "harness", "--reference=recorded", "-rfs", *args)


def test_wrong_implementation_fails_the_right_cases_with_a_table(
        pytester: pytest.Pytester) -> None:
    from harness.core import isolation

    pytester.makepyfile(wrongimpl_a=WRONG_IMPL)
    pytester.syspathinsert()
    r_worker = isolation.call("R", "os:getpid").value  # this process's R lane (shared_r_lane)
    lanes = isolation.lanes()
    result = _run(pytester, "--impl", "wrongimpl_a:fit", "-k", SELECT)
    # the session, run inside this one, judged in this process's R and left it running; the
    # candidate's lane, which it started, it stopped
    assert isolation.call("R", "os:getpid").value == r_worker
    assert isolation.lanes() == lanes
    result.assert_outcomes(passed=2, failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*reference = recorded lme4 answers lme4.json*",
        "*FAILED*sleepstudy-intercept-REML[[]wrongimpl_a:fit-vs-lme4-recorded[]]*",
        "*FAILED*sleepstudy-intercept-ML[[]wrongimpl_a:fit-vs-lme4-recorded[]]*",
    ])
    out = result.stdout.str()
    assert "Dyestuff-intercept-REML[wrongimpl_a:fit-vs-lme4-recorded] PASSED" in out or \
        "FAILED harness/catalog.yaml::Dyestuff" not in out
    # the failure shows the parameter table, with the offending rows marked
    result.stdout.fnmatch_lines([
        "*sleepstudy-intercept-REML: wrongimpl_a:fit vs lme4-recorded: disagreed in "
        "fixef[[](Intercept)[]], fixef[[]Days[]]*",
        "*name*reference*candidate*difference*allowed*",
        "XX*fixef[[](Intercept)[]]*",
        "ok*sigma*",
    ])
    # and the session summary counts them
    result.stdout.fnmatch_lines([
        "*mixedref harness summary*",
        "implementation*agreed*disagreed*",
        "wrongimpl_a:fit*2*2*",
        "disagreements and failures (2):*",
    ])


def test_raising_and_nan_implementations_fail_with_the_reason_and_the_session_goes_on(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(badimpls_b=BAD_IMPLS)
    pytester.syspathinsert()
    result = _run(pytester, "--impl", "badimpls_b:raising", "--impl", "badimpls_b:nan",
                  "-k", "Dyestuff-intercept and not test_fit")
    result.assert_outcomes(failed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "ValueError: boom in my fit" in out
    assert "non-finite values returned: fixef[(Intercept)]=nan" in out
    assert "INTERNALERROR" not in out and "Traceback" not in out
    result.stdout.fnmatch_lines(["implementation*failed*", "badimpls_b:raising*2*",
                                 "badimpls_b:nan*2*"])


def test_unexpressible_cases_are_skipped_with_the_reason(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "--impl", "statsmodels", "--allow-empty", "-k",
                  "Penicillin and crossed and not test_fit")
    result.assert_outcomes(skipped=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*nothing gated: statsmodels compared 0 of 2 (2 not supported)"
                                 " (--allow-empty)*",
                                 "*SKIPPED*statsmodels: not expressible in statsmodels.MixedLM: "
                                 "more than one grouping factor*"])


def test_a_candidate_compared_on_no_case_fails_the_run(pytester: pytest.Pytester) -> None:
    """Every case skipped is no gate: without --allow-empty the run fails and says why."""
    result = _run(pytester, "--impl", "statsmodels", "-k",
                  "Penicillin and crossed and not test_fit")
    result.assert_outcomes(skipped=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["gate: statsmodels compared 0 of 2 (2 not supported)",
                                 "*nothing gated: statsmodels compared 0 of 2 (2 not supported);"
                                 " the run fails*"])


def test_catalog_xfail_is_strict(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(wrongimpl_c=WRONG_IMPL)
    pytester.syspathinsert()
    catalog = pytester.makefile(".yaml", my_catalog=textwrap.dedent("""
        cases:
          - spec: intercept
            dataset: sleepstudy
            formula: "Reaction ~ Days + (1 | Subject)"
            methods: [REML]
            xfail: {"wrongimpl_c:fit": "known: scales the fixed effects"}
          - spec: intercept
            dataset: Dyestuff
            formula: "Yield ~ 1 + (1 | Batch)"
            methods: [REML]
            xfail: {"wrongimpl_c:fit": "claimed wrong, but it is right"}
    """))
    result = _run(pytester, "--impl", "wrongimpl_c:fit", "--catalog", str(catalog),
                  "-k", "not test_fit")
    # the sleepstudy case fails as expected; the Dyestuff one passes, which a strict xfail
    # turns into a failure (a fix shows up)
    result.assert_outcomes(xfailed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*XPASS(strict)*claimed wrong, but it is right*"])


# The summary under pytest-xdist is checked in tests/test_r_failures.py's xdist run
# (test_a_process_killed_in_a_fit_costs_only_its_case, with this module's WRONG_IMPL).


def test_benchmarks_are_skipped_unless_asked(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "-k", "test_fit")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*benchmarks run only with --benchmark-only*"])


@pytest.mark.needs_r
def test_benchmarks_print_the_mixedref_lme4_ratio(pytester: pytest.Pytester,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # in a subprocess, and R not started here: pytester unloads the modules first imported
    # during a test, and rpy2 cannot be imported twice into a process with R embedded.
    # When this suite itself runs under xdist, the subprocess must not believe it is a worker.
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)
    result = pytester.runpytest_subprocess(
        "--pyargs", "harness", "--reference=recorded", "-p", "no:cacheprovider", "-rs",
        "-k", "Dyestuff-intercept-REML and test_fit and (lme4 or mixedref or statsmodels)",
        "--benchmark-only")
    if result.parseoutcomes().get("skipped") and "lme4: R " in result.stdout.str():
        pytest.skip("R/lme4 not available to the benchmarks")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*benchmark 'Dyestuff-intercept-REML': 3 tests*"])
    result.stdout.fnmatch_lines(["*mixedref harness: median fit times, x lme4*",
                                 "case*lme4*mixedref*statsmodels*mixedref/lme4",
                                 "Dyestuff-intercept-REML * ms * ms (*x) * ms (*x) *"])


CLAIMING_IMPL = WRONG_IMPL.replace(
    'rec["fixef"] = {k: 1.1 * v for k, v in rec["fixef"].items()}',
    'rec["objective"] -= 1.0\n        rec["loglik"] += 0.5')


def test_a_lower_reported_objective_is_a_claim_that_the_judge_checks(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(claimimpl_e=CLAIMING_IMPL)
    pytester.syspathinsert()
    result = _run(pytester, "--impl", "claimimpl_e:fit", "-k",
                  "sleepstudy-intercept-REML and not test_fit")
    result.assert_outcomes(failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*sleepstudy-intercept-REML [[]claimimpl_e:fit[]]: disagreed in loglik, objective, "
        "consistency.objective, consistency.loglik; reported REML criterion * but its "
        "estimates give *"])
    assert "findings about the reference" not in result.stdout.str()


TRUE_IMPL = WRONG_IMPL.replace(
    'rec["fixef"] = {k: 1.1 * v for k, v in rec["fixef"].items()}', 'pass')


@pytest.mark.needs_r
def test_a_better_optimum_than_the_reference_is_a_finding_when_both_judges_agree(
        pytester: pytest.Pytester, tmp_path) -> None:
    """The reference is a poor optimum built from lme4's own devfun (θ 1.5 times lme4's, with
    lme4's β̂, σ̂ and criterion there); the candidate returns lme4's real answer."""
    import json

    from harness.adapters import Lme4Recorded
    from harness.adapters.lme4 import RECORDED_PATH
    from harness.core import isolation
    from harness.core.catalog import load_catalog

    case = next(c for c in load_catalog() if c.id == "sleepstudy-intercept-REML")
    out = isolation.call("R", "harness.core.rbridge:unavailable", timeout=60)
    if out.error or out.value:
        pytest.skip(f"needs R and lme4: {out.error or out.value}")
    real = Lme4Recorded().fit(case, None)
    theta = [1.5 * real["theta"][0]]
    ev = isolation.call("R", "harness.core.judge:lme4_evaluate", case, [theta], timeout=60).value[0]
    sigma = ev["sigma"]
    poor = dict(real, fixef=ev["beta"], sigma=sigma, theta=theta, objective=ev["objective"],
                loglik=-0.5 * ev["objective"],
                varcorr=[{"grp": "Subject", "var1": "(Intercept)", "var2": None,
                          "vcov": (theta[0] * sigma) ** 2, "sdcor": theta[0] * sigma},
                         {"grp": "Residual", "var1": None, "var2": None, "vcov": sigma ** 2,
                          "sdcor": sigma}])
    doc = json.loads(RECORDED_PATH.read_text())
    doc["records"][case.id] = poor
    recorded = tmp_path / "poor_lme4.json"
    recorded.write_text(json.dumps(doc))
    pytester.makepyfile(trueimpl_e=TRUE_IMPL)
    pytester.syspathinsert()
    result = _run(pytester, "--recorded", str(recorded), "--impl", "trueimpl_e:fit", "-k",
                  "sleepstudy-intercept-REML and not test_fit")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    gap = ev["objective"] - real["objective"]
    result.stdout.fnmatch_lines([
        "findings about the reference: candidate reached a lower objective (1):",
        f"*sleepstudy-intercept-REML [[]trueimpl_e:fit[]]: the candidate's estimates reach a "
        f"REML criterion lower than the reference's by {gap:.3g} *re-evaluated under lme4's "
        "devfun: * mixedref's objective: *",
    ])


NOBS_CONFTEST = '''
from harness.core.comparators import row


class Nobs:
    name = "nobs"
    reason = "the number of observations used is a count: it must be equal"

    def rows(self, reference, candidate, tol, notes):
        r = row("nobs", reference.get("nobs"), candidate.get("nobs"), 0.0)
        return [] if r is None else [r]


def pytest_harness_comparators(config):
    return [Nobs()]
'''

NOBS_IMPL = WRONG_IMPL.replace(
    'rec["fixef"] = {k: 1.1 * v for k, v in rec["fixef"].items()}', 'rec["nobs"] += 1')


def test_a_comparator_from_a_conftest_adds_its_rows(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(NOBS_CONFTEST)
    pytester.makepyfile(nobsimpl_g=NOBS_IMPL)
    pytester.syspathinsert()
    result = _run(pytester, "--impl", "nobsimpl_g:fit", "-k",
                  "sleepstudy-intercept-REML and not test_fit")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*nobsimpl_g:fit vs lme4-recorded: disagreed in nobs*",
                                 "XX*nobs*180*181*1*0*"])
