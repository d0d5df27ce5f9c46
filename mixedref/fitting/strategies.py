"""Rescue strategies: what runs after lme4's default optimizer when one of its checks fails.

BOBYQA from lme4's start sometimes stops early: on a maximal crossed model (20 θ), on a term
whose columns are on scales 1e-4 and 1e4 (θ badly conditioned), near a correlation of ±1. The
criterion there is right; the optimizer stopped short. When a check fails (checkConv's gradient
or Hessian, a singular fit, badly scaled predictors, θ far from the start, a non-zero return
code) :func:`rescue` continues from the estimate with the strategies below and keeps the lowest
criterion, each candidate's criterion evaluated through the objective (a strategy's own value
is never trusted). A fit whose checks pass never gets here: cheap cases stay cheap. The rescue
itself is kept cheap: each strategy's local run is L-BFGS-B on the criterion's exact gradient
where the objective has one (:meth:`Problem.local_phi`, mixedref.fitting.gradient_run), BOBYQA only
where it has none, and the search stops at the first improvement where lme4's checks pass (on a
singular estimate after the boundary search's other faces: :func:`rescue`'s ``accept``).

Every strategy works in a diagonally scaled θ, φ = s ⊙ θ with s the scale of the row's column
in its term (:func:`theta_scales`: the column's SD, 1 for an intercept). For a column z_i
divided by s_i the template becomes D_s T, so φ is the θ of the model with unit-scale columns:
there BOBYQA's trust region and L-BFGS-B's steps are of one size in every direction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mixedref.engines.objective import Objective
from mixedref.fitting.gradient_run import POLISH_FTOL_ABS, POLISH_GTOL, lbfgsb_phi
from mixedref.frontend.design import ModelFrame, ReTerm

#: A term column whose SD is off 1 by more than this factor makes the design "badly scaled"
#: for θ (lme4's checkScaleX uses 1e3 for the fixed effects; θ's conditioning suffers sooner).
SCALE_RATIO = 10.0

#: Perturbed restarts: how many, their seed, and the size of the perturbation of φ
#: (multiplicative log-normal on diagonals, additive in units of the row's size elsewhere).
N_PERTURBED = 2
SEED = 20240615
PERTURB = 0.3

#: Boundary search: a term is near singular when some template diagonal's share of its
#: effect's SD (T_jj / sqrt((T T')_jj)) is below this. Its diagonals are then candidates for
#: T_jj = 0 (effect j a linear combination of the earlier ones: a correlation ±1 when j = 2)
#: and for row j = 0 (variance 0): the optimum may lie on another face of the boundary than
#: the one BOBYQA reached.
NEAR_BOUNDARY = 0.25
#: At most this many diagonals per term are tried (the smallest shares first), and at most
#: this many boundary runs in all (each a local run over the rest of θ).
MAX_BOUNDARY_PER_TERM = 3
MAX_BOUNDARY_RUNS = 6
#: The term's other diagonals at 0 start this share of its largest element above 0, so that
#: the search explores the chosen face, not its intersection with the face already reached.
LIFT = 0.1

#: A strategy wins only when its criterion is lower by more than this (absolute).
MIN_GAIN = 1e-7

#: Each local run of a strategy stops after this many evaluations (or gradients) per free θ
#: element: a BOBYQA run from a poor start otherwise crawls for thousands (the default run has
#: had its chance).
EVALS_PER_THETA = 100

#: BOBYQA under the fit's settings: (criterion, start, lower bounds, maxeval) -> (x, f, code).
LocalRun = Callable[[Callable[[np.ndarray], float], np.ndarray, np.ndarray, int],
                    tuple[np.ndarray, float, int]]


@dataclass
class Problem:
    """What every strategy needs: the (counted, finite) criterion, the objective (for its exact
    gradient), the model's terms, θ's lower bounds, the BOBYQA runner under the fit's control
    settings, and θ's scales."""

    fn: Callable[[np.ndarray], float]
    objective: Objective
    model: ModelFrame
    lower: np.ndarray
    local: LocalRun
    scales: np.ndarray
    extra_starts: Sequence[tuple[str, np.ndarray]] = ()
    #: the objective's exact value and gradient, counted (None where it has none)
    value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray | None]] | None = None
    counter: Callable[[], int] = lambda: 0  # evaluations so far (the fit's nfev)
    budget: int = 10**9  # the fit's maxeval: the strategies stop when nfev reaches it

    def left(self) -> int:
        """Evaluations left in the fit's budget."""
        return self.budget - self.counter()

    def to_theta(self, phi: np.ndarray) -> np.ndarray:
        """θ of a scaled φ."""
        return np.asarray(phi, dtype=float) / self.scales

    def to_phi(self, theta: np.ndarray) -> np.ndarray:
        """Scaled φ of a θ."""
        return np.asarray(theta, dtype=float) * self.scales

    def bobyqa_phi(self, phi0: np.ndarray, fixed: np.ndarray | None = None
                   ) -> tuple[np.ndarray, int]:
        """BOBYQA over φ from phi0 with the elements where ``fixed`` is True held at phi0's
        values; returns (θ, NLopt code)."""
        free = np.ones(phi0.size, dtype=bool) if fixed is None else ~fixed
        base = np.asarray(phi0, dtype=float).copy()

        def f(z: np.ndarray) -> float:
            phi = base.copy()
            phi[free] = z
            return self.fn(self.to_theta(phi))

        lower_phi = self.lower[free]  # scales are positive: bounds 0 and -inf are kept
        z0 = np.maximum(base[free], lower_phi)
        maxeval = min(EVALS_PER_THETA * max(int(free.sum()), 1), self.left())
        if maxeval <= 0:
            return self.to_theta(base), 5
        z, _, code = self.local(f, z0, lower_phi, maxeval)
        phi = base.copy()
        phi[free] = z
        return self.to_theta(phi), code

    def local_phi(self, phi0: np.ndarray, fixed: np.ndarray | None = None
                  ) -> tuple[np.ndarray, int | None]:
        """A local run over φ from phi0 with the ``fixed`` elements held: L-BFGS-B on the exact
        gradient where the objective has one (mixedref.fitting.gradient_run: a few dozen gradients
        where BOBYQA takes hundreds to thousands of evaluations), BOBYQA otherwise and to
        finish a gradient run that a non-finite criterion stopped. Returns (θ, NLopt code of
        its BOBYQA run, None after L-BFGS-B alone)."""
        if self.value_and_grad is None:
            return self.bobyqa_phi(phi0, fixed)
        free = np.ones(phi0.size, dtype=bool) if fixed is None else ~fixed
        maxfun = min(EVALS_PER_THETA * max(int(free.sum()), 1), self.left())
        if maxfun <= 0:
            return self.to_theta(phi0), 5
        theta, _, ok = lbfgsb_phi(self.fn, self.value_and_grad, self.scales, self.lower,
                                  phi0, free, maxfun)
        if ok:
            return theta, None
        return self.bobyqa_phi(self.to_phi(theta), fixed)


@dataclass
class Attempt:
    """One strategy's result: its θ and its criterion re-evaluated through the objective."""

    strategy: str
    theta: np.ndarray
    fval: float
    code: int | None = None  # NLopt's return code of its last BOBYQA run, None for scipy
    nfev: int = 0
    seconds: float = 0.0


@dataclass
class RescueResult:
    """The best θ after the strategies, the reasons they ran and every attempt."""

    theta: np.ndarray
    fval: float
    winner: str | None
    gain: float
    reasons: list[str]
    attempts: list[Attempt] = field(default_factory=list)
    code: int | None = None  # NLopt's code of the last improving run (None: scipy's)
    steps: list[tuple[str, float]] = field(default_factory=list)  # each improvement, in order


_ONE = np.ones(1)
_ONE.setflags(write=False)


def theta_scales(model: ModelFrame) -> np.ndarray:
    """Per θ element the scale of its template row's column: the column's SD, or its root mean
    square when constant (1 for an intercept), 1 where that is 0 or not finite."""
    parts = []
    for t in model.reterms:
        if t.columns == ("(Intercept)",):  # a column of ones: SD 0, root mean square 1.0
            parts.append(_ONE)  # exactly (mean of ones), without the reductions
            continue
        X = np.asarray(t.X, dtype=float)
        sd = X.std(axis=0, ddof=1) if X.shape[0] > 1 else np.zeros(t.q)
        rms = np.sqrt(np.mean(X * X, axis=0))
        s = np.where(sd > 0, sd, rms)
        s = np.where(np.isfinite(s) & (s > 0), s, 1.0)
        rows, _ = t.positions
        parts.append(s[rows])
    return np.concatenate(parts) if parts else np.zeros(0)


def badly_scaled(scales: np.ndarray) -> bool:
    """Whether some random-effects column's scale is off 1 by more than SCALE_RATIO."""
    return bool(scales.size) and bool(np.max(np.abs(np.log(scales))) > math.log(SCALE_RATIO))


def reasons_to_rescue(checks: Sequence[str], singular: bool, conv: int, model: ModelFrame,
                      theta: np.ndarray, far: float) -> list[str]:
    """Why the strategies should run (empty: the default optimizer's answer stands)."""
    out = []
    if conv != 0:
        out.append(f"return code {conv}")
    if checks:
        out.append("convergence check failed")
    if singular:
        out.append("singular fit")
    if model.scale_warning or badly_scaled(theta_scales(model)):
        out.append("predictors on very different scales")
    if theta.size and float(np.max(np.abs(theta))) >= far:
        out.append("θ far from the start")
    return out


def _attempt(problem: Problem, name: str, run: Callable[[], tuple[np.ndarray, int | None]],
             counter: Callable[[], int]) -> Attempt:
    """Run one strategy and re-evaluate its θ through the objective."""
    t0, n0 = time.perf_counter(), counter()
    theta, code = run()
    theta = np.maximum(np.asarray(theta, dtype=float), problem.lower)
    fval = float(problem.fn(theta))
    return Attempt(name, theta, fval, code, counter() - n0, time.perf_counter() - t0)


def rescaled(problem: Problem, theta: np.ndarray) -> list[tuple[str, Callable]]:
    """Local runs in the scaled φ, from the scaled problem's own identity start and from the
    estimate: with columns on scales 1e-4 and 1e4 θ's elements differ by 1e8 and one trust
    region (or one L-BFGS-B step) cannot fit them all; in φ they are of one size."""
    if not badly_scaled(problem.scales):
        return []
    ident = np.concatenate([t.theta_start for t in problem.model.reterms]).astype(float)
    return [("rescaled θ from the identity", lambda: problem.local_phi(ident)),
            ("rescaled θ from the estimate", lambda: problem.local_phi(problem.to_phi(theta)))]


def boundary_search(problem: Problem, theta: np.ndarray) -> list[tuple[str, Callable]]:
    """For each vector-valued term near singular, optimize the rest with one template diagonal
    at zero (effect j a combination of the earlier ones: a correlation ±1 for j = 2) and with
    that effect's whole row at zero (its variance 0): near such a boundary the criterion is a
    narrow ridge that BOBYQA crawls along, while on the boundary itself the rest is easy. The
    faces are tried nearest first (smallest share of the diagonal), at most MAX_BOUNDARY_RUNS."""
    phi = problem.to_phi(theta)
    faces = []
    off = 0
    for t in problem.model.reterms:
        if t.q > 1:
            share = _diagonal_shares(t, phi[off:off + t.ntheta])
            if share.min() < NEAR_BOUNDARY:
                order = np.argsort(share, kind="stable")[:MAX_BOUNDARY_PER_TERM]
                faces += [(float(share[j]), off, t, int(j)) for j in order]
        off += t.ntheta
    runs: list[tuple[str, Callable]] = []
    for _, off, t, j in sorted(faces, key=lambda f: f[0]):
        rows, cols = t.positions
        label = f"boundary {t.group}: {t.columns[j]}"
        masks = []
        if j > 0:  # the first effect has no earlier ones: the same face as variance 0
            masks.append((f"{label} in the span of the earlier", (rows == j) & (cols == j)))
        masks.append((f"{label} variance 0", rows == j))
        for what, term_mask in masks:
            mask = np.zeros(phi.size, dtype=bool)
            mask[off + np.flatnonzero(term_mask)] = True
            for name, start in _face_starts(t, phi, off, mask, what):
                runs.append((name, lambda s=start, m=mask: problem.local_phi(s, m)))
    return runs[:MAX_BOUNDARY_RUNS]


def _diagonal_shares(t: ReTerm, phi_k: np.ndarray) -> np.ndarray:
    """Per effect of a term the share of its SD not explained by the earlier effects:
    T_jj / sqrt((T T')_jj), 0 where the effect's variance is 0."""
    T = t.template(phi_k)
    sd = np.sqrt(np.sum(T * T, axis=1))
    return np.where(sd > 0, np.abs(np.diag(T)) / np.where(sd > 0, sd, 1.0), 0.0)


def _face_starts(t: ReTerm, phi: np.ndarray, off: int, mask: np.ndarray, name: str
                 ) -> list[tuple[str, np.ndarray]]:
    """Starts on one face of a term's boundary: the estimate with the ``mask`` elements at 0
    and the term's other diagonals at 0 lifted off their bound (LIFT), so that the search
    explores this face, not its intersection with the face already reached. A lifted column's
    direction is then arbitrary (its diagonal was 0): its entries below the diagonal are tried
    with both signs."""
    rows, cols = t.positions
    idx = off + np.arange(t.ntheta)
    start = phi.copy()
    lift = np.zeros(phi.size, dtype=bool)
    lift[idx[(rows == cols)]] = True
    lift &= ~mask & (start <= 0)
    start[lift] = LIFT * max(float(np.max(np.abs(phi[idx]))), 1e-2)
    start[mask] = 0.0
    if not lift.any():
        return [(name, start)]
    lifted_cols = {int(cols[i - off]) for i in np.flatnonzero(lift)}
    below = np.zeros(phi.size, dtype=bool)
    below[idx[np.isin(cols, list(lifted_cols)) & (rows > cols)]] = True
    flipped = start.copy()
    flipped[below & ~mask] *= -1.0
    if np.array_equal(flipped, start):
        return [(name, start)]
    return [(name, start), (f"{name}, lifted column flipped", flipped)]


def gradient_polish(problem: Problem, theta: np.ndarray) -> list[tuple[str, Callable]]:
    """L-BFGS-B within the bounds from the estimate, in φ, with the exact gradient where the
    objective has one (scalar terms) and central differences of the criterion otherwise: a
    quasi-Newton step resolves the curvature of a long valley that BOBYQA's model misses."""
    return [("gradient polish", lambda: (_polish(problem, problem.to_phi(theta)), None))]


def _polish(problem: Problem, phi0: np.ndarray) -> np.ndarray:
    """The L-BFGS-B run of :func:`gradient_polish`; returns the best θ it evaluated."""
    k = phi0.size
    per_call = 1 if problem.value_and_grad is not None else 2 * k + 1  # per gradient
    budget = min(problem.left(), EVALS_PER_THETA * k)
    theta, _, _ = lbfgsb_phi(problem.fn, problem.value_and_grad, problem.scales, problem.lower,
                             phi0, np.ones(k, dtype=bool), max(budget // per_call, 1),
                             ftol_abs=POLISH_FTOL_ABS, gtol=POLISH_GTOL)
    return theta


#: The strategies in the order they run, each choosing its own runs from the estimate. The
#: first tier is cheap (one local run near the estimate, a few on boundaries); the second runs
#: where the first improved the fit (the default stopped early, so search harder) or lme4's
#: gradient or Hessian check failed.
FIRST_TIER = ("rescaled", "restart", "boundary_search")
SECOND_TIER = ("perturbed", "gradient_polish")


def restart(problem: Problem, theta: np.ndarray) -> list[tuple[str, Callable]]:
    """A local run again from the estimate, in φ: a fresh quasi-Newton memory or trust region
    (the old one may have stalled on a ridge of a many-dimensional criterion)."""
    phi = problem.to_phi(theta)
    return [("restart from the estimate", lambda: problem.local_phi(phi))]


def perturbed(problem: Problem, theta: np.ndarray) -> list[tuple[str, Callable]]:
    """Local runs from seeded perturbations of the estimate in φ (log-normal on diagonals,
    normal elsewhere) and from the extra starts (the centred start): other basins of
    attraction."""
    phi = problem.to_phi(theta)
    rng = np.random.default_rng(SEED)
    diag = np.isfinite(problem.lower)
    size = max(float(np.max(np.abs(phi))), 1e-2) if phi.size else 1.0
    runs: list[tuple[str, Callable]] = []
    for k in range(N_PERTURBED):
        noise = rng.standard_normal(phi.size)
        p = np.where(diag, np.maximum(np.abs(phi), 0.05 * size) * np.exp(PERTURB * noise),
                     phi + PERTURB * np.maximum(np.abs(phi), 0.1 * size) * noise)
        runs.append((f"perturbed restart {k + 1}", lambda p=p: problem.local_phi(p)))
    for name, start in problem.extra_starts:
        runs.append((name, lambda s=start: problem.local_phi(problem.to_phi(s))))
    return runs


_BY_NAME: dict[str, Callable[[Problem, np.ndarray], list[tuple[str, Callable]]]] = {
    "rescaled": rescaled, "restart": restart, "perturbed": perturbed,
    "boundary_search": boundary_search, "gradient_polish": gradient_polish}


def worth_rescuing(problem: Problem, theta: np.ndarray, reasons: Sequence[str]) -> bool:
    """False when the only reason is a singular fit whose boundary elements all belong to
    scalar terms: there restart_edge has already checked the one-sided slope, and the
    boundary search has nothing to try."""
    if list(reasons) != ["singular fit"]:
        return True
    return bool(boundary_search(problem, theta))


def rescue(problem: Problem, theta: np.ndarray, fval: float, reasons: list[str],
           counter: Callable[[], int], edge: Callable[[np.ndarray, float], tuple[np.ndarray,
                                                                                  float]],
           checks_failed: bool,
           accept: Callable[[np.ndarray], tuple[bool, bool]] | None = None) -> RescueResult:
    """Run the strategies from the estimate, each from the best θ so far, and keep the lowest
    criterion; ``edge`` (lme4's restart_edge) follows a boundary result that is lower. The
    second tier runs when the first improved or ``checks_failed`` (checkConv's gradient or
    Hessian check, a non-zero return code).

    ``accept`` judges each improvement: (lme4's checks pass there, the estimate is singular).
    Where the checks pass on a non-singular estimate the search stops at once: what made the
    rescue run is resolved. Where they pass on a singular one the tier in progress finishes
    (a singular optimum may lie on another face of the boundary, which the boundary search
    tries) but the second tier does not run: no check asks for a harder search."""
    best_x, best_f = np.asarray(theta, dtype=float).copy(), float(problem.fn(theta))
    start_f = min(best_f, fval)
    winner, code = None, None
    attempts: list[Attempt] = []
    steps: list[tuple[str, float]] = []
    resolved = settled = False
    for tier in (FIRST_TIER, SECOND_TIER):
        if tier is SECOND_TIER and (settled or (winner is None and not checks_failed)):
            break
        for key in tier:
            if resolved:
                break
            for name, run in _BY_NAME[key](problem, best_x):
                if problem.left() <= 0:
                    break
                n0 = counter()
                a = _attempt(problem, name, run, counter)
                if key == "boundary_search" and a.fval < best_f - MIN_GAIN:
                    x1, f1 = edge(a.theta, a.fval)  # a lower boundary point: may it leave?
                    if f1 < a.fval:
                        a.theta, a.fval = x1, float(problem.fn(x1))
                    a.nfev = counter() - n0
                attempts.append(a)
                if a.fval < best_f - MIN_GAIN:
                    steps.append((a.strategy, best_f - a.fval))
                    best_x, best_f, winner, code = a.theta, a.fval, a.strategy, a.code
                    if accept is not None:
                        passes, singular = accept(best_x)
                        settled = passes
                        resolved = passes and not singular
                        if resolved:
                            break
    if winner is not None:  # the biggest step won; later ones may only shave off a little
        winner = max(steps, key=lambda st: st[1])[0]
    return RescueResult(best_x, best_f, winner, start_f - best_f, reasons, attempts, code,
                        steps)
