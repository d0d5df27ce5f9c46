"""F tests of a single fit's model terms, as lmerTest's ``anova(m, type=, ddf=)``.

Each term gets a contrast matrix L (lmerTest's hypotheses) and the F test of Lβ = 0 from
:func:`mixedref.inference.ddf.contest` (Satterthwaite: the eigen-decomposed multi-df test;
Kenward–Roger:
pbkrtest's scaled F). The contrasts, as lmerTest builds them:

- Type I: rows of the transposed unit lower factor of X'X (Doolittle, no pivoting), per term:
  sequential tests.
- Type II: a term no other term contains gets its own coefficients (marginal); a contained
  term gets the Type I rows of X'X with its columns moved after every unrelated one and
  before those of the terms containing it.
- Type III: SAS's hypotheses, built on the model recoded with treatment contrasts and mapped
  to the coding the model was fitted with, so the table does not depend on the contrasts
  (unlike a Type III computed on the fitted coefficients, which needs sum-to-zero coding).
  With treatment contrasts (R's default) lmerTest therefore computes the same table as with
  sum-to-zero contrasts, without a warning; it only tells when cells are empty.

Containment is lmerTest's: T1 is contained in T2 when T2 has all of T1's variables and more,
and both involve the same numeric covariates (so ``f`` is not contained in ``f:x``, but ``x``
is). A model with at most one term gets the Type I contrasts for every type, as lmerTest.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mixedref.errors import MixedrefError, MixedrefWarning
from mixedref.frontend import fixed
from mixedref.frontend.design import _offset_terms
from mixedref.frontend.formula import expand_terms, parse_formula, variables
from mixedref.inference.ddf import contest, ddf_model

__all__ = ["ANOVA_TYPES", "TERM_DDF", "anova_terms", "term_contrasts"]

#: lmerTest's names of the types (its roman numerals are accepted too).
ANOVA_TYPES = {"1": 1, "2": 2, "3": 3, "I": 1, "II": 2, "III": 3}
#: the ddf arguments: lmerTest's two methods and lme4's own table.
TERM_DDF = ("Satterthwaite", "Kenward-Roger", "lme4")

F_COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
LME4_COLUMNS = ["npar", "Sum Sq", "Mean Sq", "F value"]


# -- the model's terms --------------------------------------------------------------------------

@dataclass(frozen=True)
class Terms:
    """The fixed part's terms (R's term.labels, their variables, which are numeric vectors) and
    the fitted X with each column's term (R's assign, "(Intercept)" for the intercept), plus
    the model matrix recoded with treatment contrasts and the one-indicator-per-cell matrix
    (lmerTest's get_rdX) that Type III needs."""

    labels: tuple[str, ...]
    variables: dict[str, frozenset[str]]
    numeric: frozenset[str]
    intercept: bool
    X: np.ndarray
    assign: tuple[str, ...]
    X_treat: np.ndarray
    assign_treat: tuple[str, ...]
    names_treat: tuple[str, ...]
    rdX: np.ndarray
    rd_names: tuple[str, ...]

    def columns(self, assign: tuple[str, ...], terms: list[str] | tuple[str, ...]) -> list[int]:
        """Positions of the columns of ``terms`` in a matrix with column terms ``assign``."""
        return [i for t in terms for i, a in enumerate(assign) if a == t]

    def containing(self, term: str) -> list[str]:
        """The terms that contain ``term`` (lmerTest's containment), in term order."""
        v = self.variables[term]
        num = v & self.numeric
        return [t for t in self.labels if v < self.variables[t]
                and (self.variables[t] & self.numeric) == num]


def _fitted_variables(fit: Any, labels: set[str], nodes: dict) -> dict[str, fixed.Variable]:
    """The fixed part's variables on the rows the fit used, evaluated on the whole data first
    as the fit evaluates them (scale(), poly() see every row)."""
    model = fit.model
    data = (fit.call or {}).get("data")
    if data is None:
        raise MixedrefError("anova's term tests need the fit's data: fit the model with "
                            "mixedref.lmer(formula, data)")
    keep = None
    if model.row_positions is not None:
        keep = np.zeros(len(data), dtype=bool)
        keep[model.row_positions] = True
    cache: dict[str, fixed.Raw] = {}
    return {lab: fixed.finalize(lab, fixed.evaluate(nodes[lab], data, cache), keep)
            for lab in labels}


def _assign(terms: list, intercept: bool, vars_: dict[str, fixed.Variable], n: int,
            contrasts: dict) -> tuple[np.ndarray, list[str], list[str]]:
    """R's model.matrix with its assign attribute as term labels per column."""
    X, names = fixed.model_matrix(terms, intercept, vars_, n, contrasts)
    assign = ["(Intercept)"] if intercept else []
    for k, term in enumerate(terms):  # a term's coding depends on the terms before it
        width = len(fixed.model_matrix(terms[: k + 1], intercept, vars_, n, contrasts)[1])
        assign += [":".join(term)] * (width - len(assign))
    return X, names, assign


def model_terms(fit: Any) -> Terms:
    """The fit's :class:`Terms`, from its formula and data."""
    parsed = parse_formula(fit.model.formula)
    nodes = variables(parsed.fixed)
    terms, intercept = expand_terms(parsed.fixed)
    terms, _ = _offset_terms(terms, nodes)
    labels = {v for t in terms for v in t}
    vars_ = _fitted_variables(fit, labels, nodes)
    n = fit.model.n
    contrasts = dict(fit.model.newdata_spec.contrasts)
    _, names, assign = _assign(terms, intercept, vars_, n, contrasts)
    by_name = dict(zip(names, assign, strict=True))
    fit_names = list(fit.model.fixef_names)
    treat = {v: "contr.treatment" for v, var in vars_.items() if var.is_factor}
    Xt, tnames, tassign = _assign(terms, intercept, vars_, n, treat)
    Xt, kept, _ = fixed.drop_aliased(Xt, tnames)
    tby = dict(zip(tnames, tassign, strict=True))
    rd_blocks, rd_names = ([np.ones((n, 1))], ["(Intercept)"]) if intercept else ([], [])
    for term in terms:
        block, bnames = fixed.model_matrix([term], False, vars_, n)
        rd_blocks.append(block)
        rd_names += bnames
    rdX = np.hstack(rd_blocks) if rd_blocks else np.empty((n, 0))
    numeric = frozenset(v for v, var in vars_.items()
                        if not var.is_factor and var.values is not None and var.values.ndim == 1)
    return Terms(labels=tuple(":".join(t) for t in terms),
                 variables={":".join(t): frozenset(t) for t in terms}, numeric=numeric,
                 intercept=intercept, X=np.asarray(fit.model.X, dtype=float),
                 assign=tuple(by_name[c] for c in fit_names), X_treat=Xt,
                 assign_treat=tuple(tby[c] for c in kept), names_treat=tuple(kept),
                 rdX=rdX, rd_names=tuple(rd_names))


# -- lmerTest's building blocks -----------------------------------------------------------------

def doolittle_lower(a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """The unit lower factor of a = LU without pivoting (lmerTest's doolittle): a column whose
    pivot is below ``eps`` is zero, and entries below ``eps`` in absolute value are zeroed."""
    n = a.shape[0]
    L = np.eye(n)
    U = np.zeros((n, n))
    for i in range(n):
        U[i, :] = a[i, :] - L[i, :i] @ U[:i, :]
        if i + 1 < n:
            col = a[i + 1:, i] - L[i + 1:, :i] @ U[:i, i]
            L[i + 1:, i] = 0.0 if abs(U[i, i]) < eps else col / U[i, i]
    L[np.abs(L) < eps] = 0.0
    return L


def zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's zapsmall: round to ``digits`` significant digits of the largest entry."""
    finite = np.abs(x[np.isfinite(x)])
    mx = float(finite.max()) if finite.size else 0.0
    d = max(0, digits - math.ceil(math.log10(mx))) if mx > 0 else digits
    return np.round(x, d)


def _type1(t: Terms) -> dict[str, np.ndarray]:
    p = t.X.shape[1]
    Lt = doolittle_lower(t.X.T @ t.X).T if p > 1 else np.ones((1, 1))
    return {term: Lt[t.columns(t.assign, [term])] for term in t.labels}


def _marginal(t: Terms, term: str) -> np.ndarray:
    return np.eye(t.X.shape[1])[t.columns(t.assign, [term])]


def _type2_contained(t: Terms, term: str) -> np.ndarray:
    """Type I rows of ``term`` with X's columns ordered [unrelated, term, containing terms]."""
    inner = t.columns(t.assign, [term, *t.containing(term)])
    order = [i for i in range(t.X.shape[1]) if i not in inner] + inner
    Xn = t.X[:, order]
    Lc = doolittle_lower(Xn.T @ Xn).T
    rows = [k for k, i in enumerate(order) if t.assign[i] == term]
    out = np.zeros((len(rows), t.X.shape[1]))
    out[:, order] = Lc[rows]
    return out


def _type2(t: Terms) -> dict[str, np.ndarray]:
    return {term: _type2_contained(t, term) if t.containing(term) else _marginal(t, term)
            for term in t.labels}


def _type3(t: Terms) -> dict[str, np.ndarray]:
    """SAS's Type III hypotheses on the treatment-coded model, mapped to the fitted coding."""
    Xt = t.X_treat
    pinv = np.linalg.pinv(Xt)
    L = zapsmall((pinv @ t.rdX).T)  # rows: cells of rdX; columns: treatment coefficients
    empty = [n for n, col in zip(t.rd_names, t.rdX.T, strict=True) if not np.any(col)]
    if empty:
        warnings.warn(f"Missing cells for: {', '.join(empty)}. Interpret type III hypotheses "
                      "with care.", MixedrefWarning, stacklevel=4)
    by_order = sorted(t.labels, key=lambda s: -len(t.variables[s]))  # stable, as R's order
    for term in by_order:
        contains = t.containing(term)
        if contains:
            cols = t.columns(t.assign_treat, [term])
            basis = L[:, t.columns(t.assign_treat, contains)]
            coef = np.linalg.lstsq(basis, L[:, cols], rcond=None)[0]
            L[:, cols] = zapsmall(L[:, cols] - basis @ coef)
    keep = [t.rd_names.index(n) for n in t.names_treat]
    L = L[keep]
    mapping = zapsmall(pinv @ t.X)
    out = {}
    for term in t.labels:
        Lterm = L[:, t.columns(t.assign_treat, [term])].T
        Lterm = Lterm[np.abs(Lterm).sum(axis=1) > 1e-8]
        out[term] = Lterm @ mapping
    return out


def term_contrasts(fit: Any, type: int | str = 3) -> dict[str, np.ndarray]:
    """lmerTest's hypotheses of ``anova(m, type=)`` (its show_tests): term -> L, rows
    contrasts, columns the fixed effects."""
    kind = _check_type(type)
    t = model_terms(fit)
    if not t.labels:
        raise MixedrefError(
            f"a Type {'I' * kind} table needs fixed-effect terms: the model "
            f"{fit.model.formula!r} has none (only an intercept); to compare models, give "
            "anova at least two fits")
    if kind == 1 or t.X.shape[1] <= 1 or len(t.labels) <= 1:
        return _type1(t)
    return _type2(t) if kind == 2 else _type3(t)


# -- the tables ---------------------------------------------------------------------------------

def _check_type(type: int | str) -> int:
    key = str(type)
    if key not in ANOVA_TYPES:
        raise MixedrefError(f"unknown anova type {type!r}; the types are 1, 2, 3 (or I, II, "
                            "III), as lmerTest's")
    return ANOVA_TYPES[key]


def _lme4_table(fit: Any) -> pd.DataFrame:
    """lme4's ``anova(m)`` for one fit: per term the squared entries of R_X β summed, their
    number (npar), the mean square and F = mean square / σ²."""
    t = model_terms(fit)
    effects = (np.asarray(fit._sol.RX) @ np.asarray(fit.fixef, dtype=float)) ** 2
    rows = {}
    for term in dict.fromkeys(t.assign):
        if term == "(Intercept)":
            continue
        cols = t.columns(t.assign, [term])
        ss = float(effects[cols].sum())
        rows[term] = [len(cols), ss, ss / len(cols), ss / len(cols) / fit.sigma**2]
    return pd.DataFrame.from_dict(rows, orient="index", columns=LME4_COLUMNS).astype(
        {"npar": int})


def anova_terms(fit: Any, type: int | str = 3, ddf: str = "Satterthwaite") -> pd.DataFrame:
    """lmerTest's ``anova(m, type=, ddf=)`` of one lmer fit: rows the model's terms, columns
    Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F); ``ddf="lme4"`` gives lme4's own table
    (npar, Sum Sq, Mean Sq, F value; ``type`` ignored, as lmerTest ignores it)."""
    from mixedref.models.fit import LmerFit

    if not isinstance(fit, LmerFit):
        raise MixedrefError(f"anova's F tests of model terms take an LmerFit, got "
                            f"{fit.__class__.__name__}; for a glmer fit compare nested fits "
                            "with anova(m0, m1)")
    if ddf not in TERM_DDF:
        raise MixedrefError(f"unknown ddf {ddf!r}; the methods are {', '.join(TERM_DDF)}")
    kind = _check_type(type)
    if ddf == "lme4":
        return _lme4_table(fit)
    contrasts = term_contrasts(fit, kind)
    model = ddf_model(fit)
    rows, empty = [], []
    for term, L in contrasts.items():
        if L.shape[0] == 0:
            empty.append(term)
            continue
        tab = contest(model, L, ddf=ddf, joint=True)
        rows.append(tab.rename(index={tab.index[0]: term}))
    table = pd.concat(rows) if rows else pd.DataFrame(columns=F_COLUMNS)
    for term in empty:  # a term whose columns were all aliased: NA, as lmerTest
        table.loc[term] = np.nan
    roman = {1: "I", 2: "II", 3: "III"}[kind]
    table.attrs["heading"] = (f"Type {roman} Analysis of Variance Table with "
                              f"{'Satterthwaite' if ddf == 'Satterthwaite' else 'Kenward-Roger'}"
                              "'s method")
    table.attrs["hypotheses"] = contrasts
    return table[F_COLUMNS]
