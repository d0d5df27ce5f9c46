"""Bad input to mixedref.lmer: each refused input raises a MixedrefError subclass whose message
names the problem; inputs lme4 accepts (missing values, single-row groups, numeric grouping
variables) are accepted the same way, with lme4's answers (tests/references/edge/, written by
r_scripts/edge_references.R); and no call, failed or not, modifies the caller's DataFrame.

Tolerances against lme4: objective within 1e-6 relative (and never worse than lme4's by more),
theta 1e-3 absolute, as tests/test_lmer.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedref
from mixedref.errors import DataError, FormulaError, MixedrefError

REF_DIR = Path(__file__).parent / "references" / "edge"


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
