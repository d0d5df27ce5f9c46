"""mixedref.inference.ddf against lmerTest 3.1-3 / pbkrtest 0.5.2 (tests/references/ddf.json,
written by
r_scripts/ddf_references.R), plus errors and properties that need no reference.

Agreement is checked twice. At lme4's θ (recorded) the two sides compute the same quantity at
the same point, so what is left is the derivative error: measured at most 6e-8 relative for
Satterthwaite df (lmerTest's numDeriv vs our Richardson differences) and 1e-13 for
Kenward-Roger (no derivatives). At mixedref's own θ the estimate difference adds to it: at
most 6e-5 relative (sleepstudy ML, Penicillin 2.4e-5), within the 1e-4 asked of df.
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
from mixedref.errors import MixedrefError
from mixedref.inference import ddf, ddf_kr

REF = json.loads((Path(__file__).parent / "references" / "ddf.json").read_text())["cases"]
CASES = sorted(REF)
REML_CASES = [c for c in CASES if REF[c]["REML"]]

#: Satterthwaite df at the same θ: both sides differentiate numerically (measured 6e-8).
SATT_SAME_THETA = 1e-6
#: Kenward-Roger at the same θ: closed-form algebra on both sides (measured 1e-13).
KR_SAME_THETA = 1e-9
#: df at mixedref's own θ: estimate difference included (measured 6e-5).
OWN_THETA = 1e-4

T_COLUMNS = ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
F_COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]


@cache
def fitted(case: str) -> mixedref.LmerFit:
    c = REF[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mixedref.lmer(c["formula"], load_dataset(c["dataset"]), REML=c["REML"])


@cache
def at_lme4_theta(case: str) -> ddf.DdfModel:
    """The model at the θ lme4 reached: differences left are the method's, not the fit's."""
    return ddf.DdfModel.from_fit(fitted(case), REF[case]["theta"])


def contrast(case: str) -> np.ndarray:
    c = REF[case]
    return np.array(c["L"], dtype=float).reshape(-1, len(np.atleast_1d(c["fixef_names"])))


def assert_table(ours: pd.DataFrame, ref: pd.DataFrame, df_col: str, df_rtol: float,
                 rtol: float) -> None:
    """Same columns and rows; df relative; p-values relative on the log scale (they reach
    1e-44, where a relative t difference d moves log p by about t^2 d); the others relative."""
    assert list(ours.columns) == list(ref.columns)
    assert len(ours) == len(ref)
    p_col = ours.columns[-1]
    for col in ours.columns:
        a, b = ours[col].to_numpy(float), ref[col].to_numpy(float)
        if col == df_col:
            np.testing.assert_allclose(a, b, rtol=df_rtol, err_msg=col)
        elif col == p_col:
            np.testing.assert_allclose(np.log(a), np.log(b), rtol=df_rtol, atol=df_rtol,
                                       err_msg=col)
        else:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12, err_msg=col)


@pytest.mark.parametrize("case", CASES)
def test_satterthwaite_coefficients_at_lme4_theta(case):
    ours = ddf.coef_table(at_lme4_theta(case), "Satterthwaite")
    ref = ref_frame(REF[case]["Satterthwaite"]["coefficients"])
    assert list(ours.index) == list(ref.index) == list(np.atleast_1d(REF[case]["fixef_names"]))
    assert_table(ours, ref, "df", SATT_SAME_THETA, 1e-9)


@pytest.mark.parametrize("case", REML_CASES)
def test_kenward_roger_coefficients_at_lme4_theta(case):
    """KR's Std. Error is the adjusted one (vcovAdj), as lmerTest's summary reports it."""
    ours = ddf.coef_table(at_lme4_theta(case), "Kenward-Roger")
    ref = ref_frame(REF[case]["Kenward-Roger"]["coefficients"])
    assert_table(ours, ref, "df", KR_SAME_THETA, 1e-9)


@pytest.mark.parametrize("case", CASES)
def test_satterthwaite_coefficients_at_own_theta(case):
    ours = ddf.coef_table(fitted(case))
    ref = ref_frame(REF[case]["Satterthwaite"]["coefficients"])
    assert_table(ours, ref, "df", OWN_THETA, OWN_THETA)


@pytest.mark.parametrize("case", REML_CASES)
@pytest.mark.parametrize("method", ["Satterthwaite", "Kenward-Roger"])
def test_contest_rows_and_joint(case, method):
    model = at_lme4_theta(case)
    tol = SATT_SAME_THETA if method == "Satterthwaite" else KR_SAME_THETA
    refs = REF[case][method]
    rows = ddf.contest(model, contrast(case), ddf=method, joint=False)
    assert_table(rows, ref_frame(refs["contest_rows"]), "df", tol, 1e-9)
    joint = ddf.contest(model, contrast(case), ddf=method, joint=True)
    assert list(joint.columns) == F_COLUMNS
    assert_table(joint, ref_frame(refs["contest_joint"]), "DenDF", tol, 1e-9)


def test_contest_ml_satterthwaite():
    case = "sleepstudy-slopes-ML"
    joint = ddf.contest(at_lme4_theta(case), contrast(case))
    assert_table(joint, ref_frame(REF[case]["Satterthwaite"]["contest_joint"]), "DenDF",
                 SATT_SAME_THETA, 1e-9)


@pytest.mark.parametrize("case", REML_CASES)
def test_vcov_kr_matches_vcovadj(case):
    ours = ddf.vcov_kr(at_lme4_theta(case))
    ref = np.array(REF[case]["vcovAdj"], dtype=float).reshape(ours.shape)
    np.testing.assert_allclose(ours.to_numpy(), ref, rtol=KR_SAME_THETA,
                               atol=KR_SAME_THETA * np.abs(ref).max())
    assert list(ours.index) == list(np.atleast_1d(REF[case]["fixef_names"]))


def test_vcov_kr_of_ml_fit_refits_by_reml_as_pbkrtest():
    """pbkrtest's vcovAdj refits an ML fit by REML; so does vcov_kr (own REML θ: 1e-4)."""
    case = "sleepstudy-slopes-ML"
    ours = ddf.vcov_kr(fitted(case)).to_numpy()
    ref = np.array(REF[case]["vcovAdj"], dtype=float).reshape(ours.shape)
    np.testing.assert_allclose(ours, ref, rtol=OWN_THETA)


def test_kr_adjustment_vanishes_when_balanced_only():
    """KR's adjusted covariance equals vcov for sleepstudy (balanced: the adjustment is zero,
    as known) and exceeds it for the unbalanced simulation: the adjustment is not a no-op."""
    bal = at_lme4_theta("sleepstudy-slopes-REML")
    np.testing.assert_allclose(ddf.vcov_kr(bal).to_numpy(), bal.vcov, rtol=1e-8)
    unbal = at_lme4_theta("sim_unbalanced-slopes-REML")
    kr_se = ddf.coef_table(unbal, "Kenward-Roger")["Std. Error"].to_numpy()
    assert np.all(kr_se > np.sqrt(np.diag(unbal.vcov)) * (1 + 1e-5))


# -- errors ---------------------------------------------------------------------------------

def test_unknown_ddf_lists_the_methods():
    with pytest.raises(MixedrefError, match="Satterthwaite, Kenward-Roger"):
        ddf.coef_table(fitted("Dyestuff-intercept-REML"), "kenward-roger")


def test_wrong_number_of_columns_names_the_fixed_effects():
    expected = r"3 columns .* 2 fixed effects \(\(Intercept\), Days\)"
    with pytest.raises(MixedrefError, match=expected):
        ddf.contest(fitted("sleepstudy-slopes-REML"), np.ones((1, 3)))


@pytest.mark.parametrize("call", [
    lambda f: ddf.coef_table(f, "Kenward-Roger"),
    lambda f: ddf.contest(f, np.eye(2), ddf="Kenward-Roger"),
    lambda f: ddf.contest(f, np.eye(2), ddf="Kenward-Roger", joint=False)])
def test_kenward_roger_refuses_ml_as_lmertest(call):
    expected = REF["sleepstudy-slopes-ML"]["kr_error_summary"]
    assert expected == REF["sleepstudy-slopes-ML"]["kr_error_contest"]
    with pytest.raises(MixedrefError, match=expected):
        call(fitted("sleepstudy-slopes-ML"))


def test_kenward_roger_dense_size_guard_names_n(monkeypatch):
    monkeypatch.setattr(ddf, "MAX_KR_NOBS", 100)
    with pytest.raises(MixedrefError, match="n = 180 observations"):
        ddf.kr_parts(ddf.DdfModel.from_fit(fitted("sleepstudy-slopes-REML")), method="dense")


def test_kenward_roger_size_guard_names_q(monkeypatch):
    """The default (Woodbury) path is bounded by the random effects, not the rows: sleepstudy
    has 2 x 18 = 36 of them."""
    monkeypatch.setattr(ddf_kr, "MAX_KR_EFFECTS", 30)
    with pytest.raises(MixedrefError, match="q = 36 "):
        ddf.vcov_kr(ddf.DdfModel.from_fit(fitted("sleepstudy-slopes-REML")))


def test_contrast_dataframe_is_matched_by_name():
    fit = fitted("sleepstudy-slopes-REML")
    L = pd.DataFrame([[1.0, 0.0]], columns=["Days", "(Intercept)"], index=["slope"])
    out = ddf.contest(fit, L, joint=False)
    assert list(out.index) == ["slope"]
    assert out["Estimate"].iloc[0] == pytest.approx(fit.fixef["Days"], rel=1e-12)


# -- properties -----------------------------------------------------------------------------

def test_balanced_one_way_df_is_anova_df():
    """Dyestuff (6 batches x 5): the intercept's df is batches - 1 = 5 under both methods
    (lmerTest gives 4.99999998: numDeriv's error; ours is closer)."""
    fit = fitted("Dyestuff-intercept-REML")
    assert ddf.coef_table(fit)["df"].iloc[0] == pytest.approx(5.0, rel=1e-7)
    assert ddf.coef_table(fit, "Kenward-Roger")["df"].iloc[0] == pytest.approx(5.0, rel=1e-9)


def test_split_plot_df_are_stratum_df():
    """cake's split plot: recipe contrasts are tested in the whole-plot stratum (45 replicate
    plots - 3 recipes = 42 df), temperature terms in the sub-plot stratum (210 df)."""
    tab = ddf.coef_table(fitted("cake-split-REML"))
    whole = tab.index.str.fullmatch(r"\(Intercept\)|recipe[BC]")
    np.testing.assert_allclose(tab["df"][whole], 42.0, rtol=1e-7)
    np.testing.assert_allclose(tab["df"][~whole], 210.0, rtol=1e-7)


def test_richardson_derivatives_of_a_known_function():
    def f(x):
        return np.array([np.exp(x[0]) * np.sin(x[1]), x[0] ** 3 * x[1]])

    x = np.array([0.7, 1.3])
    J, H = ddf.richardson_derivatives(f, x)
    e, s, c = np.exp(x[0]), np.sin(x[1]), np.cos(x[1])
    np.testing.assert_allclose(J, [[e * s, e * c], [3 * x[0] ** 2 * x[1], x[0] ** 3]],
                               rtol=1e-10)
    np.testing.assert_allclose(H[0], [[e * s, e * c], [e * c, -e * s]], rtol=1e-8)
    np.testing.assert_allclose(H[1], [[6 * x[0] * x[1], 3 * x[0] ** 2],
                                      [3 * x[0] ** 2, 0]], rtol=1e-8, atol=1e-8)


def test_contest_one_row_joint_is_t_squared():
    fit = fitted("sleepstudy-slopes-REML")
    row = ddf.contest(fit, [0.0, 1.0], joint=False)
    joint = ddf.contest(fit, [0.0, 1.0], joint=True)
    assert joint["F value"].iloc[0] == pytest.approx(row["t value"].iloc[0] ** 2, rel=1e-12)
    assert joint["DenDF"].iloc[0] == pytest.approx(row["df"].iloc[0], rel=1e-12)


@pytest.mark.parametrize("engine", ["dense", "sparse"])
@pytest.mark.parametrize("case", ["Penicillin-crossed-REML", "sleepstudy-slopes-ML"])
def test_criterion_pieces_are_solves_bit_for_bit(case, engine):
    """Satterthwaite's points read the engine's factorization alone (criterion_pieces): its
    (ldL2, ldRX2, pwrss, R_X) must be solve()'s exactly, also where the dense engine copies
    back the Schur complement it kept (a point sharing the first term's θ with the one
    before) and where it must not (the first term's θ changed, the later ones not)."""
    if engine == "sparse":
        pytest.importorskip("sksparse")
    from mixedref.engines import PLSObjective

    fit = fitted(case)
    obj = PLSObjective(fit.model, REML=fit.REML, engine=engine)
    th = np.asarray(fit.theta, dtype=float)
    later = th.copy()
    later[-1] *= 1.2  # same first-term θ as th: the kept complement is reused
    first = later.copy()
    first[0] *= 1.1  # first-term θ changed, later ones as before: recomputed
    for point in (th, later, first, th):
        got, sol = obj.criterion_pieces(point), obj.solve(point)
        assert (got.ldL2, got.ldRX2, got.pwrss) == (sol.ldL2, sol.ldRX2, sol.pwrss)
        np.testing.assert_array_equal(got.RX, sol.RX)
