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


def blank(value: Any) -> bool:
    """A VarCorr cell a package leaves empty (None, NaN or whitespace)."""
    return value is None or (isinstance(value, float) and np.isnan(value)) \
        or not str(value).strip()


def interlace_blocks(rows: list[dict[str, Any]], alias: dict[str, str]
                     ) -> dict[str, tuple[list[str], Any]]:
    """interlace's ``VarCorr(m).as_dataframe()`` records as per-group blocks: group (a pasted
    interaction column named by its grouping, ``alias``) -> (column names, covariance); the
    Residual row left out."""
    blocks: dict[str, tuple[list[str], dict[tuple[Any, Any], float]]] = {}
    for r in rows:
        grp = alias.get(str(r["grp"]), str(r["grp"]))
        if grp == "Residual":
            continue
        v1, v2 = r["var1"], r["var2"]
        names, entries = blocks.setdefault(grp, ([], {}))
        if blank(v2):
            names.append(str(v1))
            entries[(v1, v1)] = float(r["vcov"])
        else:
            entries[(v1, v2)] = entries[(v2, v1)] = float(r["vcov"])
    return {g: (n, np.array([[e.get((a, b), 0.0) for b in n] for a in n]))
            for g, (n, e) in blocks.items()}


def interlace_glmer(interlace: Any, frame: Any, fixed: str, family: str, random: list[str],
                    weights: Any, nagq: int, offset: Any) -> Any:
    """interlace's GLMM call: ``interlace.glmer(fixed, frame, family=, random=, weights=,
    nAGQ=, offset=)``, the response as glmer reads it (binomial: the proportion, the trials as
    ``weights``)."""
    return interlace.glmer(fixed, frame, family=family, random=random, weights=weights,
                           nAGQ=nagq, offset=offset)


def interlace_theta_blocks(theta: Any, specs: list[tuple[str, list[str], bool]]
                           ) -> dict[str, tuple[list[str], Any]]:
    """interlace's GLMM ``theta`` as per-group covariances: ``specs`` are its random-effects
    specs in its order (group, columns, ``||``); per spec one SD (one column), the SDs of a
    ``||`` term, or the lower Cholesky factor filled row by row."""
    theta = np.asarray(theta, dtype=float)
    blocks: dict[str, tuple[list[str], Any]] = {}
    k = 0
    for group, cols, double in specs:
        q = len(cols)
        if q == 1:
            cov = np.array([[theta[k] ** 2]])
            k += 1
        elif double:
            cov = np.diag(theta[k:k + q] ** 2)
            k += q
        else:
            L = np.zeros((q, q))
            for row in range(q):
                for col in range(row + 1):
                    L[row, col] = theta[k]
                    k += 1
            cov = L @ L.T
        blocks[group] = (list(cols), cov)
    if k != theta.size:
        raise RuntimeError(f"interlace returned {theta.size} theta for {k} expected")
    return blocks


def lme_python_blocks(var_corr: Any) -> dict[str, tuple[list[str], Any]]:
    """lme-python's ``var_corr`` rows (grp, var1, var2, vcov, sdcor; a covariance row written
    (slope, intercept)) as per-group blocks: group -> (column names, covariance); the Residual
    row left out."""
    blocks: dict[str, tuple[list[str], dict[tuple[Any, Any], float]]] = {}
    for grp, v1, v2, vcov, _ in var_corr or []:
        if grp == "Residual":
            continue
        names, entries = blocks.setdefault(grp, ([], {}))
        if v1 == v2:
            names.append(v1)
        entries[(v1, v2)] = entries[(v2, v1)] = float(vcov)
    return {g: (n, np.array([[e.get((a, b), 0.0) for b in n] for a in n]))
            for g, (n, e) in blocks.items()}


def lme_python_glmer(lme_python: Any, pl: Any, frame: Any, formula: str, family: str,
                     nagq: int, weights: Any, link: str) -> Any:
    """lme-python's GLMM call: ``lme_python.glmer_weighted(formula, polars frame, family,
    n_agq=, weights=, link_name=)``; factors and text go in as strings (its glmer takes no
    ``factors=``), the response as glmer reads it (the proportion, the trials as weights)."""
    cols = {}
    for c in frame.columns:
        if str(frame[c].dtype) in ("category", "object", "str", "string"):
            cols[c] = frame[c].astype(str).to_numpy()
        else:
            cols[c] = frame[c].to_numpy()
    weights = None if weights is None else [float(w) for w in weights]
    return lme_python.glmer_weighted(formula, pl.DataFrame(cols), family, n_agq=nagq,
                                     weights=weights, link_name=link)


def patsy_fixed(patsy: Any, data: Any, formula: str) -> tuple[Any, Any]:
    """(y, X as a patsy DataFrame) of ``response ~ fixed`` (R's contrasts written in)."""
    y, X = patsy.dmatrices(formula, data, NA_action="raise", return_type="dataframe")
    return np.asarray(y, dtype=float).ravel(), X


def gpboost_fit(gpb: Any, y: Any, X: Any, group_data: Any, likelihood: str, offset: Any,
                rand_coef: Any = None, ind_effect: Any = None, drop_intercept: Any = None
                ) -> tuple[Any, Any, Any, float]:
    """gpboost's call: ``GPModel(group_data=, likelihood=, matrix_inversion_method=
    "cholesky")`` (the exact likelihood; its default uses stochastic log-determinants once
    there is more than one grouped effect), with random coefficients when given, then
    ``fit(y, X, offset=)``. Returns (model, covariance parameters, [coefficients, their SEs],
    log-likelihood)."""
    kwargs: dict[str, Any] = {"group_data": group_data}
    if rand_coef is not None:
        kwargs.update(group_rand_coef_data=rand_coef, ind_effect_group_rand_coef=ind_effect,
                      drop_intercept_group_rand_effect=drop_intercept)
    m = gpb.GPModel(likelihood=likelihood, matrix_inversion_method="cholesky", **kwargs)
    m.fit(y=np.asarray(y, dtype=float).ravel(), X=X, offset=offset)
    cov_pars = np.asarray(m.get_cov_pars(std_err=False, format_pandas=False),
                          dtype=float).ravel()
    coef = np.asarray(m.get_coef(std_err=True, format_pandas=False), dtype=float)
    return m, cov_pars, coef, -float(m.get_current_neg_log_likelihood())


def gpboost_variances(cov_pars: Any, intercepts: list[str], slopes: list[tuple[str, str]],
                      gaussian: bool) -> tuple[float, dict[tuple[str, str], float]]:
    """gpboost's ``get_cov_pars`` ([error variance (Gaussian)], intercept variances in
    ``group_data`` order, coefficient variances in ``group_rand_coef_data`` order) as
    (residual variance, 1.0 for a GLMM; {(group, column): variance})."""
    sigma2 = float(cov_pars[0]) if gaussian else 1.0
    variances = list(cov_pars[1:] if gaussian else cov_pars)
    by_term = {(g, "(Intercept)"): float(v)
               for g, v in zip(intercepts, variances[:len(intercepts)], strict=True)}
    by_term.update({key: float(v) for key, v in
                    zip(slopes, variances[len(intercepts):], strict=True)})
    return sigma2, by_term


def kamino_lmer(kamino: Any, data: Any, formula: str, reml: bool,
                group_columns: list[str]) -> Any:
    """kamino's own call: ``kamino.lmer(formula, frame, reml=)``, its grouping columns as
    strings (its interactions need them)."""
    frame = data.copy()
    for col in group_columns:
        frame[col] = frame[col].astype(str)
    return kamino.lmer(formula, frame, reml=reml)


def kamino_blocks(m: Any) -> dict[str, tuple[list[str], Any]]:
    """kamino's ``random_covariance`` cut into its terms (``covariance_term_sizes``, in the
    order of ``random_terms``; one grouping factor: ``group_name`` and
    ``random_coefficient_names``): group -> (column names, covariance); a second term of one
    factor keyed with a trailing space."""
    cov = np.atleast_2d(np.asarray(m.random_covariance, dtype=float))
    blocks: dict[str, tuple[list[str], Any]] = {}
    if not m.random_terms:
        return {m.group_name: (list(m.random_coefficient_names), cov)}
    start = 0
    for rt, size in zip(m.random_terms, m.covariance_term_sizes, strict=True):
        key = rt.group_name
        while key in blocks:  # two terms of one factor: keep both
            key += " "
        blocks[key] = (list(rt.random_coefficient_names), cov[start:start + size,
                                                                start:start + size])
        start += size
    return blocks


def pymixef_name(name: str) -> str:
    """R's name of a pymixef fixed-effect column: ``Intercept`` is ``(Intercept)``, ``f[b]``
    is ``fb``, an interaction's parts each so."""
    if name == "Intercept":
        return "(Intercept)"
    parts = []
    for part in name.split(":"):
        m = re.fullmatch(r"(?P<var>[^\[\]]+)\[(?:T\.)?(?P<level>[^\[\]]+)\]", part)
        parts.append(m["var"] + m["level"] if m else part)
    return ":".join(parts)


def pymixef_fit(pymixef: Any, frame: Any, formula: str, method: str, family: Any = None) -> Any:
    """pymixef's own call: ``pymixef.fit(formula, data=, family=, method=)`` (``reml``,
    ``ml`` or ``laplace``) on lme4's formula."""
    return pymixef.fit(formula, data=frame, family=family, method=method)


def pymixef_blocks(params: dict[str, Any]) -> dict[str, tuple[list[str], Any]]:
    """pymixef's ``sd(group:column)`` and ``corr(group:a,b)`` parameters as per-group
    covariances: group -> (R's column names, covariance)."""
    sds: dict[str, dict[str, float]] = {}
    corrs: dict[tuple[str, frozenset[str]], float] = {}
    for key, value in params.items():
        m = re.fullmatch(r"sd\((.+):([^:]+)\)", key)
        if m:
            sds.setdefault(m[1], {})[pymixef_name(m[2])] = float(value)
        m = re.fullmatch(r"corr\((.+):([^,:]+),([^,:]+)\)", key)
        if m:
            corrs[(m[1], frozenset((pymixef_name(m[2]), pymixef_name(m[3]))))] = float(value)
    out = {}
    for group, by_col in sds.items():
        cols = list(by_col)
        sd = np.array([by_col[c] for c in cols])
        corr = np.eye(len(cols))
        for i in range(len(cols)):
            for j in range(i):
                corr[i, j] = corr[j, i] = corrs.get((group, frozenset((cols[i], cols[j]))),
                                                    0.0)
        out[group] = (cols, corr * np.outer(sd, sd))
    return out


def re_columns(patsy: Any, data: Any, column: str) -> Any:
    """One random coefficient's column as patsy evaluates it (``0 + x``)."""
    return np.asarray(patsy.dmatrix(f"0 + {column}", data, NA_action="raise",
                                    return_type="dataframe"), dtype=float).ravel()


def gpboost_coefficients(patsy: Any, data: Any, groups: list[str], intercepts: list[str],
                         slopes: list[tuple[str, str]]) -> tuple[Any, Any, Any]:
    """gpboost's random coefficients for lme4's terms ``slopes`` (group, column): its
    ``group_rand_coef_data`` (the columns side by side), ``ind_effect_group_rand_coef`` (each
    one's group, 1-based in ``groups``) and ``drop_intercept_group_rand_effect`` (the groups
    without a random intercept); all None without slopes."""
    if not slopes:
        return None, None, None
    rand_coef = np.column_stack([re_columns(patsy, data, c) for _, c in slopes])
    return (rand_coef, [groups.index(g) + 1 for g, _ in slopes],
            [g not in intercepts for g in groups])
