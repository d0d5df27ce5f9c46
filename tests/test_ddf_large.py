"""Satterthwaite and Kenward-Roger df beyond the old size limits (issue 26), against lmerTest
3.1-3 / pbkrtest 0.5.2 run live (tests/references/ddf_large.json, written by
r_scripts/bigddf_references.R on the seeded design tools/bigddf_data.py and InstEval), and the
new paths against the old ones on the same small fits.

At lme4's θ both sides compute the same quantity at the same point (tolerances as
tests/test_ddf.py's: Satterthwaite's numerical derivatives 1e-6, measured at most 2.6e-7 on
InstEval ML; Kenward-Roger's closed-form algebra 1e-9). At mixedref's own θ the estimate
difference adds to it: the harness's df tolerance (Tolerance.df_rel), measured at most 9.7e-5
(InstEval REML, where mixedref's REML criterion is 4.5e-8 below its value at lme4's θ: the two
estimates differ along a flat direction, θ_3 by 3.8e-5 relative).
"""

from __future__ import annotations

import json
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ref_frame

import mixedref
from harness.core.datasets import load_dataset
from harness.core.tolerance import Tolerance
from mixedref.engines import PLSObjective
from mixedref.errors import MixedrefError
from mixedref.inference import ddf, ddf_kr
from mixedref.inference.anova_terms import anova_terms

HERE = Path(__file__).parent
REF = json.loads((HERE / "references" / "ddf_large.json").read_text())["cases"]
SMALL = json.loads((HERE / "references" / "ddf.json").read_text())["cases"]
SMALL_REML = sorted(c for c in SMALL if SMALL[c]["REML"])

SATT_SAME_THETA = 1e-6
KR_SAME_THETA = 1e-9
OWN_THETA = Tolerance().df_rel
#: the Woodbury and the dense n x n Kenward-Roger on the same fit: rounding only (measured
#: 2e-13 relative on Penicillin, 1e-15 elsewhere)
KR_PATHS = 1e-10
#: Satterthwaite through the sparse (CHOLMOD) and the dense engine on the same fit: the same
#: extrapolated differences of two factorizations that agree to rounding
SATT_ENGINES = 1e-7

#: the large cases whose fit takes more than a few seconds (InstEval: 73,421 rows)
SLOW = {c for c in REF if REF[c]["dataset"] == "InstEval"}


def seeded(nrows: int) -> pd.DataFrame:
    d = pd.read_csv(HERE / "references" / "bigddf_seeded.csv.gz").iloc[:nrows].copy()
    for v in ("trt", "g", "h"):
        d[v] = pd.Categorical(d[v], categories=sorted(d[v].unique()))
    return d


@cache
def fitted(case: str) -> mixedref.LmerFit:
    c = REF[case]
    data = seeded(c["nrows"]) if c["dataset"] == "bigddf_seeded" else load_dataset(c["dataset"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mixedref.lmer(c["formula"], data, REML=c["REML"])


@cache
def at_lme4_theta(case: str) -> ddf.DdfModel:
    return ddf.DdfModel.from_fit(fitted(case), REF[case]["theta"])


#: (case, method) for every recorded table; InstEval's marked slow
RECORDED = [pytest.param(c, m, marks=[pytest.mark.slow] if c in SLOW else [], id=f"{c}-{m}")
            for c in REF for m in ddf.DDF_METHODS if m in REF[c]]


def test_references_go_beyond_the_old_limits():
    """What the issue asks: Satterthwaite above 6,000 rows (InstEval included), Kenward-Roger
    above 6,000 (the old dense refusal) too."""
    sizes = {ddf_: max(c["nobs"] for c in REF.values() if ddf_ in c)
             for ddf_ in ddf.DDF_METHODS}
    assert sizes["Satterthwaite"] == 73421 and sizes["Kenward-Roger"] > 6000


@pytest.mark.parametrize(("case", "method"), RECORDED)
def test_df_at_lme4_theta(case, method):
    ref = ref_frame(REF[case][method]["coefficients"])
    ours = ddf.coef_table(at_lme4_theta(case), ddf=method)
    rtol = SATT_SAME_THETA if method == "Satterthwaite" else KR_SAME_THETA
    assert list(ours.index) == list(ref.index)
    np.testing.assert_allclose(ours["df"], ref["df"], rtol=rtol)
    np.testing.assert_allclose(ours["Std. Error"], ref["Std. Error"], rtol=1e-6)


@pytest.mark.parametrize(("case", "method"), RECORDED)
def test_tables_at_own_theta(case, method):
    """summary's coefficients and anova(type 3) at mixedref's own estimate."""
    fit = fitted(case)
    ref = ref_frame(REF[case][method]["coefficients"])
    ours = fit.coef_table(ddf=method)
    np.testing.assert_allclose(ours["df"], ref["df"], rtol=OWN_THETA)
    np.testing.assert_allclose(ours["t value"], ref["t value"], rtol=OWN_THETA)
    np.testing.assert_allclose(np.log(ours["Pr(>|t|)"]), np.log(ref["Pr(>|t|)"]),
                               rtol=OWN_THETA, atol=OWN_THETA)
    aov = anova_terms(fit, type=3, ddf=method)
    refa = ref_frame(REF[case][method]["anova3"])
    assert list(aov.index) == list(refa.index)
    np.testing.assert_array_equal(aov["NumDF"], refa["NumDF"])
    np.testing.assert_allclose(aov["DenDF"], refa["DenDF"], rtol=OWN_THETA)
    np.testing.assert_allclose(aov["F value"], refa["F value"], rtol=OWN_THETA)


@pytest.mark.parametrize("case", SMALL_REML)
def test_kenward_roger_woodbury_equals_dense(case):
    """Both Kenward-Roger paths on the same fit and θ: the same P, W and vcovAdj."""
    c = SMALL[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mixedref.lmer(c["formula"], load_dataset(c["dataset"]), REML=True)
    model = ddf.DdfModel.from_fit(fit)
    dense, wood = ddf.kr_parts(model, "dense"), ddf.kr_parts(model, "woodbury")
    scale = np.abs(dense.vcov_adj).max()
    np.testing.assert_allclose(wood.vcov_adj, dense.vcov_adj, rtol=0, atol=KR_PATHS * scale)
    np.testing.assert_allclose(wood.W, dense.W, rtol=0, atol=KR_PATHS * np.abs(dense.W).max())
    for a, b in zip(wood.P, dense.P, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=KR_PATHS * np.abs(b).max())


def test_kenward_roger_paths_differ_on_a_wrong_theta():
    """The comparison above can fail: the Woodbury path at a perturbed θ is told apart."""
    c = SMALL["sleepstudy-slopes-REML"]
    fit = mixedref.lmer(c["formula"], load_dataset(c["dataset"]), REML=True)
    dense = ddf.kr_parts(ddf.DdfModel.from_fit(fit), "dense")
    wood = ddf.kr_parts(ddf.DdfModel.from_fit(fit, np.asarray(fit.theta) * 1.001), "woodbury")
    assert np.abs(wood.vcov_adj - dense.vcov_adj).max() > KR_PATHS * np.abs(dense.vcov_adj).max()


def test_kenward_roger_unknown_method():
    fit = mixedref.lmer("Reaction ~ Days + (1 | Subject)", load_dataset("sleepstudy"))
    with pytest.raises(MixedrefError, match="unknown Kenward-Roger method 'qr'"):
        ddf.kr_parts(ddf.DdfModel.from_fit(fit), "qr")


@pytest.mark.parametrize("case", ["sleepstudy-slopes-REML", "Penicillin-crossed-REML",
                                  "cake-split-REML"])
def test_satterthwaite_sparse_engine_equals_dense(case):
    """Satterthwaite's derivatives through CHOLMOD's factor and the dense engine's, same θ."""
    pytest.importorskip("sksparse")
    c = SMALL[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mixedref.lmer(c["formula"], load_dataset(c["dataset"]), REML=True)
    names = tuple(fit.model.fixef_names)
    out = {}
    for engine in ("dense", "sparse"):
        obj = PLSObjective(fit.model, REML=True, engine=engine)
        assert obj.engine == engine
        out[engine] = ddf.coef_table(ddf.DdfModel(obj, np.asarray(fit.theta), names))
    np.testing.assert_allclose(out["sparse"]["df"], out["dense"]["df"], rtol=SATT_ENGINES)
    np.testing.assert_allclose(out["sparse"]["Std. Error"], out["dense"]["Std. Error"],
                               rtol=1e-10)


def test_kenward_roger_refusal_names_q_and_memory(monkeypatch):
    monkeypatch.setattr(ddf_kr, "MAX_KR_EFFECTS", 100)
    fit = fitted("seeded6500-REML")
    q = sum(t.q * t.nlevels for t in fit.model.reterms)
    with pytest.raises(MixedrefError, match=f"q = {q} .*GB.*Satterthwaite"):
        ddf.kr_parts(ddf.DdfModel.from_fit(fit))


def test_fit_keeps_its_ddf_model():
    """coef_table and anova share one DdfModel per fit (derivatives computed once)."""
    fit = fitted("seeded6500-REML")
    assert ddf.ddf_model(fit) is ddf.ddf_model(fit) is fit._ddf_model
