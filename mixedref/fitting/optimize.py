"""Minimize the profiled criterion over theta as lme4 1.1-31 does by default.

lme4's default optimizer for lmer is ``nloptwrap``: NLopt's BOBYQA with xtol_abs = 1e-8,
ftol_abs = 1e-8, maxeval = 1e5 and NLopt's default initial step; bounds 0 on the diagonal of each
term's template. The start is the identity template, except that lme4 (``mkLmerDevfun``) starts
models whose terms are all scalar intercepts on distinct factors at sqrt(var(group means) /
residual variance). After the optimizer, lme4 restarts once if a parameter on its bound has a
negative one-sided slope (``restart_edge``) and snaps parameters within 1e-5 of a bound to it
when that does not raise the criterion (``check.boundary``); both are reproduced here.

The dense engine also offers the criterion's exact gradient (every term scalar, or vector-valued
terms whose dense work stays small: mixedref.engines.dense), and ``method="auto"`` uses L-BFGS-B
with it for large systems (InstEval's kind) and for θ of GRADIENT_MIN_THETA or more elements: a
gradient costs two and a half to five evaluations but cuts the evaluations several-fold there,
while below that BOBYQA's few cheap evaluations win (measured: GRADIENT_MIN_THETA). The sparse
engine's gradient (any terms) costs about three evaluations, so there L-BFGS-B is taken only
where BOBYQA's expected evaluations are more (sparse_gradient_wins: from about 4 θ). lme4's checks
take the Hessian from the gradient where that needs fewer evaluations' worth (_gradient_pays).
L-BFGS-B's stopping rule is lme4's ftol_abs (an iteration improving the criterion by less than
1e-8 stops it) or a projected gradient below 1e-6; a failed line search counts as converged when
the quasi-Newton model predicts an improvement below ftol_abs (the noise floor); if it fails
otherwise or leaves the region where the gradient applies, BOBYQA finishes from its best point.

Beyond lme4: where a check fails after all this (checkConv's gradient or Hessian, a singular fit,
badly scaled predictors, θ far from the start, a non-zero return code) the rescue strategies of
:mod:`mixedref.fitting.strategies` continue from the estimate (rescaled θ, restarts, a boundary
search,
a gradient polish) and keep the lowest criterion; the log says why they ran, every attempt and
which won (``log.rescue_reasons``, ``log.rescue``, ``log.winner``, ``log.gain``). A fit whose
checks pass runs none of it. ``Control(rescue=False)`` gives lme4's behaviour alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import nlopt
import numpy as np
from scipy.optimize import minimize

from mixedref.engines.objective import Objective
from mixedref.errors import MixedrefError
from mixedref.fitting.control import SINGULAR_TOL, Control
from mixedref.fitting.convergence import (
    ExactDerivatives,
    check,
    cholesky,
    cholesky_step,
    derivatives,
    free_elements,
    snap_to_boundary,
)
from mixedref.fitting.optsummary import NLOPT_CODES, OptSummary
from mixedref.fitting.polish import polish_with_derivatives
from mixedref.fitting.strategies import (
    Problem,
    reasons_to_rescue,
    rescue,
    theta_scales,
    worth_rescuing,
)
from mixedref.frontend.design import ModelFrame

#: ``method="auto"`` uses the gradient when the objective's dense block has at least this many
#: rows (below it an evaluation is cheap and BOBYQA, lme4's own method, is kept).
GRADIENT_MIN_BLOCK = 200

#: ... or when θ has at least this many elements (vector-valued terms): BOBYQA's evaluations
#: grow with θ's length faster than L-BFGS-B's (the small catalog and the hard cases, one
#: process: corr3 6 θ, 197 -> 34 evaluations REML, 1870 -> 21 ML, 2 to 15 times faster; at 3 θ
#: sleepstudy's slopes 43 -> 18 evaluations but 1.5 times slower, a gradient costing ~5
#: evaluations there, and 71 -> 86 from its centred start: BOBYQA is kept below 6).
GRADIENT_MIN_THETA = 6

#: The sparse engine's choice (sparse_gradient_wins): BOBYQA's evaluations and L-BFGS-B's
#: gradients per fit as a + b k for θ of k elements, lme4's checks included (measured, one
#: process each: crossed 9,000 x 8,500, 2 θ, BOBYQA 36 + 9, L-BFGS-B 24 gradients;
#: 200k rows with slopes, 4 θ, BOBYQA 77 + 33, L-BFGS-B 29).
SPARSE_BOBYQA_EVALS = (-20.0, 32.5)
SPARSE_LBFGSB_GRADIENTS = (19.0, 2.5)

#: Where the exact gradient does not apply (a later theta below 1e-3), L-BFGS-B gets a
#: forward-difference gradient with this step, at most MAX_FD_GRADIENTS times; beyond that the
#: fit is likely singular and BOBYQA finishes it.
FD_STEP = 1e-7
MAX_FD_GRADIENTS = 3

#: L-BFGS-B works on theta / GRADIENT_SCALE: its first step has unit length, which in theta
#: would usually jump to the bounds; 0.1 keeps it to a plausible change of a relative sd.
GRADIENT_SCALE = 0.1

#: Newton steps at most after L-BFGS-B stops on its line search (_newton_finish).
NEWTON_STEPS = 3

#: L-BFGS-B's projected-gradient stopping tolerance (criterion units per unit of theta).
GRADIENT_GTOL = 1e-6

#: centred_start is used only when some term's covariate mean exceeds this in absolute value
#: (closer to 0 the centred start lies within BOBYQA's first trust region around lme4's start).
CENTRING_MIN = 1.0

#: A theta element this large is far from lme4's start (trust region ~1), where BOBYQA was seen
#: stopping early in the flat valley of a translated covariate: the centred start is tried too.
FAR_THETA = 10.0

_CODES = {code: name for code, (name, _) in NLOPT_CODES.items()}


@dataclass
class OptResult:
    """What the optimizer reports: the estimate, the criterion, and how it got there."""

    theta: np.ndarray
    fval: float
    nfev: int
    return_code: int
    return_name: str
    converged: bool
    singular: bool
    messages: list[str] = field(default_factory=list)
    method: str = "bobyqa"
    log: OptSummary | None = None  # the fit log (mixedref.fitting.optsummary)


def lme4_start(model: ModelFrame) -> np.ndarray:
    """lme4's starting theta: identity templates, or, when every term is ``(1 | f)`` on its own
    factor, sqrt(v / v_e) with v = var(ave(y, f)) per factor and v_e = var(y) - sum(v)."""
    start = model.theta_start.astype(float)
    terms = model.reterms
    groups = [t.group for t in terms]
    if not all(t.columns == ("(Intercept)",) for t in terms) or len(set(groups)) != len(groups):
        return start
    y = np.asarray(model.y, dtype=float)
    if y.size < 2:
        return start
    v = []
    for t in terms:
        sums = np.bincount(t.codes, weights=y, minlength=t.nlevels)
        counts = np.bincount(t.codes, minlength=t.nlevels)
        means = sums / np.maximum(counts, 1)
        v.append(float(np.var(means[t.codes], ddof=1)))
    v_e = float(np.var(y, ddof=1)) - sum(v)
    if not math.isfinite(v_e) or v_e <= 0:
        return start
    return np.sqrt(np.asarray(v) / v_e)


def is_singular(theta: np.ndarray, lower: np.ndarray, tol: float = SINGULAR_TOL) -> bool:
    """lme4's isSingular: some diagonal template element (lower bound 0) below ``tol``."""
    theta, lower = np.asarray(theta), np.asarray(lower)
    return bool(np.any(theta[lower == 0] < tol))


def bobyqa(fn: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray, *,
           xtol_abs: float, ftol_abs: float, maxeval: int, xtol_rel: float = 0.0,
           ftol_rel: float = 0.0, initial_step: np.ndarray | float | None = None
           ) -> tuple[np.ndarray, float, int, int]:
    """One NLopt BOBYQA run from x0 (lmer's and glmer's one wrapper); returns (x, f, NLopt
    return code, evaluations). The best point evaluated is kept when NLopt stops on roundoff
    (code -4) or fails (code -1), as lme4's nloptwrap reports the last optimum."""
    k = x0.size
    opt = nlopt.opt(nlopt.LN_BOBYQA, k)
    opt.set_lower_bounds(lower)
    opt.set_xtol_abs(xtol_abs)
    opt.set_ftol_abs(ftol_abs)
    if xtol_rel > 0:
        opt.set_xtol_rel(xtol_rel)
    if ftol_rel > 0:
        opt.set_ftol_rel(ftol_rel)
    opt.set_maxeval(int(maxeval))
    if initial_step is not None:
        opt.set_initial_step(np.broadcast_to(np.asarray(initial_step, dtype=float), (k,)).copy())
    best = [math.inf, x0.copy()]
    count = [0]

    def f(x: np.ndarray, grad: np.ndarray) -> float:
        count[0] += 1
        val = fn(x)
        if val < best[0]:
            best[0], best[1] = val, x.copy()
        return val

    opt.set_min_objective(f)
    try:
        x = opt.optimize(x0)
        code = opt.last_optimize_result()
        fx = opt.last_optimum_value()
    except nlopt.RoundoffLimited:
        x, fx, code = best[1], best[0], -4
    except (RuntimeError, ValueError) as exc:  # NLopt's generic failure / invalid args
        if not math.isfinite(best[0]):
            msg = f"the optimizer failed before any finite evaluation: {exc}"
            raise MixedrefError(msg) from exc
        x, fx, code = best[1], best[0], -1
    if best[0] < fx:
        x, fx = best[1], best[0]
    return np.asarray(x, dtype=float), float(fx), int(code), count[0]


def bobyqa_run(fn: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray,
               control: Control, initial_step: np.ndarray | float | None = None
               ) -> tuple[np.ndarray, float, int, int]:
    """One BOBYQA run under the control's stopping rules (lmer's and glmer's); ``initial_step``
    overrides ``control.initial_step``. Returns (x, f, NLopt return code, evaluations)."""
    step = control.initial_step if initial_step is None else initial_step
    return bobyqa(fn, x0, lower, xtol_abs=control.xtol_abs, ftol_abs=control.ftol_abs,
                  maxeval=control.maxeval, xtol_rel=control.xtol_rel,
                  ftol_rel=control.ftol_rel, initial_step=step)


def _bobyqa(fn: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray,
            control: Control) -> tuple[np.ndarray, float, int]:
    """One BOBYQA run under lmer's control settings; returns (x, f, NLopt return code)."""
    x, fx, code, _ = bobyqa_run(fn, x0, lower, control)
    return x, fx, code


class Penalized:
    """A criterion made safe for BOBYQA: an evaluation raising one of ``failures`` or giving a
    non-finite value returns a value far above the best so far (1e300 before any finite one), so
    BOBYQA's quadratic model stays finite (an inf would poison it); ``count`` says how often.
    ``first`` keeps the first value as evaluated (the start's criterion)."""

    def __init__(self, fn: Callable[[np.ndarray], float],
                 failures: tuple[type[Exception], ...] = ()) -> None:
        self.fn, self.failures = fn, failures
        self.best, self.count = math.inf, 0
        self.first: float | None = None  # the first value returned (the start's criterion)

    def __call__(self, x: np.ndarray) -> float:
        try:
            val = float(self.fn(x))
        except self.failures:
            val = math.inf
        if self.first is None:
            self.first = val
        if not math.isfinite(val):
            self.count += 1
            val = 1e300 if not math.isfinite(self.best) else self.best + 1e10
        self.best = min(self.best, val)
        return val


class _NoGradient(Exception):
    """The objective left the region where its exact gradient applies."""


class _Stalled(Exception):
    """L-BFGS-B's trial points sit at the criterion's rounding floor around its best point."""


#: L-BFGS-B is stopped (and the Newton finish judges the estimate) after this many evaluations
#: in a row that neither lower the best criterion by ftol_abs nor leave FLOOR_FTOLS * ftol_abs
#: of it: at large n the criterion's rounding (1e-8 at 1e6 rows) exceeds scipy's ftol, and its
#: line search would spend a dozen evaluations on noise before giving up.
STALL_EVALS = 2
FLOOR_FTOLS = 100.0
#: STALL_EVALS where the objective has its exact Hessian: the Newton finish then judges the
#: estimate (and steps where its predicted decrease exceeds ftol_abs) for about two gradients'
#: work, so evaluations within FLOOR_FTOLS * ftol_abs of the best only confirm what it will
#: (InstEval ML and REML: 12 -> 11 gradients, the estimate's criterion within 1e-11)
STALL_EVALS_EXACT = 1


def _lbfgsb(value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray | None]],
            x0: np.ndarray, lower: np.ndarray, control: Control,
            exact_finish: bool = False
            ) -> tuple[np.ndarray, float, bool, int | None, str]:
    """L-BFGS-B with the exact gradient; returns (best x, its f, whether it converged, scipy's
    status, scipy's message). It stops after STALL_EVALS evaluations in a row at the
    criterion's rounding floor; with ``exact_finish`` (the exact Newton finish follows: see
    STALL_EVALS_EXACT) after one within FLOOR_FTOLS * ftol_abs of the best that does not lower
    it by as much."""
    stall_evals = STALL_EVALS_EXACT if exact_finish else STALL_EVALS
    progress = (FLOOR_FTOLS if exact_finish else 1.0) * control.ftol_abs
    best = [math.inf, x0.copy()]
    fallbacks = [0]
    stalled = [0]
    cache: dict[bytes, tuple[float, np.ndarray]] = {}

    z0 = x0 / GRADIENT_SCALE

    def fg(z: np.ndarray) -> tuple[float, np.ndarray]:
        # the start is x0 itself (z0 * GRADIENT_SCALE may round away from it by an ulp)
        x = x0 if np.array_equal(z, z0) else np.maximum(z * GRADIENT_SCALE, lower)
        key = x.tobytes()
        if key in cache:
            return cache[key]
        f, g = value_and_grad(x)
        floor = abs(f - best[0]) <= FLOOR_FTOLS * control.ftol_abs
        stalled[0] = stalled[0] + 1 if floor and not f < best[0] - progress else 0
        if f < best[0]:
            best[0], best[1] = f, x.copy()
        if not math.isfinite(f):
            raise _NoGradient
        if stalled[0] >= stall_evals:
            raise _Stalled
        if g is None:  # e.g. a trial point near theta = 0: forward differences, a few times
            fallbacks[0] += 1
            if fallbacks[0] > MAX_FD_GRADIENTS:
                raise _NoGradient
            g = np.empty(x.size)
            for i in range(x.size):
                xi = x.copy()
                xi[i] += FD_STEP
                g[i] = (value_and_grad(xi)[0] - f) / FD_STEP
        cache.clear()
        cache[key] = (f, g * GRADIENT_SCALE)
        return cache[key]

    f0, _ = fg(z0)
    bounds = [(lo / GRADIENT_SCALE if np.isfinite(lo) else None, None) for lo in lower]
    # scipy stops when (f_k - f_k+1) / max(|f_k|, |f_k+1|, 1) <= ftol: that is lme4's ftol_abs
    options = {"ftol": control.ftol_abs / max(abs(f0), 1.0), "gtol": GRADIENT_GTOL * GRADIENT_SCALE,
               "maxiter": int(control.maxeval), "maxfun": int(control.maxeval), "maxls": 8}
    try:
        res = minimize(fg, z0, jac=True, method="L-BFGS-B", bounds=bounds, options=options)
    except _NoGradient:
        return best[1], best[0], False, None, "left the region of the exact gradient"
    except _Stalled:
        return best[1], best[0], False, None, "stalled at the criterion's rounding floor"
    if res.status == 2:  # line search failed: converged if at the criterion's noise floor
        g = np.asarray(res.jac, dtype=float)
        g = np.where((res.x <= np.asarray([b[0] if b[0] is not None else -np.inf
                                           for b in bounds])) & (g > 0), 0.0, g)
        predicted = 0.5 * float(g @ res.hess_inv.matvec(g))
        return best[1], best[0], predicted <= control.ftol_abs, int(res.status), str(res.message)
    return best[1], best[0], bool(res.success), int(res.status), str(res.message)


def _newton_finish(fn: Callable[[np.ndarray], float],
                   value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray | None]],
                   x: np.ndarray, fx: float, lower: np.ndarray, control: Control,
                   max_steps: int = NEWTON_STEPS,
                   value_grad_hess: Callable[[np.ndarray], ExactDerivatives | None]
                   | None = None
                   ) -> tuple[np.ndarray, float, int, tuple[np.ndarray, ...]] | None:
    """Where L-BFGS-B stops on its line search (at large n the criterion's rounding floor sits
    above its ftol): Newton steps with the Hessian from central differences of the exact
    gradient (2k gradients: what lme4's checks compute anyway, and kept for them), or the
    engine's exact Hessian (``value_grad_hess``, about two gradients' work), until the
    predicted decrease g' H^-1 g / 2 is at most ftol_abs. Returns (θ, criterion, steps taken,
    (free, gradient, Hessian) at θ), or None where the Hessian is not positive definite or a
    step does not lower the criterion (BOBYQA then finishes, as before)."""
    for steps in range(max_steps + 1):
        free, g, H = derivatives(fn, x, lower, value_and_grad=value_and_grad,
                                 value_grad_hess=value_grad_hess)
        if free.size == 0:
            return None
        try:
            L = cholesky(H)
            step = cholesky_step(L, g)
        except np.linalg.LinAlgError:
            return None
        if 0.5 * float(g @ step) <= control.ftol_abs:
            return x, fx, steps, (free, g, H)
        if steps == max_steps:
            return None
        xt = x.copy()
        xt[free] -= step
        xt = np.maximum(xt, lower)
        ft = fn(xt)
        if not ft < fx:
            return None
        x, fx = xt, ft
    return None


def optimize_theta(fn: Objective, model: ModelFrame,
                   control: Control | Mapping[str, Any] | None = None) -> OptResult:
    """Minimize the objective over θ within lme4's bounds, from lme4's start, as lme4 does,
    and check the result as lme4's checkConv does; the fit log is ``result.log``."""
    t0 = time.perf_counter()
    control = Control.from_any(control)
    lower = model.theta_lower.astype(float)
    if control.start is not None:
        x0 = np.asarray(control.start, dtype=float)
        if x0.shape != lower.shape:
            raise MixedrefError(f"start theta must have {lower.size} elements, got {x0.size}")
        if np.any(x0 < lower):
            raise MixedrefError(f"start theta {x0.tolist()} violates the lower bounds "
                                f"{lower.tolist()}")
        alt = None
    else:
        x0, alt = lme4_start(model), centred_start(model)
    method = _choose_method(fn, control)
    # L-BFGS-B's first evaluation is the start's gradient: its criterion is the start's, so
    # it is taken once (remembered below for L-BFGS-B) rather than after a criterion alone
    first = fn.value_and_grad(x0) if method == "lbfgsb" else None
    finitial = float(fn(x0)) if first is None else float(first[0])
    if not math.isfinite(finitial):
        raise MixedrefError(f"the criterion is {finitial} at the start θ {x0.tolist()}: the "
                            "model cannot be evaluated (check the response and the design)")
    log = OptSummary(optimizer="", settings=_settings(control), start=x0.tolist(),
                     finitial=finitial)
    nfev = 0 if first is None else 1

    def counted(x: np.ndarray) -> float:
        # a θ whose system cannot be factored gets the start's criterion (MixedModels.jl):
        # finite and no better than the start, so BOBYQA's quadratic model stays sane
        nonlocal nfev
        nfev += 1
        v = fn(x)
        if not math.isfinite(v):
            log.nonfinite += 1
            return finitial
        return v

    # the last gradient's θ and result
    last_grad: list = [None, None] if first is None else [x0.tobytes(), first]

    def counted_grad(x: np.ndarray) -> tuple[float, np.ndarray | None]:
        # remembered: the finish asks again where L-BFGS-B stopped (polish's applicability
        # test, the Newton finish's derivatives), a gradient each time
        nonlocal nfev
        key = np.asarray(x, dtype=float).tobytes()
        if last_grad[0] != key:
            nfev += 1
            last_grad[0], last_grad[1] = key, fn.value_and_grad(x)
        return last_grad[1]

    exact_hessian = _hessian_of(fn)
    counted_hess = None
    if exact_hessian is not None:
        def counted_hess(x: np.ndarray) -> ExactDerivatives | None:
            nonlocal nfev
            nfev += 1
            return exact_hessian(x)

    derivs: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # θ -> lme4's checks
    if method == "lbfgsb":
        x, fx, ok, status, message = _lbfgsb(
            counted_grad, x0, lower, control, exact_finish=counted_hess is not None)
        code, name = status, f"scipy L-BFGS-B: {message}"
        meaning = "converged" if ok else "did not converge"
        finished = None if ok else _newton_finish(counted, counted_grad, x, fx, lower, control,
                                                  value_grad_hess=counted_hess)
        if finished is not None:
            x, fx, steps, derivs[x.tobytes()] = finished
            method, meaning = "lbfgsb+newton", "converged"
            log.strategies.append(f"L-BFGS-B stopped ({message}); {steps} Newton step(s) "
                                  "finished there (predicted decrease below ftol_abs)")
        elif not ok:
            method = "lbfgsb+bobyqa"
            log.strategies.append(f"L-BFGS-B stopped ({message}); BOBYQA finished from there")
            x, fx, code = _bobyqa(counted, x, lower, control)
            name, meaning = NLOPT_CODES.get(code, (str(code), "unknown code"))
    else:
        x, fx, code = _bobyqa(counted, x0, lower, control)
        name, meaning = NLOPT_CODES.get(code, (str(code), "unknown code"))
    nlopt_ran = "bobyqa" in method  # NLopt codes (not scipy statuses) below
    if control.restart_edge:
        x1, f1, code1 = _restart_edge(counted, x, fx, code, lower, control)
        if f1 < fx:
            log.strategies.append(f"restart from the edge: {fx - f1:.3g} lower")
        x, fx, code = x1, f1, code1
    if (alt is not None and method == "bobyqa"
            and (is_singular(x, lower) or np.max(np.abs(x)) >= FAR_THETA)):
        # a boundary optimum may be a local one, and a far one may be an early stop in a flat
        # valley: both seen from lme4's start for covariates far from 0; try the centred start
        x2, f2, code2 = _bobyqa(counted, alt, lower, control)
        if control.restart_edge:
            x2, f2, code2 = _restart_edge(counted, x2, f2, code2, lower, control)
        if f2 < fx - control.ftol_abs:
            log.strategies.append(f"centred start won: {fx - f2:.3g} lower")
            x, fx, code, method = x2, f2, code2, "bobyqa+centred"
            name, meaning = NLOPT_CODES.get(code, (str(code), "unknown code"))
    x, fx = snap_to_boundary(counted, x, fx, lower, control.boundary_tol)
    polished = 0
    # mixedref.fitting.polish; not after L-BFGS-B's Newton finish, which has already judged the
    # estimate by a Newton step (on InstEval the polish doubled the fit, 1.0 -> 2.2 s, and ended
    # 8e-11 higher: rounding)
    if control.polish and method != "lbfgsb+newton":
        # the exact Hessian after L-BFGS-B only (the large fits): the small fits keep the
        # differenced one their polish and checks were measured with
        x, fx, polished, known = polish_with_derivatives(
            fn, x, fx, lower, counted, counted_grad,
            value_grad_hess=counted_hess if method.startswith("lbfgsb") else None)
        if known is not None:  # the polish's last derivatives, at (or within 1e-6 of) x
            derivs[x.tobytes()] = known
    if polished:
        log.strategies.append(f"{polished} Newton step(s) on the exact gradient (polish)")
    conv = code if nlopt_ran and (code < 0 or code == 5) else 0
    _checks(fn, x, lower, control, log, derivs.get(x.tobytes()))
    reasons = reasons_to_rescue(log.checks, is_singular(x, lower, control.check_conv_singular),
                                conv, model, x, FAR_THETA)
    if control.rescue and reasons:
        problem = _problem(fn, counted, counted_grad, lambda: nfev, model, control, alt)
        won = _rescue(problem, x, fx, control, reasons, conv, log)
        if won is not None:
            x, fx, code = won
            method, conv = f"{method}+rescue", 0  # the checks judge the rescued estimate
            if code is not None:
                name, meaning = NLOPT_CODES.get(code, (str(code), "unknown code"))
            else:
                name, meaning = "scipy L-BFGS-B", "a gradient run of mixedref.fitting.strategies"
    messages: list[str] = []
    if conv != 0:
        messages.append(f"convergence code {conv} from nloptwrap: {_CODES.get(code, code)}")
    singular = is_singular(x, lower, control.check_conv_singular)
    if singular:
        messages.append("boundary (singular) fit: see help('isSingular')")
    messages += log.checks
    log.optimizer, log.theta, log.fmin, log.nfev = method, x.tolist(), float(fx), nfev
    log.return_code, log.return_name, log.return_meaning = code, name, meaning
    log.seconds = time.perf_counter() - t0
    return OptResult(theta=x, fval=fx, nfev=nfev, return_code=code if code is not None else 0,
                     return_name=name, converged=conv == 0 and not log.checks,
                     singular=singular, messages=messages, method=method, log=log)


def _problem(fn: Objective, counted: Callable[[np.ndarray], float],
             counted_grad: Callable[[np.ndarray], tuple[float, np.ndarray | None]],
             counter: Callable[[], int], model: ModelFrame, control: Control,
             alt: np.ndarray | None) -> Problem:
    """What mixedref.fitting.strategies needs of this fit: its counted criterion and gradient,
    BOBYQA
    under its settings (with a per-run cap), θ's scales, the centred start, its budget."""
    def local(f: Callable[[np.ndarray], float], z0: np.ndarray, lo: np.ndarray,
              maxeval: int) -> tuple[np.ndarray, float, int]:
        return _bobyqa(f, z0, lo, replace(control, maxeval=min(control.maxeval, maxeval)))

    starts = [("centred start", alt)] if alt is not None else []
    return Problem(counted, fn, model, model.theta_lower.astype(float), local,
                   theta_scales(model), starts,
                   value_and_grad=counted_grad if fn.has_gradient else None,
                   counter=counter, budget=control.maxeval)


def _rescue(problem: Problem, x: np.ndarray, fx: float, control: Control, reasons: list[str],
            conv: int, log: OptSummary) -> tuple[np.ndarray, float, int | None] | None:
    """Where a check failed, mixedref.fitting.strategies from the estimate; returns (θ, criterion,
    NLopt code of the winning run) when a strategy won (the log says which, and the checks are
    redone there), else None."""
    counted, lower = problem.fn, problem.lower

    def edge(x1: np.ndarray, f1: float) -> tuple[np.ndarray, float]:
        if not control.restart_edge:
            return x1, f1
        x2, f2, _ = _restart_edge(counted, x1, f1, 0, lower, control)
        return x2, f2

    if problem.left() <= 0 or not worth_rescuing(problem, x, reasons):
        return None
    log.rescue_reasons = reasons
    def accept(theta: np.ndarray) -> tuple[bool, bool]:
        # (lme4's checks pass, the estimate is singular), judged in the scaled φ = s θ (the
        # model with unit-scale columns, the same criterion): in θ a column on the scale 1e4
        # puts its θ near 1e-4, inside the checks' boundary margin and below their step, and
        # the Hessian's eigenvalues 1e10 apart whatever the estimate (sim_badscale3: "nearly
        # unidentifiable" in θ, every check passing in φ)
        s = problem.scales
        phi = s * theta
        singular = is_singular(phi, lower, control.check_conv_singular)
        if not control.calc_derivs:
            return False, singular
        vg = problem.value_and_grad
        grad_fn = None
        if vg is not None and _gradient_pays(problem.objective, phi, lower):
            def grad_fn(p: np.ndarray) -> tuple[float, np.ndarray | None]:
                v, g = vg(p / s)
                return v, None if g is None else np.asarray(g) / s
        _, grad, hess = derivatives(lambda p: counted(p / s), phi, lower,
                                    value_and_grad=grad_fn)
        passes = not check(grad, hess, control.check_conv_grad, control.check_conv_hess)[0]
        return passes, singular

    res = rescue(problem, x, fx, reasons, problem.counter, edge,
                 checks_failed=bool(log.checks) or conv != 0, accept=accept)
    log.rescue = [{"strategy": a.strategy, "fval": a.fval, "nfev": a.nfev,
                   "seconds": a.seconds} for a in res.attempts]
    if res.winner is None:
        log.strategies.append(f"rescue ran ({', '.join(reasons)}); no strategy won")
        return None
    log.winner, log.gain = res.winner, res.gain
    steps = "; ".join(f"{name}: {gain:.3g}" for name, gain in res.steps)
    log.strategies.append(f"{res.winner} won: {res.gain:.3g} lower in all "
                          f"({', '.join(reasons)}; improvements: {steps})")
    x, fx = snap_to_boundary(counted, res.theta, res.fval, lower, control.boundary_tol)
    _checks(problem.objective, x, lower, control, log)
    return x, fx, res.code


def _checks(fn: Objective, x: np.ndarray, lower: np.ndarray, control: Control,
            log: OptSummary,
            known: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
    """lme4's checkConv at x (when calc_derivs): gradient, Hessian eigenvalues and warnings
    into the log. ``known`` is (free, gradient, Hessian) already computed at x."""
    if not control.calc_derivs:
        log.checks, log.gradient, log.hessian_eigenvalues = [], None, None
        return
    grad_fn = fn.value_and_grad if _gradient_pays(fn, x, lower) else None
    # the exact Hessian only where the exact gradient is used anyway: elsewhere (small fits)
    # the checks keep lme4's differences of the criterion
    exact = _hessian_of(fn) if grad_fn is not None else None
    _, grad, hess = known if known is not None else derivatives(
        fn, x, lower, value_and_grad=grad_fn, value_grad_hess=exact)
    log.checks, log.hessian_eigenvalues = check(grad, hess, control.check_conv_grad,
                                                control.check_conv_hess)
    log.gradient = [float(g) for g in grad]


def _hessian_of(fn: Objective) -> Callable[[np.ndarray], ExactDerivatives | None] | None:
    """The objective's exact (criterion, gradient, Hessian), where it offers them (the dense
    engine's ``value_grad_hess`` where ``has_hessian``: every term scalar; not part of the
    Objective protocol)."""
    vgh = getattr(fn, "value_grad_hess", None)
    return vgh if callable(vgh) and getattr(fn, "has_hessian", False) else None


def _settings(control: Control) -> dict[str, Any]:
    """The control's fields as a dict for the log: dataclasses.asdict without its deep copy
    (every field is a number, a string, None or a tuple of numbers), a tenth of its time."""
    return {f.name: getattr(control, f.name) for f in fields(control)}


def _gradient_pays(fn: Objective, x: np.ndarray, lower: np.ndarray) -> bool:
    """Whether lme4's checks should take the Hessian from the exact gradient (2k + 1 gradients)
    rather than from the criterion (2k² + 1 evaluations, as lme4), k the free θ elements: by
    that count, a gradient costing ``gradient_cost`` evaluations (cake's one θ: 3 evaluations,
    not 3 gradients of 4 evaluations' time each)."""
    if not fn.has_gradient:
        return False
    cost = float(getattr(fn, "gradient_cost", 2.5))
    k = free_elements(x, lower).size
    return (2 * k + 1) * cost < 2 * k * k + 1


def _restart_edge(fn: Callable[[np.ndarray], float], x: np.ndarray, fx: float, code: int,
                  lower: np.ndarray, control: Control) -> tuple[np.ndarray, float, int]:
    """lme4's restart_edge: if a parameter sits exactly on its bound and the criterion falls
    when it moves off by 1e-5, run BOBYQA again from there."""
    on_bound = np.flatnonzero(x == lower)
    if on_bound.size:
        d0 = fn(x)
        btol = 1e-5
        slopes = []
        for i in on_bound:
            xt = x.copy()
            xt[i] = lower[i] + btol
            slopes.append((fn(xt) - d0) / btol)
        if min(slopes) < 0:
            return _bobyqa(fn, x, lower, control)
    return x, fx, code


def centred_start(model: ModelFrame) -> np.ndarray | None:
    """lme4's identity start for the model with every term's covariates centred, in the
    original model's theta; None when no term has an intercept and a covariate to centre.

    For a term with an intercept, z'b = (b_0 + m'b_z) + (z - m)'b_z: centring its other
    columns at their means m is the linear map b = B b_c with B = [[1, -m'], [0, I]], so the
    criterion is the same function after theta's template T becomes chol(B T T' B'). The identity
    start of the centred term is therefore T0 = chol(B B'). A covariate far from 0 (x + 25)
    puts the optimum at a large intercept theta, far from the identity start, and BOBYQA from
    the identity can settle in a local minimum on the boundary instead (lme4 too, by chance of
    rounding); from T0 the search starts where the centred problem's would.
    """
    parts, moved = [], False
    for t in model.reterms:
        start = t.theta_start.astype(float)
        if t.q > 1 and t.columns[0] == "(Intercept)":
            B = np.eye(t.q)
            B[0, 1:] = -np.asarray(t.X, dtype=float)[:, 1:].mean(axis=0)
            T0 = np.linalg.cholesky(B @ B.T)
            start = t.theta_of(T0)
            moved = moved or bool(np.max(np.abs(B[0, 1:])) > CENTRING_MIN)
        parts.append(start)
    return np.concatenate(parts) if moved else None


def _choose_method(fn: Objective, control: Control) -> str:
    """"bobyqa" or "lbfgsb" from ``control.method`` and what the objective offers."""
    has_grad = bool(fn.has_gradient)
    if control.method == "bobyqa":
        return "bobyqa"
    if control.method == "lbfgsb":
        if not has_grad:
            raise MixedrefError("method='lbfgsb' needs the exact gradient, which this objective "
                                "does not offer (the sparse engine, or a dense design whose "
                                "general gradient would be too large)")
        return "lbfgsb"
    if control.method != "auto":
        raise MixedrefError(f"unknown method {control.method!r}; use 'auto', 'bobyqa' or "
                            "'lbfgsb'")
    if has_grad and getattr(fn, "engine", None) == "sparse":
        return "lbfgsb" if sparse_gradient_wins(fn.ntheta, fn.gradient_cost) else "bobyqa"
    big = int(fn.size) >= GRADIENT_MIN_BLOCK or int(fn.ntheta) >= GRADIENT_MIN_THETA
    return "lbfgsb" if has_grad and big else "bobyqa"


def sparse_gradient_wins(ntheta: int, gradient_cost: float) -> bool:
    """Whether L-BFGS-B on the sparse engine's exact gradient should beat BOBYQA for θ of
    ``ntheta`` elements, a gradient costing ``gradient_cost`` evaluations (about 3 where the
    factor's dense root block dominates: its selected inverse takes twice its factorization):
    the expected fit's work in evaluations, each method's count a line in k fitted to the sparse
    shapes (SPARSE_BOBYQA_EVALS, SPARSE_LBFGSB_GRADIENTS)."""
    k = float(ntheta)
    a, b = SPARSE_BOBYQA_EVALS
    c, d = SPARSE_LBFGSB_GRADIENTS
    return gradient_cost * (c + d * k) < a + b * k
