"""A tight finish on the profiled criterion: Newton steps from its exact gradient.

lme4's stopping rule (a criterion change below ftol_abs = 1e-8) stops where the criterion is
flat, not where θ is right: at curvature H a criterion within 1e-8 of its minimum leaves θ off
by up to sqrt(2e-8 / H), which on NIST's SmLs06 (H = 32) is 4e-7 relative in θ and a
log relative error of 6 in var(g) (docs/certified.md). Where the problem is small and the
objective has its exact gradient, a few Newton steps (the Hessian by central differences of
that gradient, mixedref.fitting.convergence.derivatives) put θ where the gradient vanishes to its
rounding floor. A step is kept only while it shrinks the gradient without raising the criterion
beyond its rounding; at a bound, or where the Hessian is not positive definite, nothing moves.

The last Hessian is handed on to lme4's checks (:func:`polish_with_derivatives`) where it was
taken at the estimate or within REUSE_SHIFT of it: the checks would otherwise compute the same
derivatives again (sleepstudy's slopes: 19 evaluations, a tenth of the fit).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mixedref.fitting.convergence import (
    STEP,
    ExactDerivatives,
    cholesky,
    cholesky_step,
    derivatives,
    free_elements,
)

#: the finish runs on problems at most this size (θ elements, rows): 2k + 1 gradients a step
MAX_THETA = 4
MAX_ROWS = 200_000
MAX_STEPS = 4
#: a step below this relative size of θ is the rounding floor: stop there
STEP_FLOOR = 1e-14
#: the last Hessian stands for the one at the estimate when the estimate moved from where it
#: was taken by at most this much relative to θ (max(|θ|, 1)): its central differences span
#: ±1e-4 (convergence.STEP), a hundred times more, so such a move changes it at the level of
#: the differences' own error (the 65 small catalog cases: the last step moves θ by 1e-7 at most)
REUSE_SHIFT = 1e-6


def newton_polish(fn: object, x: np.ndarray, fx: float, lower: np.ndarray,
                  evaluate: Callable[[np.ndarray], float],
                  value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray | None]]
                  ) -> tuple[np.ndarray, float, int]:
    """(θ, criterion, Newton steps kept) after polishing ``x`` on objective ``fn`` (its size
    decides whether the finish applies); ``evaluate`` and ``value_and_grad`` are its (counted)
    criterion and exact gradient. Returns ``x`` unchanged where the finish does not apply."""
    return polish_with_derivatives(fn, x, fx, lower, evaluate, value_and_grad)[:3]


def polish_with_derivatives(
        fn: object, x: np.ndarray, fx: float, lower: np.ndarray,
        evaluate: Callable[[np.ndarray], float],
        value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray | None]],
        value_grad_hess: Callable[[np.ndarray], ExactDerivatives | None] | None = None
) -> tuple[np.ndarray, float, int, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """:func:`newton_polish`, and (free, gradient, Hessian) at the returned θ for lme4's checks
    (mixedref.fitting.convergence.derivatives' form), or None where the polish has none
    there: the gradient the polish evaluated at θ, the Hessian its last one, taken at θ or
    within REUSE_SHIFT of it over the same free elements. With ``value_grad_hess`` (the
    engine's exact Hessian) the steps read it instead of differencing the gradient."""
    n = getattr(fn, "n", None)
    value_and_grad = _remembered(value_and_grad)
    # the sparse engine's gradient costs about three factorizations of a large system: a step
    # (2k + 1 gradients) would cost more than the fit's last BOBYQA iterations
    if (not getattr(fn, "has_gradient", False) or getattr(fn, "engine", None) == "sparse"
            or x.size > MAX_THETA
            or (n is not None and n > MAX_ROWS) or value_and_grad(x)[1] is None):
        return x, fx, 0, None
    kept = 0
    hess: tuple[np.ndarray, ...] | None = None  # (θ, free, gradient, Hessian) of the last
    grad_at_x: np.ndarray | None = None  # the gradient at x (all elements), once known
    # the criterion's rounding: a few units in its last place (a sum of n terms)
    slack = 64 * np.finfo(float).eps * max(abs(fx), 1.0)
    last: tuple[np.ndarray, np.ndarray] | None = None  # (free, Cholesky factor) of the step
    for step_no in range(MAX_STEPS):
        if last is not None and _at_floor(last, x, lower, value_and_grad):
            break
        if step_no == 0 and value_grad_hess is None:
            forward = _forward_step(x, fx, lower, value_and_grad, slack)
            if forward is not None:  # a long first step, taken on the forward differences
                x, fx, last, grad_at_x = forward
                kept, hess = 1, None
                continue
        # the forward differences' points are remembered: the central ones need the other side
        free, g, H = derivatives(evaluate, x, lower, value_and_grad=value_and_grad,
                                 value_grad_hess=value_grad_hess)
        hess, grad_at_x = (x, free, g, H), None
        if free.size == 0 or not np.all(np.isfinite(g)) or not np.all(np.isfinite(H)):
            break
        try:
            L = cholesky(H)
        except np.linalg.LinAlgError:
            break
        step = cholesky_step(L, g)
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
        grad_at_x = np.asarray(gt)
    return x, fx, kept, _derivatives_at(x, lower, hess, grad_at_x)


def _forward_step(x: np.ndarray, fx: float, lower: np.ndarray,
                  value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray | None]],
                  slack: float
                  ) -> tuple[np.ndarray, float, tuple[np.ndarray, np.ndarray], np.ndarray] | None:
    """The first Newton step from the optimizer's end point on the Hessian by forward
    differences of the exact gradient (k gradients, not the central differences' 2k), where
    that step is long: (θ, criterion, (free, Cholesky factor), gradient at θ), or None where
    the central step is to be taken (as before).

    A step longer than REUSE_SHIFT moves θ beyond where a Hessian taken at the end point
    serves lme4's checks, so the polish takes another one at the new θ anyway: the first one
    only has to point the step. Its O(h) error (h = STEP, 1e-4 relative) leaves the step off
    by 1e-4 of its length, which the central Newton step at the new θ removes (sleepstudy's
    slopes: 9e-6 relative, 15 -> 12 gradients). A short predicted step, a Hessian that is not
    positive definite, a step across a bound or one that does not lower the gradient gives
    None; the forward points are remembered, so the central Hessian then costs k more."""
    g_all = value_and_grad(x)[1]
    free = free_elements(x, lower)
    if g_all is None or free.size < 2:  # one element: k = 1 gradient saved, rarely (cake's
        return None  # steps are short), for the step's work in Python each time
    g = np.asarray(g_all)[free]
    cols = []
    for i in free:
        up = x.copy()
        up[i] += STEP  # convergence.derivatives' point: its central difference reuses it
        gu = value_and_grad(up)[1]
        if gu is None:
            return None
        cols.append((np.asarray(gu)[free] - g) / STEP)
    H = np.column_stack(cols)
    H = 0.5 * (H + H.T)
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
        return None
    try:
        L = cholesky(H)
    except np.linalg.LinAlgError:
        return None
    step = cholesky_step(L, g)
    if np.max(np.abs(step) / np.maximum(np.abs(x[free]), 1.0)) <= REUSE_SHIFT:
        return None  # the central Hessian here serves the step and lme4's checks
    xt = x.copy()
    xt[free] -= step
    if np.any(xt < lower):
        return None
    ft, gt = value_and_grad(xt)
    if gt is None or not ft <= fx + slack or not (np.max(np.abs(np.asarray(gt)[free]))
                                                   < np.max(np.abs(g))):
        return None
    return xt, float(ft), (free, L), np.asarray(gt)


def _derivatives_at(x: np.ndarray, lower: np.ndarray, hess: tuple[np.ndarray, ...] | None,
                    grad_at_x: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(free, gradient, Hessian) at x from the polish's last derivatives ``hess`` (θ, free,
    gradient, Hessian) and the gradient of the step that reached x (None when x is where they
    were taken), or None where they were taken elsewhere (beyond REUSE_SHIFT) or over other
    free elements than x's (convergence.derivatives' boundary margin)."""
    if hess is None:
        return None
    x_h, free, g, H = hess
    if not np.array_equal(free, free_elements(x, lower)):
        return None
    if np.max(np.abs(x - x_h) / np.maximum(np.abs(x), 1.0), initial=0.0) > REUSE_SHIFT:
        return None
    if free.size == 0:
        return None
    if grad_at_x is None:  # x is where the derivatives were taken
        return (free, g, H) if np.array_equal(x, x_h) else None
    return free, grad_at_x[free], H


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
    if not np.array_equal(free, free_elements(x, lower)):
        return False  # the free set moved: convergence.derivatives' margin, recomputed there
    g = value_and_grad(x)[1]
    if g is None or not np.all(np.isfinite(g)):
        return False
    step = cholesky_step(L, np.asarray(g)[free])
    return bool(np.max(np.abs(step) / np.maximum(np.abs(x[free]), 1.0))
                <= PREDICTED_FLOOR * STEP_FLOOR)


def _remembered(value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray | None]]
                ) -> Callable[[np.ndarray], tuple[float, np.ndarray | None]]:
    """``value_and_grad`` remembering the points it evaluated: the finish asks again at points
    it has evaluated (the applicability test at x, then the derivatives there; the accepted
    step, then the derivatives there; the forward differences' points, then the central
    ones), which returned the same numbers at the cost of a gradient each time (2 of cake's 8
    gradients). A polish evaluates a few dozen points at most."""
    seen: dict[bytes, tuple[float, np.ndarray | None]] = {}

    def remembered(x: np.ndarray) -> tuple[float, np.ndarray | None]:
        key = np.asarray(x, dtype=float).tobytes()
        if key not in seen:
            seen[key] = value_and_grad(x)
        return seen[key]

    return remembered
