"""The best-known rule of Gamma and inverse-Gaussian GLMMs (harness/core/judge/scale_family.py): a
verdict is held to the best known optimum over lme4, glmmTMB and mixedref under the marginal
criterion, not to lme4 alone. No R needed: the recorded best known (best_known.json) and lme4's
recorded answer, the judges' own evaluations left out."""

from __future__ import annotations

import copy
import json

import pytest

from harness.commands import best_known as bk
from harness.core.catalog import load_catalog, load_data
from harness.core.compare import AGREED, CANDIDATE_BETTER, DISAGREED, compare_records
from harness.core.judge import Judgement, Point, scale_family
from harness.core.tolerance import GLMM

CASES = {c.id: c for c in load_catalog()}
LME4 = json.loads((bk.BEST_KNOWN_PATH.parent / "lme4.json").read_text())["records"]
GAMMA = "sim_glmm_gamma-log-ML"


def _record_at(ref: dict, impl: str, estimate: dict) -> dict:
    """lme4's record with another estimate's fixed effects, random-intercept SD and σ."""
    rec = copy.deepcopy(ref)
    rec["impl"] = impl
    rec["fixef"] = dict(estimate["fixef"])
    rec["sigma"] = estimate["sigma"]
    for row in rec["varcorr"]:
        sd = estimate["sigma"] if row["grp"] == "Residual" else estimate["sd"]
        row["sdcor"], row["vcov"] = sd, sd * sd
    return rec


def _compare(case_id: str, cand: dict, rule: bool = True):
    case = CASES[case_id]
    ref = LME4[case_id]
    j = Judgement("deviance", Point(None), Point(None))
    if rule:
        j.best_known = scale_family.judgement(case, load_data(case), ref, cand)
    return compare_records(ref, cand, case, judgement=j)


def test_recorded_best_known_of_the_gamma_case_is_glmmtmbs() -> None:
    entry = scale_family.recorded(GAMMA)
    assert entry is not None and entry["best"]["source"] == "glmmTMB"
    assert set(entry["candidates"]) == {"lme4", "glmmTMB", "mixedref"}
    assert entry["lme4_default_misses"] is True


def test_a_candidate_agreeing_with_lme4_still_misses_the_best_known() -> None:
    ref = LME4[GAMMA]
    cand = {**copy.deepcopy(ref), "impl": "copy-of-lme4"}
    comp = _compare(GAMMA, cand)
    assert comp.verdict == DISAGREED  # lme4 alone would say "agreed" (next test)
    row = next(r for r in comp.rows if r.name == "best_known.criterion")
    assert row.ok is False and row.difference == pytest.approx(10.94, abs=0.01)
    assert "judged by best known over lme4, glmmTMB, mixedref" in comp.reason()
    assert "best is glmmTMB" in comp.reason()


def test_bypassing_the_rule_judges_by_lme4_alone() -> None:
    cand = {**copy.deepcopy(LME4[GAMMA]), "impl": "copy-of-lme4"}
    assert _compare(GAMMA, cand, rule=False).verdict == AGREED


def test_reaching_the_best_known_where_lme4_does_not_is_candidate_better() -> None:
    est = scale_family.recorded(GAMMA)["candidates"]["glmmTMB"]["estimate"]
    cand = _record_at(LME4[GAMMA], "glmmTMB", est)
    comp = _compare(GAMMA, cand)
    # its SD (0.420) is far from lme4's (0.291): against lme4 alone it disagrees
    assert any(r.ok is False for r in comp.rows if r.name.startswith("var["))
    assert comp.verdict == CANDIDATE_BETTER
    assert "the reference is not the best known optimum" in comp.reason()
    assert _compare(GAMMA, cand, rule=False).verdict == DISAGREED


def test_assess_outcomes() -> None:
    base = {"criterion": "c", "sources": ["lme4", "glmmTMB", "mixedref"], "unavailable": {},
            "best": {"source": "glmmTMB", "objective": 100.0}}
    allowed = GLMM.objective_allowed(100.0)
    miss = scale_family.assess({**base, "candidate": 100.0 + 2 * allowed, "reference": 100.5},
                               GLMM)
    assert miss.outcome == "misses" and miss.row.ok is False
    beat = scale_family.assess({**base, "candidate": 100.0, "reference": 100.5}, GLMM)
    assert beat.outcome == "beats-reference" and beat.row.ok
    reach = scale_family.assess({**base, "candidate": 100.0 + allowed / 2,
                                 "reference": 100.0}, GLMM)
    assert reach.outcome == "reaches"
    none = scale_family.assess({**base, "best": None, "unavailable": {"x": "why"}}, GLMM)
    assert none.outcome == "none" and none.row is None and "why" in none.text
    gone = scale_family.assess({**base, "candidate": None, "candidate_error": "no SD"}, GLMM)
    assert gone.outcome == "misses" and "no SD" in gone.text


def test_the_rule_applies_to_the_scale_families_only() -> None:
    case = CASES["sim_glmm_poisson_slopes-slopes-ML"]
    ref = LME4[case.id]
    assert scale_family.judgement(case, None, ref, ref) is None
