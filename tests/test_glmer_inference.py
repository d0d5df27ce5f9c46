"""GLMM inference in mixedref (mixedref.inference.glmer_inference, predict, anova) against lme4
with its
PIRLS converged (glmerControl(tolPwrss = 1e-10): tests/references/glmm_pirls_spread.json.gz,
written by r_scripts/glmm_pirls_spread.R): lme4's Wald z table, its Wald intervals, its
predictions on both scales and its anova of nested glmer fits; and the refusals."""

from __future__ import annotations

import gzip
import json
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

import mixedref
from harness.core.datasets import load_dataset
from mixedref.errors import MixedrefError

ROOT = Path(__file__).resolve().parent.parent
SPREAD = ROOT / "tests" / "references" / "glmm_pirls_spread.json.gz"
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
CONTRACEPTION = "use ~ age + I(age^2) + urban + livch + ({} | district)"


@cache
def tight(case_id: str) -> dict:
    """lme4's record of a catalog case with PIRLS to tolPwrss = 1e-10."""
    with gzip.open(SPREAD, "rt") as fh:
        return json.load(fh)["cases"][case_id]["tight"]


@cache
def cbpp() -> mixedref.GlmerFit:
    return mixedref.glmer(CBPP, load_dataset("cbpp"), "binomial")


def _quiet_glmer(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mixedref.glmer(*args, **kwargs)


def test_wald_z_table_is_lme4s_summary_coefficients() -> None:
    fit = cbpp()
    table = fit.coef_table()
    assert list(table.columns) == ["Estimate", "Std. Error", "z value", "Pr(>|z|)"]
    z = table["Estimate"] / table["Std. Error"]
    np.testing.assert_allclose(table["z value"], z, rtol=1e-15)
    np.testing.assert_allclose(table["Pr(>|z|)"], 2 * norm.sf(np.abs(z)), rtol=1e-14)
    lme4 = {r["term"]: r for r in tight("cbpp-cbind-ML")["coef_tests"]}
    assert set(lme4) == set(table.index) and all(r["ddf"] == "Wald" for r in lme4.values())
    for term, r in lme4.items():
        assert table.at[term, "Std. Error"] == pytest.approx(r["se"], rel=1e-3), term
        assert table.at[term, "z value"] == pytest.approx(r["statistic"], rel=1e-3), term
        assert table.at[term, "Pr(>|z|)"] == pytest.approx(r["p"], rel=1e-2), term
    assert "z value" in str(fit.summary())


def test_a_family_with_a_scale_prints_t_value_and_has_a_sigma_interval_row() -> None:
    data = load_dataset("sim_glmm_gamma")
    fit = _quiet_glmer("y ~ x + (1 | g)", data, "Gamma", link="log")
    assert list(fit.coef_table().columns) == ["Estimate", "Std. Error", "t value", "Pr(>|z|)"]
    ci = fit.confint()
    assert list(ci.index) == ["sd_(Intercept)|g", "sigma", "(Intercept)", "x"]
    assert ci.loc[["sd_(Intercept)|g", "sigma"]].isna().all().all()


def test_wald_intervals_are_lme4s() -> None:
    fit = cbpp()
    ci = fit.confint()
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    assert list(ci.index) == ["sd_(Intercept)|herd", "(Intercept)", "period2", "period3",
                              "period4"]
    assert ci.iloc[0].isna().all()
    z = norm.ppf(0.975)
    np.testing.assert_allclose(ci.iloc[1:, 0], fit.fixef - z * fit.se, rtol=1e-14)
    lme4 = {r["parm"]: r for r in tight("cbpp-cbind-ML")["confint"] if r["method"] == "Wald"}
    for parm, r in lme4.items():
        width = r["upper"] - r["lower"]
        assert abs(ci.at[parm, "2.5 %"] - r["lower"]) < 1e-3 * width, parm
        assert abs(ci.at[parm, "97.5 %"] - r["upper"]) < 1e-3 * width, parm
    assert list(fit.confint("beta_").index) == ["(Intercept)", "period2", "period3", "period4"]
    ninety = fit.confint("period2", level=0.9)
    assert list(ninety.columns) == ["5 %", "95 %"]


def test_bad_confint_arguments_are_refused_by_name() -> None:
    fit = cbpp()
    with pytest.raises(MixedrefError, match='method must be "Wald" or "profile"'):
        fit.confint(method="boot")
    with pytest.raises(MixedrefError, match=r"unknown parameters \['period9'\] in parm"):
        fit.confint(["period9"])
    with pytest.raises(MixedrefError, match="level must be in"):
        fit.confint(level=95)


def test_predictions_on_both_scales_are_lme4s() -> None:
    fit = cbpp()
    nd = load_dataset("cbpp").iloc[:10]
    rows = tight("cbpp-cbind-ML")["predictions"]
    for type_ in ("link", "response"):
        for re_form, label in (("NA", "NA"), (None, "NULL")):
            ref = [r["value"] for r in rows if r["type"] == type_ and r["re_form"] == label
                   and not r["new_levels"] and not r["grid"]]
            got = fit.predict(nd, re_form=re_form, type=type_)
            assert len(ref) == 10
            np.testing.assert_allclose(got, ref, atol=1e-4, err_msg=f"{type_} {label}")


def test_an_lmm_refuses_type_response_naming_the_argument() -> None:
    fit = mixedref.lmer("Reaction ~ Days + (1 | Subject)", load_dataset("sleepstudy"))
    with pytest.raises(MixedrefError, match=r"type='response' is for glmer fits"):
        fit.predict(type="response")
    with pytest.raises(MixedrefError, match="type='response'"):
        fit.predict(load_dataset("sleepstudy").iloc[:3], type="response")
    assert np.array_equal(fit.predict(type="link"), fit.predict())


def test_anova_of_nested_glmer_fits_is_lme4s() -> None:
    data = load_dataset("Contraception")
    m0 = _quiet_glmer(CONTRACEPTION.format("1"), data, "binomial")
    m1 = _quiet_glmer(CONTRACEPTION.format("urban"), data, "binomial")
    table = mixedref.anova(m1, m0)  # ordered by npar, as lme4
    assert list(table.index) == ["m1", "m0"]
    lme4 = tight("Contraception-urban-ML")["anova"]
    for ours, ref in zip(table.itertuples(index=False), lme4, strict=True):
        assert ours.npar == ref["npar"]
        for col, key in (("AIC", "AIC"), ("BIC", "BIC"), ("deviance", "deviance")):
            assert getattr(ours, col) == pytest.approx(ref[key], abs=2e-3), col
    assert table["Df"].iloc[1] == lme4[1]["Df"] == 2
    assert table["Chisq"].iloc[1] == pytest.approx(lme4[1]["Chisq"], abs=2e-3)
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(lme4[1]["p"], rel=1e-3)


def test_profile_intervals_are_lme4s() -> None:
    """cbpp's profile intervals against lme4's (its spline through a grid, at its default PIRLS;
    harness/references/lme4.json): within 1e-3 of each interval's width (measured 3e-5)."""
    fit = cbpp()
    ci = fit.confint(method="profile")
    path = ROOT / "harness" / "references" / "lme4.json"
    rows = [r for r in json.loads(path.read_text())["records"]["cbpp-cbind-ML"]["confint"]
            if r["method"] == "profile"]
    assert [r["parm"] for r in rows] == list(ci.index)
    for r in rows:
        width = r["upper"] - r["lower"]
        assert abs(ci.at[r["parm"], "2.5 %"] - r["lower"]) < 1e-3 * width, r["parm"]
        assert abs(ci.at[r["parm"], "97.5 %"] - r["upper"]) < 1e-3 * width, r["parm"]


def test_profile_intervals_refuse_what_they_do_not_cover() -> None:
    gamma = _quiet_glmer("y ~ x + (1 | g)", load_dataset("sim_glmm_gamma"), "Gamma", link="log")
    with pytest.raises(MixedrefError, match="family without a scale"):
        gamma.confint(method="profile")
    slopes = _quiet_glmer("y ~ x + (x | g)", load_dataset("sim_glmm_slopes"), "binomial")
    with pytest.raises(MixedrefError, match="scalar random-effects terms only"):
        slopes.confint(method="profile")
