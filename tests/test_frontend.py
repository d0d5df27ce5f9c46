"""lmer's and build_model's arguments and formula functions against lme4::lFormula and lmer:
contrasts=, subset=, na_action=, weights=, offset= (and offset() in the formula), poly(),
scale(), ns(), bs(), log/exp/sqrt, factor(), backticked and Unicode names, and lme4's warnings
(badly scaled predictors, R's "NaNs produced").

References: tests/references/frontend/{data,cases}.json, written by
r_scripts/frontend_references.R (lme4 1.1-31, R 4.2.2). Tolerances: X, y, offset and Zt to
1e-10 relative (R's and numpy's QR/B-spline arithmetic differ in the last bits); fits as
tests/test_lmer.py: objective within 1e-6 relative (never worse than lme4's by more), theta
1e-3 absolute, fixed effects 1e-4 relative.
"""

from __future__ import annotations

import json
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedref
from harness.core.datasets import load_dataset
from mixedref.errors import (
    DataError,
    DuplicateTermWarning,
    MixedrefError,
    MixedrefWarning,
    NaNsProducedWarning,
    ScaleWarning,
)
from mixedref.frontend.design import build_model
from mixedref.frontend.fixed import bs_basis, contrast_matrix, ns_basis, poly_basis, scale_values
from mixedref.models.fit import make_names, varcorr_groups

REF_DIR = Path(__file__).parent / "references" / "frontend"
SCALE_MSG = "Some predictor variables are on very different scales: consider rescaling"


def _column(spec: dict) -> object:
    vals = spec["values"]
    kind = spec["type"]
    if kind == "factor":
        return pd.Categorical(vals, categories=spec["levels"], ordered=spec["ordered"])
    if kind == "character":
        return np.array(vals, dtype=object)
    if kind == "integer":
        return np.array(vals, dtype=np.int64)
    return np.array([np.nan if v is None else v for v in vals], dtype=np.float64)


@cache
def _ref() -> dict:
    return json.loads((REF_DIR / "cases.json").read_text(encoding="utf-8"))


def data() -> pd.DataFrame:
    raw = json.loads((REF_DIR / "data.json").read_text(encoding="utf-8"))
    return pd.DataFrame({c: _column(raw["columns"][c]) for c in raw["names"]})


def _case(case_id: str) -> dict:
    return next(c for c in _ref()["cases"] if c["id"] == case_id)


def _kwargs(case: dict) -> dict:
    """lmer's/build_model's arguments for a case, as a Python user writes them."""
    kw: dict = {}
    if case.get("subset"):
        kw["subset"] = case["subset"]  # the same expression reads in R and in DataFrame.eval
    if case.get("weights"):
        kw["weights"] = case["weights"]
    if case.get("offset"):
        kw["offset"] = case["offset"]
    if case.get("na_action"):
        kw["na_action"] = case["na_action"]
    if case.get("contrasts"):
        cm = np.asarray(_ref()["contrast_matrix"], dtype=float)
        special = {"cm": cm, "cmn": pd.DataFrame(cm, columns=["A", "B"])}
        kw["contrasts"] = {k: special.get(v, v) for k, v in case["contrasts"].items()}
    return kw


def _zt(term: dict) -> np.ndarray:
    zt = np.zeros(term["zt_dim"])
    zt[np.asarray(term["zt_i"], int), np.asarray(term["zt_j"], int)] = term["zt_x"]
    return zt


def _build(case: dict) -> tuple[object, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mf = build_model(case["formula"], data(), **_kwargs(case))
    return mf, [w for w in caught if issubclass(w.category, MixedrefWarning)]


CASES = [c for c in _ref()["cases"] if c.get("error") is None]
ERRORS = [c for c in _ref()["cases"] if c.get("error") is not None]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_matches_lformula(case: dict) -> None:
    frame = data()
    before = frame.copy(deep=True)
    mf, caught = _build(case)
    pd.testing.assert_frame_equal(frame, before)
    assert mf.n == case["n"]
    assert list(mf.fixef_names) == case["X_colnames"]
    np.testing.assert_allclose(mf.X, np.asarray(case["X"], dtype=float).reshape(mf.n, -1),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mf.y, case["y"], rtol=1e-13)
    if case.get("offset") is None and "offset(" not in case["formula"]:
        assert mf.offset is None
    else:
        np.testing.assert_allclose(mf.offset, case["offset_used"], rtol=1e-13)
    if case.get("weights_used") is not None:
        np.testing.assert_allclose(mf.weights, case["weights_used"])
    # the rows kept, and the rows na.action removed (R's 1-based row numbers)
    np.testing.assert_array_equal(mf.row_positions, np.asarray(case["rows"], int) - 1)
    np.testing.assert_array_equal(mf.na_positions, np.asarray(case["na_rows"], int) - 1)
    assert mf.n_dropped_na == len(case["na_rows"])
    assert mf.na_action == (case.get("na_action") or "na.omit")
    assert mf.ntheta == case["theta_len"]
    assert [t.group for t in mf.reterms] == [t["group"] for t in case["terms"]]
    for term, ref in zip(mf.reterms, case["terms"], strict=True):
        assert list(term.columns) == ref["cnms"]
        assert list(term.levels) == ref["levels"]
        np.testing.assert_allclose(term.Z.T.toarray(), _zt(ref), rtol=1e-10, atol=1e-12)
    # warnings: lme4's (and R's) become Python warnings; no others
    kinds = {w.category for w in caught}
    assert (ScaleWarning in kinds) == (SCALE_MSG in case["warnings"])
    assert (NaNsProducedWarning in kinds) == ("NaNs produced" in case["warnings"])
    if case["id"] == "dup_term":
        assert kinds == {DuplicateTermWarning}  # mixedref's own: lme4 1.1-31 is silent
        assert case["warnings"] == []
    elif not case["warnings"]:
        assert not caught, [str(w.message) for w in caught]
    if SCALE_MSG in case["warnings"]:
        assert mf.scale_warning and SCALE_MSG in mf.messages
        assert any(str(w.message) == SCALE_MSG for w in caught)


@pytest.mark.parametrize("case", ERRORS, ids=lambda c: c["id"])
def test_errors_as_lformula(case: dict) -> None:
    frame = data()
    before = frame.copy(deep=True)
    with pytest.raises(MixedrefError) as info:
        build_model(case["formula"], frame, **_kwargs(case))
    pd.testing.assert_frame_equal(frame, before)
    assert case["error"] in str(info.value)  # lme4's text, within mixedref's message
    if case["id"] == "na_fail":
        assert "yna (3)" in str(info.value)  # names the column and its count


FITS = [c for c in CASES if c.get("fit")]


@pytest.mark.parametrize("case", FITS, ids=lambda c: c["id"])
def test_fits_as_lmer(case: dict) -> None:
    ref = case["fit"]
    with warnings.catch_warnings():  # the build's warnings are checked above; the fit's
        warnings.simplefilter("ignore")  # convergence warnings (dup_term: as lme4's) elsewhere
        fit = mixedref.lmer(case["formula"], data(), REML=True, **_kwargs(case))
    obj = ref["objective"]
    assert fit.objective <= obj + 1e-6 * abs(obj)
    assert fit.objective == pytest.approx(obj, rel=1e-6)
    if case["id"] != "dup_term":  # two copies of one term: only their sum is identified
        np.testing.assert_allclose(fit.theta, np.atleast_1d(ref["theta"]), atol=1e-3)
    assert list(fit.fixef.index) == list(ref["fixef"])
    np.testing.assert_allclose(fit.fixef.to_numpy(), list(ref["fixef"].values()), rtol=1e-4,
                               atol=1e-6)
    assert fit.nobs == ref["nobs"]
    assert fit.ngroups == ref["ngrps"] or list(fit.ngroups.values()) == list(
        ref["ngrps"].values())
    padded = fit.model.padded_positions
    assert len(padded) == ref["fitted_len"]
    if case.get("na_action") == "na.exclude":
        # fitted(m) has NA at the excluded rows: the positions fit.py pads
        np.testing.assert_array_equal(fit.model.na_positions,
                                      np.asarray(ref["fitted_na"], int) - 1)
    # fitted(m) and residuals(m): lme4's lengths, NA exactly at lme4's positions
    for values, length in ((fit.fitted, ref["fitted_len"]), (fit.residuals, ref["resid_len"])):
        assert len(values) == length
        np.testing.assert_array_equal(np.flatnonzero(np.isnan(values)),
                                      np.asarray(ref["fitted_na"], int) - 1)


def test_unicode_and_backticked_names() -> None:
    """énergie is written bare; `my x` keeps R's backquotes in column names but not in the group
    name (R deparses a bare symbol without them): lme4's fixef names and ngrps."""
    case = _case("unicode")
    fit = mixedref.lmer(case["formula"], data())
    assert list(fit.fixef.index) == ["(Intercept)", "énergie"]
    assert list(fit.ngroups) == ["équipe"] == list(case["fit"]["ngrps"])
    mf, _ = _build(_case("backtick_slope"))
    assert mf.reterms[0].group == "my g" and mf.reterms[0].columns == ("(Intercept)", "`my x`")


# ----------------------------------------------------------------------------- the bases alone


def test_poly_is_orthonormal_and_raw_is_powers() -> None:
    x = np.array([0.5, 1.0, 2.0, 3.5, 4.0, 7.0])
    z = poly_basis(x, 3).values
    np.testing.assert_allclose(z.T @ z, np.eye(3), atol=1e-13)  # orthonormal
    np.testing.assert_allclose(z.sum(axis=0), 0, atol=1e-13)  # orthogonal to the constant
    raw = poly_basis(x, 2, raw=True)
    np.testing.assert_array_equal(raw.values, np.column_stack([x, x**2]))
    assert raw.colnames == ("1", "2")
    with pytest.raises(DataError, match="'degree' must be less than number of unique points"):
        poly_basis(np.array([1.0, 2.0, 1.0, 2.0]), 2)


def test_scale_matches_definition() -> None:
    x = np.array([1.0, 2.0, np.nan, 4.0])
    ok = x[~np.isnan(x)]
    np.testing.assert_allclose(scale_values(x)[~np.isnan(x)], (ok - ok.mean()) / ok.std(ddof=1))


def test_splines_are_partitions_and_natural() -> None:
    """B-splines with an intercept sum to 1 at every x (a partition of unity); natural splines
    have second derivative 0 at the boundary knots (second differences there are small next to
    the largest inside)."""
    x = np.linspace(-2, 3, 201)
    b = bs_basis(x, df=6, intercept=True).values
    np.testing.assert_allclose(b.sum(axis=1), 1.0, atol=1e-12)
    n = ns_basis(x, df=4).values
    d2 = np.diff(n, 2, axis=0)
    inside = np.abs(d2).max(axis=0)
    assert np.all(np.abs(d2[0]) < 0.05 * inside) and np.all(np.abs(d2[-1]) < 0.05 * inside)


def test_contrast_matrices_as_r() -> None:
    """R: contr.sum(3), contr.helmert(3), contr.SAS(3) (printed by R 4.2.2)."""
    lv = ["a", "b", "c"]
    np.testing.assert_array_equal(contrast_matrix("contr.sum", lv, "f")[0],
                                  [[1, 0], [0, 1], [-1, -1]])
    np.testing.assert_array_equal(contrast_matrix("contr.helmert", lv, "f")[0],
                                  [[-1, -1], [1, -1], [0, 2]])
    m, names = contrast_matrix("contr.SAS", lv, "f")
    np.testing.assert_array_equal(m, [[1, 0], [0, 1], [0, 0]])
    assert names == ["a", "b"]


# ----------------------------------------------------------------------------- argument errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"contrasts": {"f": "contr.bogus"}}, "unknown contrasts 'contr.bogus' for 'f'"),
        ({"contrasts": {"x": "contr.sum"}}, "contrasts apply only to factors: 'x'"),
        ({"contrasts": {"f": np.ones((3, 2))}}, "wrong number of contrast matrix rows for 'f'"),
        ({"contrasts": ["f"]}, "contrasts must be a mapping"),
        ({"na_action": "na.pass"}, "na_action must be one of na.omit, na.exclude, na.fail"),
        ({"subset": "nope > 1"}, "cannot evaluate subset 'nope > 1'"),
        ({"subset": "x + 1"}, "subset 'x \\+ 1' must be boolean"),
        ({"subset": np.zeros(48, dtype=bool)}, "subset selects no rows"),
        ({"subset": np.ones(5, dtype=bool)}, "subset must have one value per row"),
    ],
)
def test_argument_errors(kwargs: dict, match: str) -> None:
    frame = data()
    with pytest.raises(MixedrefError, match=match):
        build_model("y ~ f + x + (1 | g)", frame, **kwargs)


def test_absent_contrast_warns_as_r() -> None:
    with pytest.warns(UserWarning, match="variable 'o' is absent, its contrast will be ignored"):
        build_model("y ~ f + (1 | g)", data(), contrasts={"o": "contr.sum"})


def test_subset_as_boolean_series_aligned_by_index() -> None:
    frame = data()
    ref = _case("subset_str")
    mask = (frame["x"] > -1).sample(frac=1.0, random_state=3)  # same labels, shuffled
    mf = build_model(ref["formula"], frame, subset=mask)
    np.testing.assert_array_equal(mf.row_positions, np.asarray(ref["rows"]) - 1)
    with pytest.raises(DataError, match="subset is a pandas Series whose index does not match"):
        build_model(ref["formula"], frame, subset=mask.set_axis(range(100, 148)))


@pytest.mark.parametrize(
    ("formula", "match"),
    [
        ("y ~ poly(x, 2, coefs = NULL, bogus = 1) + (1 | g)", "poly\\(\\) has no argument 'bogus'"),
        ("y ~ poly(x, 0) + (1 | g)", "degree of .* must be an integer >= 1"),
        ("y ~ poly(x, xp) + (1 | g)", "must be a constant"),
        ("y ~ ns(x, knots = 1) + (1 | g)", "argument 'knots' of 'ns\\(x, knots = 1\\)' is not "
                                           "supported"),
        ("y ~ poly(f, 2) + (1 | g)", "arithmetic on the factor"),
        ("y ~ scale(x, center = 2) + (1 | g)", "must be TRUE or FALSE"),
        ("y ~ x + offset(xp):f + (1 | g)", "offset 'offset\\(xp\\)' cannot be part of an "
                                           "interaction"),
    ],
)
def test_formula_function_errors(formula: str, match: str) -> None:
    with pytest.raises(MixedrefError, match=match):
        build_model(formula, data())


def test_repeated_group_names_follow_make_names() -> None:
    """lme4's VarCorr applies make.names(unique = TRUE) to all group names once any repeats
    (Rscript: make.names(c("batch:cask", "batch:cask", "batch"), unique = TRUE) and lme4 1.1-31's
    as.data.frame(VarCorr(m)) for (1 + x || batch:cask) + (1 | batch) give batch.cask,
    batch.cask.1, batch); distinct names are kept as written, and ranef's names never change."""
    assert make_names(["batch:cask", "batch:cask", "my grp", "1a", "if", "_x", ".5", "a.1",
                       "a", "a"]) == ["batch.cask", "batch.cask.1", "my.grp", "X1a", "if.",
                                      "X_x", "X.5", "a.1", "a", "a.2"]
    assert varcorr_groups(["batch:cask", "batch"]) == ["batch:cask", "batch"]
    pastes = load_dataset("Pastes").assign(
        x=np.random.default_rng(1).normal(size=60))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mixedref.lmer("strength ~ 1 + (1 + x || batch:cask) + (1 | batch)", pastes)
    assert list(fit.varcorr["grp"]) == ["batch.cask", "batch.cask.1", "batch", "Residual"]
    assert list(fit.ranef) == ["batch:cask", "batch"]
