"""The certified cases' truth as a reference: a record computed, not fitted.

A catalog case tagged ``certified`` on a NIST set (harness.generate.certified) is judged against the
:class:`CertifiedTruth` adapter instead of lme4: its record holds the exact closed-form answer
on the case's float64 input (the limit of the input) and, in ``optinfo["certified"]``, both
truths by quantity (``input`` and ``nist``), which the LRE comparator
(harness.core.comparators.certified) reads. lme4 is one more candidate there: a verdict on a
certified case never rests on lme4.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

from harness.adapters.base import Adapter
from harness.core.tolerance import log_relative_error
from harness.generate.certified import NIST_SETS, Truth, certified_truth, input_truth, read_nist

TAG = "certified"
IMPL = "certified"  # the truth's name in records, tables and reports
#: the quantities judged, as the comparator names its rows
QUANTITIES = ("fixef (Intercept)", "var Residual", "var Treatment", "criterion")


def is_certified(case: Any) -> bool:
    """True for a catalog case tagged ``certified`` on one of the NIST sets."""
    return TAG in (getattr(case, "tags", None) or ()) and getattr(case, "dataset", None) \
        in NIST_SETS


def _float(x: Fraction | Decimal) -> float:
    return float(x)


def _sqrt(x: Fraction) -> float:
    with localcontext() as ctx:
        ctx.prec = 40
        return float((Decimal(x.numerator) / Decimal(x.denominator)).sqrt())


def quantities(t: Truth) -> dict[str, float | None]:
    """A truth's judged quantities by row name, as the nearest doubles."""
    return {"fixef (Intercept)": None if t.intercept is None else _float(t.intercept),
            "var Residual": _float(t.sigma2), "var Treatment": _float(t.var_g),
            "criterion": _float(t.criterion)}


def truths(case: Any, data: Any) -> tuple[Truth, Truth]:
    """(limit of the input, NIST's certified) truth of a certified case on its data."""
    limit = input_truth(data["Treatment"], data["Response"], bool(case.REML))
    return limit, certified_truth(read_nist(case.dataset), bool(case.REML))


def truth_record(case: Any, data: Any) -> dict[str, Any]:
    """The record of the exact answer (the limit of the input) with both truths attached."""
    limit, nist = truths(case, data)
    k = data["Treatment"].nunique()
    N = len(data)
    lam = limit.sigma2 + (N // k) * limit.var_g  # σ² + n·var(g): Var of a group's mean · n
    crit = _float(limit.criterion)
    sigma = _sqrt(limit.sigma2)
    return {
        "fixef": {"(Intercept)": _float(limit.intercept)},
        "fixef_se": {"(Intercept)": _sqrt(lam / N)},
        "sigma": sigma,
        "varcorr": [{"grp": "Treatment", "var1": "(Intercept)", "var2": None,
                     "vcov": _float(limit.var_g), "sdcor": _sqrt(limit.var_g)},
                    {"grp": "Residual", "var1": None, "var2": None,
                     "vcov": _float(limit.sigma2), "sdcor": sigma}],
        "theta": [_sqrt(limit.var_g / limit.sigma2)],
        "objective": crit, "loglik": -crit / 2, "REML": bool(case.REML),
        "nobs": N, "ngroups": {"Treatment": int(k)},
        "converged": True, "singular": limit.boundary, "messages": [],
        "versions": {"harness.generate.certified": "closed forms, exact arithmetic"},
        "optinfo": {"certified": {
            "input": quantities(limit), "nist": quantities(nist),
            "boundary": limit.boundary,
            "source": (f"NIST StRD {case.dataset} (certified mean squares to 15 digits; the "
                       "intercept: the exact mean of NIST's decimal data); input: the closed "
                       "form computed exactly from the float64 data")}},
    }


class CertifiedTruth(Adapter):
    """The reference of a certified case: its exact answer, computed here (no fit, no R)."""

    name = IMPL
    runs_code = False
    is_truth = True  # harness.core.outcome.decide: judged by LRE against it, no judges

    def supports(self, case: Any) -> str | None:
        if not is_certified(case):
            return f"not a certified case (tag {TAG!r} on one of {', '.join(NIST_SETS)})"
        return None

    def fit(self, case: Any, data: Any) -> dict[str, Any]:
        return truth_record(case, data)


def certified_reference(case: Any) -> CertifiedTruth | None:
    """The reference of ``case`` when it is certified (its truth), else None (lme4 is)."""
    return CertifiedTruth() if is_certified(case) else None


def worst_lre(rows: Any, prefix: str = "certified[") -> float | None:
    """The smallest LRE among a comparison's rows named ``prefix``... (Row objects or their
    dicts; "certified[" against the limit of the input, "nist[" against NIST's values); None
    when there are none or a quantity was not reported (its LRE is then 0)."""
    values = []
    for r in rows or ():
        r = r if isinstance(r, dict) else vars(r)
        if str(r["name"]).startswith(prefix):
            x, c = r.get("candidate"), r.get("reference")
            values.append(0.0 if x is None or c is None else log_relative_error(x, c))
    return min(values) if values else None
