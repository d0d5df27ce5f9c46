"""LmerFit.fitted and LmerFit.residuals against lme4's fitted(m) and residuals(m), recorded by
r_scripts/fitted_references.R into tests/references/fitted.json (sleepstudy's correlated
random slopes under REML, Penicillin's crossed random intercepts under ML)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mixedref
from harness.core.datasets import load_dataset
from harness.core.tolerance import DEFAULT

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = json.loads((ROOT / "tests" / "references" / "fitted.json").read_text())["cases"]


@pytest.fixture(scope="module", params=sorted(REFERENCES))
def case(request):
    ref = REFERENCES[request.param]
    data = load_dataset(ref["dataset"])
    fit = mixedref.lmer(ref["formula"], data, REML=ref["REML"])
    return request.param, ref, data, fit


def test_fitted_equals_lme4s(case) -> None:
    """Every fitted value within sigma_rel * sigma of lme4's: fitted values are X beta + Z b, so
    they inherit the ~1e-3 relative spread of two correct optima (harness/core/tolerance.py), in
    units of the residual scale; a missing or misordered conditional mode is ~sigma off."""
    cid, ref, _, fit = case
    assert fit.objective == pytest.approx(ref["objective"],
                                          abs=DEFAULT.objective_allowed(ref["objective"]))
    fitted = np.asarray(fit.fitted, dtype=float)
    expected = np.asarray(ref["fitted"], dtype=float)
    assert fitted.shape == expected.shape
    np.testing.assert_allclose(fitted, expected, rtol=0, atol=DEFAULT.sigma_rel * ref["sigma"],
                               err_msg=cid)


def test_residuals_equal_lme4s(case) -> None:
    cid, ref, data, fit = case
    residuals = np.asarray(fit.residuals, dtype=float)
    expected = np.asarray(ref["residuals"], dtype=float)
    assert residuals.shape == expected.shape
    np.testing.assert_allclose(residuals, expected, rtol=0,
                               atol=DEFAULT.sigma_rel * ref["sigma"], err_msg=cid)
    # response residuals: y - fitted, row for row
    y = data[ref["formula"].split("~")[0].strip()].to_numpy(float)
    np.testing.assert_allclose(residuals + np.asarray(fit.fitted, dtype=float), y,
                               rtol=1e-12, atol=0)


def test_fitted_include_the_conditional_modes(case) -> None:
    """lme4's fitted values are conditional (X beta + Z b), not marginal (X beta): the recorded
    ones differ from X beta by far more than the tolerance, so the test above can tell."""
    _, ref, _, fit = case
    X = np.asarray(fit.model.X, dtype=float)
    marginal = X @ np.asarray(fit.fixef, dtype=float)
    gap = np.max(np.abs(np.asarray(ref["fitted"]) - marginal))
    assert gap > 100 * DEFAULT.sigma_rel * ref["sigma"]
