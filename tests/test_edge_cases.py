"""Numerical edge cases where implementations part ways, on the catalog's edge datasets
(harness/catalog.yaml, tags: edge; data from harness.core.datasets): singular fits, correlation +-1,
a 1e-8 relative variance component, a 1e9 offset in the response, near-collinear fixed effects,
responses on the 1e6 and 1e-6 scales.

lme4 1.1-31's answers are read from harness/references/lme4.json (r_scripts/record_references.R).
mixedref must reach a criterion at least as low as lme4's: objective <= lme4's + 1e-6 relative
(the same bound as tests/test_lmer.py). Where lme4 reports a singular fit, mixedref must too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mixedref
from harness.core.catalog import load_catalog
from harness.core.datasets import load_dataset

LME4 = Path(__file__).parents[1] / "harness" / "references" / "lme4.json"
EDGE_DATASETS = ("Dyestuff2", "sim_singular", "sim_tiny_variance", "sim_corr_plus1",
                 "sim_corr_minus1", "sim_near_singular", "sim_corr3", "sim_huge_offset",
                 "sim_collinear", "sim_scale_large", "sim_scale_small")
CASES = [c for c in load_catalog() if c.dataset in EDGE_DATASETS]

KNOWN: dict[str, str] = {}  # dataset -> reason of a known, explained disagreement (strict xfail)


def _records() -> dict:
    return json.loads(LME4.read_text())["records"]


def _marks(case) -> list:
    reason = KNOWN.get(case.dataset)
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


@pytest.fixture(scope="module")
def lme4() -> dict:
    return _records()


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=_marks(c)) for c in CASES])
def test_reaches_lme4_objective(case, lme4: dict) -> None:
    ref = lme4[case.id]
    fit = mixedref.lmer(case.formula, load_dataset(case.dataset), REML=case.REML)
    obj = ref["objective"]
    assert fit.objective <= obj + 1e-6 * abs(obj), (fit.objective, obj)
    assert np.isfinite(fit.sigma) and fit.sigma > 0
    if ref["singular"]:
        assert fit.singular, fit.theta
        assert "boundary (singular) fit: see help('isSingular')" in fit.messages


def test_edge_cases_are_in_the_catalog() -> None:
    assert {c.dataset for c in CASES} == set(EDGE_DATASETS)
    assert len(CASES) == 2 * len(EDGE_DATASETS)


@pytest.mark.parametrize("REML", [True, False])
def test_scale_1e6_and_1e_minus6_share_theta(REML: bool) -> None:
    """sim_scale_large/small are the same design times 1e6 / 1e-6 from different seeds; theta is
    scale-free, so each fit's theta must match lme4's (1e-4 absolute) at both scales."""
    recs = _records()
    for name in ("sim_scale_large", "sim_scale_small"):
        case = next(c for c in CASES if c.dataset == name and c.REML == REML)
        fit = mixedref.lmer(case.formula, load_dataset(name), REML=REML)
        np.testing.assert_allclose(fit.theta, recs[case.id]["theta"], atol=1e-4)
        assert fit.sigma == pytest.approx(recs[case.id]["sigma"], rel=1e-4)


@pytest.mark.parametrize("REML", [True, False])
def test_huge_offset_equals_the_centred_response(REML: bool) -> None:
    """Subtracting the constant 1e9 from y changes only the intercept (by exactly 1e9): the
    centred fit is what the 1e9 fit must reproduce. The centred fit matches lme4's objective
    for the uncentred data (lme4 1.1-31 is accurate here)."""
    case = next(c for c in CASES if c.dataset == "sim_huge_offset" and c.REML == REML)
    data = load_dataset("sim_huge_offset")
    centred = mixedref.lmer(case.formula, data.assign(y=data["y"] - 1e9), REML=REML)
    ref = _records()[case.id]
    assert centred.objective == pytest.approx(ref["objective"], rel=1e-6)
    assert centred.fixef["(Intercept)"] + 1e9 == pytest.approx(ref["fixef"]["(Intercept)"],
                                                              rel=1e-12)


@pytest.mark.parametrize("REML", [True, False])
def test_huge_offset_objective_at_lme4_theta(REML: bool) -> None:
    """The criterion at lme4's theta is lme4's criterion (a property of the function, not of
    the optimizer)."""
    case = next(c for c in CASES if c.dataset == "sim_huge_offset" and c.REML == REML)
    ref = _records()[case.id]
    fn = mixedref.devfun(case.formula, load_dataset("sim_huge_offset"), REML)
    assert fn(np.asarray(ref["theta"])) == pytest.approx(ref["objective"], rel=1e-6)
