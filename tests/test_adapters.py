"""Adapters, the runner and the R bridge: registry, user callables, statsmodels' mapping into
lme4's quantities, recorded answers, failures turned into records, R data conversion."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from conftest import FakeCase

from harness.adapters import (
    Adapter,
    CallableAdapter,
    Lme4Recorded,
    Statsmodels,
    get_adapter,
)
from harness.core import runner
from harness.core.catalog import load_catalog
from harness.core.compare import AGREED, compare_records

CASES = {c.id: c for c in load_catalog()}




# ----------------------------------------------------------------------------- registry


def test_builtin_names_resolve_and_unknown_names_are_explained() -> None:
    for name in ("lme4", "lme4-recorded", "mixedref", "mixedref-literal", "statsmodels"):
        assert get_adapter(name).name == name
    with pytest.raises(ValueError, match="unknown implementation 'nope'.*statsmodels"):
        get_adapter("nope")


def test_user_callable_returns_a_partial_mapping(tmp_path, monkeypatch) -> None:
    (tmp_path / "userimpl_ok.py").write_text(textwrap.dedent("""
        def fit(formula, data, REML):
            return {"fixef": {"(Intercept)": float(data["y"].mean())}, "sigma": 1.0}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    adapter = CallableAdapter("userimpl_ok:fit")
    assert adapter.unavailable() is None
    rec = adapter.fit(FakeCase("c1", "y ~ 1 + (1|g)"), pd.DataFrame({"y": [1.0, 3.0]}))
    assert rec["impl"] == "userimpl_ok:fit" and rec["case_id"] == "c1"
    assert rec["fixef"] == {"(Intercept)": 2.0} and rec["sigma"] == 1.0
    assert rec["varcorr"] == [] and rec["error"] is None


def test_user_callable_that_cannot_be_loaded_says_why() -> None:
    reason = CallableAdapter("no_such_module_xyz:fit").unavailable()
    assert reason is not None and "no_such_module_xyz" in reason and "ModuleNotFoundError" in reason


# ----------------------------------------------------------------------------- runner


class _Raising(Adapter):
    name = "raising"

    def fit(self, case, data):
        raise np.linalg.LinAlgError("matrix is not positive definite")


class _NaN(Adapter):
    name = "nan"

    def fit(self, case, data):
        return {"fixef": {"(Intercept)": math.nan}, "sigma": 1.0}


class _Slow(Adapter):
    name = "slow"

    def fit(self, case, data):
        time.sleep(5)
        return {"sigma": 1.0}


class _Declines(Adapter):
    name = "declines"

    def fit(self, case, data):
        raise NotImplementedError("only (1 + x | g)")


def test_runner_turns_exceptions_nan_and_timeouts_into_failed_records() -> None:
    case = FakeCase("c-fail", "y ~ 1 + (1|g)")
    data = pd.DataFrame({"y": [1.0]})
    rec = runner.fit_case(_Raising(), case, data, use_cache=False)
    assert rec["error"].startswith("LinAlgError: matrix is not positive definite")
    rec = runner.fit_case(_NaN(), case, data, use_cache=False)
    assert "non-finite" in rec["error"] and "fixef[(Intercept)]=nan" in rec["error"]
    rec = runner.fit_case(_Slow(), case, data, timeout=0.3, use_cache=False)
    assert rec["error"].startswith("timeout")
    rec = runner.fit_case(_Declines(), case, data, use_cache=False)
    assert runner.is_not_supported(rec) and "only (1 + x | g)" in rec["error"]


def test_runner_caches_per_impl_and_case() -> None:
    calls = []

    class Counting(Adapter):
        name = "counting"

        def fit(self, case, data):
            calls.append(case.id)
            return {"sigma": 1.0}

    runner.clear_cache()
    case = FakeCase("c-cache", "y ~ 1 + (1|g)")
    # in-process (isolated=False): the calls are counted in this process's list, which a
    # worker process's copy of the (local, so unpicklable) adapter could not append to
    first = runner.fit_case(Counting(), case, pd.DataFrame(), isolated=False)
    again = runner.fit_case(Counting(), case, pd.DataFrame(), isolated=False)
    assert first is again and calls == ["c-cache"]
    runner.clear_cache()


# ----------------------------------------------------------------------------- lme4 recorded


def test_recorded_lme4_answers_exist_for_every_catalog_case() -> None:
    rec = Lme4Recorded()
    assert rec.unavailable() is None
    missing = [cid for cid, c in CASES.items() if rec.supports(c) is not None]
    assert missing == []
    r = rec.fit(CASES["sleepstudy-slopes-REML"], None)
    # lme4's published sleepstudy REML fit (lme4 vignette): 251.405, 10.467, sigma 25.592
    assert r["fixef"]["(Intercept)"] == pytest.approx(251.405, abs=1e-3)
    assert r["fixef"]["Days"] == pytest.approx(10.467, abs=1e-3)
    assert r["sigma"] == pytest.approx(25.592, abs=1e-3)
    assert Lme4Recorded().supports(FakeCase("nowhere", "y ~ 1")) is not None


def test_a_stale_recording_is_refused() -> None:
    case = CASES["sleepstudy-slopes-REML"]
    edited = FakeCase(case.id, "Reaction ~ Days + (1 | Subject)", True, case.dataset)
    reason = Lme4Recorded().supports(edited)
    assert reason is not None and "stale" in reason and "formula recorded" in reason


# ----------------------------------------------------------------------------- statsmodels


@pytest.mark.parametrize(("formula", "fragment"), [
    ("y ~ 1 + (1 | a) + (1 | b)", "more than one grouping factor"),
    ("y ~ 1 + (1 | a/b)", "nested"),
    ("y ~ 1 + (1 | a:b)", "nested"),
    ("y ~ x + (x | g) + (0 + z | g)", "correlated"),
])
def test_statsmodels_declines_what_mixedlm_cannot_express(formula: str, fragment: str) -> None:
    reason = Statsmodels().supports(FakeCase("c", formula))
    assert reason is not None and fragment in reason


@pytest.mark.parametrize("formula", ["y ~ x + (x | g)", "y ~ x + (1 | g)",
                                     "y ~ x + (0 + x | g)", "y ~ x + (x || g)"])
def test_statsmodels_accepts_single_factor_specs(formula: str) -> None:
    assert Statsmodels().supports(FakeCase("c", formula)) is None


@pytest.mark.parametrize("case_id", ["sleepstudy-slopes-REML", "sleepstudy-slopes-ML",
                                     "sleepstudy-uncorrelated-REML",
                                     "sleepstudy-slope_only-ML"])
def test_statsmodels_maps_into_lme4_quantities(case_id: str) -> None:
    case = CASES[case_id]
    rec = runner.fit_case(Statsmodels(), case, use_cache=False)
    ref = Lme4Recorded().fit(case, None)
    # same names, same varcorr rows in R's order (Subject.1 for the split term)
    assert list(rec["fixef"]) == list(ref["fixef"])
    assert [(r["grp"], r["var1"], r["var2"]) for r in rec["varcorr"]] == \
        [(r["grp"], r["var1"], r["var2"]) for r in ref["varcorr"]]
    # θ is the Cholesky factor of cov / σ² (checked against the varcorr it came from)
    sigma2 = rec["sigma"] ** 2
    var = [r["vcov"] for r in rec["varcorr"] if r["var2"] is None and r["grp"] != "Residual"]
    if case_id.endswith("slopes-REML") or case_id.endswith("slopes-ML"):
        L = np.array([[rec["theta"][0], 0.0], [rec["theta"][1], rec["theta"][2]]])
        cov = L @ L.T * sigma2
        assert cov[0, 0] == pytest.approx(var[0]) and cov[1, 1] == pytest.approx(var[1])
        assert cov[1, 0] == pytest.approx(rec["varcorr"][2]["vcov"])
    else:
        assert np.allclose(np.square(rec["theta"]) * sigma2, var)
    assert rec["objective"] == pytest.approx(-2 * rec["loglik"])
    # and on these well-posed cases MixedLM agrees with lme4 under the policy
    assert compare_records(ref, rec).verdict == AGREED, compare_records(ref, rec).format_table()


# ----------------------------------------------------------------------------- R bridge


def test_bridge_reports_a_missing_rpy2_as_one_reason() -> None:
    code = ("import sys; sys.modules['rpy2'] = None\n"
            "from harness.core import rbridge\nprint(rbridge.unavailable())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("R not available: rpy2 import failed:")
    assert "Traceback" not in out.stderr


def _needs_r() -> None:
    from harness.core import rbridge

    reason = rbridge.unavailable()
    if reason:
        pytest.skip(reason)


@pytest.mark.needs_r
def test_bridge_passes_factor_levels_in_pandas_order() -> None:
    _needs_r()
    import rpy2.robjects as ro

    from harness.core import rbridge

    df = pd.DataFrame({
        "g": pd.Categorical(["b", "a", "c", None], categories=["c", "b", "a"]),
        "o": pd.Categorical(["lo", "hi", "lo", "hi"], categories=["lo", "hi"], ordered=True),
        "s": ["B", "a", None, "C"],
        "x": [1.5, np.nan, 3.0, 4.0],
        "with space": [1, 2, 3, 4],
    })
    rdf = rbridge.to_r_frame(df)
    describe = ro.r("function(d) c(levels(d$g), is.na(d$g[4]), class(d$o), "
                    "levels(d$o), class(d$s), is.na(d$x[2]), names(d)[5])")
    got = list(describe(rdf))
    assert got == ["c", "b", "a", "TRUE", "ordered", "factor", "lo", "hi", "character", "TRUE",
                   "with space"]


@pytest.mark.needs_r
def test_bridge_fit_equals_the_recording_and_errors_are_lme4s_text() -> None:
    _needs_r()
    from harness.core import rbridge

    case = CASES["sleepstudy-fdays-REML"]  # a factor in the fixed part
    rec = rbridge.lmer_record(runner.case_data(case), case.formula, case.REML, case.id)
    ref = Lme4Recorded().fit(case, None)
    assert list(rec["fixef"]) == list(ref["fixef"])
    assert compare_records(ref, rec).verdict == AGREED
    assert rec["versions"]["lme4"] and rec["seconds"] > 0 and rec["nfev"] > 0
    bad = rbridge.lmer_record(runner.case_data(case), "Reaction ~ Days + (1 | Nope)", True, "x")
    assert bad["error"] == "object 'Nope' not found"


@pytest.mark.needs_r
def test_bridge_captures_warnings_and_messages_inside_r() -> None:
    _needs_r()
    from harness.core import rbridge

    case = CASES["Dyestuff2-intercept-REML"]  # lme4: boundary (singular) fit message
    rec = rbridge.lmer_record(runner.case_data(case), case.formula, case.REML, case.id)
    assert rec["singular"] is True
    assert any("singular" in m for m in rec["messages"])


class _Vandal(Adapter):  # at module level: the runner pickles it to its worker process
    name = "vandal"

    def fit(self, case, data):
        data.drop(index=data.index[:10], inplace=True)
        data["Yield"] = 0.0
        raise RuntimeError("done vandalising")


@pytest.mark.parametrize("isolated", [True, False])
def test_an_implementation_that_changes_its_input_cannot_change_anothers(isolated):
    case = CASES["Dyestuff-intercept-REML"]
    rec = runner.fit_case(_Vandal(), case, use_cache=False, isolated=isolated)
    assert "done vandalising" in rec["error"]
    data = runner.case_data(case)
    assert len(data) == 30 and data["Yield"].nunique() > 1
