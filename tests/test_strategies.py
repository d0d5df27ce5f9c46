"""The rescue strategies (mixedref.fitting.strategies): after lme4's default optimizer, where a
check
fails, mixedref continues and reaches the best optimum lme4's allFit optimizers know, or lower.

References come from lme4 (harness/references/best_known.json for the catalog's hard cases;
allFit run live through harness.core.rbridge for the simulated shapes here, skipped without R)
or
from theory (the criterion is invariant under rescaling a term's columns; scaled θ maps back
exactly); never from a run of mixedref.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedref
from harness.commands.best_known import best_known
from harness.core.catalog import load_catalog, load_data
from harness.core.tolerance import DEFAULT as TOL
from mixedref.engines import PLSObjective
from mixedref.errors import ScaleWarning
from mixedref.fitting.strategies import (
    Problem,
    badly_scaled,
    boundary_search,
    gradient_polish,
    theta_scales,
)
from mixedref.frontend.design import build_model

CASES = {c.id: c for c in load_catalog()}
CORR3 = "y ~ x1 + x2 + (1 + x1 + x2 | g)"


def _badscale(seed: int = 1, factor: tuple[float, float] = (1e-4, 1e4)) -> pd.DataFrame:
    """(1 + x1 + x2 | g) with x1 on the scale 1e-4 and x2 on 1e4 (40 groups of 20)."""
    rng = np.random.default_rng(seed)
    m, n = 40, 20
    g = np.repeat(np.arange(m), n)
    x1 = factor[0] * rng.standard_normal(m * n)
    x2 = factor[1] * rng.standard_normal(m * n)
    corr = np.array([[1, .5, -.4], [.5, 1, .3], [-.4, .3, 1]])
    sds = np.array([1.0, 0.5 / factor[0], 0.5 / factor[1]])
    u = rng.standard_normal((m, 3)) @ np.linalg.cholesky(np.outer(sds, sds) * corr).T
    y = (1 + 2 / factor[0] * x1 - 1 / factor[1] * x2 + u[g, 0] + u[g, 1] * x1 + u[g, 2] * x2
         + rng.standard_normal(m * n))
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": pd.Categorical([f"g{v:02d}" for v in g])})


def _corr_boundary(seed: int = 2) -> pd.DataFrame:
    """(1 + x1 + x2 | g) whose intercept and x1 effects are perfectly correlated (20 x 8): lme4's
    default stops 0.196 above the optimum its other optimizers reach (REML)."""
    rng = np.random.default_rng(seed)
    m, n = 20, 8
    g = np.repeat(np.arange(m), n)
    x1, x2 = rng.standard_normal(m * n), rng.standard_normal(m * n)
    u = np.zeros((m, 3))
    z = rng.standard_normal(m)
    u[:, 0], u[:, 1] = z, 0.7 * z
    u[:, 2] = 0.5 * rng.standard_normal(m)
    y = 1 + x1 - x2 + u[g, 0] + u[g, 1] * x1 + u[g, 2] * x2 + rng.standard_normal(m * n)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": pd.Categorical([f"g{v:02d}" for v in g])})


def _fit(formula: str, data: pd.DataFrame, REML: bool = True, **control) -> mixedref.LmerFit:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mixedref.lmer(formula, data, REML=REML, control=control or None)


def _lme4_best(entry: dict) -> float:
    """The lowest criterion among lme4's default and its allFit optimizers (not mixedref's)."""
    vals = [c["objective"] for name, c in entry["candidates"].items()
            if (name == "lme4" or name.startswith("allFit")) and c.get("objective") is not None]
    return min(vals)


def _needs_r() -> None:
    from harness.core import rbridge

    reason = rbridge.unavailable()
    if reason:
        pytest.skip(reason)


def _allfit_live(data: pd.DataFrame, formula: str, REML: bool) -> dict:
    from harness.core import rbridge

    return json.loads(str(rbridge.call("allfit_best_json", data, formula, REML)[0]))


# ---------------------------------------------------------------- cheap cases stay cheap


@pytest.mark.parametrize("case_id", ["sleepstudy-slopes-REML", "Penicillin-crossed-ML",
                                     "sim_singular-intercept-REML"])
def test_cheap_cases_stay_cheap_no_strategy_runs_and_nfev_is_unchanged(case_id: str) -> None:
    case = CASES[case_id]
    data = load_data(case)
    on, off = _fit(case.formula, data, case.REML), _fit(case.formula, data, case.REML,
                                                       rescue=False)
    log = on.optinfo
    assert log.rescue == [] and log.winner is None and log.gain == 0.0
    assert not any("won" in s or "rescue" in s for s in log.strategies)
    assert on.nfev == off.nfev and on.objective == off.objective
    assert list(on.theta) == list(off.theta)


# ---------------------------------------------------------------- theory


def test_theta_scales_are_the_term_columns_sds_one_for_the_intercept() -> None:
    data = _badscale()
    model = build_model(CORR3, data)
    s = theta_scales(model)
    sd1, sd2 = data["x1"].std(), data["x2"].std()
    # θ order: (0,0) (1,0) (2,0) (1,1) (2,1) (2,2): the scale of each element's row
    np.testing.assert_allclose(s, [1, sd1, sd2, sd1, sd2, sd2], rtol=1e-12)
    assert badly_scaled(s)
    assert not badly_scaled(theta_scales(build_model(CORR3, _corr_boundary())))


def test_scaled_theta_is_the_theta_of_the_model_with_unit_scale_columns() -> None:
    # dividing column i by s_i multiplies row i of the template by s_i: the criterion of the
    # rescaled model at φ = s θ is the original's at θ (REML: up to log det of X's rescaling,
    # here 0 since the fixed effects' columns are rescaled by 1, 1e4, 1e-4)
    data = _badscale()
    model = build_model(CORR3, data)
    s = theta_scales(model)
    unit = data.assign(x1=data["x1"] / data["x1"].std(), x2=data["x2"] / data["x2"].std())
    f = PLSObjective(model, REML=False)
    f_unit = PLSObjective(build_model(CORR3, unit), REML=False)
    rng = np.random.default_rng(0)
    for _ in range(3):
        phi = np.array([1.0, 0.3, -0.2, 0.8, 0.1, 0.5]) + 0.1 * rng.standard_normal(6)
        assert f(phi / s) == pytest.approx(f_unit(phi), rel=1e-10)


def test_boundary_search_tries_the_near_singular_diagonal_at_zero_and_its_row_at_zero() -> None:
    model = build_model(CORR3, _corr_boundary())
    fn = PLSObjective(model, True)
    problem = Problem(fn, fn, model, model.theta_lower, lambda f, z, lo, n: (z, f(z), 4),
                      np.ones(6))
    # x2 nearly in the span of the intercept and x1: T_33 small against its row
    runs = dict(boundary_search(problem, np.array([1.0, 0.5, -0.2, 0.1, -0.4, 1e-3])))
    assert "boundary g: x2 in the span of the earlier" in runs
    assert "boundary g: x2 variance 0" in runs
    theta, _ = runs["boundary g: x2 in the span of the earlier"]()
    assert theta[5] == 0.0 and theta[4] != 0.0
    theta, _ = runs["boundary g: x2 variance 0"]()
    assert theta[2] == theta[4] == theta[5] == 0.0


def test_a_badly_scaled_term_reaches_the_optimum_of_its_well_scaled_twin() -> None:
    # theory: multiplying x1 by 1e4 and x2 by 1e-4 (determinant 1) leaves the REML criterion
    # unchanged, so both fits must reach one optimum; the twin's is an easy problem (checks pass)
    data = _badscale()
    twin = data.assign(x1=data["x1"] * 1e4, x2=data["x2"] * 1e-4)
    easy = _fit(CORR3, twin)
    assert easy.optinfo.rescue == [] and easy.converged
    hard = _fit(CORR3, data)
    allowed = TOL.objective_allowed(easy.objective)
    assert hard.objective == pytest.approx(easy.objective, abs=allowed)
    assert hard.optinfo.winner is not None and hard.optinfo.gain > 100
    assert any(s.startswith(f"{hard.optinfo.winner} won") for s in hard.optinfo.strategies)
    # without the strategies BOBYQA stops far above (as lme4's default does)
    assert _fit(CORR3, data, rescue=False).objective > easy.objective + 100


def test_the_rescue_stops_at_the_first_improvement_lme4s_checks_accept() -> None:
    # the first strategy (BOBYQA's stop far above, fixed by rescaled θ) reaches the twin's
    # optimum, where lme4's checks pass in φ and the estimate is not singular: nothing else runs
    data = _badscale()
    twin = _fit(CORR3, data.assign(x1=data["x1"] * 1e4, x2=data["x2"] * 1e-4))
    fit = _fit(CORR3, data)
    log = fit.optinfo
    assert [a["strategy"] for a in log.rescue] == ["rescaled θ from the identity"]
    assert log.winner == "rescaled θ from the identity"
    assert fit.objective == pytest.approx(twin.objective, abs=TOL.objective_allowed(twin.objective))


def test_the_strategies_runs_take_the_exact_gradient_where_there_is_one() -> None:
    # sim_corr3_boundary: the boundary search wins (2.29 lower); its BOBYQA runs took 1,170
    # evaluations, L-BFGS-B's on the exact gradient (one evaluation each) about 150
    case = CASES["sim_corr3_boundary-corr3-REML"]
    fit = _fit(case.formula, load_data(case), case.REML)
    log = fit.optinfo
    assert log.winner is not None and log.winner.startswith("boundary")
    assert sum(a["nfev"] for a in log.rescue) < 400, log.rescue
    # lme4's checks pass on the winner (a singular optimum, correlation +1): the boundary
    # search tries its other faces, but no perturbed restart follows
    assert any(a["strategy"].endswith("variance 0") for a in log.rescue)
    assert not any(a["strategy"].startswith(("perturbed", "gradient polish"))
                   for a in log.rescue), log.rescue


def test_the_rescued_criterion_is_the_objectives_at_the_rescued_theta() -> None:
    # lme4's BOBYQA misses this optimum and a strategy wins; mixedref's default for 6 θ,
    # L-BFGS-B with the exact gradient, reaches it (or lower) without one
    data = _corr_boundary()
    fit = _fit(CORR3, data, method="bobyqa")
    assert fit.optinfo.winner is not None
    assert _fit(CORR3, data).objective <= fit.objective + TOL.objective_allowed(fit.objective)
    fn = PLSObjective(build_model(CORR3, data), True)
    assert fit.objective == fn(np.asarray(fit.theta))
    assert fit.optinfo.fmin == fit.objective and fit.optinfo.nfev == fit.nfev


def test_the_scale_warning_is_warned_as_lme4s_checkscalex() -> None:
    with pytest.warns(ScaleWarning, match="very different scales: consider rescaling"):
        mixedref.lmer(CORR3, _badscale(), control={"rescue": False, "calc_derivs": False})


# ---------------------------------------------------------------- against lme4's allFit, live


@pytest.mark.needs_r
@pytest.mark.slow
@pytest.mark.parametrize("shape", ["badscale", "corr_boundary"])
def test_the_hard_shapes_reach_allfits_best_or_lower(shape: str) -> None:
    _needs_r()
    data = _badscale() if shape == "badscale" else _corr_boundary()
    ref = _allfit_live(data, CORR3, True)
    assert ref["error"] is None, ref["error"]
    best = ref["objective"]
    fit = _fit(CORR3, data)
    assert fit.objective <= best + TOL.objective_allowed(best), (fit.objective, ref["best"])


# ---------------------------------------------------------------- the catalog's hard cases


HARD = [c.id for c in CASES.values() if "hard" in c.tags and not c.is_glmm]


@pytest.mark.slow
@pytest.mark.parametrize("case_id", HARD or ["none"])
def test_hard_catalog_cases_reach_lme4s_best_known_or_lower(case_id: str) -> None:
    if case_id == "none":
        pytest.skip("no catalog case is tagged hard yet")
    entry = best_known(case_id)
    if entry is None:
        pytest.skip(f"{case_id} has no recorded best known optimum yet")
    case = CASES[case_id]
    best = _lme4_best(entry)
    fit = _fit(case.formula, load_data(case), case.REML)
    assert fit.objective <= best + TOL.objective_allowed(best), (fit.objective, best,
                                                                 fit.optinfo.strategies)


# ---------------------------------------------------------------- the strategies alone


def _problem(case_id: str) -> tuple[Problem, float, np.ndarray]:
    """The strategies' Problem for a catalog case, lme4's recorded criterion and θ."""
    from harness.adapters import Lme4Recorded

    case = CASES[case_id]
    model = build_model(case.formula, load_data(case))
    fn = PLSObjective(model, case.REML)
    ref = Lme4Recorded().fit(case, None)
    vg = fn.value_and_grad if fn.has_gradient else None
    problem = Problem(fn, fn, model, model.theta_lower.astype(float),
                      lambda f, z, lo, n: (z, f(z), 4), theta_scales(model), value_and_grad=vg)
    return problem, float(ref["objective"]), np.asarray(ref["theta"], dtype=float)


@pytest.mark.parametrize("case_id", ["Penicillin-crossed-REML", "sleepstudy-slopes-REML"])
def test_the_gradient_polish_reaches_lme4s_optimum_from_a_perturbed_start(case_id: str) -> None:
    # Penicillin's terms are scalar, sleepstudy's vector-valued: both have the exact gradient
    problem, ref, theta = _problem(case_id)
    assert problem.value_and_grad is not None
    start = theta * 1.3 + 0.05
    assert problem.fn(start) > ref + 0.1
    ((_, run),) = gradient_polish(problem, start)
    polished, _ = run()
    assert problem.fn(polished) == pytest.approx(ref, abs=TOL.objective_allowed(ref))


def test_the_log_of_a_rescued_fit_is_plain_json_and_says_why_what_and_who_won() -> None:
    fit = _fit(CORR3, _corr_boundary(), method="bobyqa")  # lme4's optimizer: a strategy wins
    doc = json.loads(json.dumps(fit.optinfo.to_dict()))
    assert doc["rescue_reasons"] == ["singular fit"]
    assert doc["winner"] in [a["strategy"] for a in doc["rescue"]]
    assert doc["gain"] > 0.1 and doc["optimizer"].endswith("+rescue")
    assert all({"strategy", "fval", "nfev", "seconds"} <= set(a) for a in doc["rescue"])
    assert sum(a["nfev"] for a in doc["rescue"]) < doc["nfev"]


def test_lmer_control_check_conv_tolerances_as_lmerControls() -> None:
    """check.conv.grad, check.conv.hess and check.conv.singular as lmerControl takes them: a
    gradient tolerance below the optimizer's noise warns "failed to converge", and isSingular's
    tolerance 0.5 calls sleepstudy's fit singular (its θ diagonal has 0.2309 < 0.5), as
    lme4's isSingular(m, tol = 0.5) does."""

    from harness.core.datasets import load_dataset

    data = load_dataset("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tight = mixedref.lmer("Reaction ~ Days + (Days | Subject)", data,
                              control={"check_conv_grad": 1e-14, "rescue": False})
        wide = mixedref.lmer("Reaction ~ Days + (Days | Subject)", data,
                             control={"check_conv_singular": 0.5, "rescue": False})
    assert any("failed to converge with max|grad|" in m and "tol = 1e-14" in m
               for m in tight.messages)
    assert not tight.converged
    assert wide.singular and not mixedref.lmer("Reaction ~ Days + (Days | Subject)",
                                               data).singular
