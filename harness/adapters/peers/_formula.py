"""Shared translation helpers for the peer adapters: an lme4 formula taken apart the way lme4
reads it, and the peers' answers put back into lme4's names and shapes.

The peers are judged against lme4 and mixedref, so their translation does not borrow
mixedref's model builder; it asks only the θ home (mixedref.frontend.reterm.TermShape: θ from a
covariance, θ's lower bounds), lme4's singularity test (mixedref.fitting.optimize.is_singular) and
R's make.unique and make.names as lme4's VarCorr applies them (mixedref.models.fit.varcorr_groups).

- :func:`parse` splits ``y ~ fixed + (expr | g) + (expr || g)`` into the response, the fixed
  part and the bar terms; :func:`lme4_terms` expands them as lme4 does (``||`` into one term
  per column, ``a/b`` into ``a`` and ``b:a``) and orders them as lme4 does (decreasing number
  of levels, ties in formula order), with lme4's VarCorr group names (``Subject``,
  ``Subject.1``).
- :func:`fixed_design` builds the fixed-effects matrix with patsy (statsmodels' formula engine)
  under R's ``model.matrix`` rules for what the catalog uses (treatment contrasts, ``contr.poly``
  for ordered factors) and R's column names; :func:`r_name` maps patsy's names to R's.
- :func:`varcorr_rows` and :func:`theta_of` write per-term covariance matrices as lme4's
  ``as.data.frame(VarCorr(m))`` rows and θ.
- :func:`split_offsets` and :func:`offset_vector` take ``offset(...)`` terms out of a formula
  for packages with an ``offset=`` argument; :func:`python_powers` and :func:`r_powers` write
  R's ``I(x^k)`` as ``I(x**k)`` for Python formula engines and map the names back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.adapters.peers.calls import (  # noqa: F401 - the adapters' names for them
    POLY_SUFFIX,
    index_names,
    r_name,
    r_powers,
)
from harness.core.glmm_response import (  # noqa: F401 - the adapters' names for them
    GlmmResponse,
    glmm_response,
    saturated_loglik,
    unit_deviance,
)
from mixedref.fitting.optimize import is_singular
from mixedref.frontend.reterm import TermShape
from mixedref.models.fit import varcorr_groups

_BAR = re.compile(r"\(([^()|]*(?:\([^()]*\)[^()|]*)*)(\|\|?)([^()]*)\)")


@dataclass
class Bar:
    """One bar term as written: ``(expr | group)`` or ``(expr || group)``."""

    expr: str
    double: bool
    group: str

    @property
    def intercept(self) -> bool:
        """lme4's rule: an intercept unless the expression has ``0 +`` or ``- 1``."""
        parts = [p.replace(" ", "") for p in _summands(self.expr)]
        return "0" not in parts and not re.search(r"-\s*1\s*$", self.expr)

    @property
    def predictors(self) -> list[str]:
        """The expression's summands other than 1 / 0 (as written: ``Days``, ``I(Days - 4.5)``)."""
        parts = _summands(re.sub(r"-\s*1\s*$", "", self.expr))
        return [p for p in parts if p.replace(" ", "") not in ("1", "0")]

    @property
    def columns(self) -> list[str]:
        """The term's columns by R's names (factor-valued slopes are not expanded here)."""
        return (["(Intercept)"] if self.intercept else []) + self.predictors

    @property
    def groups(self) -> list[str]:
        """The grouping factors it stands for: ``a/b`` is ``a`` and ``b:a`` (lme4's order)."""
        parts = [p.strip() for p in self.group.split("/")]
        return [":".join(reversed(parts[:k])) for k in range(1, len(parts) + 1)]

    @property
    def labels(self) -> list[str]:
        """lme4's names of :attr:`groups`: each nesting level wraps the one above in
        parentheses, so ``a/b/c`` is ``a``, ``b:a`` and ``c:(b:a)`` (its VarCorr and ranef)."""
        out: list[str] = []
        for p in (p.strip() for p in self.group.split("/")):
            out.append(p if not out else f"{p}:({out[-1]})" if ":" in out[-1]
                       else f"{p}:{out[-1]}")
        return out


@dataclass
class Parsed:
    response: str
    fixed: str  # the right-hand side without the bar terms ("1" when nothing is left)
    bars: list[Bar] = field(default_factory=list)


@dataclass
class Term:
    """One random-effects term as lme4 has it after expansion."""

    group: str  # the grouping factor, e.g. "Subject", "cask:batch"
    columns: list[str]  # R names of its columns
    name: str = ""  # lme4's VarCorr group name (Subject, Subject.1)
    label: str = ""  # lme4's name of the grouping factor (c:(b:a) for c:b:a of a/b/c)
    nlevels: int = 0
    correlated: bool = True


def _summands(expr: str) -> list[str]:
    """Split on top-level '+' (not inside parentheses)."""
    out, depth, cur = [], 0, ""
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "+" and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def parse(formula: str) -> Parsed:
    """The formula's response, fixed part and bar terms."""
    lhs, _, rhs = formula.partition("~")
    bars = [Bar(e.strip(), b == "||", g.strip()) for e, b, g in _BAR.findall(rhs)]
    fixed = _BAR.sub("", rhs)
    fixed = re.sub(r"\+\s*(\+\s*)+", "+ ", fixed).strip().strip("+").strip()
    return Parsed(lhs.strip(), fixed or "1", bars)


def group_labels(data: Any, group: str) -> Any:
    """The grouping factor's values per row (``a:b`` as the pasted labels of its parts)."""
    parts = group.split(":")
    if len(parts) == 1:
        return data[group].astype(str).to_numpy()
    out = data[parts[0]].astype(str).to_numpy().astype(object)
    for p in parts[1:]:
        out = out + ":" + data[p].astype(str).to_numpy().astype(object)
    return out.astype(str)


def nlevels(data: Any, group: str) -> int:
    return int(len(np.unique(group_labels(data, group))))


def lme4_terms(parsed: Parsed, data: Any) -> list[Term]:
    """The random-effects terms as lme4 expands and orders them, with VarCorr names."""
    terms: list[Term] = []
    for bar in parsed.bars:
        for g, label in zip(bar.groups, bar.labels, strict=True):
            if bar.double:
                terms += [Term(g, [c], label=label, correlated=False) for c in bar.columns]
            else:
                terms.append(Term(g, list(bar.columns), label=label))
    for t in terms:
        t.nlevels = nlevels(data, t.group)
    terms = sorted(terms, key=lambda t: -t.nlevels)  # stable: ties keep formula order
    for t, name in zip(terms, varcorr_groups([t.label or t.group for t in terms]),
                       strict=True):
        t.name = name
    return terms


# ----------------------------------------------------------------------------- fixed effects


def ordered_factors(data: Any) -> list[str]:
    """Columns that are ordered pandas Categoricals (R: ordered factors, contr.poly)."""
    return [c for c in data.columns
            if str(data[c].dtype) == "category" and bool(data[c].cat.ordered)]


def factors(data: Any) -> list[str]:
    return [c for c in data.columns if str(data[c].dtype) in ("category", "object", "str",
                                                              "string")]


def uses(expr: str, name: str) -> bool:
    """Whether the formula text ``expr`` uses the variable ``name``."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", expr) is not None


def patsy_formula(rhs: str, data: Any) -> str:
    """R's right-hand side as patsy reads it with R's contrasts: ordered factors wrapped in
    ``C(x, Poly)`` (patsy's Poly is R's contr.poly); everything else is the same grammar."""
    for name in ordered_factors(data):
        rhs = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w.])", f"C({name}, Poly)", rhs)
    return rhs


def fixed_design(parsed: Parsed, data: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(y, X, R column names) of the fixed part, built by patsy."""
    import patsy

    rhs = patsy_formula(parsed.fixed, data)
    y, X = patsy.dmatrices(f"{parsed.response} ~ {rhs}", data, NA_action="raise",
                           return_type="dataframe")
    return (np.asarray(y, dtype=float).ravel(), np.asarray(X, dtype=float),
            [r_name(c) for c in X.columns])


def re_design(columns: list[str], data: Any) -> np.ndarray:
    """The columns of one random-effects term (patsy evaluates I(...) as R does)."""
    import patsy

    preds = [c for c in columns if c != "(Intercept)"]
    rhs = " + ".join(["1" if "(Intercept)" in columns else "0"] + preds)
    M = patsy.dmatrix(rhs, data, NA_action="raise", return_type="dataframe")
    return np.asarray(M, dtype=float)


def map_names(names: list[str], data: Any, style: str) -> list[str]:
    """R names of a package's coefficient names. ``style``: ``patsy`` (``Intercept``,
    ``x[T.b]``), or ``index`` (``x.1``, ``x.2``: the j-th contrast column of factor x, as
    mixedlm names them; treatment contrasts name the level, contr.poly the degree)."""
    if style == "patsy":
        return [r_name(n) for n in names]
    return index_names(names, factor_levels(data), ordered_factors(data))


def factor_levels(data: Any) -> dict[str, list[Any]]:
    """Each factor's levels in R's order (a categorical's categories; otherwise sorted)."""
    return {var: (list(data[var].cat.categories) if str(data[var].dtype) == "category"
                  else sorted(set(data[var]))) for var in factors(data)}


# ----------------------------------------------------------------------------- answers


def varcorr_rows(terms: list[Term], covs: list[np.ndarray], sigma2: float
                 ) -> list[dict[str, Any]]:
    """lme4's as.data.frame(VarCorr(m)) from per-term covariance matrices (the harness's one
    builder of these rows, harness.core.record.varcorr_rows); the residual row last."""
    from harness.core.record import varcorr_rows as rows_of

    return rows_of([(t.name, t.columns, cov) for t, cov in zip(terms, covs, strict=True)],
                   float(np.sqrt(sigma2)))


def theta_of(terms: list[Term], covs: list[np.ndarray], sigma2: float) -> list[float] | None:
    """lme4's θ from the per-term covariances (Σ/σ², by the θ home:
    mixedref.frontend.reterm.TermShape).
    None when a block is indefinite (a negative eigenvalue beyond rounding): no θ reproduces it."""
    out: list[float] = []
    for t, cov in zip(terms, covs, strict=True):
        block = np.atleast_2d(np.asarray(cov, dtype=float)) / sigma2
        scale = max(float(np.max(np.abs(np.diag(block)))), 1.0)
        if block.shape[0] > 1 and np.min(np.linalg.eigvalsh(block)) < -1e-8 * scale:
            return None
        out += TermShape(t.group, tuple(t.columns)).theta_from_covariance(block).tolist()
    return out


def singular(theta: list[float] | None, terms: list[Term]) -> bool | None:
    """lme4's isSingular at θ (mixedref.fitting.optimize.is_singular, lme4's tolerance 1e-4)."""
    if theta is None:
        return None
    lower = [TermShape(t.group, tuple(t.columns)).theta_lower for t in terms]
    return is_singular(np.asarray(theta), np.concatenate(lower) if lower else np.zeros(0))


def caught_messages(caught: list[Any]) -> list[str]:
    return [f"{w.category.__name__}: {w.message}" for w in caught]


def version_of(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def missing(module: str, package: str) -> str | None:
    """None when ``module`` is installed, else the one line the harness prints for the skip.
    Looked up, not imported: the harness process runs none of a candidate's code (its worker
    imports it)."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError) as exc:  # ValueError: sys.modules[module] is None
        found, why = False, f"{type(exc).__name__}: {exc}"
    else:
        why = f"no module named {module!r}"
    if not found:
        return f"{package} is not installed ({why}); pip install mixedref[peers]"
    return None


def cannot(package: str, what: str, why: str) -> NotImplementedError:
    """The error of a formula the package cannot express."""
    return NotImplementedError(f"{package} cannot express {what}: {why}")


def same_factor(a: str, b: str) -> bool:
    """``batch:cask`` and ``cask:batch`` are one grouping factor."""
    return sorted(a.split(":")) == sorted(b.split(":"))


def pick_block(blocks: dict[str, tuple[list[str], np.ndarray]], term: Term,
               package: str) -> np.ndarray:
    """The term's covariance block out of a package's per-group covariances (``blocks``: its
    group name -> (column names, covariance)), matched by grouping factor and columns (a
    package may keep a ``||`` pair as one group with a diagonal covariance)."""
    for grp, (cols, cov) in blocks.items():
        if same_factor(grp, term.group) and all(c in cols for c in term.columns):
            idx = [cols.index(c) for c in term.columns]
            return np.asarray(cov, dtype=float)[np.ix_(idx, idx)]
    raise RuntimeError(f"{package} reports no variance components for lme4's term "
                       f"{term.name} {term.columns}: it has "
                       f"{ {g: c for g, (c, _) in blocks.items()} }")


def unpack_vech(packed: Any, q: int) -> np.ndarray:
    """A symmetric q x q matrix from its column-major lower triangle."""
    cov, k = np.zeros((q, q)), 0
    for j in range(q):
        for i in range(j, q):
            cov[i, j] = cov[j, i] = float(packed[k])
            k += 1
    return cov


# ----------------------------------------------------------------------------- GLMMs


def python_powers(formula: str) -> str:
    """R's I(x^k) as mixedlm writes it, I(x**k)."""
    return re.sub(r"I\((\s*\w+\s*)\^", r"I(\1**", formula)


def split_offsets(formula: str) -> tuple[str, list[str]]:
    """``formula`` without its ``offset(expr)`` terms (R's terms() "offset" attribute), and
    the expressions, as written: ``y ~ x + offset(log(t)) + (1 | g)`` is ``y ~ x + (1 | g)``
    and ``["log(t)"]``. Parentheses inside the offset are balanced."""
    lhs, tilde, rhs = formula.partition("~")
    exprs: list[str] = []
    out, i = "", 0
    for m in re.finditer(r"(?<![\w.])offset\s*\(", rhs):
        if m.start() < i:
            continue
        depth, j = 1, m.end()
        while j < len(rhs) and depth:
            depth += {"(": 1, ")": -1}.get(rhs[j], 0)
            j += 1
        if depth:
            raise ValueError(f"unbalanced parentheses in {rhs[m.start():]!r}")
        exprs.append(rhs[m.end():j - 1].strip())
        out += rhs[i:m.start()]
        i = j
    out += rhs[i:]
    if not exprs:
        return formula, []
    # drop the '+' the offset left behind; keep "1" if nothing else is left of the fixed part
    out = re.sub(r"\+\s*(?=\+)", "", out)
    out = re.sub(r"^\s*\+\s*|\s*\+\s*$", "", out.strip())
    out = re.sub(r"\+\s*\+", "+", out)
    return f"{lhs.strip()} {tilde} {out.strip() or '1'}", exprs


_NUMPY_FUNCS = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt, "log10": np.log10,
                "log2": np.log2, "log1p": np.log1p, "abs": np.abs}


def offset_vector(exprs: list[str], data: Any) -> np.ndarray | None:
    """The sum of the offset expressions evaluated on ``data`` as R evaluates them (``log`` the
    natural logarithm, ``^`` a power), or None when there are none."""
    if not exprs:
        return None
    import patsy

    env = patsy.EvalEnvironment([_NUMPY_FUNCS])
    total = np.zeros(len(data))
    for expr in exprs:
        py = expr.replace("^", "**")
        with np.errstate(all="ignore"):  # a non-finite value is reported below
            M = patsy.dmatrix(f"0 + I({py})", data, eval_env=env,
                              NA_action=patsy.NAAction(NA_types=[]), return_type="dataframe")
        total = total + np.asarray(M, dtype=float).ravel()
    if not np.all(np.isfinite(total)):
        raise ValueError(f"offset {' + '.join(exprs)} is not finite on every row")
    return total
