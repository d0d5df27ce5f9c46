"""Conditional modes and their conditional standard deviations (lme4's
``as.data.frame(ranef(m, condVar = TRUE))``), one row per term of a grouping factor: the level
that is furthest off stands for the term, so a table of thousands of levels stays readable."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.core.comparators.base import Record, Row, missing, row
from harness.core.comparators.theta import singular_in_vector_term
from harness.core.tolerance import Tolerance

Key = tuple[str, str]  # (grouping factor, term column)


def _by_term(rows: Sequence[Mapping[str, Any]] | None) -> dict[Key, dict[str, Mapping[str, Any]]]:
    out: dict[Key, dict[str, Mapping[str, Any]]] = {}
    for r in rows or ():
        out.setdefault((str(r["grp"]), str(r["term"])), {})[str(r["level"])] = r
    return out


def _at_boundary(reference: Record, grp: str, term: str, tol: Tolerance) -> bool:
    """Whether the reference's variance of this term is within the variance floor (a singular
    term: its modes and conditional SDs are 0 there, and a candidate within θ's floor has them
    up to about θ·σ)."""
    sigma = _scale(reference)
    for r in reference.get("varcorr") or ():
        g = str(r.get("grp"))
        if (r.get("var2") is None and str(r.get("var1")) == term
                and (g == grp or g.startswith(grp + "."))):
            v = r.get("vcov")
            return v is not None and float(v) <= tol.var_abs_sigma2 * sigma**2
    return False


def _floor(reference: Record, grp: str, term: str, tol: Tolerance) -> float:
    """The absolute allowance of a term's modes and SDs: θ's floor times σ at the boundary
    (the two floors say the same thing), else a rounding-level one."""
    sigma = _scale(reference)
    at_zero = _at_boundary(reference, grp, term, tol)
    return (tol.theta_abs if at_zero else tol.ranef_abs_sigma) * sigma


def _scale(reference: Record) -> float:
    """The reference's σ (1 for the GLMM families without a scale, whose σ lme4 reports as 1)."""
    sigma = reference.get("sigma")
    return float(sigma) if sigma else 1.0


def _worst_rows(name: str, reference: Record, candidate: Record, field: str,
                allowed_of: Callable[[Mapping[str, Any], float, Tolerance], float | None],
                tol: Tolerance, notes: list[str]) -> list[Row]:
    """Per (grp, term): the row of the level with the largest |difference| / allowed, with a
    note naming it and how many levels were compared. ``allowed_of(row, floor, tol)`` is the
    allowance of one level, under the policy at the reference's fit (Tolerance.at_singular
    where it is singular in a vector-valued term)."""
    ref, cand = _by_term(reference.get("ranef")), _by_term(candidate.get("ranef"))
    if not ref:
        return []
    if singular_in_vector_term(reference):  # lme4's own BLAS spread there: tolerance.py
        tol = tol.at_singular()
    out: list[Row] = []
    for (grp, term), levels in ref.items():
        label = f"{name}[{grp},{term}]"
        theirs = cand.get((grp, term))
        if not cand or theirs is None:
            r = row(label, next(iter(levels.values())).get(field), None, None)
            out += [r if not cand else missing(r)] if r is not None else []
            continue
        absent = sorted(set(levels) - set(theirs))
        if absent:
            notes.append(f"{label}: the candidate has no mode for levels {absent[:5]}"
                         + (f" (+{len(absent) - 5} more)" if len(absent) > 5 else ""))
            r = row(label, levels[absent[0]].get(field), None, None)
            out += [missing(r)] if r is not None else []
            continue
        worst: tuple[float, Row, str] | None = None
        floor = _floor(reference, grp, term, tol)
        for level, mine in levels.items():
            r = row(label, mine.get(field), theirs[level].get(field),
                    allowed_of(mine, floor, tol))
            if r is None or r.difference is None:
                continue
            badness = abs(r.difference) / r.allowed if r.allowed else float("inf")
            if worst is None or badness > worst[0]:
                worst = (badness, r, level)
        if worst is None:
            continue
        _, r, level = worst
        r.note = f"worst of {len(levels)} levels: {level}"
        out.append(r)
    return out


class ConditionalModes:
    name = "ranef"
    reason = ("b̂ is a smooth function of θ (and β) at the optimum, so it inherits θ's ~1e-3 "
              "agreement between optimizers: judged in units of its conditional SD, as fixed "
              "effects in units of their SE; a term lme4 puts at zero variance gets θ's floor "
              "times σ instead, as a candidate within θ's floor has modes up to about θ·σ; at a "
              "fit singular in a vector-valued term 0.03 SD, twice lme4's own spread across "
              "BLAS kernels there")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        return _worst_rows(
            self.name, reference, candidate, "condval",
            lambda r, floor, t: t.ranef_condsd_units * float(r.get("condsd") or 0.0) + floor,
            tol, notes)


class ConditionalSDs:
    name = "ranef_sd"
    reason = ("the conditional SDs come from the same factor as the SEs (Λθ, L and σ at θ̂): "
              "relative, as the SEs, with the modes' absolute floor; at a fit singular in a "
              "vector-valued term 4e-3, twice lme4's own spread across BLAS kernels there")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        return _worst_rows(
            self.name, reference, candidate, "condsd",
            lambda r, floor, t: None if r.get("condsd") is None else
            t.ranef_sd_rel * abs(float(r["condsd"])) + floor, tol, notes)
