"""The objective protocol and the fit log: the optimizer consumes any objective that follows
mixedref.engines.objective (the PLS engine and the dense oracle), a θ that cannot be factored gets
the
start's criterion, and every fit keeps lme4's optinfo (start, settings, evaluations, return code
and its meaning, checkConv's gradient and Hessian checks) with lme4's warnings as Python
warnings of their own categories. Expected values are lme4's (harness/references/lme4.json)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import mixedref
from harness.adapters import Lme4Recorded
from harness.core.catalog import load_catalog, load_data
from harness.core.tolerance import DEFAULT as TOL
from mixedref.engines import PLSObjective
from mixedref.errors import SingularFitWarning
from mixedref.fitting.optimize import lme4_start, optimize_theta
from mixedref.frontend.design import build_model
from mixedref.literal import LiteralObjective

CASES = {c.id: c for c in load_catalog()}


def _lme4(case_id: str) -> dict:
    return Lme4Recorded().fit(CASES[case_id], None)


@pytest.mark.parametrize("case_id", ["Dyestuff-intercept-REML", "sleepstudy-slopes-ML"])
def test_the_optimizer_reaches_lme4s_optimum_through_the_dense_oracle_too(case_id: str) -> None:
    case = CASES[case_id]
    model = build_model(case.formula, load_data(case))
    ref = _lme4(case_id)["objective"]
    for objective in (LiteralObjective(model, case.REML), PLSObjective(model, case.REML)):
        res = optimize_theta(objective, model)
        assert res.fval == pytest.approx(ref, abs=TOL.objective_allowed(ref)), objective


class _Holes:
    """The PLS objective with a hole: +inf (a failed factorization) where θ[0] > 1.5."""

    def __init__(self, inner: PLSObjective) -> None:
        self.inner = inner
        self.REML, self.ntheta, self.has_gradient = inner.REML, inner.ntheta, False
        self.lower, self.size = inner.lower, inner.size

    def __call__(self, theta: np.ndarray) -> float:
        return math.inf if theta[0] > 1.5 else self.inner(theta)

    def value_and_grad(self, theta: np.ndarray) -> tuple[float, None]:
        return self(theta), None


def test_a_theta_that_cannot_be_factored_gets_the_starts_criterion_not_inf() -> None:
    case = CASES["sleepstudy-slopes-REML"]
    model = build_model(case.formula, load_data(case))
    holes = _Holes(PLSObjective(model, True))
    res = optimize_theta(holes, model)
    assert res.log.nonfinite > 0
    assert math.isfinite(res.fval) and res.theta[0] <= 1.5
    # lme4's optimum has θ[0] = 0.967 < 1.5: the hole does not hide it
    ref = _lme4("sleepstudy-slopes-REML")["objective"]
    assert res.fval == pytest.approx(ref, abs=TOL.objective_allowed(ref))


def test_the_fit_log_says_where_it_started_and_how_it_ended() -> None:
    case = CASES["sleepstudy-slopes-REML"]
    data = load_data(case)
    fit = mixedref.lmer(case.formula, data, REML=True)
    log = fit.optinfo
    model = build_model(case.formula, data)
    assert log.start == lme4_start(model).tolist() == [1.0, 0.0, 1.0]  # lme4's start
    assert log.finitial == pytest.approx(float(PLSObjective(model, True)(np.array(log.start))))
    assert log.optimizer == "bobyqa" and log.settings["ftol_abs"] == 1e-8  # lme4's nloptwrap
    assert log.return_name in ("NLOPT_FTOL_REACHED", "NLOPT_XTOL_REACHED")
    assert "converged" in log.return_meaning
    assert log.fmin == fit.objective and log.nfev == fit.nfev
    assert log.checks == [] and _lme4("sleepstudy-slopes-REML")["messages"] == []
    assert max(abs(g) for g in log.gradient) < 2e-3 and min(log.hessian_eigenvalues) > 0
    assert fit.converged


def test_an_lbfgsb_run_reports_scipys_own_status_not_an_nlopt_code() -> None:
    case = CASES["InstEval-service-ML"]
    fit = mixedref.lmer(case.formula, load_data(case), REML=False)
    assert fit.optinfo.optimizer.startswith("lbfgsb")
    assert fit.optinfo.return_name.startswith("scipy L-BFGS-B: ")
    assert not fit.optinfo.return_name.startswith("NLOPT")


@pytest.mark.parametrize("case_id", ["Dyestuff2-intercept-REML", "sim_singular-intercept-ML"])
def test_a_singular_fit_warns_with_lme4s_text(case_id: str) -> None:
    case = CASES[case_id]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mixedref.lmer(case.formula, load_data(case), REML=case.REML)
    singular = [str(w.message) for w in caught if w.category is SingularFitWarning]
    assert singular == _lme4(case_id)["messages"]


def test_a_glmer_fit_keeps_the_same_log_as_lmer() -> None:
    """GlmerFit.optinfo is lmer's OptSummary (lme4's m@optinfo for a glmerMod): stage 2's start
    in θ and β, its criterion there as glmer's own devfun gives it, the end at the fit's
    estimate, every evaluation of both stages counted, lme4's checks (lme4's cbpp fit converges
    without messages: tests/references/glmer/cbpp_logit.json), settings from the one Control."""
    from dataclasses import asdict

    from harness.core.datasets import load_dataset
    from mixedref.fitting.control import Control
    from mixedref.models.glmer import glmer_devfun

    data = load_dataset("cbpp")
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    fit = mixedref.glmer(formula, data, "binomial")
    log = fit.optinfo
    assert type(log).__name__ == "OptSummary" and log.optimizer == "bobyqa"
    assert log.settings == asdict(Control())
    start = np.array(log.start + log.fixef_start)
    assert log.finitial == pytest.approx(glmer_devfun(formula, data, "binomial")(start),
                                         rel=1e-12)
    assert log.theta == fit.theta.tolist() and log.fixef == fit.fixef.tolist()
    assert log.fmin == pytest.approx(fit.objective, rel=1e-12) and log.nfev == fit.nfev
    assert log.return_name in ("NLOPT_FTOL_REACHED", "NLOPT_XTOL_REACHED")
    assert log.checks == [] and min(log.hessian_eigenvalues) > 0
    assert max(abs(g) for g in log.gradient) < 2e-3
    assert log.strategies[0].startswith("stage 1 (theta alone")
    assert log.to_dict()["fixef"] == fit.fixef.tolist()
    fast = mixedref.glmer(formula, data, "binomial", nAGQ=0)
    assert fast.optinfo.theta == fast.theta.tolist() and fast.optinfo.fixef is None
    assert fast.optinfo.fmin == pytest.approx(fast.objective, rel=1e-12)


def test_lmer_and_glmer_take_one_control() -> None:
    """One Control: the same class (or mapping of its names) configures both fitters, and a
    name neither knows is an error naming the known ones."""
    from harness.core.datasets import load_dataset
    from mixedref.errors import MixedrefError
    from mixedref.fitting.control import Control

    ctrl = Control(tol_pwrss=1e-7, maxeval=1000)
    sleep = load_dataset("sleepstudy")
    assert mixedref.lmer("Reaction ~ Days + (Days | Subject)", sleep, control=ctrl).converged
    cbpp = load_dataset("cbpp")
    fit = mixedref.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                         "binomial", control=ctrl)
    assert fit.optinfo.settings["tol_pwrss"] == 1e-7 and fit.converged
    with pytest.raises(MixedrefError, match="unknown control settings.*tol_pwrss"):
        mixedref.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                       "binomial", control={"stage_one_step": 0.1})
