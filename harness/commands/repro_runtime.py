"""What a standalone reproducer (``python -m harness repro``, harness/commands/repro.py) runs
besides the
package's own call: read the case's data back as the harness fitted it, state the package's
answer in lme4's quantities, and print it next to lme4's.

Every function here imports only the standard library, numpy and pandas, because
harness/commands/repro.py copies their source text into the script that runs where neither the
harness
nor mixedref is installed (tests/test_repro.py checks the imports)."""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import numpy as np
import pandas as pd


def read_frame(path: Any, columns: dict[str, Any]) -> Any:
    """The CSV beside the script as the harness's DataFrame: ``columns`` gives each column's
    dtype (``float64``, ``int64``, ``bool``, ``object``) or, for a factor, its levels in order
    and whether it is ordered (the labels are read as text and matched to the levels)."""
    text_cols = [c for c, spec in columns.items() if isinstance(spec, dict)
                 or spec in ("object", "str")]
    frame = pd.read_csv(path, dtype={c: str for c in text_cols}, keep_default_na=False,
                        na_values={c: [""] for c in columns if c not in text_cols})
    for col, spec in columns.items():
        if isinstance(spec, dict):
            by_label = {str(level): level for level in spec["levels"]}
            values = [by_label[v] for v in frame[col]]
            frame[col] = pd.Categorical(values, categories=spec["levels"],
                                        ordered=spec["ordered"])
        elif spec not in ("object", "str"):
            frame[col] = frame[col].astype(spec)
    return frame[list(columns)]


def unpack_vech(packed: Any, q: int) -> Any:
    """A symmetric q x q matrix from its column-major lower triangle."""
    cov, k = np.zeros((q, q)), 0
    for j in range(q):
        for i in range(j, q):
            cov[i, j] = cov[j, i] = float(packed[k])
            k += 1
    return cov


def pick_block(blocks: dict[str, Any], group: str, columns: list[str]) -> Any:
    """The covariance of lme4's term (``group``, ``columns``) out of a package's per-group
    blocks (its group name -> (column names, covariance)); ``a:b`` is ``b:a``; a name's
    surrounding spaces (a second term of one factor, kept apart) do not count."""
    for grp, (cols, cov) in blocks.items():
        if sorted(p.strip() for p in grp.split(":")) == sorted(group.split(":")) \
                and all(c in cols for c in columns):
            idx = [cols.index(c) for c in columns]
            return np.asarray(cov, dtype=float)[np.ix_(idx, idx)]
    raise RuntimeError(f"no variance components for lme4's term {group} {columns} among "
                       f"{ {g: c for g, (c, _) in blocks.items()} }")


def varcorr_rows(terms: list[Any], sigma: Any) -> list[dict[str, Any]]:
    """lme4's as.data.frame(VarCorr(m)) rows from (group name, columns, covariance) per term:
    variances, then covariances (lower triangle, column-major) with correlations, then the
    residual row unless ``sigma`` is None."""
    rows = []
    for grp, cols, cov in terms:
        V = np.atleast_2d(np.asarray(cov, dtype=float))
        sd = np.sqrt(np.clip(np.diag(V), 0.0, None))
        rows += [{"grp": grp, "var1": c, "var2": None, "vcov": float(V[i, i]),
                  "sdcor": float(sd[i])} for i, c in enumerate(cols)]
        for j in range(len(cols)):
            for i in range(j + 1, len(cols)):
                denom = sd[i] * sd[j]
                rows.append({"grp": grp, "var1": cols[j], "var2": cols[i],
                             "vcov": float(V[i, j]),
                             "sdcor": float(V[i, j] / denom) if denom > 0 else float("nan")})
    if sigma is not None:
        rows.append({"grp": "Residual", "var1": None, "var2": None, "vcov": float(sigma) ** 2,
                     "sdcor": float(sigma)})
    return rows


def quantities(est: dict[str, Any]) -> dict[str, Any]:
    """A fit's compared quantities by the harness's row names: fixef[x], fixef_se[x],
    fixef_se_rx[x] (a GLMM's RX-based SE, lme4's ``vcov(m, use.hessian = FALSE)``), sigma,
    var[g,x], cov[g,x,y], corr[g,x,y], var[Residual], loglik, objective, and from its t tests
    df_satterthwaite[x], df_kr[x], se_kr[x]."""
    out: dict[str, Any] = {}
    out.update({f"fixef[{k}]": v for k, v in (est.get("fixef") or {}).items()})
    out.update({f"fixef_se[{k}]": v for k, v in (est.get("fixef_se") or {}).items()})
    out.update({f"fixef_se_rx[{k}]": v for k, v in (est.get("fixef_se_rx") or {}).items()})
    out["sigma"] = est.get("sigma")
    for r in est.get("varcorr") or []:
        if r["grp"] == "Residual":
            out["var[Residual]"] = r["vcov"]
        elif r.get("var2") is None:
            out[f"var[{r['grp']},{r['var1']}]"] = r["vcov"]
        else:
            key = f"{r['grp']},{r['var1']},{r['var2']}"
            out[f"cov[{key}]"] = r["vcov"]
            out[f"corr[{key}]"] = r["sdcor"]
    out["loglik"] = est.get("loglik")
    out["objective"] = est.get("objective")
    short = {"Satterthwaite": "satterthwaite", "Kenward-Roger": "kr"}
    for r in est.get("coef_tests") or []:
        key = short.get(r.get("ddf"), str(r.get("ddf")))
        out[f"df_{key}[{r['term']}]"] = r.get("df")
        if key == "kr":
            out[f"se_kr[{r['term']}]"] = r.get("se")
    return out


def certified_differences(est: dict[str, Any], truth: dict[str, Any] | None
                          ) -> dict[str, float]:
    """A certified case's rows as the harness names them, the fit's value minus the truth:
    ``certified[q]`` against the limit of the float64 input, ``nist[q]`` against NIST's
    values, q one of ``fixef (Intercept)``, ``var Residual``, ``var Treatment``,
    ``criterion``."""
    if not truth:
        return {}
    var = {(r["grp"], r["var1"]): r["vcov"] for r in est.get("varcorr") or []}
    sigma = est.get("sigma")
    mine = {"fixef (Intercept)": (est.get("fixef") or {}).get("(Intercept)"),
            "var Residual": var.get(("Residual", None),
                                    None if sigma is None else sigma ** 2),
            "var Treatment": var.get(("Treatment", "(Intercept)")),
            "criterion": est.get("objective")}
    out = {}
    for prefix, key in (("certified", "input"), ("nist", "nist")):
        for q, exact in (truth.get(key) or {}).items():
            if isinstance(mine.get(q), float | int):
                out[f"{prefix}[{q}]"] = mine[q] - exact
    return out


def _matches(pattern: str, name: str) -> bool:
    """The registry's quantity pattern: only ``*`` and ``?`` are wildcards."""
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


def _truth(truth: dict[str, Any], name: str) -> Any:
    """The truth of the row ``certified[q]`` or ``nist[q]``."""
    prefix, _, q = name.partition("[")
    return truth["input" if prefix == "certified" else "nist"].get(q[:-1])


def _num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return f"{x:.10g}"


def report(est: dict[str, Any], info: dict[str, Any]) -> list[str]:
    """The lines the script prints: each quantity, the package's value next to lme4's and the
    difference; the best known criterion; the disagreements the harness registered or
    measured, each with its size now."""
    mine, ref = quantities(est), quantities(info["lme4"])
    lines = [f"{info['impl']} {info.get('version') or ''} on {info['case']}: "
             f"{info['formula']} ({'REML' if info['REML'] else 'ML'})".replace("  ", " "), "",
             "(BLAS threads: OPENBLAS_NUM_THREADS="
             f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; an ill-conditioned fit can "
             "end elsewhere with another count)", "",
             f"{'quantity':<34} {info['impl']:>18} {'lme4':>18} {'difference':>12}"]
    named = [d["quantity"] for d in info.get("disagrees") or []]
    for name in list(dict.fromkeys([*ref, *mine])):
        a, b = mine.get(name), ref.get(name)
        diff = a - b if isinstance(a, float | int) and isinstance(b, float | int) else None
        mark = "  <-- disagrees" if any(_matches(p, name) for p in named) else ""
        lines.append(f"{name:<34} {_num(a):>18} {_num(b):>18} {_num(diff):>12}{mark}")
    best = info.get("best_known")
    if best:
        lines += ["", f"best known {best['criterion']} (lme4's objective, over lme4, its allFit "
                  f"optimizers, glmmTMB and mixedref): {best['objective']:.10g} "
                  f"(from {best['source']}); {info['impl']} reports {_num(est.get('objective'))}"]
    const, obj = info.get("saturated"), est.get("objective")
    if const is not None and isinstance(obj, float | int):
        lines += ["", f"lme4's nAGQ > 1 criterion leaves out the saturated model's -2 "
                  f"log-likelihood {const:.10g} (a constant of the response), which the full "
                  f"-2 log-likelihood has: {info['impl']}'s objective minus it is "
                  f"{obj - const:.10g} (minus lme4's: "
                  f"{obj - const - info['lme4']['objective']:+.4g}); the harness compares on "
                  "that scale when the package reports the full one"]
    lines += ["", "What disagrees (the harness's measurement; the sizes are |"
              f"{info['impl']} - lme4|):"]
    truths = certified_differences(est, info.get("certified"))
    if truths:
        lines += ["", "The exact truth of this certified case (the sizes of its rows are |"
                  f"{info['impl']} - truth|): certified[q] is the limit of the float64 data, "
                  "nist[q] NIST's certified value"]
        lines += [f"  {n}: truth {_num(t)}, difference {v:+.4g}" for n, v in truths.items()
                  for t in [_truth(info["certified"], n)]]
    for d in info.get("disagrees") or []:
        now = [f"{n} {mine[n] - ref[n]:+.4g}" for n in ref
               if _matches(d["quantity"], n) and isinstance(mine.get(n), float | int)
               and isinstance(ref.get(n), float | int)]
        now += [f"{n} {v:+.4g}" for n, v in truths.items() if _matches(d["quantity"], n)]
        source = (f"finding {d['finding']}" if d.get("finding") else "measured when generated")
        lines.append(f"- {d['quantity']}: size {d['size']:.4g} ({d['direction']}; {source})"
                     + (f"; this run: {', '.join(now)}" if now else
                        " (a quantity this script does not compute)"))
    if not info.get("disagrees"):
        lines.append("- nothing outside the harness's tolerance when this script was generated")
    for d in info.get("causes") or []:
        lines += ["", f"Finding {d['finding']}: {d['cause']}"]
    return lines


def main(argv: list[str], estimates: Any, info: dict[str, Any], data_path: Any) -> int:
    """Fit, then print the comparison (``--json``: the package's answer in lme4's quantities as
    one JSON object instead)."""
    est = estimates(read_frame(data_path, info["columns"]))
    if "--json" in argv:
        print(json.dumps(est))
        return 0
    print("\n".join(report(est, info)))
    return 0
