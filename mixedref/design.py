"""The model's matrices, as lme4's ``lFormula`` builds them: fixed-effects X with R's column
names, the response, and one :class:`ReTerm` per random-effects term in lme4's order.

The builder :func:`build_model` turns a formula and a DataFrame into a :class:`ModelFrame`;
every later stage (objective, optimizer, fit) reads only the ModelFrame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mixedref import fixed
from mixedref.errors import DataError, FormulaError
from mixedref.formula import (
    BinOp,
    Name,
    Node,
    Paren,
    deparse,
    expand_terms,
    parse_formula,
    variables,
)
from mixedref.reterm import ReTerm, theta_positions  # noqa: F401 - re-exported


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


def _check_data(data: object) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if data.shape[0] == 0:
        raise DataError("data is empty (0 rows)")
    dup = data.columns[data.columns.duplicated()]
    if len(dup):
        raise DataError(f"data has duplicate column names: {', '.join(map(str, dup.unique()))}")
    return data


def _extra_vector(
    arg: object, data: pd.DataFrame, what: str, cache: dict[str, fixed.Raw]
) -> np.ndarray | None:
    """Weights or offset: a column name, or a vector with one value per row of the data."""
    if arg is None:
        return None
    if isinstance(arg, str):
        if arg not in data.columns:
            raise FormulaError(f"{what} column {arg!r} is not in the data")
        raw = fixed.evaluate(Name(arg), data, cache)
        if isinstance(raw, pd.Categorical):
            raise DataError(f"{what} column {arg!r} must be numeric")
        return raw
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


def _group_factor(
    node: Node, data: pd.DataFrame, cache: dict[str, fixed.Raw], messages: list[str]
) -> pd.Categorical:
    """A grouping factor before missing rows are removed: a factor column, a variable made a
    factor, or ``g1:g2`` as lme4's ``%i%`` (observed combinations, g1 slowest, named "a:b")."""
    if isinstance(node, Paren):
        return _group_factor(node.inner, data, cache, messages)
    if isinstance(node, BinOp) and node.op == ":":
        f1 = _group_factor(node.lhs, data, cache, messages)
        f2 = _group_factor(node.rhs, data, cache, messages)
        c1, c2 = f1.codes.astype(np.int64), f2.codes.astype(np.int64)
        combined = c1 * len(f2.categories) + c2
        combined[(c1 < 0) | (c2 < 0)] = -1
        uniq, inv = np.unique(combined, return_inverse=True)
        ok = uniq >= 0
        l1 = np.asarray(f1.categories, dtype=object)[uniq[ok] // len(f2.categories)]
        l2 = np.asarray(f2.categories, dtype=object)[uniq[ok] % len(f2.categories)]
        labels = [f"{a}:{b}" for a, b in zip(l1, l2, strict=True)]
        codes = inv.reshape(-1) - (0 if ok.all() else 1)
        return pd.Categorical.from_codes(codes, categories=labels, validate=False)
    raw = fixed.evaluate(node, data, cache)
    if isinstance(raw, pd.Categorical):
        return raw
    name = deparse(node)
    if raw.dtype.kind == "f":
        messages.append(f"grouping variable {name!r} is numeric; converted to a factor")
    return fixed._factor_of(raw)


def _leaves(node: Node) -> list[Node]:
    """The variables a grouping expression uses (``g1:g2`` -> g1, g2)."""
    if isinstance(node, Paren):
        return _leaves(node.inner)
    if isinstance(node, BinOp) and node.op in (":", "/"):
        return _leaves(node.lhs) + _leaves(node.rhs)
    return [node]


def build_model(
    formula: str,
    data: pd.DataFrame,
    *,
    weights: str | np.ndarray | Sequence[float] | None = None,
    offset: str | np.ndarray | Sequence[float] | None = None,
) -> ModelFrame:
    """lme4's ``lFormula``: parse the formula, remove incomplete rows (na.omit), and build the
    response, the fixed-effects matrix (R's columns, aliased ones dropped) and the random-effects
    terms in lme4's order, with lme4's default checks (errors name the problem)."""
    data = _check_data(data)
    parsed = parse_formula(formula)
    cache: dict[str, fixed.Raw] = {}
    messages: list[str] = []

    # evaluate every variable on the full data (R's model.frame of subbars(formula))
    assert parsed.response is not None
    y_raw = fixed.evaluate(parsed.response, data, cache)
    fixed_terms, fixed_icpt = expand_terms(parsed.fixed)
    fixed_vars = variables(parsed.fixed)
    bar_specs = [(bar, expand_terms(bar.lhs), variables(bar.lhs)) for bar in parsed.bars]
    raws: dict[str, fixed.Raw] = {}
    for label, node in fixed_vars.items():
        raws[label] = fixed.evaluate(node, data, cache)
    for _, _, bvars in bar_specs:
        for label, node in bvars.items():
            raws.setdefault(label, fixed.evaluate(node, data, cache))
    group_raw = {
        bar.group_name: _group_factor(bar.group, data, cache, messages) for bar in parsed.bars
    }
    leaf_raw = [fixed.evaluate(leaf, data, cache) for bar in parsed.bars for leaf in
                _leaves(bar.group)]
    w_raw = _extra_vector(weights, data, "weights", cache)
    o_raw = _extra_vector(offset, data, "offset", cache)

    if isinstance(y_raw, pd.Categorical):
        if list(y_raw.categories) != ["FALSE", "TRUE"]:
            raise DataError(
                f"response {parsed.response_name!r} must be numeric, got a factor or strings "
                f"(levels {', '.join(map(str, y_raw.categories[:5]))}...)"
            )
        y_raw = fixed._numeric(y_raw, parsed.response)

    missing = fixed.na_mask(y_raw)
    for raw in [*raws.values(), *group_raw.values(), *leaf_raw]:
        missing = missing | fixed.na_mask(raw)
    for vec in (w_raw, o_raw):
        if vec is not None:
            missing = missing | np.isnan(vec)
    n_na = int(missing.sum())
    keep = None if n_na == 0 else ~missing
    if n_na == data.shape[0]:
        raise DataError("0 (non-NA) cases: every row has a missing value in a used column")

    def sub(vec: np.ndarray) -> np.ndarray:
        return vec if keep is None else vec[keep]

    y = np.ascontiguousarray(sub(y_raw), dtype=np.float64)
    n = y.shape[0]
    checks = [(parsed.response_name, y)]
    fvars = {label: fixed.finalize(label, raw, keep) for label, raw in raws.items()}
    checks += [(v.label, v.values) for v in fvars.values() if v.values is not None]
    w = None if w_raw is None else np.ascontiguousarray(sub(w_raw))
    o = None if o_raw is None else np.ascontiguousarray(sub(o_raw))
    checks += [("weights", w), ("offset", o)]
    for name, vec in checks:
        if vec is not None and not np.isfinite(vec).all():
            raise DataError(f"column {name!r} has infinite values; remove or recode them")
    if w is not None and (w < 0).any():
        raise DataError("negative weights not allowed")

    # random-effects terms (mkReTrms), in lme4's order, with lme4's default checks
    terms: list[ReTerm] = []
    for bar, (bterms, bicpt), _ in bar_specs:
        Xb, cnames = fixed.model_matrix(bterms, bicpt, fvars, n)
        if Xb.shape[1] == 0:
            raise FormulaError(f"random-effects term ({bar.label}) has no columns")
        g = fixed.finalize(bar.group_name, group_raw[bar.group_name], keep)
        assert g.codes is not None
        terms.append(ReTerm(bar.group_name, tuple(cnames), Xb, g.codes, g.levels))
    nl = np.array([t.nlevels for t in terms])
    labels = [bar.label for bar in parsed.bars]
    if np.any(np.diff(nl) > 0):
        order = np.argsort(nl, kind="stable")[::-1]
        terms = [terms[i] for i in order]
        labels = [labels[i] for i in order]
    groups = {t.group: t.nlevels for t in terms}
    one = [g for g, k in groups.items() if k < 2]
    if one:
        raise DataError(
            f"grouping factors must have > 1 sampled level (problems: {', '.join(one)})"
        )
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

    # fixed effects
    X, names = fixed.model_matrix(fixed_terms, fixed_icpt, fvars, n)
    X, names, dropped = fixed.drop_aliased(X, names)
    if dropped:
        k = len(dropped)
        messages.append(
            "fixed-effect model matrix is rank deficient so dropping "
            + (f"{k} column / coefficient" if k == 1 else f"{k} columns / coefficients")
            + f" ({', '.join(dropped)})"
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
        n_dropped_na=n_na,
        row_index=data.index if keep is None else data.index[keep],
        messages=tuple(dict.fromkeys(messages)),
    )
