"""lmerTest's F tests of model terms (mixedref.anova_terms) against lmerTest's own tables:
recorded by r_scripts/lmer_record.R (harness/references/lme4.json, anova_terms) and live
through R where it runs, compared by the harness's comparator and its allowances."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedref
from harness.adapters.lme4 import RECORDED_PATH
from harness.adapters.mixedref_impl import anova_terms_rows
from harness.core.comparators.anova_terms import TermFTests
from harness.core.datasets import load_dataset
from harness.core.tolerance import DEFAULT
from mixedref.errors import MixedrefError

CASES = {"ChickWeight-diet_time-REML": ("ChickWeight", "weight ~ Diet * Time + (Time | Chick)",
                                        True),
         "cake-numeric_temp-REML": ("cake", "angle ~ recipe + temp + (1 | recipe:replicate)",
                                    True),
         "cake-interaction-REML": ("cake",
                                   "angle ~ recipe * temperature + (1 | recipe:replicate)", True)}


def _fit(case_id: str) -> mixedref.LmerFit:
    dataset, formula, reml = CASES[case_id]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mixedref.lmer(formula, load_dataset(dataset), REML=reml)


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(RECORDED_PATH.read_text())["records"]


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_tables_agree_with_lmertests_recorded(case_id: str, recorded: dict) -> None:
    """Every row of lmerTest's Type I, II, III (Satterthwaite), Type III (Kenward-Roger) and
    lme4's table within the comparator's allowances, none left unreported."""
    reference = recorded[case_id]
    assert reference["anova_terms"], "the recording has the tables"
    fit = _fit(case_id)
    candidate = {"anova_terms": anova_terms_rows(fit), "sigma": fit.sigma}
    rows = TermFTests().rows(reference, candidate, DEFAULT, [])
    assert rows
    bad = [(r.name, r.ref, r.cand, r.allowed) for r in rows if r.ok is not True]
    assert not bad
    kinds = {(r["ddf"], r["type"]) for r in reference["anova_terms"]}
    assert ("Satterthwaite", "3") in kinds and ("lme4", "") in kinds


def test_type3_is_lmertests_sas_hypotheses_not_the_treatment_coefficients(recorded: dict
                                                                           ) -> None:
    """ChickWeight's Time: Type II and III differ (Time is orthogonalised against Diet:Time,
    which contains it), and the table does not depend on the contrasts the model was fitted
    with (lmerTest maps the treatment-coded hypotheses to the fitted coding)."""
    fit = _fit("ChickWeight-diet_time-REML")
    t2 = mixedref.anova(fit, type=2)
    t3 = mixedref.anova(fit, type=3)
    assert abs(t3.loc["Time", "F value"] - t2.loc["Time", "F value"]) > 1.0
    ref = {r["term"]: r for r in recorded["ChickWeight-diet_time-REML"]["anova_terms"]
           if r["ddf"] == "Satterthwaite" and r["type"] == "3"}
    assert t3.loc["Time", "F value"] == pytest.approx(ref["Time"]["F"], rel=2e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summed = mixedref.lmer("weight ~ Diet * Time + (Time | Chick)",
                               load_dataset("ChickWeight"), contrasts={"Diet": "contr.sum"})
    t3_sum = mixedref.anova(summed, type=3)
    np.testing.assert_allclose(t3_sum["F value"], t3["F value"], rtol=1e-4)
    np.testing.assert_allclose(t3_sum["DenDF"], t3["DenDF"], rtol=1e-3)


def test_one_fit_gives_the_term_table_several_the_likelihood_ratio() -> None:
    fit = _fit("cake-numeric_temp-REML")
    table = mixedref.anova(fit)
    assert list(table.columns) == ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
    assert list(table.index) == ["recipe", "temp"]
    assert list(mixedref.anova(fit, ddf="lme4").columns) == ["npar", "Sum Sq", "Mean Sq",
                                                             "F value"]


def test_bad_input_is_named() -> None:
    data = load_dataset("cake")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        icpt = mixedref.lmer("angle ~ 1 + (1 | recipe:replicate)", data)
        ml = mixedref.lmer("angle ~ recipe + temp + (1 | recipe:replicate)", data, REML=False)
    with pytest.raises(MixedrefError, match="Type III table needs fixed-effect terms.*none"):
        mixedref.anova(icpt, type=3)
    with pytest.raises(MixedrefError, match="unknown anova type 4"):
        mixedref.anova(ml, type=4)
    with pytest.raises(MixedrefError, match="unknown ddf 'KR'"):
        mixedref.anova(ml, ddf="KR")
    with pytest.raises(MixedrefError, match="only available for REML"):
        mixedref.anova(ml, ddf="Kenward-Roger")


@pytest.mark.needs_r
def test_live_lmertest_on_chickweight() -> None:
    """lmerTest's Type I and III tables computed now in R, against mixedref's at lme4's θ
    (so only the tables' arithmetic is compared, to 1e-6)."""
    from harness.core import rbridge

    if rbridge.unavailable():
        pytest.skip(rbridge.unavailable())
    import rpy2.robjects as ro

    data = load_dataset("ChickWeight")
    ro.globalenv["d"] = rbridge.to_r_frame(data)
    fit = _fit("ChickWeight-diet_time-REML")
    for kind in (1, 3):
        r_tab = ro.r(f"""local({{
          suppressMessages(library(lmerTest))
          m <- lmer(weight ~ Diet * Time + (Time | Chick), d)
          a <- anova(m, type = {kind})
          list(theta = getME(m, "theta"), F = a[["F value"]], df = a$DenDF)}})""")
        theta = np.asarray(r_tab[0])
        refit = fit.__class__.__new__(fit.__class__)
        refit.__dict__.update(fit.__dict__)
        refit.theta = theta
        for key in ("_sol", "fixef", "sigma"):
            refit.__dict__.pop(key, None)
        ours = mixedref.anova(refit, type=kind)
        np.testing.assert_allclose(ours["F value"], np.asarray(r_tab[1]), rtol=1e-6)
        np.testing.assert_allclose(ours["DenDF"], np.asarray(r_tab[2]), rtol=1e-6)
    assert isinstance(ours, pd.DataFrame)
