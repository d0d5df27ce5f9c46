"""Read and validate the harness catalog (harness/catalog.yaml or a user's file) into Cases.

The catalog is one declarative YAML file, also read by R (r_scripts/catalog.R); its schema is
documented at the top of harness/catalog.yaml. Each entry expands into one Case per method with
id "<dataset>-<spec>-<method>". A malformed entry raises CatalogError naming the entry (index,
spec, dataset) and the problem, so a user's catalog fails loudly and legibly.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from harness.core import yaml_text
from harness.core.datasets import DatasetError, dataset_info, dataset_names, load_dataset
from harness.core.errors import HarnessError

METHODS = ("REML", "ML")
REQUIRED_KEYS = ("spec", "dataset", "formula", "methods")
OPTIONAL_KEYS = ("notes", "expect", "xfail", "skip", "tags", "timeout",
                 "family", "link", "nAGQ", "weights", "anova", "predict_grid")
#: GLMM families and their links as lme4's glmer takes them (first: the canonical default)
FAMILIES: dict[str, tuple[str, ...]] = {
    "binomial": ("logit", "probit", "cloglog", "cauchit", "log"),
    "poisson": ("log", "identity", "sqrt"),
    "Gamma": ("inverse", "log", "identity"),
    "inverse.gaussian": ("1/mu^2", "inverse", "log", "identity"),
    # lme4's glmer.nb: MASS's negative.binomial with its dispersion θ estimated alongside
    "negative.binomial": ("log",),  # glmer.nb fits the log link only
}
#: the family whose dispersion θ is estimated by lme4's glmer.nb rather than given
NEGATIVE_BINOMIAL = "negative.binomial"
GLMM_TAG = "glmm"  # every GLMM case carries it (pytest harness -k glmm)
EXPECT_KEYS: dict[str, type] = {"singular": bool}
DEFAULT_TIMEOUT = 60.0
# ids are "<dataset>-<spec>-<method>": names must not hold "-" so that an id splits back
_NAME = re.compile(r"^[A-Za-z0-9_.]+$")
_TAG = re.compile(r"^[A-Za-z0-9_.-]+$")


class CatalogError(HarnessError):
    """The catalog file is malformed: the message names the entry and the problem."""


@dataclass(frozen=True)
class Case:
    """One fit to run: a dataset, a formula and a method (REML or ML), with its expectations.

    ``data_dirs`` are the folders searched for the dataset before the package's own (a user's
    catalog folder's ``data/``).
    """

    id: str
    dataset: str
    spec: str
    formula: str
    REML: bool
    method: str
    notes: str = ""
    expect: dict[str, Any] = field(default_factory=dict)
    xfail: dict[str, str] = field(default_factory=dict)
    skip: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT
    data_dirs: tuple[str, ...] = ()
    family: str | None = None  # None: a linear mixed model (lmer); else a GLMM (glmer)
    link: str | None = None  # the family's link; None: its canonical link
    nAGQ: int = 1  # glmer's nAGQ: 1 Laplace, > 1 adaptive Gauss-Hermite quadrature
    weights: str | None = None  # a column of prior weights (binomial: the trials)
    anova: str | None = None  # the spec of the partner model anova(m0 = it, m1 = this) tests
    anova_formula: str | None = None  # that partner's formula (same dataset, fitted alike)
    #: new data to predict at: column -> values, crossed (first column fastest, as R's
    #: expand.grid), the other columns from the data's first row; None: no grid
    predict_grid: dict[str, list[Any]] | None = None

    @property
    def is_glmm(self) -> bool:
        """True for a generalized linear mixed model (fitted by lme4's glmer)."""
        return self.family is not None

    @property
    def is_negative_binomial(self) -> bool:
        """True for a negative binomial GLMM (lme4's glmer.nb: θ estimated with the fit)."""
        return self.family == NEGATIVE_BINOMIAL

    @property
    def link_name(self) -> str | None:
        """The link in use: the given one, else the family's canonical link."""
        if self.family is None:
            return None
        return self.link or FAMILIES[self.family][0]

    def prior_weights(self, data: pd.DataFrame) -> pd.Series | None:
        """The column of prior weights the case names, or None."""
        return None if self.weights is None else data[self.weights]

    def __hash__(self) -> int:
        return hash(self.id)


def default_catalog_path() -> Path:
    """The catalog that travels with the harness package."""
    return Path(str(importlib.resources.files("harness") / "catalog.yaml"))


def load_catalog(path: str | Path | None = None) -> list[Case]:
    """Read, validate and expand a catalog file (default: the package's harness/catalog.yaml).

    Dataset names resolve first in ``<catalog folder>/data/``, then in the package's data.
    """
    path = Path(path) if path is not None else default_catalog_path()
    if not path.is_file():
        raise CatalogError(f"catalog file {path} does not exist")
    try:
        doc = yaml_text.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CatalogError(f"catalog {path}: not valid YAML: {exc}") from None
    if not isinstance(doc, Mapping) or "cases" not in doc:
        raise CatalogError(f"catalog {path}: expected a mapping with a 'cases' list at the top")
    extra = sorted(set(doc) - {"cases"})
    if extra:
        raise CatalogError(f"catalog {path}: unknown top-level key(s) {extra}; only 'cases'")
    entries = doc["cases"]
    if not isinstance(entries, list) or not entries:
        raise CatalogError(f"catalog {path}: 'cases' must be a non-empty list of entries")

    local = path.resolve().parent / "data"
    data_dirs = (str(local),) if local.is_dir() else ()
    try:
        known = set(dataset_names(data_dirs))
    except DatasetError as exc:
        raise CatalogError(f"catalog {path}: cannot read dataset metadata: {exc}") from None

    cases: list[Case] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        for case in _expand(path, index, entry, known, data_dirs):
            if case.id in seen:
                _fail(path, index, entry, f"duplicate id {case.id!r} (also entry {seen[case.id]})")
            seen[case.id] = index
            cases.append(case)
    return _with_anova_partners(path, entries, cases, seen)


def _with_anova_partners(path: Path, entries: list, cases: list[Case], seen: dict[str, int]
                         ) -> list[Case]:
    """Each case's ``anova:`` partner resolved to its formula: another spec on the same dataset,
    of the same kind (two LMMs, or two GLMMs with the same family, link, nAGQ and weights),
    whose model anova(partner, case) compares with the case's."""
    by_spec = {(c.dataset, c.spec): c for c in cases}
    out = []
    for case in cases:
        if case.anova is not None:
            index = seen[case.id]
            partner = by_spec.get((case.dataset, case.anova))
            if partner is None or partner.spec == case.spec:
                specs = sorted({c.spec for c in cases if c.dataset == case.dataset} - {case.spec})
                _fail(path, index, entries[index],
                      f"anova: {case.anova!r} must be another spec on dataset {case.dataset!r} "
                      f"(its specs: {', '.join(specs) or 'none'})")
            alike = ("family", "link", "nAGQ", "weights")
            if partner.is_glmm != case.is_glmm or any(
                    getattr(partner, k) != getattr(case, k) for k in alike):
                _fail(path, index, entries[index], "anova: a pair must be the same kind of model "
                      f"fitted alike: two linear mixed models, or two GLMMs with the same "
                      f"family, link, nAGQ and weights ({case.anova!r} differs)")
            case = replace(case, anova_formula=partner.formula)
        out.append(case)
    return out


def load_data(case: Case) -> pd.DataFrame:
    """The case's dataset as a DataFrame (a fresh copy, R's types and factor levels)."""
    return load_dataset(case.dataset, case.data_dirs)


def _fail(path: Path, index: int, entry: Any, problem: str) -> None:
    if isinstance(entry, Mapping):
        who = f"spec={entry.get('spec')!r}, dataset={entry.get('dataset')!r}"
    else:
        who = f"{type(entry).__name__} {entry!r}"
    raise CatalogError(f"catalog {path}: entry {index} ({who}): {problem}")


def _expand(
    path: Path, index: int, entry: Any, known: set[str], data_dirs: tuple[str, ...]
) -> list[Case]:
    def fail(problem: str) -> None:
        _fail(path, index, entry, problem)

    if not isinstance(entry, Mapping):
        fail("an entry must be a mapping of spec, dataset, formula, methods, ...")
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        fail(f"missing required field(s) {missing}")
    unknown = sorted(set(entry) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        fail(f"unknown key(s) {unknown}; allowed: {list(REQUIRED_KEYS + OPTIONAL_KEYS)}")

    spec, dataset, formula = entry["spec"], entry["dataset"], entry["formula"]
    if not isinstance(spec, str) or not _NAME.match(spec):
        fail(f"spec {spec!r} must be a name of letters, digits, '_' or '.' (no '-')")
    if not isinstance(dataset, str) or dataset not in known:
        fail(f"unknown dataset {dataset!r}; known datasets: {', '.join(sorted(known))}")
    if not _NAME.match(dataset):
        fail(f"dataset name {dataset!r} cannot be used in an id (letters, digits, '_', '.')")
    if not isinstance(formula, str) or "~" not in formula or "|" not in formula:
        fail(f"formula {formula!r} must be a string 'response ~ fixed + (terms | group)'")

    methods = entry["methods"]
    if not isinstance(methods, list) or not methods:
        fail(f"methods {methods!r} must be a non-empty list of {list(METHODS)}")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        fail(f"bad method(s) {bad}; allowed: {list(METHODS)}")
    if len(set(methods)) != len(methods):
        fail(f"methods {methods} list a method twice")

    notes = entry.get("notes", "") or ""
    if not isinstance(notes, str):
        fail(f"notes must be text, not {type(notes).__name__}")
    expect = _mapping(entry, "expect", fail)
    for key, value in expect.items():
        if key not in EXPECT_KEYS:
            fail(f"expect: unknown key {key!r}; allowed: {list(EXPECT_KEYS)}")
        if not isinstance(value, EXPECT_KEYS[key]):
            fail(f"expect: {key} must be {EXPECT_KEYS[key].__name__}, got {value!r}")
    xfail = _reasons(entry, "xfail", fail)
    skip = _reasons(entry, "skip", fail)
    tags = entry.get("tags", []) or []
    if not isinstance(tags, list) or not all(isinstance(t, str) and _TAG.match(t) for t in tags):
        fail(f"tags {tags!r} must be a list of names")
    timeout = entry.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        fail(f"timeout {timeout!r} must be a positive number of seconds")
    family, link, nagq, weights = _glmm_fields(entry, methods, fail)
    grid = _predict_grid(entry, dataset, data_dirs, fail)
    anova = entry.get("anova")
    if anova is not None and (not isinstance(anova, str) or not _NAME.match(anova)):
        fail(f"anova {anova!r} must be the spec name of the partner model")
    if weights is not None:
        columns = [c["name"] for c in dataset_info(dataset, data_dirs).get("columns", [])]
        if weights not in columns:
            fail(f"weights column {weights!r} is not a column of dataset {dataset!r} "
                 f"(columns: {', '.join(columns)})")
    if family is not None and GLMM_TAG not in tags:
        tags = [*tags, GLMM_TAG]

    return [
        Case(
            id=f"{dataset}-{spec}-{method}",
            dataset=dataset,
            spec=spec,
            formula=formula,
            REML=method == "REML",
            method=method,
            notes=notes,
            expect=dict(expect),
            xfail=dict(xfail),
            skip=dict(skip),
            tags=tuple(tags),
            timeout=float(timeout),
            data_dirs=data_dirs,
            family=family,
            link=link,
            nAGQ=nagq,
            weights=weights,
            anova=anova,
            predict_grid=grid,
        )
        for method in methods
    ]


def _predict_grid(entry: Mapping, dataset: str, data_dirs: tuple[str, ...], fail
                  ) -> dict[str, list[Any]] | None:
    """The entry's ``predict_grid``: a mapping of the dataset's columns to non-empty lists of
    numbers or level names (a grouping factor may name a level unseen in fitting)."""
    grid = entry.get("predict_grid")
    if grid is None:
        return None
    if not isinstance(grid, Mapping) or not grid:
        fail(f"predict_grid {grid!r} must be a mapping of column to a list of values")
    columns = [c["name"] for c in dataset_info(dataset, data_dirs).get("columns", [])]
    for col, values in grid.items():
        if col not in columns:
            fail(f"predict_grid: {col!r} is not a column of dataset {dataset!r} "
                 f"(columns: {', '.join(columns)})")
        if (not isinstance(values, list) or not values or not all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in values)):
            fail(f"predict_grid: {col} must be a non-empty list of numbers or level names, "
                 f"got {values!r}")
    return {str(k): list(v) for k, v in grid.items()}


def grid_label(grid: Mapping[str, Sequence[Any]]) -> str:
    """A grid as one line, "Days=0,4.5,12; Subject=308,new": what a recording says it
    predicted at (r_scripts/lmer_record.R's grid_label writes the same)."""
    return "; ".join(f"{k}={','.join(_r_text(v) for v in vs)}" for k, vs in grid.items())


def _r_text(v: Any) -> str:
    """A grid value as R's as.character writes it (12 for 12.0)."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _glmm_fields(entry: Mapping, methods: list[str], fail
                 ) -> tuple[str | None, str | None, int, str | None]:
    """family, link, nAGQ and weights of an entry, checked as glmer would check them."""
    family = entry.get("family")
    rest = [k for k in ("link", "nAGQ", "weights") if k in entry]
    if family is None:
        if rest:
            fail(f"{rest} apply to GLMMs only: give a family (one of {list(FAMILIES)})")
        return None, None, 1, None
    if family not in FAMILIES:
        fail(f"unknown family {family!r}; lme4's glmer families here: {list(FAMILIES)}")
    if methods != ["ML"]:
        fail(f"a GLMM (family {family}) is fitted by maximum likelihood: methods must be [ML], "
             f"not {methods}")
    link = entry.get("link")
    if link is not None and link not in FAMILIES[family]:
        fail(f"link {link!r} is not available for family {family}; "
             f"links: {list(FAMILIES[family])}")
    nagq = entry.get("nAGQ", 1)
    if isinstance(nagq, bool) or not isinstance(nagq, int) or nagq < 0:
        fail(f"nAGQ {nagq!r} must be a whole number >= 0 (1: Laplace, > 1: quadrature)")
    weights = entry.get("weights")
    if weights is not None and (not isinstance(weights, str) or not weights):
        fail(f"weights {weights!r} must be the name of a column")
    return str(family), None if link is None else str(link), int(nagq), weights


def _mapping(entry: Mapping, key: str, fail) -> dict[str, Any]:
    value = entry.get(key) or {}
    if not isinstance(value, Mapping):
        fail(f"{key} must be a mapping, got {value!r}")
    return dict(value)


def _reasons(entry: Mapping, key: str, fail) -> dict[str, str]:
    value = _mapping(entry, key, fail)
    for impl, reason in value.items():
        if not isinstance(impl, str) or not isinstance(reason, str) or not reason.strip():
            fail(f'{key}: {impl!r} needs a reason as text (implementation: "why")')
    return value
