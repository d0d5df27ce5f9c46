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
    # the sparse engine's gradient costs about three factorizations of a large system: a step
    # (2k + 1 gradients) would cost more than the fit's last BOBYQA iterations
    if (not getattr(fn, "has_gradient", False) or getattr(fn, "engine", None) == "sparse"
            or x.size > MAX_THETA
            or (n is not None and n > MAX_ROWS) or value_and_grad(x)[1] is None):
        return x, fx, 0
    kept = 0
    # the criterion's rounding: a few units in its last place (a sum of n terms)
    slack = 64 * np.finfo(float).eps * max(abs(fx), 1.0)
    for _ in range(MAX_STEPS):
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
        x, fx, kept = xt, float(ft), kept + 1
    return x, fx, kept
