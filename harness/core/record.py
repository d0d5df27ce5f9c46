"""The FitRecord: one JSON-serializable shape for every implementation's answer to a case.

Every adapter returns a record, every comparison and report reads one. Fields follow
../shared/DESIGN.md; R's names are kept (fixed effects by model.matrix column name, variance
components as the rows of ``as.data.frame(VarCorr(m))``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

SCHEMA_VERSION = 7
SCHEMA_PATH = Path(__file__).resolve().parent / "record.schema.json"


def _f(meaning: str, default: Any = None, factory: Any = None) -> Any:
    if factory is not None:
        return field(default_factory=factory, metadata={"meaning": meaning})
    return field(default=default, metadata={"meaning": meaning})


@dataclass
class VarCorrRow:
    """One row of R's ``as.data.frame(VarCorr(m))``. A correlation of a zero standard
    deviation is undefined: lme4 gives NaN, a record null."""

    grp: str
    var1: str | None
    var2: str | None
    vcov: float | None
    sdcor: float | None


@dataclass
class RanefRow:
    """One conditional mode, as a row of R's ``as.data.frame(ranef(m, condVar = TRUE))``: the
    grouping factor (lme4's grpvar: ``Subject`` for both terms of ``||``), the term's column,
    the level, the mode and its conditional standard deviation (null when not reported)."""

    grp: str
    term: str
    level: str
    condval: float
    condsd: float | None


@dataclass
class CoefTestRow:
    """One fixed effect's test, as a row of a coefficient table: lmerTest's t test with
    denominator degrees of freedom (``summary(m, ddf = ...)$coefficients``; ddf "Satterthwaite",
    "Kenward-Roger") or, for a GLMM, lme4's Wald z test (``summary(m)$coefficients``; ddf "Wald",
    df null, p from the normal distribution): the term, its SE (Kenward-Roger: pbkrtest's
    adjusted one), df, the p-value and the test statistic (t or z value; may be omitted)."""

    ddf: str
    term: str
    se: float | None
    df: float | None
    p: float | None
    statistic: float | None = None


@dataclass
class PredictionRow:
    """One prediction, as ``predict(m, newdata, re.form, allow.new.levels)`` gives it: on the
    data's row ``row`` (0-based) at ``re_form`` "NA" (population level) or "NULL" (conditional
    on every term); ``new_levels``: the row's grouping factors set to a level unseen in fitting
    (allow.new.levels = TRUE); ``grid``: ``row`` is a row of the catalog's prediction grid
    (predicted with allow.new.levels = TRUE) instead of the data's; ``type``: "link" (the linear
    predictor; an LMM's only scale) or "response" (a GLMM's inverse link of it). A row field
    with a default may be omitted (rows written before it existed)."""

    re_form: str
    row: int
    new_levels: bool
    value: float | None
    grid: bool = False
    type: str = "link"


@dataclass
class ConfintRow:
    """One confidence interval, as a row of ``confint(m, method, oldNames = FALSE)``: the method
    ("Wald", "profile"), the parameter by lme4's name (``sd_(Intercept)|Subject``, ``sigma``, a
    fixed effect) and the 2.5 % and 97.5 % limits."""

    method: str
    parm: str
    lower: float | None
    upper: float | None


@dataclass
class AnovaRow:
    """One row of lme4's ``anova(m0, m1)``, m0 the catalog's partner model (its ``anova:``
    entry) and m1 the case's, both fitted as the case (REML fits refitted with ML by anova):
    the row's model ("m0", "m1", in lme4's order by npar), npar, AIC, BIC, logLik, deviance, and
    for the second row the test's Chisq, Df and Pr(>Chisq) (null in the first)."""

    model: str
    npar: int
    AIC: float | None
    BIC: float | None
    logLik: float | None
    deviance: float | None
    Chisq: float | None
    Df: int
    p: float | None


@dataclass
class AnovaTermRow:
    """One term's F test in lmerTest's ``anova(m, type=, ddf=)`` of one fit: the method
    ("Satterthwaite", "Kenward-Roger", or "lme4" for lme4's own ``anova(m)``), the type ("1",
    "2", "3"; "" for lme4's), the term, Sum Sq, Mean Sq, NumDF (lme4's npar), DenDF, F value and
    Pr(>F) (DenDF and p null in lme4's table)."""

    ddf: str
    type: str
    term: str
    SumSq: float | None
    MeanSq: float | None
    NumDF: float | None
    DenDF: float | None
    F: float | None
    p: float | None


@dataclass
class FitRecord:
    """One implementation's answer to one case: the fields every adapter returns (as a plain
    mapping, ``asdict``), every comparison reads, and the R side writes (r_scripts/
    lmer_record.R, validated against record.schema.json, which :func:`json_schema` writes)."""

    impl: str = _f("implementation name (lme4, lme4-recorded, mixedref, statsmodels, user's)", "")
    case_id: str = _f("catalog case id, dataset-spec-REML|ML", "")
    fixef: dict[str, float] = _f("mapping R column name -> estimate", factory=dict)
    fixef_se: dict[str, float] = _f("mapping R column name -> standard error", factory=dict)
    sigma: float | None = _f("residual standard deviation")
    varcorr: list[VarCorrRow] = _f("rows {grp, var1, var2, vcov, sdcor} as R's "
                                   "as.data.frame(VarCorr(m))", factory=list)
    theta: list[float] | None = _f("relative covariance factor in lme4's order, or null")
    loglik: float | None = _f("log-likelihood (REML log-likelihood for REML fits), as logLik(m)")
    objective: float | None = _f("optimized criterion: deviance (ML) or REML criterion, as "
                                 "m@devcomp$cmp")
    REML: bool | None = _f("true for REML fits")
    nobs: int | None = _f("number of observations used")
    ngroups: dict[str, int] = _f("mapping grouping factor -> number of levels", factory=dict)
    converged: bool | None = _f("optimizer reported convergence (and no convergence warning)")
    singular: bool | None = _f("estimate on the boundary (as lme4's isSingular, tol 1e-4)")
    messages: list[str] = _f("warnings and messages, verbatim", factory=list)
    seconds: float | None = _f("wall time of the fit alone")
    nfev: int | None = _f("objective evaluations")
    versions: dict[str, str] = _f("mapping component -> version string", factory=dict)
    error: str | None = _f("null, or the error text when the fit failed")
    optinfo: dict[str, Any] | None = _f("the fit log: optimizer, settings, start, evaluations, "
                                        "return code and its meaning, gradient checks")
    family: str | None = _f("GLMM family as R names it (binomial, poisson, Gamma, "
                            "inverse.gaussian); null for a linear mixed model")
    link: str | None = _f("the GLMM's link function as R names it; null for an LMM")
    nAGQ: int | None = _f("GLMM: quadrature points (1 Laplace, > 1 adaptive Gauss-Hermite)")
    deviance: float | None = _f("GLMM: deviance(m), the sum of squared deviance residuals at "
                                "the conditional modes (objective is -2 logLik)")
    fixef_se_rx: dict[str, float] | None = _f(
        "GLMM: standard errors from the RX factor (lme4's vcov(m, use.hessian = FALSE)); "
        "fixef_se is then the Hessian-based default of vcov(m)")
    ranef: list[RanefRow] | None = _f(
        "conditional modes and their conditional standard deviations, rows {grp, term, "
        "level, condval, condsd} as R's as.data.frame(ranef(m, condVar = TRUE)); null when "
        "not reported")
    predictions: list[PredictionRow] | None = _f(
        "predict(m, newdata) on the data's first 10 rows at re.form NA and NULL, on "
        "the first row at new grouping levels, and on the catalog's prediction grid (grid "
        "true), rows {re_form, row, new_levels, value, grid, type}; GLMMs at type link and "
        "response; null when not reported")
    confint: list[ConfintRow] | None = _f(
        "95% intervals, rows {method, parm, lower, upper} as confint(m, oldNames = FALSE):"
        " Wald (fixed effects) always, profile for LMM cases tagged intervals; null when none")
    coef_tests: list[CoefTestRow] | None = _f(
        "coefficient tests, rows {ddf, term, se, df, p, statistic}: LMMs lmerTest's for ddf "
        "Satterthwaite and Kenward-Roger (pbkrtest's adjusted SE), GLMMs lme4's Wald z tests "
        "(ddf Wald, df null); null when not computed")
    anova: list[AnovaRow] | None = _f(
        "cases with a catalog partner model: anova(m0, m1) against it, rows {model, npar, AIC, "
        "BIC, logLik, deviance, Chisq, Df, p}; null when the case has no partner")
    extra: dict[str, Any] | None = _f(
        "plugins' quantities: mapping quantity name -> its value (any JSON), written by a "
        "plugin's implementation or recording and read by its comparator (harness/core/comparators/"
        "base.py: extra_value); the harness checks only that it is JSON", factory=dict)
    anova_terms: list[AnovaTermRow] | None = _f(
        "LMMs: F tests of the model's terms, rows {ddf, type, term, SumSq, MeanSq, NumDF, "
        "DenDF, F, p} of lmerTest's anova(m, type, ddf) (Satterthwaite types 1-3, "
        "Kenward-Roger type 3) and lme4's anova(m) (ddf lme4); null when not computed")
    nb_theta: float | None = _f(
        "negative binomial GLMMs: the estimated dispersion θ (variance μ + μ²/θ), as lme4's "
        "getME(m, \"glmer.nb.theta\") and glmmTMB's sigma(m) for nbinom2; null otherwise")


# field -> short meaning; the order is the order records are written in
FIELDS: dict[str, str] = {f.name: f.metadata["meaning"] for f in fields(FitRecord)}

NUMERIC_SCALARS = ("sigma", "loglik", "objective", "deviance", "nb_theta")

#: the container fields' shapes: checked first, so a malformed record fails with one line
_SHAPES = (("fixef", Mapping, "a mapping of R column name to estimate"),
           ("fixef_se", Mapping, "a mapping of R column name to standard error"),
           ("fixef_se_rx", Mapping, "a mapping of R column name to standard error"),
           ("varcorr", list, "a list of rows {grp, var1, var2, vcov, sdcor}"),
           ("theta", list | tuple, "a list of numbers"),
           ("ranef", list, "a list of rows {grp, term, level, condval, condsd}"),
           ("coef_tests", list, "a list of rows {ddf, term, se, df, p, statistic}"),
           ("predictions", list, "a list of rows {re_form, row, new_levels, value, grid, "
                                 "type}"),
           ("confint", list, "a list of rows {method, parm, lower, upper}"),
           ("anova", list, "a list of rows {model, npar, AIC, BIC, logLik, deviance, Chisq, "
                           "Df, p}"),
           ("anova_terms", list, "a list of rows {ddf, type, term, SumSq, MeanSq, NumDF, "
                                 "DenDF, F, p}"),
           ("ngroups", Mapping, "a mapping of grouping factor to number of levels"),
           ("messages", list | tuple, "a list of strings"),
           ("versions", Mapping, "a mapping of component to version"),
           ("extra", Mapping, "a mapping of plugin quantity name to its value"))


class MalformedRecord(ValueError):
    """A fit returned something that is not a FitRecord's shape: the message names the field."""


def empty_record(impl: str, case_id: str, *, REML: bool | None = None) -> dict[str, Any]:
    """A record with every field present and nothing estimated (the shape of a failed fit)."""
    return asdict(FitRecord(impl=impl, case_id=case_id, REML=REML))


def varcorr_rows(terms: Sequence[tuple[str, Sequence[str], Any]],
                 sigma: float) -> list[dict[str, Any]]:
    """The varcorr rows of a fit, as lme4 lists them: per term (group name as lme4 prints it,
    its columns, its covariance matrix) the variances, then the covariances of the lower
    triangle in column-major order, then the residual. Built by mixedref's one builder
    (mixedref.models.basefit.varcorr_rows), as record values (names as text, NaN as null)."""
    from mixedref.models.basefit import varcorr_rows as build

    return [asdict(VarCorrRow(str(r["grp"]), None if r["var1"] is None else str(r["var1"]),
                              None if r["var2"] is None else str(r["var2"]), r["vcov"],
                              None if r["sdcor"] != r["sdcor"] else r["sdcor"]))
            for r in build(terms, sigma)]


def ranef_rows(modes: Mapping[str, Any], sds: Mapping[str, Any] | None = None
               ) -> list[dict[str, Any]]:
    """The ranef rows of a fit, as R's as.data.frame(ranef(m, condVar = TRUE)) orders them
    (by grouping factor, then term, then level) from per-factor tables of modes and of
    conditional SDs (pandas DataFrames: levels x term columns). The one builder of these rows."""
    rows: list[dict[str, Any]] = []
    for grp, table in modes.items():
        sd_table = None if sds is None else sds.get(grp)
        for term in table.columns:
            for level, value in table[term].items():
                sd = None if sd_table is None else float(sd_table.at[level, term])
                rows.append(asdict(RanefRow(str(grp), str(term), str(level), float(value), sd)))
    return rows


def _has_default(f: Any) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


_JSON_TYPES = {str: "string", float: "number", int: "integer", bool: "boolean",
               type(None): "null"}


def _schema_of(tp: Any) -> dict[str, Any]:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (UnionType, Union):
        parts = [_schema_of(a) for a in args]
        if all(set(p) == {"type"} for p in parts):
            return {"type": [p["type"] for p in parts]}
        return {"anyOf": parts}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema_of(args[1])}
    if origin is list:
        return {"type": "array", "items": _schema_of(args[0])}
    if tp is Any:
        return {}
    if is_dataclass(tp):
        hints = get_type_hints(tp)
        # a row's field with a default may be omitted (rows recorded before it existed); the
        # record's own fields are all required
        required = [f.name for f in fields(tp) if tp is FitRecord or not _has_default(f)]
        return {"type": "object", "required": required,
                "additionalProperties": False,
                "properties": {f.name: _schema_of(hints[f.name]) for f in fields(tp)}}
    return {"type": _JSON_TYPES[tp]}


def json_schema() -> dict[str, Any]:
    """The FitRecord's JSON Schema, written from the dataclass (record.schema.json holds it;
    regenerate with ``python -m harness.core.record``), with the implementation protocol that
    candidates' records answer (``x-implementation-protocol``: the call, its keywords and the
    fields each model kind must report)."""
    schema = _schema_of(FitRecord)
    hints = get_type_hints(FitRecord)
    for f in fields(FitRecord):
        schema["properties"][f.name]["description"] = f.metadata["meaning"]
    assert set(hints) == set(schema["properties"])
    from harness.core import protocol

    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"mixedref-harness/fit-record/{SCHEMA_VERSION}",
            "title": "FitRecord", "version": SCHEMA_VERSION,
            "x-implementation-protocol": protocol.describe(), **schema}


def validate(record: Mapping[str, Any], schema: Mapping[str, Any] | None = None) -> list[str]:
    """What in ``record`` does not follow the schema (the subset it uses: type, properties,
    required, additionalProperties, items, anyOf), one line each; empty when it does. The R
    side's validate_record (r_scripts/record_schema.R) checks the same rules."""
    schema = schema or json.loads(SCHEMA_PATH.read_text())
    return _check(record, schema, "record")


def _check(value: Any, schema: Mapping[str, Any], where: str) -> list[str]:
    if "anyOf" in schema:
        if any(not _check(value, s, where) for s in schema["anyOf"]):
            return []
        return [f"{where}: matches none of its allowed shapes"]
    want = schema.get("type")
    if want is not None:
        kinds = want if isinstance(want, list) else [want]
        if not any(_is(value, k) for k in kinds):
            return [f"{where}: expected {' or '.join(kinds)}, got {type(value).__name__}"]
    out: list[str] = []
    if isinstance(value, Mapping):
        props = schema.get("properties", {})
        out += [f"{where}: missing field {k!r}" for k in schema.get("required", [])
                if k not in value]
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                out += _check(v, props[k], f"{where}.{k}")
            elif extra is False:
                out.append(f"{where}: unknown field {k!r}")
            elif isinstance(extra, Mapping):
                out += _check(v, extra, f"{where}[{k!r}]")
    elif isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            out += _check(v, schema["items"], f"{where}[{i}]")
    return out


def _is(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, Mapping)
    if kind == "array":
        return isinstance(value, list)
    return False


def failed_record(impl: str, case_id: str, error: str, *, REML: bool | None = None,
                  seconds: float | None = None) -> dict[str, Any]:
    """The record of a fit that raised, timed out or returned nonsense: it still exists."""
    rec = empty_record(impl, case_id, REML=REML)
    rec["error"] = error
    rec["seconds"] = seconds
    return rec


def normalize_record(raw: Mapping[str, Any], impl: str, case_id: str) -> dict[str, Any]:
    """Complete a partial mapping (a user's implementation may return only some fields) into a
    record, converting numbers to plain floats and NaN/inf to errors named by field."""
    rec = empty_record(impl, case_id)
    if not isinstance(raw, Mapping):
        raise MalformedRecord(f"the fit returned a {type(raw).__name__}, not a mapping of the "
                              "record's fields")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise MalformedRecord(f"record has unknown fields {unknown}; known fields: "
                              f"{list(FIELDS)}")
    for key, kind, what in _SHAPES:
        value = raw.get(key)
        if value is not None and not isinstance(value, kind):
            raise MalformedRecord(f"record field {key!r} is a {type(value).__name__}, expected "
                                  f"{what}")
    rec.update({k: v for k, v in raw.items() if v is not None or k == "error"})
    rec["impl"], rec["case_id"] = impl, case_id
    problems: list[str] = []
    for key in NUMERIC_SCALARS:
        rec[key] = _number(rec[key], key, problems)
    for key in ("fixef", "fixef_se", "fixef_se_rx"):
        if rec[key] is not None:
            rec[key] = {str(k): _number(v, f"{key}[{k}]", problems)
                        for k, v in dict(rec[key]).items()}
    rows = []
    for i, row in enumerate(rec["varcorr"] or []):
        if not isinstance(row, Mapping):
            problems.append(f"varcorr[{i}] is a {type(row).__name__}, not a mapping")
            continue
        row = {k: row.get(k) for k in ("grp", "var1", "var2", "vcov", "sdcor")}
        if row["var2"] is not None and _is_nan(row["sdcor"]):
            row["sdcor"] = None  # lme4's NaN: the correlation of a zero standard deviation
        for col in ("vcov", "sdcor"):
            row[col] = _number(row.get(col), f"varcorr[{i}].{col}", problems)
        for col in ("var1", "var2"):
            v = row.get(col)
            row[col] = None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
        row["grp"] = str(row.get("grp"))
        rows.append(row)
    rec["varcorr"] = rows
    for key, cls in ROW_FIELDS.items():
        if rec[key] is not None:
            rec[key] = _typed_rows(key, rec[key], cls, problems)
    if rec["theta"] is not None:
        rec["theta"] = [_number(v, f"theta[{i}]", problems) for i, v in enumerate(rec["theta"])]
    rec["messages"] = [str(m) for m in (rec["messages"] or [])]
    rec["ngroups"] = {str(k): int(v) for k, v in dict(rec["ngroups"] or {}).items()}
    rec["extra"] = _plain_json(rec["extra"] or {}, problems)
    if problems and rec["error"] is None:
        rec["error"] = "non-finite values returned: " + ", ".join(problems)
    return rec


#: the record's list-of-rows fields beyond varcorr, each with the dataclass of its rows
ROW_FIELDS: dict[str, type] = {"ranef": RanefRow, "predictions": PredictionRow,
                               "confint": ConfintRow, "coef_tests": CoefTestRow,
                               "anova": AnovaRow, "anova_terms": AnovaTermRow}


def _typed_rows(key: str, raw: Sequence[Any], cls: type, problems: list[str]
                ) -> list[dict[str, Any]]:
    """The rows of a list field as plain values by the row dataclass's types: text, integers
    (missing: 0), booleans, and numbers (non-finite ones named in ``problems``, as the scalars);
    a field with a default that the row omits takes its default; a row that is not a mapping
    is named."""
    hints = get_type_hints(cls)
    rows = []
    for i, row in enumerate(raw):
        if not isinstance(row, Mapping):
            problems.append(f"{key}[{i}] is a {type(row).__name__}, not a mapping")
            continue
        out: dict[str, Any] = {}
        for f in fields(cls):
            v, tp = row.get(f.name), hints[f.name]
            if f.name not in row and f.default is not MISSING:
                out[f.name] = f.default
            elif tp is str:
                out[f.name] = str(v)
            elif tp is int:
                out[f.name] = int(v or 0)
            elif tp is bool:
                out[f.name] = bool(v)
            else:  # float or float | None
                out[f.name] = _number(v, f"{key}[{i}].{f.name}", problems)
        rows.append(out)
    return rows


def _plain_json(extra: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """The plugin quantities as plain JSON values (numpy scalars and arrays as numbers and
    lists), checked loosely: text names, values JSON can write; a non-finite number or a value
    that is not JSON is named in ``problems`` and left out."""
    def plain(value: Any) -> Any:
        if hasattr(value, "tolist"):  # numpy scalars and arrays
            return value.tolist()
        raise TypeError(f"{type(value).__name__} is not JSON")

    out: dict[str, Any] = {}
    for name, value in extra.items():
        if not isinstance(name, str):
            problems.append(f"extra[{name!r}] (a quantity's name must be text)")
            continue
        try:
            out[name] = json.loads(json.dumps(value, default=plain, allow_nan=False))
        except (TypeError, ValueError) as exc:
            problems.append(f"extra[{name!r}]={value!r} ({exc})")
    return out


def _is_nan(value: Any) -> bool:
    try:
        return value is not None and math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _number(value: Any, name: str, problems: list[str]) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        problems.append(f"{name}={value!r} (not a number)")
        return None
    if not math.isfinite(x):
        problems.append(f"{name}={x}")
        return None
    return x


if __name__ == "__main__":  # python -m harness.core.record: rewrite record.schema.json
    SCHEMA_PATH.write_text(json.dumps(json_schema(), indent=2) + "\n")
    print(f"wrote {SCHEMA_PATH}")
