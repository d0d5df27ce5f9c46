"""mixedref.lmer against lme4 1.1-31's answers (tests/references/engine/, written by
r_scripts/engine_references.R). Each case is fitted twice: from lme4's own design matrices (tests
the engine alone) and from the formula and data through build_model (tests the whole pipeline).

Tolerances (this file's, not the harness policy): objective no worse than lme4's by 1e-6
relative; theta 1e-3 absolute; fixef within 1e-3 of its standard error; se, sigma, variances
1e-3 relative (covariances 1e-3 of sd_i sd_j, correlations 1e-3 absolute); logLik/AIC/BIC 1e-6
relative; ranef and condVar 1e-3 relative.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedref
from mixedref.engines import PLSObjective
from mixedref.errors import MixedrefError
from mixedref.fitting.modular import fit_model
from mixedref.frontend.design import ModelFrame, ReTerm

REF_DIR = Path(__file__).parent / "references" / "engine"
CASES = sorted(p.stem for p in REF_DIR.glob("*.json"))


def _load(case: str) -> dict:
    return json.loads((REF_DIR / f"{case}.json").read_text())


def _as_tuple(x) -> tuple[str, ...]:
    return tuple(x) if isinstance(x, list) else (x,)


def _model_from_r(ref: dict) -> ModelFrame:
    """The ModelFrame exactly as lme4's lFormula built it (R wrote the matrices)."""
    d = ref["design"]
    n = len(d["y"])
    X = np.array(d["X"], dtype=float).reshape(n, -1)
    terms = tuple(
        ReTerm(t["group"], _as_tuple(t["columns"]),
               np.array(t["X"], dtype=float).reshape(n, -1),
               np.array(t["codes"], dtype=np.int64), _as_tuple(t["levels"]))
        for t in d["terms"]
    )
    w = None if d.get("weights") is None else np.array(d["weights"], dtype=float)
    off = None if d.get("offset") is None else np.array(d["offset"], dtype=float)
    return ModelFrame(ref["formula"], np.array(d["y"], dtype=float), X,
                      _as_tuple(d["fixef_names"]), terms, "y", weights=w, offset=off)


def _data(ref: dict) -> pd.DataFrame:
    df = pd.DataFrame(ref["data"])
    if ref["case"].startswith("cake"):  # R's cake$temperature is an ordered factor
        levels = sorted(df["temperature"].unique(), key=float)
        df["temperature"] = pd.Categorical(df["temperature"], categories=levels, ordered=True)
    return df


def _fit(ref: dict, how: str) -> mixedref.LmerFit:
    if how == "design":
        return fit_model(_model_from_r(ref), ref["REML"])
    return mixedref.lmer(ref["formula"], _data(ref), ref["REML"],
                         weights=ref.get("weights_column"), offset=ref.get("offset_column"))


@pytest.fixture(scope="module", params=["design", "formula"])
def how(request) -> str:
    return request.param


@pytest.mark.parametrize("case", CASES)
def test_objective_at_lme4_theta(case: str) -> None:
    """The criterion at lme4's theta is lme4's criterion (same function, not just same optimum)."""
    ref = _load(case)
    obj = PLSObjective(_model_from_r(ref), ref["REML"])
    assert obj(np.atleast_1d(ref["theta"])) == pytest.approx(ref["objective"], rel=1e-9)


@pytest.mark.parametrize("case", CASES)
def test_fit_matches_lme4(case: str, how: str) -> None:
    ref = _load(case)
    fit = _fit(ref, how)
    obj_ref = ref["objective"]
    assert fit.objective <= obj_ref + 1e-6 * abs(obj_ref)
    assert fit.objective == pytest.approx(obj_ref, rel=1e-6)
    np.testing.assert_allclose(fit.theta, np.atleast_1d(ref["theta"]), atol=1e-3)
    se_ref = pd.Series(ref["se"])
    fe_ref = pd.Series(ref["fixef"])
    assert list(fit.fixef.index) == list(fe_ref.index)
    assert np.all(np.abs(fit.fixef - fe_ref) <= 1e-3 * se_ref)
    np.testing.assert_allclose(fit.se, se_ref, rtol=1e-3)
    vcov_ref = np.array(ref["vcov"], dtype=float).reshape(len(fe_ref), -1)
    np.testing.assert_allclose(fit.vcov.to_numpy(), vcov_ref, rtol=1e-3,
                               atol=1e-6 * np.abs(vcov_ref).max())
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-3)
    for name in ("loglik", "aic", "bic"):
        assert getattr(fit, name) == pytest.approx(ref[name], rel=1e-6), name
    assert fit.df == ref["df"]
    assert fit.nobs == ref["nobs"]
    assert fit.ngroups == ref["ngroups"]
    assert fit.singular == ref["singular"]
    assert fit.converged
    vc = fit.varcorr
    assert len(vc) == len(ref["varcorr"])
    sigma2 = ref["sigma"] ** 2
    sds: dict[tuple[str, str], float] = {}
    for row, r in zip(vc.itertuples(index=False), ref["varcorr"], strict=True):
        assert row.grp == r["grp"]
        assert (None if pd.isna(row.var1) else row.var1) == r.get("var1")
        assert (None if pd.isna(row.var2) else row.var2) == r.get("var2")
        if r.get("var2") is None:
            sds[(r["grp"], r["var1"])] = r["sdcor"]
            assert row.vcov == pytest.approx(r["vcov"], rel=1e-3, abs=1e-6 * sigma2)
            assert row.sdcor == pytest.approx(r["sdcor"], rel=1e-3, abs=1e-3 * ref["sigma"])
        else:  # a covariance: in units of the two standard deviations, i.e. as a correlation
            sd12 = sds[(r["grp"], r["var1"])] * sds[(r["grp"], r["var2"])]
            assert row.vcov == pytest.approx(r["vcov"], abs=1e-3 * sd12)
            if r["sdcor"] is not None and not pd.isna(row.sdcor):
                assert row.sdcor == pytest.approx(r["sdcor"], abs=1e-3)
    from harness.adapters.mixedref_impl import lmer_record

    rec = lmer_record(fit)
    assert rec["objective"] == fit.objective and rec["fixef"] == dict(fit.fixef)
    json.dumps(rec)


@pytest.mark.parametrize("case", [c for c in CASES if "ranef" in _load(c)])
def test_ranef_and_condvar(case: str) -> None:
    ref = _load(case)
    fit = fit_model(_model_from_r(ref), ref["REML"])
    for group, r in ref["ranef"].items():
        got = fit.ranef[group]
        cols = list(_as_tuple(r["columns"]))
        assert list(got.columns) == cols
        assert [str(v) for v in got.index] == list(_as_tuple(r["levels"]))
        want = np.array(r["values"], dtype=float).reshape(len(got), len(cols))
        scale = np.abs(want).max()
        np.testing.assert_allclose(got.to_numpy(), want, rtol=1e-3, atol=1e-4 * scale)
        cv_want = np.array(r["condvar"], dtype=float).reshape(len(got), len(cols), len(cols))
        np.testing.assert_allclose(fit.ranef_condvar[group], cv_want, rtol=1e-3)


def test_singular_fit_is_flagged() -> None:
    ref = _load("dyestuff2-REML")
    fit = fit_model(_model_from_r(ref), True)
    assert fit.singular and fit.theta[0] < 1e-4
    assert any("singular" in m for m in fit.messages)


def test_summary_blocks(capsys) -> None:
    ref = _load("sleepstudy-corr-ML")
    text = fit_model(_model_from_r(ref), False).summary()
    for block in ("maximum likelihood", "Scaled residuals:", "Random effects:", "Residual",
                  "Fixed effects:", "Std. Error", "t value", "Correlation of Fixed Effects:",
                  "Number of obs: 180, groups:  Subject, 18", "1751.9"):
        assert block in text


def test_control_and_devfun() -> None:
    ref = _load("sleepstudy-corr-REML")
    df = _data(ref)
    f = mixedref.devfun(ref["formula"], df, True)
    assert f(np.array(ref["theta"])) == pytest.approx(ref["objective"], rel=1e-9)
    fit = mixedref.lmer(ref["formula"], df, control={"start": [1.0, 0.0, 1.0], "maxeval": 5})
    assert fit.nfev <= 5 + 10 and not fit.converged
    assert any("convergence code 5" in m for m in fit.messages)
    with pytest.raises(MixedrefError, match="unknown control"):
        mixedref.lmer(ref["formula"], df, control={"tol": 1})
    with pytest.raises(MixedrefError, match="theta must have 3"):
        f(np.array([1.0, 2.0]))
