"""Model matrices with R's semantics: evaluate a formula's variables on a DataFrame, code them
as R's ``model.matrix`` does (treatment contrasts, ``contr.poly`` for ordered factors, R's rule
for which factor of an interaction gets full dummy coding), name the columns exactly as R, and
drop aliased columns as lme4 does.

formulaic is not used for the coding: its full-rank rule differs from R's ``model.matrix`` for
interactions without main effects (R's ``~ x + a:b`` keeps all a x b indicator columns), and
lme4's answers depend on R's columns.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mixedref.errors import DataError, FormulaError, NaNsProducedWarning, ScaleWarning
from mixedref.frontend.formula import (
    BinOp,
    Call,
    Keyword,
    Name,
    Node,
    Num,
    Paren,
    Term,
    Unary,
    deparse,
)

__all__ = [
    "CONTRASTS",
    "Matrix",
    "Variable",
    "bs_basis",
    "check_scale_x",
    "contr_poly",
    "contrast_matrix",
    "drop_aliased",
    "drop_aliased_qr",
    "evaluate",
    "finalize",
    "model_matrix",
    "na_mask",
    "ns_basis",
    "poly_basis",
    "predict_call",
    "strict_lower",
    "transform_inputs",
    "r_levels",
]


@dataclass(frozen=True, eq=False)
class Matrix:
    """A matrix-valued variable (``poly(x, 2)``, ``ns(x, 3)``): R's model.matrix names its
    columns label + colname ("poly(x, 2)1"), or label + 1..k when it has no column names."""

    values: np.ndarray  # n x k float64, NaN for missing
    colnames: tuple[str, ...] | None = None


Raw = np.ndarray | pd.Categorical | Matrix  # an evaluated variable before missing rows go

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


def _check_labels(values: Sequence[object], labels: Sequence[str], name: str | None) -> None:
    """Distinct values whose labels collide (0.3 and 0.1 + 0.2 both print "0.3"; categories 1
    and "1") are refused naming the column and the values: R would silently merge them into one
    level, pandas refuses with a bare ValueError."""
    if len(set(labels)) == len(labels):
        return
    seen: dict[str, object] = {}
    clashes: list[str] = []
    for v, lab in zip(values, labels, strict=True):
        if lab in seen:
            clashes.append(f"{seen[lab]!r} and {v!r} both read as level {lab!r}")
        else:
            seen[lab] = v
    where = f"column {name!r}" if name else "a factor"
    numeric = any(isinstance(v, float | np.floating) for v in values)
    why = ("R's factor() labels numbers with 15 significant digits and would merge them into "
           "one level" if numeric else "R would merge them into one level")
    raise DataError(
        f"{where} has distinct values whose labels collide: {'; '.join(clashes[:3])} ({why}); "
        "round or recode the column so that each group has one label"
    )


def r_levels(values: np.ndarray, name: str | None = None) -> pd.Categorical:
    """R's ``factor()`` of a plain vector without missing values: levels sorted (numbers
    numerically, strings by code point as in the C locale), numbers labelled as R prints them,
    logicals as FALSE/TRUE. Distinct values with the same label are a DataError naming
    ``name``."""
    if values.dtype.kind == "b":
        return pd.Categorical(np.where(values, "TRUE", "FALSE"), categories=["FALSE", "TRUE"])
    cat = pd.Categorical(values)  # pandas sorts the categories: numbers and code points
    if values.dtype.kind in "iuf":
        labels = [_format_number(float(c)) for c in cat.categories]
        _check_labels(list(cat.categories), labels, name)
        return pd.Categorical.from_codes(cat.codes, categories=labels, validate=False)
    labels = [str(c) for c in cat.categories]
    _check_labels(list(cat.categories), labels, name)
    return cat.rename_categories(labels)


def _logical(series: pd.Series) -> pd.Categorical:
    """R's logical as model.matrix codes it: a factor with levels FALSE, TRUE."""
    missing = series.isna().to_numpy()
    codes = series.where(~missing, False).to_numpy(dtype=bool).astype(np.int8)
    codes[missing] = -1
    return pd.Categorical.from_codes(codes, categories=["FALSE", "TRUE"], validate=False)


#: The dtype pandas gives an Index of Python strings (rename_categories' new categories).
STR_DTYPE = pd.Index(["a"]).dtype


def _column(series: pd.Series, name: str) -> Raw:
    """A data column as R's model.frame sees it: numbers as float (NaN for missing), bool as a
    logical factor (levels FALSE, TRUE), categoricals kept, strings as a sorted factor."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cat = series.array
        assert isinstance(cat, pd.Categorical)
        values = cat.categories.tolist()  # as list(categories), without a box per element
        labels = [str(c) for c in values]
        _check_labels(values, labels, name)
        if cat.categories.dtype == STR_DTYPE and labels == values:
            return cat.copy()  # already string levels: what rename_categories would build
        return cat.rename_categories(labels)
    if pd.api.types.is_bool_dtype(dtype):
        return _logical(series)
    if pd.api.types.is_complex_dtype(dtype):
        raise DataError(
            f"column {name!r} holds complex values: complex variables are not currently allowed "
            "in model matrices (lme4's error); use its real part or modulus explicitly"
        )
    if isinstance(dtype, np.dtype) and dtype.kind in "iuf":  # numpy's: no NA to replace
        return series.to_numpy(dtype=np.float64)  # (na_value= costs an integer column 50 us)
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
    if isinstance(x, Matrix):
        if x.values.shape[1] == 1:
            return x.values[:, 0]
        raise FormulaError(
            f"arithmetic on the matrix-valued {deparse(node)!r} is not supported; "
            "use its columns as terms"
        )
    if isinstance(x, pd.Categorical):
        if list(x.categories) == ["FALSE", "TRUE"]:
            codes = x.codes.astype(np.float64)
            return np.where(codes < 0, np.nan, codes)
        raise FormulaError(f"arithmetic on the factor in {deparse(node)!r}")
    return x.astype(np.float64) if x.dtype.kind == "b" else x


_FACTOR_FUNCS = ("factor", "as.factor", "ordered", "as.ordered")
# R's arguments of the calls with more than one, in R's positional order
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "poly": ("x", "degree", "coefs", "raw"),
    "scale": ("x", "center", "scale"),
    "ns": ("x", "df", "knots", "intercept", "Boundary.knots"),
    "bs": ("x", "df", "knots", "degree", "intercept", "Boundary.knots"),
    "offset": ("object",),
}
SUPPORTED_FUNCTIONS = ("I", *_FACTOR_FUNCS, *_SIGNATURES, *sorted(_FUNCS))


def _bind(node: Call) -> dict[str, Node]:
    """R's argument matching for the supported calls: names first, then positions in order."""
    params = _SIGNATURES[node.fn]
    bound: dict[str, Node] = {}
    for a in node.args:
        if isinstance(a, Keyword):
            if a.name not in params:
                raise FormulaError(
                    f"{node.fn}() has no argument {a.name!r} in {deparse(node)!r} "
                    f"(its arguments: {', '.join(params)})"
                )
            if a.name in bound:
                raise FormulaError(f"argument {a.name!r} given twice in {deparse(node)!r}")
            bound[a.name] = a.value
    free = [p for p in params if p not in bound]
    positional = [a for a in node.args if not isinstance(a, Keyword)]
    if len(positional) > len(free):
        raise FormulaError(
            f"too many arguments in {deparse(node)!r} ({node.fn}() takes {', '.join(params)})"
        )
    bound.update(zip(free, positional, strict=False))
    if params[0] not in bound:
        raise FormulaError(f"{node.fn}() needs a variable in {deparse(node)!r}")
    return bound


def _constant(node: Node | None, call: Call, what: str, default: object) -> object:
    """A constant argument (a number, TRUE/FALSE/T/F or NULL) of a formula function."""
    if node is None:
        return default
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Unary) and node.op == "-" and isinstance(node.operand, Num):
        return -node.operand.value
    if isinstance(node, Name) and node.id in ("TRUE", "T", "FALSE", "F", "NULL"):
        return None if node.id == "NULL" else node.id in ("TRUE", "T")
    raise FormulaError(
        f"argument {what} of {deparse(call)!r} must be a constant (a number or TRUE/FALSE), "
        f"got {deparse(node)!r}"
    )


def _int_arg(node: Node | None, call: Call, what: str, default: int | None,
             minimum: int) -> int | None:
    val = _constant(node, call, what, default)
    if val is None:
        return None
    if isinstance(val, bool) or not float(val).is_integer() or val < minimum:
        raise FormulaError(
            f"argument {what} of {deparse(call)!r} must be an integer >= {minimum}, got {val!r}"
        )
    return int(val)


def _bool_arg(node: Node | None, call: Call, what: str, default: bool) -> bool:
    val = _constant(node, call, what, default)
    if not isinstance(val, bool):
        raise FormulaError(f"argument {what} of {deparse(call)!r} must be TRUE or FALSE")
    return val


def _unsupported_arg(bound: dict[str, Node], call: Call, names: Sequence[str]) -> None:
    for nm in names:
        if nm in bound and not (isinstance(bound[nm], Name) and bound[nm].id == "NULL"):
            raise FormulaError(
                f"argument {nm!r} of {deparse(call)!r} is not supported by mixedref "
                f"(supported: {call.fn}(x, df = k){' and degree' if call.fn == 'bs' else ''}"
                f"{', raw' if call.fn == 'poly' else ''}, intercept)"
            )


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
    if isinstance(node, Keyword):
        raise FormulaError(f"named argument {deparse(node)!r} outside a function call")
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
    if node.fn in _SIGNATURES:
        return _evaluate_call(node, data, cache)
    if node.fn == "I" or node.fn in _FACTOR_FUNCS or node.fn in _FUNCS:
        if len(node.args) != 1 or isinstance(node.args[0], Keyword):
            raise FormulaError(f"{node.fn}() takes one argument in {deparse(node)!r}")
        val = evaluate(node.args[0], data, cache)
        if node.fn == "I":
            return val
        if node.fn in _FACTOR_FUNCS:
            if isinstance(val, Matrix):
                raise FormulaError(f"{deparse(node)!r}: a factor of a matrix-valued variable")
            cat = val if isinstance(val, pd.Categorical) else _factor_of(val, deparse(node))
            return cat.as_ordered() if node.fn in ("ordered", "as.ordered") else cat
        arg = _numeric(val, node)
        with np.errstate(all="ignore"):
            out = np.asarray(_FUNCS[node.fn](arg), dtype=np.float64)
        if np.isnan(out).any() and (np.isnan(out) & ~np.isnan(arg)).any():
            k = int((np.isnan(out) & ~np.isnan(arg)).sum())
            warnings.warn(
                f"In {deparse(node)} : NaNs produced ({k} value{'s' if k > 1 else ''}; "
                "those rows are dropped as missing)",
                NaNsProducedWarning, stacklevel=2,
            )
        return out
    raise FormulaError(
        f"function {node.fn!r} in {deparse(node)!r} is not supported "
        f"(supported: {', '.join(SUPPORTED_FUNCTIONS)})"
    )


def _evaluate_call(node: Call, data: pd.DataFrame, cache: dict[str, Raw]) -> Raw:
    """poly(), scale(), ns(), bs() and offset(), evaluated on every row of the data as R's
    model.frame does (before subset and na.action)."""
    bound = _bind(node)
    first = _SIGNATURES[node.fn][0]
    x = _numeric(evaluate(bound[first], data, cache), node)
    label = deparse(node)
    if node.fn == "offset":
        return x
    if node.fn == "poly":
        _unsupported_arg(bound, node, ["coefs"])
        degree = _int_arg(bound.get("degree"), node, "degree", 1, 1)
        assert degree is not None
        return poly_basis(x, degree, _bool_arg(bound.get("raw"), node, "raw", False), label)
    if node.fn == "scale":
        center = _bool_arg(bound.get("center"), node, "center", True)
        scale = _bool_arg(bound.get("scale"), node, "scale", True)
        return scale_values(x, center, scale)
    _unsupported_arg(bound, node, ["knots", "Boundary.knots"])
    df = _int_arg(bound.get("df"), node, "df", None, 1)
    intercept = _bool_arg(bound.get("intercept"), node, "intercept", False)
    if node.fn == "ns":
        return ns_basis(x, df, intercept, label)
    degree = _int_arg(bound.get("degree"), node, "degree", 3, 1)
    assert degree is not None
    return bs_basis(x, df, degree, intercept, label)


# ----------------------------------------------------------------------------- R's bases


def poly_basis(x: np.ndarray, degree: int, raw: bool = False, label: str = "poly") -> Matrix:
    """R's ``poly(x, degree)``: orthonormal polynomials, Q's columns of the QR of the centred
    Vandermonde matrix with R's signs (Q_j * sign(R_jj)); ``raw = TRUE``: x, x^2, ... Columns
    named 1..degree."""
    if np.isnan(x).any():
        raise DataError(
            f"missing values are not allowed in 'poly' ({label}: "
            f"{int(np.isnan(x).sum())} missing; R's model.frame evaluates poly() before "
            "na.omit); remove those rows first or use subset="
        )
    names = tuple(str(k) for k in range(1, degree + 1))
    if raw:
        return Matrix(np.column_stack([x**k for k in range(1, degree + 1)]), names)
    if degree >= np.unique(x).size:
        raise DataError(f"'degree' must be less than number of unique points ({label})")
    xc = x - x.mean()
    q, r = np.linalg.qr(np.vander(xc, degree + 1, increasing=True))
    return Matrix(np.ascontiguousarray((q * np.sign(np.diag(r)))[:, 1:]), names)


def scale_values(x: np.ndarray, center: bool = True, scale: bool = True) -> np.ndarray:
    """R's ``scale(x)`` of a vector: centred by the mean and divided by the standard deviation
    (root mean square when not centred), missing values ignored."""
    ok = ~np.isnan(x)
    out = x - (x[ok].mean() if center else 0.0)
    if scale:
        out = out / np.sqrt(np.sum(out[ok] ** 2) / (ok.sum() - 1))
    return out


def _spline_design(knots: np.ndarray, x: np.ndarray, order: int, deriv: int = 0) -> np.ndarray:
    """splines::splineDesign: the B-spline basis of ``order`` on ``knots`` at x."""
    from scipy.interpolate import BSpline

    nbasis = knots.size - order
    spl = BSpline(knots, np.eye(nbasis), order - 1, extrapolate=True)
    if deriv:
        spl = spl.derivative(deriv)
    return np.asarray(spl(x), dtype=np.float64)


def _interior_knots(x: np.ndarray, n: int) -> np.ndarray:
    if n <= 0:
        return np.empty(0)
    return np.quantile(x, np.linspace(0.0, 1.0, n + 2)[1:-1])  # R's type 7


def _with_missing(basis: np.ndarray, nax: np.ndarray) -> Matrix:
    out = np.full((nax.size, basis.shape[1]), np.nan)
    out[~nax] = basis
    return Matrix(out, tuple(str(k) for k in range(1, basis.shape[1] + 1)))


def bs_basis(x: np.ndarray, df: int | None = None, degree: int = 3, intercept: bool = False,
             label: str = "bs", at: np.ndarray | None = None) -> Matrix:
    """splines::bs: B-splines of ``degree`` with df - degree - intercept interior knots at
    quantiles of x, boundary knots at its range; missing x give missing rows. ``at``: evaluate
    the basis built from x at these points instead (R's predict-time bs, whose polynomial
    continuation beyond the boundary knots is the last piece's)."""
    nax = np.isnan(x)
    xx = x[~nax]
    order = degree + 1
    nik = 0
    if df is not None:
        nik = df - order + (1 - int(intercept))
        if nik < 0:
            warnings.warn(f"{label}: 'df' was too small; have used {order - (1 - int(intercept))}",
                          UserWarning, stacklevel=3)
            nik = 0
    lo, hi = xx.min(), xx.max()
    knots = np.sort(np.concatenate([[lo] * order, _interior_knots(xx, nik), [hi] * order]))
    if at is not None:
        nax = np.isnan(at)
        xx = at[~nax]
    basis = _spline_design(knots, xx, order)
    if not intercept:
        basis = basis[:, 1:]
    return _with_missing(basis, nax)


def ns_basis(x: np.ndarray, df: int | None = None, intercept: bool = False,
             label: str = "ns", at: np.ndarray | None = None) -> Matrix:
    """splines::ns: natural cubic splines (second derivative 0 at the boundary knots, R's QR
    projection), df - 1 - intercept interior knots at quantiles of x. ``at``: evaluate the
    basis built from x at these points instead (linear beyond the boundary knots, as R's)."""
    import scipy.linalg

    nax = np.isnan(x)
    xx = x[~nax]
    nik = 0
    if df is not None:
        nik = df - 1 - int(intercept)
        if nik < 0:
            warnings.warn(f"{label}: 'df' was too small; have used {1 + int(intercept)}",
                          UserWarning, stacklevel=3)
            nik = 0
    lo, hi = xx.min(), xx.max()
    knots = np.sort(np.concatenate([[lo] * 4, _interior_knots(xx, nik), [hi] * 4]))
    if at is not None:
        nax = np.isnan(at)
        xx = at[~nax]
    basis = _natural_design(knots, xx, lo, hi)
    const = _spline_design(knots, np.array([lo, hi]), 4, deriv=2)
    if not intercept:
        basis, const = basis[:, 1:], const[:, 1:]
    q, _ = scipy.linalg.qr(const.T)  # full Q, Householder as R's qr (LINPACK dqrdc2)
    return _with_missing((basis @ q)[:, 2:], nax)


def _natural_design(knots: np.ndarray, x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The cubic B-spline basis at x, continued linearly (value and slope at the boundary knot)
    beyond [lo, hi], as splines::ns evaluates points outside its boundary knots."""
    basis = _spline_design(knots, x, 4)
    for bound, out in ((lo, x < lo), (hi, x > hi)):
        if out.any():
            b = np.array([bound])
            basis[out] = (_spline_design(knots, b, 4)
                          + (x[out] - bound)[:, None] * _spline_design(knots, b, 4, deriv=1))
    return basis


def poly_predict(x: np.ndarray, x_fit: np.ndarray, degree: int, raw: bool = False) -> Matrix:
    """``poly(x, degree)`` at new points x with the orthogonal polynomials of the fitting data
    x_fit (R's predict-time poly with ``coefs``): the three-term recurrence whose centres and
    norms come from x_fit, so that at x = x_fit it is :func:`poly_basis`."""
    names = tuple(str(k) for k in range(1, degree + 1))
    if raw:
        return Matrix(np.column_stack([x**k for k in range(1, degree + 1)]), names)
    centre = x_fit.mean()
    xf, xn = x_fit - centre, x - centre
    prev_f, cur_f = np.zeros_like(xf), np.ones_like(xf)
    prev_n, cur_n = np.zeros_like(xn), np.ones_like(xn)
    norm_prev, cols = 1.0, []
    for _ in range(degree):
        norm = float(cur_f @ cur_f)
        a = float(xf @ cur_f**2) / norm
        ratio = norm / norm_prev
        prev_f, cur_f = cur_f, (xf - a) * cur_f - ratio * prev_f
        prev_n, cur_n = cur_n, (xn - a) * cur_n - ratio * prev_n
        norm_prev = norm
        cols.append(cur_n / np.sqrt(float(cur_f @ cur_f)))
    return Matrix(np.column_stack(cols), names)


_DATA_DEPENDENT = ("poly", "scale", "ns", "bs")


def transform_inputs(nodes: Sequence[Node], data: pd.DataFrame, cache: dict[str, Raw]
                     ) -> dict[str, np.ndarray]:
    """For each data-dependent call in the expressions (``poly``, ``scale``, ``ns``, ``bs``,
    nested ones too), its numeric argument evaluated on the fitting data, keyed by the call's
    label: what :func:`predict_call` needs to evaluate the call on new data with the fitting
    data's parameters (R's predvars)."""
    out: dict[str, np.ndarray] = {}

    def walk(node: Node) -> None:
        for child in _children(node):
            walk(child)
        if isinstance(node, Call) and node.fn in _DATA_DEPENDENT:
            bound = _bind(node)
            arg = bound[_SIGNATURES[node.fn][0]]
            out[deparse(node)] = _numeric(evaluate(arg, data, cache), node).copy()

    for n in nodes:
        walk(n)
    return out


def _children(node: Node) -> list[Node]:
    if isinstance(node, Paren):
        return [node.inner]
    if isinstance(node, Unary):
        return [node.operand]
    if isinstance(node, BinOp):
        return [node.lhs, node.rhs]
    if isinstance(node, Keyword):
        return [node.value]
    if isinstance(node, Call):
        return list(node.args)
    return []


def predict_call(node: Call, data: pd.DataFrame, x_fit: np.ndarray,
                 cache: dict[str, Raw]) -> Raw:
    """A data-dependent call (``poly``, ``scale``, ``ns``, ``bs``) evaluated on new data with
    the parameters (polynomial coefficients, centre and scale, knots) of the fitting data's
    argument ``x_fit``, as R's model.frame does at predict time through predvars."""
    bound = _bind(node)
    x = _numeric(evaluate(bound[_SIGNATURES[node.fn][0]], data, cache), node)
    label = deparse(node)
    if node.fn == "poly":
        degree = _int_arg(bound.get("degree"), node, "degree", 1, 1)
        assert degree is not None
        return poly_predict(x, x_fit, degree, _bool_arg(bound.get("raw"), node, "raw", False))
    if node.fn == "scale":
        ok = ~np.isnan(x_fit)
        centre = x_fit[ok].mean() if _bool_arg(bound.get("center"), node, "center", True) else 0.0
        out = x - centre
        if _bool_arg(bound.get("scale"), node, "scale", True):
            out = out / np.sqrt(np.sum((x_fit[ok] - centre) ** 2) / (ok.sum() - 1))
        return out
    df = _int_arg(bound.get("df"), node, "df", None, 1)
    intercept = _bool_arg(bound.get("intercept"), node, "intercept", False)
    if node.fn == "ns":
        return ns_basis(x_fit, df, intercept, label, at=x)
    degree = _int_arg(bound.get("degree"), node, "degree", 3, 1)
    assert degree is not None
    return bs_basis(x_fit, df, degree, intercept, label, at=x)


def _factor_of(values: np.ndarray, name: str | None = None) -> pd.Categorical:
    """R's factor() of an evaluated numeric or logical vector, NaN kept missing."""
    if values.dtype.kind == "f" and np.isnan(values).any():
        ok = ~np.isnan(values)
        cat = r_levels(values[ok], name)
        codes = np.full(values.shape, -1, dtype=np.int64)
        codes[ok] = cat.codes
        return pd.Categorical.from_codes(codes, categories=cat.categories, validate=False)
    return r_levels(values, name)


def na_mask(raw: Raw) -> np.ndarray:
    """Rows where the variable is missing (NA/NaN), as R's na.omit sees them."""
    if isinstance(raw, pd.Categorical):
        return raw.codes < 0
    if isinstance(raw, Matrix):
        return np.isnan(raw.values).any(axis=1)
    return np.isnan(raw) if raw.dtype.kind == "f" else np.zeros(raw.shape, dtype=bool)


@dataclass(frozen=True)
class Variable:
    """A variable of the model frame (missing rows removed): numeric values (a vector, or an
    n x k matrix with its column suffixes), or a factor (codes into levels, unused levels
    dropped)."""

    label: str
    values: np.ndarray | None = None  # numeric: n, or n x k for a matrix-valued variable
    codes: np.ndarray | None = None  # factor
    levels: tuple[str, ...] = ()
    ordered: bool = False
    colnames: tuple[str, ...] | None = None  # a matrix variable's column suffixes

    @property
    def is_factor(self) -> bool:
        return self.codes is not None

    def numeric_block(self) -> tuple[np.ndarray, list[str]]:
        """The columns a numeric variable contributes, named as R's model.matrix names them."""
        assert self.values is not None
        if self.values.ndim == 1:
            return self.values[:, None], [self.label]
        k = self.values.shape[1]
        suffixes = self.colnames if self.colnames is not None else (
            tuple(str(j) for j in range(1, k + 1)) if k > 1 else ("",))
        return self.values, [self.label + sfx for sfx in suffixes]


def finalize(label: str, raw: Raw, keep: np.ndarray | None) -> Variable:
    """Subset an evaluated variable to the rows kept and drop unused factor levels (R's
    model.frame with drop.unused.levels = TRUE)."""
    if isinstance(raw, pd.Categorical):
        cat = raw if keep is None else raw[keep]
        codes = cat.codes
        ncat = len(cat.categories)
        # every level used: a count per level (codes are in [0, ncat) once none is missing)
        if codes.size == 0 or codes.min() < 0 or not np.bincount(codes, minlength=ncat).all():
            # pandas' remove_unused_categories costs a new dtype (a fifth of a small model's
            # build): called only when some level is unused
            cat = cat.remove_unused_categories()
        return Variable(
            label,
            codes=cat.codes.astype(np.int64),
            levels=tuple(str(c) for c in cat.categories.tolist()),  # Python scalars at once
            ordered=bool(cat.ordered),
        )
    if isinstance(raw, Matrix):
        vals = raw.values if keep is None else raw.values[keep]
        return Variable(label, values=np.ascontiguousarray(vals, dtype=np.float64),
                        colnames=raw.colnames)
    vals = raw if keep is None else raw[keep]
    return Variable(label, values=np.asarray(vals, dtype=np.float64))


def contr_poly(n: int) -> tuple[np.ndarray, list[str]]:
    """R's ``contr.poly(n)``: orthonormal polynomial contrasts and their names
    (".L", ".Q", ".C", "^4", ...)."""
    contr, names = _contr_poly(n)
    return contr.copy(), list(names)


@functools.lru_cache(maxsize=64)
def _contr_poly(n: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """:func:`contr_poly`, computed once per number of levels (a QR per ordered factor was a
    tenth of a small model's build); the cached matrix is read-only."""
    x = np.arange(1, n + 1, dtype=np.float64)
    vander = np.vander(x - x.mean(), n, increasing=True)
    q, r = np.linalg.qr(vander)
    contr = (q * np.sign(np.diag(r)))[:, 1:]
    contr.setflags(write=False)
    names = [".L", ".Q", ".C"][: n - 1] + [f"^{k}" for k in range(4, n)]
    return contr, tuple(names)


def _contr_sum(n: int) -> np.ndarray:
    return np.vstack([np.eye(n - 1), -np.ones((1, n - 1))])


def _contr_helmert(n: int) -> np.ndarray:
    out = np.zeros((n, n - 1))
    for j in range(1, n):
        out[:j, j - 1] = -1.0
        out[j, j - 1] = j
    return out


CONTRASTS = ("contr.treatment", "contr.sum", "contr.helmert", "contr.poly", "contr.SAS")
Contrast = str | np.ndarray | pd.DataFrame  # a name in CONTRASTS, or a levels x k matrix


def contrast_matrix(spec: Contrast, levels: Sequence[str], label: str
                    ) -> tuple[np.ndarray, list[str]]:
    """R's contrasts for a factor: the matrix (levels x k) and the column suffixes R's
    model.matrix appends to the factor's name ("b" for contr.treatment, "1" for contr.sum and
    contr.helmert and unnamed matrices, ".L" for contr.poly)."""
    n = len(levels)
    if isinstance(spec, str):
        if spec == "contr.treatment":
            return np.eye(n)[:, 1:], list(levels[1:])
        if spec == "contr.SAS":
            return np.eye(n)[:, :-1], list(levels[:-1])
        if spec == "contr.sum":
            return _contr_sum(n), [str(j) for j in range(1, n)]
        if spec == "contr.helmert":
            return _contr_helmert(n), [str(j) for j in range(1, n)]
        if spec == "contr.poly":
            return contr_poly(n)
        raise DataError(f"unknown contrasts {spec!r} for {label!r}; use one of "
                        f"{', '.join(CONTRASTS)} or a numeric matrix (levels x k)")
    colnames: list[str] | None = None
    if isinstance(spec, pd.DataFrame):
        colnames = [str(c) for c in spec.columns]
        spec = spec.to_numpy()
    try:
        mat = np.asarray(spec, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"contrasts for {label!r} must be a name ({', '.join(CONTRASTS)}) or a "
                        f"numeric matrix, got {type(spec).__name__}") from None
    if mat.ndim == 1:
        mat = mat[:, None]
    if mat.ndim != 2 or mat.shape[0] != n:
        raise DataError(
            f"wrong number of contrast matrix rows for {label!r}: {mat.shape[0]} rows for its "
            f"{n} levels ({', '.join(levels)}); give a levels x k matrix"
        )
    if mat.shape[1] < 1 or not np.isfinite(mat).all():
        raise DataError(f"the contrast matrix for {label!r} must have finite values and >= 1 "
                        "column")
    return mat, colnames or [str(j) for j in range(1, mat.shape[1] + 1)]


def _factor_block(var: Variable, full: bool, contrast: Contrast | None = None
                  ) -> tuple[np.ndarray, list[str]]:
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
        if contrast is not None:
            contr, names = contrast_matrix(contrast, var.levels, var.label)
        elif var.ordered:
            contr, names = contr_poly(nlev)
        else:
            contr, names = np.eye(nlev)[:, 1:], list(var.levels[1:])
    return contr[var.codes], [var.label + n for n in names]


def model_matrix(
    terms: Sequence[Term], intercept: bool, variables: Mapping[str, Variable], n: int,
    contrasts: Mapping[str, Contrast] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """R's ``model.matrix``: columns per term in term order, factors coded by contrasts unless
    R's rule (Statistical Models in S, p. 38) asks for full indicator coding, columns of an
    interaction with the first variable varying fastest, named as R names them. ``contrasts``
    maps a factor's label to a contrast (``contrasts.arg``); the others get R's defaults."""
    contrasts = contrasts or {}
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
        mat: np.ndarray | None = None  # the columns so far: the first variable's as they are
        cols = [""]
        for v in term:
            var = variables[v]
            if var.is_factor:
                rest = set(term) - {v}
                full = (i, v) == full_first or (
                    bool(rest) and not any(rest <= set(p) for p in terms[:i])
                )
                block, bnames = _factor_block(var, full, contrasts.get(v))
            else:
                block, bnames = var.numeric_block()
            mat = block if mat is None else (block[:, :, None] * mat[:, None, :]).reshape(n, -1)
            cols = [f"{c}:{b}" if c else b for b in bnames for c in cols]
        blocks.append(np.ones((n, 1)) if mat is None else mat)
        names.extend(cols)
    X = np.hstack(blocks) if blocks else np.empty((n, 0))
    return np.ascontiguousarray(X), names


def drop_aliased(
    X: np.ndarray, names: Sequence[str], tol: float = 1e-7
) -> tuple[np.ndarray, list[str], list[str]]:
    """lme4's check.rankX = "message+drop.cols": R's ``qr(X, tol = 1e-7, LAPACK = FALSE)``
    (LINPACK's limited pivoting) keeps, in order, each column not within ``tol`` (relative to
    its own norm) of the span of the columns kept before it; the others are dropped."""
    return drop_aliased_qr(X, names, tol)[:3]


def drop_aliased_qr(
    X: np.ndarray, names: Sequence[str], tol: float = 1e-7
) -> tuple[np.ndarray, list[str], list[str], tuple[np.ndarray, np.ndarray] | None]:
    """:func:`drop_aliased`, and the reduced QR factorization (Q, R) of the returned X where no
    column was dropped (else None): the rank check's own factorization, which the degeneracy
    check of the response and the engines' residualization of y on X reuse instead of
    factoring X again (mixedref.frontend.design, mixedref.engines.base)."""
    p = X.shape[1]
    if p == 0:
        return X, list(names), [], None
    q, r = np.linalg.qr(X)  # R as qr(X, mode="r") gives it (the same geqrf), and Q
    if np.all(np.abs(np.diag(r)) > tol * np.linalg.norm(X, axis=0)):
        return X, list(names), [], (q, r)
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
    return X[:, keep], [names[j] for j in keep], dropped, None


@functools.lru_cache(maxsize=64)
def strict_lower(k: int) -> tuple[np.ndarray, np.ndarray]:
    """np.tril_indices(k, -1), once per k, read-only (building them costs more than the small
    matrices they index: check_scale_x here, the dense engine's gradient symmetrizing dpotri's
    upper triangle)."""
    rows, cols = np.tril_indices(k, -1)
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


def check_scale_x(X: np.ndarray, tol: float = 1e3) -> bool:
    """lme4's ``checkScaleX`` (check.scaleX = "warning"): among the columns of X that are not
    all 0/1, any standard deviation, or ratio of two, beyond ``tol`` (or below 1/tol) gives
    "Some predictor variables are on very different scales: consider rescaling" (a
    :class:`ScaleWarning`). Returns whether it warned."""
    if X.shape[0] < 2 or X.shape[1] == 0:
        return False
    cont = ~np.all((X == 0) | (X == 1), axis=0)
    if not cont.any():
        return False
    sd = X[:, cont].std(axis=0, ddof=1)
    with np.errstate(all="ignore"):
        logsd = np.log(sd)
        logcomp = np.abs(logsd[:, None] - logsd[None, :])[strict_lower(sd.size)]
        vals = np.concatenate([logcomp, np.abs(logsd)])
        bad = bool(np.any(vals[~np.isnan(vals)] > np.log(tol)))
    if bad:
        warnings.warn("Some predictor variables are on very different scales: consider "
                      "rescaling", ScaleWarning, stacklevel=3)
    return bad
