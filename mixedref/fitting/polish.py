"""A tight finish on the profiled criterion: Newton steps from its exact gradient.

lme4's stopping rule (a criterion change below ftol_abs = 1e-8) stops where the criterion is
flat, not where θ is right: at curvature H a criterion within 1e-8 of its minimum leaves θ off
by up to sqrt(2e-8 / H), which on NIST's SmLs06 (H = 32) is 4e-7 relative in θ and a
log relative error of 6 in var(g) (docs/certified.md). Where the problem is small and the
objective has its exact gradient, a few Newton steps (the Hessian by central differences of
that gradient, mixedref.fitting.convergence.derivatives) put θ where the gradient vanishes to its
rounding floor. A step is kept only while it shrinks the gradient without raising the criterion
beyond its rounding; at a bound, or where the Hessian is not positive definite, nothing moves.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mixedref.fitting.convergence import derivatives

#: the finish runs on problems at most this size (θ elements, rows): 2k + 1 gradients a step
MAX_THETA = 4
MAX_ROWS = 200_000
MAX_STEPS = 4
#: a step below this relative size of θ is the rounding floor: stop there
STEP_FLOOR = 1e-14


def newton_polish(fn: object, x: np.ndarray, fx: float, lower: np.ndarray,
                  evaluate: Callable[[np.ndarray], float],
                  value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray | None]]
                  ) -> tuple[np.ndarray, float, int]:
    """(θ, criterion, Newton steps kept) after polishing ``x`` on objective ``fn`` (its size
    decides whether the finish applies); ``evaluate`` and ``value_and_grad`` are its (counted)
    criterion and exact gradient. Returns ``x`` unchanged where the finish does not apply."""
    n = getattr(fn, "n", None)
    value_and_grad = _last_remembered(value_and_grad)
    # the sparse engine's gradient costs about three factorizations of a large system: a step
    # (2k + 1 gradients) would cost more than the fit's last BOBYQA iterations
    if (not getattr(fn, "has_gradient", False) or getattr(fn, "engine", None) == "sparse"
            or x.size > MAX_THETA
            or (n is not None and n > MAX_ROWS) or value_and_grad(x)[1] is None):
        return x, fx, 0
    kept = 0
    # the criterion's rounding: a few units in its last place (a sum of n terms)
    slack = 64 * np.finfo(float).eps * max(abs(fx), 1.0)
    last: tuple[np.ndarray, np.ndarray] | None = None  # (free, Cholesky factor) of the step
    for _ in range(MAX_STEPS):
        if last is not None and _at_floor(last, x, lower, value_and_grad):
            break
        free, g, H = derivatives(evaluate, x, lower, value_and_grad=value_and_grad)
        if free.size == 0 or not np.all(np.isfinite(g)) or not np.all(np.isfinite(H)):
            break
        try:
            L = np.linalg.cholesky(H)
        except np.linalg.LinAlgError:
            break
        step = np.linalg.solve(L.T, np.linalg.solve(L, g))
        if np.max(np.abs(step) / np.maximum(np.abs(x[free]), 1.0)) <= STEP_FLOOR:
            break
        xt = x.copy()
        xt[free] -= step
        if np.any(xt < lower):
            break
        ft, gt = value_and_grad(xt)
        if gt is None or not ft <= fx + slack or not (np.max(np.abs(gt[free]))
                                                       < np.max(np.abs(g))):
            break
        x, fx, kept, last = xt, float(ft), kept + 1, (free, L)
    return x, fx, kept


#: _at_floor stops without a new Hessian where the last one predicts a step below this
#: fraction of STEP_FLOOR: the exact step then falls below the floor too unless the Hessian
#: changed by a factor of 1 / PREDICTED_FLOOR over a step at the rounding floor
PREDICTED_FLOOR = 0.5


def _at_floor(last: tuple[np.ndarray, np.ndarray], x: np.ndarray, lower: np.ndarray,
              value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray | None]]
              ) -> bool:
    """Whether the Newton step at ``x`` is at the rounding floor, judged by the last step's
    Hessian (its Cholesky factor, over the same free elements) and the gradient at ``x`` (the
    one the accepted step evaluated): the Hessian by central differences costs 2k gradients,
    and after a step of quadratic convergence it only confirmed that the next step is below
    STEP_FLOOR (the last 6 of sleepstudy's 21 gradients). Where the prediction is not clearly
    below the floor the Hessian is computed as before, so the steps taken are the same."""
    free, L = last
    if not np.array_equal(free, np.flatnonzero(~(x - lower <= 1e-4))):
        return False  # the free set moved: convergence.derivatives' margin, recomputed there
    g = value_and_grad(x)[1]
    if g is None or not np.all(np.isfinite(g)):
        return False
    step = np.linalg.solve(L.T, np.linalg.solve(L, np.asarray(g)[free]))
    return bool(np.max(np.abs(step) / np.maximum(np.abs(x[free]), 1.0))
                <= PREDICTED_FLOOR * STEP_FLOOR)


def _last_remembered(value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray | None]]
                     ) -> Callable[[np.ndarray], tuple[float, np.ndarray | None]]:
    """``value_and_grad`` remembering its last point: the finish asks again at the point it
    has just evaluated (the applicability test at x, then the derivatives there; the accepted
    step, then the derivatives there), which returned the same numbers at the cost of a
    gradient each time (2 of cake's 8 gradients)."""
    last: list = [None, None]

    def remembered(x: np.ndarray) -> tuple[float, np.ndarray | None]:
        key = np.asarray(x, dtype=float).tobytes()
        if last[0] != key:
            last[0], last[1] = key, value_and_grad(x)
        return last[1]

    return remembered
