"""Time mixedref's rescue strategies and profile intervals against lme4 (issue 23), same run.

    python tools/bench_hard.py [--reps 3] [--rounds 1] [--only kb07 ...] [--no-profile]
                               [--baseline DIR]

Cases: the catalog's hard LMM cases, the two simulated shapes of tests/test_strategies.py
(badscale, corr_boundary), Oxboys' cubic growth curve (nlme's Oxboys, written by R) and, for
the profile, sleepstudy's correlated slopes. Each round runs lme4 (r_scripts/bench_hard.R, one
Rscript process, lmerControl()'s defaults) and then mixedref (a fresh Python process), both on
one BLAS thread, so both see the same machine load. A table gives per case: seconds (median of
``--reps`` fits), objective evaluations, the optimized criterion and the ratio to lme4's time;
the profile rows time ``confint(m, method="profile")`` on both sides and give the largest
difference of a limit in units of the harness's allowance (harness/core/tolerance.py ci_width_rel).
``--baseline DIR`` also times the mixedref of another source tree (e.g. ``git archive``
of an earlier commit unpacked in DIR) in each round, for before/after tables under one load.
A measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CORR3 = "y ~ x1 + x2 + (1 + x1 + x2 | g)"
OXBOYS = "height ~ age + age2 + age3 + (age + age2 + age3 | Subject)"
SLEEP = "Reaction ~ Days + (Days | Subject)"

#: name -> (catalog dataset or a generator key, formula, REML, kind)
CASES: dict[str, tuple[str, str, bool, str]] = {
    "kb07 maximal ML": ("sim_kb07_maximal", "", False, "catalog"),
    "badscale3 corr3 REML": ("sim_badscale3", CORR3, True, "catalog"),
    "corr3_boundary REML": ("sim_corr3_boundary", CORR3, True, "catalog"),
    "corr4 REML": ("sim_corr4", "y ~ x1 + x2 + x3 + (1 + x1 + x2 + x3 | g)", True, "catalog"),
    "corr4 ML": ("sim_corr4", "y ~ x1 + x2 + x3 + (1 + x1 + x2 + x3 | g)", False, "catalog"),
    "shape badscale REML": ("badscale", CORR3, True, "shape"),
    "shape corr_boundary REML": ("corr_boundary", CORR3, True, "shape"),
    "Oxboys cubic ML": ("oxboys", OXBOYS, False, "oxboys"),
    "Oxboys cubic REML": ("oxboys", OXBOYS, True, "oxboys"),
}
#: the profile cases: name -> (dataset, formula, REML)
PROFILES = {"sleepstudy slopes profile": ("sleepstudy", SLEEP, True)}

_CHILD = """
import json, statistics, sys, time, warnings
from threadpoolctl import threadpool_limits
import pandas as pd
import mixedref
from harness.core.datasets import load_dataset
threadpool_limits(1)
spec = json.load(open(sys.argv[1]))
mixedref.lmer("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))  # warm-up
for case in spec:
    data = load_dataset(case["dataset"]) if "dataset" in case else pd.read_csv(case["csv"])
    for col in case.get("factors", []):
        data[col] = pd.Categorical(data[col].astype(str))
    secs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(case["reps"]):
            t0 = time.perf_counter()
            fit = mixedref.lmer(case["formula"], data, REML=case["REML"])
            secs.append(time.perf_counter() - t0)
    log = fit.optinfo
    out = {"name": case["name"], "impl": "mixedref", "seconds": statistics.median(secs),
           "nfev": fit.nfev, "objective": fit.objective, "optimizer": log.optimizer,
           "rescue_nfev": sum(a["nfev"] for a in log.rescue), "winner": log.winner}
    if case.get("profile_reps"):
        psecs = []
        for _ in range(case["profile_reps"]):
            t0 = time.perf_counter()
            ci = fit.confint(method="profile")
            psecs.append(time.perf_counter() - t0)
        out["profile_seconds"] = statistics.median(psecs)
        out["confint"] = {"rownames": list(ci.index), "lower": ci.iloc[:, 0].tolist(),
                          "upper": ci.iloc[:, 1].tolist()}
    print(json.dumps(out), flush=True)
"""


def _write_data(kind: str, key: str, folder: Path) -> tuple[str, list[str]]:
    """A CSV of a simulated shape or of Oxboys (with age² and age³), and its factor columns."""
    path = folder / f"{key}.csv"
    if path.exists():
        return str(path), (["Subject"] if kind == "oxboys" else ["g"])
    if kind == "oxboys":
        raw = folder / "oxboys_raw.csv"
        subprocess.run(["Rscript", "-e", "d <- nlme::Oxboys; write.csv(data.frame("
                        "Subject = as.character(d$Subject), age = d$age, height = d$height), "
                        f"'{raw}', row.names = FALSE)"], check=True, capture_output=True)
        import pandas as pd

        d = pd.read_csv(raw)
        d.assign(age2=d["age"] ** 2, age3=d["age"] ** 3).to_csv(path, index=False)
        return str(path), ["Subject"]
    sys.path.insert(0, str(REPO / "tests"))
    from test_strategies import _badscale, _corr_boundary

    data = _badscale() if key == "badscale" else _corr_boundary()
    data.assign(g=data["g"].astype(str)).to_csv(path, index=False, float_format="%.17g")
    return str(path), ["g"]


def build_spec(names: list[str], reps: int, profile: bool, folder: Path) -> list[dict]:
    """The cases both sides run, as JSON-ready dicts."""
    from harness.core.catalog import load_catalog

    formulas = {c.dataset: c.formula for c in load_catalog()}
    spec = []
    for name in names:
        if name in PROFILES:
            dataset, formula, REML = PROFILES[name]
            spec.append({"name": name, "dataset": dataset, "formula": formula, "REML": REML,
                         "reps": 1, "profile_reps": reps if profile else 0})
            continue
        key, formula, REML, kind = CASES[name]
        case = {"name": name, "formula": formula or formulas[key], "REML": REML, "reps": reps}
        if kind == "catalog":
            case["dataset"] = key
        else:
            case["csv"], case["factors"] = _write_data(kind, key, folder)
        spec.append(case)
    return spec


def _run(cmd: list[str], source: Path = REPO) -> dict[str, dict]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=str(source))
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed:\n{out.stderr[-3000:]}")
    recs = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {r["name"]: r for r in recs}


def _ci_excess(ref: dict, cand: dict) -> float:
    """The largest |mixedref - lme4| of a profile limit in units of the harness's allowance."""
    from harness.core.tolerance import DEFAULT

    worst = 0.0
    for i, name in enumerate(ref["rownames"]):
        j = cand["rownames"].index(name)
        allowed = DEFAULT.ci_width_rel * abs(ref["upper"][i] - ref["lower"][i])
        for side in ("lower", "upper"):
            worst = max(worst, abs(cand[side][j] - ref[side][i]) / allowed)
    return worst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="fits per case per round (median)")
    ap.add_argument("--rounds", type=int, default=1, help="lme4 then mixedref, this often")
    ap.add_argument("--only", nargs="*", default=None, help="substrings of case names")
    ap.add_argument("--no-profile", action="store_true", help="skip the profile cases")
    ap.add_argument("--json", type=Path, default=None, help="also write the records here")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="also time the mixedref of this source tree (before/after)")
    args = ap.parse_args(argv)
    names = list(CASES) + ([] if args.no_profile else list(PROFILES))
    if args.only:
        names = [n for n in names if any(o in n for o in args.only)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec_path = folder / "spec.json"
        spec_path.write_text(json.dumps(build_spec(names, args.reps, True, folder)))
        child = folder / "child.py"
        child.write_text(_CHILD)
        impls = ["lme4", "mixedref"] + (["baseline"] if args.baseline else [])
        runs = {n: {impl: [] for impl in impls} for n in names}
        sides = [("lme4", ["Rscript", str(REPO / "r_scripts" / "bench_hard.R"), str(spec_path)],
                  REPO),
                 ("mixedref", [sys.executable, str(child), str(spec_path)], REPO)]
        if args.baseline:
            sides.append(("baseline", [sys.executable, str(child), str(spec_path)],
                          args.baseline.resolve()))
        for _ in range(args.rounds):
            for impl, cmd, source in sides:
                for name, rec in _run(cmd, source).items():
                    runs[name][impl].append(rec)
    print(f"{'case':28s} {'lme4 s':>8s} {'nfev':>6s} {'mixedref s':>10s} {'nfev':>6s} "
          f"{'ratio':>6s} {'lme4 criterion':>15s} {'mixedref':>15s}  optimizer")
    table = []
    for name in names:
        r, m = runs[name]["lme4"], runs[name]["mixedref"]
        base = runs[name].get("baseline") or []
        rs, ms = (statistics.median(x["seconds"] for x in v) for v in (r, m))
        row = {"case": name, "lme4_seconds": rs, "mixedref_seconds": ms,
               "lme4_nfev": r[-1]["nfev"], "mixedref_nfev": m[-1]["nfev"],
               "lme4_objective": r[-1]["objective"], "mixedref_objective": m[-1]["objective"],
               "optimizer": m[-1]["optimizer"], "rescue_nfev": m[-1]["rescue_nfev"]}
        if base:
            row.update(baseline_seconds=statistics.median(x["seconds"] for x in base),
                       baseline_nfev=base[-1]["nfev"], baseline_objective=base[-1]["objective"])
        if name in PROFILES:
            rs, ms = (statistics.median(x["profile_seconds"] for x in v) for v in (r, m))
            row.update(lme4_profile_seconds=rs, mixedref_profile_seconds=ms,
                       ci_excess=_ci_excess(r[-1]["confint"], m[-1]["confint"]))
            print(f"{name:28s} {rs:8.3f} {'':>6s} {ms:10.3f} {'':>6s} {ms / rs:6.2f}  "
                  f"limits within {row['ci_excess']:.3f} of the harness's allowance")
            if base:
                bs = statistics.median(x["profile_seconds"] for x in base)
                row.update(baseline_profile_seconds=bs,
                           baseline_ci_excess=_ci_excess(r[-1]["confint"], base[-1]["confint"]))
                print(f"{'  baseline':28s} {'':8s} {'':>6s} {bs:10.3f} {'':>6s} {bs / rs:6.2f}  "
                      f"limits within {row['baseline_ci_excess']:.3f} of the allowance")
        else:
            print(f"{name:28s} {rs:8.3f} {row['lme4_nfev']:6d} {ms:10.3f} "
                  f"{row['mixedref_nfev']:6d} {ms / rs:6.2f} {row['lme4_objective']:15.6f} "
                  f"{row['mixedref_objective']:15.6f}  {row['optimizer']} "
                  f"(rescue {row['rescue_nfev']})")
            if base:
                print(f"{'  baseline':28s} {'':8s} {'':>6s} {row['baseline_seconds']:10.3f} "
                      f"{row['baseline_nfev']:6d} {row['baseline_seconds'] / rs:6.2f} {'':15s} "
                      f"{row['baseline_objective']:15.6f}")
        table.append(row)
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
