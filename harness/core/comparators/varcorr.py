"""Every row of ``as.data.frame(VarCorr(m))``: variances and covariances relative, with absolute
floors near zero (a singular fit sits on the boundary, where the criterion is flat), and
correlations absolute."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.core.comparators.base import Record, Row, missing, row
from harness.core.tolerance import Tolerance

Key = tuple[str, str | None, str | None]


def _key(r: Mapping[str, Any]) -> Key:
    return (str(r.get("grp")), r.get("var1"), r.get("var2"))


def _name(key: Key, what: str) -> str:
    return f"{what}[{','.join(p for p in key if p is not None)}]"


class VarianceComponents:
    name = "varcorr"
    quantities = ("var", "cov", "corr")
    reason = ("variances 2e-3 relative with a floor of 2.5e-5·σ² (boundary estimates), "
              "covariances likewise with a floor of 5e-3·sd1·sd2, correlations 5e-3 absolute: "
              "lme4's own optimizers stay within 6% of these on the catalog")

    def rows(self, reference: Record, candidate: Record, tol: Tolerance,
             notes: list[str]) -> list[Row]:
        ref_rows = {_key(r): r for r in reference.get("varcorr") or []}
        cand_rows = {_key(r): r for r in candidate.get("varcorr") or []}
        res = ref_rows.get(("Residual", None, None))
        sigma2 = res["vcov"] if res is not None and res.get("vcov") is not None else (
            reference["sigma"] ** 2 if reference.get("sigma") is not None else None)
        sd = {(k[0], k[1]): r.get("sdcor") for k, r in ref_rows.items() if k[2] is None}
        out: list[Row] = []
        for key, ref in ref_rows.items():
            cand = cand_rows.get(key)
            cand_vcov = None if cand is None else cand.get("vcov")
            ref_vcov = ref.get("vcov")
            if key[2] is None:  # a variance (or the residual variance)
                floor = tol.var_abs_sigma2 * sigma2 if sigma2 is not None else 0.0
                allowed = None if ref_vcov is None else max(tol.var_rel * abs(ref_vcov), floor)
                new = [row(_name(key, "var"), ref_vcov, cand_vcov, allowed)]
            else:  # a covariance, and its correlation
                sd1, sd2 = sd.get((key[0], key[1])), sd.get((key[0], key[2]))
                floor = tol.cov_abs_sd * sd1 * sd2 if sd1 is not None and sd2 is not None \
                    else 0.0
                allowed = None if ref_vcov is None else max(tol.var_rel * abs(ref_vcov), floor)
                new = [row(_name(key, "cov"), ref_vcov, cand_vcov, allowed)]
                if ref.get("sdcor") is not None:  # None: undefined (zero SDs), as lme4's NaN
                    new.append(row(_name(key, "corr"), ref["sdcor"],
                                   None if cand is None else cand.get("sdcor"), tol.corr_abs))
            new = [r for r in new if r is not None]
            if cand is None and cand_rows and new:
                missing(new[-1])
            out += new
        for key, cand in cand_rows.items():
            if key not in ref_rows:
                r = row(_name(key, "var" if key[2] is None else "cov"), None, cand.get("vcov"),
                        None)
                if r is not None:
                    out.append(r)
        return out
