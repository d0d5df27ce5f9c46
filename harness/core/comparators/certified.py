"""Certified cases: every quantity judged against the exact truth by log relative error.

The reference record is the truth (harness.adapters.certified.CertifiedTruth); its
``optinfo["certified"]`` holds the limit of the input (``input``) and NIST's certified values
(``nist``) by quantity. Rows ``certified[<q>]`` judge the candidate against the limit of the
input, rows ``nist[<q>]`` against NIST (q: ``fixef (Intercept)``, ``var Residual`` (σ²),
``var Treatment``, ``criterion``), with the allowances of harness.core.tolerance (CERTIFIED_LRE);
each row's note gives the LRE reached and the LRE needed. The other comparators do not run on
certified cases: the truth has nothing else to say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from harness.core.comparators.base import Record, Row
from harness.core.tolerance import CERTIFIED_LRE, LRE_CAP, Tolerance, log_relative_error


def candidate_quantities(record: Record) -> dict[str, float | None]:
    """The candidate's intercept, σ², var(Treatment) and criterion (None: not reported)."""
    rows = record.get("varcorr") or []
    var = {(r.get("grp"), r.get("var1")): r.get("vcov") for r in rows}
    sigma2 = var.get(("Residual", None))
    if sigma2 is None and record.get("sigma") is not None:
        sigma2 = record["sigma"] ** 2
    return {"fixef (Intercept)": (record.get("fixef") or {}).get("(Intercept)"),
            "var Residual": sigma2, "var Treatment": var.get(("Treatment", "(Intercept)")),
            "criterion": record.get("objective")}


def allowed(quantity: str, truth: float, reference: Record, tol: Tolerance) -> float:
    """The allowed |x - truth| of a quantity (harness.core.tolerance, CERTIFIED_LRE says why)."""
    floor = abs(truth) * 10.0 ** -LRE_CAP
    if quantity.startswith("fixef "):
        se = (reference.get("fixef_se") or {}).get(quantity[len("fixef "):]) or 0.0
        return max(tol.fixef_se_units * se, floor)
    if quantity.startswith("var ") and truth == 0:
        return tol.var_abs_sigma2 * float(reference.get("sigma") or 0.0) ** 2
    lre = CERTIFIED_LRE["var" if quantity.startswith("var ") else quantity]
    return max(abs(truth) * 10.0 ** -lre, floor)


def _required(truth: float, allow: float) -> str:
    if truth == 0:
        return f"|x| <= {allow:.3g}"
    return f"needs {-math.log10(allow / abs(truth)):.1f}"


class CertifiedLRE:
    name = "certified"
    quantities = ("certified", "nist")
    reason = ("the exact truth, not lme4: log relative error per quantity against the limit of "
              "the float64 input (and against NIST's values, allowing the input's own distance "
              "from them), the digits the agreement policy asks of two correct fits")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        truth: Mapping[str, Any] = (reference.get("optinfo") or {}).get("certified") or {}
        if not truth:
            return []
        cand = candidate_quantities(candidate)
        out = []
        for q, exact in truth["input"].items():
            x = cand.get(q)
            allow = allowed(q, exact, reference, tol)
            out.append(_row(f"certified[{q}]", exact, x, allow))
            nist = truth["nist"].get(q)
            if nist is not None:
                out.append(_row(f"nist[{q}]", nist, x, allow + abs(exact - nist)))
        return out


def _row(name: str, truth: float, x: float | None, allow: float) -> Row:
    if x is None:
        return Row(name, truth, None, None, allow, None, "not reported")
    diff = x - truth
    ok = bool(math.isfinite(diff) and abs(diff) <= allow)
    return Row(name, truth, x, diff, allow, ok,
               f"LRE {log_relative_error(x, truth):.1f}, {_required(truth, allow)}")
