"""Distance of an estimate from a target: the truth of a simulated case, or lme4's answer.

A simulated dataset's generator knows its true parameters (harness.generate.simulate, stored under
``truth`` in harness/data/datasets.yaml). :func:`case_truth` gives them for a case only when the
case fits the model the data were generated from (same formula, family and link: the Gamma data
fitted with the inverse link have no truth). :func:`distances` is the one function that
measures how far an estimate is from a target, so the report and the league put each
implementation's distance from the truth next to its distance from lme4 in the same units:

- fixed effects in standard errors: (estimate - target) / SE, the SE being lme4's for both
  columns (one yardstick per coefficient);
- variances (every variance row of VarCorr, the residual's included) relative:
  (estimate - target) / target;
- correlations absolute: estimate - target;
- σ relative, where the model has a scale (LMMs, Gamma, inverse Gaussian; binomial and Poisson
  fix σ at 1, which is a convention, not an estimate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: the unit of each kind of quantity (what :func:`distances` divides by)
UNITS = {"fixef": "SE", "var": "relative", "corr": "absolute", "sigma": "relative"}


@dataclass(frozen=True)
class Distance:
    """One quantity: the target's value, the estimate's, and the distance in ``unit``."""

    quantity: str  # "fixef[x]", "var[g,(Intercept)]", "corr[g,(Intercept),x]", "sigma"
    target: float
    estimate: float | None
    distance: float | None  # None: the estimate lacks the quantity, or no yardstick (SE, 0)
    unit: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _normalize(formula: str | None) -> str:
    return "".join(str(formula or "").split())


def case_truth(case: Any) -> dict[str, Any] | None:
    """The true parameters (beta, sigma, varcorr) of a simulated case, or None: the dataset has
    no truth, or the case fits another model than the one its data were generated from
    (another formula, family or link)."""
    from harness.core.datasets import dataset_info

    try:
        info = dataset_info(case.dataset, getattr(case, "data_dirs", None) or None)
    except Exception:  # noqa: BLE001 - an unknown dataset has no truth
        return None
    tr = info.get("truth")
    if not tr or _normalize(info.get("formula")) != _normalize(case.formula):
        return None
    family = getattr(case, "family", None)
    if tr.get("family") != family:
        return None
    if family is not None and tr.get("link") != case.link_name:
        return None
    return tr


def _key(row: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    return (str(row.get("grp")), row.get("var1"), row.get("var2"))


def _name(key: tuple[str, str | None, str | None], what: str) -> str:
    return f"{what}[{','.join(p for p in key if p is not None)}]"


def _ratio(num: float, den: float | None) -> float | None:
    if den is None or den == 0 or not math.isfinite(den):
        return None
    return num / den


def distances(estimate: Mapping[str, Any], target: Mapping[str, Any],
              se: Mapping[str, float]) -> list[Distance]:
    """How far ``estimate`` (a FitRecord) is from ``target`` (a truth, or another record), per
    quantity the target has: fixed effects in units of ``se`` (lme4's SEs, by column), variances
    and σ relative, correlations absolute (the module docstring says why). ``target`` holds
    ``beta`` (a truth) or ``fixef`` (a record), ``varcorr`` and ``sigma``; σ is measured only
    where the target's varcorr has a "Residual" row (a model with a scale)."""
    out: list[Distance] = []
    target_beta = target.get("beta") if target.get("beta") is not None else target.get("fixef")
    est_beta = dict(estimate.get("fixef") or {})
    for col, t in dict(target_beta or {}).items():
        x = est_beta.get(col)
        d = None if x is None else _ratio(float(x) - float(t), se.get(col))
        out.append(Distance(f"fixef[{col}]", float(t), None if x is None else float(x), d, "SE"))
    est_rows = {_key(r): r for r in estimate.get("varcorr") or []}
    has_scale = False
    for row in target.get("varcorr") or []:
        key = _key(row)
        has_scale |= key == ("Residual", None, None)
        est = est_rows.get(key)
        if key[2] is None:
            t, what, unit = row.get("vcov"), "var", "relative"
            x = None if est is None else est.get("vcov")
        else:
            t, what, unit = row.get("sdcor"), "corr", "absolute"
            x = None if est is None else est.get("sdcor")
        if t is None:
            continue
        t = float(t)
        if x is None:
            d = None
        elif unit == "relative":
            d = _ratio(float(x) - t, abs(t))
        else:
            d = float(x) - t
        out.append(Distance(_name(key, what), t, None if x is None else float(x), d, unit))
    sigma_t, sigma_x = target.get("sigma"), estimate.get("sigma")
    if has_scale and sigma_t is not None:
        d = None if sigma_x is None else _ratio(float(sigma_x) - float(sigma_t), float(sigma_t))
        out.append(Distance("sigma", float(sigma_t), None if sigma_x is None else float(sigma_x),
                            d, "relative"))
    return out


def truth_table(case: Any, records: Mapping[str, Mapping[str, Any]],
                reference: str = "lme4") -> dict[str, Any] | None:
    """For a case with a truth: per implementation (``records``: impl -> record, lme4's among
    them under ``reference``) and quantity, the truth, the estimate, its distance from the truth
    and from lme4, in the units of :func:`distances` (SEs: lme4's). None without a truth."""
    tr = case_truth(case)
    if tr is None:
        return None
    ref = records.get(reference)
    se = dict((ref or {}).get("fixef_se") or {})
    rows: list[dict[str, Any]] = []
    for impl, rec in records.items():
        if rec is None or rec.get("error"):
            continue
        from_ref = {} if ref is None or impl == reference else {
            d.quantity: d for d in distances(rec, ref, se)}
        for d in distances(rec, tr, se):
            r = from_ref.get(d.quantity)
            rows.append({"impl": impl, "quantity": d.quantity, "truth": d.target,
                         "estimate": d.estimate, "from_truth": d.distance,
                         "from_lme4": 0.0 if impl == reference else (r.distance if r else None),
                         "unit": d.unit})
    return {"case": case.id, "truth": tr, "rows": rows}
