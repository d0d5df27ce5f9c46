"""Predictions (lme4's ``predict(m, newdata, re.form, allow.new.levels, type)``) on the data's
first rows, population level and conditional, at new grouping levels, and on the catalog's
prediction grid (new covariate values and levels); for a GLMM on the link scale and the response
scale: one row per kind, the row furthest off standing for the rest."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import special, stats

from harness.core.comparators.base import Record, Row, row
from harness.core.tolerance import Tolerance

KINDS = {("NA", False, False): "population", ("NULL", False, False): "conditional",
         ("NULL", True, False): "new levels", ("NA", False, True): "grid population",
         ("NULL", False, True): "grid conditional"}

#: R's links as (link, inverse link), for a response-scale prediction's allowance
LINKS: dict[str, tuple[Callable[[float], float], Callable[[float], float]]] = {
    "identity": (lambda m: m, lambda e: e),
    "log": (math.log, math.exp),
    "logit": (special.logit, special.expit),
    "probit": (stats.norm.ppf, stats.norm.cdf),
    "cauchit": (stats.cauchy.ppf, stats.cauchy.cdf),
    "cloglog": (lambda m: math.log(-math.log1p(-m)), lambda e: -math.expm1(-math.exp(e))),
    "inverse": (lambda m: 1.0 / m, lambda e: 1.0 / e),
    "sqrt": (math.sqrt, lambda e: e * e),
    "1/mu^2": (lambda m: 1.0 / (m * m), lambda e: 1.0 / math.sqrt(e)),
}


def _kind(r: Mapping[str, Any]) -> str | None:
    kind = KINDS.get((str(r["re_form"]), bool(r["new_levels"]), bool(r.get("grid"))))
    if kind is None or r.get("type", "link") == "link":
        return kind
    return f"{r['type']} {kind}"


def _by_kind(rows: Sequence[Mapping[str, Any]] | None) -> dict[str, dict[int, float | None]]:
    out: dict[str, dict[int, float | None]] = {}
    for r in rows or ():
        kind = _kind(r)
        if kind is not None:
            out.setdefault(kind, {})[int(r["row"])] = r.get("value")
    return out


def response_allowed(mu: float, link: str, link_allowed: float) -> float | None:
    """Allowed |Δμ| of a response-scale prediction μ: the link-scale allowance carried through
    the inverse link at the reference's own η = g(μ), the larger move of g⁻¹(η ± allowed); None
    for a link this table does not know."""
    if link not in LINKS:
        return None
    g, ginv = LINKS[link]
    with np.errstate(all="ignore"):
        try:
            eta = float(g(mu))
            moves = [abs(float(ginv(eta + s * link_allowed)) - mu) for s in (-1.0, 1.0)]
        except (ValueError, ZeroDivisionError, OverflowError):
            return None
    moves = [m for m in moves if math.isfinite(m)]
    return max(moves) if moves else None


class Predictions:
    name = "predict"
    reason = ("a prediction is x'β + z'b: smooth in θ, which two correct optimizers agree on to "
              "~1e-3 relative, so it moves by a small fraction of σ: absolute, in units of the "
              "reference's σ. A GLMM's link-scale prediction gets an absolute allowance "
              "(predict_link_abs, from lme4's own spread across optimizers), its response-scale "
              "one that allowance carried through the inverse link")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        ref, cand = _by_kind(reference.get("predictions")), _by_kind(candidate.get("predictions"))
        if not ref:
            return []
        glmm = reference.get("family") is not None and tol.predict_link_abs is not None
        link_allowed = (tol.predict_link_abs if glmm
                        else tol.predict_sigma_units * float(reference.get("sigma") or 1.0))
        link = str(reference.get("link") or "identity")
        out: list[Row] = []
        for kind, values in ref.items():
            theirs = cand.get(kind, {})
            response = glmm and kind.startswith("response ")
            worst: tuple[float, Row, int] | None = None
            for i, value in values.items():
                allowed: float | None = link_allowed
                if response and value is not None:
                    allowed = response_allowed(float(value), link, link_allowed)
                r = row(f"predict[{kind}]", value, theirs.get(i), allowed)
                if r is None:
                    continue
                badness = (-1.0 if r.difference is None else
                           abs(r.difference) / r.allowed if r.allowed else math.inf)
                if worst is None or badness > worst[0]:
                    worst = (badness, r, i)
            if worst is not None:
                worst[1].note = f"worst of {len(values)} rows: row {worst[2]}"
                out.append(worst[1])
        return out
