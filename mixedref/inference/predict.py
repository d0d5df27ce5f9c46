"""Predictions, as lme4's ``predict.merMod``: the fitted model evaluated on the fitting rows or
on new data, conditional on all, some or none of the random-effects terms.

New data are coded as the fitting data were (R's xlevels, contrasts and predvars): the factor
levels and contrasts of the fit, aliased columns dropped, and ``poly()``/``scale()``/``ns()``/
``bs()`` evaluated with the fitting data's parameters. lme4's rules, matched here:

- a level of a grouping factor unseen in fitting (or missing) is an error, unless
  ``allow_new_levels``: then its random effects are 0 (the population-level prediction);
- missing values in fixed-effects variables give NaN predictions (R's na.pass);
- with new data the offset is the formula's ``offset(...)`` terms evaluated on it; an offset
  given as lmer's ``offset=`` argument is not applied (lme4 does not either);
- ``re_form`` terms must be among the model's: each grouping factor a factor of the model, each
  column one of that factor's random-effects columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mixedref.errors import DataError, FormulaError, MixedrefError
from mixedref.frontend import fixed
from mixedref.frontend.design import NewdataSpec, _check_data, _group_factor, _offset_terms
from mixedref.frontend.formula import (
    Bar,
    Call,
    Keyword,
    Name,
    Node,
    ParsedFormula,
    deparse,
    expand_terms,
    parse_formula,
    variables,
)

__all__ = ["predict"]

_POPULATION = ("NA", "~0", "~ 0", "~-1", "~ -1", "0")
_CONSTANTS = ("TRUE", "FALSE", "T", "F", "NULL")
_DUMMY = "re_form_response__"  # a response, so that re_form parses as a model formula


def predict(fit: Any, newdata: pd.DataFrame | None = None, re_form: str | None = None,
            allow_new_levels: bool = False, type: str = "link") -> np.ndarray:  # noqa: A002
    """lme4's ``predict(m, newdata, re.form, allow.new.levels, type)`` for an LmerFit or a
    GlmerFit.

    ``newdata=None``: the fitting rows (with ``re_form=None`` the fitted values: lme4's
    predict(m) = fitted(m)). ``re_form``: None for all random effects, "NA" or "~0" for the
    population level (X beta + offset), or a formula of bar terms ("~(1 | plate)") for those
    terms only. ``type``: "link" (the linear predictor) or, for a GlmerFit, "response" (its
    inverse link); an LmerFit refuses "response" by name (it has no link; lme4 returns the
    same values for both)."""
    if type not in ("link", "response"):
        raise MixedrefError(f"type must be 'link' or 'response', got {type!r}")
    if type == "response" and not _is_glmm(fit):
        raise MixedrefError("type='response' is for glmer fits (the inverse link of the linear "
                            "predictor); a linear mixed model has no link: leave type='link' "
                            "(its predictions are on the response's scale already)")
    bars = _re_bars(re_form)
    if newdata is None and bars is None:
        return _fitted(fit, type)
    mf = fit.model
    spec = mf.newdata_spec
    if spec is None:
        raise MixedrefError("this fit's model frame does not carry the coding needed for "
                            "predictions (built by an older mixedref); refit it")
    parsed = parse_formula(mf.formula)
    bars = list(parsed.bars) if bars is None else bars
    for bar in bars:
        _term_columns(fit, bar, _bar_names(spec, bar))
    if newdata is None:
        eta = _on_frame(fit, spec, bars)
    else:
        newdata = _check_data(newdata)
        _check_columns(newdata, parsed, bars, getattr(fit, "formula", parsed.text))
        cache = _prefill(newdata, spec, parsed, bars)
        eta = _fixed_part(fit, newdata, spec, parsed, cache)
        eta = eta + _random_part(fit, newdata, spec, bars, cache, allow_new_levels)
    return _inverse_link(fit, eta, type)


# ----------------------------------------------------------------------------- arguments


def _re_bars(re_form: str | None) -> list[Bar] | None:
    """The random-effects terms re_form asks for: None for all of them, [] for none."""
    if re_form is None:
        return None
    if not isinstance(re_form, str):
        raise FormulaError(f"re_form must be None, 'NA', '~0' or a formula string such as "
                           f"'~(1 | g)', got {type(re_form).__name__}")
    text = re_form.strip()
    if text in _POPULATION:
        return []
    if not text.startswith("~"):
        text = "~" + text
    try:
        parsed = parse_formula(_DUMMY + " " + text)
    except FormulaError as exc:
        why = str(exc).replace(_DUMMY + " ", "")
        raise FormulaError(f"re_form {re_form!r} cannot be read: {why}") from None
    if parsed.fixed is not None and expand_terms(parsed.fixed)[0]:
        raise FormulaError(f"re_form {re_form!r} has terms outside bars "
                           f"({deparse(parsed.fixed)}); give only random-effects terms such as "
                           "'~(1 | g)', or 'NA' for the population level")
    if not parsed.bars:
        raise FormulaError(f"re_form {re_form!r} has no random-effects terms; use 'NA' or '~0' "
                           "for the population level, None for all terms")
    return list(parsed.bars)


def _names_used(node: Node) -> set[str]:
    """The data columns an expression reads."""
    if isinstance(node, Name):
        return set() if node.id in _CONSTANTS else {node.id}
    if isinstance(node, Keyword):
        return _names_used(node.value)
    if isinstance(node, Call):
        return set().union(*(_names_used(a) for a in node.args))
    return set().union(*(_names_used(c) for c in fixed._children(node)))


def _check_columns(newdata: pd.DataFrame, parsed: ParsedFormula, bars: Sequence[Bar],
                   formula: str) -> None:
    """A column the predictions need and newdata lacks is refused by name."""
    needed: dict[str, None] = {}
    for node in [*variables(parsed.fixed).values(), *(b.lhs for b in bars),
                 *(b.group for b in bars)]:
        needed.update(dict.fromkeys(sorted(_names_used(node))))
    missing = [c for c in needed if c not in newdata.columns]
    if missing:
        raise DataError(f"newdata lacks column{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(map(repr, missing))}, needed by the model's formula "
                        f"{formula!r} (or by re_form)")


def _prefill(newdata: pd.DataFrame, spec: NewdataSpec, parsed: ParsedFormula,
             bars: Sequence[Bar]) -> dict[str, fixed.Raw]:
    """An evaluation cache with the data-dependent calls already evaluated on newdata with
    the fitting data's parameters, so that every expression using them sees those values."""
    cache: dict[str, fixed.Raw] = {}
    nodes = [*variables(parsed.fixed).values(), *(b.lhs for b in bars)]

    def walk(node: Node) -> None:
        for child in fixed._children(node):
            walk(child)
        label = deparse(node)
        if isinstance(node, Call) and label in spec.transform_inputs and label not in cache:
            cache[label] = fixed.predict_call(node, newdata, spec.transform_inputs[label], cache)

    for n in nodes:
        walk(n)
    return cache


# ----------------------------------------------------------------------------- coding


def _recode(label: str, raw: fixed.Raw, template: fixed.Variable) -> fixed.Variable:
    """A variable evaluated on newdata, coded as in fitting (missing factor values: code -1)."""
    if template.is_factor:
        if isinstance(raw, fixed.Matrix):
            raise DataError(f"variable {label!r} is matrix-valued in newdata but was a factor "
                            "in fitting")
        cat = raw if isinstance(raw, pd.Categorical) else fixed._factor_of(raw, label)
        labels = np.asarray([str(c) for c in cat.categories], dtype=object)
        present = cat.codes >= 0
        lookup = pd.Index(template.levels).get_indexer(labels)
        codes = np.full(len(cat), -1, dtype=np.int64)
        codes[present] = lookup[cat.codes[present]]
        new = sorted(set(labels[cat.codes[present & (codes < 0)]]))
        if new:
            raise DataError(f"factor {label!r} has new level{'s' if len(new) > 1 else ''} "
                            f"{', '.join(map(repr, new))} in newdata, not seen in fitting (its "
                            f"levels: {', '.join(template.levels)})")
        return fixed.Variable(label, codes=codes, levels=template.levels,
                              ordered=template.ordered)
    if isinstance(raw, pd.Categorical):
        if list(raw.categories) != ["FALSE", "TRUE"]:
            raise DataError(f"variable {label!r} is a factor (or strings) in newdata but was "
                            "numeric in fitting")
        raw = fixed._numeric(raw, Name(label))
    values = raw.values if isinstance(raw, fixed.Matrix) else np.asarray(raw, dtype=float)
    assert template.values is not None
    if values.shape[1:] != template.values.shape[1:]:
        raise DataError(f"variable {label!r} has {values.shape[1:]} columns in newdata, "
                        f"{template.values.shape[1:]} in fitting")
    return fixed.Variable(label, values=values, colnames=template.colnames)


def _matrix(terms: list, intercept: bool, nodes: dict[str, Node], newdata: pd.DataFrame,
            spec: NewdataSpec, cache: dict[str, fixed.Raw],
            contrasts: dict | None = None) -> tuple[np.ndarray, list[str]]:
    """R's model.matrix of some terms on newdata with the fitting coding; rows with a missing
    value are NaN (R's na.pass)."""
    n = newdata.shape[0]
    vars_: dict[str, fixed.Variable] = {}
    na = np.zeros(n, dtype=bool)
    for label in {v for t in terms for v in t}:
        if label not in spec.variables:
            raise FormulaError(f"variable {label!r} is not a variable of the model")
        var = _recode(label, fixed.evaluate(nodes[label], newdata, cache),
                      spec.variables[label])
        if var.is_factor:
            assert var.codes is not None
            na |= var.codes < 0
            var = fixed.Variable(label, codes=np.where(var.codes < 0, 0, var.codes),
                                 levels=var.levels, ordered=var.ordered)
        vars_[label] = var
    X, names = fixed.model_matrix(terms, intercept, vars_, n, contrasts)
    X[na] = np.nan
    return X, names


def _fixed_part(fit: Any, newdata: pd.DataFrame, spec: NewdataSpec, parsed: ParsedFormula,
                cache: dict[str, fixed.Raw]) -> np.ndarray:
    """X beta + the formula's offset terms, on newdata."""
    nodes = variables(parsed.fixed)
    terms, intercept = expand_terms(parsed.fixed)
    terms, offsets = _offset_terms(terms, nodes)
    X, names = _matrix(terms, intercept, nodes, newdata, spec, cache, dict(spec.contrasts))
    beta = fit.fixef
    cols = pd.Index(names).get_indexer(beta.index)
    assert (cols >= 0).all(), "a fitted column is missing from the new model matrix"
    eta = X[:, cols] @ beta.to_numpy()
    for label in offsets:
        eta = eta + fixed._numeric(fixed.evaluate(nodes[label], newdata, cache), nodes[label])
    return eta


# ----------------------------------------------------------------------------- random part


def _bar_names(spec: NewdataSpec, bar: Bar) -> list[str]:
    """The column names a bar term's model matrix has under the fitting coding."""
    terms, intercept = expand_terms(bar.lhs)
    unknown = sorted({v for t in terms for v in t} - set(spec.variables))
    if unknown:
        raise FormulaError(f"re_form term ({bar.label}) uses {', '.join(map(repr, unknown))}, "
                           "not a variable of the model's random-effects terms")
    return fixed.model_matrix(terms, intercept, spec.variables, 1)[1]


def _term_columns(fit: Any, bar: Bar, names: list[str]) -> pd.DataFrame:
    """The conditional modes of a re_form term's columns, checked to be the model's."""
    group = bar.group_name
    if group not in fit.ranef:
        raise FormulaError(f"re_form term ({bar.label}): grouping factor {group!r} is not one of "
                           f"the model's ({', '.join(fit.ranef)})")
    modes = fit.ranef[group]
    absent = [c for c in names if c not in modes.columns]
    if absent:
        raise FormulaError(f"re_form term ({bar.label}): random effects {', '.join(absent)} are "
                           f"not in the model (its {group!r} terms have "
                           f"{', '.join(modes.columns)})")
    first = [list(modes.columns).index(c) for c in names]
    return modes.iloc[:, first]


def _random_part(fit: Any, newdata: pd.DataFrame, spec: NewdataSpec, bars: Sequence[Bar],
                 cache: dict[str, fixed.Raw], allow_new_levels: bool) -> np.ndarray:
    """Z b on newdata for the terms asked for; new or missing levels get b = 0 if allowed."""
    eta = np.zeros(newdata.shape[0])
    for bar in bars:
        Zb, names = _matrix(*expand_terms(bar.lhs), variables(bar.lhs), newdata, spec, cache)
        modes = _term_columns(fit, bar, names)
        g = _group_factor(bar.group, newdata, cache, [])
        labels = np.asarray([str(c) for c in g.categories], dtype=object)
        idx = np.full(len(g), -1, dtype=np.int64)
        present = g.codes >= 0
        idx[present] = pd.Index(modes.index.astype(str)).get_indexer(labels)[g.codes[present]]
        if not allow_new_levels:
            _refuse_new_levels(bar.group_name, labels[g.codes[present & (idx < 0)]],
                               int((~present).sum()))
        B = np.vstack([modes.to_numpy(), np.zeros((1, modes.shape[1]))])  # last row: new
        eta = eta + np.einsum("nq,nq->n", Zb, B[np.where(idx < 0, -1, idx)])
    return eta


def _refuse_new_levels(group: str, new: np.ndarray, n_missing: int) -> None:
    if len(new):
        levels = sorted(set(new))
        raise DataError(f"new level{'s' if len(levels) > 1 else ''} "
                        f"{', '.join(map(repr, levels[:10]))} of grouping factor {group!r} in "
                        "newdata, not seen in fitting; pass allow_new_levels=True to predict "
                        "them at the population level (random effects 0)")
    if n_missing:
        raise DataError(f"grouping factor {group!r} is missing in {n_missing} row(s) of newdata:"
                        " NAs are not allowed in prediction data for grouping variables unless "
                        "allow_new_levels=True (lme4's rule)")


def _on_frame(fit: Any, spec: NewdataSpec, bars: Sequence[Bar]) -> np.ndarray:
    """X beta + offset + the asked-for part of Z b on the fitting rows (padded as fitted)."""
    mf = fit.model
    eta = mf.X @ fit.fixef.to_numpy()
    if mf.offset is not None:
        eta = eta + mf.offset
    for bar in bars:
        names = _bar_names(spec, bar)
        modes = _term_columns(fit, bar, names)
        for j, name in enumerate(names):
            term = next(t for t in mf.reterms if t.group == bar.group_name and name in t.columns)
            k = term.columns.index(name)
            b = modes.iloc[:, j].reindex(list(term.levels)).to_numpy()
            eta = eta + term.X[:, k] * b[term.codes]
    return _padded(mf, eta)


def _padded(mf: Any, values: np.ndarray) -> np.ndarray:
    """Values on the fitting rows, NaN-padded at rows dropped for missing values under
    na_action="na.exclude" (R's napredict)."""
    if mf.na_action != "na.exclude" or mf.na_positions is None or not len(mf.na_positions):
        return values
    out = np.full(len(mf.padded_positions), np.nan)
    out[np.isin(mf.padded_positions, mf.row_positions)] = values
    return out


# ----------------------------------------------------------------------------- scale


def _is_glmm(fit: Any) -> bool:
    return hasattr(fit, "family") and hasattr(fit, "linear_predictor")


def _fitted(fit: Any, type: str) -> np.ndarray:  # noqa: A002
    if _is_glmm(fit) and type == "link":
        return np.asarray(fit.linear_predictor, dtype=float).copy()
    return np.asarray(fit.fitted, dtype=float).copy()


def _inverse_link(fit: Any, eta: np.ndarray, type: str) -> np.ndarray:  # noqa: A002
    if _is_glmm(fit) and type == "response":
        return np.asarray(fit.family.linkinv(eta), dtype=float)
    return eta
