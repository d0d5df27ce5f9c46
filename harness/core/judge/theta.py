"""A record's θ: its variance components and σ read back into θ in lme4's parametrization
(Σ_k/σ² -> lower Cholesky factor -> lme4's column-major lower triangle), under the model's
random-effects terms. The one harness home of record -> θ, used by the judge, the cross-
evaluation, the diagnostics and the θ comparator; the term's θ <-> Λ mapping is
mixedref.frontend.reterm's
(the judge's definition of θ).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from harness.core.errors import JudgeError
from mixedref.frontend.reterm import TermShape, split_theta

#: One random-effects term as θ sees it (grouping factor, columns) with its θ ↔ Λ mapping:
#: the term's own definition in mixedref.frontend.reterm, used here as the judge's.
TermLayout = TermShape


def layout_from_varcorr(varcorr: Sequence[Mapping[str, Any]]) -> list[TermLayout]:
    """The terms as a varcorr table lists them (lme4 lists terms in its θ order).

    Used when the model builder cannot expand the formula; ``Subject.1`` (a ``||`` split) is
    reported under its grouping factor ``Subject``.
    """
    terms: dict[str, list[str]] = {}
    for row in varcorr:
        grp = str(row["grp"])
        if grp == "Residual":
            continue
        if row.get("var2") is None:
            terms.setdefault(grp, []).append(str(row["var1"]))
    return [TermLayout(_base_group(g, terms), tuple(cols)) for g, cols in terms.items()]


def _base_group(name: str, known: Iterable[str]) -> str:
    m = re.fullmatch(r"(.+)\.(\d+)", name)
    return m.group(1) if m and m.group(1) in known else name


def sigma_of(record: Mapping[str, Any]) -> float | None:
    """σ from the Residual row of varcorr, else the record's sigma."""
    for row in record.get("varcorr") or []:
        if row.get("grp") == "Residual" and row.get("sdcor") is not None:
            return float(row["sdcor"])
        if row.get("grp") == "Residual" and row.get("vcov") is not None:
            return math.sqrt(float(row["vcov"]))
    s = record.get("sigma")
    return None if s is None else float(s)


def _groups_of_varcorr(varcorr: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping]]:
    out: dict[str, list[Mapping]] = {}
    for row in varcorr:
        if row.get("grp") != "Residual":
            out.setdefault(str(row["grp"]), []).append(row)
    return out


def _match_groups(layout: Sequence[TermLayout],
                  groups: Mapping[str, list[Mapping]]) -> list[str]:
    """For each term, the varcorr grp naming it: same factor (``g`` or ``g.k``) and same
    columns; among several such, the first unused in order."""
    used: set[str] = set()
    names = []
    for term in layout:
        pattern = re.compile(re.escape(term.group) + r"(\.\d+)?")
        candidates = [g for g in groups if pattern.fullmatch(g) and g not in used]
        if not candidates:
            raise JudgeError(
                f"varcorr has no rows for random-effects term ({' + '.join(term.columns)} | "
                f"{term.group}); groups present: {sorted(groups)}")
        same_cols = [g for g in candidates
                     if {r["var1"] for r in groups[g] if r.get("var2") is None}
                     == set(term.columns)]
        if not same_cols:
            cols = {g: sorted({r["var1"] for r in groups[g] if r.get("var2") is None})
                    for g in candidates}
            raise JudgeError(
                f"varcorr rows for group {term.group!r} have columns {cols}, the model's term "
                f"has {list(term.columns)}")
        used.add(same_cols[0])
        names.append(same_cols[0])
    return names


def covariance_block(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> np.ndarray:
    """Σ_k (q x q) from one group's varcorr rows: variances on the diagonal, covariances (or
    correlations times standard deviations when only sdcor is given) off it."""
    idx = {c: i for i, c in enumerate(columns)}
    q = len(columns)
    S = np.zeros((q, q))
    sd = np.zeros(q)
    for r in rows:
        if r.get("var2") is None:
            i = idx[r["var1"]]
            v = r.get("vcov")
            v = float(r["sdcor"]) ** 2 if v is None else float(v)
            S[i, i] = max(v, 0.0)
            sd[i] = math.sqrt(S[i, i])
    for r in rows:
        if r.get("var2") is not None:
            i, j = idx[r["var1"]], idx[r["var2"]]
            if r.get("vcov") is not None:
                c = float(r["vcov"])
            else:
                c = float(r["sdcor"]) * sd[i] * sd[j]
            S[i, j] = S[j, i] = c
    return S


def theta_from_varcorr(record: Mapping[str, Any], layout: Sequence[TermLayout]) -> np.ndarray:
    """θ in lme4's order from a record's varcorr rows and σ (see module docstring)."""
    sigma = sigma_of(record)
    if sigma is None or sigma <= 0:
        raise JudgeError(f"record of {record.get('impl')!r} has no positive residual "
                            f"standard deviation (sigma={sigma})")
    groups = _groups_of_varcorr(record.get("varcorr") or [])
    names = _match_groups(layout, groups)
    parts = []
    for term, g in zip(layout, names, strict=True):
        parts.append(term.theta_from_covariance(
            covariance_block(groups[g], term.columns) / sigma**2))
    return np.concatenate(parts) if parts else np.zeros(0)


def theta_of(record: Mapping[str, Any], layout: Sequence[TermLayout]) -> list[float]:
    """θ from the record's variance components and σ (what its user reads), in lme4's order."""
    return [float(v) for v in theta_from_varcorr(record, layout)]


__all__ = ["TermLayout", "covariance_block", "layout_from_varcorr", "sigma_of", "split_theta",
           "theta_from_varcorr", "theta_of"]
