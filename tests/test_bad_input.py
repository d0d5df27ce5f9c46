"""Bad input to mixedref.lmer: each refused input raises a MixedrefError subclass whose message
names the problem; inputs lme4 accepts (missing values, single-row groups, numeric grouping
variables) are accepted the same way, with lme4's answers (tests/references/edge/, written by
r_scripts/edge_references.R); inputs that used to fool mixedref (REML="FALSE", a response
overflowing y^2, degenerate responses, complex columns, "TRUE"/"FALSE" strings as a response,
sqrt of negatives, colliding group labels, polars frames, integer column names, a weights
Series with another index, duplicated terms) fit as lme4 1.1-31 does or fail naming the problem,
against lme4's behaviour recorded by r_scripts/frontend_references.R
(tests/references/frontend/bad_input.json); and no call, failed or not, modifies the caller's
DataFrame.

Tolerances against lme4: objective within 1e-6 relative (and never worse than lme4's by more),
theta 1e-3 absolute, as tests/test_lmer.py.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedref
from mixedref.errors import (
    DataError,
    DegenerateResponseWarning,
    DuplicateTermWarning,
    FormulaError,
    MixedrefError,
    MixedrefWarning,
    NaNsProducedWarning,
)

REF_DIR = Path(__file__).parent / "references" / "edge"
FRONTEND_DIR = Path(__file__).parent / "references" / "frontend"


def _ref(name: str) -> dict:
    return json.loads((REF_DIR / f"{name}.json").read_text())


def _frame(ref: dict) -> pd.DataFrame:
    """The R data frame of a reference: string columns become factors (R's C-locale order),
    JSON nulls become NaN (NA)."""
    cols = {}
    for name, values in ref["data"].items():
        if any(isinstance(v, str) for v in values):
            cols[name] = pd.Categorical(values)
        else:
            cols[name] = pd.array(values, dtype="float64").to_numpy(na_value=np.nan) if any(
                v is None for v in values) else np.asarray(values)
    return pd.DataFrame(cols)


def _check_against(fit: mixedref.LmerFit, ref_fit: dict) -> None:
    obj = ref_fit["objective"]
    assert fit.objective <= obj + 1e-6 * abs(obj)
    assert fit.objective == pytest.approx(obj, rel=1e-6)
    np.testing.assert_allclose(fit.theta, np.atleast_1d(ref_fit["theta"]), atol=1e-3)
    assert fit.nobs == ref_fit["nobs"]
    assert list(fit.ngroups.values()) == list(ref_fit["ngrps"].values())




def _refused(fn: Callable[[], object], data: pd.DataFrame, exc: type[Exception],
             match: str) -> None:
    """``fn`` raises ``exc`` matching ``match`` and leaves ``data`` exactly as it was."""
    before = data.copy(deep=True)
    with pytest.raises(exc, match=match):
        fn()
    pd.testing.assert_frame_equal(data, before)


# -- missing values: dropped as na.omit, counted ----------------------------------------------


@pytest.mark.parametrize("REML", [True, False])
def test_na_rows_dropped_as_lme4(REML: bool) -> None:
    ref = _ref("na_omit")
    data = _frame(ref)
    before = data.copy(deep=True)
    ref_fit = next(f for f in ref["fits"] if f["REML"] == REML)
    fit = mixedref.lmer(ref_fit["formula"], data, REML=REML)
    pd.testing.assert_frame_equal(data, before)
    _check_against(fit, ref_fit)
    assert fit.nobs == len(data) - 4 == 42
    assert fit.model.n_dropped_na == 4
    dropped = sorted(set(data.index) - set(fit.model.row_index))
    assert dropped == [2, 6, 19, 29]  # R's rows 3, 7, 20, 30


def test_na_only_rows_refused(df: pd.DataFrame) -> None:
    data = df.assign(y=np.nan)
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", data), data, DataError,
             r"0 \(non-NA\) cases")


def test_na_in_unused_column_keeps_the_row(df: pd.DataFrame) -> None:
    data = df.assign(z=np.where(np.arange(len(df)) % 4 == 0, np.nan, 1.0))
    fit = mixedref.lmer("y ~ x + (1 | g)", data)
    assert fit.nobs == len(df) and fit.model.n_dropped_na == 0


# -- values refused ------------------------------------------------------------------------------


@pytest.mark.parametrize("column,value", [("y", np.inf), ("y", -np.inf), ("x", np.inf)])
def test_infinite_refused(df: pd.DataFrame, column: str, value: float) -> None:
    data = df.copy()
    data.loc[3, column] = value
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", data), data, DataError,
             rf"column '{column}' has infinite values")


def test_string_response_refused(df: pd.DataFrame) -> None:
    data = df.assign(y=np.where(df["y"] > 1, "high", "low"))
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", data), data, DataError,
             r"response 'y' must be numeric.*high")


def test_grouping_factor_with_one_level(df: pd.DataFrame) -> None:
    lme4 = _ref("refused")["fits"]["one_level"]["error"]
    data = df.assign(g=pd.Categorical(["a"] * len(df)))
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", data), data, DataError,
             r"grouping factors must have > 1 sampled level \(problems: g\)")
    assert lme4.startswith("grouping factors must have > 1 sampled level")


def test_as_many_levels_as_rows(df: pd.DataFrame) -> None:
    lme4 = _ref("refused")["fits"]["levels_eq_n"]["error"]
    data = df.assign(g=pd.Categorical([f"r{i}" for i in range(len(df))]))
    msg = r"levels of each grouping factor must be < number of observations \(problems: g\)"
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", data), data, DataError, msg)
    assert "must be < number of observations (problems: g)" in lme4


def test_more_random_effects_than_observations() -> None:
    lme4 = _ref("refused")["fits"]["re_ge_n"]["error"]
    data = _frame(_ref("single_obs")).iloc[:24].copy()
    data["g"] = pd.Categorical([f"p{k:02d}" for k in np.repeat(np.arange(12), 2)])
    msg = (r"number of observations \(=24\) <= number of random effects \(=24\) "
           r"for term \(x \| g\)")
    _refused(lambda: mixedref.lmer("y ~ x + (x | g)", data), data, DataError, msg)
    assert "number of observations (=24) <= number of random effects (=24)" in lme4


# -- the data argument itself --------------------------------------------------------------------


def test_duplicate_column_names(df: pd.DataFrame) -> None:
    data = pd.concat([df, df[["x"]]], axis=1)
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", data), data, DataError,
             r"duplicate column names: x")


@pytest.mark.parametrize("formula,column", [("y ~ z + (1 | g)", "z"), ("y ~ x + (1 | h)", "h"),
                                            ("w ~ x + (1 | g)", "w"), ("y ~ x + (z | g)", "z")])
def test_formula_naming_a_missing_column(df: pd.DataFrame, formula: str, column: str) -> None:
    _refused(lambda: mixedref.lmer(formula, df), df, FormulaError,
             rf"unknown column '{column}'.*columns: y, x, g")


def test_empty_dataframe(df: pd.DataFrame) -> None:
    empty = df.iloc[:0]
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", empty), empty, DataError,
             r"data is empty \(0 rows\)")


@pytest.mark.parametrize("convert,kind", [(lambda d: d.to_dict("list"), "dict"),
                                          (lambda d: d.to_numpy(), "ndarray"),
                                          (lambda d: None, "NoneType")])
def test_non_dataframe(df: pd.DataFrame, convert, kind: str) -> None:
    with pytest.raises(DataError, match=rf"data must be a pandas DataFrame, got {kind}"):
        mixedref.lmer("y ~ x + (1 | g)", convert(df))


def test_formula_without_random_effects(df: pd.DataFrame) -> None:
    _refused(lambda: mixedref.lmer("y ~ x", df), df, FormulaError, r"No random effects terms")


def test_all_errors_are_mixedref_errors() -> None:
    assert issubclass(DataError, MixedrefError) and issubclass(FormulaError, MixedrefError)


# -- inputs lme4 accepts -------------------------------------------------------------------------


@pytest.mark.parametrize("REML", [True, False])
def test_single_observation_groups_fitted_as_lme4(REML: bool) -> None:
    ref = _ref("single_obs")
    data = _frame(ref)
    counts = data["g"].value_counts()
    assert (counts == 1).sum() == 3
    ref_fit = next(f for f in ref["fits"] if f["REML"] == REML and f["formula"].endswith("g)"))
    assert ref_fit["error"] is None and not ref_fit["singular"]
    fit = mixedref.lmer(ref_fit["formula"], data, REML=REML)
    _check_against(fit, ref_fit)
    assert fit.converged and not fit.singular


@pytest.mark.parametrize("column", ["gnum", "gdbl"])
@pytest.mark.parametrize("REML", [True, False])
def test_numeric_grouping_variable_becomes_a_factor(column: str, REML: bool) -> None:
    """lme4 makes a numeric grouping variable a factor silently; mixedref does the same and
    says so in fit.messages. The fit equals the one on the factor column."""
    ref = _ref("single_obs")
    data = _frame(ref)
    assert data[column].dtype.kind in "if"
    before = data.copy(deep=True)
    ref_fit = next(f for f in ref["fits"]
                   if f["REML"] == REML and f["formula"] == f"y ~ x + (1 | {column})")
    fit = mixedref.lmer(ref_fit["formula"], data, REML=REML)
    pd.testing.assert_frame_equal(data, before)
    _check_against(fit, ref_fit)
    assert any(f"grouping variable '{column}' is numeric; converted to a factor" in m
               for m in fit.messages), fit.messages
    assert fit.ngroups == {column: 12}


def test_successful_fit_leaves_data_untouched(df: pd.DataFrame) -> None:
    data = df.assign(gnum=np.repeat(np.arange(8), 5).astype(float))
    data.loc[4, "x"] = np.nan
    before = data.copy(deep=True)
    mixedref.lmer("y ~ x + (1 | gnum)", data)
    mixedref.lmer("log(y + 10) ~ I(x^2) + (x || g)", data)
    pd.testing.assert_frame_equal(data, before)


# -- inputs that used to fool mixedref (lme4's behaviour: tests/references/frontend/
#    bad_input.json, written by r_scripts/frontend_references.R) -------------------------------


@cache
def _bad() -> dict:
    return json.loads((FRONTEND_DIR / "bad_input.json").read_text())


def _bad_data() -> pd.DataFrame:
    d = pd.DataFrame(_bad()["data"])
    d["g"] = pd.Categorical(d["g"])
    return d


def _quiet(fn: Callable[[], mixedref.LmerFit]) -> tuple[mixedref.LmerFit, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fn()
    return fit, [str(w.message) for w in caught if issubclass(w.category, MixedrefWarning)]


@pytest.mark.parametrize("value", ["FALSE", "TRUE", None, 0, 1, 1.0, "ML", np.array([True])])
def test_reml_must_be_boolean(value: object) -> None:
    """lme4 reads REML = "FALSE" as FALSE (it fits ML) and stops on REML = NULL ("argument is of
    length zero"); mixedref fitted REML and ML for them silently. Now only booleans pass."""
    assert _bad()["cases"]["REML_null"]["error"] == "argument is of length zero"
    d = _bad_data()
    for call in (lambda: mixedref.lmer("y ~ x + (1 | g)", d, REML=value),
                 lambda: mixedref.devfun("y ~ x + (1 | g)", d, REML=value)):
        with pytest.raises(MixedrefError, match=r"REML must be True or False, got "):
            call()


@pytest.mark.parametrize("value", [False, np.False_])
def test_reml_numpy_bool_accepted(value: object) -> None:
    ref = _bad()["cases"]["REML_string"]  # lme4's ML fit (REML = "FALSE" read as FALSE)
    fit = mixedref.lmer("y ~ x + (1 | g)", _bad_data(), REML=value)
    assert fit.REML is False
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-5)


def test_huge_response_refused_before_fitting() -> None:
    """y * 1e155: y^2 overflows; lme4 returns sigma = Inf (JSON null) without a word, mixedref
    returned NaN estimates with converged=True. Now a DataError naming the response."""
    ref = _bad()["cases"]["huge_response"]
    assert ref["error"] is None and ref["sigma"] is None and ref["warnings"] == []
    d = _bad_data().assign(y=lambda t: t["y"] * 1e155)
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", d), d, DataError,
             r"response 'y' is too large to fit: its sum of squares overflows .*not finite at "
             r"the starting theta")


@pytest.mark.parametrize(("case", "make_y"), [
    ("constant_response", lambda d: np.full(len(d), 3.0)),
    ("response_is_x", lambda d: d["x"].to_numpy()),
    ("response_linear_in_x", lambda d: 2 * d["x"].to_numpy() + 1),
])
def test_degenerate_response_warns(case: str, make_y: Callable) -> None:
    """A response the fixed effects reproduce exactly: lme4 1.1-31 returns sigma = 0 (to
    rounding) with convergence warnings ("Model failed to converge with max|grad| ...", "Model
    is nearly unidentifiable") or, for y = x, silently; mixedref returned sigma ~ 1e-17 silently.
    Now a DegenerateResponseWarning (and the message in fit.messages); the fit is lme4's."""
    ref = _bad()["cases"][case]
    assert ref["error"] is None and ref["sigma"] < 1e-12
    if case != "response_is_x":
        assert any("Model failed to converge" in w for w in ref["warnings"])
    d = _bad_data().assign(y=make_y)
    with pytest.warns(DegenerateResponseWarning, match="reproduced exactly by the fixed effects"):
        fit = mixedref.lmer("y ~ x + (1 | g)", d)
    assert fit.sigma < 1e-12
    np.testing.assert_allclose(fit.fixef.to_numpy(), list(ref["fixef"].values()), atol=1e-8)
    assert any("reproduced exactly" in m for m in fit.messages)


def test_ordinary_response_not_degenerate(df: pd.DataFrame) -> None:
    """y = 1e9 + noise (the catalog's edge case) is not degenerate."""
    _, caught = _quiet(lambda: mixedref.lmer("y ~ x + (1 | g)", df.assign(y=df["y"] + 1e9)))
    assert not caught


def test_complex_column_refused() -> None:
    ref = _bad()["cases"]["complex_predictor"]["error"]
    assert ref == "complex variables are not currently allowed in model matrices"
    d = _bad_data().assign(z=lambda t: t["x"] + 1j)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's ComplexWarning no longer slips through
        _refused(lambda: mixedref.lmer("y ~ z + (1 | g)", d), d, DataError,
                 r"column 'z' holds complex values: complex variables are not currently allowed")
        _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", d, weights=d["z"].to_numpy()), d,
                 DataError, r"weights holds complex values")


def test_string_true_false_response_refused() -> None:
    """lme4: "response must be numeric" for a character "TRUE"/"FALSE" response; a logical
    response is fitted as 0/1 (sigma as lme4's)."""
    assert _bad()["cases"]["character_response"]["error"] == "response must be numeric"
    d = _bad_data()
    strings = d.assign(y=np.where(d["y"] > 0, "TRUE", "FALSE"))
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", strings), strings, DataError,
             r"response 'y' must be numeric.*response must be numeric")
    cat = d.assign(y=pd.Categorical(np.where(d["y"] > 0, "TRUE", "FALSE")))
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", cat), cat, DataError,
             r"response 'y' must be numeric")
    fit = mixedref.lmer("y ~ x + (1 | g)", d.assign(y=d["y"] > 0))
    assert fit.sigma == pytest.approx(_bad()["cases"]["logical_response"]["sigma"], rel=1e-5)
    fit = mixedref.lmer("I(y > 0) ~ x + (1 | g)", d)
    assert fit.sigma == pytest.approx(_bad()["cases"]["logical_response"]["sigma"], rel=1e-5)


def test_sqrt_of_negatives_warns_and_drops() -> None:
    """R: "NaNs produced", and na.omit drops those rows; the fit is lme4's."""
    ref = _bad()["cases"]["sqrt_negative"]
    assert ref["warnings"] == ["NaNs produced"]
    d = _bad_data()
    with pytest.warns(NaNsProducedWarning, match=r"In sqrt\(y \+ 1\) : NaNs produced"):
        fit = mixedref.lmer("y ~ sqrt(y + 1) + (1 | g)", d)
    assert fit.nobs == int((d["y"] >= -1).sum())
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-5)


def test_colliding_numeric_group_labels_refused() -> None:
    """0.3 and 0.1 + 0.2 both print "0.3": R's factor() merges them silently (lme4 reports 7
    groups of the 8 values); pandas raised a bare ValueError. Now a DataError naming both."""
    assert _bad()["cases"]["colliding_numeric_groups"]["ngrps"] == {"gg": 7}
    d = _bad_data().assign(gg=np.repeat([0.3, 0.1 + 0.2, 1, 2, 3, 4, 5, 6], 5))
    _refused(lambda: mixedref.lmer("y ~ x + (1 | gg)", d), d, DataError,
             r"column 'gg' has distinct values whose labels collide: 0\.3 and "
             r"0\.30000000000000004 both read as level '0\.3'")
    _refused(lambda: mixedref.lmer("y ~ factor(gg) + (1 | g)", d), d, DataError,
             r"column 'factor\(gg\)' has distinct values whose labels collide")


def test_categorical_with_colliding_categories_refused() -> None:
    d = _bad_data()
    d["h"] = pd.Categorical([1, "1", "b", "c"] * 10, categories=[1, "1", "b", "c"])
    _refused(lambda: mixedref.lmer("y ~ x + (1 | h)", d), d, DataError,
             r"column 'h' has distinct values whose labels collide: 1 and '1' both read as "
             r"level '1'")


def test_polars_dataframe_accepted() -> None:
    pl = pytest.importorskip("polars")
    d = _bad_data()
    ref = mixedref.lmer("y ~ x + (1 | g)", d)
    pdf = pl.DataFrame({"y": d["y"].to_numpy(), "x": d["x"].to_numpy(),
                        "g": d["g"].astype(str).to_numpy()})
    fit = mixedref.lmer("y ~ x + (1 | g)", pdf)
    assert fit.objective == pytest.approx(ref.objective, rel=1e-12)
    enum = pdf.with_columns(pl.col("g").cast(pl.Enum(list("hgfedcba"))))
    assert list(mixedref.build_model("y ~ x + (1 | g)", enum).reterms[0].levels) == list(
        "hgfedcba")
    with pytest.raises(DataError, match="polars LazyFrame: collect it first"):
        mixedref.lmer("y ~ x + (1 | g)", pdf.lazy())


def test_integer_column_names_work_backquoted() -> None:
    d = _bad_data()
    ref = mixedref.lmer("y ~ x + (1 | g)", d)
    numbered = d.set_axis([0, 1, 2], axis=1)
    fit = mixedref.lmer("`0` ~ `1` + (1 | `2`)", numbered)
    assert fit.objective == pytest.approx(ref.objective, rel=1e-12)
    assert list(fit.fixef.index) == ["(Intercept)", "`1`"] and list(fit.ngroups) == ["2"]
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", numbered), numbered, FormulaError,
             r"unknown column 'y'.*columns: 0, 1, 2")
    clash = d.set_axis([1, "1", "g"], axis=1)
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", clash), clash, DataError,
             r"duplicate column names: 1|collide as strings \(1\)")


def test_weights_series_aligned_by_index() -> None:
    d = _bad_data()
    w = pd.Series(np.linspace(0.5, 2, len(d)), index=d.index)
    ref = mixedref.lmer("y ~ x + (1 | g)", d, weights=w.to_numpy())
    shuffled = w.sample(frac=1.0, random_state=1)
    fit = mixedref.lmer("y ~ x + (1 | g)", d, weights=shuffled)
    assert fit.objective == pytest.approx(ref.objective, rel=1e-12)
    other = w.set_axis(np.arange(100, 100 + len(d)))
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", d, weights=other), d, DataError,
             r"weights is a pandas Series whose index does not match the data's index .*"
             r"data rows without a value: 0, 1, 2")
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", d, offset=other), d, DataError,
             r"offset is a pandas Series whose index does not match")


def test_duplicated_term_warns() -> None:
    """(1 | g) + (1 | g): lme4 1.1-31 fits both copies without a word (two theta, the same
    criterion as one term); mixedref fits the same and warns that only their sum is
    identified."""
    ref = _bad()["cases"]["duplicated_term"]
    assert ref["warnings"] == [] and len(ref["theta"]) == 2
    d = _bad_data()
    with pytest.warns(DuplicateTermWarning, match=r"term \(1 \| g\) appears more than once"):
        fit = mixedref.lmer("y ~ x + (1 | g) + (1 | g)", d)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-5)
    assert len(fit.theta) == 2


def test_na_fail_and_poly_with_missing_refused() -> None:
    d = _bad_data()
    d.loc[2, "x"] = np.nan
    lme4 = _bad()["cases"]
    assert lme4["na_fail"]["error"] == "missing values in object"
    _refused(lambda: mixedref.lmer("y ~ x + (1 | g)", d, na_action="na.fail"), d, DataError,
             r"missing values in object .*: 1 rows have missing values in x \(1\)")
    assert lme4["poly_na"]["error"] == "missing values are not allowed in 'poly'"
    _refused(lambda: mixedref.lmer("y ~ poly(x, 2) + (1 | g)", d), d, DataError,
             r"missing values are not allowed in 'poly' \(poly\(x, 2\): 1 missing")


def test_colliding_interaction_labels_refused() -> None:
    """g1:g2 labels "a:b" + "c" and "a" + "b:c" both read "a:b:c"."""
    d = pd.DataFrame({"y": np.arange(24.0) % 5, "a": ["a:b", "a"] * 12, "b": ["c", "b:c"] * 12,
                      "g": list("xyz") * 8})
    _refused(lambda: mixedref.lmer("y ~ (1 | a:b) + (1 | g)", d), d, DataError,
             r"column 'a:b' has distinct values whose labels collide: \('a', 'b:c'\) and "
             r"\('a:b', 'c'\) both read as level 'a:b:c' \(R would merge them")
