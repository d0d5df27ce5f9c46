"""lme4's convergence checks (checkConv) and boundary handling (check.boundary), for lmer and
glmer alike: the gradient and Hessian of the criterion at the estimate by central differences
(lme4's deriv12, step 1e-4), or exactly where the engine offers the Hessian, lme4's default
tolerances and its warning texts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: lme4 1.1-31's lmerControl defaults: check.conv.grad tol, check.conv.hess tol
GRAD_TOL = 2e-3
HESS_TOL = 1e-6
STEP = 1e-4
#: θ elements within this of their lower bound are held there by lme4's checks (its deriv12
#: is taken over the others): a boundary estimate is a constrained optimum
BOUNDARY = 1e-4

#: (criterion, exact gradient, exact Hessian) at θ, as an engine's value_grad_hess returns them
ExactDerivatives = tuple[float, np.ndarray, np.ndarray]


def free_elements(theta: np.ndarray, lower: np.ndarray, boundary: float = BOUNDARY
                  ) -> np.ndarray:
    """Indices of the θ elements more than ``boundary`` above their lower bound (NaN counts
    as free), over which lme4's checks take their derivatives."""
    return np.flatnonzero(~(np.asarray(theta, dtype=float) - lower <= boundary))


def cholesky(H: np.ndarray) -> np.ndarray:
    """``np.linalg.cholesky(H)`` (LinAlgError where H is not positive definite); a 1 x 1 H by
    its square root, the number LAPACK's dpotrf gives, without numpy's wrapper (a third of a
    one-θ polish's Python work is the wrappers around its 1 x 1 systems)."""
    if H.shape == (1, 1):
        h = float(H[0, 0])
        if h <= 0:  # numpy's refusal (its 1 x 1 factor of NaN is NaN, not an error)
            raise np.linalg.LinAlgError("Matrix is not positive definite")
        return np.sqrt(H)
    return np.linalg.cholesky(H)


def cholesky_step(L: np.ndarray, g: np.ndarray) -> np.ndarray:
    """H^-1 g from H's Cholesky factor L, as ``np.linalg.solve(L.T, np.linalg.solve(L, g))``;
    for 1 x 1 by two divisions, the numbers LAPACK's 1 x 1 dgesv gives (it divides)."""
    if L.shape == (1, 1):
        return (np.asarray(g, dtype=float) / L[0, 0]) / L[0, 0]
    return np.linalg.solve(L.T, np.linalg.solve(L, g))


def derivatives(fn: Callable[[np.ndarray], float], theta: np.ndarray, lower: np.ndarray,
                boundary: float = BOUNDARY,
                value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray | None]]
                | None = None,
                value_grad_hess: Callable[[np.ndarray], ExactDerivatives | None]
                | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(free, gradient, Hessian) at θ by central differences over the free coordinates (those
    more than ``boundary`` above their lower bound): a boundary estimate is a constrained
    optimum, where the gradient need not vanish in the bounded direction. With the exact
    gradient (``value_and_grad``) the Hessian is its central difference: 2k evaluations, not
    2k². With the exact Hessian (``value_grad_hess``, None where it does not apply) neither
    is differenced: the derivatives lme4's central differences approximate, over the free
    coordinates (the Hessian of the criterion with the bounded ones held is the submatrix)."""
    theta = np.asarray(theta, dtype=float)
    free = free_elements(theta, lower, boundary)
    k = free.size
    if value_grad_hess is not None and k:
        exact = value_grad_hess(theta)
        if exact is not None:
            _, g, H = exact
            return free, np.asarray(g)[free], np.asarray(H)[np.ix_(free, free)]
    if value_and_grad is not None and k:
        exact = _from_gradient(value_and_grad, theta, free)
        if exact is not None:
            return (free, *exact)
    f0 = fn(theta)
    grad, hess = np.zeros(k), np.zeros((k, k))

    def at(*steps: tuple[int, float]) -> float:
        x = theta.copy()
        for i, h in steps:
            x[free[i]] += h
        return fn(x)

    h = STEP
    fp = [at((i, h)) for i in range(k)]
    fm = [at((i, -h)) for i in range(k)]
    for i in range(k):
        grad[i] = (fp[i] - fm[i]) / (2 * h)
        hess[i, i] = (fp[i] - 2 * f0 + fm[i]) / h**2
        for j in range(i):
            hess[i, j] = hess[j, i] = (at((i, h), (j, h)) - at((i, h), (j, -h))
                                       - at((i, -h), (j, h)) + at((i, -h), (j, -h))) / (4 * h * h)
    return free, grad, hess


def _from_gradient(value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray | None]],
                   theta: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    g0 = value_and_grad(theta)[1]
    if g0 is None:
        return None
    cols = []
    for i in free:
        up, dn = theta.copy(), theta.copy()
        up[i] += STEP
        dn[i] -= STEP
        gu, gd = value_and_grad(up)[1], value_and_grad(dn)[1]
        if gu is None or gd is None:
            return None
        cols.append((np.asarray(gu)[free] - np.asarray(gd)[free]) / (2 * STEP))
    H = np.column_stack(cols)
    return np.asarray(g0)[free], 0.5 * (H + H.T)


def check(grad: np.ndarray, hess: np.ndarray, grad_tol: float = GRAD_TOL,
          hess_tol: float = HESS_TOL) -> tuple[list[str], list[float] | None]:
    """lme4's warnings for this gradient and Hessian (empty when the checks pass), and the
    Hessian's eigenvalues; the tolerances are lmerControl's check.conv.grad and
    check.conv.hess."""
    if grad.size == 0:
        return [], None
    out: list[str] = []
    if not (np.all(np.isfinite(grad)) and np.all(np.isfinite(hess))):
        return ["Model failed to converge: the criterion is not finite near the estimate"], None
    try:
        if hess.shape == (1, 1):  # numpy's solve and eigvalsh of 1 x 1: a division, the entry
            scaled = np.asarray(grad, dtype=float) / cholesky(hess)[0, 0]
        else:
            scaled = np.linalg.solve(np.linalg.cholesky(hess), grad)
        mingrad = np.minimum(np.abs(scaled), np.abs(grad))
    except np.linalg.LinAlgError:
        mingrad = None
        out.append("unable to evaluate scaled gradient")
    if mingrad is not None and np.max(mingrad) > grad_tol:
        k = int(np.argmax(mingrad))
        out.append(f"Model failed to converge with max|grad| = {np.max(mingrad):.6g} "
                   f"(tol = {grad_tol:g}, component {k + 1})")
    ev = hess[0].astype(float) if hess.shape == (1, 1) else np.linalg.eigvalsh(hess)
    if ev.min() < -hess_tol:
        out.append(f"Model failed to converge: degenerate  Hessian with {int(np.sum(ev < 0))} "
                   "negative eigenvalues")
    elif ev.min() > 0 and ev.max() / ev.min() > 1 / hess_tol:
        out.append("Model is nearly unidentifiable: very large eigenvalue\n - Rescale variables?")
    return out, [float(v) for v in ev]


def snap_to_boundary(fn: Callable[[np.ndarray], float], x: np.ndarray, fx: float,
                     lower: np.ndarray, tol: float) -> tuple[np.ndarray, float]:
    """lme4's check.boundary (lmer's and glmer's): parameters within ``tol`` above their bound
    move onto it, one at a time, where that does not raise the criterion; returns the estimate
    and its criterion."""
    if tol > 0:
        near = (x - lower > 0) & (x - lower < tol)
        if np.any(near):
            for i in np.flatnonzero(near):
                xt = x.copy()
                xt[i] = lower[i]
                if fn(xt) < fx:
                    x = xt
            fx = fn(x)
    return x, fx
