"""Model matrices with R's semantics: evaluate a formula's variables on a DataFrame, code them
as R's ``model.matrix`` does (treatment contrasts, ``contr.poly`` for ordered factors, R's rule
for which factor of an interaction gets full dummy coding), name the columns exactly as R, and
drop aliased columns as lme4 does.

formulaic is not used for the coding: its full-rank rule differs from R's ``model.matrix`` for
interactions without main effects (R's ``~ x + a:b`` keeps all a x b indicator columns), and
lme4's answers depend on R's columns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mixedref.errors import DataError, FormulaError
from mixedref.formula import BinOp, Call, Name, Node, Num, Paren, Term, Unary, deparse

__all__ = [
    "Variable",
    "contr_poly",
    "drop_aliased",
    "evaluate",
    "finalize",
    "model_matrix",
    "na_mask",
    "r_levels",
]

Raw = np.ndarray | pd.Categorical  # an evaluated variable before missing rows are removed

_FUNCS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "log": np.log, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "log2": np.log2,
    "log10": np.log10, "log1p": np.log1p, "expm1": np.expm1, "sin": np.sin, "cos": np.cos,
    "tan": np.tan, "as.numeric": np.asarray, "as.double": np.asarray,
}  # fmt: skip
_ARITH: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power,
    "<": np.less, ">": np.greater, "<=": np.less_equal, ">=": np.greater_equal,
    "==": np.equal, "!=": np.not_equal, "&": np.logical_and, "|": np.logical_or,
}  # fmt: skip


def _format_number(v: float) -> str:
    """R's as.character for a number (15 significant digits)."""
    return f"{v:.15g}"


def r_levels(values: np.ndarray) -> pd.Categorical:
    """R's ``factor()`` of a plain vector without missing values: levels sorted (numbers
    numerically, strings by code point as in the C locale), numbers labelled as R prints them,
    logicals as FALSE/TRUE."""
    if values.dtype.kind == "b":
        return pd.Categorical(np.where(values, "TRUE", "FALSE"), categories=["FALSE", "TRUE"])
    cat = pd.Categorical(values)  # pandas sorts the categories: numbers and code points
    if values.dtype.kind in "iuf":
        labels = [_format_number(float(c)) for c in cat.categories]
        return pd.Categorical.from_codes(cat.codes, categories=labels, validate=False)
    return cat.rename_categories([str(c) for c in cat.categories])


def _logical(series: pd.Series) -> pd.Categorical:
    """R's logical as model.matrix codes it: a factor with levels FALSE, TRUE."""
    missing = series.isna().to_numpy()
    codes = series.where(~missing, False).to_numpy(dtype=bool).astype(np.int8)
    codes[missing] = -1
    return pd.Categorical.from_codes(codes, categories=["FALSE", "TRUE"], validate=False)


def _column(series: pd.Series, name: str) -> Raw:
    """A data column as R's model.frame sees it: numbers as float (NaN for missing), bool as a
    logical factor (levels FALSE, TRUE), categoricals kept, strings as a sorted factor."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cat = series.array
        assert isinstance(cat, pd.Categorical)
        return cat.rename_categories([str(c) for c in cat.categories])
    if pd.api.types.is_bool_dtype(dtype):
        return _logical(series)
    if pd.api.types.is_numeric_dtype(dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        kind = pd.api.types.infer_dtype(series, skipna=True)
        if kind == "boolean":
            return _logical(series)
        if kind not in ("string", "empty"):
            raise DataError(
                f"column {name!r} holds {kind} values; use strings, numbers, booleans or a "
                "pandas Categorical, one type per column"
            )
        vals = series.to_numpy(dtype=object, na_value=None)
        return r_levels_of_strings(vals, pd.notna(vals))
    raise DataError(f"column {name!r} has unsupported type {dtype}")


def r_levels_of_strings(vals: np.ndarray, present: np.ndarray) -> pd.Categorical:
    """R's factor() of a character vector with missing values: levels by code point."""
    if present.all():
        return r_levels(vals)
    cat = r_levels(vals[present])
    codes = np.full(vals.shape, -1, dtype=np.int8 if len(cat.categories) < 127 else np.int64)
    codes[present] = cat.codes
    return pd.Categorical.from_codes(codes, categories=cat.categories, validate=False)


def evaluate(node: Node, data: pd.DataFrame, cache: dict[str, Raw] | None = None) -> Raw:
    """Evaluate an R expression over the data's columns (before missing rows are removed)."""
    cache = {} if cache is None else cache
    key = deparse(node)
    if key in cache:
        return cache[key]
    out = _evaluate(node, data, cache)
    cache[key] = out
    return out


def _numeric(x: Raw, node: Node) -> np.ndarray:
    if isinstance(x, pd.Categorical):
        if list(x.categories) == ["FALSE", "TRUE"]:
            codes = x.codes.astype(np.float64)
            return np.where(codes < 0, np.nan, codes)
        raise FormulaError(f"arithmetic on the factor in {deparse(node)!r}")
    return x.astype(np.float64) if x.dtype.kind == "b" else x


def _evaluate(node: Node, data: pd.DataFrame, cache: dict[str, Raw]) -> Raw:
    if isinstance(node, Name):
        if node.id not in data.columns:
            cols = ", ".join(map(str, list(data.columns)[:20]))
            raise FormulaError(
                f"unknown column {node.id!r} in the formula; the data has columns: {cols}"
            )
        return _column(data[node.id], node.id)
    if isinstance(node, Num):
        return np.full(len(data), node.value)
    if isinstance(node, Paren):
        return evaluate(node.inner, data, cache)
    if isinstance(node, Unary):
        val = evaluate(node.operand, data, cache)
        if node.op == "!":
            return np.logical_not(_numeric(val, node))
        return -_numeric(val, node) if node.op == "-" else _numeric(val, node)
    if isinstance(node, BinOp):
        if node.op not in _ARITH:
            raise FormulaError(f"operator {node.op!r} cannot be evaluated in {deparse(node)!r}")
        a = _numeric(evaluate(node.lhs, data, cache), node)
        b = _numeric(evaluate(node.rhs, data, cache), node)
        with np.errstate(all="ignore"):
            out = _ARITH[node.op](a, b)
        if out.dtype.kind == "b":
            nan = np.isnan(a) | np.isnan(b)
            if nan.any():
                lab = np.where(out, "TRUE", "FALSE").astype(object)
                lab[nan] = None
                return pd.Categorical(lab, categories=["FALSE", "TRUE"])
            return r_levels(out)
        return out
    assert isinstance(node, Call)
    if node.fn in ("I", "factor", "as.factor", "ordered", "as.ordered") or node.fn in _FUNCS:
        if len(node.args) != 1:
            raise FormulaError(f"{node.fn}() takes one argument in {deparse(node)!r}")
        val = evaluate(node.args[0], data, cache)
        if node.fn == "I":
            return val
        if node.fn in ("factor", "as.factor", "ordered", "as.ordered"):
            cat = val if isinstance(val, pd.Categorical) else _factor_of(val)
            return cat.as_ordered() if node.fn in ("ordered", "as.ordered") else cat
        with np.errstate(all="ignore"):
            return np.asarray(_FUNCS[node.fn](_numeric(val, node)), dtype=np.float64)
    raise FormulaError(
        f"function {node.fn!r} in {deparse(node)!r} is not supported "
        f"(supported: I, factor, ordered, {', '.join(sorted(_FUNCS))})"
    )


def _factor_of(values: np.ndarray) -> pd.Categorical:
    """R's factor() of an evaluated numeric or logical vector, NaN kept missing."""
    if values.dtype.kind == "f" and np.isnan(values).any():
        ok = ~np.isnan(values)
        cat = r_levels(values[ok])
        codes = np.full(values.shape, -1, dtype=np.int64)
        codes[ok] = cat.codes
        return pd.Categorical.from_codes(codes, categories=cat.categories, validate=False)
    return r_levels(values)


def na_mask(raw: Raw) -> np.ndarray:
    """Rows where the variable is missing (NA/NaN), as R's na.omit sees them."""
    if isinstance(raw, pd.Categorical):
        return raw.codes < 0
    return np.isnan(raw) if raw.dtype.kind == "f" else np.zeros(raw.shape, dtype=bool)


@dataclass(frozen=True)
class Variable:
    """A variable of the model frame (missing rows removed): numeric values, or a factor
    (codes into levels, unused levels dropped)."""

    label: str
    values: np.ndarray | None = None  # numeric
    codes: np.ndarray | None = None  # factor
    levels: tuple[str, ...] = ()
    ordered: bool = False

    @property
    def is_factor(self) -> bool:
        return self.codes is not None


def finalize(label: str, raw: Raw, keep: np.ndarray | None) -> Variable:
    """Subset an evaluated variable to the rows kept and drop unused factor levels (R's
    model.frame with drop.unused.levels = TRUE)."""
    if isinstance(raw, pd.Categorical):
        cat = raw if keep is None else raw[keep]
        cat = cat.remove_unused_categories()
        return Variable(
            label,
            codes=cat.codes.astype(np.int64),
            levels=tuple(str(c) for c in cat.categories),
            ordered=bool(cat.ordered),
        )
    vals = raw if keep is None else raw[keep]
    return Variable(label, values=np.asarray(vals, dtype=np.float64))


def contr_poly(n: int) -> tuple[np.ndarray, list[str]]:
    """R's ``contr.poly(n)``: orthonormal polynomial contrasts and their names
    (".L", ".Q", ".C", "^4", ...)."""
    x = np.arange(1, n + 1, dtype=np.float64)
    vander = np.vander(x - x.mean(), n, increasing=True)
    q, r = np.linalg.qr(vander)
    contr = (q * np.sign(np.diag(r)))[:, 1:]
    names = [".L", ".Q", ".C"][: n - 1] + [f"^{k}" for k in range(4, n)]
    return contr, names


def _factor_block(var: Variable, full: bool) -> tuple[np.ndarray, list[str]]:
    nlev = len(var.levels)
    assert var.codes is not None
    if full:
        contr, names = np.eye(nlev), list(var.levels)
    else:
        if nlev < 2:
            raise DataError(
                f"factor {var.label!r} has a single level ({', '.join(var.levels) or 'none'}) "
                "among the rows used; contrasts need 2 or more levels"
            )
        if var.ordered:
            contr, names = contr_poly(nlev)
        else:
            contr, names = np.eye(nlev)[:, 1:], list(var.levels[1:])
    return contr[var.codes], [var.label + n for n in names]


def model_matrix(
    terms: Sequence[Term], intercept: bool, variables: Mapping[str, Variable], n: int
) -> tuple[np.ndarray, list[str]]:
    """R's ``model.matrix``: columns per term in term order, factors coded by contrasts unless
    R's rule (Statistical Models in S, p. 38) asks for full indicator coding, columns of an
    interaction with the first variable varying fastest, named as R names them."""
    full_first: tuple[int, str] | None = None
    if not intercept:  # R: the first factor in the first term holding one gets full coding
        for i, t in enumerate(terms):
            fac = [v for v in t if variables[v].is_factor]
            if fac:
                full_first = (i, fac[0])
                break
    blocks: list[np.ndarray] = [np.ones((n, 1))] if intercept else []
    names: list[str] = ["(Intercept)"] if intercept else []
    for i, term in enumerate(terms):
        mat = np.ones((n, 1))
        cols = [""]
        for v in term:
            var = variables[v]
            if var.is_factor:
                rest = set(term) - {v}
                full = (i, v) == full_first or (
                    bool(rest) and not any(rest <= set(p) for p in terms[:i])
                )
                block, bnames = _factor_block(var, full)
            else:
                assert var.values is not None
                block, bnames = var.values[:, None], [var.label]
            mat = (block[:, :, None] * mat[:, None, :]).reshape(n, -1)
            cols = [f"{c}:{b}" if c else b for b in bnames for c in cols]
        blocks.append(mat)
        names.extend(cols)
    X = np.hstack(blocks) if blocks else np.empty((n, 0))
    return np.ascontiguousarray(X), names


def drop_aliased(
    X: np.ndarray, names: Sequence[str], tol: float = 1e-7
) -> tuple[np.ndarray, list[str], list[str]]:
    """lme4's check.rankX = "message+drop.cols": R's ``qr(X, tol = 1e-7, LAPACK = FALSE)``
    (LINPACK's limited pivoting) keeps, in order, each column not within ``tol`` (relative to
    its own norm) of the span of the columns kept before it; the others are dropped."""
    p = X.shape[1]
    if p == 0:
        return X, list(names), []
    q, r = np.linalg.qr(X)
    if np.all(np.abs(np.diag(r)) > tol * np.linalg.norm(X, axis=0)):
        return X, list(names), []
    basis = np.empty((X.shape[0], 0))
    keep: list[int] = []
    for j in range(p):
        col = X[:, j]
        norm = np.linalg.norm(col)
        res = col - basis @ (basis.T @ col)
        res = res - basis @ (basis.T @ res)
        rn = np.linalg.norm(res)
        if norm > 0 and rn > tol * norm:
            keep.append(j)
            basis = np.column_stack([basis, res / rn])
    dropped = [names[j] for j in range(p) if j not in keep]
    return X[:, keep], [names[j] for j in keep], dropped
