"""Distance from the truth (harness/core/truth.py): the units of :func:`distances` on hand-made
records (closed-form numbers), and which catalog cases have a truth at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.catalog import load_catalog
from harness.core.truth import case_truth, distances, truth_table

CASES = {c.id: c for c in load_catalog()}

TRUTH = {"beta": {"(Intercept)": 1.0, "x": 0.3}, "sigma": 0.5,
         "varcorr": [{"grp": "g", "var1": "(Intercept)", "var2": None, "vcov": 0.16, "sdcor": 0.4},
                     {"grp": "g", "var1": "x", "var2": None, "vcov": 0.04, "sdcor": 0.2},
                     {"grp": "g", "var1": "(Intercept)", "var2": "x", "vcov": 0.024,
                      "sdcor": 0.3},
                     {"grp": "Residual", "var1": None, "var2": None, "vcov": 0.25,
                      "sdcor": 0.5}]}
ESTIMATE = {"fixef": {"(Intercept)": 1.1, "x": 0.25}, "sigma": 0.55,
            "varcorr": [{"grp": "g", "var1": "(Intercept)", "var2": None, "vcov": 0.2,
                         "sdcor": 0.2 ** 0.5},
                        {"grp": "g", "var1": "(Intercept)", "var2": "x", "vcov": 0.0,
                         "sdcor": 0.1},
                        {"grp": "Residual", "var1": None, "var2": None, "vcov": 0.3025,
                         "sdcor": 0.55}]}
SE = {"(Intercept)": 0.05, "x": 0.1}


def test_distances_are_in_ses_relative_and_absolute_as_documented() -> None:
    got = {d.quantity: d for d in distances(ESTIMATE, TRUTH, SE)}
    assert list(got) == ["fixef[(Intercept)]", "fixef[x]", "var[g,(Intercept)]", "var[g,x]",
                         "corr[g,(Intercept),x]", "var[Residual]", "sigma"]
    assert got["fixef[(Intercept)]"].distance == pytest.approx(2.0)  # (1.1 - 1) / 0.05
    assert got["fixef[x]"].distance == pytest.approx(-0.5)  # (0.25 - 0.3) / 0.1
    assert got["fixef[x]"].unit == "SE"
    assert got["var[g,(Intercept)]"].distance == pytest.approx(0.25)  # 0.2 / 0.16 - 1
    assert got["var[g,(Intercept)]"].unit == "relative"
    assert got["var[g,x]"].estimate is None and got["var[g,x]"].distance is None  # not reported
    assert got["corr[g,(Intercept),x]"].distance == pytest.approx(-0.2)  # 0.1 - 0.3
    assert got["corr[g,(Intercept),x]"].unit == "absolute"
    assert got["var[Residual]"].distance == pytest.approx(0.21)  # 0.3025 / 0.25 - 1
    assert got["sigma"].distance == pytest.approx(0.1)  # 0.55 / 0.5 - 1


def test_distance_from_a_record_uses_its_fixef_and_no_sigma_without_a_scale() -> None:
    target = {"fixef": {"x": 0.3}, "sigma": 1.0,  # binomial: sigma 1 is a convention
              "varcorr": [{"grp": "g", "var1": "(Intercept)", "var2": None, "vcov": 0.5,
                           "sdcor": 0.5 ** 0.5}]}
    est = {"fixef": {"x": 0.5}, "sigma": 1.0,
           "varcorr": [{"grp": "g", "var1": "(Intercept)", "var2": None, "vcov": 0.25,
                        "sdcor": 0.5}]}
    got = {d.quantity: d.distance for d in distances(est, target, {"x": 0.1})}
    assert got == pytest.approx({"fixef[x]": 2.0, "var[g,(Intercept)]": -0.5})
    assert distances(est, target, {})[0].distance is None  # no SE: no yardstick


def test_only_cases_fitting_the_generating_model_have_a_truth() -> None:
    gamma = case_truth(CASES["sim_glmm_gamma-log-ML"])
    assert gamma is not None and gamma["family"] == "Gamma" and gamma["link"] == "log"
    assert case_truth(CASES["sim_glmm_invgauss-log-ML"])["family"] == "inverse.gaussian"
    assert case_truth(CASES["sim_unbalanced-slopes-REML"])["beta"] == {"(Intercept)": 5.0,
                                                                      "x": 1.5}
    # the Gamma data fitted with the inverse link: a misspecified model, no truth
    assert case_truth(CASES["sim_glmm_gamma-inverse-ML"]) is None
    assert case_truth(CASES["sleepstudy-slopes-REML"]) is None  # real data


def test_truth_table_puts_distance_from_truth_next_to_distance_from_lme4() -> None:
    case = CASES["sim_glmm_gamma-log-ML"]
    tr = case_truth(case)
    lme4 = {"fixef": dict(tr["beta"]), "fixef_se": {"(Intercept)": 0.1, "x": 0.02},
            "sigma": tr["sigma"], "varcorr": tr["varcorr"]}  # lme4 exactly at the truth
    other = {**lme4, "fixef": {"(Intercept)": 1.2, "x": 0.3}}
    table = truth_table(case, {"lme4": lme4, "other": other})
    rows = {(r["impl"], r["quantity"]): r for r in table["rows"]}
    assert rows[("lme4", "fixef[(Intercept)]")]["from_truth"] == 0.0
    assert rows[("lme4", "fixef[(Intercept)]")]["from_lme4"] == 0.0
    assert rows[("other", "fixef[(Intercept)]")]["from_truth"] == pytest.approx(2.0)
    assert rows[("other", "fixef[(Intercept)]")]["from_lme4"] == pytest.approx(2.0)
    assert rows[("other", "sigma")]["unit"] == "relative"
    assert truth_table(CASES["sim_glmm_gamma-inverse-ML"], {"lme4": lme4}) is None


LME4 = json.loads((Path(__file__).parents[1] / "harness" / "references" / "lme4.json")
                  .read_text())["records"]


def test_report_shows_truth_and_the_best_known_rule_for_the_gamma_case() -> None:
    from harness.commands.report.build import _truth_and_rule
    from harness.commands.report.truth_section import html_section, markdown_lines

    case = CASES["sim_glmm_gamma-log-ML"]
    table, rule = _truth_and_rule(case, {"lme4-recorded": LME4[case.id]})
    impls = {r["impl"] for r in table["rows"]}
    assert impls == {"lme4", "glmmTMB (best-known run)", "mixedref (best-known run)"}
    sd = {r["impl"]: r for r in table["rows"] if r["quantity"] == "var[g,(Intercept)]"}
    assert sd["lme4"]["from_truth"] == pytest.approx(0.0848140507621768 / 0.16 - 1)
    assert rule.startswith("judged by best known over lme4, glmmTMB, mixedref")
    assert "best is glmmTMB" in rule
    report = {"cases": [{"case": {"id": case.id}, "truth": table, "best_known_rule": rule}]}
    md = "\n".join(markdown_lines(report))
    assert "## Distance from the truth" in md and "| from the truth | from lme4 |" in md
    assert "best is glmmTMB" in md
    assert "from lme4" in html_section(report)
    # no truth, no table: the inverse link is not the generating model
    table, rule = _truth_and_rule(CASES["sim_glmm_gamma-inverse-ML"],
                                  {"lme4": LME4["sim_glmm_gamma-inverse-ML"]})
    assert table is None and "best is lme4" in rule


def test_league_keeps_both_estimates_and_shows_the_distances() -> None:
    from harness.commands.ecosystem import _estimate, league_truth, render_html

    case_id = "sim_glmm_gamma-log-ML"
    lme4 = LME4[case_id]
    other = {**lme4, "fixef": {"(Intercept)": 1.0, "x": 0.3}}
    items = [{"case": case_id, "impl": "mixedref", "estimate": _estimate(other),
              "reference_estimate": _estimate(lme4)}]
    out = league_truth(items)
    assert len(out) == 1 and "best is glmmTMB" in out[0]["best_known_rule"]
    rows = {(r["impl"], r["quantity"]): r for r in out[0]["truth"]["rows"]}
    assert rows[("mixedref", "fixef[(Intercept)]")]["from_truth"] == 0.0
    assert rows[("mixedref", "fixef[(Intercept)]")]["from_lme4"] == pytest.approx(
        (1.0 - lme4["fixef"]["(Intercept)"]) / lme4["fixef_se"]["(Intercept)"])
    page = render_html({"implementations": [], "cases": {}, "truth": out})
    assert "Distance from the truth" in page and "judged by best known" in page
