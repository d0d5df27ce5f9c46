"""mixedref at the limit of its input on the certified cases (NIST StRD one-way ANOVA sets):
log relative error >= 9 on every certified quantity (harness.core.tolerance.MIXEDREF_CERTIFIED_LRE),
and the Newton polish (mixedref.fitting.polish) that gets it there."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mixedref
from harness.adapters.certified import is_certified, quantities, truths
from harness.core.catalog import load_catalog
from harness.core.comparators.certified import candidate_quantities
from harness.core.datasets import load_dataset
from harness.core.tolerance import MIXEDREF_CERTIFIED_LRE, log_relative_error
from mixedref.fitting.polish import newton_polish

CASES = [c for c in load_catalog() if is_certified(c)]


def test_every_nist_set_is_a_certified_case_under_reml_and_ml():
    assert len(CASES) == 22
    assert {c.method for c in CASES} == {"REML", "ML"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_mixedref_reaches_the_limit_of_the_input(case):
    data = load_dataset(case.dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mixedref.lmer(case.formula, data, REML=case.REML)
    record = {"fixef": dict(fit.fixef), "sigma": fit.sigma, "objective": fit.objective,
              "varcorr": fit.varcorr.replace({np.nan: None}).to_dict("records")}
    got = candidate_quantities(record)
    limit, nist = truths(case, data)
    exact, certified = quantities(limit), quantities(nist)
    for q, c in exact.items():
        assert log_relative_error(got[q], c) >= MIXEDREF_CERTIFIED_LRE, (q, got[q], c)
        # against NIST: as close as the input allows (the triangle inequality)
        allowed = 10.0 ** -MIXEDREF_CERTIFIED_LRE * abs(c) + abs(c - certified[q])
        assert abs(got[q] - certified[q]) <= allowed + (1e-300 if c else 1e-9), q


def test_kenward_roger_df_of_a_balanced_one_way_intercept_is_k_minus_1():
    """Theory: the intercept of a balanced one-way layout is tested on k - 1 df (SiRstv: 5
    groups); KR's V2 is 0 there, which once raised ZeroDivisionError (pbkrtest: df 4)."""
    from mixedref.inference.ddf import coef_table

    fit = mixedref.lmer("Response ~ 1 + (1 | Treatment)", load_dataset("SiRstv"))
    assert coef_table(fit, ddf="Kenward-Roger")["df"].iloc[0] == pytest.approx(4.0, rel=1e-12)


class _Quadratic:
    """A criterion with a known minimum and an exact gradient, the shape polish expects."""

    n = 10
    has_gradient = True

    def __init__(self, center: float, curvature: float) -> None:
        self.c, self.h = center, curvature

    def __call__(self, x):
        return 100.0 + 0.5 * self.h * float((x[0] - self.c) ** 2)

    def value_and_grad(self, x):
        return self(x), np.array([self.h * (x[0] - self.c)])


def test_polish_lands_on_the_minimum_where_the_criterion_is_flat():
    """1e-4 from the minimum at curvature 1 the criterion is 5e-9 above it: below lme4's ftol,
    so BOBYQA stops there; the polish moves θ to the minimum."""
    fn = _Quadratic(0.8, 1.0)
    x0 = np.array([0.8 + 1e-4])
    x, fx, steps = newton_polish(fn, x0, fn(x0), np.zeros(1), fn, fn.value_and_grad)
    assert steps >= 1 and x[0] == pytest.approx(0.8, abs=1e-12)


@pytest.mark.parametrize("start", [0.0, 0.01])
def test_polish_takes_no_step_across_or_along_a_bound(start):
    """The minimum below the bound 0: an estimate on the bound, or one a Newton step would
    carry across it, stays where the optimizer left it (bounds are the optimizer's job)."""
    fn = _Quadratic(-0.5, 1.0)
    x0 = np.array([start])
    x, _, steps = newton_polish(fn, x0, fn(x0), np.zeros(1), fn, fn.value_and_grad)
    assert steps == 0 and x[0] == start
