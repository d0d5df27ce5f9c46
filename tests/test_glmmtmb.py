"""glmmTMB as a second engine: its answers, stated in lme4's terms by r_scripts/glmmtmb_record.R,
agree with lme4's recorded ones; the recording covers the catalog with lme4's names; its REML
criterion is on lme4's scale (checked against lme4's own devfun at glmmTMB's θ)."""

from __future__ import annotations

import json

import pytest
from conftest import FakeCase

from harness.adapters import GlmmTMBLive, GlmmTMBRecorded, Lme4Recorded, get_adapter
from harness.adapters.glmmtmb import RECORDED_PATH
from harness.core import runner
from harness.core.catalog import load_catalog
from harness.core.compare import AGREED, compare_records
from harness.core.tolerance import DEFAULT

CASES = {c.id: c for c in load_catalog() if not c.is_glmm}  # LMM cases: lmer's models
#: hard cases whose glmmTMB record is an error, as seen when recording (2026-12-01)
KNOWN_ERRORS = {
    "sim_badscale3-corr3-REML": "computationally singular",  # its covariance cannot become θ
    "sim_deep_nest-nested3-REML": "",  # glmmTMB names c:b:a what lme4 names c:(b:a)
    "sim_deep_nest-nested3-ML": "",
}


def _names(record: dict) -> list[tuple]:
    return [(r["grp"], r.get("var1"), r.get("var2")) for r in record["varcorr"]]


def _live() -> GlmmTMBLive:
    adapter = get_adapter("glmmTMB")
    reason = adapter.unavailable()
    if reason:
        pytest.skip(f"glmmTMB live unavailable: {reason}")
    return adapter


# ----------------------------------------------------------------------------- live


@pytest.mark.needs_r
@pytest.mark.parametrize("case_id", ["sleepstudy-slopes-REML", "sleepstudy-slopes-ML"])
def test_glmmtmb_live_agrees_with_recorded_lme4_on_sleepstudy_slopes(case_id: str) -> None:
    adapter = _live()
    case = CASES[case_id]
    rec = runner.fit_case(adapter, case, use_cache=False)
    ref = Lme4Recorded().fit(case, None)
    assert rec["error"] is None, rec["error"]
    assert rec["impl"] == "glmmTMB" and rec["REML"] is case.REML
    comp = compare_records(ref, rec, case)
    assert comp.verdict == AGREED, comp.format_table()
    # everything a user reads was compared, θ included (lme4's parametrization)
    compared = {r.name for r in comp.rows if r.ok is not None}
    assert {"sigma", "objective", "loglik"} <= compared
    assert sum(name.startswith("theta") for name in compared) == 3
    assert _names(rec) == _names(ref)
    assert rec["converged"] is True and rec["singular"] is False
    assert rec["versions"]["glmmTMB"] and rec["versions"]["TMB"] and rec["nfev"] > 0


@pytest.mark.needs_r
def test_glmmtmb_live_states_double_bar_terms_as_lme4s_two_terms() -> None:
    adapter = _live()
    case = CASES["sleepstudy-uncorrelated-REML"]  # glmmTMB: one diag() term; lme4: two terms
    rec = runner.fit_case(adapter, case, use_cache=False)
    ref = Lme4Recorded().fit(case, None)
    assert _names(rec) == _names(ref) == [("Subject", "(Intercept)", None),
                                         ("Subject.1", "Days", None), ("Residual", None, None)]
    assert compare_records(ref, rec, case).verdict == AGREED


@pytest.mark.needs_r
def test_glmmtmb_live_refuses_a_model_that_differs_from_lme4s() -> None:
    adapter = _live()
    # (f || g) with a factor f: lme4 keeps f's columns one correlated block, glmmTMB's diag()
    # makes them independent; the record must say so rather than compare different models
    case = FakeCase("fdays-double-bar", "Reaction ~ Days + (fDays || Subject)", REML=True)
    rec = runner.fit_case(adapter, case, runner.case_data(CASES["sleepstudy-fdays-REML"]),
                          use_cache=False)
    assert rec["error"] and "lme4's terms" in rec["error"], rec["error"]
    assert rec["varcorr"] == []


@pytest.mark.needs_r
def test_glmmtmb_live_reports_r_errors_as_the_record_error() -> None:
    adapter = _live()
    case = FakeCase("bad", "Reaction ~ Days + (1 | Nope)", REML=True)
    rec = runner.fit_case(adapter, case, runner.case_data(CASES["sleepstudy-slopes-REML"]),
                          use_cache=False)
    assert rec["error"] and "Nope" in rec["error"]


def test_glmmtmb_live_declares_its_lane_and_is_registered() -> None:
    assert GlmmTMBLive.lane == "R" and GlmmTMBLive.name == "glmmTMB"
    assert get_adapter("glmmTMB-recorded").name == "glmmTMB-recorded"


# ----------------------------------------------------------------------------- recorded


def test_recorded_glmmtmb_covers_every_catalog_case_with_lme4s_names() -> None:
    glmm, lme4 = GlmmTMBRecorded(), Lme4Recorded()
    assert glmm.unavailable() is None, glmm.unavailable()
    for case in CASES.values():
        assert glmm.supports(case) is None, glmm.supports(case)
        rec, ref = glmm.fit(case, None), lme4.fit(case, None)
        assert rec["impl"] == "glmmTMB-recorded"
        if case.id in KNOWN_ERRORS:
            assert rec["error"] and KNOWN_ERRORS[case.id] in rec["error"], case.id
            continue
        assert rec["error"] is None, f"{case.id}: {rec['error']}"
        assert _names(rec) == _names(ref), case.id
        assert list(rec["fixef"]) == list(ref["fixef"]), case.id
        assert rec["ngroups"] == ref["ngroups"] and rec["nobs"] == ref["nobs"], case.id
        assert len(rec["theta"]) == len(ref["theta"]), case.id


def test_recorded_glmmtmb_objective_is_on_lme4s_scale() -> None:
    """glmmTMB's -2 logLik (REML: its restricted likelihood) equals lme4's own devfun at
    glmmTMB's θ wherever glmmTMB converged: the two criteria are one function."""
    doc = json.loads(RECORDED_PATH.read_text())
    checked = 0
    certified = {c for c, case in CASES.items() if "certified" in case.tags}
    for case_id, check in doc["devfun_check"].items():
        rec = doc["records"][case_id]
        # certified cases: lme4's devfun loses the digits of y = 1e12 + 0.x (docs/certified.md)
        if not rec["converged"] or case_id in certified:
            continue
        assert check["devfun"] is not None, case_id
        assert abs(check["devfun"] - rec["objective"]) <= DEFAULT.objective_allowed(
            check["devfun"]), case_id
        checked += 1
    assert checked >= 0.9 * len(set(CASES) - set(KNOWN_ERRORS) - certified)
    assert sum(doc["cases"][c]["REML"] for c in doc["devfun_check"]
               if doc["records"][c]["converged"]) >= 0.4 * len(CASES)


def test_recorded_glmmtmb_says_where_it_comes_from_and_when_it_is_stale(tmp_path) -> None:
    adapter = GlmmTMBRecorded()
    assert "glmmTMB" in adapter.describe() and "TMB" in adapter.describe()
    case = CASES["Dyestuff-intercept-REML"]
    stale = FakeCase(case.id, "Yield ~ 1 + (1 | Sample)", REML=True, dataset=case.dataset)
    reason = adapter.supports(stale)
    assert reason and "stale" in reason and "record_glmmtmb.R" in reason
    assert "record_glmmtmb.R" in (adapter.supports(FakeCase("nope", "y ~ 1 + (1|g)")) or "")
    missing = GlmmTMBRecorded(tmp_path / "none.json").unavailable()
    assert missing and "glmmTMB" in missing and "record_glmmtmb.R" in missing
