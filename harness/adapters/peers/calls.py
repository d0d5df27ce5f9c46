"""The packages' own calls, as the adapters make them, in functions that import nothing of the
harness or mixedref (only the standard library and numpy; the package comes in as an argument).

Why a module of their own: ``python -m harness repro`` (harness/commands/repro.py) copies these
functions'
source text into a standalone reproducer, and the adapters call the same functions, so the
script that an upstream maintainer runs and the fit the harness judged cannot drift apart.
tests/test_repro.py checks that this module imports nothing else."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

POLY_SUFFIX = {"Linear": ".L", "Quadratic": ".Q", "Cubic": ".C"}


def group_labels(data: Any, group: str) -> Any:
    """The grouping factor's labels per row as strings; ``a:b`` pastes its parts' labels."""
    parts = group.split(":")
    out = data[parts[0]].astype(str).to_numpy().astype(object)
    for p in parts[1:]:
        out = out + ":" + data[p].astype(str).to_numpy().astype(object)
    return out.astype(str)


def mixedlm_design(patsy: Any, data: Any, response: str, fixed: str, re_terms: list[str],
                   group: str) -> tuple[Any, Any, Any, Any]:
    """(y, X as a patsy DataFrame, group labels, exog_re) for a statsmodels-style MixedLM:
    the fixed part ``response ~ fixed`` and each random-effects term's right-hand side (``1 +
    Days``, ``0 + Days``) evaluated by patsy, the term blocks side by side."""
    y, X = patsy.dmatrices(f"{response} ~ {fixed}", data, NA_action="raise",
                           return_type="dataframe")
    exog_re = np.column_stack([np.asarray(patsy.dmatrix(rhs, data, NA_action="raise",
                                                        return_type="dataframe"), dtype=float)
                               for rhs in re_terms])
    return (np.asarray(y, dtype=float).ravel(), X, group_labels(data, group), exog_re)


def mixedlm_fit(MixedLM: Any, MixedLMParams: Any, y: Any, X: Any, groups: Any, exog_re: Any,
                reml: bool, diagonal: bool) -> Any:
    """``MixedLM(y, X, groups, exog_re).fit(reml=)`` with its defaults; ``diagonal`` (lme4's
    ``||``): a diagonal covariance through ``free=``."""
    X = np.asarray(X, dtype=float)
    model = MixedLM(y, X, groups=groups, exog_re=exog_re)
    kwargs: dict[str, Any] = {"reml": reml}
    if diagonal:
        q = exog_re.shape[1]
        kwargs["free"] = MixedLMParams.from_components(np.ones(X.shape[1]), np.eye(q))
    return model.fit(**kwargs)


def glmm_fit(glmm: Any, data: Any, formula: str, reml: bool,
             columns: list[tuple[str, str]] | tuple = ()) -> Any:
    """glmm's own call on lme4's formula: ``glmm.fit(data, formula, reml=)``, on the data with
    the groupings of ``columns`` (its formula names a grouping of three factors ``a:b:c`` as
    the pasted column ``a__b__c``: :func:`with_groups`)."""
    if columns:
        data = with_groups(data, list(columns))
    return glmm.fit(data, formula, reml=reml)


def glmm_fit_glmm(glmm: Any, data: Any, formula: str, family: str, link: str, nagq: int,
                  weights: Any, wald_se: str | None = None) -> Any:
    """glmm's GLMM call: ``glmm.fit(data, formula, family, link=, nagq=, weights=)``, the
    response as glmer reads it (binomial: the proportion, the trials as ``weights``);
    ``wald_se`` only when given (its default is the Hessian-based SE)."""
    kwargs: dict[str, Any] = {"family": family, "link": link, "nagq": nagq, "weights": weights}
    if wald_se is not None:
        kwargs["wald_se"] = wald_se
    return glmm.fit(data, formula, **kwargs)


def pyreml_fit(MixedModel: Any, Random: Any, data: Any, response: str, fixed: str,
               randoms: list[tuple[str, str, str, str]]) -> Any:
    """pyreml's ``MixedModel.from_dataframe(...).fit()``. ``randoms``: per lme4 term (unit
    column, grouping factor ``a`` or ``a:b``, left-hand formula ``1 + x``, kind ``iid`` /
    ``diag`` / ``full``); each unit column is the grouping factor's labels as strings (an
    interaction pasted)."""
    data = data.copy()
    objs = []
    for unit, group, lhs, kind in randoms:
        data[unit] = group_labels(data, group)
        objs.append(Random(unit, formula=lhs, left_hand=kind))
    model = MixedModel.from_dataframe(data, response, fixed=fixed, random=objs)
    model.fit(verbose=False)
    return model


def torch_threads(torch: Any) -> None:
    """torch on the threads OPENBLAS_NUM_THREADS allows (the harness's worker sets it to its
    share of the cores), so that a script run with the same setting sums in the same order."""
    import os

    threads = os.environ.get("OPENBLAS_NUM_THREADS")
    if threads and threads.isdigit():
        torch.set_num_threads(int(threads))


# ----------------------------------------------------------------------------- names


def r_name(patsy_name: str) -> str:
    """R's model.matrix column name of a patsy column name."""
    if patsy_name == "Intercept":
        return "(Intercept)"
    out = []
    for part in patsy_name.split(":"):
        m = re.fullmatch(r"C\((\w+), Poly\)\[?(?:\.(\w+)|\^(\d+))\]?", part)
        if m:
            var, word, power = m.groups()
            out.append(var + (POLY_SUFFIX.get(word, f".{word}") if word else f"^{power}"))
            continue
        m = re.fullmatch(r"(.+?)\[T\.(.+)\]", part)
        if m:
            var = m.group(1)
            cm = re.fullmatch(r"C\((\w+)\)", var)
            out.append((cm.group(1) if cm else var) + m.group(2))
            continue
        out.append(part)
    return ":".join(out)


def r_powers(names: list[str]) -> list[str]:
    """R's column names of coefficient names written with Python's power operator:
    ``I(age**2)`` (or formulaic's ``I(age ** 2)``) is R's ``I(age^2)``. R reads ``**`` as
    ``^`` and deparses the call without spaces around ``^``."""
    return [re.sub(r"I\(([^()]*)\)",
                   lambda m: "I(" + re.sub(r"\s*\*\*\s*", "^", m.group(1)) + ")", n)
            for n in names]


def with_groups(data: Any, columns: list[tuple[str, str]]) -> Any:
    """A copy of ``data`` with each interaction grouping ``a:b`` as a column of its own
    (``columns``: (new column, grouping)), its labels pasted."""
    data = data.copy()
    for col, group in columns:
        data[col] = group_labels(data, group)
    return data


def interlace_fit(interlace: Any, data: Any, fixed: str, random: list[str], method: str,
                  offset: Any, columns: list[tuple[str, str]], **options: Any) -> Any:
    """interlace's own call: ``interlace.fit(fixed, data, random=, method=, offset=)`` on the
    data with its interaction groupings as columns (:func:`with_groups`); ``options`` (e.g.
    ``df_method``) passed on."""
    return interlace.fit(fixed, with_groups(data, columns), random=random, method=method,
                         offset=offset, **options)


def mixedlm_lmer(mixedlm: Any, data: Any, formula: str, reml: bool, contrasts: Any,
                 offset: Any) -> Any:
    """mixedlm's own call on lme4's formula (``I(x**k)`` for R's ``I(x^k)``):
    ``mixedlm.lmer(formula, data, REML=, contrasts=, offset=)``."""
    return mixedlm.lmer(formula, data, REML=reml, contrasts=contrasts, offset=offset)


def index_names(names: list[str], levels: dict[str, list[str]], ordered: list[str]) -> list[str]:
    """R's names of coefficients named ``x.1, x.2`` (the j-th contrast column of factor x, as
    mixedlm names them): ``levels`` are each factor's levels, ``ordered`` the ordered factors
    (contr.poly: ``.L``, ``.Q``, ``.C``, ``^4``; treatment: the level)."""

    def one(part: str) -> str:
        m = re.fullmatch(r"(.+)\.(\d+)", part)
        if not m or m.group(1) not in levels:
            return part
        var, j = m.group(1), int(m.group(2))
        if var in ordered:
            return var + ({1: ".L", 2: ".Q", 3: ".C"}.get(j) or f"^{j}")
        return f"{var}{levels[var][j]}"

    return [":".join(one(p) for p in n.split(":")) for n in names]


def lme_python_r_names(names: list[str], columns: list[str],
                       levels: dict[str, list[str]]) -> list[str]:
    """R's names of lme-python's coefficient names. lme-python 0.2.7 writes a two-way
    interaction with a contrast-coded factor as ``{a}:{b}{level of a}:{level of b}``
    (``Diet:Time2:`` for R's ``Diet2:Time``, ``x:f:b`` for ``x:fb``, ``f:hb:v`` for
    ``fb:hv``); the column's values are R's, only its name is not. A name of that form, whose
    ``a`` and ``b`` are data ``columns`` and whose levels are theirs (``levels``: each factor's
    levels; a numeric column's level is empty), is renamed; any other name is kept."""
    out = []
    for name in names:
        renamed = name
        for a in columns:
            for b in columns:
                head = f"{a}:{b}"
                if a == b or not name.startswith(head) or name[len(head):].count(":") != 1:
                    continue
                la, lb = name[len(head):].split(":")
                if (la or lb) and (la in levels.get(a, [""])) and (lb in levels.get(b, [""])):
                    renamed = f"{a}{la}:{b}{lb}"
        out.append(renamed)
    return out


def lme_python_lmer(lme_python: Any, pl: Any, data: Any, formula: str, reml: bool,
                    factor_columns: list[str]) -> tuple[Any, Any]:
    """lme-python's own call: ``lme_python.lmer(formula, frame, reml=, factors=)`` on a polars
    frame, every factor as strings and those of ``factor_columns`` declared with R's levels
    (``FactorSpec(levels, coding="treatment")``). Returns (fit, polars frame)."""
    cols, factors = {}, {}
    for c in data.columns:
        if str(data[c].dtype) == "category":
            cols[c] = data[c].astype(str).to_numpy()
            if c in factor_columns:
                factors[c] = lme_python.FactorSpec([str(v) for v in data[c].cat.categories],
                                                   coding="treatment")
        else:
            cols[c] = data[c].to_numpy()
    frame = pl.DataFrame(cols)
    return lme_python.lmer(formula, frame, reml=reml, factors=factors or None), frame
