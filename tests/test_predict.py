"""mixedref.inference.predict against lme4's predict.merMod (tests/references/predict.json, written
by
r_scripts/predict_references.R), and its error paths."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedref
from harness.core.datasets import load_dataset
from mixedref.errors import DataError, FormulaError, MixedrefError
from mixedref.inference.predict import predict

REFS = json.loads((Path(__file__).parent / "references" / "predict.json").read_text())
CASES = REFS["cases"]

# mixedref's LMM estimates (theta, beta) agree with lme4's to about 1e-6 relative (two
# optimizers stopping at the same optimum within their tolerances), so predictions, linear in
# beta and b, agree to about 1e-6 in units of sigma. GLMM estimates agree with lme4's only
# within the harness's GLMM tolerance (fixed effects within 0.01 SE: lme4's own optimizers
# spread that much; cbpp's differ by 2e-4 on the link scale), so GLMM predictions are held to
# 0.2 % of their scale, as tests/test_glmer.py holds glmer's fitted values; the mechanics are
# checked tightly by test_glmer_newdata_rows_are_linear_predictor.
LMM_TOL_SIGMA = 1e-6
GLMM_REL = 2e-3


@cache
def fitted(case_id: str):
    case = CASES[case_id]
    data = load_dataset(case["dataset"])
    if "family" in case:
        return mixedref.glmer(case["formula"], data, family=case["family"])
    # lme4's stopping point, so that the predictions test their arithmetic to 1e-6 sigma: the
    # Newton finish moves theta further along the flat optimum (criterion 1.5e-9 lower on
    # sleepstudy slopes), which moves predictions by up to 7.5e-7 relative
    return mixedref.lmer(case["formula"], data, REML=case["REML"], control={"polish": False})


def rebuild(newdata: dict | None) -> pd.DataFrame | None:
    """The newdata lme4 predicted on, column by column, factors with R's levels."""
    if newdata is None:
        return None
    cols = {}
    for name, values in newdata["columns"].items():
        fac = newdata["factors"].get(name)
        if fac is None:
            cols[name] = np.array([np.nan if v is None else v for v in values], dtype=float)
        else:
            cols[name] = pd.Categorical(values, categories=fac["levels"], ordered=fac["ordered"])
    return pd.DataFrame(cols)


PREDICTIONS = [(cid, i) for cid, c in CASES.items() for i in range(len(c["predictions"]))]


@pytest.mark.parametrize(("case_id", "i"), PREDICTIONS,
                         ids=[f"{c}-{CASES[c]['predictions'][i]['label']}" for c, i in PREDICTIONS])
def test_matches_lme4(case_id: str, i: int) -> None:
    case, ref = CASES[case_id], CASES[case_id]["predictions"][i]
    fit = fitted(case_id)
    got = predict(fit, rebuild(ref["newdata"]), re_form=ref["re_form"],
                  allow_new_levels=ref["allow_new_levels"], type=ref["type"])
    want = np.array([np.nan if v is None else v for v in ref["values"]], dtype=float)
    if "family" in case:
        rtol, atol = GLMM_REL, GLMM_REL * np.nanmax(np.abs(want))
    else:
        rtol, atol = 0.0, LMM_TOL_SIGMA * case["sigma"]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("case_id", ["sleepstudy-slopes-REML", "cake-recipe-temperature-REML",
                                     "sleepstudy-poly-REML", "sleepstudy-ns-scale-REML"])
def test_default_and_own_data_are_fitted(case_id: str) -> None:
    fit = fitted(case_id)
    data = load_dataset(CASES[case_id]["dataset"])
    np.testing.assert_array_equal(predict(fit), fit.fitted)
    np.testing.assert_allclose(predict(fit, data), fit.fitted, rtol=1e-12, atol=1e-10)


def test_glmer_default_types() -> None:
    fit = fitted("cbpp-binomial")
    np.testing.assert_array_equal(predict(fit), fit.linear_predictor)
    np.testing.assert_array_equal(predict(fit, type="response"), fit.fitted)


def test_glmer_newdata_rows_are_linear_predictor() -> None:
    fit = fitted("cbpp-binomial")
    rows = [0, 1, 9, 19, 32, 55]
    nd = load_dataset("cbpp").iloc[rows][["period", "herd"]]
    np.testing.assert_allclose(predict(fit, nd), fit.linear_predictor[rows], rtol=1e-12)
    np.testing.assert_allclose(predict(fit, nd, type="response"), fit.fitted[rows], rtol=1e-10)


def _sleep_new(subjects: list[str]) -> pd.DataFrame:
    levels = list(load_dataset("sleepstudy")["Subject"].cat.categories)
    return pd.DataFrame({"Days": [1.0] * len(subjects),
                         "Subject": pd.Categorical(subjects,
                                                   categories=sorted(set(levels) | set(subjects)))})


def test_new_level_refused_by_name_unless_allowed() -> None:
    fit = fitted("sleepstudy-slopes-REML")
    nd = _sleep_new(["308", "999"])
    with pytest.raises(DataError, match=r"'999'.*'Subject'"):
        predict(fit, nd)
    got = predict(fit, nd, allow_new_levels=True)
    assert got[1] == pytest.approx(predict(fit, nd, re_form="NA")[1])
    assert got[0] != pytest.approx(got[1])


def test_missing_grouping_value_refused_unless_allowed() -> None:
    fit = fitted("sleepstudy-slopes-REML")
    nd = _sleep_new(["308", "309"])
    nd.loc[1, "Subject"] = np.nan
    with pytest.raises(DataError, match=r"'Subject' is missing in 1 row"):
        predict(fit, nd)


def test_missing_column_named() -> None:
    fit = fitted("sleepstudy-slopes-REML")
    with pytest.raises(DataError, match=r"lacks column 'Days'"):
        predict(fit, _sleep_new(["308"]).drop(columns="Days"))
    # the population level needs no grouping factor
    assert predict(fit, pd.DataFrame({"Days": [2.0]}), re_form="NA").shape == (1,)
    with pytest.raises(DataError, match=r"lacks column 'Subject'"):
        predict(fit, pd.DataFrame({"Days": [2.0]}))


def test_unseen_fixed_level_named() -> None:
    fit = fitted("cake-recipe-temperature-REML")
    nd = pd.DataFrame({"recipe": ["A", "D"], "temperature": pd.Categorical(
        ["175", "185"], categories=["175", "185", "195", "205", "215", "225"], ordered=True)})
    with pytest.raises(DataError, match=r"factor 'recipe' has new level 'D'"):
        predict(fit, nd, re_form="NA")


def test_fixed_factor_from_plain_strings_uses_fitting_coding() -> None:
    """newdata's strings and an unordered categorical still get contr.poly and all levels."""
    fit = fitted("cake-recipe-temperature-REML")
    data = load_dataset("cake").iloc[[0, 50, 200]]
    plain = pd.DataFrame({"recipe": data["recipe"].astype(str).to_numpy(),
                          "temperature": data["temperature"].astype(str).to_numpy()})
    np.testing.assert_allclose(predict(fit, plain, re_form="NA"),
                               predict(fit, data, re_form="NA"), rtol=1e-12)


@pytest.mark.parametrize(("re_form", "pattern"), [
    ("~(1 | foo)", r"grouping factor 'foo' is not one of the model's"),
    ("~(Days | plate)", r"'plate' is not one of"),
    ("~(0 + Reaction | Subject)", r"'Reaction', not a variable"),
    ("~1", r"(?i)no random.effects terms"),
    ("~Days + (1 | Subject)", r"terms outside bars"),
    ("~(1 | Subject", r"cannot be read"),
])
def test_bad_re_form(re_form: str, pattern: str) -> None:
    fit = fitted("sleepstudy-slopes-REML")
    with pytest.raises(FormulaError, match=pattern):
        predict(fit, re_form=re_form)


def test_re_form_column_not_in_model() -> None:
    fit = fitted("Penicillin-crossed-REML")
    nd = load_dataset("Penicillin").iloc[:2].assign(x=[1.0, 2.0])
    with pytest.raises(FormulaError, match=r"'x', not a variable"):
        predict(fit, nd, re_form="~(x | plate)")


def test_bad_type() -> None:
    with pytest.raises(MixedrefError, match="type must be"):
        predict(fitted("sleepstudy-slopes-REML"), type="terms")
