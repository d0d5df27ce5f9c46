"""The negative binomial (lme4's glmer.nb) as harness catalog cases: the catalog's family, the
seeded design and its truth, the record's ``nb_theta``, its comparator and allowance (from the
evidence in tests/references/glmm_optimizer_spread.json.gz), the judge at each estimate's own
θ, glmmTMB's nbinom2 and its registered difference (tests/references/nb_glmmtmb_criteria.json,
r_scripts/nb_glmmtmb_criteria.R), and the peers that decline it."""

from __future__ import annotations

import gzip
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from harness.adapters import BUILTIN, get_adapter
from harness.core import record
from harness.core.catalog import CatalogError, load_catalog, load_data
from harness.core.comparators.nb_theta import NegativeBinomialTheta
from harness.core.glmm_response import unit_deviance
from harness.core.judge import judge
from harness.core.tolerance import GLMM, NB_THETA_EVIDENCE
from harness.generate.simulate import glmm_truth, simulate
from mixedref.errors import ResponseError

ROOT = Path(__file__).resolve().parent.parent
REFERENCES = ROOT / "tests" / "references"
NB_CASES = ("grouseticks-nb-ML", "sim_glmm_nb-nb-ML")
CASES = {c.id: c for c in load_catalog()}
CRITERIA = json.loads((REFERENCES / "nb_glmmtmb_criteria.json").read_text())


def _recorded(case_id: str) -> dict:
    return get_adapter("lme4-recorded").fit(CASES[case_id], None)


def _mixedref(case_id: str, data=None) -> dict:
    case = CASES[case_id]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = get_adapter("mixedref").fit(case, load_data(case) if data is None else data)
    return record.normalize_record(raw, "mixedref", case_id)


def test_the_catalog_holds_the_negative_binomial_cases() -> None:
    for cid in NB_CASES:
        case = CASES[cid]
        assert case.family == "negative.binomial" and case.link_name == "log"
        assert case.is_negative_binomial and "glmm" in case.tags
    assert CASES["grouseticks-nb-ML"].formula == (
        "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)")


@pytest.mark.parametrize("link, words", [("sqrt", "link 'sqrt' is not available"),
                                         (None, None)])
def test_glmer_nb_links_are_the_log_link_alone(tmp_path: Path, link, words) -> None:
    entry = ('cases:\n  - spec: nb\n    dataset: sim_glmm_nb\n    formula: "y ~ x + (1 | g)"\n'
             '    family: negative.binomial\n    methods: [ML]\n')
    if link:
        entry += f"    link: {link}\n"
    path = tmp_path / "catalog.yaml"
    path.write_text(entry)
    if words is None:
        assert [c.id for c in load_catalog(path)] == ["sim_glmm_nb-nb-ML"]
    else:
        with pytest.raises(CatalogError, match=words):
            load_catalog(path)


def test_the_seeded_design_states_its_truth_with_theta() -> None:
    df, truth = simulate("sim_glmm_nb")
    assert truth["nb_theta"] == 2.5 and truth["family"] == "negative.binomial"
    assert truth["sigma"] == 1.0 and [r["grp"] for r in truth["varcorr"]] == ["g"]
    assert truth["beta"] == {"(Intercept)": 1.0, "x": 0.5}
    committed = load_data(CASES["sim_glmm_nb-nb-ML"])
    np.testing.assert_array_equal(committed["y"], df["y"])
    np.testing.assert_array_equal(committed["x"], df["x"])
    # overdispersed counts: variance / mean far above the Poisson's 1
    assert df["y"].var() / df["y"].mean() > 3
    with pytest.raises(ValueError, match="nb_theta"):
        glmm_truth("poisson", "log", {"(Intercept)": 1.0}, [], nb_theta=2.0)
    with pytest.raises(ValueError, match="nb_theta"):
        glmm_truth("negative.binomial", "log", {"(Intercept)": 1.0}, [])


def test_lme4s_recorded_answers_carry_theta_and_follow_the_schema() -> None:
    assert "nb_theta" in record.FIELDS
    for cid in NB_CASES:
        rec = _recorded(cid)
        assert record.validate(rec) == [], cid
        assert rec["family"] == "negative.binomial" and rec["link"] == "log"
        assert rec["nb_theta"] > 0 and rec["sigma"] == 1
        assert all(r["grp"] != "Residual" for r in rec["varcorr"])
    assert _recorded("grouseticks-nb-ML")["nb_theta"] == pytest.approx(3.3033937451192)


def test_the_theta_comparator_holds_the_allowance_and_fails_beyond_it() -> None:
    ref = _recorded("sim_glmm_nb-nb-ML")
    comp, notes = NegativeBinomialTheta(), []
    theta = ref["nb_theta"]
    [inside] = comp.rows(ref, dict(ref, nb_theta=theta * (1 + 0.9e-4)), GLMM, notes)
    [outside] = comp.rows(ref, dict(ref, nb_theta=theta * (1 + 1.1e-4)), GLMM, notes)
    assert inside.ok is True and outside.ok is False
    assert outside.allowed == pytest.approx(GLMM.nb_theta_rel * theta)
    [missing] = comp.rows(ref, dict(ref, nb_theta=None), GLMM, notes)
    assert missing.ok is None and "reports no negative binomial" in notes[0]
    assert comp.rows({"fixef": {}}, {"fixef": {}}, GLMM, []) == []  # other families: no row


def test_thetas_allowance_covers_lme4s_own_spread_and_brents_bound() -> None:
    """1e-4 relative: Brent's bound (2 x 2 tol / 3 in log θ, tol 5e-5) rounded up; lme4's own
    inner optimizers move θ less: at most half of it, where the profile is flattest (θ 461 on
    grouseticks-nb_olre; the number harness/core/tolerance.py quotes)."""
    assert NB_THETA_EVIDENCE["brent_bound_log"] < GLMM.nb_theta_rel
    with gzip.open(REFERENCES / "glmm_optimizer_spread.json.gz", "rt") as fh:
        doc = json.load(fh)
    spread = []
    for cid in (*NB_CASES, "grouseticks-nb_olre-ML"):
        default = doc["cases"][cid]["default"]
        fits = [r for r in doc["cases"][cid]["optimizers"].values() if r["error"] is None]
        assert len(fits) >= 4, cid
        spread += [abs(r["nb_theta"] / default["nb_theta"] - 1) for r in fits]
    assert max(spread) == pytest.approx(NB_THETA_EVIDENCE["lme4_optimizers"], rel=0.05)
    assert max(spread) < 0.6 * GLMM.nb_theta_rel


def test_the_judge_evaluates_each_estimate_at_its_own_theta() -> None:
    """mixedref's judge gives R's criterion (glmer's devfun at negative.binomial(θ), recorded
    by r_scripts/nb_glmmtmb_criteria.R) at lme4's and glmmTMB's estimates; a θ off by half
    raises the criterion; an estimate without θ cannot be judged."""
    cid = "sim_glmm_nb-nb-ML"
    ref = _recorded(cid)
    tmb = CRITERIA["cases"][cid]["glmmTMB"]
    candidate = dict(ref, fixef=tmb["fixef"], nb_theta=tmb["nb_theta"], theta=None,
                     varcorr=[dict(ref["varcorr"][0], vcov=tmb["sds"]["g"] ** 2,
                                   sdcor=tmb["sds"]["g"])])
    j = judge(CASES[cid], ref, candidate, use_lme4=False)
    assert j.reference.nb_theta == ref["nb_theta"] and j.candidate.nb_theta == tmb["nb_theta"]
    lme4_est = CRITERIA["cases"][cid]["lme4"]["lme4_criterion"]
    assert j.reference.objective("mixedref") == pytest.approx(lme4_est, abs=1e-6)
    assert j.candidate.objective("mixedref") == pytest.approx(tmb["lme4_criterion"], abs=1e-6)
    off = judge(CASES[cid], ref, dict(ref, nb_theta=1.5 * ref["nb_theta"]), use_lme4=False)
    assert off.candidate.objective("mixedref") > lme4_est + 5
    none = judge(CASES[cid], ref, dict(ref, nb_theta=None), use_lme4=False)
    assert none.candidate.theta is None and "nb_theta" in none.candidate.error


def test_mixedref_agrees_with_lme4_on_both_cases() -> None:
    from harness.core.compare import compare_records

    for cid in NB_CASES:
        ours, ref = _mixedref(cid), _recorded(cid)
        comp = compare_records(ref, ours, tol=GLMM)
        bad = [r.name for r in comp.rows if r.ok is False]
        assert comp.error is None and not bad, (cid, bad)
        assert abs(ours["nb_theta"] / ref["nb_theta"] - 1) < NB_THETA_EVIDENCE["mixedref"] * 1.5


def test_glmmtmb_and_lme4_each_win_under_their_own_criterion() -> None:
    """The registered finding glmmtmb-nb-laplace-hessian: two Laplace criteria, each
    package's estimate the lower under its own; with the Poisson family (canonical link) the
    two criteria agree at lme4's estimate."""
    for cid in NB_CASES:
        c = CRITERIA["cases"][cid]
        lme4, tmb = c["lme4"], c["glmmTMB"]
        assert lme4["lme4_criterion"] < tmb["lme4_criterion"] - 0.02
        assert tmb["tmb_criterion"] < lme4["tmb_criterion"] - 0.02
        assert tmb["tmb_criterion"] == pytest.approx(tmb["own"], abs=1e-6)
        assert abs(lme4["tmb_criterion"] - lme4["lme4_criterion"]) > 0.02
        control = c["poisson_control"]
        assert abs(control["tmb_criterion"] - control["lme4_criterion"]) < 1e-4


def test_glmmtmb_live_takes_the_negative_binomial_and_declines_other_glmms() -> None:
    adapter = get_adapter("glmmTMB")
    assert adapter.supports(CASES["sim_glmm_nb-nb-ML"]) is None
    why = adapter.supports(CASES["grouseticks-location-ML"])
    assert why and "not a poisson GLMM" in why


@pytest.mark.needs_r
def test_glmmtmb_live_reports_nbinom2s_theta() -> None:
    adapter = get_adapter("glmmTMB")
    if adapter.unavailable():
        pytest.skip(adapter.unavailable())
    from harness.core import runner

    cid = "sim_glmm_nb-nb-ML"
    rec = runner.fit_case(adapter, CASES[cid], use_cache=False)
    assert rec["error"] is None and rec["family"] == "negative.binomial"
    assert rec["nb_theta"] == pytest.approx(CRITERIA["cases"][cid]["glmmTMB"]["nb_theta"],
                                            rel=1e-4)
    assert rec["sigma"] == 1 and record.validate(rec) == []


def test_every_peer_declines_the_negative_binomial_with_its_reason() -> None:
    case = CASES["sim_glmm_nb-nb-ML"]
    fitters = {"mixedref", "glmmTMB"}
    for name in BUILTIN:
        if name.startswith("lme4") or name in fitters:
            continue
        why = get_adapter(name).supports(case)
        assert why, f"{name} claims it can fit a negative binomial GLMM"
        assert any(w in why for w in ("negative.binomial", "GLMM", "linear mixed models")), why


def test_the_negative_binomial_unit_deviance_is_mass_dev_resids() -> None:
    # R: MASS::negative.binomial(2.5)$dev.resids(c(0, 3, 10), c(1.5, 2, 4), c(1, 1, 2))
    got = unit_deviance("negative.binomial", np.array([0.0, 3.0, 10.0]),
                        np.array([1.5, 2.0, 4.0]), np.array([1.0, 1.0, 2.0]), nb_theta=2.5)
    np.testing.assert_allclose(got, [2.35001814622868, 0.225412998565323, 3.955305904633],
                               rtol=1e-13)
    with pytest.raises(ValueError, match="nb_theta"):
        unit_deviance("negative.binomial", np.ones(2), np.ones(2), None)


def test_a_non_count_response_is_refused_naming_the_column_and_value() -> None:
    data = load_data(CASES["sim_glmm_nb-nb-ML"])
    data["y"] = data["y"].astype(float)
    data.loc[7, "y"] = 1.5
    with pytest.raises(ResponseError, match=r"response 'y' has the value 1.5 \(row 8"):
        _mixedref("sim_glmm_nb-nb-ML", data)


def test_the_recorded_truth_is_near_lme4s_estimate() -> None:
    """The simulated case's truth against lme4's recorded estimate: β within 3 SEs, θ within
    3 standard errors of its Fisher information (as tests/test_glmer_nb.py)."""
    ref = _recorded("sim_glmm_nb-nb-ML")
    _, truth = simulate("sim_glmm_nb")
    for name, beta in truth["beta"].items():
        assert abs(ref["fixef"][name] - beta) < 3 * ref["fixef_se"][name], name
    assert math.log(ref["nb_theta"] / truth["nb_theta"]) == pytest.approx(0, abs=0.3)


def test_cross_evaluation_ranks_glmm_estimates_under_the_glmm_criterion() -> None:
    """crosseval's GLMM path: every record's c(θ, β) at its own nb_theta under mixedref's NB
    Laplace criterion, which equals R's devfun (tests/references/nb_glmmtmb_criteria.json);
    glmmTMB's estimate is 0.025 worse under it, a record without nb_theta is not evaluated."""
    from harness.core.crosseval import cross_evaluate

    cid = "sim_glmm_nb-nb-ML"
    ref = _recorded(cid)
    tmb = CRITERIA["cases"][cid]["glmmTMB"]
    records = {"lme4-recorded": ref,
               "glmmTMB": dict(ref, fixef=tmb["fixef"], nb_theta=tmb["nb_theta"],
                               varcorr=[dict(ref["varcorr"][0], vcov=tmb["sds"]["g"] ** 2,
                                             sdcor=tmb["sds"]["g"])]),
               "no-theta": dict(ref, nb_theta=None)}
    x = cross_evaluate(CASES[cid], records, load_data(CASES[cid]))
    assert x.criterion == "-2 log-likelihood (Laplace)" and x.best == "lme4-recorded"
    lme4 = CRITERIA["cases"][cid]["lme4"]["lme4_criterion"]
    assert x.estimates["lme4-recorded"].objective == pytest.approx(lme4, abs=1e-6)
    assert x.estimates["glmmTMB"].gap == pytest.approx(tmb["lme4_criterion"] - lme4, abs=1e-6)
    assert x.estimates["no-theta"].objective is None
    assert "nb_theta" in x.estimates["no-theta"].notes[0]


def test_glmer_nb_stops_short_with_an_observation_level_effect() -> None:
    """grouseticks-nb_olre-ML: lme4's glmer.nb searches log θ within ±3 of the Poisson fit's
    theta.ml, large when INDEX (one level per row) absorbs the overdispersion, and stops at
    θ 461; glmmTMB's joint optimum (θ 3.29, INDEX's SD ~1e-4) is 2.7 lower under lme4's own
    criterion (r_scripts/nb_glmmtmb_criteria.R): a finding about glmer.nb's search, which
    mixedref.glmer_nb follows."""
    cid = "grouseticks-nb_olre-ML"
    ref, c = _recorded(cid), CRITERIA["cases"][cid]
    # two runs of glmer.nb on this flat profile: θ 4.6e-6 apart, inside nb_theta's allowance
    assert ref["nb_theta"] > 400 and c["lme4"]["nb_theta"] == pytest.approx(
        ref["nb_theta"], rel=GLMM.nb_theta_rel)
    assert c["glmmTMB"]["nb_theta"] == pytest.approx(3.29, abs=0.01)
    assert c["glmmTMB"]["sds"]["INDEX"] < 1e-3 < c["lme4"]["sds"]["INDEX"]
    assert c["glmmTMB"]["lme4_criterion"] < c["lme4"]["lme4_criterion"] - 2.5
    assert c["glmmTMB"]["tmb_criterion"] < c["lme4"]["tmb_criterion"] - 2.5
    assert c["lme4"]["lme4_criterion"] == pytest.approx(ref["objective"], abs=1e-3)
