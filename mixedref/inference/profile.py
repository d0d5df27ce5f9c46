"""Profile likelihood and confidence intervals of a linear mixed model, as lme4's
``profile.merMod`` and ``confint.merMod``.

As lme4 (its ``devfun2`` refits a REML fit with ML first), the profile is that of the *ML*
deviance, also for REML fits: ζ(v) = sign(v - v̂) √(d(v) - d̂), where d(v) is the deviance
minimized over all other parameters with the focal one fixed at v and d̂ the ML deviance. The
parameters are lme4's ``oldNames = FALSE`` ones: per random-effects term its standard deviations
``sd_<col>|<group>`` and correlations ``cor_<row>.<col>|<group>`` (θ's order), then ``sigma``,
then the fixed effects. Unlike lme4, which interpolates a spline through a grid, every profile
value here is exact (the nuisance parameters re-optimized at that value), and the interval
endpoints are roots of ζ(v) = ±z found by Newton's method, ζ's slope coming from the envelope
theorem at no optimization's cost (:meth:`Profiler.endpoint`): three to six inner optimizations
an endpoint, each warm-started from the optima already found along the same profile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.linalg.lapack import dtrtri
from scipy.stats import chi2, norm

from mixedref.engines import PLSObjective
from mixedref.errors import MixedrefError
from mixedref.fitting.optimize import bobyqa
from mixedref.frontend.reterm import split_theta, theta_slices

__all__ = ["Profiler", "confint", "profile"]

#: Inner optimizations: absolute tolerances on the (scaled) nuisance parameters and the deviance.
#: ζ = √Δd, so near ζ = 2 a deviance error ε moves ζ by ε/4: 1e-10 is far below any report.
_XTOL, _FTOL, _MAXEVAL = 1e-10, 1e-11, 5000

#: Root-finding tolerance of an interval endpoint, relative to the parameter's scale (its
#: first step: the SE for β); the search's steps at most.
_ROOT_RTOL = 1e-9
_MAX_ROOT_STEPS = 80

#: A Newton step below this share of the parameter's scale is the last: ζ is smooth and
#: nearly linear, so the error after it is of the order of its square (1e-8 of the scale).
_NEWTON_LAST = 1e-4

#: ζ's slope: central differences of the deviance with this step relative to the scale.
_SLOPE_STEP = 1e-5

#: Warm starts extrapolate only through points at least this share as far apart as the
#: target is from the nearest (see Profiler._warm).
_EXTRAP_SPAN = 0.5

#: The inner BOBYQA's initial step: this share of each nuisance element (scaled sd's, σ and
#: θ are of order 1, a correlation's arcsine at most π/2), at least _STEP_MIN.
_STEP_REL, _STEP_MIN = 0.01, 1e-3


@dataclass(frozen=True)
class _Pieces:
    """What the ML deviance needs at one θ: log det L² (minus log det W), the penalized
    residual sum of squares, β̂(θ) and R_X⁻¹ (so (R_X'R_X)⁻¹ = R_X⁻¹ R_X⁻ᵀ)."""

    ldL2: float
    pwrss: float
    beta: np.ndarray
    RXinv: np.ndarray


def _is_lmer_fit(fit: Any) -> bool:
    """True for a linear mixed model's fit (an LmerFit): the profile reads its PLS objective.
    Asked of the objective, so this module needs nothing above it (the fit's confint and
    profile methods call here)."""
    return isinstance(getattr(fit, "_objective", None), PLSObjective)


def parameter_names(fit: Any) -> list[str]:
    """lme4's ``oldNames = FALSE`` names: sd_/cor_ per term in θ's order, sigma, fixed effects."""
    names = []
    for t in fit.model.reterms:
        for i, j in t.theta_index():
            names.append(f"sd_{t.columns[i]}|{t.group}" if i == j
                         else f"cor_{t.columns[i]}.{t.columns[j]}|{t.group}")
    return names + ["sigma"] + list(fit.model.fixef_names)


def _level_names(level: float) -> list[str]:
    """R's column names of a confint: format.perc, e.g. "2.5 %" and "97.5 %"."""
    a = (1.0 - level) / 2.0
    return [f"{100 * p:.3g} %" for p in (a, 1.0 - a)]


class Profiler:
    """The exact ML profile of one fit: ζ of any parameter at any value, and its roots.

    Built from the ML refit of the fit (lme4's refitML); holds the ML objective, the estimates
    in the sd/cor/σ/β parametrization, and each parameter's bounds (sd ≥ 0, -1 ≤ cor ≤ 1)."""

    def __init__(self, fit: Any) -> None:
        if not _is_lmer_fit(fit):
            raise MixedrefError(f"profiles need an LmerFit, got {type(fit).__name__} "
                                "(glmer fits are not profiled here)")
        self.fit = fit
        self.ml = fit.update(REML=False) if fit.REML else fit
        self.obj = self.ml._objective
        self.terms = self.ml.model.reterms
        self._slices = theta_slices(self.terms)  # each term's piece of θ (and of phi's sd/cor)
        self.names = parameter_names(self.ml)
        self.kinds = [("sd" if i == j else "cor") for t in self.terms
                      for i, j in t.theta_index()] + ["sigma"] + ["beta"] * self.ml.model.p
        self.nvar = self.obj.ntheta + 1  # variance parameters: θ's sd/cor and σ
        phi = self.phi_of(self.ml.theta, self.ml.sigma)
        self.estimate = np.concatenate([phi, self.ml.fixef.to_numpy()])
        self.deviance = min(self.ml.objective, self.var_deviance(phi))
        self._se = self.ml.se.to_numpy()
        #: per parameter, the nuisance optima found so far as (focal value, optimum): each
        #: inner optimization starts from the one at the nearest focal value (warm starts
        #: along the profile)
        self._path: dict[int, list[tuple[float, np.ndarray]]] = {}
        #: per parameter, the last conditional optimum's full parameter vector (for ζ's slope)
        self._last: dict[int, tuple[float, np.ndarray]] = {}

    # -- parametrizations ------------------------------------------------------------------
    def phi_of(self, theta: np.ndarray, sigma: float) -> np.ndarray:
        """(sd, cor per term in θ's order, σ) of a θ and σ (cor 0 where an sd is 0)."""
        out = []
        for t, piece in zip(self.terms, split_theta(theta, self.terms, self._slices),
                            strict=True):
            V = sigma**2 * t.covariance(piece)
            sd = np.sqrt(np.clip(np.diag(V), 0.0, None))
            for i, j in t.theta_index():
                out.append(sd[i] if i == j else
                           (V[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else 0.0))
        return np.array(out + [sigma])

    def theta_of(self, phi: np.ndarray) -> np.ndarray | None:
        """θ of a (sd, cor, σ) vector; None if a term's correlations are not positive
        semi-definite (possible for three or more columns) or σ ≤ 0."""
        sigma = phi[-1]
        if not sigma > 0:
            return None
        out = []
        for t, piece in zip(self.terms, split_theta(phi[:-1], self.terms, self._slices),
                            strict=True):
            R = np.eye(t.q)
            sd = np.zeros(t.q)
            for (i, j), v in zip(t.theta_index(), piece, strict=True):
                if i == j:
                    sd[i] = v
                else:
                    R[i, j] = R[j, i] = v
            if t.q > 2 and np.linalg.eigvalsh(R).min() < -1e-12:
                return None
            out.append(t.theta_from_covariance(R * np.outer(sd, sd) / sigma**2))
        return np.concatenate(out)

    # -- the deviance ------------------------------------------------------------------------
    def pieces(self, theta: np.ndarray) -> _Pieces | None:
        """The ML deviance's pieces at θ from one factorization (the objective's fast path);
        None where the penalized system is not positive definite."""
        obj = self.obj
        _, _, ld1, _, U, info = obj._factor(np.asarray(theta, dtype=float), shortcut=True,
                                            need_L1=False)
        if info != 0:
            return None
        re2, p = obj.re2, obj.p
        diag = np.diagonal(U)
        ldL2 = ld1 + 2.0 * float(np.sum(np.log(diag[:re2]))) - obj.ldW
        Ux = np.triu(U[re2:re2 + p + 1, re2:re2 + p + 1])  # [R_X, c; 0, √pwrss]
        Uinv, info = dtrtri(Ux, lower=0)  # LAPACK: scipy's multi-RHS triangular solve is slow
        if info != 0:
            return None
        beta = obj.beta0 - Uinv[:p, p] * diag[-1]  # Ux z = √pwrss e_y gives z = (-β̂ + β0, 1)
        RXinv = Uinv[:p, :p]
        return _Pieces(ldL2, float(diag[-1]) ** 2, beta, RXinv)

    def var_deviance(self, phi: np.ndarray) -> float:
        """The ML deviance at (sd, cor, σ) with β profiled out, as lme4's devfun2."""
        theta = self.theta_of(phi)
        pc = None if theta is None else self.pieces(theta)
        if pc is None:
            return math.inf
        s2 = phi[-1] ** 2
        return pc.ldL2 + self.obj.n * math.log(2 * math.pi * s2) + pc.pwrss / s2

    def _beta_deviance(self, theta: np.ndarray, j: int, b: float
                       ) -> tuple[float, _Pieces | None, float]:
        """The ML deviance at θ with β_j = b, the other β and σ profiled out; also r²."""
        pc = self.pieces(theta)
        if pc is None:
            return math.inf, None, math.nan
        vjj = float(pc.RXinv[j] @ pc.RXinv[j])
        r2 = pc.pwrss + (b - pc.beta[j]) ** 2 / vjj
        n = self.obj.n
        return pc.ldL2 + n * (1.0 + math.log(2 * math.pi * r2 / n)), pc, r2

    # -- conditional optima --------------------------------------------------------------------
    def conditional(self, k: int, value: float) -> tuple[float, np.ndarray]:
        """(deviance, all parameters) minimized over the others with parameter k = value."""
        if self.kinds[k] == "beta":
            return self._conditional_beta(k - self.nvar, value)
        return self._conditional_var(k, value)

    def _conditional_var(self, k: int, value: float) -> tuple[float, np.ndarray]:
        """Nuisance: the other sd's and σ (scaled by their estimates, ≥ 0) and the other
        correlations through cor = sin(z), which keeps them in [-1, 1] with lower bounds only."""
        est = self.estimate[:self.nvar]
        others = [i for i in range(self.nvar) if i != k]
        is_cor = np.array([self.kinds[i] == "cor" for i in others], dtype=bool)
        scale = np.array([1.0 if c else (est[i] if est[i] > 0 else est[-1])
                          for i, c in zip(others, is_cor, strict=True)])

        def full(x: np.ndarray) -> np.ndarray:
            phi = est.copy()
            phi[k] = value
            phi[others] = np.where(is_cor, np.sin(x), x * scale)
            return phi

        if not others:
            phi = full(np.zeros(0))
            self._last[k] = (value, phi)
            return self.var_deviance(phi), np.concatenate([phi, self._beta_at(phi)])
        at_est = np.where(is_cor, np.arcsin(np.clip(est[others], -1, 1)), est[others] / scale)
        lower = np.where(is_cor, -np.inf, 0.0)

        def dev(x: np.ndarray) -> float:
            return self.var_deviance(full(x))

        x0 = self._warm(k, value, at_est, dev, lower)
        x, f, _, _ = bobyqa(dev, x0, lower,
                            xtol_abs=_XTOL, ftol_abs=_FTOL, maxeval=_MAXEVAL,
                            initial_step=_initial_step(x0))
        self._remember(k, value, x)
        phi = full(x)
        self._last[k] = (value, phi)
        return f, np.concatenate([phi, self._beta_at(phi)])

    def _warm(self, k: int, value: float, default: np.ndarray,
              f: Callable[[np.ndarray], float], lower: np.ndarray) -> np.ndarray:
        """A start for the nuisance optimum at ``value``: the optimum at the nearest focal value
        found so far (``default``, the estimate's, at the estimate), or its linear
        extrapolation through the next one where that is lower by ``f``. Only a point at least
        _EXTRAP_SPAN times as far from the nearest as ``value`` is used for the line, so
        that the line does not amplify the inner optimizations' noise more than 1/_EXTRAP_SPAN
        times (two Newton iterates 1e-9 apart would make it a random start)."""
        pts = [(self.estimate[k], np.asarray(default, dtype=float))] + self._path.get(k, [])
        pts.sort(key=lambda p: abs(value - p[0]))
        v0, x0 = pts[0]
        x0 = np.maximum(x0, lower)
        reach = abs(value - v0)
        if reach == 0.0:
            return x0
        for v1, x1 in pts[1:]:
            if abs(v1 - v0) >= _EXTRAP_SPAN * reach:
                line = np.maximum(x0 + (value - v0) * (x1 - x0) / (v1 - v0), lower)
                return line if f(line) < f(x0) else x0
        return x0

    def _remember(self, k: int, value: float, x: np.ndarray) -> None:
        self._path.setdefault(k, []).append((float(value), np.asarray(x, dtype=float).copy()))

    def _beta_at(self, phi: np.ndarray) -> np.ndarray:
        """β̂ at the θ of phi (β's conditional optimum for given variance parameters)."""
        theta = self.theta_of(phi)
        pc = None if theta is None else self.pieces(theta)
        return pc.beta if pc is not None else np.full(self.ml.model.p, np.nan)

    def _conditional_beta(self, j: int, b: float) -> tuple[float, np.ndarray]:
        """Nuisance: θ (bounds as lme4's); σ and the other β are profiled analytically, since
        with β_j fixed the residual sum of squares is pwrss + (b - β̂_j)² / V_jj."""
        k = self.nvar + j
        lower = self.obj.lower
        x0 = self._warm(k, b, self.ml.theta, lambda th: self._beta_deviance(th, j, b)[0],
                        lower)
        starts = [x0]
        if np.any(x0[lower == 0] < 1e-4):  # θ = 0 is stationary: also start off the bound
            starts.append(np.where(lower == 0, np.maximum(x0, 0.1), x0))
        best = None
        for start in starts:
            x, f, _, _ = bobyqa(lambda th: self._beta_deviance(th, j, b)[0], start, lower,
                                xtol_abs=_XTOL, ftol_abs=_FTOL, maxeval=_MAXEVAL,
                                initial_step=_initial_step(start))
            if best is None or f < best[1]:
                best = (x, f)
        x = best[0]
        self._remember(k, b, x)
        self._last[k] = (b, x)
        f, pc, r2 = self._beta_deviance(x, j, b)
        if pc is None:
            return math.inf, np.full(len(self.names), np.nan)
        V = pc.RXinv @ pc.RXinv.T
        beta = pc.beta + V[:, j] / V[j, j] * (b - pc.beta[j])
        phi = self.phi_of(x, math.sqrt(r2 / self.obj.n))
        return f, np.concatenate([phi, beta])

    # -- ζ and its roots -------------------------------------------------------------------
    def zeta(self, k: int, value: float) -> tuple[float, np.ndarray]:
        """(ζ, all parameters) at parameter k = value: the signed root of the deviance change."""
        dev, pars = self.conditional(k, value)
        return math.copysign(math.sqrt(max(dev - self.deviance, 0.0)),
                             value - self.estimate[k]), pars

    def bounds(self, k: int) -> tuple[float, float]:
        """lme4's bounds of a parameter: sd and σ in [0, ∞), cor in [-1, 1], β unbounded."""
        return {"sd": (0.0, math.inf), "sigma": (0.0, math.inf),
                "cor": (-1.0, 1.0)}.get(self.kinds[k], (-math.inf, math.inf))

    def _step(self, k: int) -> float:
        """A first step away from the estimate: the SE for β, a quarter of the scale else."""
        if self.kinds[k] == "beta":
            return float(self._se[k - self.nvar])
        if self.kinds[k] == "cor":
            return 0.1
        est = self.estimate[k]
        return 0.25 * (est if est > 0 else self.estimate[self.nvar - 1])

    def slope(self, k: int, value: float) -> float:
        """d deviance / d value along the profile at ``value``, right after :meth:`zeta` there:
        by the envelope theorem the partial derivative with the nuisance parameters held at
        their conditional optimum, here by central differences of the deviance (no
        re-optimization; one-sided at a bound)."""
        at, nuis = self._last[k]
        if at != value:
            raise MixedrefError("slope() needs the conditional optimum at this value: call "
                                "zeta() there first")
        lo, hi = self.bounds(k)
        h = _SLOPE_STEP * self._step(k)
        if self.kinds[k] == "beta":
            j = k - self.nvar

            def dev(v: float) -> float:
                return self._beta_deviance(nuis, j, v)[0]
        else:
            def dev(v: float) -> float:
                phi = nuis.copy()
                phi[k] = v
                return self.var_deviance(phi)
        up, dn = min(value + h, hi), max(value - h, lo)
        if up == dn:
            return math.nan
        return (dev(up) - dev(dn)) / (up - dn)

    def endpoint(self, k: int, target: float) -> float:
        """The value of parameter k where ζ = target (its sign gives the side), or the bound
        it reaches first, as lme4 (lower 0 for sd and σ, ±1 for cor) when ζ stays short.

        Newton's method on ζ(v), whose slope is ζ' = d'/(2ζ) with the deviance's slope d' from
        :meth:`slope` (no inner optimization), from a first step away from the estimate;
        ζ is nearly linear, so each endpoint takes a handful of inner optimizations, each
        warm-started from the nearest one before. Until the root is bracketed a step is at
        most a doubling of the distance from the estimate; once it is, a Newton step that
        leaves the bracket is replaced by the secant of its ends (bisection as a last resort).
        """
        est = self.estimate[k]
        side = 1.0 if target > 0 else -1.0
        lo, hi = self.bounds(k)
        bound = hi if side > 0 else lo
        step = self._step(k)
        xtol = _ROOT_RTOL * max(abs(step), 1e-300)
        short, z_short = est, 0.0  # a value whose ζ falls short of the target
        beyond: tuple[float, float] | None = None  # one whose ζ reaches past it
        v = est + side * step
        for _ in range(_MAX_ROOT_STEPS):
            if (v - bound) * side >= 0:
                v = bound
            if not math.isfinite(v):
                break
            z, _ = self.zeta(k, v)
            if (z - target) * side >= 0:
                beyond = (v, z)
            elif v == bound:
                return bound
            else:
                short, z_short = v, z
            d = self.slope(k, v)
            dz = d / (2.0 * z) if z != 0 else math.nan
            nxt = v + (target - z) / dz if math.isfinite(dz) and dz > 0 else math.nan
            newton = nxt
            if beyond is None:
                far = v + side * max(abs(v - est), step)  # at most double the distance
                if not math.isfinite(nxt) or (nxt - v) * side <= 0 or (nxt - far) * side > 0:
                    nxt = far
            else:
                b, zb = beyond
                if not (min(short, b) < nxt < max(short, b)):
                    nxt = short + (target - z_short) * (b - short) / (zb - z_short)
                    if not (min(short, b) < nxt < max(short, b)):
                        nxt = 0.5 * (short + b)
            if abs(nxt - v) <= xtol:
                return nxt
            if nxt == newton and abs(nxt - v) <= _NEWTON_LAST * abs(step):
                return nxt  # converging quadratically: after this step the error is ~ its square
            v = nxt
        return math.nan


def _initial_step(x0: np.ndarray) -> np.ndarray:
    """BOBYQA's first trust region around a warm start: the start is near the optimum, and
    NLopt's default (three quarters of each element) would spend the first dozen evaluations
    far from it (sleepstudy's confint: 4,579 -> 2,209 factorizations)."""
    return np.maximum(_STEP_REL * np.abs(x0), _STEP_MIN)


def _select(prof: Profiler, which: str | Sequence[str] | None) -> list[int]:
    """Parameter positions named by ``which``: all (None), "theta_" (the variance parameters,
    as lme4), "beta_" (the fixed effects), or a list of names."""
    if which is None:
        return list(range(len(prof.names)))
    if isinstance(which, str):
        if which == "theta_":
            return list(range(prof.nvar))
        if which == "beta_":
            return list(range(prof.nvar, len(prof.names)))
        which = [which]
    unknown = [w for w in which if w not in prof.names]
    if unknown:
        raise MixedrefError(f"unknown parameters {unknown}; the fit's are {prof.names}")
    return [prof.names.index(w) for w in which]


def profile(fit: Any, which: str | Sequence[str] | None = None, *,
            alphamax: float = 0.01, npoints: int = 11,
            values: dict[str, Sequence[float]] | None = None) -> pd.DataFrame:
    """The profile as lme4's ``as.data.frame(profile(m, signames = FALSE))``: columns .zeta,
    every parameter's value at the conditional optimum, .par (the focal parameter) and .focal
    (its value). By default each parameter is evaluated at the estimate and ``npoints`` evenly
    spaced values on each side up to |ζ| = √χ²(1 - alphamax; number of parameters), lme4's
    cutoff (or the parameter's bound); ``values`` evaluates at given values instead."""
    prof = Profiler(fit)
    cutoff = math.sqrt(chi2.ppf(1.0 - alphamax, len(prof.names)))
    rows = []
    for k in _select(prof, which if values is None else list(values)):
        name = prof.names[k]
        est = prof.estimate[k]
        if values is not None:
            sides = [np.asarray(values[name], dtype=float)]
        else:  # each side walked outward from the estimate, warm starts following (as lme4)
            lo, hi = prof.endpoint(k, -cutoff), prof.endpoint(k, cutoff)
            sides = [np.linspace(est, lo, npoints + 1), np.linspace(est, hi, npoints + 1)[1:]]
        found = []
        for grid in sides:
            for v in grid:
                z, pars = prof.zeta(k, float(v))
                found.append([z, *pars, name, float(v)])
        rows += sorted(found, key=lambda r: r[-1])
    return pd.DataFrame(rows, columns=[".zeta", *prof.names, ".par", ".focal"])


def confint(fit: Any, parm: str | Sequence[str] | None = None, *,
            method: str = "profile", level: float = 0.95) -> pd.DataFrame:
    """Confidence intervals as lme4's ``confint(m, method, level, oldNames = FALSE)``.

    "Wald": β̂ ± z·SE for the fixed effects (of the fit as given, REML or ML) and NaN for the
    variance parameters, as lme4. "profile": where the ML profile's ζ = ±z, z = qnorm((1 +
    level)/2), each endpoint a root of the exact profile; an endpoint beyond a parameter's
    bound is the bound (sd's lower limit 0, a correlation's -1 or 1), as lme4 reports it."""
    if not 0.0 < level < 1.0:
        raise MixedrefError(f"level must be in (0, 1), got {level}")
    if not _is_lmer_fit(fit):
        raise MixedrefError(f"confint needs an LmerFit, got {type(fit).__name__}")
    z = float(norm.ppf((1.0 + level) / 2.0))
    cols = _level_names(level)
    if method == "Wald":
        return _wald(fit, parm, z, cols)
    if method != "profile":
        raise MixedrefError(f'method must be "profile" or "Wald", got {method!r} '
                            '(lme4\'s "boot" is not implemented)')
    prof = Profiler(fit)
    ks = _select(prof, parm)
    table = [[prof.endpoint(k, -z), prof.endpoint(k, z)] for k in ks]
    return pd.DataFrame(table, index=[prof.names[k] for k in ks], columns=cols)


def _wald(fit: Any, parm: str | Sequence[str] | None, z: float,
          cols: list[str]) -> pd.DataFrame:
    """lme4's Wald intervals: NaN rows for the variance parameters, β̂ ± z·SE for β."""
    return wald_table(fit, parameter_names(fit), parm, z, cols)


def wald_table(fit: Any, names: list[str], parm: str | Sequence[str] | None, z: float,
               cols: list[str]) -> pd.DataFrame:
    """The Wald table over ``names`` (the variance parameters first, then β, as lmer's and
    glmer's confint name them): NaN for the variance parameters, β̂ ± z·SE for β; ``parm``
    None (all), "theta_", "beta_" or a list of names."""
    nvar = len(names) - fit.model.p
    est, se = fit.fixef.to_numpy(), fit.se.to_numpy()
    out = pd.DataFrame({cols[0]: np.r_[np.full(nvar, np.nan), est - z * se],
                        cols[1]: np.r_[np.full(nvar, np.nan), est + z * se]}, index=names)
    if parm is None:
        return out
    if isinstance(parm, str):
        parm = {"theta_": names[:nvar], "beta_": names[nvar:]}.get(parm, [parm])
    unknown = [p for p in parm if p not in names]
    if unknown:
        raise MixedrefError(f"unknown parameters {unknown} in parm; the fit's are {names}")
    return out.loc[list(parm)]
