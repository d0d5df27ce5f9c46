"""The model's matrices, as lme4's ``lFormula`` builds them: fixed-effects X with R's column
names, the response, and one :class:`ReTerm` per random-effects term in lme4's order.

The builder :func:`build_model` turns a formula and a DataFrame into a :class:`ModelFrame`;
every later stage (objective, optimizer, fit) reads only the ModelFrame.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from mixedref.errors import (
    DataError,
    DegenerateResponseWarning,
    DuplicateTermWarning,
    FormulaError,
)
from mixedref.frontend import fixed
from mixedref.frontend.formula import (
    BinOp,
    Call,
    Name,
    Node,
    Paren,
    Unary,
    deparse,
    expand_terms,
    parse_formula,
    variables,
)
from mixedref.frontend.resolution import below_rounding
from mixedref.frontend.reterm import ReTerm, theta_positions  # noqa: F401 - re-exported


@dataclass(frozen=True, eq=False)
class NewdataSpec:
    """What evaluating the model on new data needs from the fitting data (R's xlevels,
    contrasts and predvars): each variable's coding as a one-row template (factor levels after
    unused ones were dropped, ordered or not; a matrix variable's columns), the contrasts
    applied to the fixed part, and each data-dependent call's (poly, scale, ns, bs) argument
    on the fitting data, from which its parameters come."""

    variables: Mapping[str, fixed.Variable]  # label -> one-row template
    contrasts: Mapping[str, fixed.Contrast]  # contrasts= applied to the fixed part
    transform_inputs: Mapping[str, np.ndarray]  # call label -> its argument on the data


def _template(var: fixed.Variable) -> fixed.Variable:
    """A variable's coding with one placeholder row instead of its rows (a model matrix of
    templates has the model's column names)."""
    if var.is_factor:
        return replace(var, codes=np.zeros(1, dtype=np.int64))
    assert var.values is not None
    return replace(var, values=np.zeros((1, *var.values.shape[1:])))


@dataclass(frozen=True, eq=False)
class ModelFrame:
    """Everything the objective needs, and what the fit reports about the data."""

    formula: str
    y: np.ndarray  # response, n
    X: np.ndarray  # n x p fixed-effects matrix, aliased columns already dropped
    fixef_names: tuple[str, ...]  # R's model.matrix names of X's columns
    reterms: tuple[ReTerm, ...]  # lme4's order: by decreasing number of levels
    response: str  # response's name as written in the formula
    weights: np.ndarray | None = None  # prior weights, n, or None
    offset: np.ndarray | None = None  # offset, n, or None
    dropped_fixef: tuple[str, ...] = ()  # aliased columns removed (rank deficiency)
    n_dropped_na: int = 0  # rows removed as R's na.omit does
    row_index: pd.Index | None = None  # the data's index of the rows used
    messages: tuple[str, ...] = field(default_factory=tuple)
    # na.action: "na.omit", "na.exclude" (fitted values and residuals are to be padded with NaN
    # at na_positions, as R's naresid) or "na.fail"
    na_action: str = "na.omit"
    row_positions: np.ndarray | None = None  # 0-based positions in the data of the rows used
    na_positions: np.ndarray | None = None  # positions of the rows dropped for missing values
    # (among the rows selected by subset=), in the data's order
    n_data_rows: int | None = None  # rows of the data as given
    scale_warning: bool = False  # lme4's checkScaleX warned
    degenerate_response: bool = False  # y is reproduced exactly by X (residual variance 0)
    newdata_spec: NewdataSpec | None = None  # the coding new data is evaluated with (predict)
    # ||y - P_X y||^2 of the unweighted response without offset (None otherwise), from the
    # degeneracy check: mixedref.frontend.resolution reads it to skip its own least squares
    # where the response is clearly resolved
    response_resid_ss: float | None = None
    # the reduced QR factorization (Q, R) of X (unweighted) from the rank check, or None: the
    # engines residualize y on X with it (mixedref.engines.base.prepare_response)
    x_qr: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def padded_positions(self) -> np.ndarray:
        """The data positions a fitted/residual vector covers: the rows used, plus under
        na.exclude the rows dropped for missing values (to be NaN), in the data's order."""
        used = self.row_positions if self.row_positions is not None else np.arange(self.n)
        if self.na_action != "na.exclude" or self.na_positions is None:
            return used
        return np.sort(np.concatenate([used, self.na_positions]))

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def ntheta(self) -> int:
        return sum(t.ntheta for t in self.reterms)

    @property
    def theta_lower(self) -> np.ndarray:
        return np.concatenate([t.theta_lower for t in self.reterms])

    @property
    def theta_start(self) -> np.ndarray:
        return np.concatenate([t.theta_start for t in self.reterms])

    @property
    def ngroups(self) -> dict[str, int]:
        """Levels per grouping factor, keyed by the factor's name (as lme4's ngrps)."""
        out: dict[str, int] = {}
        for t in self.reterms:
            out.setdefault(t.group, t.nlevels)
        return out


# ----------------------------------------------------------------------------- build_model


def _from_polars(data: object) -> pd.DataFrame:
    """A polars DataFrame as pandas, column by column (no pyarrow needed): Enum columns become
    Categoricals with their categories in order, nulls NaN/None."""
    try:
        import polars as pl
    except ImportError:  # pragma: no cover - a polars object without polars importable
        raise DataError("data is a polars DataFrame but polars cannot be imported to convert it; "
                        "pass data.to_pandas()") from None
    assert isinstance(data, pl.DataFrame)
    cols: dict[str, object] = {}
    for name in data.columns:
        col = data[name]
        if isinstance(col.dtype, pl.Enum):
            cols[name] = pd.Categorical(col.to_numpy(), categories=col.dtype.categories.to_list())
        else:
            cols[name] = col.to_numpy()
    return pd.DataFrame(cols)


def _check_data(data: object) -> pd.DataFrame:
    module = type(data).__module__.split(".")[0]
    if module == "polars" and type(data).__name__ == "DataFrame":
        data = _from_polars(data)
    elif module == "polars" and type(data).__name__ == "LazyFrame":
        raise DataError("data is a polars LazyFrame: collect it first (data.collect())")
    if not isinstance(data, pd.DataFrame):
        where = f" (from {module})" if module not in ("builtins", "pandas", "numpy") else ""
        raise DataError(
            f"data must be a pandas DataFrame, got {type(data).__name__}{where}; a polars "
            "DataFrame is converted, anything else: build a pandas DataFrame first"
        )
    if data.shape[0] == 0:
        raise DataError("data is empty (0 rows)")
    dup = () if data.columns.is_unique else data.columns[data.columns.duplicated()]
    if len(dup):
        raise DataError(f"data has duplicate column names: {', '.join(map(str, dup.unique()))}")
    if not all(isinstance(c, str) for c in data.columns):
        # R's column names are strings: 0 becomes "0", to be written `0` in the formula
        names = [str(c) for c in data.columns]
        if len(set(names)) < len(names):
            clash = sorted({n for n in names if names.count(n) > 1})
            raise DataError(
                f"data has non-string column names that collide as strings ({', '.join(clash)}); "
                "rename the columns with distinct strings"
            )
        data = data.set_axis(names, axis=1)
    return data


def _aligned(arg: pd.Series, data: pd.DataFrame, what: str) -> np.ndarray:
    """A pandas Series argument aligned to the data by index (as pandas aligns), or refused
    naming the labels that do not match."""
    if arg.index.equals(data.index):
        return arg.to_numpy()
    if len(arg) == len(data) and not arg.index.has_duplicates and not data.index.has_duplicates:
        missing = data.index.difference(arg.index, sort=False)
        if len(missing) == 0:
            return arg.reindex(data.index).to_numpy()
    else:
        missing = data.index.difference(arg.index, sort=False)
    extra = arg.index.difference(data.index, sort=False)
    labels = ", ".join(map(repr, list(missing[:5])))
    raise DataError(
        f"{what} is a pandas Series whose index does not match the data's index "
        f"({len(arg)} values for {len(data)} rows; data rows without a value: "
        f"{labels or 'none'}; labels not in the data: {', '.join(map(repr, list(extra[:5])))})"
        f"; pass {what}.to_numpy() to match by position, or reindex it"
    )


def _extra_vector(
    arg: object, data: pd.DataFrame, what: str, cache: dict[str, fixed.Raw]
) -> np.ndarray | None:
    """Weights or offset: a column name, or a vector with one value per row of the data (a
    pandas Series is aligned by index)."""
    if arg is None:
        return None
    if isinstance(arg, str):
        if arg not in data.columns:
            raise FormulaError(f"{what} column {arg!r} is not in the data")
        raw = fixed.evaluate(Name(arg), data, cache)
        if isinstance(raw, pd.Categorical):
            raise DataError(f"{what} column {arg!r} must be numeric")
        assert isinstance(raw, np.ndarray)
        return raw
    if isinstance(arg, pd.Series):
        arg = _aligned(arg, data, what)
    if np.iscomplexobj(arg):
        raise DataError(f"{what} holds complex values; give real numbers")
    try:
        vec = np.asarray(arg, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be numeric: {exc}") from None
    if vec.ndim != 1 or vec.shape[0] != data.shape[0]:
        raise DataError(
            f"{what} must have one value per row of the data ({data.shape[0]}), "
            f"got shape {vec.shape}"
        )
    return vec


def _subset_mask(subset: object, data: pd.DataFrame) -> np.ndarray | None:
    """R's ``subset``: a boolean vector (a Series aligned by index) or an expression on the
    data's columns (pandas ``DataFrame.eval``); missing values count as FALSE, as in R."""
    if subset is None:
        return None
    if isinstance(subset, str):
        try:
            val = data.eval(subset)
        except Exception as exc:  # noqa: BLE001 - pandas raises many kinds; name the input
            raise FormulaError(f"cannot evaluate subset {subset!r} on the data: "
                               f"{type(exc).__name__}: {exc}") from None
        what = f"subset {subset!r}"
    else:
        val, what = subset, "subset"
    if isinstance(val, pd.Series):
        val = _aligned(val, data, what)
    arr = np.asarray(val)
    if arr.dtype == object:
        present = pd.notna(arr)
        if not all(isinstance(v, bool | np.bool_) for v in arr[present]):
            raise DataError(f"{what} must be boolean (True/False per row)")
        arr = np.where(present, arr, False).astype(bool)
    if arr.dtype.kind != "b":
        raise DataError(f"{what} must be boolean (True/False per row), got values of type "
                        f"{arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != data.shape[0]:
        raise DataError(f"{what} must have one value per row of the data ({data.shape[0]}), "
                        f"got shape {arr.shape}")
    if not arr.any():
        raise DataError(f"{what} selects no rows")
    return arr


_NA_ACTIONS = ("na.omit", "na.exclude", "na.fail")


def _is_logical(node: Node, data: pd.DataFrame) -> bool:
    """Whether an expression is R's logical (a bool column or a comparison), not a factor."""
    if isinstance(node, Paren):
        return _is_logical(node.inner, data)
    if isinstance(node, Call) and node.fn == "I" and len(node.args) == 1:
        return _is_logical(node.args[0], data)
    if isinstance(node, Unary) and node.op == "!":
        return True
    if isinstance(node, BinOp):
        return node.op in ("<", ">", "<=", ">=", "==", "!=", "&", "|")
    if isinstance(node, Name) and node.id in data.columns:
        col = data[node.id]
        if pd.api.types.is_bool_dtype(col.dtype):
            return True
        if col.dtype == object:
            return pd.api.types.infer_dtype(col, skipna=True) == "boolean"
    return False


@dataclass(frozen=True, eq=False)
class GroupCodes:
    """An interaction grouping factor (``g1:g2``) before missing rows are removed: each row's
    code (-1 where missing) into its levels, the observed combinations "a:b" in order. What
    pandas' Categorical of them holds, without building one (its dtype's validation of the
    levels was most of the factor's cost); :func:`finalize_group` makes it a model variable."""

    codes: np.ndarray  # int64
    categories: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.codes.shape[0])


def finalize_group(label: str, group: pd.Categorical | GroupCodes, keep: np.ndarray | None
                   ) -> fixed.Variable:
    """A grouping factor on the rows kept, unused levels dropped: fixed.finalize, and its
    equivalent for :class:`GroupCodes` (the same codes and levels as pandas'
    remove_unused_categories of the Categorical)."""
    if not isinstance(group, GroupCodes):
        return fixed.finalize(label, group, keep)
    codes = group.codes if keep is None else group.codes[keep]
    levels = group.categories
    ncat = len(levels)
    present = codes >= 0
    counts = np.bincount(codes[present], minlength=ncat)
    if not counts.all():
        used = counts > 0
        new = np.cumsum(used) - 1
        codes = np.where(present, new[np.where(present, codes, 0)], -1)
        levels = tuple(lev for lev, u in zip(levels, used, strict=True) if u)
    return fixed.Variable(label, codes=np.asarray(codes, dtype=np.int64), levels=levels)


def _group_factor(
    node: Node, data: pd.DataFrame, cache: dict[str, fixed.Raw], messages: list[str]
) -> pd.Categorical | GroupCodes:
    """A grouping factor before missing rows are removed: a factor column, a variable made a
    factor, or ``g1:g2`` as lme4's ``%i%`` (observed combinations, g1 slowest, named "a:b",
    as :class:`GroupCodes`)."""
    if isinstance(node, Paren):
        return _group_factor(node.inner, data, cache, messages)
    if isinstance(node, BinOp) and node.op == ":":
        f1 = _group_factor(node.lhs, data, cache, messages)
        f2 = _group_factor(node.rhs, data, cache, messages)
        uniq, codes = _observed_pairs(f1.codes, f2.codes, len(f1.categories),
                                      len(f2.categories))
        l1 = np.asarray(f1.categories, dtype=object)[uniq // len(f2.categories)]
        l2 = np.asarray(f2.categories, dtype=object)[uniq % len(f2.categories)]
        labels = [f"{a}:{b}" for a, b in zip(l1, l2, strict=True)]
        fixed._check_labels(list(zip(l1, l2, strict=True)), labels, deparse(node))
        return GroupCodes(codes, tuple(labels))
    raw = fixed.evaluate(node, data, cache)
    if isinstance(raw, pd.Categorical):
        return raw
    name = deparse(node)
    if isinstance(raw, fixed.Matrix):
        raise FormulaError(f"grouping factor {name!r} is matrix-valued")
    if raw.dtype.kind == "f":
        messages.append(f"grouping variable {name!r} is numeric; converted to a factor")
    return fixed._factor_of(raw, name)


def _observed_pairs(codes1: np.ndarray, codes2: np.ndarray, n1: int, n2: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The level pairs of two factors' codes (-1 missing) that occur, as ``c1 * n2 + c2`` in
    increasing order, and each row's index among them (-1 where either is missing): what
    ``np.unique(..., return_inverse=True)`` gives, by a table of the n1 * n2 possible pairs
    where that is small (no sort: a tenth of an interaction factor's construction)."""
    c1, c2 = codes1.astype(np.int64), codes2.astype(np.int64)
    combined = c1 * n2 + c2
    missing = (c1 < 0) | (c2 < 0)
    has_missing = bool(missing.any())
    if n1 * n2 > 4 * combined.size + 4096:  # a sparse table: sort
        combined[missing] = -1
        uniq, inv = np.unique(combined, return_inverse=True)
        return uniq[uniq >= 0], inv.reshape(-1) - (1 if has_missing else 0)
    if has_missing:
        combined[missing] = 0
    seen = np.zeros(n1 * n2, dtype=bool)
    seen[combined[~missing] if has_missing else combined] = True
    index = np.cumsum(seen) - 1
    codes = index[combined]
    if has_missing:
        codes[missing] = -1
    return np.flatnonzero(seen), codes


def _leaves(node: Node) -> list[Node]:
    """The variables a grouping expression uses (``g1:g2`` -> g1, g2)."""
    if isinstance(node, Paren):
        return _leaves(node.inner)
    if isinstance(node, BinOp) and node.op in (":", "/"):
        return _leaves(node.lhs) + _leaves(node.rhs)
    return [node]


def _offset_terms(terms: list[tuple[str, ...]], nodes: Mapping[str, Node]
                  ) -> tuple[list[tuple[str, ...]], list[str]]:
    """Split ``offset(...)`` terms (R's terms() "offset" attribute) from the model terms."""
    kept, offsets = [], []
    for t in terms:
        calls = [v for v in t if isinstance(nodes[v], Call) and nodes[v].fn == "offset"]
        if calls and len(t) > 1:
            raise FormulaError(f"offset {calls[0]!r} cannot be part of an interaction "
                               f"({':'.join(t)})")
        (offsets if calls else kept).append(t)
    return kept, [t[0] for t in offsets]


@dataclass(frozen=True)
class ResponseRule:
    """What glmer changes in :func:`build_model` (lmer's rule is the default, None): how the
    response is read on every row (glmer: cbind counts, a factor, booleans, its family's rules;
    the trials join the prior weights), the family's checks on the rows kept, and lme4's
    glmer sizes (a grouping factor may have as many levels as observations, and as many random
    effects as observations are allowed)."""

    #: (response expression, data, evaluation cache, prior weights on every row or None) ->
    #: (response on every row, NaN where missing; prior weights on every row or None)
    read: Callable[[Node, pd.DataFrame, dict[str, fixed.Raw], np.ndarray | None],
                   tuple[np.ndarray, np.ndarray | None]]
    #: (response, prior weights or None) on the rows kept: raises on a response the family
    #: cannot model
    check: Callable[[np.ndarray, np.ndarray | None], None]
    glmer_sizes: bool = True


@dataclass
class _Variables:
    """Every variable of the formula evaluated on every row of the data (R's model.frame of
    subbars(formula)), before subset= and na_action choose the rows."""

    y: fixed.Raw  # the response (a numeric vector once checked)
    fixed_terms: Sequence[tuple[str, ...]]
    fixed_icpt: bool
    fixed_nodes: Mapping[str, Node]
    offset_labels: Sequence[str]
    bar_specs: Sequence[tuple[Any, tuple[Sequence[tuple[str, ...]], bool], Mapping[str, Node]]]
    raws: dict[str, fixed.Raw]
    groups: dict[str, pd.Categorical | GroupCodes]
    leaves: dict[str, fixed.Raw]
    weights: np.ndarray | None
    offset: np.ndarray | None


def build_model(
    formula: str,
    data: pd.DataFrame,
    *,
    weights: str | np.ndarray | Sequence[float] | pd.Series | None = None,
    offset: str | np.ndarray | Sequence[float] | pd.Series | None = None,
    contrasts: Mapping[str, fixed.Contrast] | None = None,
    na_action: str = "na.omit",
    subset: str | np.ndarray | Sequence[bool] | pd.Series | None = None,
    response: ResponseRule | None = None,
) -> ModelFrame:
    """lme4's ``lFormula`` (and glmer's ``glFormula`` with ``response``): parse the formula,
    evaluate its variables on the data (as R's model.frame: on every row, then ``subset``, then
    ``na_action``), and build the response, the fixed-effects matrix (R's columns,
    ``contrasts`` applied, aliased ones dropped) and the random-effects terms in lme4's order,
    with lme4's default checks (errors name the problem).

    ``weights``/``offset``: a column name or one value per row (a Series aligned by index);
    ``offset(...)`` terms of the formula add to the offset. ``contrasts``: factor label ->
    "contr.treatment", "contr.sum", "contr.helmert", "contr.poly", "contr.SAS" or a numeric
    levels x k matrix (a DataFrame's columns name the columns). ``na_action``: "na.omit",
    "na.exclude" or "na.fail". ``subset``: a boolean vector/Series, or an expression string on
    the columns (``DataFrame.eval``). ``response``: glmer's :class:`ResponseRule` (None:
    lmer's numeric response and checks)."""
    if na_action not in _NA_ACTIONS:
        raise DataError(f"na_action must be one of {', '.join(_NA_ACTIONS)}, got {na_action!r}")
    if contrasts is not None and not isinstance(contrasts, Mapping):
        raise DataError("contrasts must be a mapping of factor name -> contrast, e.g. "
                        "{'f': 'contr.sum'}, got " + type(contrasts).__name__)
    data = _check_data(data)
    parsed = parse_formula(formula)
    cache: dict[str, fixed.Raw] = {}
    messages: list[str] = []
    raw = _evaluate_variables(parsed, data, cache, messages, weights, offset, response)
    selected = _subset_mask(subset, data)
    _check_contrasts(contrasts, raw)
    if response is None:
        raw.y = _numeric_response(parsed, raw.y, data)
    keep_mask, dropped_na = _rows_kept(parsed.response_name, raw, selected, na_action)
    keep = None if keep_mask.all() else keep_mask
    y, fvars, w, o = _kept_vectors(parsed.response_name, raw, keep)
    if response is not None:
        response.check(y, w)
    terms = _random_terms(raw, fvars, keep, y.shape[0], messages,
                          glmer_sizes=response is not None and response.glmer_sizes)
    used = ({k: v for k, v in contrasts.items() if k in fvars and fvars[k].is_factor}
            if contrasts else None)
    X, names, dropped, scale_warned, x_qr = _fixed_matrix(raw, fvars, y.shape[0], used,
                                                          messages)
    degenerate, resid_ss = _check_response(y, X, w, o, parsed.response_name, messages, x_qr)
    nodes = [*raw.fixed_nodes.values(), *(n for _, _, bv in raw.bar_specs for n in bv.values())]
    spec = NewdataSpec(
        variables={label: _template(v) for label, v in fvars.items()},
        contrasts=dict(used or {}),
        transform_inputs=fixed.transform_inputs(nodes, data, cache),
    )
    return ModelFrame(
        formula=formula,
        y=y,
        X=X,
        fixef_names=tuple(names),
        reterms=tuple(terms),
        response=parsed.response_name,
        weights=w,
        offset=o,
        dropped_fixef=tuple(dropped),
        n_dropped_na=int(dropped_na.sum()),
        row_index=data.index if keep is None else data.index[keep],
        messages=tuple(dict.fromkeys(messages)),
        na_action=na_action,
        row_positions=np.flatnonzero(keep_mask),
        na_positions=np.flatnonzero(dropped_na),
        n_data_rows=int(data.shape[0]),
        scale_warning=scale_warned,
        degenerate_response=degenerate,
        newdata_spec=spec,
        response_resid_ss=resid_ss if w is None and o is None else None,
        x_qr=x_qr,
    )


@functools.lru_cache(maxsize=256)
def _formula_terms(text: str) -> tuple[tuple[tuple[str, ...], ...], bool, Mapping[str, Node],
                                       tuple[str, ...],
                                       tuple[tuple[Any, tuple[tuple[tuple[str, ...], ...], bool],
                                                   Mapping[str, Node]], ...],
                                       tuple[tuple[str, Node], ...]]:
    """What R's terms() makes of a formula's parts, once per formula text (as its parse,
    formula.parse_formula): the fixed part's terms, intercept and variables, its offset(...)
    labels, per bar term (bar, its terms and intercept, its variables), and the grouping
    factors' variables (label, node). Shared by every build of the formula and read-only
    (expanding them was a twentieth of a small model's build)."""
    parsed = parse_formula(text)
    fixed_terms, fixed_icpt = expand_terms(parsed.fixed)
    fixed_nodes = variables(parsed.fixed)
    fixed_terms, offset_labels = _offset_terms(fixed_terms, fixed_nodes)
    bar_specs = tuple((bar, (tuple(terms), icpt), MappingProxyType(variables(bar.lhs)))
                      for bar in parsed.bars for terms, icpt in [expand_terms(bar.lhs)])
    leaves = tuple((deparse(leaf), leaf) for bar in parsed.bars for leaf in _leaves(bar.group))
    # read-only views: every build of the formula shares them
    return (tuple(fixed_terms), fixed_icpt, MappingProxyType(fixed_nodes), tuple(offset_labels),
            bar_specs, leaves)


def _evaluate_variables(parsed: Any, data: pd.DataFrame, cache: dict[str, fixed.Raw],
                        messages: list[str], weights: object, offset: object,
                        response: ResponseRule | None) -> _Variables:
    """Every variable of the formula, the weights and the offset on every row of the data;
    the response read by lmer's rule (a numeric vector or booleans) or glmer's."""
    assert parsed.response is not None
    fixed_terms, fixed_icpt, fixed_nodes, offset_labels, bar_specs, leaf_nodes = \
        _formula_terms(parsed.text)
    if response is None:  # lmer's: checked to be numeric once the contrasts are
        y_raw = fixed.evaluate(parsed.response, data, cache)
    else:  # glmer's (R's family initialize) reads the prior weights with it
        y_raw, w_given = response.read(parsed.response, data, cache,
                                       _extra_vector(weights, data, "weights", cache))
    raws: dict[str, fixed.Raw] = {}
    for label, node in fixed_nodes.items():
        raws[label] = fixed.evaluate(node, data, cache)
    for _, _, bvars in bar_specs:
        for label, node in bvars.items():
            raws.setdefault(label, fixed.evaluate(node, data, cache))
    groups = {bar.group_name: _group_factor(bar.group, data, cache, messages)
              for bar in parsed.bars}
    leaves = {label: fixed.evaluate(leaf, data, cache) for label, leaf in leaf_nodes}
    w_raw = _extra_vector(weights, data, "weights", cache) if response is None else w_given
    o_raw = _extra_vector(offset, data, "offset", cache)
    return _Variables(y_raw, fixed_terms, fixed_icpt, fixed_nodes, offset_labels, bar_specs,
                      raws, groups, leaves, w_raw, o_raw)


def _numeric_response(parsed: Any, y_raw: fixed.Raw, data: pd.DataFrame) -> np.ndarray:
    """lmer's response: a numeric vector, or R's logical (booleans, a comparison) as 0/1."""
    if isinstance(y_raw, fixed.Matrix):
        raise DataError(f"response {parsed.response_name!r} must be a numeric vector")
    if isinstance(y_raw, pd.Categorical):
        if list(y_raw.categories) != ["FALSE", "TRUE"] or not _is_logical(parsed.response,
                                                                              data):
            raise DataError(
                f"response {parsed.response_name!r} must be numeric, got a factor or strings "
                f"(levels {', '.join(map(str, y_raw.categories[:5]))}...); lme4 refuses it too "
                "(\"response must be numeric\"): recode it as numbers, or booleans for 0/1"
            )
        y_raw = fixed._numeric(y_raw, parsed.response)
    return y_raw


def _check_contrasts(contrasts: Mapping[str, fixed.Contrast] | None, raw: _Variables) -> None:
    """R's model.matrix on contrasts=: a name not in the fixed part is ignored with a warning,
    a contrast for a variable that is not a factor is an error."""
    for key in contrasts or {}:
        if (key not in raw.raws or key in raw.offset_labels
                or not any(key in t for t in raw.fixed_terms)):
            warnings.warn(f"variable {key!r} is absent, its contrast will be ignored "
                          "(R's model.matrix)", UserWarning, stacklevel=3)
        elif not isinstance(raw.raws[key], pd.Categorical):
            raise DataError(f"contrasts apply only to factors: {key!r} is not a factor")


def _rows_kept(response_name: str, raw: _Variables, selected: np.ndarray | None,
               na_action: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows the model uses (subset=, then na_action over every variable) and the rows
    dropped for missing values among those subset= selects."""
    missing = fixed.na_mask(raw.y)
    na_by_var: dict[str, np.ndarray] = {response_name: missing}
    for label, values in [*raw.raws.items(), *raw.groups.items(), *raw.leaves.items()]:
        if label not in na_by_var:
            na_by_var[label] = (values.codes < 0 if isinstance(values, GroupCodes)
                                else fixed.na_mask(values))
    for label, vec in (("weights", raw.weights), ("offset", raw.offset)):
        if vec is not None:
            na_by_var[f"({label})"] = np.isnan(vec)
    for m in na_by_var.values():
        missing = missing | m
    inside = np.ones(missing.shape[0], dtype=bool) if selected is None else selected
    dropped_na = missing & inside
    n_na = int(dropped_na.sum())
    if n_na and na_action == "na.fail":
        cols = [f"{k} ({int((m & inside).sum())})" for k, m in na_by_var.items()
                if (m & inside).any()]
        raise DataError(
            f"missing values in object (na_action='na.fail'): {n_na} rows have missing values "
            f"in {', '.join(cols)}; use na_action='na.omit' to drop them"
        )
    keep_mask = inside & ~missing
    if not keep_mask.any():
        raise DataError("0 (non-NA) cases: every row has a missing value in a used column"
                        + ("" if selected is None else " (among the rows subset= selects)"))
    return keep_mask, dropped_na


def _kept_vectors(response_name: str, raw: _Variables, keep: np.ndarray | None
                  ) -> tuple[np.ndarray, dict[str, fixed.Variable], np.ndarray | None,
                             np.ndarray | None]:
    """The response, the variables, the weights and the offset (with the formula's
    ``offset(...)`` terms) on the rows kept; infinite values and negative weights refused."""
    def sub(vec: np.ndarray) -> np.ndarray:
        return vec if keep is None else vec[keep]

    y = np.ascontiguousarray(sub(raw.y), dtype=np.float64)
    checks = [(response_name, y)]
    fvars = {label: fixed.finalize(label, values, keep) for label, values in raw.raws.items()}
    checks += [(v.label, v.values) for v in fvars.values() if v.values is not None]
    w = None if raw.weights is None else np.ascontiguousarray(sub(raw.weights))
    o = None if raw.offset is None else np.ascontiguousarray(sub(raw.offset))
    for label in raw.offset_labels:  # offset(...) in the formula adds to the offset
        vals = fvars[label].values
        assert vals is not None
        o = vals.copy() if o is None else o + vals
    checks += [("weights", w), ("offset", o)]
    for name, vec in checks:
        if vec is not None and not np.isfinite(vec).all():
            raise DataError(f"column {name!r} has infinite values; remove or recode them")
    if w is not None and (w < 0).any():
        raise DataError("negative weights not allowed")
    return y, fvars, w, o


def _random_terms(raw: _Variables, fvars: dict[str, fixed.Variable], keep: np.ndarray | None,
                  n: int, messages: list[str], glmer_sizes: bool) -> list[ReTerm]:
    """The random-effects terms (mkReTrms) in lme4's order (by decreasing number of levels),
    with lme4's default checks on their sizes (lmer's, or glmer's with ``glmer_sizes``)."""
    labels = [bar.label for bar, _, _ in raw.bar_specs]
    dups = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dups:
        msg = (f"random-effects term ({dups[0]}) appears more than once: lme4 1.1-31 fits each "
               "copy (silently), but only the sum of their variances is identified")
        warnings.warn(msg, DuplicateTermWarning, stacklevel=3)
        messages.append(msg)
    terms: list[ReTerm] = []
    for bar, (bterms, bicpt), _ in raw.bar_specs:
        Xb, cnames = fixed.model_matrix(bterms, bicpt, fvars, n)
        if Xb.shape[1] == 0:
            raise FormulaError(f"random-effects term ({bar.label}) has no columns")
        g = finalize_group(bar.group_name, raw.groups[bar.group_name], keep)
        assert g.codes is not None
        terms.append(ReTerm(bar.group_name, tuple(cnames), Xb, g.codes, g.levels))
    nl = np.array([t.nlevels for t in terms])
    if np.any(np.diff(nl) > 0):
        order = np.argsort(nl, kind="stable")[::-1]
        terms = [terms[i] for i in order]
        labels = [labels[i] for i in order]
    _check_sizes(terms, labels, n, glmer_sizes)
    return terms


def _check_sizes(terms: list[ReTerm], labels: list[str], n: int, glmer_sizes: bool) -> None:
    """lme4's checks of the terms against the observations: every grouping factor needs two
    levels and fewer levels than observations (glmer: at most as many), every term fewer random
    effects than observations (glmer: at most as many; lme4's check.nobs.vs.nRE)."""
    groups = {t.group: t.nlevels for t in terms}
    one = [g for g, k in groups.items() if k < 2]
    if one:
        raise DataError(
            f"grouping factors must have > 1 sampled level (problems: {', '.join(one)})"
        )
    if glmer_sizes:
        many = [t.group for t in terms if t.nlevels > n]
        if many:
            raise DataError("number of levels of each grouping factor must be <= number of "
                            f"observations (problems: {many[0]})")
        for t in terms:
            if n < t.nlevels * t.q:
                raise DataError(f"number of observations (={n}) < number of random effects "
                                f"(={t.nlevels * t.q}) for term ({' + '.join(t.columns)} | "
                                f"{t.group}); the random-effects parameters are probably "
                                "unidentifiable")
        return
    many = [g for g, k in groups.items() if k >= n]
    if many:
        raise DataError(
            "number of levels of each grouping factor must be < number of observations "
            f"(problems: {', '.join(many)})"
        )
    for t, label in zip(terms, labels, strict=True):
        if n <= t.nlevels * t.q:
            raise DataError(
                f"number of observations (={n}) <= number of random effects "
                f"(={t.nlevels * t.q}) for term ({label}); the random-effects parameters and "
                "the residual variance (or scale parameter) are probably unidentifiable"
            )


def _fixed_matrix(raw: _Variables, fvars: dict[str, fixed.Variable], n: int,
                  used: dict[str, fixed.Contrast] | None, messages: list[str]
                  ) -> tuple[np.ndarray, list[str], list[str], bool,
                             tuple[np.ndarray, np.ndarray] | None]:
    """R's model.matrix of the fixed part with the contrasts in ``used``, aliased columns
    dropped (with lme4's message) and lme4's checkScaleX: (X, names, dropped, scale warned,
    X's QR factorization from the rank check or None: fixed.drop_aliased_qr)."""
    X, names = fixed.model_matrix(raw.fixed_terms, raw.fixed_icpt, fvars, n, used)
    X, names, dropped, x_qr = fixed.drop_aliased_qr(X, names)
    if dropped:
        k = len(dropped)
        messages.append(
            "fixed-effect model matrix is rank deficient so dropping "
            + (f"{k} column / coefficient" if k == 1 else f"{k} columns / coefficients")
            + f" ({', '.join(dropped)})"
        )
    scale_warned = fixed.check_scale_x(X)
    if scale_warned:
        messages.append("Some predictor variables are on very different scales: consider "
                        "rescaling")
    return X, names, dropped, scale_warned, x_qr


def _check_response(y: np.ndarray, X: np.ndarray, w: np.ndarray | None, o: np.ndarray | None,
                    name: str, messages: list[str],
                    x_qr: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[bool, float]:
    """Refuse a response whose sum of squares overflows (the criterion is not finite at lme4's
    starting theta: lme4 1.1-31 returns sigma = Inf, mixedref NaN), and warn when the fixed
    effects reproduce it exactly (residual variance 0: lme4 returns sigma = 0). Returns
    (whether it is reproduced exactly, the residual sum of squares about X). ``x_qr``: X's
    reduced QR factorization where already known (used when unweighted)."""
    r = y if o is None else y - o
    sw = None if w is None else np.sqrt(w)
    rw = r if sw is None else r * sw
    with np.errstate(all="ignore"):
        ss = float(np.dot(rw, rw))
        xs = np.einsum("ij,ij->j", X, X) if sw is None else np.einsum(
            "ij,ij->j", X * sw[:, None], X * sw[:, None])
    if not np.isfinite(ss):
        big = float(np.max(np.abs(r)))
        raise DataError(
            f"the response {name!r} is too large to fit: its sum of squares overflows "
            f"(max |{name}| = {big:.3g}{', weighted' if w is not None else ''}), so the "
            "criterion is not finite at the starting theta (lme4 1.1-31 returns sigma = Inf); "
            "rescale the response"
        )
    if not np.all(np.isfinite(xs)):
        raise DataError("a fixed-effects column is too large to fit (its sum of squares "
                        "overflows); rescale the predictors")
    if ss == 0.0:
        resid = 0.0
    elif X.shape[1] == 0:
        resid = ss
    else:
        if sw is None and x_qr is not None:
            Q = x_qr[0]
        else:
            Q = np.linalg.qr(X if sw is None else X * sw[:, None])[0]
        # X is full rank here (aliased columns dropped): Q spans it, and a Householder
        # projection is as stable as lstsq at 2/5 of its time
        e = rw - Q @ (Q.T @ rw)
        resid = float(np.dot(e, e))
    if below_rounding(resid, rw):  # mixedref.frontend.resolution: 1e-12 relative flagged SmLs07-09
        msg = (f"the response {name!r} is reproduced exactly by the fixed effects (it is "
               "constant or a linear function of the predictors): the residual variance is 0 "
               "and the variance components are not identified; lme4 1.1-31 returns sigma = 0, "
               "with warnings such as 'unable to evaluate scaled gradient' or silently")
        warnings.warn(msg, DegenerateResponseWarning, stacklevel=3)
        messages.append(msg)
        return True, resid
    return False, resid
