"""mixedref.anova against lme4's anova(m0, m1) tables (tests/references/inference.json, written
by r_scripts/inference_references.R), and its ordering, refitting and error rules."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.core.datasets import load_dataset
from mixedref import MixedrefError, glmer, lmer
from mixedref.inference.anova import COLUMNS, REFIT_MESSAGE, anova

REFS = json.loads((Path(__file__).parent / "references" / "inference.json").read_text())

#: Both implementations optimize the same ML deviance to ~1e-8; logLik, AIC, BIC agree to far
#: better than 1e-7 relative, χ² (a difference of two such numbers) to 1e-6 absolute.
RTOL, CHISQ_ATOL = 1e-7, 1e-6

_FITS: dict[tuple[str, str, bool], object] = {}


def fit(dataset: str, formula: str, REML: bool):
    """One fit per (dataset, formula, REML), cached for the module."""
    key = (dataset, formula, REML)
    if key not in _FITS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[key] = lmer(formula, load_dataset(dataset), REML=REML)
    return _FITS[key]


def lme4_table(case: str) -> pd.DataFrame:
    t = REFS["anova"][case]["table"]
    return pd.DataFrame(t["columns"], index=t["rownames"]).astype(float)


@pytest.mark.parametrize("case", sorted(REFS["anova"]))
def test_table_matches_lme4(case: str) -> None:
    ref = REFS["anova"][case]
    m0, m1 = (fit(ref["dataset"], f, ref["REML"]) for f in ref["formulas"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = anova(m1, m0, names=["m1", "m0"])  # given out of order: sorted by npar
    want = lme4_table(case)
    assert list(got.columns) == COLUMNS == list(want.columns)
    assert list(got.index) == list(want.index)
    for col in ["npar", "AIC", "BIC", "logLik", "deviance", "Df"]:
        np.testing.assert_allclose(got[col].astype(float), want[col], rtol=RTOL, err_msg=col)
    np.testing.assert_allclose(got["Chisq"], want["Chisq"], atol=CHISQ_ATOL)
    np.testing.assert_allclose(got["Pr(>Chisq)"], want["Pr(>Chisq)"], rtol=1e-5)
    assert got.iloc[0][["Chisq", "Df", "Pr(>Chisq)"]].isna().all()
    msgs = ref["messages"]  # jsonlite writes a one-element vector as a plain string
    assert got.attrs["messages"] == ([msgs] if isinstance(msgs, str) else msgs)
    assert got.attrs["refitted"] == ref["REML"]
    assert any(str(w.message) == REFIT_MESSAGE for w in caught) == ref["REML"]


def test_default_names_and_ml_fits_unchanged() -> None:
    ref = REFS["anova"]["cake-ML"]
    m0, m1 = (fit(ref["dataset"], f, False) for f in ref["formulas"])
    got = anova(m0, m1)
    assert list(got.index) == ["m0", "m1"]
    assert got.loc["m1", "deviance"] == pytest.approx(m1.objective, rel=1e-12)


def test_same_model_twice_has_no_test() -> None:
    """Df 0: lme4 gives Pr(>Chisq) NA (χ² is 0)."""
    m = fit("Dyestuff", "Yield ~ 1 + (1 | Batch)", False)
    got = anova(m, m)
    assert got.iloc[1]["Chisq"] == 0 and got.iloc[1]["Df"] == 0
    assert math.isnan(got.iloc[1]["Pr(>Chisq)"])


def test_needs_two_fits() -> None:
    with pytest.raises(MixedrefError, match="at least two"):
        anova(fit("Dyestuff", "Yield ~ 1 + (1 | Batch)", False))


def test_names_must_match_fits() -> None:
    m = fit("Dyestuff", "Yield ~ 1 + (1 | Batch)", False)
    with pytest.raises(MixedrefError, match="names"):
        anova(m, m, names=["a"])


def test_different_sizes_refused() -> None:
    d = load_dataset("sleepstudy")
    full = fit("sleepstudy", "Reaction ~ Days + (1 | Subject)", False)
    part = lmer("Reaction ~ Days + (1 | Subject)", d[d["Days"] > 0], REML=False)
    with pytest.raises(MixedrefError, match="same size"):
        anova(full, part)


def test_different_response_refused() -> None:
    d = load_dataset("sleepstudy").assign(logR=lambda x: np.log(x["Reaction"]))
    a = fit("sleepstudy", "Reaction ~ Days + (1 | Subject)", False)
    b = lmer("logR ~ Days + (1 | Subject)", d, REML=False)
    with pytest.raises(MixedrefError, match="same data and response"):
        anova(a, b)


def test_lmer_and_glmer_not_mixed() -> None:
    d = load_dataset("cbpp")
    g = glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, "binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmer("incidence ~ period + (1 | herd)", d, REML=False)
    with pytest.raises(MixedrefError, match="glmer"):
        anova(m, g)
    with pytest.raises(MixedrefError, match="LmerFit or GlmerFit"):
        anova(m, "not a fit")
