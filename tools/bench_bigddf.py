"""Time mixedref's Satterthwaite and Kenward-Roger df on the large cases of
tests/references/ddf_large.json (r_scripts/bigddf_references.R) and print them beside
lmerTest's/pbkrtest's, with R's recorded seconds.

    python tools/bench_bigddf.py [REFERENCE.json ...] [--case ID]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import mixedref
from harness.core.datasets import load_dataset
from mixedref.inference.anova_terms import anova_terms

ROOT = Path(__file__).resolve().parents[1]
SEEDED = ROOT / "tests" / "references" / "bigddf_seeded.csv.gz"


def case_data(case: dict) -> pd.DataFrame:
    """The case's rows: the seeded design's first ``nrows``, or a catalog dataset."""
    if case["dataset"] != "bigddf_seeded":
        return load_dataset(case["dataset"])
    d = pd.read_csv(SEEDED).iloc[: case["nrows"]].copy()
    for v in ("trt", "g", "h"):
        d[v] = pd.Categorical(d[v], categories=sorted(d[v].unique()))
    return d


def frame(table: dict) -> pd.DataFrame:
    """A recorded R table (jsonlite unboxes one-row tables) as a DataFrame."""
    cols = {k: np.atleast_1d(v) for k, v in table["columns"].items()}
    return pd.DataFrame(cols, index=np.atleast_1d(table["rownames"]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("refs", nargs="*", default=[ROOT / "tests" / "references" / "ddf_large.json"])
    ap.add_argument("--case", action="append")
    args = ap.parse_args()
    for path in args.refs:
        for cid, case in json.loads(Path(path).read_text())["cases"].items():
            if args.case and cid not in args.case:
                continue
            data = case_data(case)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = mixedref.lmer(case["formula"], data, REML=case["REML"])
            t_fit = time.perf_counter() - t0
            print(f"== {cid}: n {fit.nobs}, engine {fit._objective.engine}, fit {t_fit:.2f} s "
                  f"(lme4 {case['seconds']['fit']:.2f} s, lmerTest's derivatives "
                  f"{case['seconds']['lmerTest_derivatives']:.2f} s)")
            for ddf in ("Satterthwaite", "Kenward-Roger"):
                if ddf not in case:
                    if ddf == "Kenward-Roger" and case["REML"]:
                        t0 = time.perf_counter()
                        ours = fit.coef_table(ddf=ddf)
                        print(f"  {ddf} (no R reference: pbkrtest's n x n): mixedref coef "
                              f"{time.perf_counter() - t0:.2f} s")
                        print(ours.to_string())
                    continue
                t0 = time.perf_counter()
                ours = fit.coef_table(ddf=ddf)
                t_coef = time.perf_counter() - t0
                t0 = time.perf_counter()
                aov = anova_terms(fit, type=3, ddf=ddf)
                t_aov = time.perf_counter() - t0
                ref = case[ddf]["coefficients"]
                refc = frame(ref)
                print(f"  {ddf}: mixedref coef {t_coef:.2f} s, anova {t_aov:.2f} s; R coef "
                      f"{case['seconds'][ddf + '_coefficients']:.2f} s, anova "
                      f"{case['seconds'][ddf + '_anova3']:.2f} s")
                for term in ours.index:
                    o, r = ours.loc[term], refc.loc[term]
                    print(f"    {term:12s} df {o['df']:12.6f} {r['df']:12.6f} "
                          f"({o['df'] / r['df'] - 1:+.1e})  se {o['Std. Error']:.6g} "
                          f"{r['Std. Error']:.6g}  t {o['t value']:9.4f} {r['t value']:9.4f}  "
                          f"p {o['Pr(>|t|)']:.4g} {r['Pr(>|t|)']:.4g}")
                ra = case[ddf]["anova3"]
                refa = frame(ra)
                for term in aov.index:
                    o, r = aov.loc[term], refa.loc[term]
                    print(f"    F[{term}] DenDF {o['DenDF']:.6f} {r['DenDF']:.6f}  F "
                          f"{o['F value']:.6f} {r['F value']:.6f}  p {o['Pr(>F)']:.4g} "
                          f"{r['Pr(>F)']:.4g}")


if __name__ == "__main__":
    main()
