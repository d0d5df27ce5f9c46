"""The tolerance policy on hand-made records: what agrees, what does not, candidate-better."""

from __future__ import annotations

import copy

import pytest

from harness.compare import (
    AGREED,
    CANDIDATE_BETTER,
    DISAGREED,
    FAILED,
    REFERENCE_FAILED,
    Comparison,
    compare_records,
)
from harness.record import failed_record, normalize_record
from harness.tolerance import DEFAULT as TOL


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


def test_lower_objective_is_candidate_better_not_a_failure() -> None:
    cand = _cand(objective=1743.6 - 0.5, loglik=-871.8 + 0.25, sigma=25.0)
    comp = compare_records(_ref(), cand)
    assert comp.verdict == CANDIDATE_BETTER
    assert comp.ok  # a finding about the reference, not the candidate's failure
    assert comp.failures  # the parameters do differ, and the table shows them
    assert "lower than the reference" in comp.headline()


def test_lower_objective_within_tolerance_is_plain_agreement() -> None:
    small = 0.5 * TOL.objective_allowed(1743.6)
    assert compare_records(_ref(), _cand(objective=1743.6 - small)).verdict == AGREED


def test_different_model_is_a_disagreement_even_with_lower_objective() -> None:
    cand = _cand(fixef={"(Intercept)": 251.4, "Days": 10.47, "extra": 1.0}, objective=1700.0)
    comp = compare_records(_ref(), cand)
    assert comp.verdict == DISAGREED
    assert any(r.name == "fixef[extra]" and r.note == "not in reference" for r in comp.rows)


def test_missing_fixef_is_a_failure_but_unreported_fields_are_not_compared() -> None:
    partial = normalize_record({"fixef": {"(Intercept)": 251.4, "Days": 10.47}}, "user", "c")
    comp = compare_records(_ref(), partial)
    assert comp.verdict == AGREED
    assert {r.name for r in comp.rows if r.ok is None} >= {"sigma", "objective",
                                                            "fixef_se[Days]"}
    missing = normalize_record({"fixef": {"(Intercept)": 251.4}}, "user", "c")
    comp = compare_records(_ref(), missing)
    assert comp.verdict == DISAGREED
    assert [(r.name, r.note) for r in comp.failures] == [("fixef[Days]", "missing")]


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
    assert comp.verdict == REFERENCE_FAILED and comp.ok


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

    from harness.compare import compare_records

    ref = {"fixef": {"a": 1.0}, "fixef_se": {"a": 0.1}, "sigma": 1.0, "objective": 10.0}
    cand = {"fixef": {"a": np.float64(2.0)}, "fixef_se": {"a": np.float64(0.1)},
            "sigma": np.float64(1.0), "objective": np.float64(10.0)}
    comp = compare_records(ref, cand)
    assert not comp.ok
    assert [r.name for r in comp.failures] == ["fixef[a]"]
