"""The dense engine's exact Hessian of the profiled criterion for scalar terms
(mixedref.engines.dense: value_grad_hess), which lme4's checks and the Newton finish read
instead of central differences of the gradient.

Reference: Richardson-extrapolated central differences of the exact gradient, which
tests/test_gradient.py checks against differences of the criterion itself and against the
derivative formula on the full dense system; they share no code with the Hessian's formulas
(the second derivatives of log det K_sub and log pwrss).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import dense_objective, interior_theta

from harness.core.catalog import load_catalog, load_data
from mixedref.engines.dense import DensePLSObjective
from mixedref.fitting.convergence import derivatives
from mixedref.fitting.strategies import theta_scales
from mixedref.frontend.design import build_model

MAX_ROWS = 5000

CASES = [c for c in load_catalog() if not c.is_glmm and "large" not in c.tags]


def _objective(case) -> DensePLSObjective | None:
    return dense_objective(case, MAX_ROWS)


def _gradient_differences(obj: DensePLSObjective, theta: np.ndarray,
                          rel: float = 2e-3) -> np.ndarray:
    """Central differences of the exact gradient with steps h and h/2, extrapolated (error
    O(h^4)), symmetrized."""
    h = rel * np.maximum(np.abs(theta), 0.1 / theta_scales(obj.model))

    def central(step: np.ndarray) -> np.ndarray:
        cols = []
        for i, hi in enumerate(step):
            e = np.zeros(theta.size)
            e[i] = hi
            cols.append((obj.value_and_grad(theta + e)[1] - obj.value_and_grad(theta - e)[1])
                        / (2.0 * hi))
        return np.column_stack(cols)

    H = (4.0 * central(h / 2.0) - central(h)) / 3.0
    return 0.5 * (H + H.T)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_exact_hessian_matches_differences_of_the_gradient(case) -> None:
    obj = _objective(case)
    if obj is None or not obj._scalar_gradient:
        pytest.skip("not a dense-engine design of scalar terms of at most MAX_ROWS rows")
    rng = np.random.default_rng(20261207)
    for _ in range(2):
        theta = interior_theta(obj.model, rng)
        out = obj.value_grad_hess(theta)
        assert out is not None
        value, grad, hess = out
        v0, g0 = obj.value_and_grad(theta)
        assert value == v0
        np.testing.assert_array_equal(grad, g0)
        np.testing.assert_array_equal(hess, hess.T)
        fd = _gradient_differences(obj, theta)
        scale = np.maximum(np.abs(fd).max(), 1.0)
        np.testing.assert_array_less(np.abs(hess - fd) / scale, 1e-6)


def test_no_exact_hessian_for_vector_terms_or_near_zero_later_theta() -> None:
    """None where the formulas do not apply: a vector-valued term, and a later θ below the
    diagonal shortcut's 1e-3 (the checks then difference the gradient or the criterion)."""
    slopes = next(c for c in CASES if c.id == "sleepstudy-slopes-REML")
    obj = _objective(slopes)
    assert obj.value_grad_hess(np.array([0.9, 0.02, 0.2])) is None
    crossed = next(c for c in CASES if c.id == "Penicillin-crossed-ML")
    obj = _objective(crossed)
    theta = interior_theta(obj.model, np.random.default_rng(1))
    assert obj.value_grad_hess(theta) is not None
    theta[1] = 1e-4
    assert obj.value_grad_hess(theta) is None


def test_checks_read_the_exact_hessian_where_given() -> None:
    """convergence.derivatives returns the engine's exact derivatives over the free
    coordinates (a θ held at its bound drops out of gradient and Hessian alike)."""
    crossed = next(c for c in CASES if c.id == "Penicillin-crossed-ML")
    obj = _objective(crossed)
    theta = interior_theta(obj.model, np.random.default_rng(2))
    _, g, H = obj.value_grad_hess(theta)
    free, g1, H1 = derivatives(obj, theta, obj.lower, value_and_grad=obj.value_and_grad,
                               value_grad_hess=obj.value_grad_hess)
    np.testing.assert_array_equal(free, np.arange(theta.size))
    np.testing.assert_array_equal(g1, g)
    np.testing.assert_array_equal(H1, H)
    held = theta.copy()
    held[0] = 0.0
    _, g, H = obj.value_grad_hess(held)
    free, g1, H1 = derivatives(obj, held, obj.lower, value_and_grad=obj.value_and_grad,
                               value_grad_hess=obj.value_grad_hess)
    np.testing.assert_array_equal(free, np.arange(1, theta.size))
    np.testing.assert_array_equal(g1, g[1:])
    np.testing.assert_array_equal(H1, H[1:, 1:])


@pytest.mark.parametrize("REML", [False, True])
def test_hessian_from_the_kept_gradient_equals_a_fresh_one(REML) -> None:
    """value_grad_hess at the last gradient's θ reuses that gradient's factor and inverse; a
    criterion evaluated in between (which reuses the work buffer holding them) must not leave
    stale pieces behind."""
    case = next(c for c in CASES if c.id == "Penicillin-crossed-ML")
    data = load_data(case)
    model = build_model(case.formula, data)
    obj = DensePLSObjective(model, REML=REML)
    rng = np.random.default_rng(3)
    t1, t2 = interior_theta(model, rng), interior_theta(model, rng)
    obj.value_and_grad(t2)
    fresh = obj.value_grad_hess(t1)  # nothing kept at t1: computed from scratch
    obj.value_and_grad(t1)
    kept = obj.value_grad_hess(t1)
    for a, b in zip(fresh, kept, strict=True):
        np.testing.assert_array_equal(a, b)
    obj.value_and_grad(t1)
    obj(t2)  # the criterion alone at another θ: the work buffer now holds its factor
    after = obj.value_grad_hess(t1)
    for a, b in zip(fresh, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_optimizer_reads_the_exact_hessian_only_where_the_engine_has_it() -> None:
    """Vector-valued terms have the exact gradient but no exact Hessian: their L-BFGS-B fits
    keep the Newton finish on differenced gradients and the usual stall rule (handing them the
    exact-Hessian path cost sim_corr4 17 -> 59 evaluations)."""
    from mixedref.fitting.optimize import _hessian_of

    slopes = _objective(next(c for c in CASES if c.id == "sleepstudy-slopes-REML"))
    assert slopes.has_gradient and not slopes.has_hessian
    assert _hessian_of(slopes) is None
    crossed = _objective(next(c for c in CASES if c.id == "Penicillin-crossed-ML"))
    assert crossed.has_hessian
    assert _hessian_of(crossed) == crossed.value_grad_hess
