"""One L-BFGS-B run of the rescue strategies, in the scaled θ (φ = s ⊙ θ) over a subset of its
elements, on the criterion's exact gradient.

Where the objective has its exact gradient (scalar terms; vector-valued ones whose dense work is
small) a quasi-Newton run costs a few dozen gradients, about two and a half evaluations each,
where BOBYQA's run from the same start costs hundreds of evaluations on 6 θ and over a thousand
on 20 (kb07's maximal model: a boundary face 1,601 evaluations by BOBYQA, 35 gradients here).
A gradient the objective cannot give at a point (a scalar term's θ below the diagonal
shortcut's range) is replaced by central differences of the criterion, one-sided at a bound.
A non-finite criterion ends the run; the caller then finishes from the best point by BOBYQA.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.optimize import minimize

#: Central differences in φ with this step where the exact gradient is missing.
FD_STEP = 1e-6
#: L-BFGS-B's stopping rules of a strategy's run: the criterion's change (absolute, in
#: criterion units, made relative for scipy) and the projected gradient in φ; 100 times below
#: lme4's ftol_abs and main L-BFGS-B's gtol (tighter cost kb07's runs a quarter more
#: gradients for the same criteria to 1e-6). The gradient polish, the last strategy, goes to
#: POLISH_FTOL_ABS and POLISH_GTOL.
FTOL_ABS = 1e-10
GTOL = 1e-6
POLISH_FTOL_ABS = 1e-12
POLISH_GTOL = 1e-8
#: the line search's evaluations at most
MAXLS = 20


class _Stop(Exception):
    """The criterion is not finite at a trial point: the run ends with its best point."""


def lbfgsb_phi(value: Callable[[np.ndarray], float],
               value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray | None]] | None,
               scales: np.ndarray, lower: np.ndarray, phi0: np.ndarray, free: np.ndarray,
               maxfun: int, ftol_abs: float = FTOL_ABS, gtol: float = GTOL
               ) -> tuple[np.ndarray, float, bool]:
    """L-BFGS-B over the ``free`` elements of φ from ``phi0`` (the others held), within θ's
    lower bounds; ``value`` is the criterion of θ and ``value_and_grad`` its exact gradient
    (None: central differences throughout). Returns (best θ evaluated, its criterion, whether
    the run ended normally: False when a non-finite criterion stopped it)."""
    base = np.asarray(phi0, dtype=float).copy()
    free = np.asarray(free, dtype=bool)
    lower_free = lower[free]
    best: list = [math.inf, np.maximum(base / scales, lower)]

    def theta_of(z: np.ndarray) -> np.ndarray:
        phi = base.copy()
        phi[free] = z
        return np.maximum(phi / scales, lower)  # scales are positive: bounds 0 and -inf kept

    def val(z: np.ndarray) -> float:
        th = theta_of(z)
        v = float(value(th))
        if v < best[0]:
            best[0], best[1] = v, th
        return v

    def fg(z: np.ndarray) -> tuple[float, np.ndarray]:
        if value_and_grad is not None:
            th = theta_of(z)
            v, g = value_and_grad(th)
            v = float(v)
            if not math.isfinite(v):
                raise _Stop
            if v < best[0]:
                best[0], best[1] = v, th
            if g is not None:
                return v, (np.asarray(g, dtype=float) / scales)[free]
        else:
            v = val(z)
            if not math.isfinite(v):
                raise _Stop
        return v, _central(val, z, v, lower_free)

    z0 = np.maximum(base[free], lower_free)
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower_free]
    ok = True
    try:
        f0, _ = fg(z0)
        opts = {"maxiter": max(int(maxfun), 1), "maxfun": max(int(maxfun), 1),
                "ftol": ftol_abs / max(abs(f0), 1.0), "gtol": gtol, "maxls": MAXLS}
        minimize(fg, z0, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)
    except (_Stop, ValueError, FloatingPointError):
        ok = False
    return best[1], float(best[0]), ok


def _central(val: Callable[[np.ndarray], float], z: np.ndarray, v: float,
             lower: np.ndarray) -> np.ndarray:
    """The gradient of ``val`` at z by central differences, one-sided at a lower bound."""
    g = np.empty(z.size)
    for i in range(z.size):
        up, dn = z.copy(), z.copy()
        up[i] += FD_STEP
        dn[i] -= FD_STEP
        if np.isfinite(lower[i]) and dn[i] < lower[i]:
            g[i] = (val(up) - v) / FD_STEP
        else:
            g[i] = (val(up) - val(dn)) / (2 * FD_STEP)
    return g
