"""Time mixedref against lme4 on the large fits of issue 23, alternating, one BLAS thread each.

    python tools/bench_sparse.py [--reps 1] [--case insteval_ml ...] [--engine auto]
                                 [--tree before=/work/main --tree after=.] [--skip-lme4]
                                 [--json out.json]

Cases: InstEval ML and REML (``y ~ service + (1|s) + (1|d) + (1|dept:service)``) and the
shapes of harness/scale_benchmarks.py (crossed 9,000 x 8,500, MovieLens-1M-sized, 200k rows
with slopes; REML, as there). Each repetition fits the case with lme4 (a fresh Python process
embedding R through harness.core.rbridge, R's OpenBLAS on one thread, ``lmer()`` alone timed)
and then with mixedref (a fresh process per source tree given with ``--tree``, e.g. the code
before and after a change, OPENBLAS_NUM_THREADS=1, ``mixedref.lmer`` alone timed after a
warm-up fit on sleepstudy), so all see the same machine load. Per fit it prints the
seconds, the evaluations (lme4's ``optinfo$feval``; mixedref's ``nfev``, a gradient counting
one), the criterion, mixedref's engine and method, its set-up time (model frame and engine
construction) and the median time of one criterion evaluation at the estimate (and of one
gradient, after a first one that builds what it reads); at the end the medians, the ratio
mixedref / lme4, of wall time and of CPU time (on one thread the CPU time is what a loaded
machine's wall time would be without the wait), and the criterion difference mixedref - lme4.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_INSTEVAL = "y ~ 1 + service + (1|s) + (1|d) + (1|dept:service)"
#: case -> (dataset or scale shape, formula or None for the shape's own, REML)
CASES = {
    "insteval_ml": ("InstEval", _INSTEVAL, False),
    "insteval_reml": ("InstEval", _INSTEVAL, True),
    "crossed_9000x8500": ("shape:crossed_9000x8500", None, True),
    "movielens": ("shape:movielens", None, True),
    "rows_200k": ("shape:rows_200k", None, True),
}

_LOAD = """
def load(dataset, formula):
    if dataset.startswith("shape:"):
        from harness.scale_benchmarks import simulate
        return simulate(dataset[6:])
    from harness.core.datasets import load_dataset
    return load_dataset(dataset), formula
"""

_LME4 = _LOAD + """
import json, sys
from harness.core import rbridge
import rpy2.robjects as ro
dataset, formula, REML = json.loads(sys.argv[1])
data, formula = load(dataset, formula)
assert rbridge.unavailable() is None, rbridge.unavailable()
rdata = rbridge.to_r_frame(data)
fn = ro.r('''function(d, formula, reml) {
  invisible(lme4::lmer(Reaction ~ Days + (Days | Subject), lme4::sleepstudy))
  p0 <- proc.time()
  m <- lme4::lmer(as.formula(formula), d, REML = reml)
  p1 <- proc.time() - p0
  secs <- p1[["elapsed"]]
  cpu <- p1[["user.self"]] + p1[["sys.self"]]
  dv <- lme4::lmer(as.formula(formula), d, REML = reml, devFunOnly = TRUE)
  th <- lme4::getME(m, "theta")
  te <- system.time(for (i in 1:3) dv(th))[["elapsed"]] / 3
  list(seconds = secs, cpu = cpu, nfev = m@optinfo$feval, eval = te,
       objective = unname(m@devcomp$cmp[[if (reml) "REML" else "dev"]]))
}''')
out = fn(rdata, formula, REML)
get = {k: float(v[0]) for k, v in zip(out.names, out, strict=True)}
print(json.dumps({"impl": "lme4", **get}))
"""

_MIXEDREF = _LOAD + """
import json, statistics, sys, time
import numpy as np
import mixedref
from mixedref.engines import PLSObjective
dataset, formula, REML, engine = json.loads(sys.argv[1])
data, formula = load(dataset, formula)
from harness.core.datasets import load_dataset
mixedref.lmer("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
from mixedref.fitting.modular import LmerFit, optimize_theta
t0, c0 = time.perf_counter(), time.process_time()
if engine == "auto":
    fit = mixedref.lmer(formula, data, REML=REML)
else:  # lmer's stages with the engine forced
    m = mixedref.build_model(formula, data)
    o = PLSObjective(m, REML=REML, engine=engine)
    fit = LmerFit(m, o, optimize_theta(o, m), seconds=0.0)
secs, cpu = time.perf_counter() - t0, time.process_time() - c0
t0 = time.perf_counter()
model = mixedref.build_model(formula, data)
obj = PLSObjective(model, REML=REML, engine=engine)
setup = time.perf_counter() - t0
th = np.asarray(fit.theta, dtype=float)
obj(th)
ev = []
for _ in range(3):
    t0 = time.perf_counter(); obj(th); ev.append(time.perf_counter() - t0)
gr = None
if obj.has_gradient:
    obj.value_and_grad(th)  # the first builds what the gradient reads
    t0 = time.perf_counter(); obj.value_and_grad(th); gr = time.perf_counter() - t0
print(json.dumps({"impl": "mixedref", "where": mixedref.__file__, "seconds": secs, "cpu": cpu,
                  "nfev": fit.nfev,
                  "objective": float(fit.objective), "engine": obj.engine,
                  "method": fit.optinfo.optimizer, "setup": setup,
                  "eval": statistics.median(ev), "grad": gr}))
"""


def _run(code: str, args: list, threads: int = 1, tree: Path = REPO) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               PYTHONPATH=str(tree))
    # cwd is the tree too: ``python -c`` puts the working directory first on sys.path
    out = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True,
                         text=True, cwd=tree, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--case", nargs="*", choices=sorted(CASES), default=list(CASES))
    ap.add_argument("--engine", default="auto", choices=["auto", "dense", "sparse"])
    ap.add_argument("--skip-lme4", action="store_true")
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=PATH",
                    help="a mixedref source tree to time (repeatable, e.g. before=/work/main "
                         "after=.); default: this repository as 'mixedref'")
    ap.add_argument("--json", help="write every run to this file")
    args = ap.parse_args(argv)
    trees = dict(t.split("=", 1) for t in args.tree) or {"mixedref": str(REPO)}
    rows = []
    for case in args.case:
        dataset, formula, reml = CASES[case]
        runs: dict[str, list[dict]] = {"lme4": [], **{name: [] for name in trees}}
        for _ in range(args.reps):
            if not args.skip_lme4:
                runs["lme4"].append(_run(_LME4, [dataset, formula, reml]))
                r = runs["lme4"][-1]
                print(f"{case:18s} {'lme4':8s} {r['seconds']:8.2f}s cpu {r['cpu']:8.2f}s "
                      f"nfev {r['nfev']:5.0f} "
                      f"eval {1000 * r['eval']:8.1f}ms crit {r['objective']:.6f}", flush=True)
            for name, tree in trees.items():
                runs[name].append(_run(_MIXEDREF, [dataset, formula, reml, args.engine],
                                       tree=Path(tree).resolve()))
                r = runs[name][-1]
                grad = f" grad {1000 * r['grad']:8.1f}ms" if r["grad"] else ""
                print(f"{case:18s} {name:8s} {r['seconds']:8.2f}s cpu {r['cpu']:8.2f}s "
                      f"nfev {r['nfev']:5d} "
                      f"eval {1000 * r['eval']:8.1f}ms{grad} setup {r['setup']:.2f}s "
                      f"crit {r['objective']:.6f} {r['engine']} {r['method']} "
                      f"({Path(r['where']).parents[1]})", flush=True)
        med = {k: statistics.median(x["seconds"] for x in v) for k, v in runs.items() if v}
        cpu = {k: statistics.median(x["cpu"] for x in v) for k, v in runs.items() if v}
        row = {"case": case, "runs": runs, **{f"{k}_s": v for k, v in med.items()}}
        if runs["lme4"]:
            for name in trees:
                ratio, cratio = med[name] / med["lme4"], cpu[name] / cpu["lme4"]
                diff = runs[name][-1]["objective"] - runs["lme4"][-1]["objective"]
                row[f"{name}_ratio"], row[f"{name}_cpu_ratio"] = ratio, cratio
                row[f"{name}_diff"] = diff
                print(f"{case:18s} median {name} {med[name]:.2f}s lme4 {med['lme4']:.2f}s "
                      f"ratio {ratio:.3f} (CPU time {cratio:.3f}) criterion {name} - lme4 "
                      f"{diff:+.3g}", flush=True)
        rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
