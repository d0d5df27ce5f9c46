"""θ, the relative covariance factor in lme4's order, compared only where it is identified.

Σ_k = σ² Λ_k Λ_kᵀ per random-effects term, and θ is Λ_k's lower triangle (column-major). Where
a pivot of Λ_k (a diagonal entry) is zero, its column is a combination of the earlier ones (a
zero variance, or a correlation of ±1), and the entries below that pivot and in every later
column can be rotated among themselves without changing Σ_k: they are not identified. Two
correct fits may then differ there by any amount (lme4 itself does, across BLAS kernels: kb07's
theta[5..8] move by up to 0.1, tests/references/blas_spread.json.gz). Those entries get a row
saying so and are not compared; Σ is still compared in full (the varcorr rows), so nothing a
user reads goes unchecked. The rule is the same for every candidate, and a zero pivot on either
side is enough.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.core.comparators.base import Record, Row, row
from harness.core.judge.theta import split_theta
from harness.core.tolerance import Tolerance

#: A pivot of Λ is zero when it is at most this fraction of the norm of its row of Λ (that
#: column's standard deviation, in units of σ): lme4's isSingular() tolerance (1e-4 on a θ
#: diagonal), taken relative to the column's own scale, not absolute and not the term's
#: largest, so that a column on scale 1e-4 keeps a genuine pivot of 7.7e-5 (sim_badscale3's
#: optimum, next to a column of variance 7.9e7), as mixedref.frontend.reterm.psd_cholesky does.
ZERO_PIVOT_REL = 1e-4


def unidentified(theta: Sequence[float], terms: Sequence[Any]) -> dict[int, int]:
    """The indices of θ's entries that are not identified, each mapped to the index of the
    first zero pivot above or left of it. ``terms`` are the random-effects terms in θ's order
    (mixedref.frontend.reterm.TermShape: ``q``, ``ntheta``, ``template``, ``theta_index``)."""
    out: dict[int, int] = {}
    start = 0
    for term, piece in zip(terms, split_theta(np.asarray(theta, dtype=float), terms),
                           strict=True):
        index = {pos: start + k for k, pos in enumerate(term.theta_index())}
        for j in zero_pivots(term.template(piece)):
            for (r, c), k in index.items():
                if c >= j and r > j:
                    out.setdefault(k, index[(j, j)])
        start += term.ntheta
    return out


def zero_pivots(T: np.ndarray) -> list[int]:
    """The columns of a term's lower-triangular template T whose pivot is zero: at most
    ZERO_PIVOT_REL times the norm of its row (its column's SD in units of σ)."""
    return [j for j in range(T.shape[0])
            if abs(T[j, j]) <= ZERO_PIVOT_REL * float(np.linalg.norm(T[j, :j + 1]))]


def singular_in_vector_term(record: Record) -> bool:
    """Whether the record's fit has a zero pivot in a vector-valued term (q > 1): a zero
    variance or a correlation of ±1 among several columns. There lme4's own answers move with
    the BLAS kernel beyond the regular allowances (harness/core/tolerance.py), and the singular-fit
    rules apply. A scalar term at zero variance is not one: the term drops out, and lme4's
    answers there are the same under every kernel. Without a θ its varcorr lays out, the
    record's ``singular``."""
    theta = record.get("theta")
    terms = layout_of(record, ntheta=len(theta)) if theta and _finite(theta) else None
    if terms is None:
        return bool(record.get("singular"))
    pieces = split_theta(np.asarray(theta, dtype=float), terms)
    return any(term.q > 1 and zero_pivots(term.template(piece))
               for term, piece in zip(terms, pieces, strict=True))


def layout_of(*records: Record, ntheta: int) -> list[Any] | None:
    """The terms θ splits into, from the first record whose varcorr rows list terms adding up
    to ``ntheta`` entries (harness.core.judge.theta.layout_from_varcorr: lme4 lists terms in θ's
    order); None when no record's do."""
    from harness.core.judge.theta import layout_from_varcorr

    for rec in records:
        varcorr = rec.get("varcorr")
        if not varcorr:
            continue
        try:
            terms = layout_from_varcorr(varcorr)
        except (KeyError, TypeError, ValueError):
            continue
        if terms and sum(t.ntheta for t in terms) == ntheta:
            return terms
    return None


class Theta:
    name = "theta"
    reason = ("θ is Λ/σ: the same allowance as the variances' (an absolute floor sqrt(2.5e-5) "
              "for boundary estimates, 2e-3 relative), compared only where both report it and "
              "where it is identified (not below a zero pivot of Λ: Σ is compared instead)")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        ref_t, cand_t = reference.get("theta"), candidate.get("theta")
        if ref_t is None or cand_t is None:
            return []
        if len(ref_t) != len(cand_t):
            notes.append(f"theta lengths differ ({len(ref_t)} vs {len(cand_t)}); not compared")
            return []
        hidden = _hidden(reference, candidate, ref_t, cand_t)
        out = []
        for i, (r, c) in enumerate(zip(ref_t, cand_t, strict=True)):
            if i in hidden and r is not None and c is not None:
                out.append(Row(f"theta[{i}]", r, c, c - r, None, None, hidden[i]))
            else:
                out.append(row(f"theta[{i}]", r, c, tol.theta_abs + tol.theta_rel * abs(r)))
        return [r for r in out if r is not None]


def _hidden(reference: Record, candidate: Record, ref_t: Sequence[float],
            cand_t: Sequence[float]) -> dict[int, str]:
    """Index -> note for the entries below a zero pivot of either side."""
    terms = layout_of(reference, candidate, ntheta=len(ref_t))
    if terms is None:
        return {}
    sides: Mapping[str, dict[int, int]] = {
        who: unidentified(t, terms) if _finite(t) else {}
        for who, t in (("reference", ref_t), ("candidate", cand_t))}
    out: dict[int, str] = {}
    for i in sorted(set(sides["reference"]) | set(sides["candidate"])):
        pivots = {who: s[i] for who, s in sides.items() if i in s}
        pivot = min(pivots.values())
        who = "both" if len(pivots) == 2 and len(set(pivots.values())) == 1 else (
            "the reference" if pivots.get("reference") == pivot else "the candidate")
        out[i] = f"not identified: below the zero pivot theta[{pivot}] of {who}"
    return out


def _finite(theta: Sequence[Any]) -> bool:
    """Whether every entry is a finite number (a pivot is read only from such a θ)."""
    return all(isinstance(v, (int, float)) and np.isfinite(v) for v in theta)
