"""The FitRecord: one JSON-serializable shape for every implementation's answer to a case.

Every adapter returns a record, every comparison and report reads one. Fields follow
../shared/DESIGN.md; R's names are kept (fixed effects by model.matrix column name, variance
components as the rows of ``as.data.frame(VarCorr(m))``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# field -> short meaning; the order is the order records are written in
FIELDS: dict[str, str] = {
    "impl": "implementation name (lme4, lme4-recorded, mixedref, statsmodels, user's)",
    "case_id": "catalog case id, dataset-spec-REML|ML",
    "fixef": "mapping R column name -> estimate",
    "fixef_se": "mapping R column name -> standard error",
    "sigma": "residual standard deviation",
    "varcorr": "list of {grp, var1, var2, vcov, sdcor} as R's as.data.frame(VarCorr(m))",
    "theta": "relative covariance factor in lme4's order, or null",
    "loglik": "log-likelihood (REML log-likelihood for REML fits), as logLik(m)",
    "objective": "optimized criterion: deviance (ML) or REML criterion, as m@devcomp$cmp",
    "REML": "true for REML fits",
    "nobs": "number of observations used",
    "ngroups": "mapping grouping factor -> number of levels",
    "converged": "optimizer reported convergence (and no convergence warning)",
    "singular": "estimate on the boundary (as lme4's isSingular, tol 1e-4)",
    "messages": "warnings and messages, verbatim",
    "seconds": "wall time of the fit alone",
    "nfev": "objective evaluations",
    "versions": "mapping component -> version string",
    "error": "null, or the error text when the fit failed",
}

NUMERIC_SCALARS = ("sigma", "loglik", "objective")


def empty_record(impl: str, case_id: str, *, REML: bool | None = None) -> dict[str, Any]:
    """A record with every field present and nothing estimated (the shape of a failed fit)."""
    return {
        "impl": impl,
        "case_id": case_id,
        "fixef": {},
        "fixef_se": {},
        "sigma": None,
        "varcorr": [],
        "theta": None,
        "loglik": None,
        "objective": None,
        "REML": REML,
        "nobs": None,
        "ngroups": {},
        "converged": None,
        "singular": None,
        "messages": [],
        "seconds": None,
        "nfev": None,
        "versions": {},
        "error": None,
    }


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
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ValueError(f"record has unknown fields {unknown}; known fields: {list(FIELDS)}")
    rec.update({k: v for k, v in raw.items() if v is not None or k == "error"})
    rec["impl"], rec["case_id"] = impl, case_id
    problems: list[str] = []
    for key in NUMERIC_SCALARS:
        rec[key] = _number(rec[key], key, problems)
    for key in ("fixef", "fixef_se"):
        rec[key] = {str(k): _number(v, f"{key}[{k}]", problems) for k, v in dict(rec[key]).items()}
    rows = []
    for i, row in enumerate(rec["varcorr"] or []):
        row = dict(row)
        for col in ("vcov", "sdcor"):
            row[col] = _number(row.get(col), f"varcorr[{i}].{col}", problems)
        for col in ("var1", "var2"):
            v = row.get(col)
            row[col] = None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
        row["grp"] = str(row.get("grp"))
        rows.append(row)
    rec["varcorr"] = rows
    if rec["theta"] is not None:
        rec["theta"] = [_number(v, f"theta[{i}]", problems) for i, v in enumerate(rec["theta"])]
    rec["messages"] = [str(m) for m in (rec["messages"] or [])]
    rec["ngroups"] = {str(k): int(v) for k, v in dict(rec["ngroups"] or {}).items()}
    if problems and rec["error"] is None:
        rec["error"] = "non-finite values returned: " + ", ".join(problems)
    return rec


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
