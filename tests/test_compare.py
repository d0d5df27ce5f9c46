"""The tolerance policy on hand-made records: what agrees, what does not, and what the judge's
re-evaluation (harness.core.judge.Judgement, built here by hand) decides: candidate-better only from
re-evaluated criteria under both judges, a candidate's claims checked against its estimates,
judges that disagree, a reference inconsistent with its own objective."""

from __future__ import annotations

import copy

import pytest

from harness.core.compare import (
    AGREED,
    CANDIDATE_BETTER,
    DISAGREED,
    FAILED,
    INCOMPLETE,
    JUDGES_DISAGREE,
    REFERENCE_FAILED,
    Comparison,
    compare_records,
)
from harness.core.judge import Evaluation, Judgement, Point
from harness.core.record import failed_record, normalize_record
from harness.core.tolerance import DEFAULT as TOL


def _ref() -> dict:
    # shaped like lme4's sleepstudy (Days | Subject) REML record (values rounded, hand-made)
    return normalize_record({
        "fixef": {"(Intercept)": 251.4, "Days": 10.47},
        "fixef_se": {"(Intercept)": 6.8, "Days": 1.5},
        "sigma": 25.6,
        "varcorr": [
            {"grp": "Subject", "var1": "(Intercept)", "var2": None, "vcov": 612.0, "sdcor": 24.74},
            {"grp": "Subject", "var1": "Days", "var2": None, "vcov": 35.0, "sdcor": 5.916},
            {"grp": "Subject", "var1": "(Intercept)", "var2": "Days", "vcov": 9.6,
             "sdcor": 0.0656},
            {"grp": "Residual", "var1": None, "var2": None, "vcov": 655.36, "sdcor": 25.6},
        ],
        "theta": [0.9667, 0.0152, 0.2309],
        "loglik": -871.8,
        "objective": 1743.6,
        "REML": True,
    }, "lme4", "sleepstudy-slopes-REML")


def _cand(**changes: object) -> dict:
    rec = copy.deepcopy(_ref())
    rec["impl"] = "cand"
    rec.update(changes)
    return rec


def test_identical_records_agree_with_every_row_compared() -> None:
    comp = compare_records(_ref(), _cand())
    assert comp.verdict == AGREED and comp.ok
    names = [r.name for r in comp.rows]
    assert names[:4] == ["fixef[(Intercept)]", "fixef[Days]", "fixef_se[(Intercept)]",
                         "fixef_se[Days]"]
    for expected in ("sigma", "var[Subject,(Intercept)]", "cov[Subject,(Intercept),Days]",
                     "corr[Subject,(Intercept),Days]", "var[Residual]", "loglik", "objective",
                     "theta[2]"):
        assert expected in names
    assert all(r.ok for r in comp.rows)


def test_fixef_is_judged_in_units_of_its_standard_error() -> None:
    allowed = TOL.fixef_se_units * 1.5  # Days' SE in the reference
    inside = compare_records(_ref(), _cand(fixef={"(Intercept)": 251.4,
                                                  "Days": 10.47 + 0.9 * allowed}))
    outside = compare_records(_ref(), _cand(fixef={"(Intercept)": 251.4,
                                                   "Days": 10.47 + 1.1 * allowed}))
    assert inside.verdict == AGREED
    assert outside.verdict == DISAGREED
    assert [r.name for r in outside.failures] == ["fixef[Days]"]
    assert outside.failures[0].allowed == pytest.approx(allowed)


def test_variance_near_zero_uses_an_absolute_floor_in_sigma2() -> None:
    ref = _ref()
    ref["varcorr"][1]["vcov"] = 0.0  # a variance on the boundary
    floor = TOL.var_abs_sigma2 * 655.36
    ok = _cand(varcorr=copy.deepcopy(ref["varcorr"]))
    ok["varcorr"][1]["vcov"] = 0.9 * floor
    bad = _cand(varcorr=copy.deepcopy(ref["varcorr"]))
    bad["varcorr"][1]["vcov"] = 1.1 * floor
    row = "var[Subject,Days]"
    assert {r.name: r.ok for r in compare_records(ref, ok).rows}[row] is True
    assert {r.name: r.ok for r in compare_records(ref, bad).rows}[row] is False


def test_large_variances_are_relative() -> None:
    cand = _cand(varcorr=copy.deepcopy(_ref()["varcorr"]))
    cand["varcorr"][0]["vcov"] = 612.0 * (1 + 1.5 * TOL.var_rel)
    comp = compare_records(_ref(), cand)
    assert [r.name for r in comp.failures] == ["var[Subject,(Intercept)]"]


def test_correlation_is_absolute() -> None:
    cand = _cand(varcorr=copy.deepcopy(_ref()["varcorr"]))
    cand["varcorr"][2]["sdcor"] = 0.0656 + 2 * TOL.corr_abs
    comp = compare_records(_ref(), cand)
    assert [r.name for r in comp.failures] == ["corr[Subject,(Intercept),Days]"]


def test_higher_objective_beyond_tolerance_is_a_disagreement() -> None:
    comp = compare_records(_ref(), _cand(objective=1743.6 + 0.1, loglik=-871.8 - 0.05))
    assert comp.verdict == DISAGREED and not comp.ok
    assert {r.name for r in comp.failures} == {"objective", "loglik"}


def _judged(ref_obj: float, cand_obj: float, *, lme4: bool = True, mixedref: bool = True,
            beta: dict | None = None, sigma: float = 25.6, cand_mixedref: float | None = None,
            n: int = 180, p: int = 2) -> Judgement:
    """A judgement as harness.core.judge gives it: both estimates evaluated by both judges."""
    beta = beta or {"(Intercept)": 251.4, "Days": 10.47}

    def point(obj: float, mine: float | None = None) -> Point:
        by = {}
        if lme4:
            by["lme4"] = Evaluation(objective=obj, beta=dict(beta), sigma=sigma)
        if mixedref:
            by["mixedref"] = Evaluation(objective=obj if mine is None else mine,
                                        beta=dict(beta), sigma=sigma)
        return Point(theta=[1.0], by=by)

    return Judgement("REML criterion", point(ref_obj), point(cand_obj, cand_mixedref),
                     n=n, p=p)


def test_a_lower_reported_objective_alone_is_a_claim_not_a_finding() -> None:
    cand = _cand(objective=1743.6 - 0.5, loglik=-871.8 + 0.25)
    comp = compare_records(_ref(), cand)  # no judge: the claim is all there is
    assert comp.verdict == DISAGREED and not comp.ok
    assert any("no judge re-evaluated" in n for n in comp.notes)
    # the judge finds its estimates give the reference's criterion: the claim fails, named
    comp = compare_records(_ref(), cand, judgement=_judged(1743.6, 1743.6))
    assert comp.verdict == DISAGREED
    assert "consistency.objective" in {r.name for r in comp.failures}
    assert "reported REML criterion 1743.1 but its estimates give 1743.6" in comp.headline()


def test_candidate_better_only_when_both_judges_find_it_lower() -> None:
    cand = _cand(objective=1743.6 - 0.5, loglik=-871.8 + 0.25)
    comp = compare_records(_ref(), cand, judgement=_judged(1743.6, 1743.1))
    assert comp.verdict == CANDIDATE_BETTER and comp.ok  # a finding about the reference
    assert "re-evaluated under lme4's devfun: 1743.1 vs 1743.6" in comp.headline()
    # one judge alone (R missing) still decides, and says it was alone
    comp = compare_records(_ref(), cand, judgement=_judged(1743.6, 1743.1, lme4=False))
    assert comp.verdict == CANDIDATE_BETTER and "alone" in comp.headline()
    # a candidate better by its own account but inconsistent with its estimates is not better
    liar = _cand(objective=1700.0, loglik=-850.0)
    comp = compare_records(_ref(), liar, judgement=_judged(1743.6, 1743.1))
    assert comp.verdict == DISAGREED


def test_judges_that_disagree_give_no_verdict() -> None:
    j = _judged(1743.6, 1743.1, cand_mixedref=1743.5)  # lme4 0.4 lower than mixedref there
    comp = compare_records(_ref(), _cand(objective=1743.1), judgement=j)
    assert comp.verdict == JUDGES_DISAGREE and not comp.ok
    assert "the judges disagree at the candidate's θ" in comp.headline()


def test_a_reference_inconsistent_with_its_own_objective_is_no_reference() -> None:
    comp = compare_records(_ref(), _cand(), judgement=_judged(1750.0, 1750.0))
    assert comp.verdict == REFERENCE_FAILED and not comp.ok
    assert "stale or broken recording" in str(comp.error)


def test_beta_and_sigma_checked_against_the_profiled_values_at_the_candidates_theta() -> None:
    # the candidate's θ is the reference's (same varcorr), its β one SE off in Days
    cand = _cand(fixef={"(Intercept)": 251.4, "Days": 10.47 + 1.5}, sigma=25.6)
    comp = compare_records(_ref(), cand, judgement=_judged(1743.6, 1743.6))
    assert {r.name for r in comp.failures} == {"fixef[Days]", "consistency.fixef[Days]"}
    assert "β is not the GLS solution at its own θ" in comp.headline()
    cand = _cand(sigma=25.6 * 1.01)
    comp = compare_records(_ref(), cand, judgement=_judged(1743.6, 1743.6))
    assert "consistency.sigma" in {r.name for r in comp.failures}
    assert "is not σ̂(θ) 25.6 at its own θ" in comp.headline()


def test_a_missing_two_pi_constant_is_named() -> None:
    import math

    c = (180 - 2) * math.log(2 * math.pi)  # REML: (n - p) log(2π) in the criterion
    cand = _cand(objective=1743.6 - c, loglik=-871.8 + c / 2)
    comp = compare_records(_ref(), cand, judgement=_judged(1743.6, 1743.6))
    assert "is (n - p)·log(2π): the 2π constant is left out of its likelihood" in comp.headline()
    assert "is (n - p)·log(2π)/2" in comp.headline()


def test_lower_objective_within_tolerance_is_plain_agreement() -> None:
    small = 0.5 * TOL.objective_allowed(1743.6)
    assert compare_records(_ref(), _cand(objective=1743.6 - small)).verdict == AGREED


def test_different_model_is_a_disagreement_even_with_lower_objective() -> None:
    cand = _cand(fixef={"(Intercept)": 251.4, "Days": 10.47, "extra": 1.0}, objective=1700.0)
    comp = compare_records(_ref(), cand)
    assert comp.verdict == DISAGREED
    assert any(r.name == "fixef[extra]" and r.note == "not in reference" for r in comp.rows)


def test_missing_fixef_is_a_failure_but_unreported_fields_are_not_compared() -> None:
    ref = _ref()
    partial = normalize_record({"fixef": {"(Intercept)": 251.4, "Days": 10.47},
                                "sigma": 25.6, "varcorr": ref["varcorr"]}, "user", "c")
    comp = compare_records(ref, partial)
    assert comp.verdict == AGREED
    assert {r.name for r in comp.rows if r.ok is None} >= {"objective", "fixef_se[Days]"}
    missing = normalize_record({"fixef": {"(Intercept)": 251.4}, "sigma": 25.6,
                                "varcorr": ref["varcorr"]}, "user", "c")
    comp = compare_records(ref, missing)
    assert comp.verdict == DISAGREED
    assert [(r.name, r.note) for r in comp.failures] == [("fixef[Days]", "missing")]


@pytest.mark.parametrize("fields", [{"sigma": 25.6}, {"fixef_se": {"Days": 1.5}},
                                    {"fixef": {"(Intercept)": 251.4, "Days": 10.47}}])
def test_a_candidate_that_reports_almost_nothing_is_incomplete_not_agreed(fields) -> None:
    comp = compare_records(_ref(), normalize_record(fields, "user", "c"))
    assert comp.verdict == INCOMPLETE and not comp.ok
    assert "incomplete: the candidate does not report" in comp.headline()
    said = comp.headline().split("does not report ")[1].split(";")[0]
    assert ("σ" in said) == ("sigma" not in fields)
    assert ("the fixed effects" in said) == ("fixef" not in fields)


def test_nothing_comparable_is_a_failure() -> None:
    comp = compare_records(_ref(), normalize_record({}, "user", "c"))
    assert comp.verdict == FAILED and "nothing comparable" in str(comp.error)


def test_theta_compared_only_where_both_report_it() -> None:
    comp = compare_records(_ref(), _cand(theta=None))
    assert not any(r.name.startswith("theta") for r in comp.rows)


def test_failed_candidate_and_failed_reference() -> None:
    comp = compare_records(_ref(), failed_record("cand", "c", "ValueError: singular X"))
    assert comp.verdict == FAILED and not comp.ok
    assert "singular X" in comp.format_table()
    comp = compare_records(failed_record("lme4", "c", "boom"), _cand())
    assert comp.verdict == REFERENCE_FAILED and not comp.ok  # no reference: never a pass


def test_table_shows_name_reference_candidate_difference_allowed() -> None:
    comp = compare_records(_ref(), _cand(sigma=26.0))
    table = comp.format_table()
    header = table.splitlines()[1]
    for word in ("name", "reference", "candidate", "difference", "allowed"):
        assert word in header
    sigma_line = next(line for line in table.splitlines() if " sigma " in line)
    assert sigma_line.startswith("XX")
    assert "25.6" in sigma_line and "26" in sigma_line and "0.4" in sigma_line
    assert "sigma" in comp.headline()


def test_round_trip_through_dict() -> None:
    comp = compare_records(_ref(), _cand(sigma=26.0))
    again = Comparison.from_dict(comp.to_dict())
    assert again.verdict == comp.verdict and again.rows == comp.rows


def test_numpy_numbers_in_a_record_still_fail_when_outside_tolerance():
    """A record that skipped normalization (numpy floats) must not pass by a numpy bool."""
    import numpy as np

    from harness.core.compare import compare_records

    ref = {"fixef": {"a": 1.0}, "fixef_se": {"a": 0.1}, "sigma": 1.0, "objective": 10.0}
    cand = {"fixef": {"a": np.float64(2.0)}, "fixef_se": {"a": np.float64(0.1)},
            "sigma": np.float64(1.0), "objective": np.float64(10.0)}
    comp = compare_records(ref, cand)
    assert not comp.ok
    assert [r.name for r in comp.failures] == ["fixef[a]"]


def test_a_full_likelihood_under_quadrature_is_compared_on_lme4s_scale() -> None:
    # nAGQ > 1: lme4's criterion leaves out the saturated model's -2 log-likelihood (83.96 on
    # cbpp); a candidate reporting the full -2 log-likelihood agrees once that is accounted for
    const = 83.9567
    j = _judged(1743.6, 1743.6)
    j.saturated_constant = const
    full = _cand(objective=1743.6 + const, loglik=-871.8 - const / 2)
    comp = compare_records(_ref(), full, judgement=j)
    assert comp.verdict == AGREED, comp.format_table()
    assert any("lme4's nAGQ > 1 scale" in n for n in comp.notes)
    # any other constant is still a likelihood that is not lme4's
    off = _cand(objective=1743.6 + const / 2, loglik=-871.8 - const / 4)
    comp = compare_records(_ref(), off, judgement=j)
    assert comp.verdict == DISAGREED
    assert "consistency.objective" in {r.name for r in comp.failures}
    # without the judge's constant (Laplace, LMMs) the full value is a disagreement
    comp = compare_records(_ref(), full, judgement=_judged(1743.6, 1743.6))
    assert comp.verdict == DISAGREED


def _tests(ddf: str, df: float, p: float, se: float = 1.5458) -> dict:
    return {"ddf": ddf, "term": "Days", "se": se, "df": df, "p": p}


def test_denominator_df_and_p_values_are_compared() -> None:
    from scipy import stats

    p = float(2 * stats.t.sf(10.47 / 1.5458, 17.0))
    ref = _cand(impl="lme4", coef_tests=[_tests("Satterthwaite", 17.0, p)])
    df_ok = 17.0 * (1 + 0.5 * TOL.df_rel)
    ok = _cand(coef_tests=[_tests("Satterthwaite", df_ok,
                                  float(2 * stats.t.sf(10.47 / 1.5458, df_ok)))])
    assert compare_records(ref, ok).verdict == AGREED
    far = _cand(coef_tests=[_tests("Satterthwaite", 18.0, p)])  # and p no longer its own t's
    assert {r.name for r in compare_records(ref, far).failures} == {
        "df_satterthwaite[Days]", "p_satterthwaite[Days]"}
    one_sided = _cand(coef_tests=[_tests("Satterthwaite", 17.0, p / 2)])
    assert [r.name for r in compare_records(ref, one_sided).failures] == ["p_satterthwaite[Days]"]
    # not reported is not a failure
    assert compare_records(ref, _cand()).verdict == AGREED


#: θ of the sleepstudy-shaped records at a correlation of 1: a zero pivot, theta[2], in the
#: vector-valued Subject term (a fit singular in a vector-valued term)
SINGULAR_THETA = [0.9667, 0.2, 0.0]


def test_at_a_singular_fit_satterthwaite_df_are_shown_but_not_compared() -> None:
    """lmerTest's Satterthwaite df at a reference fit singular in a vector-valued term move with
    the BLAS kernel by a factor of three (harness/core/tolerance.py): a row with the reason and no
    verdict; Kenward-Roger's df and the p-values (against the candidate's own numbers) are still
    compared, and so are Satterthwaite's df at a scalar term's boundary."""
    from harness.core.comparators.coef_tests import SINGULAR_SATTERTHWAITE, two_sided_p

    def tests(df_s: float, df_kr: float) -> list[dict]:
        return [_tests("Satterthwaite", df_s, two_sided_p(10.47, 1.5458, df_s)),
                _tests("Kenward-Roger", df_kr, two_sided_p(10.47, 1.5458, df_kr))]

    ref = _cand(impl="lme4", singular=True, theta=SINGULAR_THETA, coef_tests=tests(17.0, 17.0))
    cand = _cand(theta=SINGULAR_THETA, coef_tests=tests(30.0, 17.0))
    comp = compare_records(ref, cand)
    rows = {r.name: r for r in comp.rows}
    assert comp.verdict == AGREED, comp.format_table()
    sat = rows["df_satterthwaite[Days]"]
    assert (sat.ok, sat.allowed, sat.difference, sat.note) == (None, None, 13.0,
                                                               SINGULAR_SATTERTHWAITE)
    assert rows["df_kr[Days]"].ok and rows["p_satterthwaite[Days]"].ok
    assert SINGULAR_SATTERTHWAITE in comp.format_table()
    # Kenward-Roger's df keep their allowance at a singular fit
    comp = compare_records(ref, _cand(theta=SINGULAR_THETA, coef_tests=tests(17.0, 18.0)))
    assert [r.name for r in comp.failures] == ["df_kr[Days]"]
    # a regular fit compares Satterthwaite's df as before
    regular = _ref()["theta"]
    comp = compare_records({**ref, "singular": False, "theta": regular},
                           {**cand, "theta": regular})
    assert [r.name for r in comp.failures] == ["df_satterthwaite[Days]"]
    # and so does a fit singular in a scalar term (its variance 0: the term drops out)
    scalar = [{"grp": "Subject", "var1": "(Intercept)", "var2": None, "vcov": 0.0, "sdcor": 0.0},
              {"grp": "Residual", "var1": None, "var2": None, "vcov": 655.36, "sdcor": 25.6}]
    comp = compare_records({**ref, "theta": [0.0], "varcorr": scalar},
                           {**cand, "theta": [0.0], "varcorr": scalar})
    assert [r.name for r in comp.failures] == ["df_satterthwaite[Days]"]


def _modes(condval: float, condsd: float) -> list[dict]:
    return [{"grp": "Subject", "term": "Days", "level": "308", "condval": condval,
             "condsd": condsd}]


def test_at_a_singular_fit_the_modes_get_the_measured_singular_allowance() -> None:
    """The conditional modes and their SDs where the reference fit is singular in a
    vector-valued term: the singular-fit allowances (lme4's BLAS spread times the margin),
    elsewhere the regular ones."""
    sd = 2.0
    between = (TOL.ranef_condsd_units + TOL.ranef_condsd_units_singular) / 2 * sd
    sd_between = sd * (1 + (TOL.ranef_sd_rel + TOL.ranef_sd_rel_singular) / 2)
    ref = _cand(impl="lme4", ranef=_modes(9.0, sd))
    cand = _cand(ranef=_modes(9.0 + between, sd_between))
    regular = compare_records(ref, cand)
    assert {r.name for r in regular.failures} == {"ranef[Subject,Days]", "ranef_sd[Subject,Days]"}
    singular = {**ref, "singular": True, "theta": SINGULAR_THETA}
    comp = compare_records(singular, {**cand, "theta": SINGULAR_THETA})
    assert comp.verdict == AGREED, comp.format_table()
    beyond = _cand(ranef=_modes(9.0 + 1.1 * TOL.ranef_condsd_units_singular * sd, sd),
                   theta=SINGULAR_THETA)
    assert [r.name for r in compare_records(singular, beyond).failures] == [
        "ranef[Subject,Days]"]


def _preds(values: list[float], re_form: str = "NA", new_levels: bool = False) -> list[dict]:
    return [{"re_form": re_form, "row": i, "new_levels": new_levels, "value": v}
            for i, v in enumerate(values)]


def test_predictions_are_compared_per_kind_with_the_worst_row_named() -> None:
    ref = _cand(impl="lme4", predictions=_preds([251.4, 261.9, 272.3])
                + _preds([253.7], "NULL") + _preds([251.4], "NULL", new_levels=True))
    small = TOL.predict_sigma_units * 25.6 * 0.5
    ok = _cand(predictions=_preds([251.4 + small, 261.9, 272.3 - small])
               + _preds([253.7], "NULL") + _preds([251.4], "NULL", new_levels=True))
    comp = compare_records(ref, ok)
    assert comp.verdict == AGREED
    assert {r.name for r in comp.rows if r.name.startswith("predict")} == {
        "predict[population]", "predict[conditional]", "predict[new levels]"}
    off = _cand(predictions=_preds([251.4, 261.9 + 0.1, 272.3]) + _preds([253.7], "NULL"))
    comp = compare_records(ref, off)
    bad = [r for r in comp.failures if r.name.startswith("predict")]
    assert [r.name for r in bad] == ["predict[population]"] and "row 1" in bad[0].note
    # a kind the candidate does not report (new levels) is not reported, not a failure
    assert next(r for r in comp.rows if r.name == "predict[new levels]").ok is None


def test_interval_limits_are_compared_within_a_fraction_of_the_width() -> None:
    ci = [{"method": "profile", "parm": "sigma", "lower": 22.9, "upper": 28.9},
          {"method": "Wald", "parm": "Days", "lower": 7.44, "upper": 13.50}]
    ref = _cand(impl="lme4", confint=ci)
    near = copy.deepcopy(ci)
    near[0]["upper"] += 0.5 * TOL.ci_width_rel * 6.0
    assert compare_records(ref, _cand(confint=near)).verdict == AGREED
    far = copy.deepcopy(ci)
    far[1]["lower"] -= 2 * TOL.ci_width_rel * 6.06
    assert [r.name for r in compare_records(ref, _cand(confint=far)).failures] == [
        "ci_wald[Days,lower]"]
    # a profile interval the candidate does not give is not reported, not a failure
    only_wald = [ci[1]]
    comp = compare_records(ref, _cand(confint=only_wald))
    assert comp.verdict == AGREED
    assert next(r for r in comp.rows if r.name == "ci_profile[sigma,lower]").ok is None


def _anova(chisq: float = 42.139, df: int = 2, npar1: int = 6, dev1: float = 1751.939) -> list:
    # shaped like lme4's anova(m0, m1) of sleepstudy's intercept vs slopes (rounded, hand-made)
    from scipy.stats import chi2

    return [{"model": "m0", "npar": 4, "AIC": 1802.079, "BIC": 1814.850, "logLik": -897.039,
             "deviance": 1794.079, "Chisq": None, "Df": 0, "p": None},
            {"model": "m1", "npar": npar1, "AIC": dev1 + 2 * npar1, "BIC": 1783.097,
             "logLik": -dev1 / 2, "deviance": dev1, "Chisq": chisq, "Df": df,
             "p": float(chi2.sf(chisq, df))}]


def test_anova_tables_are_compared_row_by_row() -> None:
    ref = _cand(impl="lme4", anova=_anova())
    comp = compare_records(ref, _cand(anova=_anova()))
    assert comp.verdict == AGREED
    names = {r.name for r in comp.rows}
    assert {"anova_deviance[m0]", "anova_chisq[m1]", "anova_df[m1]", "anova_p[m1]",
            "anova_npar[m1]"} <= names
    # a χ² beyond the two deviances' allowances, and a wrong count of parameters, fail
    off = compare_records(ref, _cand(anova=_anova(chisq=42.139 + 0.01)))
    assert [r.name for r in off.failures] == ["anova_chisq[m1]"]
    npar = compare_records(ref, _cand(anova=_anova(npar1=7, df=3)))
    assert {r.name for r in npar.failures} >= {"anova_npar[m1]", "anova_df[m1]"}
    # a p-value that is not its own χ²'s (here one-sided halved) fails against itself
    lying = _anova()
    lying[1]["p"] /= 2
    assert [r.name for r in compare_records(ref, _cand(anova=lying)).failures] == [
        "anova_p[m1]"]
    # a candidate without anova reports nothing there: not compared, not failed
    silent = compare_records(ref, _cand())
    assert silent.verdict == AGREED
    assert next(r for r in silent.rows if r.name == "anova_chisq[m1]").ok is None


# ----------------------------------------------------------------------------- GLMM inference


def _glmm(**changes: object) -> dict:
    """Shaped like lme4's cbpp binomial record (values rounded, hand-made): two fixed effects,
    Hessian and RX SEs, a Wald z table, Wald intervals and predictions on both scales."""
    from scipy.special import expit
    from scipy.stats import norm

    fixef = {"(Intercept)": -1.40, "period2": -0.99}
    se = {"(Intercept)": 0.231, "period2": 0.303}
    rec = {"impl": "lme4", "family": "binomial", "link": "logit", "nAGQ": 1,
           "fixef": fixef, "fixef_se": se, "fixef_se_rx": {"(Intercept)": 0.228,
                                                            "period2": 0.305},
           "sigma": 1.0, "objective": 184.05, "loglik": -92.03,
           "varcorr": [{"grp": "herd", "var1": "(Intercept)", "var2": None, "vcov": 0.412,
                        "sdcor": 0.642}],
           "coef_tests": [{"ddf": "Wald", "term": t, "se": se[t], "df": None,
                           "p": float(2 * norm.sf(abs(fixef[t] / se[t]))),
                           "statistic": fixef[t] / se[t]} for t in fixef],
           "confint": [{"method": "Wald", "parm": t, "lower": fixef[t] - 1.96 * se[t],
                        "upper": fixef[t] + 1.96 * se[t]} for t in fixef],
           "predictions": [{"re_form": "NA", "row": i, "new_levels": False, "value": v,
                            "type": kind}
                           for kind, f in (("link", float), ("response", expit))
                           for i, v in enumerate(map(f, (-1.40, -2.39)))]}
    rec.update(changes)
    return normalize_record(rec, str(rec["impl"]), "cbpp-cbind-ML")


def test_glmm_wald_z_tests_are_compared_within_their_parts_allowances() -> None:
    from harness.core.comparators.coef_tests import z_allowed
    from harness.core.tolerance import GLMM

    ref = _glmm()
    comp = compare_records(ref, _glmm(impl="cand"), tol=GLMM)
    assert comp.verdict == AGREED
    assert {"z_wald[period2]", "p_wald[period2]"} <= {r.name for r in comp.rows}
    z = -0.99 / 0.303
    allowed = z_allowed(z, 0.303, 0.305, GLMM)
    assert allowed == pytest.approx(0.01 * 0.305 / 0.303 + 0.02 * abs(z))
    off = copy.deepcopy(ref["coef_tests"])
    off[1]["statistic"] = z + 1.5 * allowed
    assert [r.name for r in compare_records(ref, _glmm(impl="cand", coef_tests=off),
                                            tol=GLMM).failures] == ["z_wald[period2]"]
    # a p-value that is not its own estimate's and SE's (a t distribution's) fails
    lying = copy.deepcopy(ref["coef_tests"])
    lying[0]["p"] *= 1.01
    assert [r.name for r in compare_records(ref, _glmm(impl="cand", coef_tests=lying),
                                            tol=GLMM).failures] == ["p_wald[(Intercept)]"]


def test_glmm_predictions_are_compared_on_the_link_and_through_the_inverse_link() -> None:
    from scipy.special import expit

    from harness.core.comparators.predictions import response_allowed
    from harness.core.tolerance import GLMM

    ref = _glmm()
    a = GLMM.predict_link_abs
    mu = float(expit(-2.39))
    # the allowance carried through the logit's inverse: about mu (1 - mu) times the link's
    assert response_allowed(mu, "logit", a) == pytest.approx(mu * (1 - mu) * a, rel=1e-2)
    near = copy.deepcopy(ref["predictions"])
    near[1]["value"] += 0.9 * a
    near[3]["value"] += 0.9 * mu * (1 - mu) * a
    comp = compare_records(ref, _glmm(impl="cand", predictions=near), tol=GLMM)
    assert comp.verdict == AGREED
    assert {"predict[population]", "predict[response population]"} <= {r.name for r in comp.rows}
    # a response off by what the link allows (not carried through the inverse link) fails
    far = copy.deepcopy(ref["predictions"])
    far[3]["value"] += a
    assert [r.name for r in compare_records(ref, _glmm(impl="cand", predictions=far),
                                            tol=GLMM).failures] == ["predict[response population]"]


def test_glmm_wald_limits_move_with_beta_and_the_hessian_se() -> None:
    from harness.core.comparators.confint import glmm_wald_allowed
    from harness.core.tolerance import GLMM

    ref = _glmm()
    lo, hi = ref["confint"][1]["lower"], ref["confint"][1]["upper"]
    allowed = glmm_wald_allowed(lo, hi, 0.305, GLMM)
    assert allowed == pytest.approx(0.01 * 0.305 + 0.02 * 1.96 * 0.303)
    ci = copy.deepcopy(ref["confint"])
    ci[1]["upper"] += 0.9 * allowed
    assert compare_records(ref, _glmm(impl="cand", confint=ci), tol=GLMM).verdict == AGREED
    ci[1]["upper"] += 0.2 * allowed
    assert [r.name for r in compare_records(ref, _glmm(impl="cand", confint=ci),
                                            tol=GLMM).failures] == ["ci_wald[period2,upper]"]
