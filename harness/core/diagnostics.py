"""Diagnostics at an estimate: is it a stationary point, is it on the boundary, and what does the
objective look like between and around competing estimates.

A finite-difference gradient far from zero at an interior θ says an optimizer stopped early; a
θ on the boundary (a zero variance, |ρ| = 1) explains a non-zero gradient and many
disagreements; profiles along the segment between two estimates show whether they sit in one
basin (a flat valley) or in two.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from harness.core.crosseval import CrossEval
from harness.core.judge.theta import TermLayout, split_theta

Objective = Callable[[np.ndarray], float]

#: θ diagonal elements at or below this are on the boundary: lme4's isSingular tolerance
#: (isSingular(m, tol = 1e-4), as the record's ``singular``).
BOUNDARY_TOL = 1e-4
#: |ρ| at or above 1 - this is on the boundary.
CORR_TOL = 1e-6


def theta_lower(layout: Sequence[TermLayout]) -> np.ndarray:
    """lme4's bounds: 0 for diagonal template elements, -inf for off-diagonal ones."""
    return np.concatenate([t.theta_lower for t in layout]) if layout else np.zeros(0)


def _safe(objective: Objective, theta: np.ndarray) -> float:
    try:
        v = float(objective(np.asarray(theta, dtype=float)))
    except Exception:  # noqa: BLE001 - a point the objective refuses is a gap in a plot
        return math.nan
    return v if math.isfinite(v) else math.nan


def fd_gradient(objective: Objective, theta: Sequence[float], lower: Sequence[float],
                rel_step: float = 1e-5) -> list[float]:
    """Finite-difference gradient of the objective in θ: central differences, one-sided
    (forward) where a central step would cross the lower bound."""
    th = np.asarray(theta, dtype=float)
    lo = np.asarray(lower, dtype=float)
    f0 = _safe(objective, th)
    grad = []
    for k in range(th.size):
        h = rel_step * max(abs(th[k]), 1e-2)
        up, dn = th.copy(), th.copy()
        up[k] += h
        dn[k] -= h
        if dn[k] < lo[k]:
            grad.append((_safe(objective, up) - f0) / h)
        else:
            grad.append((_safe(objective, up) - _safe(objective, dn)) / (2 * h))
    return grad


def boundary_report(theta: Sequence[float], layout: Sequence[TermLayout]) -> list[str]:
    """Plain descriptions of where θ touches the boundary of the parameter space."""
    out = []
    for term, piece in zip(layout, split_theta(np.asarray(theta, float), layout), strict=True):
        T = term.template(piece)
        for i in range(term.q):
            if abs(T[i, i]) <= BOUNDARY_TOL:
                out.append(f"{term.group}: Cholesky diagonal for {term.columns[i]} is "
                           f"{T[i, i]:.2g} (its variance is zero, or it is perfectly "
                           "correlated with the columns before it)")
        S = T @ T.T
        sd = np.sqrt(np.clip(np.diag(S), 0, None))
        for i in range(term.q):
            for j in range(i):
                if sd[i] > 0 and sd[j] > 0:
                    rho = S[i, j] / (sd[i] * sd[j])
                    if abs(rho) >= 1 - CORR_TOL:
                        out.append(f"{term.group}: correlation of {term.columns[j]} and "
                                   f"{term.columns[i]} is {rho:+.6f}")
    return out


def segment_profile(objective: Objective, start: Sequence[float], end: Sequence[float],
                    *, beyond: float = 0.25, n: int = 41) -> dict[str, Any]:
    """The objective along θ(t) = start + t (end - start), t from -beyond to 1 + beyond."""
    a, b = np.asarray(start, float), np.asarray(end, float)
    ts = np.linspace(-beyond, 1 + beyond, n)
    ts = np.union1d(ts, [0.0, 1.0])
    values = [_safe(objective, a + t * (b - a)) for t in ts]
    return {"t": ts.tolist(), "objective": values}


def coordinate_profile(objective: Objective, theta: Sequence[float], k: int, lower: float,
                       *, n: int = 21, half_width: float | None = None) -> dict[str, Any]:
    """The objective along θ's k-th coordinate around the estimate, clipped at the bound."""
    th = np.asarray(theta, dtype=float)
    w = half_width if half_width is not None else max(0.25 * abs(th[k]), 0.05)
    xs = np.linspace(max(th[k] - w, lower), th[k] + w, n)
    xs = np.union1d(xs, [th[k]])
    values = []
    for x in xs:
        p = th.copy()
        p[k] = x
        values.append(_safe(objective, p))
    return {"x": xs.tolist(), "objective": values, "at": float(th[k])}


def diagnose(cross: CrossEval, objective: Objective, layout: Sequence[TermLayout], *,
             profiles: bool = True) -> dict[str, Any]:
    """Gradient and boundary at every estimate; with ``profiles`` (the report asks for them on
    disagreements), the segment profile from the best estimate to every other one and the
    coordinate profiles around each estimate."""
    lower = theta_lower(layout)
    out: dict[str, Any] = {"estimates": {}, "segments": {}, "coordinates": {}}
    thetas: dict[str, list[float]] = {}
    for impl, est in cross.estimates.items():
        th = est.theta if est.theta is not None else est.theta_reported
        if th is None:
            continue
        thetas[impl] = th
        grad = fd_gradient(objective, th, lower)
        free = [g for g, t, lo in zip(grad, th, lower, strict=True) if t - lo > BOUNDARY_TOL]
        out["estimates"][impl] = {
            "theta": th,
            "gradient": grad,
            "gradient_norm_free": float(np.linalg.norm(free)) if free else 0.0,
            "boundary": boundary_report(th, layout),
        }
    if profiles and cross.best in thetas:
        best = thetas[cross.best]
        evaluated = {k: th for k, th in thetas.items()
                     if cross.estimates[k].objective is not None}
        for impl, th in evaluated.items():
            if impl != cross.best and not np.allclose(th, best, rtol=0, atol=1e-12):
                out["segments"][impl] = {"from": cross.best, "to": impl,
                                         **segment_profile(objective, best, th)}
        for impl, th in evaluated.items():
            out["coordinates"][impl] = [
                {"name": name, **coordinate_profile(objective, th, k, lower[k])}
                for k, name in enumerate(cross.theta_names)]
    return out


def marginal_covariance(theta: Sequence[float], sigma: float, layout: Sequence[TermLayout],
                        term_X: Sequence[np.ndarray], term_codes: Sequence[np.ndarray],
                        rows: np.ndarray) -> np.ndarray:
    """σ²(Z_i Λ Λᵀ Z_iᵀ + I) restricted to ``rows`` (one group's observations): the marginal
    covariance block a fit implies, summed over every term sharing a level between two rows."""
    rows = np.asarray(rows)
    V = np.eye(rows.size)
    for term, piece, X, codes in zip(layout, split_theta(np.asarray(theta, float), layout),
                                     term_X, term_codes, strict=True):
        T = term.template(piece)
        Zi = np.asarray(X)[rows] @ T
        same = np.asarray(codes)[rows][:, None] == np.asarray(codes)[rows][None, :]
        V += (Zi @ Zi.T) * same
    return sigma**2 * V


def summarize_gradients(diag: Mapping[str, Any]) -> dict[str, float]:
    """impl -> norm of the gradient over coordinates not on the boundary."""
    return {k: v["gradient_norm_free"] for k, v in diag.get("estimates", {}).items()}
