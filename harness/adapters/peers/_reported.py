"""What the peer adapters share to write a package's own conditional modes and coefficient
tests into the record: the ranef tables in lme4's names (grouping factor, term column, level
label) and the coef_tests rows. Nothing here computes a quantity: the numbers are the
package's, only their names and shapes are lme4's."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from harness.adapters.peers import _formula as F
from harness.core.comparators.coef_tests import wanted_ddf  # noqa: F401 - the adapters' name


def finite(x: Any) -> float | None:
    """A plain float, or None for a missing or non-finite value (not reported)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def coef_test_rows(ddf: str, names: Sequence[str], se: Iterable[Any] | None,
                   df: Iterable[Any], p: Iterable[Any] | None) -> list[dict[str, Any]]:
    """Rows {ddf, term, se, df, p} of one method, by R's term names; a value the package
    does not give (``se``/``p`` None) or gives as NaN is None."""
    n = len(names)
    se_l = [None] * n if se is None else list(se)
    p_l = [None] * n if p is None else list(p)
    return [{"ddf": ddf, "term": str(t), "se": finite(s), "df": finite(d), "p": finite(q)}
            for t, s, d, q in zip(names, se_l, list(df), p_l, strict=True)]


def confint_rows(method: str, intervals: Mapping[str, Any], names: Mapping[str, str]
                 ) -> list[dict[str, Any]]:
    """Rows {method, parm, lower, upper} of a package's intervals ``{its name: (lower,
    upper)}``, under lme4's names (``names``: its name -> R's); intervals of parameters
    without an R name or with a missing limit are left out (not reported)."""
    rows = []
    for parm, limits in intervals.items():
        lo, hi = (finite(v) for v in limits)
        if parm in names and lo is not None and hi is not None:
            rows.append({"method": method, "parm": names[parm], "lower": lo, "upper": hi})
    return rows


def lme4_group(package_group: str, terms: Sequence[F.Term]) -> str:
    """lme4's grouping factor (grpvar) of a package's group name: ``batch:cask`` is lme4's
    ``cask:batch``, a pasted column ``a__b`` is ``a:b``."""
    name = package_group.replace("__", ":")
    for t in terms:
        if F.same_factor(t.group, name):
            return t.group
    raise RuntimeError(f"the package's random-effects group {package_group!r} is none of "
                       f"lme4's grouping factors {sorted({t.group for t in terms})}")


def lme4_level(label: Any, package_group: str, group: str) -> str:
    """lme4's label of a level: the parts of an interaction in lme4's order, joined by ``:``
    (mixedlm writes ``A/a`` for batch:cask where lme4 writes ``a:A`` for cask:batch,
    lme-python ``A_a``)."""
    text = str(label)
    mine = package_group.replace("__", ":").split(":")
    theirs = group.split(":")
    if len(theirs) == 1:
        return text
    parts = re.split(r"[:/]", text)
    if len(parts) != len(mine):
        parts = text.split("_")
    if len(parts) != len(mine) or sorted(mine) != sorted(theirs):
        return text
    by_name = dict(zip(mine, parts, strict=True))
    return ":".join(by_name[g] for g in theirs)


def tables(blocks: Iterable[tuple[str, Sequence[Any], Sequence[str], Any, Any]],
           terms: Sequence[F.Term]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Per lme4 grouping factor, the tables of modes and of conditional SDs (levels x term
    columns, lme4's names) for :func:`harness.core.record.ranef_rows`, from the package's blocks
    (its group name, its level labels, the term columns in R's names, modes and SDs as
    arrays levels x columns, SDs None when it gives none). Blocks of one factor (the two
    terms of ``||``) are joined column-wise; the SD tables are None when any block has none."""
    import pandas as pd

    modes: dict[str, Any] = {}
    sds: dict[str, Any] = {}
    all_sds = True
    label_of = {t.group: t.label or t.group for t in terms}  # c:b:a is lme4's c:(b:a)
    for pkg_group, levels, cols, values, sd in blocks:
        factor = lme4_group(pkg_group, terms)
        index = [lme4_level(v, pkg_group, factor) for v in levels]
        grp = label_of[factor]
        m = pd.DataFrame(np.asarray(values, dtype=float).reshape(len(index), len(cols)),
                         index=index, columns=list(cols))
        modes[grp] = m if grp not in modes else modes[grp].join(m, how="outer")
        if sd is None:
            all_sds = False
            continue
        s = pd.DataFrame(np.asarray(sd, dtype=float).reshape(len(index), len(cols)),
                         index=index, columns=list(cols))
        sds[grp] = s if grp not in sds else sds[grp].join(s, how="outer")
    return modes, (sds if all_sds else None)


def ranef_of(blocks: Iterable[tuple[str, Sequence[Any], Sequence[str], Any, Any]],
             terms: Sequence[F.Term]) -> list[dict[str, Any]] | None:
    """The record's ranef rows from the package's blocks (see :func:`tables`); None when it
    gives no modes. A non-finite SD is None (not reported)."""
    from harness.core.record import ranef_rows

    modes, sds = tables(blocks, terms)
    if not modes:
        return None
    rows = ranef_rows(modes, sds)
    for r in rows:
        r["condsd"] = finite(r["condsd"])
    return rows


def column_names(names: Sequence[str], terms: Sequence[F.Term]) -> list[str]:
    """R's names of a package's random-effects column names: ``Intercept`` is
    ``(Intercept)``, ``I(x**2)`` is ``I(x^2)``; a name already one of lme4's is kept."""

    known = {c for t in terms for c in t.columns}
    out = []
    for n in F.r_powers([str(n) for n in names]):
        out.append(n if n in known else F.r_name(n))
    return out


def same_columns(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Two coefficient mappings name the same columns with the same values (to 1e-10)."""
    return set(a) == set(b) and all(abs(float(a[k]) - float(b[k])) <= 1e-10 * max(
        1.0, abs(float(a[k]))) for k in a)
